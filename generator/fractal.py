"""Procedural fractal refiner: interpolating cubic subdivision plus scaled noise.

The baseline and the CPU default (DESIGN.md section 2.4). Each new child sample
is the 4-point cubic (Dyn-Levin-Gregory "four-point scheme", weights
-1/16, 9/16, 9/16, -1/16) of its parents along rows, columns or both, plus
counter-based noise whose standard deviation follows the roughness-vs-scale
law fitted on real DEMs (``generator.eval.lawfit``, docs/GENERATOR.md):

    sigma(d, x) = region(x) * amp_at_1km_m * g(d),

where d is the parent spacing in metres along the interpolation direction (on
the earth the east-west spacing shrinks with cos(latitude), so detail is
scaled in metres and nothing stretches toward the poles) and g is a power law
whose exponent changes at two knots: real relief is smooth at hillslope scales
(exponent 1.30 below 400 m) and relatively rough at range scales (0.45 above
2 km). ``region(x)`` is the regional detail factor from the anchor's relief
(``generator.relief``): plains stay plain and ranges rough at every level. A
local modulation by the parents' second differences, relative to what the law
expects there, adds more detail where the parents curve more; its exponent
< 1 keeps the feedback stable.
Using the cubic (not the linear) midpoint avoids the creases of classic
midpoint displacement along the grid lines (Miller 1986). Version 4 shapes the detail
(``generator.shaping``): downslope gullies on steep parents, quieter valley floors, and a
bistable roughness feedback below a knee so that plains stay plains. Version 5 knows whether
its parents are real terrain (``real_parents``: ``refine``, the deep cascade); there the knee
acts at every spacing (0.5), over the worlds' anchors v5 computes v4's heights (decision 30).

Margin 1: a new sample needs its parents' immediate neighbours only.
Everything is elementwise on shifted slices in a fixed order, so a sample's
float32 value does not depend on the crop, the batch or the tile. The same
arithmetic core runs on numpy (the reference) and torch (CPU/CUDA), using only
exactly rounded operations so that the two agree bit for bit on the CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from generator import erosion, fractal_kernels, gully, noise, shaping
from generator.relief import RegionalRelief
from generator.worldmetric import canonical_cols, cols_per_world, ew_scale, spacing_ns_m
from runtime import jit
from runtime.tiles import ANCHOR_LEVEL, World


def hinges(x: np.ndarray, fine_knot_m: float, coarse_knot_m: float) -> tuple[np.ndarray, np.ndarray]:
    """min(0, x - xf) and max(0, x - xc) for x = log10(d / 1 km): the two slope changes."""
    xf, xc = np.log10(fine_knot_m / 1000.0), np.log10(coarse_knot_m / 1000.0)
    return np.minimum(0.0, x - xf), np.maximum(0.0, x - xc)


def law_sigma_m(d_m, amp_at_1km_m: float, hurst: float, hurst_fine: float | None = None,
                hurst_coarse: float | None = None, fine_knot_m: float = 0.0,
                coarse_knot_m: float = 0.0) -> np.ndarray:
    """Detail std (m) at parent spacing d_m (m, any shape): ``amp * (d / 1 km) ** hurst``,
    with slope ``hurst_fine`` below ``fine_knot_m`` and ``hurst_coarse`` above ``coarse_knot_m``
    when given (continuous in log-log; the knots must bracket 1 km). float64."""
    with np.errstate(divide="ignore"):  # d = 0 (along a pole row): sigma 0
        x = np.log10(np.asarray(d_m, dtype=np.float64) / 1000.0)
    y = hurst * x
    if hurst_fine is not None:
        if not 0.0 < fine_knot_m <= 1000.0 <= coarse_knot_m:
            raise ValueError(f"knots must satisfy 0 < fine <= 1000 m <= coarse, got {fine_knot_m}, {coarse_knot_m}")
        lo, hi = hinges(x, fine_knot_m, coarse_knot_m)
        y = y + (hurst_fine - hurst) * lo + (hurst_coarse - hurst) * hi
    return amp_at_1km_m * 10.0**y



@dataclass(frozen=True)
class FractalConfig:
    """Parameters of the fractal refiner (units in the names; defaults fitted, see docs)."""

    amp_at_1km_m: float = 46.7
    """Std of the detail added at parent spacing 1 km, metres (law intercept)."""
    hurst: float = 0.877
    """Slope of log(detail std) against log(spacing) between the knots (law exponent)."""
    hurst_fine: float | None = 1.304
    """Slope below ``fine_knot_m``: real relief is smooth at hillslope scales (None: one law)."""
    hurst_coarse: float | None = 0.449
    """Slope above ``coarse_knot_m``: relatively more relief at mountain-range scales."""
    fine_knot_m: float = 400.0
    coarse_knot_m: float = 2000.0
    regional: bool = True
    """Scale the law by the region's detail factor from the anchor's relief (generator.relief)."""
    roughness_measure: str = "curvature"
    """Local roughness from the parents' second differences ("curvature"; a smooth slope is
    not rough) or central differences ("slope", version 2: every hillside read as rough)."""
    relief_ratio: float = 1.21
    """Typical |difference| / (2 sigma(spacing)) of real terrain (normalises roughness)."""
    roughness_exp: float = 0.733
    """Exponent of the relief modulation (< 1: rough stays rough, but no runaway); fitted
    with the second-difference measure (the central-difference one gave 0.61)."""
    ew_corr_samples: float = 1.0
    """Correlation length, in samples at the equator, of the east-west-smooth odd-row detail
    (1: lattice cells as wide in metres as a sample is tall; 1.5 under the v2 law left the
    east-west detail 10-15 % short at 70 degrees under the steeper fine-scale law)."""
    centre_ratio: float = 1.0
    """Detail std at cell centres (odd, odd) relative to edge midpoints. Real DEMs give 1.18
    (median over DEMs and scales), but 1.0 scores better on every realism measure of eval."""
    roughness_min: float = 0.048
    roughness_max: float = 4.67
    roughness_max_real: float = 4.67
    """The ceiling over real parents (version 5 keeps 4.67). Measured at 10: the one real 10 m
    DEM (Ecuador) refined back from 80 m gets its finest octave right (0.6 -> 1.3x the real
    power) and slope W1 3.6 -> 2.6 deg, but twice the local extrema (7.7 -> 14 per 1000 samples,
    real 2.5), and the 11 located DEMs lose (deep cascade 0.78 -> 0.74 of cells over bicubic,
    finest octave 3.7 -> 5.1x): more grain, not more terrain."""
    floor_damp: float = 0.2
    """Version 4 (generator.shaping): detail x (1 - this * u) where u = signed / unsigned parent
    curvature > 0 (+1 valley floor or basin): quiet floors. 0 (and the two below): version 3."""
    crest_gain: float = 0.2
    """Version 4: detail x (1 + this * |u|) on crests (u < 0)."""
    gully_mix: float = 0.45
    """Version 4: the largest share of the detail given to downslope gullies, as tan(angle / 2)
    of a unit-variance mix (0: none, 1: all), reached at ``gully_slope_hi``."""
    gully_slope_lo: float = 1.0
    """Normalised parent slope (central difference / (2 law sigma)) where gullies start."""
    gully_slope_hi: float = 4.0
    gully_cell: int = 8
    """Gully lattice cell, child samples (a wave stays coherent over about two cells)."""
    gully_wavelength: float = 4.0
    """Gully wave length across the slope, child samples."""
    gully_level_step: int = 2
    """Gullies at levels divisible by this only (2: every other level, half the cost: the wave
    is the dearest part of v4, and one every two octaves is enough to read as drainage)."""
    plain_knee: float = 0.3
    """Version 4: below this normalised roughness the modulation is clip(ratio)^plain_exp
    (continuous at the knee) instead of ^roughness_exp: with an exponent > 1 the feedback
    is bistable, so smooth parents get smoother level after level (plains stay plains)
    while rough ones converge to typical roughness as before. 0: off."""
    plain_exp: float = 1.5
    plain_max_m: float = 1300.0
    """The knee acts only at parent spacings up to this (m): the first levels under the 9.8 km
    anchor are smooth because the anchor is, not because the ground is a plain (ETOPO5
    outside GLOBE: a knee there flattened the Colorado Front Range's foothills)."""
    plain_knee_real: float = 0.5
    """Version 5: when the parents are real terrain (``FractalRefiner(real_parents=True)``: a
    user's DEM, the deep cascade from a decimated DEM) the knee sits here and acts at every
    parent spacing, not only below ``plain_max_m``: real parents are not the smoothed anchor,
    and real 1-30 km terrain says smooth stays smooth (detail against parent curvature,
    log-log slope 1.0-1.6 on the GLOBE desert crops at 1.9-30 km, 0.3-0.8 in mountains).
    0: off (version 4). Over the worlds' anchors it would flatten everything (plane seed 7:
    median slope at level 9 4 -> 0.5 deg), so there the version-4 knee stays."""
    shape_fine_m: float = 40.0
    """Parent spacing (m) at and below which the version-4 shaping is off (hillslope scales)."""
    shape_coarse_m: float = 400.0
    """Parent spacing (m) at and above which it is fully on (log-linear between)."""
    incise_radius: int = 0
    """Version 6 (``generator.erosion``, ``V6``: 2): after the detail, each level's new samples
    are cleaned of strict extrema, routed (D8) and incised along flow by q(A) * drop, A the
    upstream samples within this many steps; parents that became pits or peaks drain through
    a midpoint. 0: off (version 5, the default: v6 cuts the grain's extrema 3-5x but does not
    yet read as drainage, docs/BENCHMARKS.md "Procedural refiner v6"). The margin grows to
    1 + ceil((radius + 6) / 2) parents."""
    incise_k: float = 0.25
    """q(A) = min(incise_max, incise_k * (A ** incise_m - 1)): the share of the drop to the
    receiver a new sample is lowered by (0 on divides, A = 1)."""
    incise_m: float = 0.5
    incise_max: float = 0.6
    incise_fine_m: float = 5.0
    """Child spacing (m) at and below which the incision is off (vehicle scale; the cleaning
    stays); full at and above ``incise_coarse_m``, log-linear between."""
    incise_coarse_m: float = 40.0
    incise_creep: float = 0.0
    """Version 6: before routing, each new sample moves this share toward the mean of its 8
    neighbours (hillslope creep: planar facets between the channels), times the fade."""
    incise_flow_smooth: float = 0.0
    """Version 6: each routed new sample moves this share toward the mean of its receiver and
    its main donor (smoothing along the flow, not across it: downslope streaks). 0: off."""
    incise_detail_gain: float = 1.0
    """Version 6: the new samples' detail x this (times the erosion's share) before the step,
    so that what the creep smooths is not lost from the roughness feedback."""
    erode_max_m: float = 200.0
    """Version 6: the whole erosion step (cleaning included) acts at child spacings up to this
    (m), none at and above ``erode_off_m`` (log-linear blend between): at kilometre scales the
    anchor or the real parents carry the drainage, and the GLOBE deserts' fine texture is real."""
    erode_off_m: float = 800.0
    gully7_mix: float = 0.0
    """Version 7 (``generator.gully``, ``V7``): the largest share of the detail given to the
    erosion-filter field (stripes down the parents' slope from a jittered lattice: gullies and
    spurs), as tan(angle / 2) of a unit-variance mix (1: all), reached at ``gully7_slope_hi``.
    0: off (versions 5 and 6)."""
    gully7_slope_lo: float = 0.3
    """Normalised parent slope (central difference / (2 law sigma)) where the field starts."""
    gully7_slope_hi: float = 1.5
    gully7_cell: int = 4
    """Lattice cell of the field, child samples (one jittered point per cell, 3 x 3 blended)."""
    gully7_wavelength: float = 4.0
    """Stripe wave length across the slope, child samples (4: the finest the new samples carry)."""
    gully7_jitter: float = 0.5
    """Lattice points within +- this / 2 of a cell around the cell centre (at most 0.5)."""
    gully7_phase_jitter: float = 0.5
    """Random phase per point, in cycles (uniform in +- this / 2): gullies that start and end."""
    gully7_sharp: float = 0.7
    """Share of the profile with sharp crests and round troughs (the rest smooth)."""
    gully7_gain: float = 1.0
    """The field's amplitude relative to the law's sigma over the worlds' anchors (1: the level's
    variance unchanged)."""
    gully7_gain_real: float = 1.0
    """The same over real parents (``real_parents``: the deep cascade, a user's DEM)."""
    gully7_max_m: float = 1e9
    """Parent spacing (m) above which version 7's field is off (the anchor's kilometre levels)."""
    gully7_fine_m: float = 10.0
    """Parent spacing (m) at and below which version 7's field is off; full at and above
    ``gully7_coarse_m`` (log-linear between)."""
    gully7_coarse_m: float = 80.0
    rgb_amp_at_1km: float = 0.101
    """Relative colour detail at 1 km parent spacing."""
    rgb_hurst: float = 0.054
    rgb_max: float = 0.3
    rgb_height_coupling: float = 0.5
    """Share of the colour detail that follows the height detail (shading-like albedo)."""


class FractalRefiner:
    """The procedural refiner (see module doc).

    ``device=None`` runs the numpy reference; ``device="cpu"`` or ``"cuda"`` runs the same
    arithmetic (:func:`_refine_core`) in torch float32. Noise and per-row terms are identical;
    results agree with numpy to float32 rounding of ``pow`` (well under 1 mm), and a torch
    pyramid is itself exactly seamless and nested because every sample is still computed
    from its own coordinates. The device is part of ``config()``, so of the model id.
    """

    name = "fractal"
    version = "5"  # "6" where incise_radius > 0 (set per instance)
    margin = 1  # 1 + ceil(erosion.reach / 2) with the incision (set per instance)
    channels = 4
    min_level = ANCHOR_LEVEL  # coarsest level it refines to: its regional relief starts at the anchor

    def __init__(self, world: World | str = World.PLANE, config: FractalConfig = FractalConfig(),
                 spacing_scale: float = 1.0, device: str | None = None, real_parents: bool = False):
        self.world = World.parse(world) if not isinstance(world, World) else world
        if config.roughness_measure not in ("curvature", "slope"):
            raise ValueError(f"roughness_measure must be 'curvature' or 'slope', got {config.roughness_measure!r}")
        if config.incise_radius < 0:
            raise ValueError(f"incise_radius must be >= 0, got {config.incise_radius}")
        self.cfg = config
        self._incise = config.incise_radius > 0 and config.amp_at_1km_m > 0.0
        self._gully7 = config.gully7_mix > 0.0 and config.amp_at_1km_m > 0.0
        if self._gully7:
            gully.lattice_constants(config), gully.profile_weights(config.gully7_sharp)  # validate
            if device is not None:
                raise ValueError(f"version 7 (gully7_mix > 0) runs on numpy only, got device={device!r}")
        self.version = "7" if self._gully7 else "6" if self._incise else "5"
        reach = erosion.reach(config.incise_radius, config.incise_flow_smooth > 0)
        self.margin = 1 + (-(-reach // 2) if self._incise else 0)
        self.spacing_scale = float(spacing_scale)  # metres per sample = spacing_m(level) * this
        self.device = device
        self.real_parents = bool(real_parents)  # parents are real terrain, not the anchor's levels
        self._ops = _NumpyOps() if device is None else _TorchOps(device)
        self.relief = RegionalRelief(self.world) if config.regional and config.amp_at_1km_m > 0 else None
        # clip(R)^exponent as a piecewise-linear table: +, *, floor and a gather are exactly
        # rounded on every backend, pow is not (numpy and torch differ in the last bit)
        lo, hi = config.roughness_min, config.roughness_max
        grid = lo + (hi - lo) * np.arange(_ROUGH_TABLE + 1) / _ROUGH_TABLE
        self._rough_table = (grid**config.roughness_exp).astype(np.float32)
        self._rough_table[-1] = np.float32(hi**config.roughness_exp)
        self._plain_table = self._rough_table
        if config.plain_knee > 0.0:  # bistable below the knee (version 4: plains stay plains)
            k = config.plain_knee
            knee = np.where(grid < k, k**config.roughness_exp * (grid / k) ** config.plain_exp,
                            grid**config.roughness_exp)
            self._plain_table = knee.astype(np.float32)
            self._plain_table[-1] = self._rough_table[-1]
        self._real_table = None
        if config.plain_knee_real > 0.0:  # version 5: real parents, the knee at every spacing
            k, top = config.plain_knee_real, config.roughness_max_real
            g = lo + (top - lo) * np.arange(_ROUGH_TABLE + 1) / _ROUGH_TABLE
            self._real_table = np.where(g < k, k**config.roughness_exp * (g / k) ** config.plain_exp,
                                        g**config.roughness_exp).astype(np.float32)
            self._real_table[-1] = np.float32(top**config.roughness_exp)

    def config(self) -> dict:
        backend = "numpy" if self.device is None else f"torch-{str(self.device).split(':')[0]}"
        cfg = asdict(self.cfg)
        if not self._incise:  # version 5: the same config, so the same model id, as before v6
            cfg = {k: v for k, v in cfg.items() if not k.startswith(_V6_KEYS)}
        if not self._gully7:  # nor before v7
            cfg = {k: v for k, v in cfg.items() if not k.startswith(_V7_KEYS)}
        return {"name": self.name, "version": self.version, "world": self.world.value, "backend": backend,
                "spacing_scale": self.spacing_scale, "real_parents": self.real_parents, **cfg}

    def __repr__(self) -> str:
        return f"FractalRefiner({json.dumps(self.config())})"

    def sigma_m(self, parent_spacing_m: np.ndarray) -> np.ndarray:
        """Law: detail std in metres at parent spacing (metres, any shape float64)."""
        c = self.cfg
        return law_sigma_m(parent_spacing_m, c.amp_at_1km_m, c.hurst, c.hurst_fine, c.hurst_coarse,
                           c.fine_knot_m, c.coarse_knot_m)

    def rgb_amp(self, parent_spacing_m: np.ndarray) -> np.ndarray:
        """Relative colour detail at parent spacing (metres): float32, (..., 1, 1)-broadcastable."""
        d = np.asarray(parent_spacing_m, dtype=np.float64)
        a = np.minimum(self.cfg.rgb_max, self.cfg.rgb_amp_at_1km * (d / 1000.0) ** self.cfg.rgb_hurst)
        return a.astype(np.float32)[..., None] if a.ndim else np.float32(a)

    def refine(self, parents: np.ndarray, level: int, origins: np.ndarray, seed: int) -> np.ndarray:
        p = _check(parents, origins, self.channels, self.margin)
        if level < 1:
            raise ValueError(f"level is the child level and must be >= 1, got {level}")
        c, ext = self.cfg, self.margin - 1
        s_child = spacing_ns_m(level) * self.spacing_scale
        keep = 1.0 - erosion.fade(s_child, c.erode_max_m, c.erode_off_m) if self._incise else 0.0
        if keep == 0.0:  # version 5 (or a level too coarse for the erosion): the inner crop, margin 1
            q = p if ext == 0 else np.ascontiguousarray(p[:, :, ext : p.shape[2] - ext, ext : p.shape[3] - ext])
            plan = self._plan(level, origins, q.shape[2], q.shape[3], seed, margin=1)
            return _refine_core(self._ops, self._ops.array(q), plan, self.cfg)
        # version 6: the v5 children over the crop's whole interior (margin 1, so 2 * ext extra
        # child samples each side), the erosion step, then the block's own window
        shifted = origins - 2 * ext
        plan = self._plan(level, shifted, p.shape[2], p.shape[3], seed, margin=1)
        if c.incise_detail_gain != 1.0 and plan.get("rows") is not None:
            plan["detail_gain"] = _f32(1.0 + (c.incise_detail_gain - 1.0) * keep)
        kids = np.array(_refine_core(self._ops, self._ops.array(p), plan, self.cfg), dtype=np.float32, copy=True)
        rows = shifted[:, 0:1] + np.arange(kids.shape[2], dtype=np.int64)[None]
        share = erosion.fade(s_child, c.incise_fine_m, c.incise_coarse_m)
        table = erosion.incision_table(c.incise_radius, c.incise_k, c.incise_m, c.incise_max, share)
        z0 = kids[:, 0]
        z = erosion.erode(z0, erosion.inverse_distances(ew_scale(self.world, level, rows)),
                          c.incise_radius, table, c.incise_creep * share, c.incise_flow_smooth * share)
        kids[:, 0] = z if keep == 1.0 else z0 + (z - z0) * np.float32(keep)
        e2 = 2 * ext
        return np.ascontiguousarray(kids[:, :, e2 : kids.shape[2] - e2, e2 : kids.shape[3] - e2])

    def _table(self, parent_spacing_m: float) -> tuple[np.ndarray, float]:
        """The roughness table at this parent spacing and its ceiling: version 5's knee at every
        spacing over real parents, else version 4's knee at parent spacings up to plain_max_m,
        else no knee."""
        if self.real_parents and self._real_table is not None:
            return self._real_table, self.cfg.roughness_max_real
        table = self._plain_table if parent_spacing_m <= self.cfg.plain_max_m else self._rough_table
        return table, self.cfg.roughness_max

    def _plan(self, level: int, origins: np.ndarray, h: int, w: int, seed: int, margin: int | None = None) -> dict:
        """Everything that depends on rows, columns and level only (numpy, float64 -> float32).

        Computed once per call on the CPU for every backend, so backends differ at most in
        the float32 elementwise arithmetic of :func:`_refine_core`.
        """
        cfg, m = self.cfg, self.margin if margin is None else margin
        if cfg.amp_at_1km_m == 0.0:  # bicubic: interpolation only
            return {"margin": m, "level": level, "seed": seed}
        nr, nc = h - 2 * m, w - 2 * m
        s_p = 2.0 * spacing_ns_m(level) * self.spacing_scale  # parent spacing, metres (north-south)
        prow = origins[:, 0:1] // 2 - m + np.arange(h, dtype=np.int64)[None]  # parent rows
        ew_p = ew_scale(self.world, level - 1, prow)[:, m : h - m]  # (b, nr)
        rows = origins[:, 0:1] + np.arange(2 * nr - 1, dtype=np.int64)[None]  # (b, 2nr-1)
        cols = origins[:, 1:2] + np.arange(2 * nc - 1, dtype=np.int64)[None]
        region = None
        if self.relief is not None:  # regional detail factor at every child sample (b, 2nr-1, 2nc-1)
            region = self.relief.factor(seed, level, rows, cols)
        cols = canonical_cols(self.world, level, cols)  # noise keyed by wrapped longitude
        ew = ew_scale(self.world, level, rows)  # (b, 2nr-1)
        plan = {
            "margin": m, "level": level, "seed": seed, "rows": rows, "cols": cols,
            "rough_table": self._table(s_p)[0], "rough_max": self._table(s_p)[1],
            "inv_ns": np.float32(1.0 / (2.0 * self.sigma_m(s_p))),
            "inv_ew": (1.0 / np.maximum(2.0 * self.sigma_m(s_p * ew_p), 1e-6)).astype(np.float32)[:, :, None],
            # Even rows: horizontal midpoints, detail at the east-west spacing.
            "a_h": self.sigma_m(s_p * ew[:, 0::2]).astype(np.float32)[:, :, None],
        }
        # Odd rows: the north-south detail sigma(s_p) splits into a white part at the east-west
        # spacing and a part smooth east-west over ~1/ew samples, so that toward the poles
        # (ew < 1) the detail stays isotropic in metres instead of stretching (DESIGN 2, issue 4).
        sig_ns = float(self.sigma_m(s_p))
        a_w64 = self.sigma_m(s_p * ew[:, 1::2])
        plan["a_w"] = a_w64.astype(np.float32)[:, :, None]
        a_s = np.sqrt(np.maximum(sig_ns**2 - a_w64**2, 0.0)).astype(np.float32)[:, :, None]
        plan["a_s"] = a_s if np.any(a_s > 0) else None
        if plan["a_s"] is not None:
            period = cols_per_world(level)
            n = np.maximum(1, np.round(period * ew[:, 1::2] / cfg.ew_corr_samples)).astype(np.int64)
            plan["lattice_n"] = n[:, :, None]  # cells around the globe per odd row
            plan["lattice_scale"] = n[:, :, None].astype(np.float64) / period
        plan["region"] = region
        plan["shape"] = shaping.fade(s_p, cfg.shape_fine_m, cfg.shape_coarse_m)
        plan["ew_p_inv"] = (1.0 / np.maximum(ew_p, 1e-3)).astype(np.float32)[:, :, None]
        plan["gullies"] = cfg.gully_mix > 0.0 and plan["shape"] > 0.0 and level % cfg.gully_level_step == 0
        plan["gully7"] = (shaping.fade(s_p, cfg.gully7_fine_m, cfg.gully7_coarse_m)
                          if self._gully7 and s_p <= cfg.gully7_max_m else 0.0)
        plan["gully7_gain"] = cfg.gully7_gain_real if self.real_parents else cfg.gully7_gain
        if plan["gullies"] or plan["gully7"] > 0.0:
            plan["ew_c"] = ew.astype(np.float32)[:, :, None]
            plan["sig_ns"] = np.float32(sig_ns)
            plan["period"] = cols_per_world(level) if self.world is World.EARTH else None
            plan["cols_raw"] = origins[:, 1:2] + np.arange(2 * nc - 1, dtype=np.int64)[None]  # not wrapped
        if region is not None:  # local roughness is read relative to the region's own law
            plan["region_inv"] = (1.0 / region[:, 0::2, 0::2]).astype(np.float32)
        # colour detail also scales with the metric spacing (none along a pole row)
        plan["ar_h"], plan["ar_v"], plan["ar_c"] = (
            self.rgb_amp(d) for d in (s_p * ew[:, 0::2], np.float64(s_p),
                                      s_p * np.sqrt(0.5 * (1.0 + ew[:, 1::2] ** 2))))
        return plan

class _NumpyOps:
    """The array operations :func:`_refine_core` needs, on numpy (the exact reference;
    compiled twins from ``generator.fractal_kernels`` where ``runtime.jit`` is on, same bits)."""

    compiled = jit.ENABLED

    def array(self, a):
        return a

    def empty(self, shape):
        return np.empty(shape, dtype=np.float32)

    def gauss(self, seed, level, stream, rows, cols):
        if self.compiled and rows.ndim == 2 and cols.ndim == 2:
            return fractal_kernels.gauss_grid(seed, level, stream, rows, cols)
        return noise.gauss(seed, level, stream, rows, cols)

    def gauss_pairs(self, key, rows, cols):
        return noise.gauss_from_hash(noise.hash_pairs(key, rows, cols))

    def uniform_pairs(self, key, rows, cols):
        """float32 uniform in [0, 1) on 2^-24 steps (exact on every backend)."""
        return (noise.hash_pairs(key, rows, cols) >> np.uint64(40)).astype(np.float32) * _f32(2.0**-24)

    sqrt, floor, where, round = (staticmethod(np.sqrt), staticmethod(np.floor), staticmethod(np.where),
                                 staticmethod(np.round))

    def f64(self, a):
        return a.astype(np.float64)

    def f32(self, a):
        return a.astype(np.float32)

    def i64(self, a):
        return a.astype(np.int64)

    def result(self, a):
        return a

    def arange(self, n):
        return np.arange(n, dtype=np.int64)


class _TorchOps(_NumpyOps):
    """The same operations in torch on ``device`` (imported only when asked for)."""

    compiled = False

    def __init__(self, device: str):
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.sqrt, self.floor, self.where, self.round = torch.sqrt, torch.floor, torch.where, torch.round

    def array(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def empty(self, shape):
        return self.torch.empty(shape, dtype=self.torch.float32, device=self.device)

    def gauss(self, seed, level, stream, rows, cols):
        return noise.gauss_torch(seed, level, stream, rows, cols)

    def gauss_pairs(self, key, rows, cols):
        return noise.gauss_from_hash_torch(noise.hash_pairs_torch(key, rows, cols))

    def uniform_pairs(self, key, rows, cols):
        h = noise.hash_pairs_torch(key, rows, cols)
        return ((h >> 40) & 0xFFFFFF).to(self.torch.float32) * _f32(2.0**-24)

    def f64(self, a):
        return a.double()

    def f32(self, a):
        return a.float()

    def i64(self, a):
        return a.long()

    def result(self, a):
        return a.cpu().numpy()

    def arange(self, n):
        return self.torch.arange(n, dtype=self.torch.int64, device=self.device)


def _refine_core(ops, p, plan: dict, cfg: FractalConfig):
    """The refiner's arithmetic, written once for numpy and torch (same ops, same order).

    p (b, c, h, w) float32 array of the backend; plan from FractalRefiner._plan. Every
    elementwise step is float32 with scalars as float32, so a sample's value depends only on
    its own parents and coordinates.
    """
    m, level, seed = plan["margin"], plan["level"], plan["seed"]
    b, c, h, w = p.shape
    nr, nc = h - 2 * m, w - 2 * m
    out = ops.empty((b, c, 2 * nr - 1, 2 * nc - 1))
    out[:, :, ::2, ::2] = p[:, :, m : h - m, m : w - m]
    if nr == 1 and nc == 1:
        return ops.result(out)

    # Cubic midpoints. hx: along rows for parent rows m-1 .. h-m (the extra rows feed the centre).
    hx = _midpoints(p[:, :, m - 1 : h - m + 1], 3, m, nc - 1)  # (b, c, nr + 2, nc - 1)
    vy = _midpoints(p[..., m : w - m], 2, m, nr - 1)  # (b, c, nr - 1, nc)
    cc = _midpoints(hx, 2, 1, nr - 1)  # (b, c, nr - 1, nc - 1)
    if cfg.amp_at_1km_m == 0.0:  # pure interpolation (the bicubic baseline)
        out[:, :, 0::2, 1::2] = hx[:, :, 1:-1]
        out[:, :, 1::2, 0::2] = vy
        out[:, :, 1::2, 1::2] = cc
        return ops.result(out)

    # Local roughness: central differences of the parent heights in each direction, each
    # divided by what the law expects at that direction's metric spacing (so it is scale-
    # and latitude-free), averaged, relative to typical terrain, then damped by an exponent.
    z = p[:, 0]
    zc = z[:, m : h - m, m : w - m]
    inv_ew = ops.array(plan["inv_ew"])
    share = plan["shape"]
    if ops.compiled and cfg.roughness_measure == "curvature":  # below, in one compiled pass (same bits)
        r_h, r_v, r_c = _roughness_compiled(z, m, plan, cfg, share)
    elif cfg.roughness_measure == "curvature":  # second differences: roughness, not tilt
        sns = z[:, m + 1 : h - m + 1, m : w - m] - zc * 2.0 + z[:, m - 1 : h - m - 1, m : w - m]
        sew = z[:, m : h - m, m + 1 : w - m + 1] - zc * 2.0 + z[:, m : h - m, m - 1 : w - m - 1]
        dns, dew = abs(sns), abs(sew)
    else:
        dns = abs(z[:, m + 1 : h - m + 1, m : w - m] - z[:, m - 1 : h - m - 1, m : w - m])
        dew = abs(z[:, m : h - m, m + 1 : w - m + 1] - z[:, m : h - m, m - 1 : w - m - 1])
    if not (ops.compiled and cfg.roughness_measure == "curvature"):
        dns = dns * float(plan["inv_ns"])
        dew = dew * inv_ew
        ratio = (dns + dew) * _f32(0.5 / cfg.relief_ratio)
        if plan.get("region") is not None:
            ratio = ratio * ops.array(plan["region_inv"])
        top = plan["rough_max"]
        lo, hi = _f32(cfg.roughness_min), _f32(top)
        t = (ratio.clip(lo, hi) - lo) * _f32(_ROUGH_TABLE / (top - cfg.roughness_min))
        i = ops.i64(ops.floor(t)).clip(0, _ROUGH_TABLE - 1)
        frac = t - ops.f32(i)
        table = ops.array(plan["rough_table"])
        lo_v = table[i]
        rough = lo_v + (table[i + 1] - lo_v) * frac  # clip(ratio)^roughness_exp
        if (cfg.floor_damp or cfg.crest_gain) and share > 0.0 and cfg.roughness_measure == "curvature":
            rough = rough * shaping.curvature_factor(sns * float(plan["inv_ns"]) + sew * inv_ew, dns + dew,
                                                     cfg.floor_damp * share, cfg.crest_gain * share)
        r_h = (rough[:, :, :-1] + rough[:, :, 1:]) * 0.5
        r_v = (rough[:, :-1, :] + rough[:, 1:, :]) * 0.5
        r_c = (r_v[:, :, :-1] + r_v[:, :, 1:]) * 0.5
    if plan["gullies"] or plan.get("gully7", 0.0) > 0.0:  # the slopes only the gullies read
        dzx = z[:, m : h - m, m + 1 : w - m + 1] - z[:, m : h - m, m - 1 : w - m - 1]
        dzy = z[:, m + 1 : h - m + 1, m : w - m] - z[:, m - 1 : h - m - 1, m : w - m]

    rows, cols = ops.array(plan["rows"]), ops.array(plan["cols"])
    ev_r, od_r, ev_c, od_c = rows[:, 0::2], rows[:, 1::2], cols[:, 0::2], cols[:, 1::2]
    g_h = ops.gauss(seed, level, 0, ev_r, od_c)
    g_v = ops.gauss(seed, level, 0, od_r, ev_c)
    g_c = ops.gauss(seed, level, 0, od_r, od_c)
    a_w, a_h = ops.array(plan["a_w"]), ops.array(plan["a_h"])
    smooth = None
    if plan["a_s"] is not None:
        smooth = _ew_smooth_noise(ops, seed, level, od_r, cols, ops.array(plan["lattice_n"]),
                                  ops.array(plan["lattice_scale"]))
    if ops.compiled and a_h.dtype == a_w.dtype == np.float32:  # the expressions below, one compiled pass
        det_h, det_v, det_c = ops.empty(g_h.shape), ops.empty(g_v.shape), ops.empty(g_c.shape)
        fractal_kernels.details(a_h, g_h, a_w, g_v, g_c, a_w if smooth is None else plan["a_s"],
                                g_v if smooth is None else smooth, smooth is not None, det_h, det_v, det_c)
    else:
        det_h, det_v, det_c = a_h * g_h, a_w * g_v, a_w * g_c  # metres, before roughness
        if smooth is not None:
            a_s = ops.array(plan["a_s"])
            det_v = det_v + a_s * smooth[:, :, 0::2]
            det_c = det_c + a_s * smooth[:, :, 1::2]
    if plan["gullies"]:  # part of the detail becomes downslope spurs and gullies
        det_h, det_v, det_c = shaping.gullies(ops, dzx, dzy, plan, cfg, inv_ew, det_h, det_v, det_c)
    if plan.get("gully7", 0.0) > 0.0:  # version 7: part of the detail becomes erosion-filter stripes
        det_h, det_v, det_c = gully.gullies(ops, dzx, dzy, plan, cfg, inv_ew, det_h, det_v, det_c)
    if ops.compiled and det_h.dtype == det_v.dtype == det_c.dtype == np.float32:
        # the region, gain and height expressions below in one compiled pass (the same bits)
        region, gain = plan.get("region"), plan.get("detail_gain")
        fractal_kernels.height_detail(out, hx, vy, cc, det_h, det_v, det_c, r_h, r_v, r_c,
                                      _NO_REGION if region is None else region, region is not None,
                                      np.float32(1.0 if gain is None else gain), gain is not None,
                                      np.float32(_f32(cfg.centre_ratio)))
    else:
        _height_detail(ops, out, hx, vy, cc, det_h, det_v, det_c, r_h, r_v, r_c, plan, cfg)

    if c > 1:
        # unit-variance mix of the height noise (albedo follows the new relief) and its own noise
        k = float(cfg.rgb_height_coupling)
        norm = 1.0 / np.hypot(k, 1.0 - k)
        kh, kl = _f32(k * norm), _f32((1.0 - k) * norm)
        lum_h = ops.gauss(seed, level, 1, ev_r, od_c)
        lum_v = ops.gauss(seed, level, 1, od_r, ev_c)
        lum_c = ops.gauss(seed, level, 1, od_r, od_c)
        if ops.compiled:  # the expressions below in one compiled pass (the same bits)
            fractal_kernels.colour_detail(out, hx, vy, cc, g_h, g_v, g_c, lum_h, lum_v, lum_c, plan["ar_h"],
                                          np.float32(plan["ar_v"]), plan["ar_c"], np.float32(kh), np.float32(kl))
            return ops.result(out)
        one = 1.0
        f_h = (g_h * kh + lum_h * kl) * ops.array(plan["ar_h"]) + one
        f_v = (g_v * kh + lum_v * kl) * float(plan["ar_v"]) + one
        f_c = (g_c * kh + lum_c * kl) * ops.array(plan["ar_c"]) + one
        zero = 0.0
        out[:, 1:, 0::2, 1::2] = (hx[:, 1:, 1:-1] * f_h[:, None]).clip(zero, one)
        out[:, 1:, 1::2, 0::2] = (vy[:, 1:] * f_v[:, None]).clip(zero, one)
        out[:, 1:, 1::2, 1::2] = (cc[:, 1:] * f_c[:, None]).clip(zero, one)
    return ops.result(out)


def _height_detail(ops, out, hx, vy, cc, det_h, det_v, det_c, r_h, r_v, r_c, plan: dict, cfg: FractalConfig) -> None:
    """The height channel of :func:`_refine_core`'s new samples: the details times the region
    factor and the detail gain, times the roughness, added to the cubic midpoints (the
    reference of ``fractal_kernels.height_detail``)."""
    if plan.get("region") is not None:
        region = ops.array(plan["region"])
        det_h = det_h * region[:, 0::2, 1::2]
        det_v = det_v * region[:, 1::2, 0::2]
        det_c = det_c * region[:, 1::2, 1::2]
    if plan.get("detail_gain") is not None:  # version 6 with creep: the detail the creep will smooth
        g = plan["detail_gain"]
        det_h, det_v, det_c = det_h * g, det_v * g, det_c * g
    out[:, 0, 0::2, 1::2] = hx[:, 0, 1:-1] + det_h * r_h
    out[:, 0, 1::2, 0::2] = vy[:, 0] + det_v * r_v
    out[:, 0, 1::2, 1::2] = cc[:, 0] + det_c * (r_c * _f32(cfg.centre_ratio))


def _roughness_compiled(z: np.ndarray, m: int, plan: dict, cfg: FractalConfig, share: float) -> tuple:
    """r_h, r_v, r_c of :func:`_refine_core` (the curvature measure) through
    ``fractal_kernels.roughness``: the same float32 expressions in the same order."""
    b, h, w = z.shape
    nr, nc = h - 2 * m, w - 2 * m
    top = plan["rough_max"]
    region = plan.get("region") is not None
    curv = bool((cfg.floor_damp or cfg.crest_gain) and share > 0.0)
    r_h = np.empty((b, nr, nc - 1), np.float32)
    r_v = np.empty((b, nr - 1, nc), np.float32)
    r_c = np.empty((b, nr - 1, nc - 1), np.float32)
    fractal_kernels.roughness(
        z, m, np.float32(plan["inv_ns"]), plan["inv_ew"], plan["region_inv"] if region else _NO_REGION, region,
        plan["rough_table"], np.float32(cfg.roughness_min), np.float32(top),
        np.float32(_ROUGH_TABLE / (top - cfg.roughness_min)), np.float32(0.5 / cfg.relief_ratio), curv,
        np.float32(-(cfg.floor_damp * share)), np.float32(cfg.crest_gain * share), np.float32(1e-6), r_h, r_v, r_c)
    return r_h, r_v, r_c


_NO_REGION = np.ones((1, 1, 1), np.float32)
_V6_KEYS = ("incise_", "erode_")
_V7_KEYS = ("gully7_",)


def _ew_smooth_noise(ops, seed: int, level: int, rows, cols, n, scale):
    """(b, R, W) float32 unit noise, linear between lattice points about 1/ew columns apart.

    rows (b, R) int64, cols (b, W) canonical int64 (earth: in [0, period)); n (b, R, 1) int64
    lattice cells around the globe per row and scale = n / period (float64). The lattice
    wraps with the column period, so the field is seamless across the date line.
    """
    if ops.compiled:  # the same expression, fused (generator.fractal_kernels.ew_smooth)
        return fractal_kernels.ew_smooth(seed, level, rows, cols, n, scale)
    x = ops.f64(cols[:, None, :]) * scale
    j0f = ops.floor(x)
    t = ops.f32(x - j0f)
    j0 = ops.i64(j0f)
    j1 = ops.where(j0 + 1 >= n, j0 + 1 - n, j0 + 1)
    r = rows[:, :, None]
    key = noise.stream_key(seed, level, 2)
    v0 = ops.gauss_pairs(key, r, j0)
    v1 = ops.gauss_pairs(key, r, j1)
    # Unit-variance blend: weights (cos, sin) of a quarter turn, from the rational unit-circle
    # parametrisation ((1 - s^2), 2s) / (1 + s^2) with s ~ tan(pi t / 4): only +, *, / (exactly
    # rounded on every backend; torch's float32 sqrt is not).
    s = t * (t * _f32(0.343) + _f32(0.657))
    s2 = s * s
    den = s2 + 1.0
    return (v0 * ((-s2 + 1.0) / den) + v1 * ((s + s) / den))


def _midpoints(x, axis: int, first: int, n: int):
    """The n cubic midpoints along ``axis`` between samples first+k and first+k+1, k < n."""
    if jit.ENABLED and isinstance(x, np.ndarray) and x.ndim == 4 and axis in (2, 3) and x.dtype == np.float32:
        return fractal_kernels.midpoints(x, axis, first, n)  # compiled, same bits
    def at(start):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, start + n)
        return x[tuple(idx)]

    return _cubic(at(first - 1), at(first), at(first + 1), at(first + 2))


def _cubic(a, b, c, d):
    """Four-point interpolating midpoint (9(b + c) - (a + d)) / 16, float32, fixed order.

    Written as (b + c)/2 + ((b + c) - (a + d))/16 so a constant stays exactly constant.
    """
    s = b + c
    return s * 0.5 + (s - (a + d)) * 0.0625


_ROUGH_TABLE = 4096  # intervals of the roughness table (relative error < 3e-5)


def _f32(x: float) -> float:
    """x rounded to float32, as a Python float: numpy and torch both use it as that float32."""
    return float(np.float32(x))


def _check(parents: np.ndarray, origins: np.ndarray, channels: int, margin: int) -> np.ndarray:
    if not isinstance(parents, np.ndarray) or parents.ndim != 4:
        got = getattr(parents, "shape", type(parents).__name__)
        raise ValueError(f"parents must be a (B, C, h, w) numpy array, got {got}")
    if parents.dtype != np.float32:
        raise ValueError(f"parents must be float32, got {parents.dtype}")
    b, c, h, w = parents.shape
    if c != channels:
        raise ValueError(f"parents must have {channels} channels (height_m, r, g, b), got {c}")
    if h < 2 * margin + 1 or w < 2 * margin + 1:
        raise ValueError(f"parent crops must be at least {2 * margin + 1} samples wide, got {h} x {w}")
    o = np.asarray(origins)
    if o.shape != (b, 2) or o.dtype != np.int64:
        raise ValueError(f"origins must be ({b}, 2) int64, got {o.shape} {o.dtype}")
    return parents


class BicubicRefiner(FractalRefiner):
    """The interpolating baseline: the same 4-point cubic subdivision with no detail added."""

    name = "bicubic"

    def __init__(self, world: World | str = World.PLANE, spacing_scale: float = 1.0):
        super().__init__(world, FractalConfig(amp_at_1km_m=0.0, rgb_amp_at_1km=0.0), spacing_scale)


def fractal_torch_refiner(world: World) -> FractalRefiner:
    """``fractal-torch`` in generator.refiner's table: the torch path, on CUDA where present."""
    import torch

    return FractalRefiner(world, device="cuda" if torch.cuda.is_available() else "cpu")


V4 = FractalConfig(plain_knee_real=0.0, incise_radius=0)
"""Version 4 (one roughness law; the v5 context rules and the v6 incision off), a baseline."""

V5 = FractalConfig(incise_radius=0)
"""Version 5 (no flow-routed incision): the default."""

V6 = FractalConfig(incise_radius=2)
"""Version 6: v5 plus the erosion step (``generator.erosion``) at child spacings up to 200 m
(off by default: docs/BENCHMARKS.md "Procedural refiner v6"); ``fractal-erode`` in
generator.refiner's table."""


V6_CARVE = FractalConfig(incise_radius=8, incise_k=0.5, incise_max=0.9, incise_creep=0.5, incise_detail_gain=1.5)
"""Version 6, carving: upstream counts over 8 steps, a stronger incision, hillslope creep 0.5
and 1.5x the detail (what the creep smooths): gullied spurs and valleys visible in the README
fly, but rougher, flatter on the earth and up to 2.7x the CPU per tile (docs/BENCHMARKS.md
"Procedural refiner v6"); ``fractal-carve`` in generator.refiner's table."""


V7 = FractalConfig(incise_radius=0, gully_mix=0.0, gully7_mix=1.0, gully7_gain=1.1, gully7_max_m=600.0,
                   gully7_sharp=0.5)
"""Version 7: v5 with v4's every-other-level gullies replaced by the erosion-filter field
(``generator.gully``) at parent spacings 10-600 m (the kilometre levels under the anchor stay
v5: with the field there the earth at levels 9-10 came out flatter, slope W1 against the located
DEMs 3.56 -> 4.1 deg). Over the anchors 1.1x the law's sigma where it acts: at 1.0 the stripes
read as less rough to the next level's curvature measure and the median slope at 19 m over
Mont Blanc fell 42 -> 31 deg (1.4 overshoots by 15: the feedback compounds over the levels).
Over real parents 1.0 (the deep cascade: 1.1 beat bicubic in 0.76 of the cells, 1.0 in 0.86).
``fractal-gully`` in generator.refiner's table (docs/BENCHMARKS.md "Procedural refiner v7")."""


def fractal_gully_refiner(world: World) -> FractalRefiner:
    """``fractal-gully`` in generator.refiner's table: the numpy refiner with ``V7``."""
    return FractalRefiner(world, V7)


def fractal_erode_refiner(world: World) -> FractalRefiner:
    """``fractal-erode`` in generator.refiner's table: the numpy refiner with ``V6``."""
    return FractalRefiner(world, V6)


def fractal_carve_refiner(world: World) -> FractalRefiner:
    """``fractal-carve`` in generator.refiner's table: the numpy refiner with ``V6_CARVE``."""
    return FractalRefiner(world, V6_CARVE)
