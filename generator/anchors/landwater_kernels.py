"""Compiled twins (``runtime.jit``) of the land/water mask's grid reads, same bits
(``generator.anchors.landwater``; the earth's ``constrain`` reads them on every pyramid block):

- :func:`cells_grid`: ``LandWater.land_cells`` on a grid of 30" cell rows x columns (integer
  maths; 1.0 land, 0.0 water, exactly);
- :func:`mix_grid`: ``LandWater.land_fraction``'s bilinear float32 expression on a grid, the
  four cells of each point read from a table through per-row and per-column indices (the same
  float32 operations in the same order, no fused multiply-add).
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


@jit.warmer
def _warm() -> None:
    state = np.array([[0, 1], [2, 0]], np.uint8)
    slot = np.array([[-1, -1], [0, -1]], np.int32)
    bits = np.zeros((1, 2), np.uint8)
    out = np.empty((2, 3), np.float32)
    cells_grid(state, slot, bits, np.array([0, 5], np.int64), np.array([1, 4, 7], np.int64), 4, 1, 2, out)
    mix = np.empty((1, 2), np.float32)
    mix_grid(out, np.zeros(1, np.int64), np.array([0, 1], np.int64), np.zeros(1, np.float32),
             np.full(2, 0.5, np.float32), mix)
