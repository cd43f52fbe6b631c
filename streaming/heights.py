"""Height queries answered from the field pyramid: points -> heights, normals, level.

Pure part: where a point falls in a level's sample grid (runtime/tiles.py contract),
bilinear interpolation inside the tile of that level, and normals from the grid
(central differences, interpolated bilinearly like the heights), in the local
east-north-up frame.

Service part: ``HeightService`` keeps an LRU of height grids that the tile
pipeline has generated (``remember`` is the TileService's ``on_fields`` hook) and
answers two modes:

- ``best``: per point, the deepest level at or above the asked level whose tile the
  server already holds, without waiting for generation; where it holds none, the
  tile of ``fallback_level`` is generated (cheap: coarse levels come from the anchor).
- ``detailed``: the asked level (default: the deepest level served), generated
  when missing.

Every mode costs at most ``max_tiles`` distinct tiles per query (held or generated),
checked before anything is generated, and the queries of one ``owner`` (connection)
wait for at most ``max_tiles`` tiles at a time, so neither generator time nor memory
grows with the number of queries a client keeps in flight; missing tiles are asked for through the tile
service's fair queue in the asking connection's lane (``owner``), so a client asking
heights gets its share of the generator like one asking tiles, and no more.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from runtime.tiles import (
    ANCHOR_LEVEL,
    LEVEL0_SPACING_DEG,
    WGS84_A_M,
    WGS84_E2,
    T,
    TileKey,
    World,
    spacing_m,
)

FieldsFn = Callable[..., Awaitable[Sequence]]
"""(keys, owner) -> fields with ``.height`` (T+1, T+1) float32 (``TileService.fields``;
``owner`` is the fair-queue lane, the asking connection)."""


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


def bilinear(grid: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``grid`` (T+1, T+1[, k]) at local (r, c) in [0, T] -> (n[, k])."""
    n = grid.shape[0] - 1
    i = np.clip(np.floor(r).astype(np.int64), 0, n - 1)
    j = np.clip(np.floor(c).astype(np.int64), 0, n - 1)
    fr, fc = r - i, c - j
    if grid.ndim == 3:
        fr, fc = fr[:, None], fc[:, None]
    g = grid.astype(np.float64, copy=False)
    top = g[i, j] * (1.0 - fc) + g[i, j + 1] * fc
    bot = g[i + 1, j] * (1.0 - fc) + g[i + 1, j + 1] * fc
    return top * (1.0 - fr) + bot * fr


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


