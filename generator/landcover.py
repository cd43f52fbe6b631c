"""Land cover as a modality of the pyramid: one class per sample, pure, nested and seamless.

``landcover(world, seed, level, rows, cols, heights_m, far_heights)`` -> (H, W)
uint8 class ids (:data:`CLASS_NAMES`, index = id) for a window of level-``level``
global samples (rows (H,) and cols (W,) consecutive int64) whose heights are
``heights_m`` (H, W). :func:`tile_landcover` does it for one pyramid tile.

Why it nests (a child's even samples keep the parent's class): a class is
``rule(location, height, birth slope)`` where every input is the same at every
level at which the sample exists:

- *location*: a sample's lon/lat (earth) or east/north metres (plane) is
  computed as ``row * spacing``; an even child sample (2r, 2c) with half the
  spacing gives the same float bits (scaling by 2 is exact), so the context
  channels, the MODIS/Koppen lookups and the value noise (keyed by location,
  not by sample index) read identical values;
- *height*: the pyramid is nested, so a sample's height never changes below the
  level where it appears;
- *birth slope*: the slope is measured once, at the sample's *birth level*
  B = L - min(ctz(row), ctz(col)) (the coarsest level where it exists), from
  its neighbours at that level along the direction(s) in which it is odd
  (the parents it was refined from). At level L those neighbours are the samples
  ``2**(L-B)`` away, which lie inside the same tile for every sample but the four
  tile corners (k = L - B >= 8); those few points are read through
  ``far_heights`` (:func:`tile_landcover` asks the pyramid). Samples born at
  or above the anchor level use no slope (their spacing, >= 9.8 km, says nothing).

The rules, in order (later ones override): the context's land-cover group at
the (slightly warped) location -> class (earth: the MODIS IGBP class itself,
so forests split into broadleaf/needleleaf; plane: its synthetic groups split by
climate); water where the real water is (earth: 30" land fraction < 0.5, or
MODIS water, i.e. lakes, except MODIS water cells with >= 5 of 8 urban
neighbours, which are urban: rivers between built-up banks; plane: the
continent's sea); beach sand on land below 3 m next to the
sea; snow above the snowline (earth 5,500 m within 20 deg of the equator,
falling 110 m per degree of latitude beyond, +-200 m noise; plane: the
continent's snowline); bare rock where the birth slope exceeds 35 deg (except
in towns: the refiner's metre-scale roughness is not a cliff). The plane's
continent has no urban group: towns are farmland or grassland where a 30 km
value noise exceeds 0.65 (:func:`plane_city`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from runtime.tiles import ANCHOR_LEVEL, T, TileKey, World, spacing_deg, spacing_m

CLASS_NAMES = ("water", "snow_ice", "bare_rock", "sand", "grassland", "shrubland", "broadleaf_forest",
               "needleleaf_forest", "cropland", "wetland", "urban", "building", "road", "tree", "sky")
"""The fixed class table (index = class id). building .. sky are for features and sensors."""
(WATER, SNOW_ICE, BARE_ROCK, SAND, GRASSLAND, SHRUBLAND, BROADLEAF, NEEDLELEAF, CROPLAND, WETLAND,
 URBAN, BUILDING, ROAD, TREE, SKY) = range(len(CLASS_NAMES))

# class -> index in generator.anchors.context.COVER_GROUPS (-1: water), for agreement with MODIS
CLASS_TO_GROUP = np.array([-1, 5, 6, 6, 1, 1, 0, 0, 3, 2, 4, -1, -1, 0, -1], dtype=np.int8)
# MODIS IGBP class -> class id (before the mixed-forest / barren splits)
IGBP_TO_CLASS = np.full(256, WATER, dtype=np.uint8)
IGBP_TO_CLASS[[1, 3]] = NEEDLELEAF  # evergreen / deciduous needleleaf
IGBP_TO_CLASS[[2, 4, 5]] = BROADLEAF  # evergreen / deciduous broadleaf, mixed (split by noise)
IGBP_TO_CLASS[[6, 7, 8]] = SHRUBLAND  # closed, open shrublands, woody savannas
IGBP_TO_CLASS[[9, 10]] = GRASSLAND  # savannas, grasslands
IGBP_TO_CLASS[11] = WETLAND
IGBP_TO_CLASS[[12, 14]] = CROPLAND  # croplands, cropland/natural mosaic
IGBP_TO_CLASS[13] = URBAN
IGBP_TO_CLASS[15] = SNOW_ICE
IGBP_TO_CLASS[16] = BARE_ROCK  # barren (sand where the climate is arid)

ROCK_SLOPE = float(np.tan(np.radians(35.0)))
SNOW_EQUATOR_M, SNOW_FALL_M_PER_DEG, SNOW_NOISE_M = 5500.0, 110.0, 200.0
BEACH_M = 3.0
PLANE_CITY_WAVE_M = 30000.0
PLANE_CONTEXT_LEVEL = 9  # the plane's context lattice (153 m)
WARP_DEG, WARP_WAVELENGTH_DEG = 0.012, 0.05  # MODIS cells read at a warped point: no 5 km squares

FarHeights = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
"""(level, rows (N,), cols (N,)) global samples -> (N,) float32 heights in metres."""


def value_noise(seed: int, stream: int, x: np.ndarray, y: np.ndarray, wavelength: float) -> np.ndarray:
    """Smooth lattice value noise in [-1, 1] at float64 points (any unit; ``wavelength`` in it)."""
    from generator.anchors.plane import _value_noise

    return _value_noise(seed, 2000 + stream, x, y, wavelength)


def locations(world: World, level: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact, level-invariant positions (H, W) float64: earth (lon, lat) degrees, plane (east, south) m."""
    if world is World.EARTH:
        d = spacing_deg(level)
        lat = np.broadcast_to((90.0 - rows * d)[:, None], (rows.size, cols.size))
        lon = np.broadcast_to((-180.0 + np.mod(cols * d, 360.0))[None, :], (rows.size, cols.size))
        return lon, lat
    s = spacing_m(level)
    return (np.broadcast_to((cols * s)[None, :], (rows.size, cols.size)),
            np.broadcast_to((rows * s)[:, None], (rows.size, cols.size)))


