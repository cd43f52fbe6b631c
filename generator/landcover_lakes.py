"""Land cover's water on land (:mod:`generator.landcover`, rule 2): the lakes the terrain is
flat at, and the land class of MODIS water that is not one of them."""

from __future__ import annotations

import numpy as np

_SHARED: list = []


def lake_water(lat1: np.ndarray, lon1: np.ndarray) -> np.ndarray:
    """(H, W) bool: the lake rule holds the terrain at a lake's surface (lake fraction >= 0.5,
    :mod:`generator.anchors.lakes`) on the grid lat1 (H,) x lon1 (W,) degrees, read with the
    anchor's own expression (``Lakes.at_grid``), so the class is water exactly where the terrain
    is the flat lake."""
    from generator.anchors.lakes import CELLS_PER_DEG, Lakes

    if not _SHARED:
        _SHARED.append(Lakes.load())
    lakes = _SHARED[0]
    if not lakes.near(float(lat1.min()), float(lat1.max()), float(lon1.min()), float(lon1.max())):
        return np.zeros((lat1.size, lon1.size), bool)
    fi = (90.0 - np.asarray(lat1, np.float64)) * CELLS_PER_DEG - 0.5  # the expressions of at_grid
    fj = (np.asarray(lon1, np.float64) + 180.0) * CELLS_PER_DEG - 0.5
    i0, j0 = np.floor(fi).astype(np.int64), np.floor(fj).astype(np.int64)
    ia, ja = int(i0.min()), int(j0.min())
    ni, nj = int(i0.max()) - ia + 2, int(j0.max()) - ja + 2
    if ni * nj > 4 * i0.size * j0.size:  # across the antimeridian: at_grid's per-point path
        return lakes.at_grid(lat1, lon1)[0] >= np.float32(0.5)
    wet = lakes.ids(np.arange(ia, ia + ni)[:, None], np.arange(ja, ja + nj)[None, :]) > 0
    if wet.all() or not wet.any():
        return np.full((lat1.size, lon1.size), bool(wet.flat[0]))
    # at_grid's float32 mix in its order, the column step once per row of cells
    one = np.float32(1)
    ti, tj = (fi - i0).astype(np.float32)[:, None], (fj - j0).astype(np.float32)[None, :]
    jj = j0 - ja
    rows = wet[:, jj] * (one - tj) + wet[:, jj + 1] * tj  # (ni, W)
    ii = i0 - ia
    return rows[ii] * (one - ti) + rows[ii + 1] * ti >= np.float32(0.5)


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
