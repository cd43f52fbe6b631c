"""Compiled twins (``runtime.jit``) of the fractal refiner's hottest numpy steps, same bits.

- :func:`gauss_grid`: ``noise.gauss`` over rows x cols (hash_grid + gauss_from_hash fused:
  integer maths, then one int -> float32 conversion and one float32 multiply);
- :func:`ew_smooth`: ``fractal._ew_smooth_noise`` (float64 lattice position, two hashed
  lattice values, the float32 rational blend in the numpy expression's order);
- :func:`midpoints`: ``fractal._midpoints`` (the four-point cubic, float32, same order);
- :func:`gully_field`: ``shaping.gully_field`` (float32, same order; ``np.rint`` is numpy's
  round half to even);
- :func:`relief_bilinear`: the bilinear read of the anchor-level factor in
  ``RegionalRelief.factor`` (float64, same order, rounded to float32 once).

Every float constant is the float32 (or float64) the numpy expression uses: with numpy 2's
weak Python scalars, ``float32_array * 0.657`` multiplies in float32.
"""

from __future__ import annotations

import numpy as np

from generator import noise
from runtime import jit

_M1 = np.uint64(noise._M1)
_M2 = np.uint64(noise._M2)
_ROW_SALT = np.uint64(noise._ROW_SALT)
_COL_SALT = np.uint64(noise._COL_SALT)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S16, _S32, _S48, _LANE = np.uint64(16), np.uint64(32), np.uint64(48), np.uint64(0xFFFF)
_GAUSS_SCALE = np.float32(noise.GAUSS_SCALE)
_F343, _F657 = np.float32(0.343), np.float32(0.657)
_ONE32 = np.float32(1.0)


@jit.njit
def mix64(z):
    """The SplitMix64 finaliser on a uint64 (``generator.noise.mix``), compiled: the one twin of
    it the kernels share (this module's noise, generator.valuenoise's lattice corners)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit.njit
def _gauss_of(h):
    s = (h & _LANE) + ((h >> _S16) & _LANE) + ((h >> _S32) & _LANE) + (h >> _S48)
    return np.float32(np.int64(s) - 131070) * _GAUSS_SCALE


@jit.njit
def _gauss_grid(key, rows, cols, out):
    b_n, r_n = rows.shape
    c_n = cols.shape[1]
    hc = np.empty(c_n, dtype=np.uint64)
    for b in range(b_n):
        for j in range(c_n):
            hc[j] = mix64((cols[b, j] * _COL_SALT) ^ key)
        for i in range(r_n):
            hr = mix64(rows[b, i] * _ROW_SALT + key)
            for j in range(c_n):
                out[b, i, j] = _gauss_of(mix64(hr ^ hc[j]))


def gauss_grid(seed: int, level: int, stream: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``noise.gauss(seed, level, stream, rows, cols)`` for rows (B, R), cols (B, W) int64:
    (B, R, W) float32, the same bits."""
    r = np.ascontiguousarray(rows, dtype=np.int64).view(np.uint64)
    c = np.ascontiguousarray(cols, dtype=np.int64).view(np.uint64)
    if r.ndim != 2 or c.ndim != 2 or r.shape[0] != c.shape[0]:
        raise ValueError(f"rows and cols must be (B, R) and (B, W), got {r.shape} and {c.shape}")
    out = np.empty((r.shape[0], r.shape[1], c.shape[1]), dtype=np.float32)
    _gauss_grid(np.uint64(noise.stream_key(seed, level, stream)), r, c, out)
    return out


@jit.njit
def _column_value(j, have, p0, p1, w0, w1, hr, key):
    """The Gaussian of lattice column ``j`` on the row hashed ``hr``: the last sample's value
    ``w0`` / ``w1`` where ``j`` is its point ``p0`` / ``p1`` (``have``), else hashed."""
    if have and j == p0:
        return w0
    if have and j == p1:
        return w1
    return _gauss_of(mix64(hr ^ mix64((np.uint64(j) * _COL_SALT) ^ key)))