def base_classes(world: World, seed: int, level: int, rows: np.ndarray, cols: np.ndarray,
                 want_ndvi: bool = False) -> tuple:
    """Classes from the context alone -> (classes (H, W) uint8, land (H, W) bool, arid (H, W) bool,
    ndvi_max (H, W) float32 or None unless ``want_ndvi``, land fraction (H, W) float32). A pure function
    of each sample's location."""
    from generator.anchors.context import context

    x, y = locations(world, level, rows, cols)
    if world is World.EARTH:
        from generator.anchors.context import EarthContext, _nearest

        ctx = EarthContext.shared()
        lon, lat = x, y
        frac = _land_fraction(ctx.landwater, lat, lon)
        land = frac >= 0.5
        wl = lat + WARP_DEG * value_noise(seed, 1, lon, lat, WARP_WAVELENGTH_DEG)
        wo = lon + WARP_DEG * value_noise(seed, 2, lon, lat, WARP_WAVELENGTH_DEG)
        igbp = _nearest(ctx.modis, wl, wo)
        cls = IGBP_TO_CLASS[igbp]
        mixed = _masked_noise(seed, 3, lon, lat, 0.02, igbp == 5) > 0.0
        cls = np.where(mixed, np.uint8(NEEDLELEAF), cls)
        cls = _city_river_cells(ctx, cls, land, wl, wo)
        arid = _nearest(ctx.koppen, lat, lon) == 2  # group B
        ndvi = context(world, level, rows, cols, seed)[13] if want_ndvi else None
        water = ~land | (cls == WATER)
    else:
        c = _plane_context(seed, x, y)
        land, arid, cold = c[0] >= 0.5, c[2] > 0.5, (c[4] + c[5]) > 0.5
        grp = np.where(c[6:13].max(axis=0) > 0.5, c[6:13].argmax(axis=0), -1)
        table = np.array([BROADLEAF, GRASSLAND, WETLAND, CROPLAND, URBAN, SNOW_ICE, BARE_ROCK], dtype=np.uint8)
        cls = np.where(grp >= 0, table[np.maximum(grp, 0)], np.uint8(WATER))
        split = _masked_noise(seed, 4, x, y, 3000.0, (cls == BROADLEAF) | (cls == GRASSLAND))
        cls = np.where((cls == BROADLEAF) & (cold | (split > 0.45)), np.uint8(NEEDLELEAF), cls)
        cls = np.where((cls == GRASSLAND) & (split < -0.3), np.uint8(SHRUBLAND), cls)
        farm = np.isin(cls, (CROPLAND, GRASSLAND))  # the continent has no urban group: towns on farmland
        town = np.zeros(farm.shape, dtype=bool)
        town[farm] = plane_city(seed, x[farm], y[farm]) > 0.0
        cls = np.where(town, np.uint8(URBAN), cls)
        ndvi, frac = c[13], c[0]
        water = ~land
    cls = np.where((cls == BARE_ROCK) & arid, np.uint8(SAND), cls)
    cls = np.where(water, np.uint8(WATER), cls).astype(np.uint8)
    return cls, ~water, arid, ndvi, frac


