"""Sampling a regular grid between its nodes: the one bilinear interpolation of the project.

Users: the server's height queries (streaming/heights.py), the viewer's morph targets
(runtime/tin/surface.py), the earth anchor's resampling of ETOPO5, Blue Marble and the
land mask (generator/anchors/earth.py) and the learned refiner's global training grid
(generator/learned/data.py).
"""

from __future__ import annotations

import numpy as np


def bilinear(grid: np.ndarray, rows, cols) -> np.ndarray:
    """``grid`` interpolated bilinearly at fractional node positions (rows, cols).

    grid: (H, W) or (H, W, k) with H, W >= 2, any real dtype (computed in float64).
    rows, cols: node coordinates (row 0 / col 0 is ``grid[0, 0]``), float arrays that
    broadcast to one shape S; pass ``rows[:, None]`` and ``cols[None, :]`` for the
    (len(rows), len(cols)) outer grid. Returns S (+ (k,)) float64.

    Edges: positions are clamped to [0, H-1] x [0, W-1] first, so outside the grid the
    edge value continues (scipy.ndimage ``mode="nearest"``), never an extrapolation.
    Wrapping (longitude) is the caller's: pad the grid. The weights are (1 - f, f), so
    every node is reproduced exactly, the last row and column included.
    """
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim not in (2, 3) or g.shape[0] < 2 or g.shape[1] < 2:
        raise ValueError(f"grid must be (H, W) or (H, W, k) with H, W >= 2, got shape {g.shape}")
    h, w = g.shape[:2]
    r = np.clip(np.asarray(rows, dtype=np.float64), 0.0, h - 1)
    c = np.clip(np.asarray(cols, dtype=np.float64), 0.0, w - 1)
    i = np.minimum(np.floor(r).astype(np.int64), h - 2)
    j = np.minimum(np.floor(c).astype(np.int64), w - 2)
    fr, fc = r - i, c - j
    if g.ndim == 3:
        fr, fc = fr[..., None], fc[..., None]
    top = g[i, j] * (1.0 - fc) + g[i, j + 1] * fc
    bottom = g[i + 1, j] * (1.0 - fc) + g[i + 1, j + 1] * fc
    return top * (1.0 - fr) + bottom * fr
