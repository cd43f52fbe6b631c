"""Land cover's water on land (:mod:`generator.landcover`, rule 2): the lakes the terrain is
flat at, and the land class of MODIS water that is not one of them."""

from __future__ import annotations

import numpy as np


def lake_water(lat1: np.ndarray, lon1: np.ndarray) -> np.ndarray:
    """(H, W) bool: the lake rule holds the terrain at a lake's surface (lake fraction >= 0.5,
    :mod:`generator.anchors.lakes`) on the grid lat1 (H,) x lon1 (W,) degrees, read with the
    anchor's own expression (``Lakes.at_grid``), so the class is water exactly where the terrain
    is the flat lake."""
    from generator.anchors.lakes import Lakes

    lakes = Lakes.shared()
    if not lakes.near(float(lat1.min()), float(lat1.max()), float(lon1.min()), float(lon1.max())):
        return np.zeros((lat1.size, lon1.size), bool)
    return lakes.fraction_grid(lat1, lon1) >= np.float32(0.5)


def land_neighbour_class(grid: np.ndarray, wi: np.ndarray, wj: np.ndarray, igbp_to_class: np.ndarray,
                         last_land: int, none_class: int) -> np.ndarray:
    """(H, W) uint8: for the MODIS cell (wi, wj) each point reads (``grid`` IGBP), the most common
    land class (1..``last_land`` after ``igbp_to_class``) among its 8 neighbouring cells (ties: the
    lowest class id; none: ``none_class``). The class of MODIS water that the terrain does not
    flatten into a lake: a lake's shore ramp takes the shore's cover, a river or pond its banks'.
    Counted once for the window's box of cells. (The class table is passed in: this module is
    imported by :mod:`generator.landcover`, so it must not import it back.)"""
    IGBP_TO_CLASS, URBAN, WETLAND = igbp_to_class, last_land, none_class
    i0, i1, j0, j1 = int(wi.min()), int(wi.max()), int(wj.min()), int(wj.max())
    if j1 - j0 > grid.shape[1] // 2:  # the window straddles the antimeridian: unwrap its columns
        wj = np.where(wj < grid.shape[1] // 2, wj + grid.shape[1], wj)
        j0, j1 = int(wj.min()), int(wj.max())
    box = IGBP_TO_CLASS[grid[np.clip(np.arange(i0 - 1, i1 + 2), 0, grid.shape[0] - 1)][
        :, np.mod(np.arange(j0 - 1, j1 + 2), grid.shape[1])]]
    h, w = box.shape[0] - 2, box.shape[1] - 2
    count = np.zeros((URBAN + 1, h, w), np.int8)
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            if di != 1 or dj != 1:
                nb = box[di : di + h, dj : dj + w]
                for k in np.unique(nb):
                    if 0 < k <= URBAN:
                        count[k] += nb == k
    fill = count.argmax(axis=0).astype(np.uint8)
    fill = np.where(count.max(axis=0) > 0, fill, np.uint8(WETLAND))
    return fill[wi - i0, wj - j0]
