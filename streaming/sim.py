"""The simulator client: synchronous, local ground queries at one fixed level.

A flight model's ground callback runs many times per step and cannot wait on a socket.
``GroundClient`` fetches the tiles of one level around a point once (``prefetch``, over the
existing ``SyncTileClient``), keeps each as a height grid, and then answers
``height_at`` / ``normal_at`` / ``ground_at`` from memory in microseconds, from any thread.

What it answers is the surface the viewer draws at that level: each tile's TIN (the wire
mesh, runtime/wire.py) resampled at the level's (T+1) x (T+1) grid nodes, then the same
bilinear heights and central-difference ENU normals as the server's height queries
(streaming/heights.py). Hence, per point, ``|height_at - server detailed height|`` is at
most the tile's TIN error bound plus half its height quantum (``height_tolerance_m``:
0.25 x spacing + step / 2, 0.30 m at level 16). Water follows ``runtime.ground.water_at``
on the anchor field, whose grid nodes the client reads from the server exactly, and on the
world's lakes when given ``lakes`` (the server's own source, from the composition root:
``GroundClient(url, lakes=streaming.cli.compose.lake_source(world))``; without it a lake
is dry ground at its surface, as before the lakes).

```python
from streaming.sim import GroundClient
with GroundClient("ws://127.0.0.1:8765") as g:   # level 16 (runtime.ground.DEFAULT_LEVEL)
    g.prefetch((6.8652, 45.8326), radius_m=500)    # blocks until the disc is held
    h = g.height_at(6.8652, 45.8326)               # metres; LookupError outside what is held
    e, n, u = g.normal_at(6.8652, 45.8326)         # unit, east-north-up
```

Surfaces, said explicitly: ``GroundClient(..., surface="bare")`` (the default) answers the
bare earth; ``surface="buildings"`` (collision) answers, inside a building footprint of a
held tile, its roof (``runtime.footprints``: the held grid at the footprint centre plus the
building's height, normal straight up) and the bare earth elsewhere; ``query`` and
``ground_at`` then also give ``height_m`` / ``on_building`` while ``ground_m`` stays bare.
The footprints are the held tiles' own (``buildings_of(decoded tile)``; by default the
tile's ``buildings`` from the wire's feature layer), so the roofs are those the viewer draws.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from runtime.footprints import building_at, check_buildings, roof_levels
from runtime.ground import DEFAULT_LEVEL, WATER_CONTEXT_LEVEL, water_at
from runtime.tiles import LEVEL0_SPACING_DEG, WGS84_A_M, WGS84_E2, T, TileKey, World, spacing_m
from runtime.tin.surface import tin_grid
from streaming.heights import check_surface, global_samples, sample_spacing_m, tiles_and_local

UP = (0.0, 0.0, 1.0)


class NotPrefetched(LookupError):
    """A query outside the region this client holds (call ``prefetch`` first)."""


@dataclass(frozen=True)
class GroundPoint:
    """One point's ground truth: ground_m bare earth (m), water_m the water surface (m) or
    None where dry, is_water, normal_enu (east, north, up) unit vector, level used."""

    ground_m: float
    water_m: float | None
    is_water: bool
    normal_enu: tuple[float, float, float]
    level: int
    height_m: float | None = None  # surface "buildings": the roof inside a footprint, else ground_m
    on_building: bool = False


@dataclass(frozen=True, eq=False)
class _Tile:
    """A held tile: h, d_col, d_row (T+1, T+1) float64 (metres, metres per sample)."""

    h: np.ndarray
    d_col: np.ndarray
    d_row: np.ndarray
    tolerance_m: float
    key: TileKey | None = None
    buildings: np.ndarray | None = None  # (N, 5) footprints (surface "buildings"), roofs (N,) m
    roofs: np.ndarray | None = None


def wire_buildings(tile) -> np.ndarray | None:
    """The (N, 5) buildings a decoded wire tile carries in its feature layer (``features``:
    an object or map with ``buildings``), None when it carries none."""
    layer = getattr(tile, "features", None)
    if isinstance(layer, dict):
        return layer.get("buildings")
    return getattr(layer, "buildings", None)


def _tile_from_decoded(tile, world: World | None = None, buildings_of=None) -> _Tile:
    h = tin_grid(tile.grid_rc, tile.height_m, tile.faces, tile.grid_size)
    d_row, d_col = np.gradient(h)  # central inside, one-sided on the border (streaming/heights.py)
    b = roofs = None
    if buildings_of is not None:
        got = buildings_of(tile)
        if got is None:
            raise ValueError(f"tile {tile.key} carries no buildings (a server or wire without the feature "
                             f"layer); surface 'buildings' needs them")
        b = check_buildings(got)
        roofs = roof_levels(world, tile.key, b, h)
    return _Tile(h, np.ascontiguousarray(d_col), np.ascontiguousarray(d_row),
                 float(tile.geometric_error_m) + 0.5 * float(tile.height_step_m), tile.key, b, roofs)


class GroundClient:
    """Local, synchronous ground queries at one fixed ``level`` (see the module docstring).

    url: a running server (``ws://host:port``), or client: an open ``SyncTileClient`` (not
    closed by ``close``); level: query level (default ``DEFAULT_LEVEL``, 16); max_tiles:
    tiles held (about 1.6 MB each; least recently prefetched go first, never the ones of
    the latest prefetch). Points: plane (east, north) metres, earth (lon, lat) degrees.
    surface: "bare" (default) or "buildings" (module docstring); buildings_of: decoded
    tile -> (N, 5) buildings or None (default ``wire_buildings``). lakes: None or the world's
    inland water, points (n, 2) -> (n,) float64 surface m, NaN where none (the server's
    ``lake_source``; ``runtime.ground.water_at``'s ``lake_m``).
    Reads take no lock and may run on any thread while another prefetches.
    """

    def __init__(self, url: str | None = None, *, client=None, level: int = DEFAULT_LEVEL,
                 max_tiles: int = 128, token: str | None = None, surface: str = "bare", buildings_of=None,
                 lakes=None):
        from streaming.client import SyncTileClient

        self.surface = check_surface(surface)
        self.lakes = lakes
        self._buildings_of = (buildings_of or wire_buildings) if surface == "buildings" else None

        if (url is None) == (client is None):
            raise ValueError("give exactly one of url (a running server) or client (a SyncTileClient)")
        self._own = client is None
        # Surface "buildings" asks for the tiles' feature layer (servers without it ignore the ask).
        expect = {"layers": ["features"]} if self.surface == "buildings" else None
        self.client = client if client is not None else SyncTileClient(url, token=token, expect=expect)
        self.world = World.parse(self.client.hello.world)
        top = int(self.client.hello.limits.get("max_level", 24))
        if not 0 <= level <= top:
            raise ValueError(f"level must be in [0, {top}] (the server's max_level), got {level}")
        if level < WATER_CONTEXT_LEVEL:
            raise ValueError(f"level must be >= {WATER_CONTEXT_LEVEL} (the water context's), got {level}")
        if max_tiles < 1:
            raise ValueError(f"max_tiles must be >= 1, got {max_tiles}")
        self.level, self.max_tiles = int(level), int(max_tiles)
        self._tiles: OrderedDict[tuple[int, int], _Tile] = OrderedDict()
        self._context: dict[tuple[int, int], float] = {}  # anchor-level node -> height (m)
        self._lock = threading.Lock()
        self._is_earth = self.world is World.EARTH
        self._d = LEVEL0_SPACING_DEG / (1 << self.level) if self._is_earth else spacing_m(self.level)

    # -- region ----------------------------------------------------------------------------

    def _box(self, center, radius_m: float) -> np.ndarray:
        """(2, 2) [[west, south], [east, north]] corners of the square around the disc
        (earth: unwrapped longitudes)."""
        x, y = (float(v) for v in center)
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(radius_m) and radius_m >= 0):
            raise ValueError(f"center must be two finite numbers and radius_m >= 0, got {center}, {radius_m}")
        if self._is_earth:
            e_m, n_m = sample_spacing_m(World.EARTH, 0, np.array([max(min(abs(y), 89.9), 0.0)]))
            dx = radius_m / float(e_m[0]) * LEVEL0_SPACING_DEG
            dy = radius_m / float(n_m[0]) * LEVEL0_SPACING_DEG
        else:
            dx = dy = radius_m
        return np.array([[x - dx, y - dy], [x + dx, y + dy]])

    def _keys(self, level: int, box: np.ndarray) -> list[tuple[int, int]]:
        """(tx, ty) of the level tiles over ``box``; earth: columns wrap, rows clamp."""
        if self._is_earth:  # unwrapped longitudes: a box across the antimeridian stays small
            d = LEVEL0_SPACING_DEG / (1 << level)
            cols = (box[:, 0] + 180.0) / d
            rows = (90.0 - np.clip(box[:, 1], -90.0, 90.0)) / d
        else:
            rows, cols = global_samples(self.world, level, box)
        c0, c1 = math.floor(cols.min() / T), math.floor(cols.max() / T)
        r0, r1 = math.floor(rows.min() / T), math.floor(rows.max() / T)
        out = []
        for ty in range(r0, r1 + 1):
            for tx in range(c0, c1 + 1):
                if self._is_earth:
                    out.append((tx % (2 << level), min(max(ty, 0), (1 << level) - 1)))
                else:
                    out.append((tx, ty))
        return list(dict.fromkeys(out))

    def prefetch(self, center, radius_m: float, timeout_s: float = 120.0) -> int:
        """Hold every level tile within ``radius_m`` of ``center`` (x, y) before returning.

        Blocks until they arrived (raises ServerError / TimeoutError otherwise). Returns how
        many tiles were fetched now (0 when all were held)."""
        return self._hold(self._keys(self.level, self._box(center, radius_m)), radius_m, timeout_s)

    def prefetch_path(self, points, radius_m: float, timeout_s: float = 120.0) -> int:
        """``prefetch`` for a corridor: every tile within ``radius_m`` of the polyline through
        ``points`` (n, 2) (earth: give longitudes unwrapped across the antimeridian), in one
        fetch. Returns how many tiles were fetched now."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        if len(pts) == 0:
            raise ValueError("prefetch_path needs at least one point")
        want: list[tuple[int, int]] = []
        for p, q in zip(pts, np.concatenate([pts[1:], pts[-1:]])):
            # The radius in query units (x, y); on the earth it grows with latitude.
            half = np.minimum(self._box(p, radius_m)[1] - p, self._box(q, radius_m)[1] - q)
            n = int(np.ceil(np.max(np.abs(q - p) / np.maximum(half, 1e-300)))) + 1
            for t in np.linspace(0.0, 1.0, n + 1):
                # Samples at most one radius apart per axis; a point within the radius of the
                # line is within 1.5 radii per axis of a sample, so those boxes cover it.
                c = p + t * (q - p)
                h = self._box(c, radius_m)[1] - c
                want += self._keys(self.level, np.array([c - 1.5 * h, c + 1.5 * h]))
        return self._hold(list(dict.fromkeys(want)), radius_m, timeout_s)

    def _hold(self, want: list[tuple[int, int]], radius_m: float, timeout_s: float) -> int:
        """Fetch what ``want`` misses and hold all of it (the latest, so evicted last)."""
        if len(want) > self.max_tiles:
            raise ValueError(f"a {radius_m} m radius needs {len(want)} tiles at level {self.level}; "
                             f"max_tiles is {self.max_tiles}")
        self._prefetch_context(want)
        fetched = 0
        while True:  # a concurrent prefetch may evict a tile of ours before we lock: fetch it again
            missing = [k for k in want if k not in self._tiles]
            got = {}
            if missing:
                tiles = self.client.fetch([TileKey(self.level, x, y) for x, y in missing], timeout_s)
                got = {(k.x, k.y): _tile_from_decoded(v, self.world, self._buildings_of) for k, v in tiles.items()}
                fetched += len(missing)
            with self._lock:
                self._tiles.update(got)
                if all(k in self._tiles for k in want):
                    for k in want:
                        self._tiles.move_to_end(k)
                    while len(self._tiles) > self.max_tiles:
                        self._tiles.popitem(last=False)
                    return fetched

    def _prefetch_context(self, tiles: list[tuple[int, int]]) -> None:
        """The anchor-level grid nodes under whole level ``tiles``, read exactly (server heights
        at nodes), so every point a held tile answers has its water context."""
        lv = WATER_CONTEXT_LEVEL
        f = 2.0 ** (lv - self.level)  # anchor samples per level sample
        nodes = []
        for tx, ty in tiles:
            r0, c0 = math.floor(ty * T * f), math.floor(tx * T * f)
            r1, c1 = max(math.ceil((ty + 1) * T * f), r0 + 1), max(math.ceil((tx + 1) * T * f), c0 + 1)
            nodes += [self._wrap_node(lv, r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
        need = [n for n in dict.fromkeys(nodes) if n not in self._context]
        if not need:
            return
        rc = np.array(need, np.float64)
        if self._is_earth:
            d = LEVEL0_SPACING_DEG / (1 << lv)
            pts = np.stack([-180.0 + rc[:, 1] * d, 90.0 - rc[:, 0] * d], 1)
        else:
            s = spacing_m(lv)
            pts = np.stack([rc[:, 1] * s, -rc[:, 0] * s], 1)
        step = int(self.client.hello.limits.get("max_height_points", 4096))
        for i in range(0, len(pts), step):
            ans = self.client.heights(pts[i:i + step], mode="detailed", level=lv)
            for n, h in zip(need[i:i + step], np.asarray(ans["height_m"], np.float64).tolist(), strict=True):
                self._context[n] = h

    def _wrap_node(self, level: int, r: int, c: int) -> tuple[int, int]:
        if not self._is_earth:
            return r, c
        return min(max(r, 0), (1 << level) * T), c % ((2 << level) * T)

    def covers(self, x: float, y: float) -> bool:
        """True when (x, y) can be answered now."""
        r, c = self._rc(x, y)
        return self._tile_key(r, c) in self._tiles

    @property
    def height_tolerance_m(self) -> float:
        """Bound on |height_at - the server's detailed height| over the held tiles (m)."""
        tiles = list(self._tiles.values())
        return max((t.tolerance_m for t in tiles), default=0.0)

    # -- scalar queries (the inner loop) -----------------------------------------------------

    def _rc(self, x: float, y: float, d: float | None = None) -> tuple[float, float]:
        """Global sample (row, col) for spacing ``d`` (default: the level's); the scalar twin
        of ``streaming.heights.global_samples``."""
        d = self._d if d is None else d
        if not self._is_earth:
            return -y / d, x / d
        lon = (x + 180.0) % 360.0 - 180.0
        if lon == -180.0 and x > 0:
            lon = 180.0
        lat = min(max(y, -90.0), 90.0)
        return (90.0 - lat) / d, (lon + 180.0) / d

    def _tile_key(self, r: float, c: float, level: int | None = None) -> tuple[int, int]:
        level = self.level if level is None else level
        tx, ty = math.floor(c / T), math.floor(r / T)
        if self._is_earth:
            tx, ty = min(max(tx, 0), (2 << level) - 1), min(max(ty, 0), (1 << level) - 1)
        return tx, ty

    def _cell(self, x: float, y: float):
        r, c = self._rc(x, y)
        tx, ty = self._tile_key(r, c)
        tile = self._tiles.get((tx, ty))
        if tile is None:
            raise NotPrefetched(f"({x}, {y}) is outside the tiles held at level {self.level}; "
                                f"prefetch a region around it first")
        lr, lc = r - ty * T, c - tx * T
        i, j = min(max(math.floor(lr), 0), T - 1), min(max(math.floor(lc), 0), T - 1)
        return tile, i, j, lr - i, lc - j

    @staticmethod
    def _lerp(g: np.ndarray, i: int, j: int, fr: float, fc: float) -> float:
        top = g.item(i, j) * (1.0 - fc) + g.item(i, j + 1) * fc
        bot = g.item(i + 1, j) * (1.0 - fc) + g.item(i + 1, j + 1) * fc
        return top * (1.0 - fr) + bot * fr

    def _roof(self, tile: _Tile, i, j, fr, fc) -> float | None:
        """The roof (m) over tile-local sample (i + fr, j + fc), None outside every footprint
        (and always None on the bare surface)."""
        if tile.buildings is None or not len(tile.buildings):
            return None
        k = int(building_at(self.world, tile.key, tile.buildings, [i + fr], [j + fc])[0])
        return None if k < 0 else float(tile.roofs[k])

    def height_at(self, x: float, y: float) -> float:
        """Height (m) at (x, y) of the client's surface: the bare earth, or with surface
        "buildings" the roof inside a footprint. NotPrefetched outside the held tiles."""
        tile, i, j, fr, fc = self._cell(x, y)
        roof = self._roof(tile, i, j, fr, fc)
        return self._lerp(tile.h, i, j, fr, fc) if roof is None else roof

    def normal_at(self, x: float, y: float) -> tuple[float, float, float]:
        """Unit surface normal (east, north, up) at (x, y) (straight up on a roof)."""
        tile, i, j, fr, fc = self._cell(x, y)
        return self._normal(tile, i, j, fr, fc, y) if self._roof(tile, i, j, fr, fc) is None else UP

    def _normal(self, tile: _Tile, i, j, fr, fc, y) -> tuple[float, float, float]:
        s_col, s_row = self._lerp(tile.d_col, i, j, fr, fc), self._lerp(tile.d_row, i, j, fr, fc)
        e_m, n_m = self._spacing(y)
        ge, gn = s_col / e_m, -s_row / n_m
        norm = math.sqrt(ge * ge + gn * gn + 1.0)
        return -ge / norm, -gn / norm, 1.0 / norm

    def _spacing(self, y: float) -> tuple[float, float]:
        """(east, north) metres between samples; the scalar twin of ``sample_spacing_m``."""
        if not self._is_earth:
            return self._d, self._d
        d = math.radians(self._d)
        phi = math.radians(min(max(y, -90.0), 90.0))
        w = math.sqrt(1.0 - WGS84_E2 * math.sin(phi) ** 2)
        return d * (WGS84_A_M / w) * math.cos(phi), d * (WGS84_A_M * (1.0 - WGS84_E2) / w**3)

    def ground_at(self, x: float, y: float) -> GroundPoint:
        """Height, water and normal at (x, y) (one point of ``query``)."""
        tile, i, j, fr, fc = self._cell(x, y)
        g = self._lerp(tile.h, i, j, fr, fc)
        lake = None if self.lakes is None else self.lakes(np.array([[x, y]], np.float64))
        water_m, is_water = water_at(self.world, [g], [self._context_at(x, y)], lake)
        w = float(water_m[0])
        normal = self._normal(tile, i, j, fr, fc, y)
        if self.surface == "bare":
            return GroundPoint(g, None if math.isnan(w) else w, bool(is_water[0]), normal, self.level)
        roof = self._roof(tile, i, j, fr, fc)
        return GroundPoint(g, None if math.isnan(w) else w, bool(is_water[0]), normal if roof is None else UP,
                           self.level, g if roof is None else roof, roof is not None)

    def _context_at(self, x: float, y: float) -> float:
        """The scalar twin of ``_context_many`` (same arithmetic, same numbers)."""
        lv = WATER_CONTEXT_LEVEL
        r, c = self._rc(x, y, LEVEL0_SPACING_DEG / (1 << lv) if self._is_earth else spacing_m(lv))
        tx, ty = self._tile_key(r, c, lv)
        lr, lc = r - ty * T, c - tx * T
        i, j = min(max(math.floor(lr), 0), T - 1), min(max(math.floor(lc), 0), T - 1)
        fr, fc = lr - i, lc - j
        gi, gj = ty * T + i, tx * T + j
        try:
            v00, v01, v10, v11 = (self._context[self._wrap_node(lv, gi + a, gj + b)]
                                  for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)))
        except KeyError:
            raise NotPrefetched(f"({x}, {y}): no water context held; prefetch a region around it first") from None
        top = v00 * (1.0 - fc) + v01 * fc
        bot = v10 * (1.0 - fc) + v11 * fc
        return top * (1.0 - fr) + bot * fr

    def _context_many(self, pts: np.ndarray) -> np.ndarray:
        """Anchor-level field at (n, 2) points: bilinear on the held nodes, tile-local like
        ``streaming.heights.heights_at`` so it equals the server's answer."""
        lv = WATER_CONTEXT_LEVEL
        rows, cols = global_samples(self.world, lv, pts)
        kx, ky, r, c = tiles_and_local(self.world, lv, rows, cols)
        i = np.clip(np.floor(r).astype(np.int64), 0, T - 1)
        j = np.clip(np.floor(c).astype(np.int64), 0, T - 1)
        fr, fc = r - i, c - j
        gi, gj = ky * T + i, kx * T + j
        cells, inv = np.unique(np.stack([gi, gj], 1), axis=0, return_inverse=True)
        v = np.empty((len(cells), 2, 2))
        try:
            for n, (a, b) in enumerate(cells.tolist()):
                for da in (0, 1):
                    for db in (0, 1):
                        v[n, da, db] = self._context[self._wrap_node(lv, a + da, b + db)]
        except KeyError:
            raise NotPrefetched("no water context held there; prefetch a region around the points first") from None
        v = v[inv.reshape(-1)]
        top = v[:, 0, 0] * (1.0 - fc) + v[:, 0, 1] * fc
        bot = v[:, 1, 0] * (1.0 - fc) + v[:, 1, 1] * fc
        return top * (1.0 - fr) + bot * fr

    # -- batched queries ----------------------------------------------------------------------

    def query(self, points) -> dict[str, np.ndarray]:
        """Many points at once, vectorised per tile: points (n, 2) -> ``ground_m`` (n,),
        ``water_m`` (n,) (NaN where dry), ``is_water`` (n,) bool, ``normal_enu`` (n, 3), ``level``
        (the keys of ``worldstream height --json``); surface "buildings" adds ``height_m`` (n,)
        (the roof inside a footprint, else the ground) and ``on_building`` (n,) bool, and the
        normal on a roof is straight up. NotPrefetched if any point is not held."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        rows, cols = global_samples(self.world, self.level, pts)
        kx, ky, r, c = tiles_and_local(self.world, self.level, rows, cols)
        n = len(pts)
        h, s_col, s_row = np.empty(n), np.empty(n), np.empty(n)
        roof = np.full(n, np.nan)
        for x, y in set(zip(kx.tolist(), ky.tolist(), strict=True)):
            tile = self._tiles.get((x, y))
            if tile is None:
                raise NotPrefetched(f"tile {TileKey(self.level, x, y)} is not held; prefetch first")
            m = (kx == x) & (ky == y)
            i = np.clip(np.floor(r[m]).astype(np.int64), 0, T - 1)
            j = np.clip(np.floor(c[m]).astype(np.int64), 0, T - 1)
            fr, fc = r[m] - i, c[m] - j
            for g, out in ((tile.h, h), (tile.d_col, s_col), (tile.d_row, s_row)):
                top = g[i, j] * (1.0 - fc) + g[i, j + 1] * fc
                bot = g[i + 1, j] * (1.0 - fc) + g[i + 1, j + 1] * fc
                out[m] = top * (1.0 - fr) + bot * fr
            if tile.buildings is not None and len(tile.buildings):
                k = building_at(self.world, tile.key, tile.buildings, r[m], c[m])
                roof[np.flatnonzero(m)[k >= 0]] = tile.roofs[k[k >= 0]]
        lat = np.clip(pts[:, 1], -90.0, 90.0) if self._is_earth else np.zeros(n)
        e_m, n_m = sample_spacing_m(self.world, self.level, lat)
        ge, gn = s_col / e_m, -s_row / n_m
        norm = np.sqrt(ge * ge + gn * gn + 1.0)
        normal = np.stack([-ge / norm, -gn / norm, 1.0 / norm], 1)
        context = self._context_many(pts)
        water_m, is_water = water_at(self.world, h, context, None if self.lakes is None else self.lakes(pts))
        out = {"ground_m": h, "water_m": water_m, "is_water": is_water, "normal_enu": normal, "level": self.level}
        if self.surface == "buildings":
            on = ~np.isnan(roof)
            out.update(height_m=np.where(on, roof, h), on_building=on,
                       normal_enu=np.where(on[:, None], np.array(UP), normal))
        return out

    def close(self) -> None:
        if self._own:
            self.client.close()

    def __enter__(self) -> "GroundClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalServer:
    """A ``streaming.server.TileServer`` on 127.0.0.1 in a background thread (examples, tests).

    ``url``: its ``ws://`` address once constructed; ``close()`` stops it (or use ``with``)."""

    def __init__(self, server, host: str = "127.0.0.1"):
        import asyncio

        self.server = server
        self._loop = asyncio.new_event_loop()
        started, box = threading.Event(), {}

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                box["port"] = self._loop.run_until_complete(server.start(host, 0))
            except BaseException as exc:  # surfaced to the constructor below
                box["error"] = exc
            started.set()
            if "port" in box:
                self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="worldstream-local-server", daemon=True)
        self._thread.start()
        if not started.wait(120) or "error" in box:
            raise RuntimeError(f"local server did not start: {box.get('error', 'timeout after 120 s')}")
        self.url = f"ws://{host}:{box['port']}"

    def close(self) -> None:
        import asyncio

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
