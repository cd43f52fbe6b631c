"""The client's TIN raster: a TIN's heights at the grid nodes of a window, each node once.

``tin_window`` is ``runtime.tin.surface.tin_grid`` restricted to a window of the grid
(a child's quarter of its parent: what its geomorph targets read, a quarter of the
nodes) and with a half-open fill rule: a node on a triangle edge is filled by one
triangle only, the one on its right / below (the tile's last row and column close the
spans that end there), so the work is one plane evaluation per node instead of one per
node per triangle touching it (a dense earth tile's vertices touch ~6 triangles each).
The heights are the same planes ``tin_grid`` evaluates; a node on an edge may take the
other side's plane, equal to float64 rounding.
"""

from __future__ import annotations

import numpy as np

from runtime.tiles import T

_EPS = 1e-9  # grid units: positions this close to a node count as on it


def tin_window(grid_rc: np.ndarray, height_m: np.ndarray, faces: np.ndarray,
               rows: tuple[int, int] = (0, T), cols: tuple[int, int] = (0, T), t: int = T) -> np.ndarray:
    """Heights of a TIN covering [0, t]^2 at the nodes rows[0]..rows[1] x cols[0]..cols[1]
    (inclusive): (rows[1] - rows[0] + 1, cols[1] - cols[0] + 1) float64 metres.

    grid_rc (n, 2) [row, col] integer-valued in [0, t]; height_m (n,) metres; faces (m, 3)
    int. Vectorised over (triangle, row) spans like ``tin_grid``; ValueError where a node of
    the window is uncovered or the window leaves [0, t]^2."""
    r_a, r_b = int(rows[0]), int(rows[1])
    c_a, c_b = int(cols[0]), int(cols[1])
    if not (0 <= r_a <= r_b <= t and 0 <= c_a <= c_b <= t):
        raise ValueError(f"window rows {rows}, cols {cols} must be ordered and within [0, {t}]")
    rc = np.asarray(grid_rc, np.float64)
    r, c = np.ascontiguousarray(rc[:, 0]), np.ascontiguousarray(rc[:, 1])
    hm = np.asarray(height_m, np.float64)
    f = np.asarray(faces, np.int64)
    v = [f[:, 0], f[:, 1], f[:, 2]]
    # Each triangle's vertices by row: top (a), middle (b), bottom (c); a stable sorting
    # network (ties keep the face's order, as tin_grid's stable argsort).
    for x, y in ((0, 1), (1, 2), (0, 1)):
        swap = r[v[y]] < r[v[x]]
        v[x], v[y] = np.where(swap, v[y], v[x]), np.where(swap, v[x], v[y])
    i0, i1, i2 = v
    ar, br, cr = r[i0], r[i1], r[i2]
    ac, bc, cc = c[i0], c[i1], c[i2]
    # Half-open rows [ar, cr) (row t closed), clipped to the window; triangles off the
    # window or without area (they cover nothing) drop here.
    r_lo = np.maximum(np.ceil(ar - _EPS).astype(np.int64), r_a)
    r_hi = np.ceil(cr - _EPS).astype(np.int64) - 1
    r_hi = np.minimum(np.where(cr >= t - _EPS, t, r_hi), r_b)
    det = (br - ar) * (cc - ac) - (cr - ar) * (bc - ac)
    keep = (r_hi >= r_lo) & (det != 0.0)
    if c_a > 0 or c_b < t:
        keep &= (np.maximum(np.maximum(ac, bc), cc) >= c_a - _EPS) & (np.minimum(np.minimum(ac, bc), cc) <= c_b + _EPS)
    idx = np.flatnonzero(keep)
    ar, br, cr, ac, bc, cc, det, r_lo, r_hi = (a[idx] for a in (ar, br, cr, ac, bc, cc, det, r_lo, r_hi))
    ha, hb, hc = hm[i0[idx]], hm[i1[idx]], hm[i2[idx]]
    dh0, dh1 = hb - ha, hc - ha
    g_row = (dh0 * (cc - ac) - dh1 * (bc - ac)) / det  # the triangle's plane: metres per row
    g_col = ((br - ar) * dh1 - (cr - ar) * dh0) / det  # metres per column
    h00 = ha - g_row * ar - g_col * ac  # the plane at (row 0, col 0)
    with np.errstate(divide="ignore", invalid="ignore"):  # cr > ar: a triangle with area spans rows
        s_ac = (cc - ac) / (cr - ar)
        s_ab = np.where(br > ar, (bc - ac) / (br - ar), 0.0)
        s_bc = np.where(cr > br, (cc - bc) / (cr - br), 0.0)
    n_rows = np.maximum(r_hi - r_lo + 1, 0)
    tid = np.repeat(np.arange(len(ar)), n_rows)
    starts = np.cumsum(n_rows) - n_rows
    row = r_lo[tid] + np.arange(len(tid)) - starts[tid]
    rowf = row.astype(np.float64)
    a_r, a_c, b_r, b_c = ar[tid], ac[tid], br[tid], bc[tid]
    long_c = a_c + (rowf - a_r) * s_ac[tid]  # the edge top -> bottom
    upper = rowf <= b_r  # the other side: top -> middle, then middle -> bottom
    short_c = np.where(upper, np.where(b_r > a_r, a_c + (rowf - a_r) * s_ab[tid], b_c),
                       b_c + (rowf - b_r) * s_bc[tid])
    lo, hi = np.minimum(long_c, short_c), np.maximum(long_c, short_c)
    # Half-open columns [lo, hi) (column t closed), clipped to the window.
    c0 = np.maximum(np.ceil(lo - _EPS).astype(np.int64), c_a)
    c1 = np.ceil(hi - _EPS).astype(np.int64) - 1
    c1 = np.minimum(np.where(hi >= t - _EPS, t, c1), c_b)
    n_cols = np.maximum(c1 - c0 + 1, 0)
    # Each span's first node, its plane there and the plane's step per column.
    w = c_b - c_a + 1
    first = (row - r_a) * w + (c0 - c_a)
    base = h00[tid] + g_row[tid] * rowf + g_col[tid] * c0
    step = g_col[tid]
    pair = np.repeat(np.arange(len(row)), n_cols)
    k = np.arange(len(pair)) - np.repeat(np.cumsum(n_cols) - n_cols, n_cols)
    out = np.full((r_b - r_a + 1) * w, np.nan)
    out[first[pair] + k] = base[pair] + step[pair] * k
    out = out.reshape(r_b - r_a + 1, w)
    if np.isnan(out).any():
        raise ValueError(f"the TIN leaves {int(np.isnan(out).sum())} grid nodes of rows {rows}, cols {cols} "
                         f"uncovered; expected it to cover [0, {t}]^2")
    return out
