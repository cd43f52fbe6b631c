"""Compiled twin (``runtime.jit``) of :func:`generator.gully.field`, same bits.

The lattice points' hashes are computed once per block into a small table (the numpy
reference hashes them per sample); every float expression is the reference's, in the same
order, with float32 constants (numba has no weak Python scalars, so each is spelled out).
"""

from __future__ import annotations

import numpy as np

from generator.fractal_kernels import lattice_hashes
from runtime import jit

_S40, _S16 = np.uint64(40), np.uint64(16)
_M24, _M16 = np.uint64(0xFFFFFF), np.uint64(0xFFFF)
_F2M24, _F2M16 = np.float32(2.0**-24), np.float32(2.0**-16)
_HALF, _ONE, _TWO, _THREE, _M2 = (np.float32(v) for v in (0.5, 1.0, 2.0, 3.0, -2.0))
_ZERO = np.float32(0.0)
_TWELFTH = np.float32(1.0 / 12.0)
_EPS = np.float32(1e-30)


@jit.njit
def _field(key, rows, cols, gx, gy, ew_c, s, inv_lam, jspan, half, neg_inv_r2, pj, kr, ks, pc, share, out):
    b_n, r_n = rows.shape
    c_n = cols.shape[1]
    for b in range(b_n):
        i0 = rows[b, 0] // s - 1
        j0 = cols[b, 0] // s - 1
        ni = rows[b, r_n - 1] // s + 1 - i0 + 1
        nj = cols[b, c_n - 1] // s + 1 - j0 + 1
        ur = np.empty((ni, nj), np.float32)
        uc = np.empty((ni, nj), np.float32)
        up = np.empty((ni, nj), np.float32)
        hashes = lattice_hashes(i0, j0, ni, nj, pc, key)
        for ii in range(ni):
            for jj in range(nj):
                h = hashes[ii, jj]
                # the point's offset in its cell and its phase, as the reference's expressions
                ur[ii, jj] = (np.float32(h >> _S40) * _F2M24 - _HALF) * jspan + half
                uc[ii, jj] = (np.float32((h >> _S16) & _M24) * _F2M24 - _HALF) * jspan + half
                up[ii, jj] = (np.float32(h & _M16) * _F2M16 - _HALF) * pj
        for i in range(r_n):
            r = rows[b, i]
            ci = r // s
            fr = r - ci * s
            ew = ew_c[b, i, 0]
            for j in range(c_n):
                if share[b, i, j] <= _ZERO:  # no weight in the mix: 0, as the reference
                    out[b, i, j] = _ZERO
                    continue
                c = cols[b, j]
                cj = c // s
                fc = c - cj * s
                x, y = gx[b, i, j], gy[b, i, j]
                gn = np.sqrt(x * x + y * y) + _EPS
                inv = inv_lam / gn
                tx, ty = -y * inv, x * inv
                txe = tx * ew
                acc = _ZERO
                w2 = _ZERO
                for dr in range(-1, 2):
                    oy = np.float32(dr * s - fr)
                    li = ci + dr - i0
                    for dc in range(-1, 2):
                        lj = cj + dc - j0
                        dy = oy + ur[li, lj]
                        dx = np.float32(dc * s - fc) + uc[li, lj]
                        w = (dx * dx + dy * dy) * neg_inv_r2 + _ONE
                        if w <= _ZERO:  # adds exactly 0 to both sums (up to the sign of a zero)
                            continue
                        w = w * w
                        ph = (dx * txe + dy * ty) + up[li, lj]
                        d = ph - np.rint(ph)
                        e = abs(d) * _TWO
                        prof = (d * d - _TWELFTH) * kr + ((e * e * (e * _M2 + _THREE)) * _TWO - _ONE) * ks
                        acc = acc + w * prof
                        w2 = w2 + w * w
                out[b, i, j] = acc / np.sqrt(w2)


def field(key: int, rows: np.ndarray, cols: np.ndarray, gx: np.ndarray, gy: np.ndarray, ew_c: np.ndarray,
          cell: int, consts: tuple, period_cells: int, share: np.ndarray | None = None) -> np.ndarray:
    """``gully.field`` compiled: rows (B, R), cols (B, C) increasing int64; gx, gy (B, R, C)
    float32; ew_c (B, R, 1) float32; consts = (1 / lambda, jitter span, half cell, 1 / R^2,
    phase jitter, k_ridged, k_smooth) float32 values; period_cells <= 0 on the plane; share
    (B, R, C) float32 or None: 0 where it is <= 0.
    -> (B, R, C) float32, the bits of the numpy reference."""
    inv_lam, jspan, half, inv_r2, pj, kr, ks = (np.float32(c) for c in consts)
    gx = np.ascontiguousarray(gx, dtype=np.float32)
    gy = np.ascontiguousarray(gy, dtype=np.float32)
    if gx.shape != gy.shape or gx.ndim != 3 or rows.shape != gx.shape[:2] or cols.shape[1] != gx.shape[2]:
        raise ValueError(f"expected rows (B, R), cols (B, C), gx and gy (B, R, C); got {rows.shape}, "
                         f"{cols.shape}, {gx.shape}, {gy.shape}")
    out = np.empty(gx.shape, np.float32)
    share = np.ones((1, 1, 1), np.float32) if share is None else share
    if share.shape != gx.shape:
        share = np.ascontiguousarray(np.broadcast_to(share, gx.shape), dtype=np.float32)
    _field(np.uint64(key), np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(cols, dtype=np.int64),
           gx, gy, np.ascontiguousarray(ew_c, dtype=np.float32), int(cell), inv_lam, jspan, half, np.float32(-inv_r2),
           pj, kr, ks, int(period_cells), share, out)
    return out


@jit.warmer
def _warm() -> None:
    rows = np.arange(3, dtype=np.int64).reshape(1, 3)
    g = np.ones((1, 3, 3), np.float32)
    for pc in (-1, 16):
        field(1, rows, rows, g, g, np.ones((1, 3, 1), np.float32), 4, (0.25, 2.0, 2.0, 0.04, 0.5, 1.0, 0.0), pc)
