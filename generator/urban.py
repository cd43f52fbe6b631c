"""Urban intensity from data: how dense and how tall a city is at a location (earth).

The assets hold no building height, population or night-light layer; what they hold is
MODIS land cover (IGBP, 0.05 deg: urban = class 13) and the climatological NDVI maximum
(0.1 deg). Two measures come from them (docs/LANDCOVER.md, "Density and heights"):

- **core depth** D (km): the distance from a location to the nearest *land* MODIS cell that
  is not urban (water, rivers and harbours do not end a city), capped at :data:`DEPTH_CAP_KM`.
  It grows with the radius of the built-up agglomeration and with centrality inside it: the
  centre of a 1,000 km^2 city is ~15 km deep, of a megacity 40 km or more. Average building
  height grows with city size (Schlaepfer, Lee & Bettencourt 2015, "Urban skylines",
  arXiv:1512.00946: 4.8 M buildings in 12 North American cities), and the tallest buildings
  cluster in the cores of the largest (Barr & Jedwab 2023, World Bank PRWP 10365), so
  :func:`metro_factor` m = clip((D - 15) / 25, 0, 1) scales storeys and density.
- **greyness** g = (0.70 - NDVI max) / (0.70 - 0.48), clipped: dense fabric has little
  vegetation. Calibrated on the assets themselves (:func:`calibration`): 0.70 is the median
  NDVI maximum under MODIS urban cells on a city's fringe (at most 12 of the 25 cells of their
  5 x 5 neighbourhood urban; 18,908 cells), 0.48 the lower quartile under urban cores (all 25
  urban; 490 cells, median 0.55). Density d = max(g, m).

Both are per MODIS cell, interpolated bilinearly between cell centres (no 5 km squares of
height), and pure functions of the location: a parcel reads the same values at every level.
Cost: the depth of a cell scans the cells within the cap once (memoised, bounded: 8,192
cells); a tile's parcels lie in a few cells.

What the data cannot say: land-use rules and preferences, which explain most of the
height differences between cities of similar size (Barr & Jedwab 2023): Tokyo's wards and
Paris (height limits) are as deep as New York and London by this measure.
"""

from __future__ import annotations

import functools

import numpy as np

DEPTH_CAP_KM = 44.0
METRO_FROM_KM, METRO_FULL_KM = 15.0, 40.0
URBAN_IGBP, WATER_IGBP, NODATA = 13, 0, 255
KM_PER_DEG = 111.32


def _modis():
    from generator.anchors.context import EarthContext

    return EarthContext.shared().modis


