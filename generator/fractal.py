"""Procedural fractal refiner: interpolating cubic subdivision plus scaled noise.

The baseline and the CPU default (DESIGN.md section 2.4). Each new child sample
is the 4-point cubic (Dyn-Levin-Gregory "four-point scheme", weights
-1/16, 9/16, 9/16, -1/16) of its parents along rows, columns or both, plus
counter-based noise whose standard deviation follows the roughness-vs-scale
law fitted on real DEMs (docs/GENERATOR.md):

    sigma(d) = amp_at_1km_m * (d / 1 km) ** hurst,

where d is the parent spacing in metres along the interpolation direction (on
the earth the east-west spacing shrinks with cos(latitude), so detail is
scaled in metres and nothing stretches toward the poles). A local modulation
by the parents' 3 x 3 relief, relative to what the law expects, keeps plains
smooth and mountains rough; its exponent < 1 keeps the feedback stable.
Using the cubic (not the linear) midpoint avoids the creases of classic
midpoint displacement along the grid lines (Miller 1986).

Margin 1: a new sample needs its parents' immediate neighbours only.
Everything is elementwise on shifted slices in a fixed order, so a sample's
float32 value does not depend on the crop, the batch or the tile.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from generator import noise
from generator.refiner import canonical_cols, ew_scale, register_refiner, spacing_ns_m
from runtime.tiles import World

_HALF = np.float32(0.5)
_SIXTEENTH = np.float32(0.0625)


@dataclass(frozen=True)
class FractalConfig:
    """Parameters of the fractal refiner (units in the names; defaults fitted, see docs)."""

    amp_at_1km_m: float = 25.0
    """Std of the detail added at parent spacing 1 km, metres (law intercept)."""
    hurst: float = 0.85
    """Slope of log(detail std) against log(spacing) (law exponent)."""
    relief_ratio: float = 4.0
    """Expected 3x3 parent relief divided by sigma(parent spacing) on typical terrain."""
    roughness_exp: float = 0.5
    """Exponent of the relief modulation (< 1: rough stays rough, but no runaway)."""
    roughness_min: float = 0.05
    roughness_max: float = 4.0
    rgb_amp_at_1km: float = 0.06
    """Relative colour detail at 1 km parent spacing."""
    rgb_hurst: float = 0.2
    rgb_max: float = 0.25
    rgb_height_coupling: float = 0.5
    """Share of the colour detail that follows the height detail (shading-like albedo)."""


class FractalRefiner:
    """numpy reference implementation of the procedural refiner (see module doc)."""

    name = "fractal"
    version = "1"
    margin = 1
    channels = 4

    def __init__(self, world: World | str = World.PLANE, config: FractalConfig = FractalConfig()):
        self.world = World.parse(world) if not isinstance(world, World) else world
        self.cfg = config

    def config(self) -> dict:
        return {"name": self.name, "version": self.version, "world": self.world.value, **asdict(self.cfg)}

    def __repr__(self) -> str:
        return f"FractalRefiner({json.dumps(self.config())})"

    def sigma_m(self, parent_spacing_m: np.ndarray) -> np.ndarray:
        """Law: detail std in metres at parent spacing (metres, any shape float64)."""
        return self.cfg.amp_at_1km_m * (np.asarray(parent_spacing_m) / 1000.0) ** self.cfg.hurst

    def rgb_amp(self, parent_spacing_m: np.ndarray) -> np.ndarray:
        """Relative colour detail at parent spacing (metres): float32, (..., 1, 1)-broadcastable."""
        d = np.asarray(parent_spacing_m, dtype=np.float64)
        a = np.minimum(self.cfg.rgb_max, self.cfg.rgb_amp_at_1km * (d / 1000.0) ** self.cfg.rgb_hurst)
        return a.astype(np.float32)[..., None] if a.ndim else np.float32(a)

    def refine(self, parents: np.ndarray, level: int, origins: np.ndarray, seed: int) -> np.ndarray:
        p = _check(parents, origins, self.channels, self.margin)
        if level < 1:
            raise ValueError(f"level is the child level and must be >= 1, got {level}")
        cfg, m = self.cfg, self.margin
        b, c, h, w = p.shape
        nr, nc = h - 2 * m, w - 2 * m
        out = np.empty((b, c, 2 * nr - 1, 2 * nc - 1), dtype=np.float32)
        out[:, :, ::2, ::2] = p[:, :, m : h - m, m : w - m]
        if nr == 1 and nc == 1:
            return out

        # Cubic midpoints. hx: along rows for parent rows m-1 .. h-m (the extra rows feed the centre).
        hx = _midpoints(p[:, :, m - 1 : h - m + 1], 3, m, nc - 1)  # (b, c, nr + 2, nc - 1)
        vy = _midpoints(p[..., m : w - m], 2, m, nr - 1)  # (b, c, nr - 1, nc)
        cc = _midpoints(hx, 2, 1, nr - 1)  # (b, c, nr - 1, nc - 1)

        # Relief (max - min of the 3x3 parent neighbourhood) -> local roughness factor.
        z = p[:, 0]
        zmax = np.maximum(np.maximum(z[:, :, 0:-2], z[:, :, 1:-1]), z[:, :, 2:])
        zmin = np.minimum(np.minimum(z[:, :, 0:-2], z[:, :, 1:-1]), z[:, :, 2:])
        relief = (np.maximum(np.maximum(zmax[:, 0:-2], zmax[:, 1:-1]), zmax[:, 2:])
                  - np.minimum(np.minimum(zmin[:, 0:-2], zmin[:, 1:-1]), zmin[:, 2:]))
        relief = relief[:, m - 1 : h - m - 1, m - 1 : w - m - 1]  # (b, nr, nc) at the interior parents
        s_p = 2.0 * spacing_ns_m(level)  # parent spacing, metres (north-south)
        rough = np.clip(relief / np.float32(cfg.relief_ratio * self.sigma_m(s_p)), cfg.roughness_min,
                        cfg.roughness_max) ** np.float32(cfg.roughness_exp)
        rough = rough.astype(np.float32)
        r_h = (rough[:, :, :-1] + rough[:, :, 1:]) * np.float32(0.5)
        r_v = (rough[:, :-1, :] + rough[:, 1:, :]) * np.float32(0.5)
        r_c = (r_v[:, :, :-1] + r_v[:, :, 1:]) * np.float32(0.5)

        # Amplitudes in metres per child row (east-west spacing shrinks with latitude on earth).
        rows = origins[:, 0:1] + np.arange(2 * nr - 1, dtype=np.int64)[None]  # (b, 2nr-1)
        cols = origins[:, 1:2] + np.arange(2 * nc - 1, dtype=np.int64)[None]
        cols = canonical_cols(self.world, level, cols)  # noise keyed by wrapped longitude
        ew = ew_scale(self.world, level, rows)  # (b, 2nr-1)
        a_h = self.sigma_m(s_p * ew[:, 0::2]).astype(np.float32)[:, :, None]
        a_v = np.float32(self.sigma_m(s_p))
        a_c = self.sigma_m(s_p * np.sqrt(0.5 * (1.0 + ew[:, 1::2] ** 2))).astype(np.float32)[:, :, None]

        ev_r, od_r, ev_c, od_c = rows[:, 0::2], rows[:, 1::2], cols[:, 0::2], cols[:, 1::2]
        g_h = noise.gauss(seed, level, 0, ev_r, od_c)
        g_v = noise.gauss(seed, level, 0, od_r, ev_c)
        g_c = noise.gauss(seed, level, 0, od_r, od_c)
        d_h, d_v, d_c = g_h * r_h, g_v * r_v, g_c * r_c  # unit-law detail, modulated
        out[:, 0, 0::2, 1::2] = hx[:, 0, 1:-1] + a_h * d_h
        out[:, 0, 1::2, 0::2] = vy[:, 0] + a_v * d_v
        out[:, 0, 1::2, 1::2] = cc[:, 0] + a_c * d_c

        if c > 1:
            k = float(cfg.rgb_height_coupling)
            # colour detail also scales with the metric spacing (none along a pole row)
            ar_h, ar_v, ar_c = (self.rgb_amp(d) for d in (s_p * ew[:, 0::2], np.float64(s_p),
                                                          s_p * np.sqrt(0.5 * (1.0 + ew[:, 1::2] ** 2))))
            lum_h = noise.gauss(seed, level, 1, ev_r, od_c)
            lum_v = noise.gauss(seed, level, 1, od_r, ev_c)
            lum_c = noise.gauss(seed, level, 1, od_r, od_c)
            f_h = (np.float32(k) * d_h + np.float32(1 - k) * lum_h) * ar_h + np.float32(1)
            f_v = (np.float32(k) * d_v + np.float32(1 - k) * lum_v) * ar_v + np.float32(1)
            f_c = (np.float32(k) * d_c + np.float32(1 - k) * lum_c) * ar_c + np.float32(1)
            out[:, 1:, 0::2, 1::2] = np.clip(hx[:, 1:, 1:-1] * f_h[:, None], 0, 1)
            out[:, 1:, 1::2, 0::2] = np.clip(vy[:, 1:] * f_v[:, None], 0, 1)
            out[:, 1:, 1::2, 1::2] = np.clip(cc[:, 1:] * f_c[:, None], 0, 1)
        return out


def _midpoints(x: np.ndarray, axis: int, first: int, n: int) -> np.ndarray:
    """The n cubic midpoints along ``axis`` between samples first+k and first+k+1, k < n."""
    def at(start):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, start + n)
        return x[tuple(idx)]

    return _cubic(at(first - 1), at(first), at(first + 1), at(first + 2))


def _cubic(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Four-point interpolating midpoint (9(b + c) - (a + d)) / 16, float32, fixed order.

    Written as (b + c)/2 + ((b + c) - (a + d))/16 so a constant stays exactly constant.
    """
    s = b + c
    return s * _HALF + (s - (a + d)) * _SIXTEENTH


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


register_refiner("fractal", lambda world: FractalRefiner(world))
