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

Surfaces, said explicitly: ``bare`` (the default) answers the bare earth; ``buildings``
(collision) answers, inside a building footprint, its roof (``runtime.footprints``: the
bare earth at the footprint centre plus the building's height; normal straight up) and
the bare earth elsewhere, plus ``ground_m`` (the bare earth everywhere) and
``on_building``. Buildings come from a ``Buildings`` source handed in by the composition
root, at the query level, which must be one that carries buildings (``Buildings.levels``).

Every mode costs at most ``max_tiles`` distinct tiles per query (held or generated),
checked before anything is generated, and the queries of one ``owner`` (connection)
wait for at most ``max_tiles`` tiles at a time, so neither generator time nor memory
grows with the number of queries a client keeps in flight; missing tiles are asked for
through the tile service's fair queue in the asking connection's lane (``owner``), so a
client asking heights gets its share of the generator like one asking tiles, and no more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from runtime.footprints import roofs_at
from runtime.grids import bilinear
from runtime.ground import DEFAULT_LEVEL, WATER_CONTEXT_LEVEL, water_at
from runtime.lru import LRU, nbytes
from runtime.tiles import (
    LEVEL0_SPACING_DEG,
    WGS84_A_M,
    WGS84_E2,
    T,
    TileKey,
    World,
    spacing_m,
)
from streaming.protocol import HEIGHT_SURFACES

FieldsFn = Callable[..., Awaitable[Sequence]]
"""(keys, owner) -> fields with ``.height`` (T+1, T+1) float32 (``TileService.fields``;
``owner`` is the fair-queue lane, the asking connection)."""

SURFACES = HEIGHT_SURFACES
"""What a height answers: the bare earth, or the earth with buildings (roofs)."""

Buildings = Callable[[TileKey, np.ndarray], np.ndarray]
"""(key, heights (T+1, T+1) float32 of that tile) -> (N, 5) float32 buildings [east, north,
width, depth, height] m (runtime.footprints); an attribute ``levels`` (a range) says which
levels carry them. Handed in by the composition root (streaming never imports the generator)."""


class BadHeightQuery(ValueError):
    """A height query the server cannot answer as asked (a surface or level it does not serve)."""


def check_surface(surface: str) -> str:
    """``surface`` if it is one of SURFACES, else ValueError saying which exist."""
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {list(SURFACES)}, got {surface!r}")
    return surface


def building_surface(world: World, level: int, points: np.ndarray, grids: dict[TileKey, np.ndarray],
                     buildings: dict[TileKey, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(roof_m (n,) float64, NaN where no footprint holds the point; on_building (n,) bool) of
    ``points`` (n, 2) from their level-``level`` tiles' bare grids and buildings."""
    rows, cols = global_samples(world, level, points)
    kx, ky, r, c = tiles_and_local(world, level, rows, cols)
    roof = np.full(len(r), np.nan)
    for x, y in set(zip(kx.tolist(), ky.tolist(), strict=True)):
        m = (kx == x) & (ky == y)
        key = TileKey(level, x, y)
        _, roof[m] = roofs_at(world, key, buildings[key], grids[key], r[m], c[m])
    return roof, ~np.isnan(roof)


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
    cache_bytes: int = 40 << 20  # height grids held, by bytes (257 * 257 * 4 B = 264 KB each: ~150)


class HeightLimitError(ValueError):
    """A query needs more tiles than ``HeightConfig.max_tiles`` (any mode)."""


class HeightService:
    """Answers height queries from held height grids, generating what is missing."""

    def __init__(self, world: World | str, fields: FieldsFn, config: HeightConfig = HeightConfig(),
                 buildings: Buildings | None = None, lakes=None):
        """lakes: None or the world's inland water, points (n, 2) -> (n,) float64 surface m, NaN
        where none (``runtime.ground.water_at``'s ``lake_m``; handed in by the composition root)."""
        self.world = World.parse(world) if not isinstance(world, World) else world
        self.fields = fields
        self.config = config
        self.buildings = buildings  # None: only the bare surface is served
        self.lakes = lakes
        # footprints by bytes plus a per-entry overhead: a tile with none holds a (0, 5) array
        self._footprints: LRU[TileKey, np.ndarray] = LRU(config.cache_bytes // 8, size=lambda a: nbytes(a) + 256)
        self._grids: LRU[TileKey, np.ndarray] = LRU(config.cache_bytes, size=nbytes)
        # Interpolation runs on one thread of its own: a flood of 4,096-point queries costs
        # that thread, never the event loop that serves every client.
        self._math = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heights")
        self._generating: dict = {}  # owner -> tiles its queries wait for (bounded by max_tiles)

    def remember(self, key: TileKey, fields) -> None:
        """Hold ``fields.height`` of ``key`` (the TileService's ``on_fields`` hook)."""
        if not self._grids.touch(key):
            self._grids.put(key, np.array(fields.height, np.float32))  # a copy: a view would pin all channels

    def held_bytes(self) -> int:
        """Bytes of the height grids held (at most ``config.cache_bytes``)."""
        return self._grids.total

    def waiting_tiles(self, owner) -> int:
        """New tiles the admitted, unanswered queries of ``owner`` wait for (0..max_tiles)."""
        return self._generating.get(owner, 0)

    def held(self, key: TileKey) -> bool:
        return key in self._grids

    async def _ensure(self, keys: set[TileKey], owner=None) -> dict[TileKey, np.ndarray]:
        missing = [k for k in keys if k not in self._grids]
        have = {k: self._grids.peek(k) for k in keys if k in self._grids}
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

    def mode_level(self, mode: str, level: int | None, surface: str = "bare") -> int:
        """The one level a query of ``mode`` answers at (``level``: the asked level or None).
        Surface ``buildings``: ``detailed`` defaults to the deepest level carrying buildings."""
        if mode == "detailed":
            if level is None and surface == "buildings" and self.buildings is not None:
                return min(self.config.max_level, self.buildings.levels[-1])
            return self.config.max_level if level is None else int(level)
        if mode == "best":
            return min(self.config.best_level if level is None else int(level), self.config.max_level)
        raise ValueError(f"mode must be 'best' or 'detailed', got {mode!r}")

    async def water(self, points: np.ndarray, ground_m: np.ndarray, owner=None) -> tuple[np.ndarray, np.ndarray]:
        """(water_m (n,) float64 NaN where dry, is_water (n,) uint8 0/1) of ``points`` (n, 2)
        whose bare-earth heights are ``ground_m`` (n,): ``runtime.ground.water_at`` with the
        ``WATER_CONTEXT_LEVEL`` field (a few coarse tiles, generated when missing)."""
        lv = WATER_CONTEXT_LEVEL
        pairs, _ = unique_tiles(self.world, lv, points)  # vectorised: no TileKey per point
        grids = await self._ensure({TileKey(lv, int(x), int(y)) for x, y in pairs}, owner)
        context_m, _ = heights_at(self.world, lv, points, grids)
        lake_m = None if self.lakes is None else self.lakes(points)
        water_m, is_water = water_at(self.world, ground_m, context_m, lake_m)
        return water_m, is_water.astype(np.uint8)

    def _over_limit(self, n_tiles: int, what: str) -> None:
        if n_tiles > self.config.max_tiles:
            raise HeightLimitError(
                f"these points need {n_tiles} tiles ({what}); at most {self.config.max_tiles} per query"
            )


    def _check_surface(self, surface: str, target: int) -> None:
        try:
            check_surface(surface)
        except ValueError as exc:
            raise BadHeightQuery(str(exc)) from None
        if surface != "buildings":
            return
        if self.buildings is None:
            raise BadHeightQuery("surface 'buildings' is not served here (the server runs without features)")
        lv = self.buildings.levels
        if target not in lv:
            raise BadHeightQuery(f"surface 'buildings' answers at a level that carries buildings, "
                                 f"{lv[0]}..{lv[-1]}; this query's level is {target}")

    async def _footprints_of(self, grids: dict[TileKey, np.ndarray]) -> dict[TileKey, np.ndarray]:
        out = {}
        for key, grid in grids.items():
            b = self._footprints.get(key)
            if b is None:
                b = await asyncio.get_running_loop().run_in_executor(self._math, self.buildings, key, grid)
                b = np.asarray(b, np.float32)
                self._footprints.put(key, b)
            out[key] = b
        return out

    async def query(
        self, points: np.ndarray, mode: str = "best", level: int | None = None, owner=None, surface: str = "bare"
    ) -> dict[str, np.ndarray]:
        """points (n, 2) float64 -> {"height_m" (n,) float64, "normal" (n, 3) float64 unit
        (east, north, up), "level" (n,) int32, "water_m" (n,) float64 (NaN where dry),
        "is_water" (n,) uint8 0/1}; all at ``mode_level(mode, level, surface)``.
        ``surface`` "bare": height_m is the bare earth; "buildings": height_m is the roof
        inside a footprint (normal up) and the bare earth elsewhere, and the answer adds
        "ground_m" (n,) float64 bare earth and "on_building" (n,) uint8 0/1 (BadHeightQuery
        for another surface, or a level without buildings). ``owner``: the fair-queue lane
        missing tiles are generated in (the asking connection). Raises HeightLimitError
        (nothing generated) when the points need more than ``max_tiles`` distinct tiles, or
        the connection already waits for that many. ``admit`` then ``answer``, in one call."""
        return await self.answer(self.admit(points, mode, level, owner, surface))

    def admit(self, points: np.ndarray, mode: str = "best", level: int | None = None, owner=None,
              surface: str = "bare") -> HeightPlan:
        """The synchronous part of ``query``: every check and refusal (HeightLimitError,
        BadHeightQuery), and the tiles ``owner`` now waits for registered. The server runs it
        where the asking connection's event-loop time is counted, so a client whose queries
        are refused pays for the refusals; ``answer`` the plan (or ``release`` it)."""
        busy = self._generating.get(owner, 0)
        if owner is not None and busy >= self.config.max_tiles:  # refused before any work
            raise HeightLimitError(
                f"this connection's height queries already wait for {busy} new tiles; at most "
                f"{self.config.max_tiles} at a time: ask again when an answer arrives"
            )
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        target = self.mode_level(mode, level, surface)
        self._check_surface(surface, target)
        pairs, _ = unique_tiles(self.world, target, pts)
        self._over_limit(len(pairs), f"at level {target}")  # before building thousands of keys
        needed = {TileKey(target, int(x), int(y)) for x, y in pairs}
        missing = sum(1 for k in needed if not self.held(k))
        if owner is not None and missing and busy + missing > self.config.max_tiles:
            raise HeightLimitError(
                f"these points need {missing} new tiles while this connection's height queries wait "
                f"for {busy}; at most {self.config.max_tiles} at a time"
            )
        self._generating[owner] = busy + missing
        return HeightPlan(self, pts, target, needed, missing, owner, surface)

    async def answer(self, plan: HeightPlan) -> dict[str, np.ndarray]:
        """The answer to an admitted query (``query``'s dictionary); releases the plan."""
        pts, target, surface, owner = plan.points, plan.level, plan.surface, plan.owner
        try:
            grids = await self._ensure(plan.needed, owner)
            loop = asyncio.get_running_loop()
            h, nrm = await loop.run_in_executor(self._math, heights_at, self.world, target, pts, grids)
            water_m, is_water = await self.water(pts, h, owner)
            if surface == "buildings":
                footprints = await self._footprints_of(grids)
                roof, on = await loop.run_in_executor(self._math, building_surface, self.world, target, pts,
                                                      grids, footprints)
        finally:
            plan.release()
        out = {"height_m": h, "normal": nrm, "level": np.full(len(pts), target, np.int32),
               "water_m": water_m, "is_water": is_water}
        if surface == "buildings":
            out["ground_m"] = h
            out["height_m"] = np.where(on, roof, h)
            out["normal"] = np.where(on[:, None], np.array([0.0, 0.0, 1.0]), nrm)
            out["on_building"] = on.astype(np.uint8)
        return out

    def _unregister(self, owner, missing: int) -> None:
        left = self._generating.pop(owner, 0) - missing
        if left > 0:
            self._generating[owner] = left


class HeightPlan:
    """An admitted height query (``HeightService.admit``): its points (n, 2) float64, its
    level, the tiles it needs, and how many of them its owner's budget holds until
    ``release`` (idempotent: called by ``answer``, or by whoever drops the plan unanswered)."""

    def __init__(self, service: HeightService, points: np.ndarray, level: int, needed: set[TileKey],
                 missing: int, owner, surface: str):
        self.service, self.points, self.level, self.needed = service, points, level, needed
        self.missing, self.owner, self.surface = missing, owner, surface
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self.service._unregister(self.owner, self.missing)
