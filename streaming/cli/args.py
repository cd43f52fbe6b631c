"""Argument types of the ``worldstream`` subcommands: each parses one string or raises
``argparse.ArgumentTypeError`` with a message that says what was expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from runtime.tiles import World

SEED_MAX = 2**63 - 1


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (no usage dump)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_in(lo: int | None, hi: int | None, what: str) -> Callable[[str], int]:
    """An integer in [lo, hi] (either bound may be None: open)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{what} must be in [{lo}, {hi}], got {v}")
        return v

    return parse


def int_or_auto(lo: int, hi: int, what: str) -> Callable[[str], int | str]:
    """``auto`` or an integer in [lo, hi]."""
    num = int_in(lo, hi, what)

    def parse(text: str) -> int | str:
        if text == "auto":
            return text
        try:
            return num(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"{what} must be 'auto' or an integer in [{lo}, {hi}], "
                                             f"got {text!r}") from None

    return parse


def float_in(lo: float, hi: float, what: str) -> Callable[[str], float]:
    """A finite number in [lo, hi]."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be in [{lo}, {hi}], got {v}")
        return v

    return parse


def world(text: str) -> World:
    """``plane`` or ``earth``."""
    try:
        return World.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def xyz(text: str) -> tuple[float, float, float]:
    """``X,Y,ALT``: three finite numbers below 1e12 in magnitude."""
    try:
        x, y, z = (float(v) for v in text.split(","))
        if not all(v == v and abs(v) < 1e12 for v in (x, y, z)):
            raise ValueError
        return x, y, z
    except ValueError:
        raise argparse.ArgumentTypeError(f"teleport must be X,Y,ALT (three numbers), got {text!r}") from None


def size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` in pixels, 16..8192 each."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if not (16 <= w <= 8192 and 16 <= h <= 8192):
            raise ValueError
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT with 16..8192 each, got {text!r}") from None


def checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """Keep the text, but reject it at parse time when ``parse`` raises ValueError (its message)."""

    def f(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return f


def world_args(sp: argparse.ArgumentParser, default_world: World) -> None:
    """``--world``, ``--seed`` and ``--refiner``: which pyramid a command opens."""
    sp.add_argument("--world", type=world, default=default_world, help="plane or earth")
    sp.add_argument("--seed", type=int_in(0, SEED_MAX, "seed"), default=0)
    sp.add_argument("--refiner", default=None, help="fractal or learned (default: best available)")
