"""The one refiner interface (DESIGN.md section 2.4) and the world metric refiners share.

A refiner turns a parent-level crop (with ``margin`` samples of context on each
side) into the child-level window that interpolates it: even child samples are
bit-exact copies of the parents, the other 3 of every 4 are new. It must be a
local, pure function: a child sample's value may depend only on parents within
the margin and on counter-based noise of (seed, level, global child coords),
never on where the crop starts or what else is in the batch. That is what makes
the pyramid nested, seamless and order independent.

Refiners are built per world by a factory ``factory(world) -> Refiner``
registered under a name (``fractal`` here; ``learned`` registers itself when
its weights are present). The world matters for two things only, both given by
the helpers below: the metric sample spacing per row (earth columns shrink with
cos(latitude), so detail must be scaled in metres, not in samples) and the
canonical column of a sample (earth longitudes wrap, so noise must be keyed by
the wrapped column).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from runtime.tiles import T, World, spacing_deg, spacing_m

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
_FACTORIES: dict[str, RefinerFactory] = {}
_PREFERENCE = ("learned", "fractal")  # what ``auto`` picks; ``bicubic`` is a baseline only


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


def register_refiner(name: str, factory: RefinerFactory) -> None:
    """Make ``make_refiner(name, world)`` build refiners with ``factory(world)``."""
    _FACTORIES[name] = factory


def available_refiners() -> list[str]:
    """Names that can be asked for (importing the built-in refiners first)."""
    _load_builtin(learned=True)
    return sorted(_FACTORIES)


def make_refiner(name: str, world: World | str) -> Refiner:
    """Build the refiner ``name`` for ``world``.

    ``auto``: the best refiner that streams fast enough here (learned with a CUDA GPU,
    else fractal); ``auto-offline``: the best available regardless of speed (one-off jobs
    such as ``refine``)."""
    if name not in _FACTORIES:
        # the learned refiner (and torch) is imported only when it may be the one wanted
        _load_builtin(learned=name in ("auto", "auto-offline", "learned"))
    world = World.parse(world) if not isinstance(world, World) else world
    if name in ("auto", "auto-offline"):
        for candidate in _PREFERENCE:
            if candidate == "learned" and name == "auto" and not learned_is_fast_here():
                continue
            if candidate in _FACTORIES:
                try:
                    return _FACTORIES[candidate](world)
                except (FileNotFoundError, ImportError):
                    continue  # e.g. learned weights not shipped yet
        raise ValueError(f"no refiner available; registered: {sorted(_FACTORIES)}")
    if name not in _FACTORIES:
        raise ValueError(f"unknown refiner {name!r}: expected one of {sorted(_FACTORIES) + ['auto']}")
    return _FACTORIES[name](world)


def _load_builtin(learned: bool) -> None:
    if "fractal" not in _FACTORIES or "bicubic" not in _FACTORIES:
        import generator.fractal  # noqa: F401  (registers itself)
    if learned and "learned" not in _FACTORIES:
        try:
            import generator.learned.refiner  # noqa: F401  (written by the learned-refiner work)
        except ImportError:
            pass


# ---------------------------------------------------------------- world metric

def rows_per_world(level: int) -> int:
    """Earth sample rows from pole to pole at ``level`` (256 * 2**level)."""
    return T << level


def cols_per_world(level: int) -> int:
    """Earth sample columns around the globe at ``level`` (the longitude period)."""
    return 2 * T << level


def canonical_cols(world: World, level: int, cols: np.ndarray) -> np.ndarray:
    """Columns as keyed by noise: wrapped into [0, period) on earth, unchanged on the plane."""
    if world is World.EARTH:
        return np.mod(cols, cols_per_world(level))
    return cols


def ew_scale(world: World, level: int, rows: np.ndarray) -> np.ndarray:
    """East-west metres per sample divided by north-south metres per sample, per row.

    rows: (...) int64 global rows of ``level``. Returns float64 of the same shape:
    1 on the plane; |cos(latitude)| on the earth, exactly 0 at the poles. Rows past
    a pole (only ever used as context margin) mirror back.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if world is World.PLANE:
        return np.ones(rows.shape, dtype=np.float64)
    n = rows_per_world(level)
    colat = np.mod(rows, 2 * n)  # angle from the north pole in samples, folded
    s = np.abs(np.sin(colat * (np.pi / n)))
    return np.where(colat % n == 0, 0.0, s)


def lattice_log2(world: World, level: int, ew: np.ndarray) -> np.ndarray:
    """log2 of the east-west correlation length, in samples, that makes detail isotropic in metres.

    ew: (...) east-west scale per row (see :func:`ew_scale`). Returns int64 k >= 0 with
    2**k <= 1/ew (capped so that 2**k divides the earth's column period).
    """
    kmax = int(np.log2(cols_per_world(level))) if world is World.EARTH else 0
    with np.errstate(divide="ignore"):
        k = np.floor(-np.log2(np.maximum(ew, 2.0**-kmax)) + 1e-9)
    return np.clip(k, 0, kmax).astype(np.int64)


def spacing_ns_m(level: int) -> float:
    """North-south sample spacing in metres at ``level`` (plane: both directions)."""
    return spacing_m(level)


__all__ = [
    "CHANNELS",
    "Refiner",
    "RefinerFactory",
    "available_refiners",
    "canonical_cols",
    "cols_per_world",
    "ew_scale",
    "lattice_log2",
    "make_refiner",
    "register_refiner",
    "rows_per_world",
    "spacing_deg",
    "spacing_ns_m",
]