@jit.njit
def _ew_smooth(key, rows, cols, n, scale, out):
    b_n, r_n = rows.shape
    c_n = cols.shape[1]
    for b in range(b_n):
        for i in range(r_n):
            hr = mix64(np.uint64(rows[b, i]) * _ROW_SALT + key)
            nn = n[b, i, 0]
            sc = scale[b, i, 0]
            # the last sample's two lattice points and values: neighbouring columns share a cell
            # (poleward of the equator) or the east point of one is the west point of the next
            have, p0, p1 = False, np.int64(0), np.int64(0)
            w0, w1 = np.float32(0.0), np.float32(0.0)
            for j in range(c_n):
                x = np.float64(cols[b, j]) * sc
                j0f = np.floor(x)
                t = np.float32(x - j0f)
                j0 = np.int64(j0f)
                j1 = j0 + 1
                if j1 >= nn:
                    j1 = j1 - nn
                v0 = _column_value(j0, have, p0, p1, w0, w1, hr, key)
                v1 = _column_value(j1, have, p0, p1, w0, w1, hr, key)
                have, p0, p1, w0, w1 = True, j0, j1, v0, v1
                s = t * (t * _F343 + _F657)
                s2 = s * s
                den = s2 + _ONE32
                out[b, i, j] = v0 * ((-s2 + _ONE32) / den) + v1 * ((s + s) / den)


def ew_smooth(seed: int, level: int, rows: np.ndarray, cols: np.ndarray, n: np.ndarray,
              scale: np.ndarray) -> np.ndarray:
    """``fractal._ew_smooth_noise`` on numpy: rows (B, R), cols (B, W) int64, n (B, R, 1)
    int64, scale (B, R, 1) float64 -> (B, R, W) float32, the same bits."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    n = np.ascontiguousarray(n, dtype=np.int64)
    scale = np.ascontiguousarray(scale, dtype=np.float64)
    out = np.empty((rows.shape[0], rows.shape[1], cols.shape[1]), dtype=np.float32)
    _ew_smooth(np.uint64(noise.stream_key(seed, level, 2)), rows, cols, n, scale, out)
    return out


@jit.njit
def relief_bilinear(grid, rows, base_r, cols, base_c, scale, out):
    """out (R, C) float32 = the bilinear read of ``grid`` (float64 anchor-level factor whose
    [0, 0] is global node (base_r, base_c) >> shift) at rows (R,), cols (C,) int64 global
    samples, ``scale`` = 2^shift: RegionalRelief.factor's float64 expression, same order."""
    gi = grid.shape[0] - 2
    gj = grid.shape[1] - 2
    c_n = cols.shape[0]
    jj = np.empty(c_n, dtype=np.int64)
    tc = np.empty(c_n, dtype=np.float64)
    for c in range(c_n):
        fc = np.float64(cols[c] - base_c) / scale
        j = min(np.int64(np.floor(fc)), gj)
        jj[c] = j
        tc[c] = fc - np.float64(j)
    for r in range(rows.shape[0]):
        fr = np.float64(rows[r] - base_r) / scale
        i = min(np.int64(np.floor(fr)), gi)
        tr = fr - np.float64(i)
        for c in range(c_n):
            j = jj[c]
            g00, g01 = grid[i, j], grid[i, j + 1]
            g10, g11 = grid[i + 1, j], grid[i + 1, j + 1]
            top = g00 + (g01 - g00) * tc[c]
            bot = g10 + (g11 - g10) * tc[c]
            out[r, c] = np.float32(top + (bot - top) * tr)


_HALF, _SIXTEENTH = np.float32(0.5), np.float32(0.0625)


@jit.njit
def _midpoints_rows(x, first, n, out):
    """out[b, c, k, j] = cubic of x[b, c, first - 1 + k .. first + 2 + k, j] (axis 2)."""
    for b in range(out.shape[0]):
        for c in range(out.shape[1]):
            for k in range(n):
                r = first + k
                for j in range(out.shape[3]):
                    s = x[b, c, r, j] + x[b, c, r + 1, j]
                    out[b, c, k, j] = s * _HALF + (s - (x[b, c, r - 1, j] + x[b, c, r + 2, j])) * _SIXTEENTH


@jit.njit
def _midpoints_cols(x, first, n, out):
    """out[b, c, i, k] = cubic of x[b, c, i, first - 1 + k .. first + 2 + k] (axis 3)."""
    for b in range(out.shape[0]):
        for c in range(out.shape[1]):
            for i in range(out.shape[2]):
                for k in range(n):
                    q = first + k
                    s = x[b, c, i, q] + x[b, c, i, q + 1]
                    out[b, c, i, k] = s * _HALF + (s - (x[b, c, i, q - 1] + x[b, c, i, q + 2])) * _SIXTEENTH


