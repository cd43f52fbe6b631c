"""The context channels' names and codes, shared by the earth context (``context``) and
the plane's continent generator (``plane``), which both make them."""

from __future__ import annotations

import numpy as np

CHANNELS = ("land", "climate_A", "climate_B", "climate_C", "climate_D", "climate_E",
            "forest", "shrub_grass", "wetland", "crop", "urban", "snow_ice", "barren", "ndvi_max", "ndvi_min")
COVER_GROUPS = ("forest", "shrub_grass", "wetland", "crop", "urban", "snow_ice", "barren")
# IGBP class -> index in COVER_GROUPS (-1: water / no data)
IGBP_TO_GROUP = np.full(256, -1, dtype=np.int8)
IGBP_TO_GROUP[[1, 2, 3, 4, 5]] = 0  # forests
IGBP_TO_GROUP[[6, 7, 8, 9, 10]] = 1  # shrublands, savannas, grasslands
IGBP_TO_GROUP[11] = 2  # permanent wetlands
IGBP_TO_GROUP[[12, 14]] = 3  # croplands, cropland/natural mosaic
IGBP_TO_GROUP[13] = 4  # urban and built-up
IGBP_TO_GROUP[15] = 5  # snow and ice
IGBP_TO_GROUP[16] = 6  # barren
NDVI_NONE = -0.2


def one_hot(classes: np.ndarray, n: int) -> np.ndarray:
    """(H, W) int class indices (-1 = none) -> (n, H, W) float32 one-hot."""
    return (classes[None] == np.arange(n)[:, None, None]).astype(np.float32)