@functools.lru_cache(maxsize=8192)
def cell_depth_km(i: int, j: int) -> float:
    """Core depth (km) of MODIS cell (row i, col j) (0.05 deg, row 0 at 90 N, col 0 at 180 W):
    0 if it is non-urban land, else the distance between its centre and the nearest non-urban
    land cell's centre (east-west km at the cell's latitude), capped at DEPTH_CAP_KM."""
    grid = _modis()
    per = grid.shape[0] / 180.0
    i = min(max(int(i), 0), grid.shape[0] - 1)
    j = int(j) % grid.shape[1]
    v = int(grid[i, j])
    if v not in (URBAN_IGBP, WATER_IGBP):
        return 0.0
    km_n = KM_PER_DEG / per
    km_e = km_n * max(np.cos(np.radians(90.0 - (i + 0.5) / per)), 1e-3)
    ri = int(np.ceil(DEPTH_CAP_KM / km_n))
    rj = min(int(np.ceil(DEPTH_CAP_KM / km_e)), grid.shape[1] // 2)
    rows = np.arange(i - ri, i + ri + 1)
    ok = (rows >= 0) & (rows < grid.shape[0])
    w = grid[rows[ok]][:, np.mod(np.arange(j - rj, j + rj + 1), grid.shape[1])]
    edge = (w != URBAN_IGBP) & (w != WATER_IGBP) & (w != NODATA)
    if not edge.any():
        return DEPTH_CAP_KM
    di, dj = np.nonzero(edge)
    d = np.hypot((rows[ok][di] - i) * km_n, (dj - rj) * km_e)
    return float(min(d.min(), DEPTH_CAP_KM))


def core_depth_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Core depth (km) at locations (degrees, any shape), bilinear between MODIS cell centres."""
    grid = _modis()
    per = grid.shape[0] / 180.0
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    fi = (90.0 - lat) * per - 0.5
    fj = (lon + 180.0) * per - 0.5
    i0, j0 = np.floor(fi).astype(np.int64), np.floor(fj).astype(np.int64)
    ti, tj = fi - i0, fj - j0
    if i0.size == 0:
        return np.zeros(i0.shape)
    ia, ja = int(i0.min()), int(j0.min())
    ni, nj = int(i0.max()) - ia + 2, int(j0.max()) - ja + 2
    if ni * nj > 4 * i0.size + 16:  # scattered points (or across the antimeridian): per point
        def at(di, dj):
            return np.array([cell_depth_km(int(a) + di, int(b) + dj) for a, b in zip(i0.ravel(), j0.ravel())]
                            ).reshape(i0.shape)
    else:  # the box of cells under the points (a tile's parcels: a few cells)
        box = np.array([[cell_depth_km(ia + a, ja + b) for b in range(nj)] for a in range(ni)])

        def at(di, dj):
            return box[i0 - ia + di, j0 - ja + dj]

    return (at(0, 0) * (1 - tj) + at(0, 1) * tj) * (1 - ti) + (at(1, 0) * (1 - tj) + at(1, 1) * tj) * ti


def metro_factor(depth_km: np.ndarray) -> np.ndarray:
    """m in [0, 1]: 0 up to METRO_FROM_KM of core depth (towns and cities up to ~1,000 km^2),
    1 from METRO_FULL_KM (the cores of the largest agglomerations), linear between."""
    return np.clip((np.asarray(depth_km, np.float64) - METRO_FROM_KM) / (METRO_FULL_KM - METRO_FROM_KM), 0.0, 1.0)


GREY_ZERO_NDVI, GREY_FULL_NDVI = 0.70, 0.48  # from calibration(): fringe median, core lower quartile


def greyness(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(GREY_ZERO_NDVI - NDVI max) / (GREY_ZERO_NDVI - GREY_FULL_NDVI) clipped to [0, 1] at
    locations (degrees)."""
    from generator.anchors.context import EarthContext, _ndvi

    nd = _ndvi(EarthContext.shared().ndvi_max, lat, lon)
    return np.clip((GREY_ZERO_NDVI - nd) / (GREY_ZERO_NDVI - GREY_FULL_NDVI), 0.0, 1.0)


def calibration() -> dict:
    """NDVI maximum percentiles (10/25/50/75/90) under MODIS urban cells of city cores (all 25 cells
    of the 5 x 5 neighbourhood urban) and fringes (at most 12 of 25), from the context asset:
    where :data:`GREY_ZERO_NDVI` and :data:`GREY_FULL_NDVI` come from."""
    from generator.anchors.context import EarthContext

    ctx = EarthContext.shared()
    urb = ctx.modis == URBAN_IGBP
    p = np.pad(urb, 2).astype(np.int16)
    n = sum(p[a : a + urb.shape[0], b : b + urb.shape[1]] for a in range(5) for b in range(5))
    ii, jj = np.nonzero(urb)
    code = ctx.ndvi_max[ii * ctx.ndvi_max.shape[0] // urb.shape[0], jj * ctx.ndvi_max.shape[1] // urb.shape[1]]
    nd, ok = code.astype(np.float64) / 254.0 * 1.2 - 0.2, code != 255
    out = {}
    for name, sel in (("core", n[ii, jj] == 25), ("fringe", n[ii, jj] <= 12)):
        out[name] = {"cells": int((sel & ok).sum()),
                     "ndvi_max_p10_25_50_75_90": np.percentile(nd[sel & ok], [10, 25, 50, 75, 90]).round(3).tolist()}
    return out
