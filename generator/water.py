"""The world's water for the Cesium formats: which cells of an earth tile are water.

THE land/water rule of the HTTP and export paths (quantized-mesh water mask), handed to
them by the composition root (``streaming.cli``), since streaming never imports the
generator. Today: the earth anchor's sea (ETOPO5 on the level-3 grid, whose sign is the
30" land mask's coastline), bilinear at the cell centre, <= 0 m. Replace the inside of
``earth_water_mask`` when the generator's land/water context exists and every path follows.
"""

from __future__ import annotations

import functools

import numpy as np

from runtime.formats.watermask import mask_from_grid
from runtime.tiles import TileKey


@functools.lru_cache(maxsize=1)
def _anchor_grid() -> tuple[np.ndarray, float]:
    from generator.anchors.earth import SPACING_DEG, EarthAnchor

    return EarthAnchor.shared().height_m, SPACING_DEG


def earth_water_mask(key: TileKey) -> np.ndarray:
    """(256, 256) bool water cells of earth tile ``key``, row 0 north, column 0 west."""
    height, step = _anchor_grid()
    return mask_from_grid(key, height, step)
