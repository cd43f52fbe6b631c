"""Buildings and trees as pure functions of (world, seed, model, tile key): the feature layer.

Features live on fixed global lattices, so the set is the same whichever level
carries it and every feature belongs to exactly one tile:

- **buildings**: one candidate per *parcel*, a cell of the level-:data:`PARCEL_LEVEL`
  grid (38.2 m north-south; earth: x cos(latitude) east-west). Carried by tiles
  of levels :data:`BUILDING_LEVELS` (13..19), where a parcel is always wholly
  inside one tile (a tile edge is a parcel edge) and its footprint stays inside
  the parcel: nothing is duplicated or cut at a tile border.
- **trees**: at most one per level-:data:`TREE_LEVEL` cell (9.6 m), carried by
  levels :data:`TREE_LEVELS` (15..19), the tree's point jittered inside its cell;
  no tree stands within 1.5 m of a building footprint (the cell's parcel, and so
  its building, is inside the same tile at these levels).

A candidate is decided from inputs that are the same at every carrying level:
the land-cover class (:mod:`generator.landcover`, nested) at the cell's centre
and corners, the heights (nested) at the parcel's corners, context read at the
centre's location, and counter-based hashes of the global cell index
(:mod:`generator.noise`). Rules:

- a building stands on an *urban* parcel (presence 0.55 + 0.4 * density) or
  on a *village* parcel (cropland or grassland where a 1.5 km value noise
  exceeds 0.62; presence 0.5); never where the centre or a corner is water, nor
  where the parcel's steepest edge or diagonal exceeds 30 deg, nor in a park
  (urban parcels where a 400 m noise exceeds 0.55);
- density d in [0, 1] (:func:`urban_density`) falls with the climatological NDVI
  maximum at the parcel (earth: d = (0.75 - NDVI) / 0.45, clipped; dense cores
  have little vegetation), or rises towards a plane-world city's core;
- footprint side = parcel side x (0.45 + 0.35 d) x U(0.85, 1); storeys =
  1 + round(5 d U(0.6, 1.4)) (towers of 8-27 storeys on d^2 % of parcels),
  villages 1-2; 3.2 m per storey;
- trees: probability by the class at the cell centre (broadleaf 0.8, needleleaf
  0.85, wetland 0.15, shrubland 0.15, grassland 0.02, urban parks 0.6, other
  urban 0.05 (street and garden trees), elsewhere 0),
  height U(lo, hi) per class.

Coordinates (the check contract): east and north in metres from the tile's
sample [0, 0] along the tile's grid axes (north = -row x spacing; earth: east
uses the metres per sample at the feature's latitude).
"""

from __future__ import annotations

import numpy as np

from generator import noise
from generator.landcover import (
    BROADLEAF,
    CROPLAND,
    GRASSLAND,
    NEEDLELEAF,
    SHRUBLAND,
    URBAN,
    WATER,
    WETLAND,
    value_noise,
)
from runtime.tiles import T, TileKey, World, spacing_deg, spacing_m

PARCEL_LEVEL, TREE_LEVEL = 11, 13
BUILDING_LEVELS = range(PARCEL_LEVEL + 2, PARCEL_LEVEL + 9)
TREE_LEVELS = range(TREE_LEVEL + 2, BUILDING_LEVELS.stop)  # 15..19: a tree's parcel is in its tile
MAX_SLOPE = float(np.tan(np.radians(30.0)))
STOREY_M = 3.2
PARK_WAVE_M, VILLAGE_WAVE_M = 400.0, 1500.0
TREE_P = {BROADLEAF: 0.8, NEEDLELEAF: 0.85, WETLAND: 0.15, SHRUBLAND: 0.15, GRASSLAND: 0.02}
TREE_H = {BROADLEAF: (12.0, 28.0), NEEDLELEAF: (10.0, 32.0), WETLAND: (4.0, 10.0), SHRUBLAND: (2.0, 5.0),
          GRASSLAND: (5.0, 12.0), URBAN: (8.0, 18.0)}
