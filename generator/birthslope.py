"""The birth slope of samples (:mod:`generator.landcover`'s rock rule): the slope of each sample at
the level where it was born, from the parents it was refined from, so it is the same at every
level (see :mod:`generator.landcover`'s docstring for why).

:func:`birth_slope` computes a window by birth groups (strided views, float64 by definition or a
float32 screen); :func:`_slope_at` the same float64 expressions at a list of samples.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from runtime.tiles import ANCHOR_LEVEL, World, spacing_deg, spacing_m

FarHeights = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
"""(level, rows (N,), cols (N,)) global samples -> (N,) float32 heights in metres."""


def birth_slope(world: World, level: int, rows: np.ndarray, cols: np.ndarray, heights_m: np.ndarray,
                far_heights: FarHeights | None, where: np.ndarray | None = None,
                precision: type = np.float64) -> np.ndarray:
    """(H, W) float32 tangent of the slope at each sample's birth level (NaN where born at or above
    the anchor level). See the module docstring for why this is the same at every level.

    Grouped by k = L - birth level and by the direction(s) in which the sample is odd at k (rows
    odd x cols even, even x odd, odd x odd): each group is a product of row and column index sets,
    so its parents are gathered with one ``np.ix_`` each (same expressions as per sample). ``where``
    (H, W) bool: groups with no True sample are left NaN (their slope is not wanted).
    ``precision`` float64 is the definition; float32 (half the work) is within 1e-2 of it for
    heights below 16 km at spacings >= 0.15 m (levels <= 19): a screen for :func:`landcover`."""
    H, W = heights_m.shape
    h64 = np.asarray(heights_m, dtype=precision)
    L = int(level)
    out = np.full((H, W), np.nan, np.float32)
    cr, cc = _ctz(rows), _ctz(cols)
    lat = 90.0 - rows * spacing_deg(L)
    for k in range(max(min(L - ANCHOR_LEVEL, 62), 0)):
        step = 1 << k
        ra, rb = np.nonzero(cr == k)[0], np.nonzero(cr > k)[0]
        ca, cb = np.nonzero(cc == k)[0], np.nonzero(cc > k)[0]
        s_birth = precision(spacing_m(L) * float(step))
        for ri, ci, sr, sc in ((ra, cb, step, 0), (rb, ca, 0, step), (ra, ca, step, step)):
            if not ri.size or not ci.size or where is not None and not where[np.ix_(ri, ci)].any():
                continue

            def at(dr, dc, ri=ri, ci=ci, k=k):
                ii, jj = ri + dr, ci + dc
                if ii[0] >= 0 and ii[-1] < H and jj[0] >= 0 and jj[-1] < W:  # inside: a strided view
                    return h64[ii[0] : ii[-1] + 1 : _stride(ii), jj[0] : jj[-1] + 1 : _stride(jj)]
                v = h64[np.ix_(np.clip(ii, 0, H - 1), np.clip(jj, 0, W - 1))]
                far = ((ii < 0) | (ii >= H))[:, None] | ((jj < 0) | (jj >= W))[None, :]
                if far.any():
                    if far_heights is None:
                        raise ValueError(f"{int(far.sum())} samples need heights outside the window at their "
                                         "birth level (tile corners); pass far_heights (see tile_landcover)")
                    fr, fc = np.nonzero(far)
                    v[fr, fc] = far_heights(L - k, (rows[ri[fr]] + dr) >> k, (cols[ci[fc]] + dc) >> k)
                return v

            nw, ne, sw, se = at(-sr, -sc), at(-sr, sc), at(sr, -sc), at(sr, sc)
            east = s_birth
            if world is World.EARTH:
                east = (s_birth * np.maximum(np.cos(np.radians(lat[ri])), 1e-3)).astype(precision)[:, None]
            gy = (sw + se - nw - ne) / (precision(4.0) * s_birth)
            gx = (ne + se - nw - sw) / (precision(4.0) * east)
            out[np.ix_(ri, ci)] = np.hypot(gx, gy)
    return out


def _slope_at(world: World, level: int, rows: np.ndarray, cols: np.ndarray, heights_m: np.ndarray,
              far_heights: FarHeights | None, pr: np.ndarray, pc: np.ndarray) -> np.ndarray:
    """(N,) float32 birth slope of the window's samples (pr, pc) (local indices, born below the anchor
    level): :func:`birth_slope`'s float64 expressions, one point at a time in a vector."""
    L = int(level)
    H, W = heights_m.shape
    r, c = rows[pr], cols[pc]
    k = np.minimum(np.minimum(_ctz(r), _ctz(c)), L)
    step = np.left_shift(np.int64(1), k)
    sr = np.where((r >> k) & 1 == 1, step, 0)
    sc = np.where((c >> k) & 1 == 1, step, 0)

    def at(dr, dc):
        ii, jj = pr + dr, pc + dc
        inside = (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
        v = heights_m[np.clip(ii, 0, H - 1), np.clip(jj, 0, W - 1)].astype(np.float64)
        for m in np.flatnonzero(~inside):
            if far_heights is None:
                raise ValueError("samples need heights outside the window at their birth level; pass far_heights")
            kk = int(k[m])
            v[m] = far_heights(L - kk, np.array([(r[m] + dr[m]) >> kk]), np.array([(c[m] + dc[m]) >> kk]))[0]
        return v

    nw, ne, sw, se = at(-sr, -sc), at(-sr, sc), at(sr, -sc), at(sr, sc)
    s_birth = np.float64(spacing_m(L)) * step.astype(np.float64)
    east = s_birth
    if world is World.EARTH:
        lat = 90.0 - r * spacing_deg(L)
        east = (s_birth * np.maximum(np.cos(np.radians(lat)), 1e-3)).astype(np.float64)
    gy = (sw + se - nw - ne) / (np.float64(4.0) * s_birth)
    gx = (ne + se - nw - sw) / (np.float64(4.0) * east)
    return np.hypot(gx, gy).astype(np.float32)


def _stride(idx: np.ndarray) -> int:
    """Step of an arithmetic progression of indices (the samples of one birth group of a window of
    consecutive samples are one: i = const mod 2^(k+1)); 1 for a single index."""
    return int(idx[1] - idx[0]) if idx.size > 1 else 1


def _ctz(a: np.ndarray) -> np.ndarray:
    """Count of trailing zero bits of int64 values (62 for 0)."""
    a = np.asarray(a, dtype=np.int64)
    low = a & -a
    out = np.full(a.shape, 62, dtype=np.int64)
    nz = low != 0
    out[nz] = np.log2(np.abs(low[nz]).astype(np.float64)).round().astype(np.int64)
    return out
