"""Terrain shaping for the fractal refiner (version 4): gullies, quiet floors, plains that stay.

Version 3 added isotropic white detail everywhere (scaled by the law, the region and the
parents' unsigned curvature), which reads as one bumpy grain, and its roughness feedback
(exponent 0.733 < 1) drifts every place toward typical roughness within a few levels, so a
plain under the Alps' relief window came out as hills. Three local rules, all pure functions
of a sample's own 3 x 3 parents and global coordinates (margin 1: nesting, seams and
determinism hold exactly as before), make the detail read more like terrain:

1. **Curvature sign** (:func:`curvature_factor`). The parents' signed Laplacian relative to
   its unsigned size, u in [-1, 1] (-1 a crest or summit, +1 a valley floor or basin),
   scales the detail by ``1 - floor_damp * u`` on floors and ``1 + crest_gain * |u|`` on
   crests: floors smooth out level after level while ridges keep their detail.
2. **Downslope gullies** (:func:`gully_field`). Where the parents slope steeply relative to
   the law, part of the detail becomes a wave that varies only *across* the local slope:
   each lattice cell of ``gully_cell`` child samples carries a wave of ``gully_wavelength``
   child samples with a random phase along the contour direction of the interpolated parent
   gradient, the four cells around a sample blended with smooth weights. Half the cells
   have sharp crests and round troughs (spurs), half the mirror (sharp gully floors), so the
   field is not skewed. Unit variance (:func:`unit_mix`), so the roughness law is unchanged.
   At every other level only (half the cost; the wave is v4's dearest part).
3. **Plains stay plains** (in ``generator.fractal``: the roughness table). Below a knee the
   modulation's exponent is > 1, so the feedback is bistable: smooth parents get smoother
   level after level while rough ones converge to typical roughness as before. Only at
   parent spacings <= 1.3 km: under the smooth 9.8 km anchor everything looks flat.

Rules 1 and 2 fade out below hillslope scales (parent spacing ``shape_fine_m`` ..
``shape_coarse_m``): real relief is smooth there (the law's fine exponent), and stripes of a
few metres only made the ground steeper (median slope at 1.2 m over the Alps 35 -> 47 deg).

Only exactly rounded operations (+, -, *, /, floor, round, abs, gathers, integer hashing)
act per sample, so numpy and torch agree bit for bit on the CPU (float32 sqrt does not:
:func:`_norm` avoids it).
"""

from __future__ import annotations

import math

import numpy as np

from generator import fractal_kernels, noise, shaping_kernels
from runtime import jit

_OCTAGON, _NORM_EPS = 0.41421356, 1e-30  # _norm's octagon factor and floor
_PROFILE_SCALE = float(np.float32(1.0 / np.sqrt(1.0 / 180.0)))
"""1 / std of d^2 for d uniform in [-1/2, 1/2] (E = 1/12, Var = 1/80 - 1/144 = 1/180)."""


def _f32(x: float) -> float:
    return float(np.float32(x))


def upsample(ops, a):
    """(b, n, m) per-parent values -> (b, 2n-1, 2m-1): even samples copied, new samples the
    mean of their 2 or 4 parents (fixed order, float32)."""
    b, n, m = a.shape
    out = ops.empty((b, 2 * n - 1, 2 * m - 1))
    if getattr(ops, "compiled", False) and isinstance(a, np.ndarray) and a.dtype == np.float32:
        shaping_kernels.upsample(a, out)  # the expressions below in one compiled pass (same bits)
        return out
    out[:, 0::2, 0::2] = a
    h = (a[:, :, :-1] + a[:, :, 1:]) * 0.5
    out[:, 0::2, 1::2] = h
    out[:, 1::2, 0::2] = (a[:, :-1, :] + a[:, 1:, :]) * 0.5
    out[:, 1::2, 1::2] = (h[:, :-1, :] + h[:, 1:, :]) * 0.5
    return out


def curvature_factor(lap_n, abs_n, floor_damp: float, crest_gain: float):
    """Detail factor per parent: 1 - floor_damp * u where u = signed / unsigned curvature > 0
    (normalised second differences; +1 concave, a valley floor or basin), 1 + crest_gain * |u|
    where u < 0 (convex, a crest). float32 (b, n, m)."""
    u = lap_n / (abs_n + _f32(1e-6))
    return u.clip(0.0, 1.0) * _f32(-floor_damp) + (-u).clip(0.0, 1.0) * _f32(crest_gain) + 1.0


def fade(parent_spacing_m: float, fine_m: float, coarse_m: float) -> float:
    """Share of the shaping at this parent spacing: 0 at or below ``fine_m``, 1 at or above
    ``coarse_m``, linear in log spacing between (a per-call float, libm)."""
    if parent_spacing_m <= fine_m:
        return 0.0
    if parent_spacing_m >= coarse_m:
        return 1.0
    return math.log(parent_spacing_m / fine_m) / math.log(coarse_m / fine_m)


