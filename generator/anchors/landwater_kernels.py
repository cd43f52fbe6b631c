"""Compiled twins (``runtime.jit``) of the land/water mask's grid reads, same bits
(``generator.anchors.landwater``; the earth's ``constrain`` reads them on every pyramid block):

- :func:`cells_grid`: ``LandWater.land_cells`` on a grid of 30" cell rows x columns (integer
  maths; 1.0 land, 0.0 water, exactly);
- :func:`mix_grid`: ``LandWater.land_fraction``'s bilinear float32 expression on a grid, the
  four cells of each point read from a table through per-row and per-column indices (the same
  float32 operations in the same order, no fused multiply-add);
- :func:`uniform_box`: ``LandWater.uniform_state``'s test of the block table and the
  depression flags over a box (integer maths);
- :func:`depression_rows_cols` and :func:`any_flag`: ``LandWater.in_depression_grid``'s
  indices (float64 floor, clip, floor modulo) and whether any flag lies under the grid;
- :func:`coast_masks`: ``land``, ``free`` and the two ``coast_cap`` arrays of a mixed grid from
  its land fraction (float32, numpy's operations in numpy's order).
"""

from __future__ import annotations

import numpy as np

from runtime import jit

_ONE32 = np.float32(1.0)


@jit.njit
def cells_grid(state, slot, bits, i, j, block, land, mixed, out):
    """out[r, c] = 1.0 where cell (i[r], j[c]) is land, else 0.0: state (B_ROWS, B_COLS) uint8,
    slot (B_ROWS, B_COLS) int32, bits (n_mixed, block * block / 8) uint8 (1 = land, row-major,
    most significant bit first); i (n,), j (m,) int64 already clipped and wrapped; out (n, m)
    float32."""
    for r in range(i.shape[0]):
        bi = i[r] // block
        row = (i[r] % block) * block
        for c in range(j.shape[0]):
            bj = j[c] // block
            st = state[bi, bj]
            v = 0.0
            if st == land:
                v = 1.0
            elif st == mixed:
                bit = row + j[c] % block
                v = float((bits[slot[bi, bj], bit >> 3] >> (7 - (bit & 7))) & 1)
            out[r, c] = v


@jit.njit
def mix_grid(cells, ri, cj, ti, tj, out):
    """out[r, c] = (a * (1 - tj) + b * tj) * (1 - ti) + (c * (1 - tj) + d * tj) * ti in float32,
    where a, b = cells[ri[r], cj[c]], cells[ri[r], cj[c] + 1] and c, d the same one row down:
    cells (p, q) float32, ri (H,), cj (W,) int64, ti (H,), tj (W,) float32, out (H, W) float32."""
    for r in range(ri.shape[0]):
        t_i = ti[r]
        u_i = _ONE32 - t_i
        top = ri[r]
        for c in range(cj.shape[0]):
            t_j = tj[c]
            u_j = _ONE32 - t_j
            k = cj[c]
            out[r, c] = (cells[top, k] * u_j + cells[top, k + 1] * t_j) * u_i + \
                (cells[top + 1, k] * u_j + cells[top + 1, k + 1] * t_j) * t_i


@jit.njit
def uniform_box(state, depression, i0, i1, b0, b1, di0, di1, dj0, dj1, land, mixed):
    """The one state (``WATER`` or ``LAND``) of the block rows i0..i1 x columns b0..b1 (wrapping)
    of ``state``, or -1 if they differ or are ``mixed``; also -1 for land with a depression flag
    in rows di0..di1 x columns dj0..dj1 (wrapping) of ``depression``."""
    nb = state.shape[1]
    first = state[i0, b0 % nb]
    for i in range(i0, i1 + 1):
        for b in range(b0, b1 + 1):
            if state[i, b % nb] != first:
                return -1
    if first == mixed:
        return -1
    if first == land:
        nd = depression.shape[1]
        for i in range(di0, di1 + 1):
            for j in range(dj0, dj1 + 1):
                if depression[i, j % nd]:
                    return -1
    return np.int64(first)