def midpoints(x: np.ndarray, axis: int, first: int, n: int) -> np.ndarray:
    """``fractal._midpoints`` for a (B, C, H, W) float32 array along axis 2 or 3: the n
    four-point midpoints between samples first+k and first+k+1, the same bits."""
    shape = list(x.shape)
    shape[axis] = n
    out = np.empty(shape, dtype=np.float32)
    (_midpoints_rows if axis == 2 else _midpoints_cols)(x, first, n, out)
    return out


_F2M24 = np.float32(2.0**-24)
_S40 = np.uint64(40)


@jit.njit
def _inv_sqrt_half_one(a):
    y = a * np.float32(-0.7) + np.float32(1.7)
    y = y * ((a * y * y) * np.float32(-0.5) + np.float32(1.5))
    return y * ((a * y * y) * np.float32(-0.5) + np.float32(1.5))


@jit.njit
def lattice_hashes(i0, j0, ni, nj, period, key):
    """(ni, nj) uint64: the hash of lattice point (i0 + ii, j0 + jj) under ``key``, the column
    wrapped modulo ``period`` when > 0 (the counter-based noise's row/column mix)."""
    hc = np.empty(nj, np.uint64)
    for jj in range(nj):
        lj = j0 + jj
        if period > 0:
            lj = lj % period
        hc[jj] = mix64((np.uint64(lj) * _COL_SALT) ^ key)
    out = np.empty((ni, nj), np.uint64)
    for ii in range(ni):
        hr = mix64(np.uint64(i0 + ii) * _ROW_SALT + key)
        for jj in range(nj):
            out[ii, jj] = mix64(hr ^ hc[jj])
    return out


@jit.njit
def _gully_field(key, rows, cols, gx, gy, ew_c, cell, f, oct_k, eps, profile_scale, twelfth, period_cells, out):
    """shaping.gully_field's float32 expression per sample (see there), with the cells'
    phase and sign hashed once per block into a small table."""
    one = np.float32(1.0)
    two = np.float32(2.0)
    m2 = np.float32(-2.0)
    three = np.float32(3.0)
    s32 = np.float32(cell)
    inv_s = np.float32(1.0 / cell)
    b_n, r_n = rows.shape
    c_n = cols.shape[1]
    for b in range(b_n):
        i0 = rows[b, 0] // cell
        j0 = cols[b, 0] // cell
        ni = rows[b, r_n - 1] // cell - i0 + 2
        nj = cols[b, c_n - 1] // cell - j0 + 2
        phase0 = np.empty((ni, nj), np.float32)
        sign = np.empty((ni, nj), np.float32)
        hashes = lattice_hashes(i0, j0, ni, nj, period_cells, key)
        for ii in range(ni):
            for jj in range(nj):
                u = np.float32(hashes[ii, jj] >> _S40) * _F2M24 * two
                fl = np.floor(u)
                phase0[ii, jj] = u - fl
                sign[ii, jj] = fl * m2 + one
        for i in range(r_n):
            r = rows[b, i]
            ci = r // cell
            dr = np.float32(r - ci * cell)
            li = ci - i0
            ew = ew_c[b, i, 0]
            wr = dr * inv_s
            wr = wr * wr * (wr * m2 + three)
            nr_ = _inv_sqrt_half_one(wr * wr + (-wr + one) * (-wr + one))
            for j in range(c_n):
                c = cols[b, j]
                cj = c // cell
                dc = np.float32(c - cj * cell)
                lj = cj - j0
                x, y = gx[b, i, j], gy[b, i, j]
                ax, ay = abs(x), abs(y)
                big = ax if ax > ay else ay
                inv = f / (big + (ax + ay - big) * oct_k + eps)
                tx, ty = -y * inv, x * inv
                txe = tx * ew
                base = dc * txe + dr * ty
                sx, sy = txe * s32, ty * s32
                wc = dc * inv_s
                wc = wc * wc * (wc * m2 + three)
                norm = nr_ * _inv_sqrt_half_one(wc * wc + (-wc + one) * (-wc + one)) * profile_scale
                acc = np.float32(0.0)
                for kr in range(2):
                    w_r = wr if kr else (-wr + one)
                    for kc in range(2):
                        phase = base + phase0[li + kr, lj + kc]
                        if kc:
                            phase = phase - sx
                        if kr:
                            phase = phase - sy
                        d = phase - np.rint(phase)
                        prof = (d * d - twelfth) * (sign[li + kr, lj + kc] * (w_r * (wc if kc else (-wc + one))))
                        acc = prof if (kr == 0 and kc == 0) else acc + prof
                out[b, i, j] = acc * norm


