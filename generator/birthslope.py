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
                precision: type = np.float64, max_k: int | None = None,
                at_most: float | None = None) -> np.ndarray:
    """(H, W) float32 tangent of the slope at each sample's birth level (NaN where born at or above
    the anchor level). See the module docstring for why this is the same at every level.

    Grouped by k = L - birth level and by the direction(s) in which the sample is odd at k (rows
    odd x cols even, even x odd, odd x odd): each group is a product of row and column index sets,
    so its parents are gathered with one ``np.ix_`` each (same expressions as per sample). ``where``
    (H, W) bool: groups with no True sample are left NaN (their slope is not wanted).
    ``precision`` float64 is the definition; float32 (half the work) is within 1e-2 of it for
    heights below 16 km at spacings >= 0.15 m (levels <= 19): a screen for :func:`landcover`.

    Two more ways to leave groups NaN, for screens: ``max_k`` (groups with k >= max_k: born so
    high that they are few; :func:`birth_groups_from` lists them for :func:`_slope_at`) and
    ``at_most``: a group whose parents are all inside the window and whose slope cannot exceed
    ``at_most`` (by the bound ``range(h) / 2 * sqrt(1 / s^2 + 1 / e^2)`` over the window's
    heights, s and e the birth spacings north and east, 1 % margin) is not computed."""
    H, W = heights_m.shape
    h64 = np.asarray(heights_m, dtype=precision)
    L = int(level)
    out = np.full((H, W), np.nan, np.float32)
    cr, cc = _ctz(rows), _ctz(cols)
    lat = 90.0 - rows * spacing_deg(L)
    h_range = float(np.max(h64)) - float(np.min(h64)) if at_most is not None and h64.size else 0.0
    cos_min = max(float(np.min(np.cos(np.radians(lat)))), 1e-3) if world is World.EARTH and lat.size else 1.0
    k_end = max(min(L - ANCHOR_LEVEL, 62), 0)
    for k in range(k_end if max_k is None else min(k_end, max_k)):
        step = 1 << k
        ra, rb = np.nonzero(cr == k)[0], np.nonzero(cr > k)[0]
        ca, cb = np.nonzero(cc == k)[0], np.nonzero(cc > k)[0]
        s_birth = precision(spacing_m(L) * float(step))
        flat = at_most is not None and 1.01 * h_range / 2.0 * float(np.hypot(
            1.0 / float(s_birth), 1.0 / (float(s_birth) * cos_min))) <= at_most
        for ri, ci, sr, sc in ((ra, cb, step, 0), (rb, ca, 0, step), (ra, ca, step, step)):
            if not ri.size or not ci.size:
                continue
            if flat and ri[0] - sr >= 0 and ri[-1] + sr < H and ci[0] - sc >= 0 and ci[-1] + sc < W:
                continue  # parents inside the window, whose relief cannot make this group steep
            view = (slice(ri[0], ri[-1] + 1, _stride(ri)), slice(ci[0], ci[-1] + 1, _stride(ci)))  # the group
            if where is not None and not where[view].any():
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
            out[view] = np.hypot(gx, gy)
    return out


def birth_groups_from(level: int, rows: np.ndarray, cols: np.ndarray, k0: int) -> np.ndarray:
    """(H, W) bool: samples of the window born at least ``k0`` levels above ``level`` but below the
    anchor level (the groups that :func:`birth_slope` leaves NaN with ``max_k = k0``)."""
    k = np.minimum(_ctz(rows)[:, None], _ctz(cols)[None, :])
    return (k >= k0) & (k < int(level) - ANCHOR_LEVEL)


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
        out_ = np.flatnonzero(~inside)
        if out_.size and far_heights is None:
            raise ValueError("samples need heights outside the window at their birth level; pass far_heights")
        for kk in np.unique(k[out_]):  # one call per birth level
            m = out_[k[out_] == kk]
            v[m] = far_heights(L - int(kk), (r[m] + dr[m]) >> kk, (c[m] + dc[m]) >> kk)
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