def unique_tiles(world: World, level: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct level-``level`` tiles under ``points`` (n, 2): ((m, 2) int64 [x, y] pairs,
    (n,) int64 index of each point's pair). Vectorised: a query of 4096 points costs
    ``m`` dictionary lookups, not ``n``."""
    rows, cols = global_samples(world, level, points)
    tx, ty, _, _ = tiles_and_local(world, level, rows, cols)
    if len(tx) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    code = _pack(tx, ty)
    if code is not None:  # one int64 per tile sorts ~10x faster than rows of two
        uniq, inverse = np.unique(code, return_inverse=True)
        pairs = np.stack([(uniq >> 31) - (1 << 30), (uniq & ((1 << 31) - 1)) - (1 << 30)], axis=1)
    else:
        pairs, inverse = np.unique(np.stack([tx, ty], axis=1), axis=0, return_inverse=True)
    return pairs, inverse.reshape(-1)


def _pack(tx: np.ndarray, ty: np.ndarray) -> np.ndarray | None:
    """(n,) int64 tile columns and rows -> (n,) int64 codes, 31 bits each; None when a
    coordinate does not fit (plane tiles beyond +-2^30)."""
    if len(tx) and max(np.abs(tx).max(), np.abs(ty).max()) >= 1 << 30:
        return None
    return ((tx + (1 << 30)) << 31) | (ty + (1 << 30))


def held_mask(tx: np.ndarray, ty: np.ndarray, held_xy: np.ndarray) -> np.ndarray:
    """(n,) bool: is tile (tx[i], ty[i]) among ``held_xy`` ((m, 2) int64)? Vectorised."""
    a, b = _pack(tx, ty), _pack(held_xy[:, 0], held_xy[:, 1])
    if a is not None and b is not None:
        return np.isin(a, b)
    held = set(map(tuple, held_xy.tolist()))
    return np.array([(x, y) in held for x, y in zip(tx.tolist(), ty.tolist(), strict=True)], bool)


def keys_at(world: World, level: int, points: np.ndarray) -> list[TileKey]:
    """The level-``level`` tile of every point, (n,) list."""
    rows, cols = global_samples(world, level, points)
    tx, ty, _, _ = tiles_and_local(world, level, rows, cols)
    return [TileKey(level, x, y) for x, y in zip(tx.tolist(), ty.tolist(), strict=True)]


# -- service -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeightConfig:
    max_level: int = 24  # deepest level served (the default of "detailed")
    fallback_level: int = ANCHOR_LEVEL  # generated for "best" where no tile is held
    max_tiles: int = 16  # distinct tiles a "detailed" query may need
    cache_tiles: int = 512  # height grids held (257 * 257 * 4 B = 264 KB each)


class HeightLimitError(ValueError):
    """A query needs more tiles than ``HeightConfig.max_tiles`` (any mode)."""


class HeightService:
    """Answers height queries from held height grids, generating what is missing."""

    def __init__(self, world: World | str, fields: FieldsFn, config: HeightConfig = HeightConfig()):
        self.world = World.parse(world) if not isinstance(world, World) else world
        self.fields = fields
        self.config = config
        self._grids: OrderedDict[TileKey, np.ndarray] = OrderedDict()
        # Level choice and interpolation run on one thread of their own: a flood of 4,096-point
        # queries costs that thread, never the event loop that serves every client.
        self._math = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heights")
        self._generating: dict = {}  # owner -> tiles its queries wait for (bounded by max_tiles)

    def remember(self, key: TileKey, fields) -> None:
        """Hold ``fields.height`` of ``key`` (the TileService's ``on_fields`` hook)."""
        if key in self._grids:
            self._grids.move_to_end(key)
            return
        self._grids[key] = np.array(fields.height, np.float32)  # a copy: a view would pin all channels
        while len(self._grids) > self.config.cache_tiles:
            self._grids.popitem(last=False)

    def held(self, key: TileKey) -> bool:
        return key in self._grids

    def _held_by_level(self) -> dict[int, np.ndarray]:
        """Held tiles as level -> (m, 2) int64 [x, y] (a snapshot; list() is atomic)."""
        by_level: dict[int, list[tuple[int, int]]] = {}
        for k in list(self._grids):
            by_level.setdefault(k.level, []).append((k.x, k.y))
        return {lv: np.array(v, np.int64).reshape(-1, 2) for lv, v in by_level.items()}

    async def _ensure(self, keys: set[TileKey], owner=None) -> dict[TileKey, np.ndarray]:
        missing = [k for k in keys if k not in self._grids]
        have = {k: self._grids[k] for k in keys if k in self._grids}
        if missing:
            # One key at a time: a finished tile's fields (all channels) are dropped at once,
            # only its height grid is kept while the other tiles are generated.
            async def one(k: TileKey) -> np.ndarray:
                (f,) = await self.fields([k], owner)
                self.remember(k, f)
                return np.array(f.height, np.float32)

            grids = await asyncio.gather(*(one(k) for k in missing))
            have.update(zip(missing, grids, strict=True))
        return have

    def _over_limit(self, n_tiles: int, what: str) -> None:
        if n_tiles > self.config.max_tiles:
            raise HeightLimitError(
                f"these points need {n_tiles} tiles ({what}); at most {self.config.max_tiles} per query"
            )

    def _best_levels(self, pts: np.ndarray, target: int) -> np.ndarray:
        """"best" mode: per point the deepest level <= ``target`` whose tile is held, else
        the fallback level; (n,) int32. Raises HeightLimitError as soon as the tiles chosen
        so far exceed ``max_tiles`` (so a hostile query costs O(levels x max_tiles))."""
        fallback = min(target, self.config.fallback_level)
        self._over_limit(len(unique_tiles(self.world, fallback, pts)[0]), f"at fallback level {fallback}")
        level_of = np.full(len(pts), -1, np.int32)
        chosen = 0
        held_xy = self._held_by_level()
        for lv in range(target, -1, -1):
            todo = np.flatnonzero(level_of < 0)
            if len(todo) == 0:
                break
            if lv not in held_xy:
                continue
            pairs, inverse = unique_tiles(self.world, lv, pts[todo])
            held = held_mask(pairs[:, 0], pairs[:, 1], held_xy[lv])
            chosen += int(held.sum())
            self._over_limit(chosen, f"held at levels {target}..{lv}")
            level_of[todo[held[inverse]]] = lv
        level_of[level_of < 0] = fallback
        return level_of

    async def query(
        self, points: np.ndarray, mode: str = "best", level: int | None = None, owner=None
    ) -> dict[str, np.ndarray]:
        """points (n, 2) float64 -> {"height_m" (n,) float64, "normal" (n, 3) float64 ENU,
        "level" (n,) int32 level used per point}. ``owner``: the fair-queue lane missing
        tiles are generated in (the asking connection). Raises HeightLimitError (nothing
        generated) when the points need more than ``max_tiles`` distinct tiles."""
        busy = self._generating.get(owner, 0)
        if owner is not None and busy >= self.config.max_tiles:  # refused before any work
            raise HeightLimitError(
                f"this connection's height queries already wait for {busy} new tiles; at most "
                f"{self.config.max_tiles} at a time: ask again when an answer arrives"
            )
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        target = self.config.max_level if level is None else int(level)
        n = len(pts)
        loop = asyncio.get_running_loop()
        if mode == "detailed":
            level_of = np.full(n, target, np.int32)
        elif mode == "best":
            level_of = await loop.run_in_executor(self._math, self._best_levels, pts, target)
        else:
            raise ValueError(f"mode must be 'best' or 'detailed', got {mode!r}")
        h = np.empty(n)
        nrm = np.empty((n, 3))
        levels = sorted(set(level_of.tolist()))
        needed = {}
        for lv in levels:
            pairs, _ = unique_tiles(self.world, lv, pts[level_of == lv])
            needed[lv] = {TileKey(lv, int(x), int(y)) for x, y in pairs}
            self._over_limit(sum(len(v) for v in needed.values()), f"at level {target}" if mode == "detailed"
                             else "at the levels chosen")
        missing = sum(1 for keys in needed.values() for k in keys if not self.held(k))
        busy = self._generating.get(owner, 0)  # again: other queries may have registered meanwhile
        if owner is not None and missing and busy + missing > self.config.max_tiles:
            raise HeightLimitError(
                f"these points need {missing} new tiles while this connection's height queries wait "
                f"for {busy}; at most {self.config.max_tiles} at a time"
            )
        self._generating[owner] = busy + missing
        try:
            for lv in levels:
                m = level_of == lv
                grids = await self._ensure(needed[lv], owner)
                h[m], nrm[m] = await loop.run_in_executor(self._math, heights_at, self.world, lv, pts[m], grids)
        finally:
            left = self._generating.pop(owner, 0) - missing
            if left > 0:
                self._generating[owner] = left
        return {"height_m": h, "normal": nrm, "level": level_of}
