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


def tin_window(grid_rc: np.ndarray, height_m: np.ndarray, faces: np.ndarray,
               rows: tuple[int, int] = (0, T), cols: tuple[int, int] = (0, T), t: int = T) -> np.ndarray:
    """Heights of a TIN covering [0, t]^2 at the nodes rows[0]..rows[1] x cols[0]..cols[1]
    (inclusive): (rows[1] - rows[0] + 1, cols[1] - cols[0] + 1) float64 metres.

    grid_rc (n, 2) [row, col] integer-valued in [0, t]; height_m (n,) metres; faces (m, 3)
    int. Triangle by triangle, row span by row span (``kernels.raster_window``, compiled);
    ValueError where a node of the window is uncovered or the window leaves [0, t]^2."""
    r_a, r_b = int(rows[0]), int(rows[1])
    c_a, c_b = int(cols[0]), int(cols[1])
    if not (0 <= r_a <= r_b <= t and 0 <= c_a <= c_b <= t):
        raise ValueError(f"window rows {rows}, cols {cols} must be ordered and within [0, {t}]")
    rc = np.asarray(grid_rc, np.float64)
    from runtime.tin.kernels import raster_window  # numba loads here, on first use

    out = raster_window(np.ascontiguousarray(rc[:, 0]), np.ascontiguousarray(rc[:, 1]),
                        np.ascontiguousarray(height_m, np.float64), np.ascontiguousarray(faces, np.int64),
                        r_a, r_b, c_a, c_b, t)
    if np.isnan(out).any():
        raise ValueError(f"the TIN leaves {int(np.isnan(out).sum())} grid nodes of rows {rows}, cols {cols} "
                         f"uncovered; expected it to cover [0, {t}]^2")
    return out
