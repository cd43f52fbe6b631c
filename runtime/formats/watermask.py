"""The quantized-mesh-1.0 water-mask extension (https://github.com/CesiumGS/quantized-mesh,
"Water Mask"; CesiumJS ``QuantizedMeshExtensionIds.WATER_MASK``).

Extension id 2. Its data is 1 byte when the tile is all land (0) or all water (255),
else 256 x 256 bytes, one per cell, rows from north to south and columns from west to
east (the first byte is the north-west corner), 0 = land, 255 = water. Every extension is
``uint8 id, uint32 length (little endian), length bytes``, after the edge lists.
"""

from __future__ import annotations

import struct

import numpy as np

from runtime.tiles import T, TileKey, World, spacing_deg, validate_key

EXT_WATER_MASK = 2
"""Extension id of the water mask."""

WATER_MASK_SIZE = 256
"""Cells per edge of a mixed land/water mask."""


def water_mask_extension(water: np.ndarray) -> bytes:
    """The extension bytes (header included) of a tile whose cells are ``water``:
    (256, 256) bool, row 0 the northern row, column 0 the western column."""
    w = np.asarray(water)
    if w.shape != (WATER_MASK_SIZE, WATER_MASK_SIZE) or w.dtype != np.bool_:
        raise ValueError(f"expected a ({WATER_MASK_SIZE}, {WATER_MASK_SIZE}) bool mask, got {w.shape} {w.dtype}")
    if not w.any():
        data = b"\x00"
    elif w.all():
        data = b"\xff"
    else:
        data = np.where(w, 255, 0).astype(np.uint8).tobytes()
    return struct.pack("<BI", EXT_WATER_MASK, len(data)) + data



def mask_from_grid(key: TileKey, height_m: np.ndarray, spacing_deg_: float) -> np.ndarray:
    """Water cells of an earth tile from a global height grid: (256, 256) bool, row 0 north.

    height_m: (R, C) metres, node-registered, row 0 at 90 N, column 0 at 180 W, spacing
    ``spacing_deg_`` (the earth anchor's level-3 grid). A cell is water where the grid,
    interpolated bilinearly at the cell centre, is <= 0 m."""
    validate_key(World.EARTH, key)
    height = np.asarray(height_m)
    rows_n, cols_n = height.shape
    d = spacing_deg(key.level) * T
    west, north = -180.0 + key.x * d, 90.0 - key.y * d
    centre = (np.arange(WATER_MASK_SIZE) + 0.5) * (d / WATER_MASK_SIZE)
    r = np.clip((90.0 - (north - centre)) / spacing_deg_, 0.0, rows_n - 1.0)
    c = np.mod((west + centre + 180.0) / spacing_deg_, cols_n)
    r0 = np.minimum(r.astype(np.int64), rows_n - 2)
    c0 = np.floor(c).astype(np.int64) % cols_n
    c1 = (c0 + 1) % cols_n
    fr, fc = (r - r0)[:, None], (c - np.floor(c))[None, :]
    h = ((1 - fr) * ((1 - fc) * height[r0][:, c0] + fc * height[r0][:, c1])
         + fr * ((1 - fc) * height[r0 + 1][:, c0] + fc * height[r0 + 1][:, c1]))
    return h <= 0.0
