"""Where the training grids lie on the earth, and the context there (issue 14: a refiner
conditioned on the real context, generator.anchors.context).

A grid's georeference is ``geo``: lat / lon (degrees) at nodes every GEO_STEP samples, read
bilinearly between them (geo_nodes, latlon_at). The context of a grid is kept packed
(generator.learned.inputs.pack_context, 5 uint8 per point) on a raster of ~CTX_RASTER_M
(attach_context) and cut for each crop at its samples (context_at, the nearest raster cell).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from runtime.tiles import METRES_PER_DEGREE

GEO_STEP = 16
"""Samples between the georeference nodes of a grid (lat / lon read bilinearly between them)."""


def geo_nodes(shape: tuple[int, int], latlon) -> np.ndarray:
    """(2, nr, nc) float64 lat, lon at rows 0, GEO_STEP, .. >= H - 1 (same for columns) of a grid of
    ``shape``; ``latlon(y (nr, 1), x (1, nc))`` gives degrees at fractional sample positions."""
    ny, nx = (-(-(n - 1) // GEO_STEP) + 1 for n in shape)
    y = (np.arange(ny, dtype=np.float64) * GEO_STEP)[:, None]
    x = (np.arange(nx, dtype=np.float64) * GEO_STEP)[None, :]
    lat, lon = latlon(y, x)
    return np.stack(np.broadcast_arrays(lat, lon)).astype(np.float64)


def latlon_at(geo: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Degrees (lat, lon) of fractional sample positions y, x (same shape) from geo_nodes (bilinear,
    longitude unwrapped between nodes then wrapped to [-180, 180))."""
    from scipy.ndimage import map_coordinates

    lon = np.rad2deg(np.unwrap(np.unwrap(np.deg2rad(geo[1]), axis=1), axis=0))
    c = [np.asarray(y, np.float64) / GEO_STEP, np.asarray(x, np.float64) / GEO_STEP]
    la = map_coordinates(geo[0], c, order=1, mode="nearest")
    lo = map_coordinates(lon, c, order=1, mode="nearest")
    return la, np.mod(lo + 180.0, 360.0) - 180.0


def dem_latlon(d, shape: tuple[int, int]):
    """Georeference of a ``dem/`` or ``paired/`` grid from its centre and pixel size: the local
    equirectangular projection about the centre (exact for the resampled geographic sources, within
    the context layers' 5 km for UTM / NZTM; polar stereographic read as azimuthal equidistant)."""
    lon_c, lat_c = (float(v) for v in d["center_lonlat"])
    px = float(d["pixel_m"])
    cy, cx = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    if "stereographic" in str(d["crs"]).lower():
        def f(y, x):  # EPSG:3031-like: x = rho sin(lon), y = rho cos(lon), rho ~ R * colatitude
            xm, ym = (x - cx) * px, -(y - cy) * px
            rho = np.hypot(xm, ym)
            return -90.0 + np.rad2deg(rho / 6_371_000.0), np.rad2deg(np.arctan2(xm, ym))
        return f
    return lambda y, x: (lat_c - (y - cy) * px / METRES_PER_DEGREE,
                         lon_c + (x - cx) * px / (METRES_PER_DEGREE * np.cos(np.radians(lat_c))))


CTX_RASTER_M = 1000.0
"""Spacing (metres, at least one grid sample) of the packed context raster kept per grid: the
context layers are 0.05-0.1 deg (Koppen 2.5'), so ~1 km reads them at full detail."""


def _context_raster(g, rows_per_chunk: int = 128) -> tuple[np.ndarray, int]:
    """(packed context (5, h, w) uint8 every ``stride`` samples of ``g``, stride)."""
    from generator.anchors.context import EarthContext
    from generator.learned.inputs import pack_context

    if g.geo is None:
        raise ValueError(f"grid {g.name} has no georeference: rebuild the corpus (`worldstream train "
                         "--prepare-only`) or give an older one a geo sidecar (data.write_geo_sidecar)")
    stride = max(1, int(CTX_RASTER_M // g.spacing_m))
    ys = np.arange(0, g.height_m.shape[0], stride, dtype=np.float64)
    xs = np.arange(0, g.height_m.shape[1], stride, dtype=np.float64)
    out = np.empty((5, ys.size, xs.size), np.uint8)
    ec = EarthContext.shared()
    for i in range(0, ys.size, rows_per_chunk):
        yy, xx = np.meshgrid(ys[i : i + rows_per_chunk], xs, indexing="ij")
        lat, lon = latlon_at(g.geo, yy, xx)
        out[:, i : i + rows_per_chunk] = pack_context(ec.at(lat, lon))
    return out, stride


def attach_context(grids: list, cache: str | Path | None = None) -> list:
    """The grids with their packed context rasters (``context``, ``ctx_stride``), read from the
    earth layers (generator.anchors.context) at each grid's georeference. ``cache``: an npz
    reused when it holds every grid (a few seconds of lookups saved per training run)."""
    cache = Path(cache) if cache else None
    have = {}
    if cache is not None and cache.exists():
        d = np.load(cache)
        have = {n: (d[n], int(d[n + ".stride"])) for n in (g.name for g in grids) if n in d.files}
    if len(have) < len(grids):
        have = {g.name: _context_raster(g) for g in grids}
        if cache is not None:
            arrays = {}
            for n, (ctx, st) in have.items():
                arrays[n], arrays[n + ".stride"] = ctx, np.array(st)
            np.savez_compressed(cache, **arrays)
    return [replace(g, context=have[g.name][0], ctx_stride=have[g.name][1]) for g in grids]


def context_at(g, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Packed context (5, len(ys), len(xs)) uint8 of grid samples rows ys x cols xs (int), the
    nearest raster cell."""
    c = g.context
    i = np.minimum(np.round(np.asarray(ys) / g.ctx_stride).astype(np.int64), c.shape[1] - 1)
    j = np.minimum(np.round(np.asarray(xs) / g.ctx_stride).astype(np.int64), c.shape[2] - 1)
    return c[:, i[:, None], j[None, :]]
