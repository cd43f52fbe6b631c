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
  where the steepest edge or diagonal of the parcel or of its 16 level-13 cells (9.6 m)
  exceeds 30 deg, nor in a park
  (urban parcels where a 400 m noise exceeds 0.55 + 0.2 m);
- density d and metro factor m in [0, 1] (:func:`urban_intensity`): earth from data
  (:mod:`generator.urban`: m from the core depth in the MODIS urban agglomeration, d =
  max(greyness from the NDVI maximum, m)); plane d rises towards a city's core, m = 0;
- footprint side = free box x (0.6 + 0.4 d) x U(0.85, 1); storeys =
  1 + round((5 + 10 m) d U(0.6, 1.4)) (towers of 8 to 27 + 10 m storeys on d^2 % of parcels),
  villages 1-2; 3.2 m per storey plus 1 m (city parapet) or 2.5 m (village roof);
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
SITE_LEVEL = 13  # the slope rule reads the parcel's 9.6 m cells
BUILDING_LEVELS = range(PARCEL_LEVEL + 2, PARCEL_LEVEL + 9)
BLOCK_LEVEL = PARCEL_LEVEL + 1  # 12: merged blocks (:func:`blocks`), the far field's stand-in
BLOCK_MERGE = 4  # parcels per merged block side
BLOCK_SAMPLE = 2  # a block is estimated from every 2nd parcel row and column (4 of its 16)
TREE_LEVELS = range(TREE_LEVEL + 2, BUILDING_LEVELS.stop)  # 15..19: a tree's parcel is in its tile
MAX_SLOPE = float(np.tan(np.radians(30.0)))
BLOCK_PARCELS = 3  # street every 3rd parcel line: blocks of ~115 m
ROAD_W_URBAN, ROAD_W_VILLAGE, SIDE_GAP_M = 12.0, 7.0, 1.0
STOREY_M = 3.2
MID_STOREYS, METRO_STOREYS = 5.0, 10.0  # storey scale: 5 d, plus 10 d m in metropolitan cores
FLAT_ROOF_M, PITCHED_ROOF_M = 1.0, 2.5  # parapet on city blocks, pitched roofs on village houses
PARK_WAVE_M, VILLAGE_WAVE_M = 400.0, 1500.0
PARK_METRO = 0.2  # the park noise's threshold rises by this times the metro factor
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


