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