def slope_share(sx, sy, lo: float, hi: float, top: float):
    """Per parent: a share in [0, top] rising linearly in the squared normalised slope
    sx^2 + sy^2 from lo^2 to hi^2 (float32 arrays like sx; v4's and v7's gully weights)."""
    s2 = sx * sx + sy * sy
    lo2, hi2 = lo**2, hi**2
    t = ((s2 - _f32(lo2)) * _f32(1.0 / (hi2 - lo2))).clip(0.0, 1.0)
    return t * _f32(top)


def gully_weight(sx, sy, cfg, share: float):
    """Per parent: s in [0, gully_mix * share], the unit-circle parameter of the gully share,
    rising linearly in squared normalised slope from gully_slope_lo^2 to gully_slope_hi^2."""
    return slope_share(sx, sy, cfg.gully_slope_lo, cfg.gully_slope_hi, cfg.gully_mix * share)


def stripes_mix(ops, dzx, dzy, plan: dict, inv_ew, dets, weigh, stripes, gain: float | None = None):
    """Mix a slope-following field into the refiner's three detail arrays ``dets`` (metres;
    even rows x odd columns, odd x even, odd x odd) in proportion to the parents' normalised
    slope: v4's downslope wave (:func:`gullies`) and v7's erosion filter (``generator.gully``).
    dzx, dzy (b, nr, nc): the parents' central height differences east and south; inv_ew
    (b, nr, 1): 1 / (2 sigma) east-west; plan: FractalRefiner._plan's. ``weigh(sx, sy)``: the
    per-parent share from the normalised slopes; ``stripes(rows, cols, gx, gy, ew_c, share)``:
    the unit-variance field at one kind of new sample; ``gain``: its amplitude factor."""
    sx, sy = dzx * inv_ew, dzy * float(plan["inv_ns"])
    if plan.get("region") is not None:  # steep relative to the region's own law
        sx, sy = sx * ops.array(plan["region_inv"]), sy * ops.array(plan["region_inv"])
    q = upsample(ops, weigh(sx, sy))
    if not bool((q > 0.0).any()):  # nowhere steep: unit_mix(d, g, 0) is d exactly, skip the field
        return dets
    gx = upsample(ops, dzx * ops.array(plan["ew_p_inv"]))
    gy = upsample(ops, dzy)
    rows, cols = ops.array(plan["rows"]), ops.array(plan["cols_raw"])
    ew_c, a_h, sig = ops.array(plan["ew_c"]), ops.array(plan["a_h"]), float(plan["sig_ns"])
    out = []
    # the field at the three kinds of new sample only (even rows x odd cols, odd x even, odd x odd)
    for det, rs, cs, amp in zip(dets, (slice(0, None, 2), slice(1, None, 2), slice(1, None, 2)),
                                (slice(1, None, 2), slice(0, None, 2), slice(1, None, 2)), (a_h, sig, sig)):
        share = q[:, rs, cs]
        g = stripes(rows[:, rs], cols[:, cs], gx[:, rs, cs], gy[:, rs, cs], ew_c[:, rs], share)
        out.append(unit_mix(det, g * (amp if gain is None else amp * gain), share))
    return tuple(out)


def gullies(ops, dzx, dzy, plan: dict, cfg, inv_ew, det_h, det_v, det_c):
    """Version 4's downslope wave (:func:`gully_field`) mixed into the three detail arrays
    (:func:`stripes_mix`)."""
    def wave(rows, cols, gx, gy, ew_c, share):
        return gully_field(ops, plan["seed"], plan["level"], rows, cols, gx, gy, ew_c, cfg, plan["period"])

    return stripes_mix(ops, dzx, dzy, plan, inv_ew, (det_h, det_v, det_c),
                       lambda sx, sy: gully_weight(sx, sy, cfg, plan["shape"]), wave)


