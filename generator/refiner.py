"""The one refiner interface (DESIGN.md section 2.4) and the table of refiners by name.

A refiner turns a parent-level crop (with ``margin`` samples of context on each
side) into the child-level window that interpolates it: even child samples are
bit-exact copies of the parents, the other 3 of every 4 are new. It must be a
local, pure function: a child sample's value may depend only on parents within
the margin and on counter-based noise of (seed, level, global child coords),
never on where the crop starts or what else is in the batch. That is what makes
the pyramid nested, seamless and order independent.

Refiners are built per world by a factory ``factory(world) -> Refiner`` named
in one table (``FACTORIES``: name -> ``"module:callable"``), imported on first
use. Nothing registers itself, so this module imports no refiner and no refiner
imports it back; the world metric refiners share lives in ``generator.worldmetric``.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from runtime.tiles import World

CHANNELS = ("height_m", "red", "green", "blue")
"""Channel order of every field: height in metres, then rgb albedo in [0, 1]."""


@runtime_checkable
class Refiner(Protocol):
    """Contract shared by the procedural and the learned refiner."""

    name: str
    version: str  # enters the model id string
    margin: int  # parent samples of context needed on each side
    channels: int  # 4 = height_m + rgb

    def refine(self, parents: np.ndarray, level: int, origins: np.ndarray, seed: int) -> np.ndarray:
        """Refine parent crops one level.

        parents: (B, C, h, w) float32 parent-level crops including ``margin`` m on each side.
        level: the CHILD level (>= 1).
        origins: (B, 2) int64 global child-sample (row, col) of output[:, :, 0, 0]
            (always even: the first output sample is the parent at [m, m]).
        seed: world seed.
        Returns (B, C, 2*(h-2m)-1, 2*(w-2m)-1) float32 whose even samples [2i, 2j]
        are bit-exact copies of parents[:, :, m+i, m+j].
        """
        ...

    def config(self) -> dict:
        """JSON-able configuration; hashed into the pyramid's model id."""
        ...


# Optional attribute a refiner may have (the ``refine`` command sets it when present):
#   spacing_scale: float = 1.0   metres per sample = runtime.tiles.spacing_m(level) * spacing_scale,
# so a DEM of any pixel size can be refined with level = the nearest pyramid level.


RefinerFactory = Callable[[World], Refiner]

FACTORIES: dict[str, str] = {
    "fractal": "generator.fractal:FractalRefiner",
    "fractal-torch": "generator.fractal:fractal_torch_refiner",
    "fractal-erode": "generator.fractal:fractal_erode_refiner",
    "fractal-carve": "generator.fractal:fractal_carve_refiner",
    "fractal-gully": "generator.fractal:fractal_gully_refiner",
    "bicubic": "generator.fractal:BicubicRefiner",
    "learned": "generator.learned.refiner:LearnedRefiner",
}
"""Refiner name -> ``"module:callable"`` of its ``factory(world) -> Refiner``."""

_PREFERENCE = ("learned", "fractal")  # what ``auto`` picks; ``bicubic`` is a baseline only
_AUTO = ("auto", "auto-offline")


def learned_is_fast_here() -> bool:
    """Whether the learned refiner runs fast enough to stream from on this machine.

    Streaming wants tens of tiles per second per client: the learned refiner does
    ~18,000 tiles/s compiled on one H200 but ~30 on this project's 2-core CPU (onnxruntime),
    ~30x slower than the fractal refiner there (docs/BENCHMARKS.md). So ``auto`` picks it
    where a CUDA GPU is present; on a CPU-only machine it is used when asked for by name
    (and by ``refine``, where one DEM is a one-off job).
    """
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@cache
def refiner_factory(name: str) -> RefinerFactory:
    """The factory of refiner ``name``, importing its module on first use.

    Raises ValueError for a name not in ``FACTORIES``; ImportError when its module (or a
    package it needs, e.g. torch) cannot be imported."""
    if name not in FACTORIES:
        raise ValueError(f"unknown refiner {name!r}: expected one of {available_refiners() + list(_AUTO)}")
    module, _, attr = FACTORIES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def available_refiners() -> list[str]:
    """Names that can be asked for besides ``auto`` (whether each can run here is known
    only when it is built: the learned one needs torch and its weights)."""
    return sorted(FACTORIES)


def make_refiner(name: str, world: World | str) -> Refiner:
    """Build the refiner ``name`` for ``world``.

    ``auto``: the best refiner that streams fast enough here (learned with a CUDA GPU,
    else fractal); ``auto-offline``: the best available regardless of speed (one-off jobs
    such as ``refine``)."""
    world = World.parse(world) if not isinstance(world, World) else world
    if name not in _AUTO:
        return refiner_factory(name)(world)
    for candidate in _PREFERENCE:
        if candidate == "learned" and name == "auto" and not learned_is_fast_here():
            continue
        try:
            return refiner_factory(candidate)(world)
        except (FileNotFoundError, ImportError):
            continue  # e.g. learned weights not shipped, or torch not installed
    raise ValueError(f"no refiner available among {list(_PREFERENCE)}")


__all__ = [
    "CHANNELS",
    "FACTORIES",
    "Refiner",
    "RefinerFactory",
    "available_refiners",
    "learned_is_fast_here",
    "make_refiner",
    "refiner_factory",
]
