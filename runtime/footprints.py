"""Building footprints of the feature layer in a tile's frame: the coordinate rule and
the roof lookup shared by the 3D Tiles export, the height queries and the simulator client.

Features come as the generator's check contract says (docs/LANDCOVER.md): buildings (N, 5)
float32 [east, north, width, depth, height] and trees (M, 3) [east, north, height], metres
from the tile's sample [0, 0] along its grid axes: north = -row x s, and east = col x s on
the plane, col x s x cos(latitude at that row) on the earth (s = ``spacing_m(level)``, the
level's spacing at the equator). Footprints are axis-aligned rectangles in that frame.

A building stands on the ground under its footprint centre: its roof (flat; a pitched
roof's ridge) is at ``ground(centre) + height``, constant over the footprint. Every
consumer uses that one level: the GLB draws it, a ``surface: "buildings"`` height query
answers it inside the footprint.
"""

from __future__ import annotations

import numpy as np

from runtime.grids import bilinear
from runtime.tiles import T, TileKey, World, spacing_deg, spacing_m

BUILDING_COLUMNS = 5
TREE_COLUMNS = 3


def _east_m_per_sample(world: World, key: TileKey, rows: np.ndarray) -> np.ndarray:
    """East metres per sample at tile-local (fractional) rows, as the generator measures them."""
    s = spacing_m(key.level)
    if world is not World.EARTH:
        return np.full(np.shape(rows), s)
    lat = 90.0 - (key.y * T + np.asarray(rows, np.float64)) * spacing_deg(key.level)
    return s * np.maximum(np.cos(np.radians(lat)), 1e-3)


def to_samples(world: World | str, key: TileKey, east_m, north_m) -> tuple[np.ndarray, np.ndarray]:
    """Feature metres (any equal shapes) -> tile-local fractional (rows, cols) float64."""
    world = World.parse(world)
    rows = -np.asarray(north_m, np.float64) / spacing_m(key.level)
    return rows, np.asarray(east_m, np.float64) / _east_m_per_sample(world, key, rows)


def to_metres(world: World | str, key: TileKey, rows, cols) -> tuple[np.ndarray, np.ndarray]:
    """Tile-local (rows, cols) -> feature (east, north) metres; inverse of ``to_samples``."""
    world = World.parse(world)
    rows = np.asarray(rows, np.float64)
    return np.asarray(cols, np.float64) * _east_m_per_sample(world, key, rows), -rows * spacing_m(key.level)


def check_buildings(buildings) -> np.ndarray:
    """(N, 5) finite float64 copy of a building array; ValueError saying what was expected."""
    b = np.asarray(buildings, np.float64)
    if b.ndim != 2 or b.shape[1] != BUILDING_COLUMNS or not np.isfinite(b).all() or (b[:, 2:] < 0).any():
        raise ValueError(f"buildings must be (N, {BUILDING_COLUMNS}) finite [east, north, width, depth, height] "
                         f"metres with width, depth, height >= 0, got shape {b.shape}")
    return b


def check_trees(trees) -> np.ndarray:
    """(M, 3) finite float64 copy of a tree array; ValueError saying what was expected."""
    t = np.asarray(trees, np.float64)
    if t.ndim != 2 or t.shape[1] != TREE_COLUMNS or not np.isfinite(t).all() or (t[:, 2] < 0).any():
        raise ValueError(f"trees must be (M, {TREE_COLUMNS}) finite [east, north, height] metres with "
                         f"height >= 0, got shape {t.shape}")
    return t


def building_at(world: World | str, key: TileKey, buildings, rows, cols) -> np.ndarray:
    """(n,) int64 index of the building whose footprint holds each tile-local point
    (rows, cols (n,) fractional samples), -1 where none (edges count as inside;
    footprints never overlap: one per parcel, inside it)."""
    b = check_buildings(buildings)
    east, north = to_metres(world, key, rows, cols)
    east, north = np.atleast_1d(east), np.atleast_1d(north)
    out = np.full(east.shape, -1, np.int64)
    if not len(b) or not len(east):
        return out
    inside = (np.abs(east[:, None] - b[None, :, 0]) <= b[None, :, 2] / 2.0) & \
             (np.abs(north[:, None] - b[None, :, 1]) <= b[None, :, 3] / 2.0)
    hit = inside.any(axis=1)
    out[hit] = inside[hit].argmax(axis=1)
    return out


def roof_levels(world: World | str, key: TileKey, buildings, ground: np.ndarray) -> np.ndarray:
    """(N,) float64 roof heights (m): the ground grid ((T+1, T+1) metres of the tile) at each
    footprint centre plus the building's height."""
    b = check_buildings(buildings)
    r, c = to_samples(world, key, b[:, 0], b[:, 1])
    g = np.asarray(ground)
    return bilinear(g, np.clip(r, 0, T), np.clip(c, 0, T)) + b[:, 4] if len(b) else np.zeros(0)


def roofs_at(world: World | str, key: TileKey, buildings, ground: np.ndarray, rows, cols) -> tuple:
    """(index (n,) int64 (-1: no building), roof_m (n,) float64, NaN where no building) of
    tile-local points; ``ground`` (T+1, T+1) metres is the tile's bare-earth grid."""
    idx = building_at(world, key, buildings, rows, cols)
    roof = np.full(idx.shape, np.nan)
    if (idx >= 0).any():
        roof[idx >= 0] = roof_levels(world, key, buildings, ground)[idx[idx >= 0]]
    return idx, roof