def gully_field(ops, seed: int, level: int, rows, cols, gx, gy, ew_c, cfg, period: int | None):
    """(b, R, C) float32 unit-variance wave varying across the local slope.

    rows (b, R), cols (b, C) int64 global child samples, increasing (cols not wrapped: on
    earth ``period``, the column period, wraps the lattice for its noise; None on the plane);
    gx, gy (b, R, C) float32 parent gradient interpolated to the child samples (east, south;
    metres per metre up to a common factor); ew_c (b, R, 1) float32 east-west / north-south
    spacing of each child row. Each lattice cell's wave has a random phase and a random sign:
    a profile with sharp crests and round troughs (spurs) or its mirror (gullies), so the
    field is not skewed. The cells' random numbers are hashed once per cell and gathered.
    """
    if getattr(ops, "compiled", False):  # numpy with runtime.jit on: the same expression, compiled
        return fractal_kernels.gully_field(seed, level, rows, cols, gx, gy, ew_c, cfg.gully_cell, cfg.gully_wavelength,
                                           period, (_OCTAGON, _NORM_EPS, _PROFILE_SCALE, 1.0 / 12.0))
    S = int(cfg.gully_cell)
    f = _f32(1.0 / cfg.gully_wavelength)
    # unit contour direction (tx, ty) = (-gy, gx) / |g| in (east, south) metres, times the
    # wave number: the phase of corner (kr, kc) is base - kc * ax - kr * ay + its own phase
    inv = f / _norm(ops, gx, gy)
    tx, ty = -gy * inv, gx * inv
    r, c = rows[:, :, None], cols[:, None, :]
    ci, cj = r // S, c // S
    dr, dc = ops.f32(r - ci * S), ops.f32(c - cj * S)  # offsets inside the cell, [0, S)
    txe = tx * ew_c
    base = dc * txe + dr * ty
    ax, ay = txe * _f32(S), ty * _f32(S)
    wr, wc = dr * _f32(1.0 / S), dc * _f32(1.0 / S)
    wr = wr * wr * (wr * -2.0 + 3.0)  # smoothstep weights of the far corners
    wc = wc * wc * (wc * -2.0 + 3.0)
    # 1 / sqrt(sum of squared weights), separable: keeps the blend at unit variance
    norm = _inv_sqrt_half_one(wr * wr + (-wr + 1.0) * (-wr + 1.0)) * _inv_sqrt_half_one(
        wc * wc + (-wc + 1.0) * (-wc + 1.0)) * _f32(_PROFILE_SCALE)
    # per-cell phase and sign on the lattice the block touches, hashed by global cell index
    i0, j0 = ci[:, :1], cj[:, :, :1]  # (b, 1, 1)
    li, lj = ci - i0, cj - j0
    ni, nj = int(li.max()) + 2, int(lj.max()) + 2
    lat_i = i0[:, :, 0] + ops.arange(ni)[None]  # (b, ni)
    lat_j = j0[:, 0, :] + ops.arange(nj)[None]
    if period is not None:
        lat_j = lat_j % (period // S)
    u = ops.uniform_pairs(noise.stream_key(seed, level, 3), lat_i[:, :, None], lat_j[:, None, :]) * 2.0
    flip = ops.floor(u)  # [0, 2): the cell's phase (fraction) and sign (floor)
    phase0, sign = u - flip, flip * -2.0 + 1.0
    aligned = bool((li == li[:1]).all()) and bool((lj == lj[:1]).all())  # pyramid blocks: yes
    bi = ops.arange(rows.shape[0])[:, None, None]

    def gather(a, kr, kc):  # a (b, ni, nj) at every sample's corner (kr, kc): (b, R, C)
        if aligned:  # one index per axis (a fast take), the same for every block
            return a[:, li[0, :, 0] + kr][:, :, lj[0, 0] + kc]
        return a[bi, li + kr, lj + kc]

    acc = None
    for kr in (0, 1):
        w_r = wr if kr else (-wr + 1.0)
        for kc in (0, 1):
            phase = base + gather(phase0, kr, kc)
            if kc:
                phase = phase - ax
            if kr:
                phase = phase - ay
            d = phase - ops.round(phase)  # [-1/2, 1/2]: 0 in a round trough, +-1/2 a sharp crest
            prof = (d * d - _f32(1.0 / 12.0)) * (gather(sign, kr, kc) * (w_r * (wc if kc else (-wc + 1.0))))
            acc = prof if acc is None else acc + prof
    return acc * norm


def _norm(ops, gx, gy):
    """|(gx, gy)| within 8 % (the octagon estimate max + 0.414 min, never low), with +, * and abs
    only (float32 sqrt is not rounded alike by numpy and torch): it only scales the gully wave
    length, by at most 8 %."""
    ax, ay = abs(gx), abs(gy)
    big = ops.where(ax > ay, ax, ay)
    return big + (ax + ay - big) * _f32(_OCTAGON) + _f32(_NORM_EPS)


def _inv_sqrt_half_one(a):
    """1 / sqrt(a) for a in [0.5, 1] to ~1e-6: a linear start and two Newton steps."""
    y = a * _f32(-0.7) + _f32(1.7)
    y = y * ((a * y * y) * _f32(-0.5) + _f32(1.5))
    return y * ((a * y * y) * _f32(-0.5) + _f32(1.5))


def unit_mix(white, ridged, s):
    """white * (1 - s^2)/(1 + s^2) + ridged * 2s/(1 + s^2): unit variance for independent unit
    inputs, only +, *, / (s = tan of half the mixing angle)."""
    if (jit.ENABLED and all(isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 3 for x in
                            (white, ridged, s)) and white.shape == ridged.shape == s.shape):
        out = np.empty(white.shape, np.float32)
        shaping_kernels.unit_mix(white, ridged, s, out)  # the expression below, compiled (same bits)
        return out
    s2 = s * s
    den = s2 + 1.0
    return white * ((-s2 + 1.0) / den) + ridged * ((s + s) / den)
