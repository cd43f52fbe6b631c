"""Fractal refiner version 7: an erosion-filter detail term (gullies and spurs that follow the slope).

Versions 3-6 add white detail per new sample, which reads as isotropic grain (lumps, no ridges
or valleys that connect). Version 7 turns part of each level's detail into the "erosion filter"
of procedural terrain (Clay John's eroded noise, Rune Skovbo Johansen's terrain erosion filter):
every new sample blends the stripes of the jittered lattice points around it,

    field(p) = sum_k w_k prof((p - c_k) . t / lambda + phi_k) / sqrt(sum_k w_k^2),

where c_k are the points of the 3 x 3 lattice cells around p (one point per cell of ``cell``
child samples, jittered by up to ``jitter`` / 2 of a cell around its centre, hashed by GLOBAL
cell index), w_k = max(0, 1 - |p - c_k|^2 / R^2)^2 a compact bell (R = (1.5 - jitter / 2)
cells: every point outside the 3 x 3 cells is at or beyond R, so the field is continuous),
t the unit vector perpendicular to the parents' gradient at p (so each stripe is constant
DOWN the slope: gullies and spurs), and prof a periodic profile with sharp crests and round
troughs (``sharp``: the parabola d^2 - 1/12, d = phase - round(phase)) blended with a smooth one
(2 smoothstep(2|d|) - 1). The field has about unit variance and replaces a share of the white
detail that grows with the parents' slope relative to the law (none on flats: plains stay
plains) through :func:`generator.shaping.unit_mix`, so the roughness law's variance, hence the
spectra, stays. Each level's gradient comes from parents that hold the previous levels'
gullies, so the next level's stripes run down the gullies' walls: tributaries.

Pure function of (world, seed, level, global sample index, the sample's own 3 x 3 parents):
margin 1, exactly nested, seamless and deterministic as versions 3-5. Float32 with exactly
rounded operations only (+, -, *, /, sqrt, round, floor and integer hashing), so the compiled
twin (:mod:`generator.gully_kernels`) gives the same bits. numpy (and numba) only: the torch
backend refuses version 7.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from generator import gully_kernels, noise, shaping

STREAM = 4
"""Noise stream of the lattice (0 height, 1 colour, 2 east-west lattice, 3 v4 gullies)."""
_EPS = 1e-30


def _f32(x: float) -> float:
    return float(np.float32(x))


@lru_cache(maxsize=16)
def profile_weights(sharp: float) -> tuple[float, float]:
    """(k_ridged, k_smooth): float32 weights of the parabolic (sharp crests, round troughs) and
    smooth profiles so that their mix, for d uniform in [-1/2, 1/2], has unit variance."""
    if not 0.0 <= sharp <= 1.0:
        raise ValueError(f"gully7_sharp must be in [0, 1], got {sharp}")
    d = (np.arange(200_000, dtype=np.float64) + 0.5) / 200_000 - 0.5
    ridged = d * d - 1.0 / 12.0
    e = 2.0 * np.abs(d)
    smooth = 2.0 * e * e * (3.0 - 2.0 * e) - 1.0
    mix = sharp * ridged / ridged.std() + (1.0 - sharp) * smooth / smooth.std()
    s = mix.std()
    return _f32(sharp / ridged.std() / s), _f32((1.0 - sharp) / smooth.std() / s)


def lattice_constants(cfg) -> tuple[float, float, float, float, float]:
    """(1 / lambda, jitter span, half cell, 1 / R^2, phase jitter) as float32 values, lengths in
    child samples and the phase in cycles; validates the configuration."""
    s, j = int(cfg.gully7_cell), float(cfg.gully7_jitter)
    if s < 2 or not 0.0 <= j <= 0.5:
        raise ValueError(f"gully7_cell must be >= 2 and gully7_jitter in [0, 0.5], got {s}, {j}")
    if cfg.gully7_wavelength <= 0.0:
        raise ValueError(f"gully7_wavelength must be > 0 child samples, got {cfg.gully7_wavelength}")
    r = (1.5 - 0.5 * j) * s
    return (_f32(1.0 / cfg.gully7_wavelength), _f32(j * s), _f32(0.5 * s), _f32(1.0 / (r * r)),
            _f32(cfg.gully7_phase_jitter))


def field(seed: int, level: int, rows: np.ndarray, cols: np.ndarray, gx: np.ndarray, gy: np.ndarray,
          ew_c: np.ndarray, cfg, period: int | None, compiled: bool = False, share=None) -> np.ndarray:
    """(b, R, C) float32 erosion-filter field of about unit variance (see module doc).

    rows (b, R), cols (b, C) int64 global child samples (cols not wrapped; on earth ``period``,
    the column period, wraps the lattice's hash; None on the plane); gx, gy (b, R, C) float32
    the parents' gradient at the child samples (east, south, in a common unit per metre);
    ew_c (b, R, 1) float32 east-west / north-south spacing of each child row.
    ``compiled``: the numba twin (same bits). ``share`` (b, R, C) float32 or None: where it is
    <= 0 the field is not needed (the mix gives it no weight) and is 0.
    """
    s = int(cfg.gully7_cell)
    inv_lam, jspan, half, inv_r2, pj = lattice_constants(cfg)
    kr_, ks_ = profile_weights(cfg.gully7_sharp)
    pc = -1 if period is None else int(period // s)
    if period is not None and period % s:
        raise ValueError(f"the column period {period} must be a multiple of gully7_cell {s}")
    key = noise.stream_key(seed, level, STREAM)
    if compiled:
        return gully_kernels.field(key, rows, cols, gx, gy, ew_c, s, (inv_lam, jspan, half, inv_r2, pj, kr_, ks_),
                                   pc, share)
    r, c = rows[:, :, None], cols[:, None, :]
    ci, cj = r // s, c // s
    fr, fc = r - ci * s, c - cj * s  # int64 offsets inside the cell, [0, s)
    gn = np.sqrt(gx * gx + gy * gy) + _f32(_EPS)
    inv = _f32(inv_lam) / gn
    tx, ty = -gy * inv, gx * inv  # contour direction / lambda (east, south)
    txe = tx * ew_c
    acc = np.zeros(gx.shape, np.float32)
    w2 = np.zeros(gx.shape, np.float32)
    m24, m16 = np.uint64(0xFFFFFF), np.uint64(0xFFFF)
    for dr in (-1, 0, 1):
        li = ci + dr
        oy = (dr * s - fr).astype(np.float32)  # (b, R, 1)
        for dc in (-1, 0, 1):
            lj = cj + dc
            if pc > 0:
                lj = lj % pc
            h = noise.hash_pairs(key, li, lj)  # (b, R, C)
            ur = (h >> np.uint64(40)).astype(np.float32) * _f32(2.0**-24)
            uc = ((h >> np.uint64(16)) & m24).astype(np.float32) * _f32(2.0**-24)
            up = (h & m16).astype(np.float32) * _f32(2.0**-16)
            dy = oy + ((ur - 0.5) * _f32(jspan) + _f32(half))
            dx = (dc * s - fc).astype(np.float32) + ((uc - 0.5) * _f32(jspan) + _f32(half))
            w = np.maximum((dx * dx + dy * dy) * _f32(-inv_r2) + 1.0, np.float32(0.0))
            w = w * w
            ph = (dx * txe + dy * ty) + (up - 0.5) * _f32(pj)
            d = ph - np.round(ph)
            e = abs(d) * 2.0
            prof = (d * d - _f32(1.0 / 12.0)) * _f32(kr_) + ((e * e * (e * -2.0 + 3.0)) * 2.0 - 1.0) * _f32(ks_)
            acc = acc + w * prof
            w2 = w2 + w * w
    out = acc / np.sqrt(w2)
    return out if share is None else np.where(share > 0.0, out, np.float32(0.0))


def weight(sx, sy, cfg, share: float):
    """Per parent: the unit-circle parameter of the gully share in [0, gully7_mix * share],
    rising linearly in squared normalised slope from gully7_slope_lo^2 to gully7_slope_hi^2."""
    return shaping.slope_share(sx, sy, cfg.gully7_slope_lo, cfg.gully7_slope_hi, cfg.gully7_mix * share)


def gullies(ops, dzx, dzy, plan: dict, cfg, inv_ew, det_h, det_v, det_c):
    """Mix the erosion-filter field into the refiner's three detail arrays (metres; even rows x
    odd columns, odd x even, odd x odd) in proportion to the parents' normalised slope
    (``shaping.stripes_mix``; plan's ``gully7`` the fade, ``gully7_gain`` the amplitude)."""
    def erosion(rows, cols, gx, gy, ew_c, share):
        c = np.ascontiguousarray
        return field(plan["seed"], plan["level"], rows, cols, c(gx), c(gy), c(ew_c), cfg, plan["period"],
                     compiled=ops.compiled, share=c(share))

    return shaping.stripes_mix(ops, dzx, dzy, plan, inv_ew, (det_h, det_v, det_c),
                               lambda sx, sy: weight(sx, sy, cfg, plan["gully7"]), erosion,
                               gain=_f32(plan["gully7_gain"]))