def _masked_noise(seed: int, stream: int, x: np.ndarray, y: np.ndarray, wave: float, mask: np.ndarray) -> np.ndarray:
    """:func:`value_noise` where ``mask``, 0 elsewhere (the same values, computed only where needed)."""
    out = np.zeros(mask.shape)
    if mask.any():
        out[mask] = value_noise(seed, stream, x[mask], y[mask], wave)
    return out


def _land_fraction(lw, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The 30" land fraction at points; all-land or all-water boxes (with a one-cell margin) skip the
    per-point lookup (bit-identical: every bilinear corner is then 1 or 0)."""
    st = lw.uniform_state(float(lat.min()), float(lat.max()), float(lon.min()), float(lon.max()))
    if st is not None:
        from generator.anchors.landwater import LAND

        return np.full(lat.shape, 1.0 if st == LAND else 0.0, dtype=np.float32)
    return lw.land_fraction(lat, lon)


def _city_river_cells(ctx, cls: np.ndarray, land: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """MODIS water on the 30" mask's land is a lake the mask does not know (it counts most lakes
    as land), except where at least 5 of the 8 neighbouring 0.05 deg cells are urban: then it is a
    river or harbour cell between built-up banks (midtown Manhattan's cell is water in MODIS), and
    the point is urban. A heuristic: 5 km cells cannot say more."""
    from generator.anchors.context import _nearest

    wet = land & (cls == WATER)
    if not wet.any():
        return cls
    la, lo = lat[wet], lon[wet]
    urban = np.zeros(la.shape, dtype=np.int64)
    for dl, do in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
        urban += IGBP_TO_CLASS[_nearest(ctx.modis, la + 0.05 * dl, lo + 0.05 * do)] == URBAN
    out = cls.copy()
    out[np.nonzero(wet)[0][urban >= 5], np.nonzero(wet)[1][urban >= 5]] = URBAN
    return out


def _plane_context(seed: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The plane's context channels (15, H, W) at points (east, south) m, read at the nearest node of
    the fixed level-:data:`PLANE_CONTEXT_LEVEL` lattice after a smooth warp (a pure function of the
    point; deep tiles need only a few dozen context evaluations)."""
    from generator.anchors.context import context

    s = spacing_m(PLANE_CONTEXT_LEVEL)
    wx = x + 0.5 * s * value_noise(seed, 6, x, y, 4.0 * s)
    wy = y + 0.5 * s * value_noise(seed, 7, x, y, 4.0 * s)
    ri, ci = np.round(wy / s).astype(np.int64), np.round(wx / s).astype(np.int64)
    ur, rinv = np.unique(ri, return_inverse=True)
    uc, cinv = np.unique(ci, return_inverse=True)
    grid = context(World.PLANE, PLANE_CONTEXT_LEVEL, ur, uc, seed)
    return grid[:, rinv.reshape(x.shape), cinv.reshape(x.shape)]


def plane_city(seed: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Plane-world city field at (east, south) m: > 0 inside a city, rising to ~1 in its core
    (a 30 km value noise above 0.65, rescaled; about 6 % of the land)."""
    return (value_noise(seed, 8, x, y, PLANE_CITY_WAVE_M) - 0.65) / 0.35


def snowline_m(world: World, seed: int, lat_or_none: np.ndarray | None) -> np.ndarray | float:
    """Snowline altitude (m): earth by latitude (module docstring), plane the continent's."""
    if world is World.EARTH:
        return SNOW_EQUATOR_M - SNOW_FALL_M_PER_DEG * np.maximum(np.abs(lat_or_none) - 20.0, 0.0)
    from generator.anchors.plane import PlaneConfig

    return PlaneConfig().snowline_m


def birth_slope(world: World, level: int, rows: np.ndarray, cols: np.ndarray, heights_m: np.ndarray,
                far_heights: FarHeights | None) -> np.ndarray:
    """(H, W) float32 tangent of the slope at each sample's birth level (NaN where born at or above
    the anchor level). See the module docstring for why this is the same at every level."""
    H, W = heights_m.shape
    L = int(level)
    r = np.broadcast_to(rows[:, None], (H, W))
    c = np.broadcast_to(cols[None, :], (H, W))
    k = np.minimum(np.minimum(_ctz(r), _ctz(c)), L)  # L - birth level
    need = k < L - ANCHOR_LEVEL
    step = np.left_shift(np.int64(1), k)
    sr = np.where((r >> k) & 1 == 1, step, 0)
    sc = np.where((c >> k) & 1 == 1, step, 0)
    i = np.arange(H)[:, None] + np.zeros((1, W), dtype=np.int64)
    j = np.zeros((H, 1), dtype=np.int64) + np.arange(W)[None, :]

    def at(di, dj):
        ii, jj = i + di, j + dj
        inside = (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
        out = heights_m[np.clip(ii, 0, H - 1), np.clip(jj, 0, W - 1)].astype(np.float64)
        far = need & ~inside
        if far.any():
            if far_heights is None:
                raise ValueError(f"{int(far.sum())} samples need heights outside the window at their birth "
                                 "level (tile corners); pass far_heights (see tile_landcover)")
            for b in np.unique(L - k[far]):
                m = far & (L - k == b)
                kk = L - int(b)
                out[m] = far_heights(int(b), (r[m] + di[m]) >> kk, (c[m] + dj[m]) >> kk)
        return out

    nw, ne, sw, se = at(-sr, -sc), at(-sr, sc), at(sr, -sc), at(sr, sc)
    s_birth = spacing_m(L) * step.astype(np.float64)
    east = s_birth
    if world is World.EARTH:
        lat = 90.0 - rows * spacing_deg(L)
        east = s_birth * np.maximum(np.cos(np.radians(lat)), 1e-3)[:, None]
    gy = (sw + se - nw - ne) / (4.0 * s_birth)
    gx = (ne + se - nw - sw) / (4.0 * east)
    return np.where(need, np.hypot(gx, gy), np.nan).astype(np.float32)


def landcover(world: World | str, seed: int, level: int, rows: np.ndarray, cols: np.ndarray,
              heights_m: np.ndarray, far_heights: FarHeights | None = None) -> np.ndarray:
    """Class ids (H, W) uint8 of level-``level`` samples rows (H,) x cols (W,) with heights (H, W) m."""
    world = World.parse(world) if not isinstance(world, World) else world
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    h = np.asarray(heights_m, dtype=np.float32)
    if h.shape != (rows.size, cols.size):
        raise ValueError(f"heights must be (len(rows), len(cols)) = {(rows.size, cols.size)}, got {h.shape}")
    if rows.size > 1 and not (np.diff(rows) == 1).all() or cols.size > 1 and not (np.diff(cols) == 1).all():
        raise ValueError("rows and cols must be consecutive global samples")
    cls, land, _arid, _ndvi, frac = base_classes(world, seed, level, rows, cols)
    x, y = locations(world, level, rows, cols)
    if world is World.EARTH:
        coast = land & (frac < 0.8)
        line = snowline_m(world, seed, y)
        wave = 0.02
    else:
        coast = land
        line = snowline_m(world, seed, None)
        wave = 2000.0
    beach = coast & (h < BEACH_M) & np.isin(cls, (GRASSLAND, SHRUBLAND, CROPLAND, BARE_ROCK, BROADLEAF, NEEDLELEAF))
    cls = np.where(beach, np.uint8(SAND), cls)
    high = land & (h > line - SNOW_NOISE_M)
    snow = high & (h > line + SNOW_NOISE_M * _masked_noise(seed, 5, x, y, wave, high))
    cls = np.where(snow, np.uint8(SNOW_ICE), cls)
    slope = birth_slope(world, level, rows, cols, h, far_heights)
    rock = land & (cls != URBAN) & (slope > ROCK_SLOPE)  # NaN compares False; towns keep their class
    return np.where(rock, np.uint8(BARE_ROCK), cls).astype(np.uint8)


def tile_landcover(pyramid, key: TileKey, heights_m: np.ndarray | None = None) -> np.ndarray:
    """(T+1, T+1) uint8 classes of one pyramid tile; corner samples' far neighbours come from
    ``pyramid.region`` at their birth level (blocks the tile's ancestors mostly computed already)."""
    h = pyramid.tile(key).height if heights_m is None else heights_m
    rows = key.y * T + np.arange(T + 1, dtype=np.int64)
    cols = key.x * T + np.arange(T + 1, dtype=np.int64)

    def far(level: int, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.array([pyramid.region(level, int(a), int(b), 1, 1)[0, 0, 0] for a, b in zip(r, c)],
                        dtype=np.float32)

    return landcover(pyramid.world, pyramid.seed, key.level, rows, cols, h, far)


def _ctz(a: np.ndarray) -> np.ndarray:
    """Count of trailing zero bits of int64 values (62 for 0)."""
    a = np.asarray(a, dtype=np.int64)
    low = a & -a
    out = np.full(a.shape, 62, dtype=np.int64)
    nz = low != 0
    out[nz] = np.log2(np.abs(low[nz]).astype(np.float64)).round().astype(np.int64)
    return out