@jit.njit
def depression_rows_cols(lat, lon, per_deg, n_rows, n_cols, i, j):
    """i (H,) = clip(floor((90 - lat) * per_deg), 0, n_rows - 1) and j (W,) = floor((lon + 180) *
    per_deg) mod n_cols, int64, as ``LandWater.in_depression_grid`` computes them."""
    for r in range(lat.shape[0]):
        v = np.int64(np.floor((90.0 - lat[r]) * per_deg))
        i[r] = min(max(v, 0), n_rows - 1)
    for c in range(lon.shape[0]):
        j[c] = np.int64(np.floor((lon[c] + 180.0) * per_deg)) % n_cols


@jit.njit
def any_flag(depression, i, j):
    """Whether depression[i[r], j[c]] is set for some r, c."""
    for r in range(i.shape[0]):
        for c in range(j.shape[0]):
            if depression[i[r], j[c]]:
                return True
    return False


@jit.njit
def _cap(f, ramp):
    """``coast_cap`` of one float32 fraction: +inf at f >= 1, else max(ramp (f - 0.5) / (1 - f), 0)
    in float32 (1 - f > 0 there: no division by zero)."""
    if f >= _ONE32:
        return np.float32(np.inf)
    c = ramp * (f - np.float32(0.5)) / (_ONE32 - f)
    if c != c:
        return c
    return c if c > np.float32(0.0) else np.float32(0.0)


@jit.njit
def coast_masks(frac, dep, has_dep, ramp, land, free, cap, wcap):
    """From the land fraction frac (H, W) float32: land = frac >= 0.5, free = land and not
    dep (H, W) bool (read only where ``has_dep``), cap = coast_cap(frac), wcap =
    coast_cap(1 - frac) (float32, ramp the float32 COAST_RAMP_M)."""
    for r in range(frac.shape[0]):
        for c in range(frac.shape[1]):
            f = frac[r, c]
            is_land = f >= np.float32(0.5)
            land[r, c] = is_land
            free[r, c] = is_land and not (has_dep and dep[r, c])
            cap[r, c] = _cap(f, ramp)
            wcap[r, c] = _cap(_ONE32 - f, ramp)


@jit.warmer
def _warm() -> None:
    # the layouts of the real calls: LandWater's tables are read-only (a writable array is
    # another numba specialisation, compiled again at the first real call)
    state = np.array([[0, 1], [2, 0]], np.uint8)
    slot = np.array([[-1, -1], [0, -1]], np.int32)
    bits = np.zeros((1, 2), np.uint8)
    dep = np.zeros((3, 4), bool)
    for a in (state, slot, bits, dep):
        a.setflags(write=False)
    out = np.empty((2, 3), np.float32)
    cells_grid(state, slot, bits, np.array([0, 5], np.int64), np.array([1, 4, 7], np.int64), 4, 1, 2, out)
    mix = np.empty((1, 2), np.float32)
    mix_grid(out, np.zeros(1, np.int64), np.array([0, 1], np.int64), np.zeros(1, np.float32),
             np.full(2, 0.5, np.float32), mix)
    uniform_box(state, dep, 0, 1, 1, 2, 0, 1, 3, 5, 1, 2)
    i, j = np.empty(2, np.int64), np.empty(3, np.int64)
    depression_rows_cols(np.array([89.9, 10.0]), np.array([-180.0, 0.0, 179.9]), 12.0, 3, 4, i, j)
    any_flag(dep, i, j)
    f = np.array([[0.0, 0.5, 0.75, 1.0]], np.float32)
    land, free = np.empty(f.shape, bool), np.empty(f.shape, bool)
    cap, wcap = np.empty(f.shape, np.float32), np.empty(f.shape, np.float32)
    coast_masks(f, land, True, np.float32(250.0), land, free, cap, wcap)
    coast_masks(f, np.zeros((1, 1), bool), False, np.float32(250.0), land, free, cap, wcap)