def gully_field(seed: int, level: int, rows: np.ndarray, cols: np.ndarray, gx: np.ndarray, gy: np.ndarray,
                ew_c: np.ndarray, cell: int, wavelength: float, period: int | None, consts: tuple) -> np.ndarray:
    """``shaping.gully_field`` on numpy (rows (B, R), cols (B, C) increasing int64; gx, gy
    (B, R, C) float32; ew_c (B, R, 1) float32) -> (B, R, C) float32, the same bits.
    ``consts``: shaping's float32 constants (octagon factor, epsilon, profile scale, 1/12)."""
    out = np.empty(gx.shape, np.float32)
    oct_k, eps, scale, twelfth = (np.float32(c) for c in consts)
    _gully_field(np.uint64(noise.stream_key(seed, level, 3)), np.ascontiguousarray(rows, dtype=np.int64),
                 np.ascontiguousarray(cols, dtype=np.int64), gx, gy, ew_c, int(cell),
                 np.float32(1.0 / wavelength), oct_k, eps, scale, twelfth,
                 -1 if period is None else int(period // cell), out)
    return out


@jit.njit
def _clip01(x):
    """numpy's float clip to [0, 1]: max(x, 0) then min(., 1), +0.0 for -0.0 (as np.clip)."""
    zero = np.float32(0.0)
    one = np.float32(1.0)
    v = x if x > zero else zero
    return v if v < one else one


@jit.njit
def roughness(z, m, inv_ns, inv_ew, region_inv, has_region, table, lo, hi, tscale, half_rr, curv, damp, gain,
              eps, r_h, r_v, r_c):
    """The refiner's local roughness (``fractal._refine_core``, the "curvature" measure) at
    the parents, averaged to the new samples: z (B, h, w) float32 parent heights with margin
    m; inv_ew (B, nr, 1), region_inv (B, nr, nc) float32 (``has_region``); the roughness
    table and its float32 constants; ``curv``: the version-4 curvature factor with
    ``damp`` = -floor_damp * share and ``gain`` = crest_gain * share. Writes r_h (B, nr,
    nc-1), r_v (B, nr-1, nc), r_c (B, nr-1, nc-1) float32 in numpy's order."""
    b_n = z.shape[0]
    nr, nc = z.shape[1] - 2 * m, z.shape[2] - 2 * m
    two = np.float32(2.0)
    half = np.float32(0.5)
    one = np.float32(1.0)
    top = table.shape[0] - 2
    rough = np.empty((nr, nc), np.float32)
    for b in range(b_n):
        for i in range(nr):
            iew = inv_ew[b, i, 0]
            for j in range(nc):
                zc = z[b, i + m, j + m]
                sns = (z[b, i + m + 1, j + m] - zc * two) + z[b, i + m - 1, j + m]
                sew = (z[b, i + m, j + m + 1] - zc * two) + z[b, i + m, j + m - 1]
                dns = abs(sns) * inv_ns
                dew = abs(sew) * iew
                ratio = (dns + dew) * half_rr
                if has_region:
                    ratio = ratio * region_inv[b, i, j]
                v = ratio if ratio > lo else lo
                v = v if v < hi else hi
                t = (v - lo) * tscale
                k = np.int64(np.floor(t))
                k = min(max(k, 0), top)
                frac = t - np.float32(k)
                lo_v = table[k]
                r = lo_v + (table[k + 1] - lo_v) * frac
                if curv:
                    u = (sns * inv_ns + sew * iew) / ((dns + dew) + eps)
                    r = r * ((_clip01(u) * damp + _clip01(-u) * gain) + one)
                rough[i, j] = r
        for i in range(nr):
            for j in range(nc - 1):
                r_h[b, i, j] = (rough[i, j] + rough[i, j + 1]) * half
        for i in range(nr - 1):
            for j in range(nc):
                r_v[b, i, j] = (rough[i, j] + rough[i + 1, j]) * half
            for j in range(nc - 1):
                r_c[b, i, j] = (r_v[b, i, j] + r_v[b, i, j + 1]) * half


@jit.njit
def colour_detail(out, hx, vy, cc, g_h, g_v, g_c, lum_h, lum_v, lum_c, ar_h, ar_v, ar_c, kh, kl):
    """The refiner's colour channels of the new samples (``fractal._refine_core``'s last
    step): f = (g * kh + lum * kl) * amp + 1 per new sample, colour = clip(cubic * f, 0, 1);
    out (B, C, 2R-1, 2W-1) float32 written at (even, odd), (odd, even), (odd, odd)."""
    one = np.float32(1.0)
    b_n, c_n = out.shape[0], out.shape[1]
    for b in range(b_n):
        for i in range(g_h.shape[1]):  # even rows, odd columns
            a = ar_h[b, i, 0]
            for j in range(g_h.shape[2]):
                f = (g_h[b, i, j] * kh + lum_h[b, i, j] * kl) * a + one
                for c in range(1, c_n):
                    out[b, c, 2 * i, 2 * j + 1] = _clip01(hx[b, c, i + 1, j] * f)
        for i in range(g_v.shape[1]):  # odd rows, even columns
            for j in range(g_v.shape[2]):
                f = (g_v[b, i, j] * kh + lum_v[b, i, j] * kl) * ar_v + one
                for c in range(1, c_n):
                    out[b, c, 2 * i + 1, 2 * j] = _clip01(vy[b, c, i, j] * f)
        for i in range(g_c.shape[1]):  # odd rows, odd columns
            a = ar_c[b, i, 0]
            for j in range(g_c.shape[2]):
                f = (g_c[b, i, j] * kh + lum_c[b, i, j] * kl) * a + one
                for c in range(1, c_n):
                    out[b, c, 2 * i + 1, 2 * j + 1] = _clip01(cc[b, c, i, j] * f)


@jit.njit
def details(a_h, g_h, a_w, g_v, g_c, a_s, smooth, has_s, det_h, det_v, det_c):
    """The refiner's height detail in metres before the gullies (``fractal._refine_core``):
    det_h = a_h * g_h, det_v = a_w * g_v (+ a_s * smooth at even columns if ``has_s``), det_c =
    a_w * g_c (+ a_s * smooth at odd columns), each product and sum rounded to float32 as
    numpy's separate passes. a_* (B, n, 1) float32 per row, g_* and det_* (B, n, m), smooth
    (B, n, 2m-1)."""
    for b in range(g_h.shape[0]):
        for i in range(g_h.shape[1]):
            a = a_h[b, i, 0]
            for j in range(g_h.shape[2]):
                det_h[b, i, j] = a * g_h[b, i, j]
        for i in range(g_v.shape[1]):
            a = a_w[b, i, 0]
            s = a_s[b, i, 0] if has_s else np.float32(0.0)
            for j in range(g_v.shape[2]):
                d = a * g_v[b, i, j]
                if has_s:
                    d = d + s * smooth[b, i, 2 * j]
                det_v[b, i, j] = d
            for j in range(g_c.shape[2]):
                d = a * g_c[b, i, j]
                if has_s:
                    d = d + s * smooth[b, i, 2 * j + 1]
                det_c[b, i, j] = d


@jit.njit
def height_detail(out, hx, vy, cc, det_h, det_v, det_c, r_h, r_v, r_c, region, has_region, gain, has_gain,
                  centre):
    """The refiner's height channel of the new samples (``fractal._refine_core``'s step after the
    gullies): det *= region at the sample (if ``has_region``), det *= gain (if ``has_gain``),
    then (even, odd) = hx + det_h * r_h, (odd, even) = vy + det_v * r_v, (odd, odd) = cc +
    det_c * (r_c * centre), each product and sum rounded to float32 as numpy's separate passes.
    out (B, C, 2R-1, 2W-1) float32, channel 0 written; region (B, 2R-1, 2W-1) float32."""
    for b in range(out.shape[0]):
        for i in range(det_h.shape[1]):  # even rows, odd columns
            for j in range(det_h.shape[2]):
                d = det_h[b, i, j]
                if has_region:
                    d = d * region[b, 2 * i, 2 * j + 1]
                if has_gain:
                    d = d * gain
                out[b, 0, 2 * i, 2 * j + 1] = hx[b, 0, i + 1, j] + d * r_h[b, i, j]
        for i in range(det_v.shape[1]):  # odd rows, even columns
            for j in range(det_v.shape[2]):
                d = det_v[b, i, j]
                if has_region:
                    d = d * region[b, 2 * i + 1, 2 * j]
                if has_gain:
                    d = d * gain
                out[b, 0, 2 * i + 1, 2 * j] = vy[b, 0, i, j] + d * r_v[b, i, j]
        for i in range(det_c.shape[1]):  # odd rows, odd columns
            for j in range(det_c.shape[2]):
                d = det_c[b, i, j]
                if has_region:
                    d = d * region[b, 2 * i + 1, 2 * j + 1]
                if has_gain:
                    d = d * gain
                out[b, 0, 2 * i + 1, 2 * j + 1] = cc[b, 0, i, j] + d * (r_c[b, i, j] * centre)


@jit.warmer
def _warm() -> None:
    rows = np.arange(4, dtype=np.int64).reshape(1, 4)
    gauss_grid(1, 9, 0, rows, rows)
    ew_smooth(1, 9, rows, rows, np.full((1, 4, 1), 3, np.int64), np.full((1, 4, 1), 0.5))
    out = np.empty((4, 4), np.float32)
    relief_bilinear(np.ones((3, 3)), rows[0], 0, rows[0], 0, 2.0, out)
    relief_bilinear(np.ones((4, 4))[1:, 1:], rows[0], 0, rows[0], 0, 2.0, out)  # a view of a batch's grid
    x = np.ones((1, 4, 6, 6), np.float32)
    midpoints(x, 2, 1, 3), midpoints(x, 3, 1, 3)  # contiguous and sliced inputs, as the refiner
    midpoints(x[:, :, 1:5], 3, 1, 2), midpoints(x[..., 1:5], 2, 1, 2)
    for has_region in (True, False):
        height_detail(np.zeros((1, 4, 5, 5), np.float32), np.ones((1, 4, 5, 2), np.float32),
                      np.ones((1, 4, 2, 3), np.float32), np.ones((1, 4, 2, 2), np.float32),
                      np.ones((1, 3, 2), np.float32), np.ones((1, 2, 3), np.float32), np.ones((1, 2, 2), np.float32),
                      np.ones((1, 3, 2), np.float32), np.ones((1, 2, 3), np.float32), np.ones((1, 2, 2), np.float32),
                      np.ones((1, 5, 5), np.float32), has_region, np.float32(1.0), not has_region, np.float32(0.5))
    o = np.zeros((1, 4, 5, 5), np.float32)
    ones3, f1 = np.ones((1, 3, 2), np.float32), np.float32(1.0)
    a3 = np.ones((1, 3, 1), np.float32)
    for has_s in (True, False):
        details(a3, np.ones((1, 3, 2), np.float32), a3[:, :2], np.ones((1, 2, 3), np.float32),
                np.ones((1, 2, 2), np.float32), a3[:, :2] * 1, np.ones((1, 2, 5), np.float32), has_s,
                np.empty((1, 3, 2), np.float32), np.empty((1, 2, 3), np.float32), np.empty((1, 2, 2), np.float32))
    colour_detail(o, np.ones((1, 4, 5, 2), np.float32), np.ones((1, 4, 2, 3), np.float32),
                  np.ones((1, 4, 2, 2), np.float32), ones3, ones3[:, :2, :], ones3[:, :2, :2] * 1,
                  ones3, ones3[:, :2, :], ones3[:, :2, :2] * 1, a3, f1, a3[:, :2], f1, f1)
    zz = np.ones((1, 4, 5, 5), np.float32)[:, 0]  # a channel of the parents, as the refiner's view
    tab = np.ones(4097, np.float32)
    for region in (a3[:, :, :1].repeat(3, 2), np.ones((1, 1, 1), np.float32)):
        roughness(zz, 1, f1, a3, region, region.shape[2] > 1, tab, f1, f1, f1, f1, True, f1, f1, f1,
                  np.empty((1, 3, 2), np.float32), np.empty((1, 2, 3), np.float32), np.empty((1, 2, 2), np.float32))
    g = np.ones((1, 6, 6), np.float32)[:, ::2, 1::2]  # strided, as the refiner's views
    for period in (None, 64):
        gully_field(1, 10, rows[:, :3], rows[:, :3], g, g, np.ones((1, 6, 1), np.float32)[:, ::2], 8, 4.0, period,
                    (0.41421356, 1e-30, 13.4, 1.0 / 12.0))
