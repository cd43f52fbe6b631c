"""The world's water for the Cesium formats and the height queries: sea and lakes of the earth.

THE land/water rule of the HTTP and export paths (quantized-mesh water mask) and the lakes of
the height queries, handed to them by the composition root (``streaming.cli``), since streaming
never imports the generator:

- ``earth_water_mask``: the earth anchor's sea (ETOPO5 on the level-3 grid, whose sign is the
  30" land mask's coastline), bilinear at the cell centre, <= 0 m; or a lake
  (:mod:`generator.anchors.lakes`: lake fraction >= 0.5 at the cell centre);
- ``earth_lake_surface``: the lake surface at points (``runtime.ground.water_at``'s ``lake_m``),
  the height the generator flattens the lake to.
"""

from __future__ import annotations

import functools

import numpy as np

from runtime.formats.watermask import WATER_MASK_SIZE, mask_from_grid
from runtime.tiles import T, TileKey, spacing_deg


@functools.lru_cache(maxsize=1)
def _anchor_grid() -> tuple[np.ndarray, float]:
    from generator.anchors.earth import SPACING_DEG, EarthAnchor

    return EarthAnchor.shared().height_m, SPACING_DEG


def _lakes():
    from generator.anchors.lakes import Lakes

    return Lakes.shared()


def earth_water_mask(key: TileKey) -> np.ndarray:
    """(256, 256) bool water cells of earth tile ``key``, row 0 north, column 0 west."""
    height, step = _anchor_grid()
    sea = mask_from_grid(key, height, step)
    d = spacing_deg(key.level) * T
    west, north = -180.0 + key.x * d, 90.0 - key.y * d
    centre = (np.arange(WATER_MASK_SIZE) + 0.5) * (d / WATER_MASK_SIZE)
    lat, lon = north - centre, west + centre
    if not _lakes().near(float(lat.min()), float(lat.max()), float(lon.min()), float(lon.max())):
        return sea
    la, lo = np.broadcast_arrays(lat[:, None], lon[None, :])
    return sea | _lakes().water(la, lo)[0]


def earth_lake_surface(points) -> np.ndarray:
    """(n,) float64 lake surface (m) at earth points (n, 2) (lon, lat) degrees, NaN outside lakes."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return _lakes().water(p[:, 1], p[:, 0])[1]