NO_BUILDINGS = np.zeros((0, 5), dtype=np.float32)
NO_TREES = np.zeros((0, 3), dtype=np.float32)


def _uniforms(seed: int, level: int, stream: int, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """(n, *i.shape) float64 uniforms in [0, 1) (16-bit steps) keyed by global cell index (i, j) of
    ``level``: the four 16-bit lanes of each counter-based hash give four uniforms."""
    lanes = []
    for k in range(-(-n // 4)):
        h = noise.hash_pairs(noise.stream_key(seed, level, stream + k), i, j)
        lanes += [((h >> np.uint64(16 * m)) & np.uint64(0xFFFF)).astype(np.float64) / 65536.0 for m in range(4)]
    return np.stack(lanes[:n])


def _noise_xy(world: World, x: np.ndarray, y: np.ndarray, wave_m: float) -> tuple:
    """Noise coordinates and wavelength in the units of :func:`generator.landcover.locations`."""
    return (x, y, wave_m / 111320.0) if world is World.EARTH else (x, y, wave_m)


def park_and_village(world: World, seed: int, pi: np.ndarray, pj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(park, village) bool masks of parcels (global level-PARCEL_LEVEL cell indices, any shape),
    from value noise at the parcel centres' locations (pure; shared by buildings and trees)."""
    x, y = _centres(world, PARCEL_LEVEL, pi, pj)
    a, b, w = _noise_xy(world, x, y, PARK_WAVE_M)
    park = value_noise(seed, 20, a, b, w) > 0.55
    a, b, w = _noise_xy(world, x, y, VILLAGE_WAVE_M)
    return park, value_noise(seed, 21, a, b, w) > 0.62


def _centres(world: World, level: int, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Locations of the centres of level-``level`` cells (i, j) = level+1 samples (2i+1, 2j+1)."""
    r, c = 2 * np.asarray(i, np.int64) + 1, 2 * np.asarray(j, np.int64) + 1
    if world is World.EARTH:  # the same expressions as generator.landcover.locations, pointwise
        d = spacing_deg(level + 1)
        return -180.0 + np.mod(c * d, 360.0), 90.0 - r * d
    s = spacing_m(level + 1)
    return c * s, r * s


def urban_density(world: World, seed: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Density in [0, 1] at locations: earth (0.75 - NDVI max) / 0.45 (dense cores have little
    vegetation), plane the city field of :func:`generator.landcover.plane_city`."""
    if world is World.EARTH:
        from generator.anchors.context import EarthContext, _ndvi

        return np.clip((0.75 - _ndvi(EarthContext.shared().ndvi_max, y, x)) / 0.45, 0.0, 1.0)
    from generator.landcover import plane_city

    return np.clip(plane_city(seed, x, y) * 1.5, 0.0, 1.0)


def _metres_per_sample(world: World, level: int, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """(east m per sample at global rows (any shape), north m per sample) of ``level``."""
    s = spacing_m(level)
    if world is World.EARTH:
        lat = 90.0 - np.asarray(rows, np.float64) * spacing_deg(level)
        return s * np.maximum(np.cos(np.radians(lat)), 1e-3), s
    return np.full(np.shape(rows), s), s


def buildings(world: World | str, seed: int, key: TileKey, heights_m: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N, 5) float32 [east, north, width, depth, height] m of the tile's buildings (module docstring);
    heights_m and classes are the tile's (T+1, T+1) fields. (0, 5) at levels that carry none."""
    return _buildings(world, seed, key, heights_m, classes)[0]


def _buildings(world, seed: int, key: TileKey, heights_m: np.ndarray, classes: np.ndarray) -> tuple:
    """(buildings (N, 5) float32, tile-local parcel row (N,), parcel col (N,)) int64."""
    world = World.parse(world) if not isinstance(world, World) else world
    none = (NO_BUILDINGS, np.zeros(0, np.int64), np.zeros(0, np.int64))
    if key.level not in BUILDING_LEVELS:
        return none
    q = 1 << (key.level - PARCEL_LEVEL)  # samples per parcel side
    n = T // q
    pi = (key.y * n + np.arange(n, dtype=np.int64))[:, None] + np.zeros((1, n), np.int64)
    pj = (key.x * n + np.arange(n, dtype=np.int64))[None, :] + np.zeros((n, 1), np.int64)
    h = heights_m[::q, ::q].astype(np.float64)  # parcel corners (n+1, n+1)
    cls_c = classes[q // 2 :: q, q // 2 :: q]  # centres (n, n)
    corners = classes[::q, ::q]
    wet = (corners[:-1, :-1] == WATER) | (corners[1:, :-1] == WATER) | (corners[:-1, 1:] == WATER) | \
          (corners[1:, 1:] == WATER) | (cls_c == WATER)
    e_m, n_m = _metres_per_sample(world, key.level, key.y * T + np.arange(0, T + 1, q))
    pw, ph = (e_m[:-1] * q)[:, None] * np.ones((1, n)), n_m * q  # parcel width (n, n), depth
    slope = np.max(np.stack([np.abs(h[:-1, 1:] - h[:-1, :-1]) / pw, np.abs(h[1:, 1:] - h[1:, :-1]) / pw,
                             np.abs(h[1:, :-1] - h[:-1, :-1]) / ph, np.abs(h[1:, 1:] - h[:-1, 1:]) / ph,
                             np.abs(h[1:, 1:] - h[:-1, :-1]) / np.hypot(pw, ph),
                             np.abs(h[1:, :-1] - h[:-1, 1:]) / np.hypot(pw, ph)]), axis=0)
    park, village = park_and_village(world, seed, pi, pj)
    city = (cls_c == URBAN) & ~park
    rural = np.isin(cls_c, (CROPLAND, GRASSLAND)) & village
    ok = (city | rural) & ~wet & (slope <= MAX_SLOPE)
    if not ok.any():
        return none
    pi, pj, pw, city = pi[ok], pj[ok], pw[ok], city[ok]
    x, y = _centres(world, PARCEL_LEVEL, pi, pj)
    d = np.where(city, urban_density(world, seed, x, y), 0.0)
    u = _uniforms(seed, PARCEL_LEVEL, 100, pi, pj, 9)
    keep = u[0] < np.where(city, 0.55 + 0.4 * d, 0.5)
    side = np.where(city, 0.45 + 0.35 * d, 0.3 + 0.1 * u[7])
    w = pw * side * (0.85 + 0.15 * u[1])
    dep = ph * side * (0.85 + 0.15 * u[2])
    storeys = np.where(city, 1 + np.round(5.0 * d * (0.6 + 0.8 * u[3])), 1 + (u[3] < 0.3))
    storeys = np.where(city & (u[4] < 0.01 * d * d), 8 + np.floor(20.0 * u[5]), storeys)
    # centre inside the parcel (local sample units), jittered by at most 80 % of the free margin
    col0, row0 = (pj - key.x * n) * q, (pi - key.y * n) * q
    east = (col0 + q / 2.0) * (pw / q) + 0.4 * (pw - w) * (2.0 * u[6] - 1.0)
    north = -((row0 + q / 2.0) * n_m + 0.4 * (ph - dep) * (2.0 * u[8] - 1.0))
    out = np.stack([east, north, w, dep, storeys * STOREY_M], axis=1)[keep]
    return np.ascontiguousarray(out, dtype=np.float32), (pi - key.y * n)[keep], (pj - key.x * n)[keep]


def trees(world: World | str, seed: int, key: TileKey, classes: np.ndarray, heights_m: np.ndarray) -> np.ndarray:
    """(M, 3) float32 [east, north, height] m of the tile's trees; (0, 3) at levels that carry none.
    ``heights_m`` (T+1, T+1) place the tile's buildings, which trees keep clear of."""
    world = World.parse(world) if not isinstance(world, World) else world
    if key.level not in TREE_LEVELS:
        return NO_TREES
    q = 1 << (key.level - TREE_LEVEL)
    n = T // q
    ti = (key.y * n + np.arange(n, dtype=np.int64))[:, None] + np.zeros((1, n), np.int64)
    tj = (key.x * n + np.arange(n, dtype=np.int64))[None, :] + np.zeros((n, 1), np.int64)
    cls_c = classes[q // 2 :: q, q // 2 :: q]
    p = np.zeros(cls_c.shape)
    for c, pc in TREE_P.items():
        p[cls_c == c] = pc
    shift = TREE_LEVEL - PARCEL_LEVEL
    park, _village = park_and_village(world, seed, ti >> shift, tj >> shift)
    p[cls_c == URBAN] = np.where(park[cls_c == URBAN], 0.6, 0.05)
    u = _uniforms(seed, TREE_LEVEL, 200, ti, tj, 4)
    ok = u[0] < p
    if not ok.any():
        return NO_TREES
    lo = np.zeros(cls_c.shape)
    hi = np.zeros(cls_c.shape)
    for c, (a, b) in TREE_H.items():
        lo[cls_c == c], hi[cls_c == c] = a, b
    e_m, n_m = _metres_per_sample(world, key.level, ti * q + q // 2)
    row = (ti - key.y * n) * q + q * (0.1 + 0.8 * u[1])
    col = (tj - key.x * n) * q + q * (0.1 + 0.8 * u[2])
    out = np.stack([col * e_m, -row * n_m, lo + (hi - lo) * u[3]], axis=-1)
    blds, bi, bj = _buildings(world, seed, key, heights_m, classes)
    if len(blds):  # at most one building per parcel, inside it: test each tree against its parcel's
        slot = np.full((T >> (key.level - PARCEL_LEVEL),) * 2, -1, dtype=np.int64)
        slot[bi, bj] = np.arange(len(blds))
        k = slot[(ti - key.y * n) >> shift, (tj - key.x * n) >> shift]
        b = blds[np.maximum(k, 0)].astype(np.float64)
        inside = (np.abs(out[..., 0] - b[..., 0]) < b[..., 2] / 2 + 1.5) & \
                 (np.abs(out[..., 1] - b[..., 1]) < b[..., 3] / 2 + 1.5)
        ok &= ~((k >= 0) & inside)
    return np.ascontiguousarray(out[ok], dtype=np.float32)


def tile_features(pyramid, key: TileKey, heights_m: np.ndarray | None = None,
                  classes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """{'buildings': (N, 5), 'trees': (M, 3)} float32 of one pyramid tile (the check contract)."""
    from generator.landcover import tile_landcover

    h = pyramid.tile(key).height if heights_m is None else heights_m
    lc = tile_landcover(pyramid, key, h) if classes is None else classes
    return {"buildings": buildings(pyramid.world, pyramid.seed, key, h, lc),
            "trees": trees(pyramid.world, pyramid.seed, key, lc, h)}


def contract_fields(pyramid, key: TileKey, heights_m: np.ndarray) -> dict[str, np.ndarray]:
    """The land-cover and feature entries of ``worldstream tile``'s .npz (docs/LANDCOVER.md):
    ``landcover`` (T+1, T+1) uint8, ``class_names`` (n,) str (index = class id) and, at levels that
    carry them, ``buildings`` (N, 5) and ``trees`` (M, 3) float32."""
    from generator.landcover import CLASS_NAMES, tile_landcover

    lc = tile_landcover(pyramid, key, heights_m)
    out = {"landcover": lc, "class_names": np.array(CLASS_NAMES)}
    if key.level in BUILDING_LEVELS:
        out["buildings"] = buildings(pyramid.world, pyramid.seed, key, heights_m, lc)
    if key.level in TREE_LEVELS:
        out["trees"] = trees(pyramid.world, pyramid.seed, key, lc, heights_m)
    return out
