"""Height queries answered from the field pyramid: points -> heights, normals, level.

Pure part: where a point falls in a level's sample grid (runtime/tiles.py contract),
bilinear interpolation inside the tile of that level, and normals from the grid
(central differences, interpolated bilinearly like the heights), in the local
east-north-up frame.

Service part: ``HeightService`` keeps an LRU of height grids that the tile
pipeline has generated (``remember`` is the TileService's ``on_fields`` hook) and
answers two modes, each at ONE level for every point, so an answer depends only on
(world, seed, model, point, mode, level), never on what was asked or held before:

- ``best``: the asked level, default ``best_level`` (``runtime.ground.DEFAULT_LEVEL``,
  16, the simulator query level), clamped to ``max_level``; generated when missing.
- ``detailed``: the asked level, default the deepest level served (``max_level``),
  generated when missing.

At most ``max_tiles`` distinct tiles per query. Every answer carries, per point, the
bare-earth height, the ENU normal, the level, and the water surface and flag of
``runtime.ground.water_at`` (from the ``WATER_CONTEXT_LEVEL`` field at the same points).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.grids import bilinear
from runtime.ground import DEFAULT_LEVEL, WATER_CONTEXT_LEVEL, water_at
from runtime.lru import LRU
from runtime.tiles import (
    LEVEL0_SPACING_DEG,
    WGS84_A_M,
    WGS84_E2,
    T,
    TileKey,
    World,
    spacing_m,
)

FieldsFn = Callable[[Sequence[TileKey]], Awaitable[Sequence]]
"""keys -> fields with ``.height`` (T+1, T+1) float32 (``TileService.fields``)."""


# -- pure geometry of the sample grid ----------------------------------------------------


def global_samples(world: World, level: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) float64 points -> global sample (rows, cols), each (n,) float64, at ``level``.

    plane: points are (east, north) metres; earth: (lon, lat) degrees, lon wrapped to
    [-180, 180], lat clamped to [-90, 90]. Rows grow southward (runtime/tiles.py).
    """
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if world is World.PLANE:
        s = spacing_m(level)
        return -p[:, 1] / s, p[:, 0] / s
    d = LEVEL0_SPACING_DEG / (1 << level)
    lon = (p[:, 0] + 180.0) % 360.0 - 180.0
    lon = np.where((lon == -180.0) & (p[:, 0] > 0), 180.0, lon)  # +180 stays the east edge
    lat = np.clip(p[:, 1], -90.0, 90.0)
    return (90.0 - lat) / d, (lon + 180.0) / d


def tiles_and_local(world: World, level: int, rows: np.ndarray, cols: np.ndarray):
    """Global sample coords -> tile columns, rows ((n,) int64) and local (r, c) in [0, T].

    earth: clamped to the tiles that exist (lon = +180 is the east edge of the last
    column, lat = -90 the south edge of the last row).
    """
    tx = np.floor(cols / T).astype(np.int64)
    ty = np.floor(rows / T).astype(np.int64)
    if world is World.EARTH:
        tx = np.clip(tx, 0, (2 << level) - 1)
        ty = np.clip(ty, 0, (1 << level) - 1)
    return tx, ty, rows - ty * T, cols - tx * T


