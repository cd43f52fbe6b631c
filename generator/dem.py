"""Refine a user's DEM: bring your own grid, get generated detail (``worldstream refine``).

The DEM is treated as a window of a plane-world field at the pyramid level
whose spacing is nearest to its pixel size; the refiner's metric spacing is
scaled to the exact pixel size (``spacing_scale``). Each level is one refiner
pass over the grid padded by the refiner's margin (mirror padding about the
edge samples), run in row strips so memory stays bounded; strips share their
boundary parent row, and the refiner is local, so strips do not change values.
OUT[::2^K, ::2^K] == IN exactly, because even child samples are parent copies.
"""

from __future__ import annotations

import math

import numpy as np

from generator.refiner import Refiner, make_refiner
from runtime.tiles import World, spacing_m

STRIP_SAMPLES = 2_000_000  # parent samples per refiner call (memory bound; values unaffected)


def validate_dem(elev: np.ndarray, pixel_m: float) -> tuple[np.ndarray, float]:
    """Check a DEM: 2-D, >= 2 x 2, finite float heights, positive pixel size. Raises ValueError."""
    elev = np.asarray(elev)
    if elev.ndim != 2 or min(elev.shape) < 2:
        raise ValueError(f"elev must be a 2-D (H, W) grid with H, W >= 2, got shape {elev.shape}")
    if not np.issubdtype(elev.dtype, np.number):
        raise ValueError(f"elev must be numeric (float32 metres), got dtype {elev.dtype}")
    bad = int(np.count_nonzero(~np.isfinite(elev)))
    if bad:
        raise ValueError(f"elev has {bad} NaN/inf samples of {elev.size}; fill voids before refining")
    pixel_m = float(np.asarray(pixel_m))
    if not math.isfinite(pixel_m) or pixel_m <= 0:
        raise ValueError(f"pixel_m must be a positive number of metres, got {pixel_m}")
    return elev.astype(np.float32), pixel_m


def base_level(pixel_m: float) -> tuple[int, float]:
    """The pyramid level nearest to ``pixel_m`` and the factor pixel_m / spacing_m(level)."""
    level = max(0, int(round(math.log2(spacing_m(0) / pixel_m))))
    return level, pixel_m / spacing_m(level)


def refine_dem(elev: np.ndarray, pixel_m: float, levels: int, seed: int,
               refiner: Refiner | str = "auto") -> tuple[np.ndarray, float]:
    """(H, W) metres at pixel_m -> ((H-1)*2^K+1, (W-1)*2^K+1) float32 metres at pixel_m / 2^K."""
    z, pixel_m = validate_dem(elev, pixel_m)
    if not isinstance(levels, int) or levels < 0:
        raise ValueError(f"levels must be a non-negative integer, got {levels!r}")
    ref = make_refiner(refiner, World.PLANE) if isinstance(refiner, str) else refiner
    level0, scale = base_level(pixel_m)
    if hasattr(ref, "spacing_scale"):
        ref.spacing_scale = scale
    if getattr(ref, "relief", None) is not None:  # the region is the DEM, not the world's anchor
        from generator.relief import ConstantRelief

        ref.relief = ConstantRelief.from_heights(z)
    if hasattr(ref, "real_parents"):  # the first parents are the user's real terrain
        ref.real_parents = True
    for k in range(1, levels + 1):
        z = _refine_once(ref, z, level0 + k, seed)
    return z, pixel_m / 2**levels


def _refine_once(ref: Refiner, z: np.ndarray, level: int, seed: int) -> np.ndarray:
    m, c = ref.margin, ref.channels
    h, w = z.shape
    padded = np.pad(z, m, mode="reflect" if m < min(h, w) else "symmetric")
    out = np.empty((2 * h - 1, 2 * w - 1), dtype=np.float32)
    rows = max(2, STRIP_SAMPLES // (w + 2 * m))
    for i0 in range(0, h - 1, rows - 1):  # strips of parent rows i0..i1 sharing row i1
        i1 = min(h - 1, i0 + rows - 1)
        crop = np.empty((1, c, i1 - i0 + 1 + 2 * m, w + 2 * m), dtype=np.float32)
        crop[0, 0] = padded[i0 : i1 + 1 + 2 * m]
        crop[0, 1:] = 0.5  # no colour: neutral grey, discarded
        origin = np.array([[2 * i0, 0]], dtype=np.int64)
        out[2 * i0 : 2 * i1 + 1] = ref.refine(crop, level, origin, seed)[0, 0]
    return out
