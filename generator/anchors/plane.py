"""Plane anchor: a seeded procedural continent generator at the anchor level.

Every value is a pure function of (seed, anchor-level global row, col): layered
value noise (Perlin 1985 style lattice noise with quintic fade, each octave
rotated and offset so no lattice axis lines up across octaves) hashed with the
counter-based SplitMix64 of :mod:`generator.noise`. It has no period and no
edge: rows and columns may be any int64, negative included.

Fields (sample = anchor-level spacing, about 9.8 km):
- continents: domain-warped fBm with a 6,800 km base wavelength; sea level at
  a threshold that leaves roughly a third of the plane as land;
- mountain belts: ridged noise (Musgrave et al. 1989) along belts picked by a
  low-frequency mask, rising inland from the coast;
- ocean floor: shelf, slope and abyssal plain by distance-like depth of the
  continent field;
- colour: a latitude-free climate (moisture noise and elevation lapse rate)
  mapped to albedo: sea by depth, sand, grassland, forest, desert, rock, snow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from generator import valuenoise
from runtime import jit


@dataclass(frozen=True)
class PlaneConfig:
    """Continent generator parameters; wavelengths in anchor samples (~9.8 km)."""

    generator_version: int = 2
    """Bumped whenever the code (not only these numbers) changes what the anchor returns."""
    continent_wavelength: float = 700.0
    continent_octaves: int = 7
    warp_wavelength: float = 300.0
    warp_amount: float = 90.0
    sea_level: float = 0.17
    """Continent-field threshold of the coast (higher = less land)."""
    land_base_m: float = 900.0
    mountain_wavelength: float = 40.0
    mountain_height_m: float = 3800.0
    belt_wavelength: float = 260.0
    hill_wavelength: float = 12.0
    hill_height_m: float = 260.0
    ocean_depth_m: float = 4600.0
    shelf_depth_m: float = 120.0
    moisture_wavelength: float = 140.0
    snowline_m: float = 4300.0


_value_noise = valuenoise.value_noise_numpy  # the numpy references of the noise the anchor runs
_fbm = valuenoise.fbm_numpy  # (generator.valuenoise: compiled, the same bits)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class PlaneAnchor:
    """Procedural continents; ``sample(rows, cols)`` at the anchor level."""

    channels = 4

    def __init__(self, seed: int, config: PlaneConfig = PlaneConfig()):
        self.seed = int(seed)
        self.cfg = config
        self.digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """rows (H,) int64, cols (W,) int64 anchor-level global samples -> (4, H, W) float32."""
        y = np.asarray(rows, dtype=np.int64).astype(np.float64)[:, None] * np.ones((1, len(cols)))
        x = np.ones((len(rows), 1)) * np.asarray(cols, dtype=np.int64).astype(np.float64)[None, :]
        f = self._fields(x, y)
        rgb = _albedo(f["height"], f["moist"], f["hills"], self.cfg.snowline_m)
        return np.concatenate([f["height"][None], rgb], axis=0).astype(np.float32)

    def relief_height(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """rows (H,), cols (W,) int64 anchor-level global samples -> (H, W) float32 height m:
        ``sample(rows, cols)[0]`` without the moisture and colour (the regional relief reads
        only the heights, generator.relief)."""
        y = np.asarray(rows, dtype=np.int64).astype(np.float64)[:, None] * np.ones((1, len(cols)))
        x = np.ones((len(rows), 1)) * np.asarray(cols, dtype=np.int64).astype(np.float64)[None, :]
        return self._fields(x, y, moist=False)["height"].astype(np.float32)

    def _fields(self, x: np.ndarray, y: np.ndarray, moist: bool = True) -> dict:
        """Continent fields at anchor-sample positions x (east), y (south), float64 (H, W):
        height m, coast (> 0 on land), moisture [0, 1] (None unless ``moist``), hills [-1, 1],
        warped x, y."""
        cfg, s = self.cfg, self.seed
        wx = x + cfg.warp_amount * valuenoise.fbm(s, 10, x, y, cfg.warp_wavelength, 3)
        wy = y + cfg.warp_amount * valuenoise.fbm(s, 20, x, y, cfg.warp_wavelength, 3)
        cont = valuenoise.fbm(s, 30, wx, wy, cfg.continent_wavelength, cfg.continent_octaves, 0.5)
        coast = (cont - cfg.sea_level) * 2.5  # ~ -1 deep ocean .. +1 interior

        ridge = 1.0 - np.abs(valuenoise.fbm(s, 40, wx, wy, cfg.mountain_wavelength, 4, 0.5))
        ridge = ridge * ridge
        belt = _smoothstep(0.2, 0.55, valuenoise.value_noise(s, 50, wx, wy, cfg.belt_wavelength))
        hills = valuenoise.fbm(s, 60, x, y, cfg.hill_wavelength, 3)
        inland = _smoothstep(0.0, 0.35, coast)
        land = (30.0 + cfg.land_base_m * np.sqrt(np.clip(coast, 0.0, None)) * (0.6 + 0.4 * hills)
                + cfg.mountain_height_m * belt * ridge * inland
                + cfg.hill_height_m * (hills * 0.5 + 0.5) * inland)
        depth = _smoothstep(0.0, 0.12, -coast) * (cfg.shelf_depth_m + 300.0) + _smoothstep(
            0.08, 0.6, -coast) * (cfg.ocean_depth_m - cfg.shelf_depth_m - 300.0)
        sea = -5.0 - depth * (1.0 + 0.15 * hills)
        height = np.where(coast > 0.0, land, sea)
        moist = valuenoise.fbm(s, 70, wx, wy, cfg.moisture_wavelength, 4) * 0.5 + 0.5 if moist else None
        return {"height": height, "coast": coast, "moist": moist, "hills": hills, "wx": wx, "wy": wy}

    def context(self, level: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The context channels of :mod:`generator.anchors.context` at level-``level`` global samples
        rows (H,), cols (W,) int64 -> (15, H, W) float32. Anchor nodes get :meth:`node_context`;
        points between them (levels > 3) the bilinear mix of the four nodes around them, so the
        value at a point is the same at every level and a 65 x 65 block costs the few nodes under it
        (one-hot channels become fractions between nodes, like the earth's land fraction)."""
        from runtime.tiles import ANCHOR_LEVEL

        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        k = level - ANCHOR_LEVEL
        if k <= 0:
            return self.node_context(rows << -k, cols << -k)
        r0, c0 = rows >> k, cols >> k  # floor division, negative coordinates included
        nr, nc = np.union1d(r0, r0 + 1), np.union1d(c0, c0 + 1)  # only the nodes around the samples
        nodes = self.node_context(nr, nc)  # (15, h, w)
        tr = ((rows - (r0 << k)) / float(1 << k)).astype(np.float32)[:, None]
        tc = ((cols - (c0 << k)) / float(1 << k)).astype(np.float32)[None, :]
        i, j = np.searchsorted(nr, r0)[:, None], np.searchsorted(nc, c0)[None, :]
        one = np.float32(1)
        return ((nodes[:, i, j] * (one - tc) + nodes[:, i, j + 1] * tc) * (one - tr)
                + (nodes[:, i + 1, j] * (one - tc) + nodes[:, i + 1, j + 1] * tc) * tr).astype(np.float32)

    def node_context(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Context at anchor nodes rows (H,), cols (W,) int64 -> (15, H, W) float32, synthesised
        from the continent fields: a latitude-like temperature (a 25,000 km noise minus a lapse
        with height) and the moisture field pick the Koppen group (E cold, B dry, A hot and wet,
        D cool, else C) and the land cover; NDVI follows moisture and warmth; 0 / -0.2 at sea."""
        from generator.anchors.channels import CHANNELS, COVER_GROUPS, NDVI_NONE, one_hot

        y = np.asarray(rows, dtype=np.int64).astype(np.float64)[:, None] * np.ones((1, len(cols)))
        x = np.ones((len(rows), 1)) * np.asarray(cols, dtype=np.int64).astype(np.float64)[None, :]
        f = self._fields(x, y)
        h, moist, land = f["height"], f["moist"], f["coast"] > 0.0
        warm = 0.5 + 0.5 * valuenoise.fbm(self.seed, 80, f["wx"], f["wy"], 2500.0, 3) - np.clip(h, 0.0, None) / 6000.0
        climate = np.select([warm < 0.12, moist < 0.4, (warm > 0.55) & (moist > 0.45), warm < 0.32],
                            [4, 1, 0, 3], default=2)
        cover = np.select([(warm < 0.08) | (h > self.cfg.snowline_m), moist < 0.25, (h < 40.0) & (moist > 0.8),
                           moist < 0.5, (moist < 0.62) & (h < 900.0)],
                          [COVER_GROUPS.index(c) for c in ("snow_ice", "barren", "wetland", "shrub_grass", "crop")],
                          default=COVER_GROUPS.index("forest"))
        ndvi_max = np.clip(0.05 + 0.9 * moist * np.clip(warm + 0.3, 0.0, 1.0), -0.2, 0.95)
        out = np.empty((len(CHANNELS),) + h.shape, dtype=np.float32)
        out[0] = land
        out[1:6] = one_hot(np.where(land, climate, -1), 5)
        out[6:13] = one_hot(np.where(land, cover, -1), len(COVER_GROUPS))
        out[13] = np.where(land, ndvi_max, NDVI_NONE)
        out[14] = np.where(land, ndvi_max * (0.35 + 0.4 * moist), NDVI_NONE)
        return out


_DEEP = np.array([0.02, 0.05, 0.16])
_SHALLOW = np.array([0.06, 0.22, 0.36])
_SAND = np.array([0.76, 0.70, 0.52])
_DESERT = np.array([0.80, 0.62, 0.40])
_GRASS = np.array([0.36, 0.46, 0.20])
_FOREST = np.array([0.10, 0.24, 0.08])
_ROCK = np.array([0.42, 0.38, 0.33])
_SNOW = np.array([0.93, 0.94, 0.96])


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t[..., None]


def _albedo(height: np.ndarray, moist: np.ndarray, jitter: np.ndarray, snowline_m: float) -> np.ndarray:
    """(H, W) height m, moisture [0, 1], jitter [-1, 1] -> (3, H, W) float64 albedo
    (Blue-Marble-like): :func:`_albedo_numpy`'s bits, compiled where numba is (half of a
    coarse plane tile's generator time was these ~30 array passes)."""
    if not jit.ENABLED:
        return _albedo_numpy(height, moist, jitter, snowline_m)
    h, m, j = (np.ascontiguousarray(a, np.float64) for a in np.broadcast_arrays(height, moist, jitter))
    out = np.empty((3,) + h.shape)
    _albedo_kernel(h.ravel(), m.ravel(), j.ravel(), float(snowline_m), _PALETTE, out.reshape(3, -1))
    return out


_PALETTE = np.ascontiguousarray(np.stack([_DEEP, _SHALLOW, _SAND, _DESERT, _GRASS, _FOREST, _ROCK, _SNOW]))


@jit.njit
def _step(e0, e1, x):
    t = (x - e0) / (e1 - e0)
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


@jit.njit
def _albedo_kernel(h, m, j, snowline_m, pal, out):  # pragma: no cover - compiled
    """Per sample and channel, the numpy reference's operations in its order (no fast-math)."""
    for i in range(h.size):
        hi, mi, ji = h[i], m[i], j[i]
        t_sea = _step(-900.0, -20.0, hi)
        t_grass = _step(0.3, 0.5, mi)
        t_forest = _step(0.55, 0.75, mi)
        t_low = _step(2.0, 40.0, hi)
        t_rock = _step(1400.0, 2800.0, hi + 300.0 * ji)
        t_snow = _step(snowline_m - 300.0, snowline_m + 300.0, hi + 250.0 * ji)
        for k in range(3):
            if hi > 0.0:
                g = pal[3, k] + (pal[4, k] - pal[3, k]) * t_grass
                veg = g + (pal[5, k] - g) * t_forest
                low = pal[2, k] + (veg - pal[2, k]) * t_low
                high = low + (pal[6, k] - low) * t_rock
                out[k, i] = high + (pal[7, k] - high) * t_snow
            else:
                out[k, i] = pal[0, k] + (pal[1, k] - pal[0, k]) * t_sea


@jit.warmer
def _warm() -> None:
    _albedo(np.array([[-50.0, 10.0]]), np.array([[0.4, 0.6]]), np.array([[0.1, -0.2]]), 3000.0)


def _albedo_numpy(height: np.ndarray, moist: np.ndarray, jitter: np.ndarray, snowline_m: float) -> np.ndarray:
    """The numpy reference of :func:`_albedo`."""
    sea = _mix(_DEEP, _SHALLOW, _smoothstep(-900.0, -20.0, height))
    veg = _mix(_mix(_DESERT, _GRASS, _smoothstep(0.3, 0.5, moist)), _FOREST, _smoothstep(0.55, 0.75, moist))
    lowland = _mix(_SAND, veg, _smoothstep(2.0, 40.0, height))
    high = _mix(lowland, _ROCK, _smoothstep(1400.0, 2800.0, height + 300.0 * jitter))
    land = _mix(high, _SNOW, _smoothstep(snowline_m - 300.0, snowline_m + 300.0, height + 250.0 * jitter))
    rgb = np.where((height > 0.0)[..., None], land, sea)
    return np.moveaxis(rgb, -1, 0)