def sample_spacing_m(
    world: World, level: int, lat_deg: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(east, north) metres between neighbouring samples of ``level`` at ``lat_deg``.

    plane: the level spacing both ways. earth: WGS84 prime-vertical and meridional
    radii of curvature times the angular spacing.
    """
    if world is World.PLANE:
        s = spacing_m(level)
        return np.full(np.shape(lat_deg), s), np.full(np.shape(lat_deg), s)
    d = np.radians(LEVEL0_SPACING_DEG / (1 << level))
    phi = np.radians(lat_deg)
    w = np.sqrt(1.0 - WGS84_E2 * np.sin(phi) ** 2)
    n_r = WGS84_A_M / w
    m_r = WGS84_A_M * (1.0 - WGS84_E2) / w**3
    return d * n_r * np.cos(phi), d * m_r


def grid_slopes(grid: np.ndarray) -> np.ndarray:
    """(T+1, T+1) heights -> (T+1, T+1, 2) float64 [dh/dcol, dh/drow] per sample
    (central differences inside, one-sided on the tile border)."""
    g = grid.astype(np.float64, copy=False)
    d_row, d_col = np.gradient(g)
    return np.stack([d_col, d_row], axis=-1)


def enu_normals(slopes_per_sample: np.ndarray, east_m: np.ndarray, north_m: np.ndarray) -> np.ndarray:
    """(n, 2) [dh/dcol, dh/drow] -> (n, 3) float64 unit normals in (east, north, up).

    Columns grow east and rows grow south, so dh/dnorth = -dh/drow / north spacing."""
    dh_de = slopes_per_sample[:, 0] / east_m
    dh_dn = -slopes_per_sample[:, 1] / north_m
    nrm = np.stack([-dh_de, -dh_dn, np.ones_like(dh_de)], axis=1)
    return nrm / np.linalg.norm(nrm, axis=1, keepdims=True)


def heights_at(world: World, level: int, points: np.ndarray, grids: dict[TileKey, np.ndarray]):
    """Heights and normals of ``points`` from level-``level`` tiles in ``grids``.

    points (n, 2) float64; grids maps every needed TileKey to its (T+1, T+1) heights.
    Returns height_m (n,) float64 and normal (n, 3) float64 (east, north, up).
    """
    rows, cols = global_samples(world, level, points)
    kx, ky, r, c = tiles_and_local(world, level, rows, cols)
    h = np.empty(len(r))
    slopes = np.empty((len(r), 2))
    for x, y in set(zip(kx.tolist(), ky.tolist(), strict=True)):
        m = (kx == x) & (ky == y)
        grid = grids[TileKey(level, x, y)]
        h[m] = bilinear(grid, r[m], c[m])
        slopes[m] = bilinear(grid_slopes(grid), r[m], c[m])
    lat = np.asarray(points, np.float64)[:, 1] if world is World.EARTH else np.zeros(len(r))
    e, n = sample_spacing_m(world, level, lat)
    return h, enu_normals(slopes, e, n)


def keys_at(world: World, level: int, points: np.ndarray) -> list[TileKey]:
    """The level-``level`` tile of every point, (n,) list."""
    rows, cols = global_samples(world, level, points)
    tx, ty, _, _ = tiles_and_local(world, level, rows, cols)
    return [TileKey(level, x, y) for x, y in zip(tx.tolist(), ty.tolist(), strict=True)]


# -- service -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeightConfig:
    max_level: int = 24  # deepest level served (the default of "detailed")
    best_level: int = DEFAULT_LEVEL  # the level of "best" when none is asked (clamped to max_level)
    max_tiles: int = 16  # distinct tiles a "detailed" query may need
    cache_tiles: int = 512  # height grids held (257 * 257 * 4 B = 264 KB each)


class HeightLimitError(ValueError):
    """A query needs more tiles than ``HeightConfig.max_tiles``."""


class HeightService:
    """Answers height queries from held height grids, generating what is missing."""

    def __init__(self, world: World | str, fields: FieldsFn, config: HeightConfig = HeightConfig()):
        self.world = World.parse(world) if not isinstance(world, World) else world
        self.fields = fields
        self.config = config
        self._grids: LRU[TileKey, np.ndarray] = LRU(config.cache_tiles)  # by count

    def remember(self, key: TileKey, fields) -> None:
        """Hold ``fields.height`` of ``key`` (the TileService's ``on_fields`` hook)."""
        if not self._grids.touch(key):
            self._grids.put(key, np.asarray(fields.height, np.float32))

    def held(self, key: TileKey) -> bool:
        return key in self._grids

    async def _ensure(self, keys: set[TileKey]) -> dict[TileKey, np.ndarray]:
        missing = [k for k in keys if k not in self._grids]
        have = {k: self._grids.peek(k) for k in keys if k in self._grids}
        if missing:
            for k, f in zip(missing, await self.fields(missing), strict=True):
                have[k] = np.asarray(f.height, np.float32)
                self.remember(k, f)
        return have

    def mode_level(self, mode: str, level: int | None) -> int:
        """The one level a query of ``mode`` answers at (``level``: the asked level or None)."""
        if mode == "detailed":
            return self.config.max_level if level is None else int(level)
        if mode == "best":
            return min(self.config.best_level if level is None else int(level), self.config.max_level)
        raise ValueError(f"mode must be 'best' or 'detailed', got {mode!r}")

    async def water(self, points: np.ndarray, ground_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(water_m (n,) float64 NaN where dry, is_water (n,) uint8 0/1) of ``points`` (n, 2)
        whose bare-earth heights are ``ground_m`` (n,): ``runtime.ground.water_at`` with the
        ``WATER_CONTEXT_LEVEL`` field (a few coarse tiles, generated when missing)."""
        lv = WATER_CONTEXT_LEVEL
        grids = await self._ensure(set(keys_at(self.world, lv, points)))
        context_m, _ = heights_at(self.world, lv, points, grids)
        water_m, is_water = water_at(self.world, ground_m, context_m)
        return water_m, is_water.astype(np.uint8)

    async def query(
        self, points: np.ndarray, mode: str = "best", level: int | None = None
    ) -> dict[str, np.ndarray]:
        """points (n, 2) float64 -> {"height_m" (n,) float64 bare earth, "normal" (n, 3)
        float64 unit (east, north, up), "level" (n,) int32, "water_m" (n,) float64 (NaN
        where dry), "is_water" (n,) uint8 0/1}; all at ``mode_level(mode, level)``."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        target = self.mode_level(mode, level)
        needed = set(keys_at(self.world, target, pts))
        if len(needed) > self.config.max_tiles:
            raise HeightLimitError(
                f"these points need {len(needed)} tiles at level {target}; at most {self.config.max_tiles} per query"
            )
        grids = await self._ensure(needed)
        h, nrm = heights_at(self.world, target, pts, grids)
        water_m, is_water = await self.water(pts, h)
        return {"height_m": h, "normal": nrm, "level": np.full(len(pts), target, np.int32),
                "water_m": water_m, "is_water": is_water}