def park_and_village(world: World, seed: int, pi: np.ndarray, pj: np.ndarray,
                     metro: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(park, village) bool masks of parcels (global level-PARCEL_LEVEL cell indices, any shape),
    from value noise at the parcel centres' locations (pure; shared by buildings and trees). Parks
    where the 400 m noise exceeds 0.55 + PARK_METRO x the metro factor (:func:`metro_at`; fewer
    parks in metropolitan cores, where land is dearest); ``metro``: that factor when known."""
    x, y = _centres(world, PARCEL_LEVEL, pi, pj)
    a, b, w = _noise_xy(world, x, y, PARK_WAVE_M)
    m = metro_at(world, x, y) if metro is None else metro
    park = value_noise(seed, 20, a, b, w) > 0.55 + PARK_METRO * m
    a, b, w = _noise_xy(world, x, y, VILLAGE_WAVE_M)
    return park, value_noise(seed, 21, a, b, w) > 0.62


def metro_at(world: World, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Metro factor in [0, 1] at locations (:func:`generator.urban.metro_factor` of the core depth;
    0 on the plane, whose towns have no agglomeration scale)."""
    if world is World.EARTH:
        from generator.urban import core_depth_km, metro_factor

        return metro_factor(core_depth_km(y, x))
    return np.zeros(np.shape(x))


def _centres(world: World, level: int, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Locations of the centres of level-``level`` cells (i, j) = level+1 samples (2i+1, 2j+1)."""
    r, c = 2 * np.asarray(i, np.int64) + 1, 2 * np.asarray(j, np.int64) + 1
    if world is World.EARTH:  # the same expressions as generator.landcover.locations, pointwise
        d = spacing_deg(level + 1)
        return -180.0 + np.mod(c * d, 360.0), 90.0 - r * d
    s = spacing_m(level + 1)
    return c * s, r * s


def urban_intensity(world: World, seed: int, x: np.ndarray, y: np.ndarray,
                    metro: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(density d, metro factor m), each in [0, 1] at locations. Earth (:mod:`generator.urban`):
    m from the core depth in the MODIS urban agglomeration (``metro`` when known), d =
    max(greyness from the NDVI maximum, m); plane: d the city field of
    :func:`generator.landcover.plane_city`, m = 0."""
    m = metro_at(world, x, y) if metro is None else metro
    if world is World.EARTH:
        from generator.urban import greyness

        return np.maximum(greyness(y, x), m), m
    from generator.landcover import plane_city

    return np.clip(plane_city(seed, x, y) * 1.5, 0.0, 1.0), m


def urban_density(world: World, seed: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The density d of :func:`urban_intensity`."""
    return urban_intensity(world, seed, x, y)[0]


def _metres_per_sample(world: World, level: int, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """(east m per sample at global rows (any shape), north m per sample) of ``level``."""
    s = spacing_m(level)
    if world is World.EARTH:
        lat = 90.0 - np.asarray(rows, np.float64) * spacing_deg(level)
        return s * np.maximum(np.cos(np.radians(lat)), 1e-3), s
    return np.full(np.shape(rows), s), s


def buildings(world: World | str, seed: int, key: TileKey, heights_m: np.ndarray, classes: np.ndarray,
              parcels: dict | None = None) -> np.ndarray:
    """(N, 5) float32 [east, north, width, depth, height] m of the tile's buildings (module docstring);
    heights_m and classes are the tile's (T+1, T+1) fields. (0, 5) at levels that carry none.
    ``parcels``: :func:`parcels` of the tile when the caller has it (one pass for all features)."""
    return _buildings(world, seed, key, heights_m, classes, parcels)[0]


def parcels(world: World | str, seed: int, key: TileKey, heights_m: np.ndarray, classes: np.ndarray) -> dict | None:
    """The per-parcel fields that :func:`buildings`, :func:`roads` and :func:`trees` share (None at
    levels that carry no buildings): compute once, pass to each."""
    world = World.parse(world) if not isinstance(world, World) else world
    return _parcels(world, seed, key, heights_m, classes) if key.level in BUILDING_LEVELS else None


def street_top(pi: np.ndarray) -> np.ndarray:
    """True where a street runs along the top (north) edge of parcel row ``pi`` (global)."""
    return np.mod(pi, BLOCK_PARCELS) == 0


def street_left(seed: int, pi: np.ndarray, pj: np.ndarray) -> np.ndarray:
    """True where a street runs along the left (west) edge of parcel (pi, pj): every
    BLOCK_PARCELS-th column, offset per block row (a staggered, jittered grid)."""
    br = np.floor_divide(pi, BLOCK_PARCELS)
    off = noise.hash_pairs(noise.stream_key(seed, PARCEL_LEVEL, 90), br, np.zeros_like(br)) % np.uint64(BLOCK_PARCELS)
    return np.mod(pj + off.astype(np.int64), BLOCK_PARCELS) == 0


def _parcels(world: World, seed: int, key: TileKey, heights_m: np.ndarray, classes: np.ndarray,
             site: bool = True, sample: int = 1) -> dict:
    """Per-parcel fields of a tile at a carrying level, each (n, n) (n = parcels per tile side);
    ``site`` False skips the 9.6 m steepness test (streets need no heights); ``sample`` > 1: only
    every sample-th parcel row and column ((n / sample, n / sample) fields, the same values: for
    :func:`blocks`). ``n`` stays the tile's parcels per side (local index = pi - key.y * n)."""
    q = 1 << (key.level - PARCEL_LEVEL)  # samples per parcel side
    n = T // q
    m = -(-n // sample)
    rs = np.arange(0, n, sample, dtype=np.int64)  # local parcel rows (and columns) taken
    top, bot = slice(0, n, sample), slice(1, n + 1, sample)  # their north (west) and south (east) corners
    pi = (key.y * n + rs)[:, None] + np.zeros((1, m), np.int64)
    pj = (key.x * n + rs)[None, :] + np.zeros((m, 1), np.int64)
    h = heights_m[::q, ::q].astype(np.float64)  # parcel corners (n+1, n+1)
    nw, ne, sw, se = h[top, top], h[top, bot], h[bot, top], h[bot, bot]
    cls_c = classes[q // 2 :: q, q // 2 :: q][::sample, ::sample]  # centres
    corners = classes[::q, ::q]
    wet = (corners[top, top] == WATER) | (corners[bot, top] == WATER) | (corners[top, bot] == WATER) | \
          (corners[bot, bot] == WATER) | (cls_c == WATER)
    e_m, n_m = _metres_per_sample(world, key.level, key.y * T + np.arange(0, T + 1, q))
    pw, ph = (e_m[top] * q)[:, None] * np.ones((1, m)), n_m * q  # parcel width (m, m), depth
    diag = np.hypot(pw, ph)
    slope = np.abs(ne - nw) / pw  # the steepest edge or diagonal (max is exact in any order)
    for part in (np.abs(se - sw) / pw, np.abs(sw - nw) / ph, np.abs(se - ne) / ph, np.abs(se - nw) / diag,
                 np.abs(sw - ne) / diag):
        np.maximum(slope, part, out=slope)
    steep = slope > MAX_SLOPE
    if site:
        steep |= _site_steep(world, key, heights_m, n)[::sample, ::sample]
    urban, farm = cls_c == URBAN, (cls_c == CROPLAND) | (cls_c == GRASSLAND)
    park, village, metro = np.zeros((m, m), bool), np.zeros((m, m), bool), np.zeros((m, m))
    sel = urban | farm  # the only parcels whose park, village or metro factor anything reads
    if sel.any():
        metro[sel] = metro_at(world, *_centres(world, PARCEL_LEVEL, pi[sel], pj[sel]))
        park[sel], village[sel] = park_and_village(world, seed, pi[sel], pj[sel], metro[sel])
    return {"q": q, "n": n, "pi": pi, "pj": pj, "pw": pw, "ph": ph, "wet": wet, "steep": steep, "park": park,
            "metro": metro, "urban": urban, "village": farm & village}


def _site_steep(world: World, key: TileKey, heights_m: np.ndarray, n: int) -> np.ndarray:
    """(n, n) bool: some edge or diagonal of the level-:data:`SITE_LEVEL` cells (9.6 m) inside the
    parcel is steeper than 30 deg (the parcel's corners alone, 38 m apart, miss the relief refined
    between them). Those samples and their metres are the same at every carrying level (nested);
    float32 rises compared with 30 deg runs: no division, a few operations a cell."""
    m = 1 << (SITE_LEVEL - PARCEL_LEVEL)  # cells per parcel side
    qs = 1 << (key.level - SITE_LEVEL)  # samples per cell at this level
    g = np.ascontiguousarray(heights_m[::qs, ::qs], dtype=np.float32)  # (n*m + 1, n*m + 1)
    e13, n13 = _metres_per_sample(world, SITE_LEVEL, key.y * (T // qs) + np.arange(T // qs + 1, dtype=np.int64))
    run_e = (MAX_SLOPE * e13).astype(np.float32)[:, None]  # east run at each row's latitude
    run_n = np.float32(MAX_SLOPE * n13)
    run_d = (MAX_SLOPE * np.hypot(e13[:-1], n13)).astype(np.float32)[:, None]
    east = np.abs(g[:, 1:] - g[:, :-1]) > run_e  # (G, G-1) edges along rows
    north = np.abs(g[1:] - g[:-1]) > run_n  # (G-1, G)
    cell = east[:-1] | east[1:] | north[:, :-1] | north[:, 1:] | \
        (np.abs(g[1:, 1:] - g[:-1, :-1]) > run_d) | (np.abs(g[1:, :-1] - g[:-1, 1:]) > run_d)
    return cell.reshape(n, m, n, m).any(axis=(1, 3))


def _buildings(world, seed: int, key: TileKey, heights_m: np.ndarray, classes: np.ndarray,
               parcels: dict | None = None) -> tuple:
    """(buildings (N, 5) float32, tile-local parcel row (N,), parcel col (N,)) int64; ``parcels`` =
    :func:`_parcels`'s result when the caller has it."""
    world = World.parse(world) if not isinstance(world, World) else world
    none = (NO_BUILDINGS, np.zeros(0, np.int64), np.zeros(0, np.int64))
    if key.level not in BUILDING_LEVELS and (key.level != BLOCK_LEVEL or parcels is None):
        return none
    P = parcels if parcels is not None else _parcels(world, seed, key, heights_m, classes)
    q, n, ph = P["q"], P["n"], P["ph"]
    city = P["urban"] & ~P["park"]
    ok = (city | P["village"]) & ~P["wet"] & ~P["steep"]
    if not ok.any():
        return none
    pi, pj, pw, city = P["pi"][ok], P["pj"][ok], P["pw"][ok], city[ok]
    x, y = _centres(world, PARCEL_LEVEL, pi, pj)
    d, m = urban_intensity(world, seed, x, y, P["metro"][ok])
    d, m = np.where(city, d, 0.0), np.where(city, m, 0.0)
    u = _uniforms(seed, PARCEL_LEVEL, 100, pi, pj, 9)
    keep = u[0] < np.where(city, 0.55 + 0.4 * d, 0.5)
    # the free box: set back from the streets on the parcel's sides (module docstring)
    sb = ROAD_W_URBAN / 2.0 + 1.0
    s_top = np.where(street_top(pi), sb, SIDE_GAP_M)
    s_bottom = np.where(street_top(pi + 1), sb, SIDE_GAP_M)
    s_left = np.where(street_left(seed, pi, pj), sb, SIDE_GAP_M)
    s_right = np.where(street_left(seed, pi, pj + 1), sb, SIDE_GAP_M)
    aw, ah = pw - s_left - s_right, ph - s_top - s_bottom
    side = np.where(city, 0.6 + 0.4 * d, 0.45 + 0.15 * u[7])
    w = aw * side * (0.85 + 0.15 * u[1])
    dep = ah * side * (0.85 + 0.15 * u[2])
    storeys = np.where(city, 1 + np.round((MID_STOREYS + METRO_STOREYS * m) * d * (0.6 + 0.8 * u[3])), 1 + (u[3] < 0.3))
    storeys = np.where(city & (u[4] < 0.01 * d * d), 8 + np.floor((20.0 + METRO_STOREYS * m) * u[5]), storeys)
    # centre in the free box (metres from the tile's sample [0, 0]), jittered by 80 % of the slack
    col0, row0 = (pj - key.x * n) * q, (pi - key.y * n) * q
    east = col0 * (pw / q) + s_left + aw / 2.0 + 0.4 * (aw - w) * (2.0 * u[6] - 1.0)
    north = -(row0 * (ph / q) + s_top + ah / 2.0 + 0.4 * (ah - dep) * (2.0 * u[8] - 1.0))
    out = np.stack([east, north, w, dep, storeys * STOREY_M + np.where(city, FLAT_ROOF_M, PITCHED_ROOF_M)],
                   axis=1)[keep]
    return np.ascontiguousarray(out, dtype=np.float32), (pi - key.y * n)[keep], (pj - key.x * n)[keep]


def blocks(world: World | str, seed: int, key: TileKey, heights_m: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N, 5) float32 merged blocks [east, north, width, depth, height] m of a level-:data:`BLOCK_LEVEL`
    tile (4.9 km; drawn from ~6 to ~11 km away at 1080p, where buildings are a few pixels tall),
    (0, 5) at other levels: the far field's stand-in for the buildings its level-13 children carry.

    The parcels' buildings by the same rules, less the 9.6 m site test (a level-12 tile has no
    level-13 samples; the parcel-corner slope test stays), merged per :data:`BLOCK_MERGE` squared
    parcels (4 x 4: a level-9 cell, 153 m, a city block, inside the tile), estimated from every
    :data:`BLOCK_SAMPLE`-th parcel row and column (4 of the 16: a quarter of the work): one box of
    their summed footprint area, inside the box of the parcels the contributing samples stand for
    (so a block does not spread over a group's water or park parcels) with that box's aspect, at
    their area-weighted centre and of their area-weighted mean height, so the built-up share and
    volume carry over; a block with a water sample under it (waterfronts) is left out. A block
    belongs to one tile; a drawn tile's children are not drawn with it, so blocks and buildings
    never show together."""
    world = World.parse(world) if not isinstance(world, World) else world
    if key.level != BLOCK_LEVEL:
        return NO_BUILDINGS
    q = 1 << (key.level - PARCEL_LEVEL)
    centre = classes[q // 2 :: q, q // 2 :: q]
    if not ((centre == URBAN) | (centre == CROPLAND) | (centre == GRASSLAND)).any():
        return NO_BUILDINGS  # no town or village parcel (forest, desert, sea): nothing to merge
    st = BLOCK_SAMPLE
    P = _parcels(world, seed, key, heights_m, classes, site=False, sample=st)
    b, bi, bj = _buildings(world, seed, key, heights_m, classes, P)
    if not len(b):
        return NO_BUILDINGS
    k = BLOCK_MERGE
    n2 = P["n"] // k
    g = (bi // k) * n2 + bj // k
    groups, inv = np.unique(g, return_inverse=True)
    v = b.astype(np.float64)
    area = v[:, 2] * v[:, 3] * (st * st)  # each sampled parcel stands for st x st
    A = np.bincount(inv, area)
    east, north = np.bincount(inv, area * v[:, 0]) / A, np.bincount(inv, area * v[:, 1]) / A
    height = np.bincount(inv, area * v[:, 4]) / A
    gi, gj = groups // n2, groups % n2
    pw0 = P["pw"][k * gi // st, k * gj // st]  # the group's first row's parcel width (P is sampled)
    r0, r1 = np.full(groups.size, P["n"]), np.zeros(groups.size, np.int64)  # the cells the contributing
    c0, c1 = np.full(groups.size, P["n"]), np.zeros(groups.size, np.int64)  # parcels stand for
    np.minimum.at(r0, inv, bi)
    np.maximum.at(r1, inv, bi + st)
    np.minimum.at(c0, inv, bj)
    np.maximum.at(c1, inv, bj + st)
    e0, e1, s0, s1 = c0 * pw0, c1 * pw0, r0 * P["ph"], r1 * P["ph"]  # that box, m (a group's or less)
    bw, bh = e1 - e0, s1 - s0
    w, d = np.sqrt(A * bw / bh), np.sqrt(A * bh / bw)  # its aspect; A <= bw * bh: the box fits
    east = np.clip(east, e0 + w / 2, e1 - w / 2)
    north = -np.clip(-north, s0 + d / 2, s1 - d / 2)
    out = np.stack([east, north, w, d, height], axis=1)
    return np.ascontiguousarray(out[~_over_water(world, key, classes, out)], dtype=np.float32)


def _over_water(world: World, key: TileKey, classes: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: some sample of the tile under the footprint of boxes (N, 5) [east, north, width,
    depth, height] m is water (a summed-area table: O(1) a box)."""
    water = classes == WATER
    if not water.any():
        return np.zeros(len(boxes), bool)
    wet = np.zeros((T + 2, T + 2), np.int32)
    np.cumsum(water, axis=0, dtype=np.int32, out=wet[1:, 1:])
    np.cumsum(wet[1:, 1:], axis=1, out=wet[1:, 1:])
    e_m, n_m = _metres_per_sample(world, key.level, key.y * T - boxes[:, 1] / spacing_m(key.level))
    c0 = np.clip(np.ceil((boxes[:, 0] - boxes[:, 2] / 2) / e_m), 0, T + 1).astype(np.int64)
    c1 = np.clip(np.floor((boxes[:, 0] + boxes[:, 2] / 2) / e_m) + 1, 0, T + 1).astype(np.int64)
    r0 = np.clip(np.ceil((-boxes[:, 1] - boxes[:, 3] / 2) / n_m), 0, T + 1).astype(np.int64)
    r1 = np.clip(np.floor((-boxes[:, 1] + boxes[:, 3] / 2) / n_m) + 1, 0, T + 1).astype(np.int64)
    return (wet[r1, c1] - wet[r0, c1] - wet[r1, c0] + wet[r0, c0]) > 0


def roads(world: World | str, seed: int, key: TileKey, classes: np.ndarray, parcels: dict | None = None) -> np.ndarray:
    """(K, 5) float32 street segments [east0, north0, east1, north1, width] m of the tile: along the
    top and left edges of its urban and village parcels where :func:`street_top` / :func:`street_left`
    say so (an edge belongs to the parcel below / right of it: one tile each). (0, 5) elsewhere."""
    world = World.parse(world) if not isinstance(world, World) else world
    if key.level not in BUILDING_LEVELS:
        return NO_BUILDINGS
    P = parcels if parcels is not None else _parcels(world, seed, key, np.zeros(classes.shape, np.float32), classes,
                                                     site=False)
    n, pw, ph = P["n"], P["pw"], P["ph"]
    built = (P["urban"] | P["village"]) & ~P["wet"]
    width = np.where(P["urban"], ROAD_W_URBAN, ROAD_W_VILLAGE)
    col0 = (P["pj"] - key.x * n) * pw  # metres: parcel columns times the row's parcel width
    row0 = (P["pi"] - key.y * n) * ph
    segs = []
    top = built & street_top(P["pi"])
    segs.append(np.stack([col0, -row0, col0 + pw, -row0, width], axis=-1)[top])
    left = built & street_left(seed, P["pi"], P["pj"])
    segs.append(np.stack([col0, -row0, col0, -(row0 + ph), width], axis=-1)[left])
    return np.ascontiguousarray(np.concatenate(segs), dtype=np.float32)


def trees(world: World | str, seed: int, key: TileKey, classes: np.ndarray, heights_m: np.ndarray,
          parcels: dict | None = None, built: tuple | None = None) -> np.ndarray:
    """(M, 3) float32 [east, north, height] m of the tile's trees; (0, 3) at levels that carry none.
    ``heights_m`` (T+1, T+1) place the tile's buildings, which trees keep clear of; ``built``:
    :func:`_buildings` of the tile when the caller has it."""
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
    P = parcels if parcels is not None else _parcels(world, seed, key, heights_m, classes)  # inside the tile
    park = P["park"][(ti - key.y * n) >> shift, (tj - key.x * n) >> shift]
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
    ok &= ~_on_street(seed, key, P, ti, tj, out)
    blds, bi, bj = built if built is not None else _buildings(world, seed, key, heights_m, classes, P)
    if len(blds):  # at most one building per parcel, inside it: test each tree against its parcel's
        slot = np.full((T >> (key.level - PARCEL_LEVEL),) * 2, -1, dtype=np.int64)
        slot[bi, bj] = np.arange(len(blds))
        k = slot[(ti - key.y * n) >> shift, (tj - key.x * n) >> shift]
        b = blds[np.maximum(k, 0)].astype(np.float64)
        inside = (np.abs(out[..., 0] - b[..., 0]) < b[..., 2] / 2 + 1.5) & \
                 (np.abs(out[..., 1] - b[..., 1]) < b[..., 3] / 2 + 1.5)
        ok &= ~((k >= 0) & inside)
    return np.ascontiguousarray(out[ok], dtype=np.float32)


def _on_street(seed: int, key: TileKey, P: dict, ti: np.ndarray, tj: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(n, n) bool: tree cells (global ti, tj) whose point pos[..., :2] (tile metres) lies within half
    an urban street width (+0.5 m) of a street that is drawn (or, across the tile's bottom and right
    edges, may be drawn) along its parcel's sides; P = :func:`_parcels` of the tile."""
    built = (P["urban"] | P["village"]) & ~P["wet"]
    below = np.pad(built, ((0, 1), (0, 0)), constant_values=True)[1:]  # owners of bottom / right edges
    right = np.pad(built, ((0, 0), (0, 1)), constant_values=True)[:, 1:]
    shift = TREE_LEVEL - PARCEL_LEVEL
    pi, pj = ti >> shift, tj >> shift
    li, lj = pi - key.y * P["n"], pj - key.x * P["n"]
    pw, ph = P["pw"][li, lj], P["ph"]
    e = pos[..., 0] - lj * pw
    s_ = -pos[..., 1] - li * ph
    hw = ROAD_W_URBAN / 2.0 + 0.5
    return ((built[li, lj] & street_top(pi) & (s_ < hw)) | (below[li, lj] & street_top(pi + 1) & (ph - s_ < hw))
            | (built[li, lj] & street_left(seed, pi, pj) & (e < hw))
            | (right[li, lj] & street_left(seed, pi, pj + 1) & (pw - e < hw)))


def tile_features(pyramid, key: TileKey, heights_m: np.ndarray | None = None,
                  classes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """{'buildings': (N, 5), 'trees': (M, 3), 'roads': (K, 5)} float32 of one pyramid tile."""
    from generator.landcover import tile_landcover

    h = pyramid.tile(key).height if heights_m is None else heights_m
    lc = tile_landcover(pyramid, key, h) if classes is None else classes
    return {"buildings": buildings(pyramid.world, pyramid.seed, key, h, lc),
            "trees": trees(pyramid.world, pyramid.seed, key, lc, h),
            "roads": roads(pyramid.world, pyramid.seed, key, lc)}


def contract_fields(pyramid, key: TileKey, heights_m: np.ndarray,
                    rgb: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The land-cover and feature entries of ``worldstream tile``'s .npz (docs/LANDCOVER.md):
    ``landcover`` (T+1, T+1) uint8, ``class_names`` (n,) str (index = class id), ``nir`` (T+1, T+1)
    and, given the tile's ``rgb``, ``albedo`` (T+1, T+1, 3) float32 (:mod:`generator.scene`); at
    levels that carry them ``buildings`` (N, 5), ``roads`` (K, 5) and ``trees`` (M, 3) float32."""
    from generator.landcover import CLASS_NAMES, tile_landcover
    from generator.scene import scene_colour

    lc = tile_landcover(pyramid, key, heights_m)
    out = {"landcover": lc, "class_names": np.array(CLASS_NAMES)}
    rows = key.y * T + np.arange(T + 1, dtype=np.int64)
    cols = key.x * T + np.arange(T + 1, dtype=np.int64)
    base = rgb if rgb is not None else np.zeros(lc.shape + (3,), np.float32)
    albedo, out["nir"] = scene_colour(pyramid.world, pyramid.seed, key.level, rows, cols, lc, base)
    if rgb is not None:
        out["albedo"] = albedo
    if key.level in BUILDING_LEVELS:
        out["buildings"] = buildings(pyramid.world, pyramid.seed, key, heights_m, lc)
        out["roads"] = roads(pyramid.world, pyramid.seed, key, lc)
    if key.level in TREE_LEVELS:
        out["trees"] = trees(pyramid.world, pyramid.seed, key, lc, heights_m)
    return out
