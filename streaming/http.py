"""HTTP endpoints beside the websocket server: Cesium terrain, imagery and 3D Tiles.

Same port, same process, same tile service and store as the websocket clients:
``HttpEndpoints`` is the ``http`` handler of ``streaming.server.TileServer``, which
hands it every request that is not a websocket upgrade (websockets then closes the
connection). Every tile is fetched as its stored ``tile`` frame through
``TileService.get`` (LRU -> store -> generator) and converted by ``streaming.ecosystem``.
``worldstream serve --http`` composes it.

Routes (GET and HEAD; OPTIONS answers CORS preflights):

- ``/terrain/layer.json`` and ``/terrain/{z}/{x}/{y}.terrain``: quantized-mesh-1.0,
  geographic tiling scheme, TMS y (0 at the south), with the extensions (oct-encoded
  normals, water mask) the ``Accept`` header asks for and no others;
- ``/imagery/{z}/{x}/{y}.png``: tile colour, geographic tiling, y from the north;
- ``/3dtiles/tileset.json``, ``/3dtiles/subtrees/{root}/{level}/{x}/{y}.subtree``,
  ``/3dtiles/tiles/{root}/{level}/{x}/{y}.glb``: 3D Tiles 1.1, implicit quadtrees with
  one-level subtrees (``ecosystem.SERVED_SUBTREE_LEVELS``): a subtree says the truth
  (its tile exists, its children exist below ``max_level``) and carries its tile's
  content height range, read from the tile it is about to load anyway.

Terrain and GLB normals are stitched (``runtime.tin.stitch``): each edge gets the
joined mesh's normal from the neighbour's one-sided edge normals, so both tiles shade
their border alike (converted alone, a tile's border would use the along-edge rule, with
no slope across the edge: a band of flatter shading along steep borders). The neighbours'
frames come through the same ``TileService`` (a client viewing a tile loads its
neighbours too); their ``EdgeData`` is kept in a bounded LRU (``HttpConfig.edge_tiles``),
so each tile is decoded and placed once for its neighbours.

With a ``features`` source (``ecosystem.Features``, handed in by ``worldstream serve``)
every GLB carries its tile's buildings and instanced trees, and every subtree's height
range holds them; each tile's features are computed once (off the event loop) and kept in
a bounded LRU (``HttpConfig.feature_tiles``) for its subtree and its GLB.

Only the earth world has these endpoints (both formats are geographic).
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import hmac
import http
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

from runtime.geometry import DEFAULT_HEIGHT_RANGE_M
from runtime.lru import LRU, nbytes
from runtime.tiles import MAX_LEVEL, TileKey, World, validate_key
from runtime.tin import TileMesh, edge_data, neighbour_keys, opposite
from streaming import ecosystem as E
from streaming import implicit as I
from streaming.tileservice import TileService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpConfig:
    max_level: int = 16  # deepest level advertised in layer.json and tileset.json
    cache_bytes: int = 64 << 20  # LRU of converted responses (terrain, PNG, GLB)
    max_age_s: int = 86400  # Cache-Control: a tile's bytes never change for one model
    stitch: bool = True  # join terrain and GLB edge normals with the neighbours' (module docstring)
    edge_tiles: int = 4096  # tiles whose EdgeData (about 12 KB each) is kept for stitching
    stitch_wait_s: float = 2.0  # longest wait for neighbours; later ones: that edge unstitched, body not cached
    feature_tiles: int = 256  # tiles whose buildings and trees are kept (for their subtree and GLB)
    # A response not ready in this time is a 503 with Retry-After (the client retries; the tile
    # keeps generating). The server's opening-handshake timeout covers it (a request answered
    # through websockets' process_request is part of the handshake: past that timeout the
    # connection used to be dropped with no response, ERR_EMPTY_RESPONSE in a browser).
    request_timeout_s: float = 30.0


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Route:
    """A parsed request path: ``kind`` in (layer, terrain, imagery, tileset, subtree, glb),
    the tile ``key`` (terrain, imagery, glb) or the implicit ``coord`` (subtree)."""

    kind: str
    key: TileKey | None = None
    coord: I.ImplicitCoord | None = None
    extensions: tuple[str, ...] = ()  # terrain: the quantized-mesh extensions asked for


_PATTERNS = [
    ("layer", re.compile(r"/terrain/layer\.json")),
    ("terrain", re.compile(r"/terrain/(\d+)/(\d+)/(\d+)\.terrain")),
    ("imagery", re.compile(r"/imagery/(\d+)/(\d+)/(\d+)\.png")),
    ("tileset", re.compile(r"/3dtiles/tileset\.json")),
    ("subtree", re.compile(r"/3dtiles/subtrees/(\d+)/(\d+)/(\d+)/(\d+)\.subtree")),
    ("glb", re.compile(r"/3dtiles/tiles/(\d+)/(\d+)/(\d+)/(\d+)\.glb")),
]

CONTENT_TYPES = {
    "layer": "application/json",
    "tileset": "application/json",
    "terrain": E.TERRAIN_CONTENT_TYPE,
    "imagery": "image/png",
    "subtree": "application/octet-stream",
    "glb": E.GLB_CONTENT_TYPE,
}


def parse_route(path: str, max_level: int, subtree_levels: int = I.SERVED_SUBTREE_LEVELS) -> Route:
    """Request path (query ignored) -> Route; HttpError 404 saying what exists."""
    p = urlsplit(path).path
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(p)
        if m is None:
            continue
        v = [int(g) for g in m.groups()]
        try:
            if kind in ("terrain", "imagery"):
                z, x, y = v
                if z > max_level:
                    raise ValueError(f"level must be in [0, {max_level}], got {z}")
                ny = 1 << z
                key = TileKey(z, x, ny - 1 - y if kind == "terrain" else y)
                return Route(kind, key=validate_key(World.EARTH, key, max_level))
            if kind in ("subtree", "glb"):
                c = I.ImplicitCoord(*v)
                key = I.tile_key(c)
                if c.level > max_level:
                    raise ValueError(f"level must be in [0, {max_level}], got {c.level}")
                if kind == "subtree" and c.level % subtree_levels:
                    raise ValueError(f"subtree roots lie on levels that are multiples of {subtree_levels}")
                return Route(kind, key=key, coord=c)
        except ValueError as exc:
            raise HttpError(404, f"no such tile: {exc}") from None
        return Route(kind)
    raise HttpError(404, "not found: expected /terrain/layer.json, /terrain/{z}/{x}/{y}.terrain, "
                         "/imagery/{z}/{x}/{y}.png, /3dtiles/tileset.json, "
                         "/3dtiles/subtrees/{r}/{l}/{x}/{y}.subtree or /3dtiles/tiles/{r}/{l}/{x}/{y}.glb")


class HttpEndpoints:
    """Answers the HTTP routes from a started ``TileService`` (earth); a
    ``streaming.server.HttpHandler``."""

    def __init__(self, service: TileService, *, name: str, token: str | None = None,
                 allowed_origins=None, config: HttpConfig = HttpConfig(), water: E.WaterMask | None = None,
                 features: E.Features | None = None):
        if service.world is not World.EARTH:
            raise ValueError(f"HTTP terrain and 3D Tiles endpoints need the earth world, got {service.world.value}")
        if not 0 <= config.max_level <= MAX_LEVEL:
            raise ValueError(f"max_level must be in [0, {MAX_LEVEL}], got {config.max_level}")
        self.service = service
        self.name = name
        self.token = token
        self.allowed_origins = list(allowed_origins) if allowed_origins else None
        self.config = config
        self.water = water  # the world's water (quantized-mesh water mask); None: not offered
        self._cache: LRU[tuple[str, TileKey], bytes] = LRU(config.cache_bytes, size=nbytes)
        self._edges: LRU[TileKey, tuple] = LRU(config.edge_tiles)  # key -> (EdgeData by side or None,)
        self.features = features  # key -> {"buildings", "trees"}; None: terrain only
        self._features: LRU[TileKey, dict] = LRU(config.feature_tiles)
        self.served = 0
        self.timed_out = 0  # 503 answers: not ready within request_timeout_s

    # -- the TileServer's http hook -----------------------------------------------------
    def urls(self, base_url: str) -> list[str]:
        """The entry points a Cesium client opens, under ``base_url`` (``http://host:port``)."""
        q = "?token=..." if self.token is not None else ""
        return [f"terrain {base_url}/terrain/layer.json{q}", f"imagery {base_url}/imagery/{{z}}/{{x}}/{{y}}.png{q}",
                f"3D Tiles {base_url}/3dtiles/tileset.json{q}"]

    async def respond(self, method: str, path: str, headers: Headers) -> Response:
        origin = headers.get("Origin")
        cors = self._cors(origin)
        try:
            if origin is not None and cors is None:
                raise HttpError(403, f"origin {origin!r} is not allowed")
            if method == "OPTIONS":
                return _response(204, b"", None, cors, preflight=True)
            if method not in ("GET", "HEAD"):
                raise HttpError(405, f"method {method} not allowed: expected GET, HEAD or OPTIONS")
            if self.token is not None:
                given = parse_qs(urlsplit(path).query).get("token", [""])[0]
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    raise HttpError(401, "missing or wrong ?token=")
            route = parse_route(path, self.config.max_level)
            content_type = CONTENT_TYPES[route.kind]
            if route.kind == "terrain":
                exts = tuple(e for e in E.requested_extensions(headers.get("Accept"))
                             if e != "watermask" or self.water is not None)  # only what we can write
                route = Route(route.kind, key=route.key, extensions=exts)
                content_type = E.terrain_content_type(exts)
            # quantized-mesh compresses about 3x; browsers inflate it transparently.
            gz = route.kind == "terrain" and "gzip" in headers.get("Accept-Encoding", "")
            work = asyncio.ensure_future(self._body(route, gz))  # finishes (and caches) even if we time out
            work.add_done_callback(lambda t: t.cancelled() or t.exception())  # its failure is logged below or dropped
            try:
                body = await asyncio.wait_for(asyncio.shield(work), self.config.request_timeout_s)
            except TimeoutError:
                self.timed_out += 1
                r = _response(503, b"tile not ready yet: retry\n", "text/plain; charset=utf-8", cors)
                r.headers["Retry-After"] = "1"
                return r
            self.served += 1
            r = _response(200, b"" if method == "HEAD" else body, content_type, cors,
                          max_age_s=self.config.max_age_s, length=len(body))
            if route.kind == "terrain":
                vary = "Accept, Accept-Encoding"
                r.headers["Vary"] = f"Origin, {vary}" if "Vary" in r.headers else vary
                if gz:
                    r.headers["Content-Encoding"] = "gzip"
            return r
        except HttpError as exc:
            return _response(exc.status, f"{exc}\n".encode(), "text/plain; charset=utf-8", cors)
        except Exception as exc:  # a generator or meshing failure stays this request's
            log.warning("HTTP %s failed: %s", path, exc)
            return _response(500, f"tile failed: {exc}\n".encode(), "text/plain; charset=utf-8", cors)

    def _cors(self, origin: str | None) -> str | None:
        if self.allowed_origins is None:
            return "*"
        return origin if origin in self.allowed_origins else None

    # -- bodies ------------------------------------------------------------------------
    async def _body(self, route: Route, gz: bool = False) -> bytes:
        if route.kind == "layer":
            return json.dumps(E.full_layer_json(self.config.max_level, name=self.name,
                                                water=self.water is not None)).encode()
        if route.kind == "tileset":
            return await self._cached(("tileset",), self._tileset)
        assert route.key is not None
        cache_key = (route.kind + (".gz" if gz else ""), route.key, route.extensions)
        if route.kind == "subtree":
            max_level = self.config.max_level

            async def subtree():
                feats = await self._tile_features(route.key)
                r = await self._convert(route.key, lambda f: E.tile_height_range(f, World.EARTH, feats))
                return I.served_subtree_bytes(route.coord, max_level, r)

            return await self._cached(cache_key, subtree)
        ext = route.extensions
        if route.kind == "imagery":
            return await self._cached(cache_key, lambda: self._convert(route.key, E.imagery_png))
        if route.kind == "terrain":
            def convert(mesh, frame):
                body = E.mesh_terrain_bytes(mesh, ext, self.water)
                return gzip.compress(body, 6, mtime=0) if gz else body
        else:
            feats = None

            def convert(mesh, frame):
                return E.mesh_glb(mesh, E.frame_tile(frame).image, feats)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        if route.kind == "glb":
            feats = await self._tile_features(route.key)
        body, complete = await self._convert_mesh(route.key, convert)
        if complete:  # a body with an edge left unstitched is not kept: the next one may stitch
            self._remember(cache_key, body)
        return body

    async def _cached(self, cache_key, make) -> bytes:
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        body = await make()
        self._remember(cache_key, body)
        return body

    async def _convert(self, key: TileKey, convert):
        """``convert(frame)`` of the tile's stored frame, off the event loop."""
        fut = self.service.get(key, priority=float(key.level))
        try:
            frame = await fut
        except asyncio.CancelledError:
            self.service.release(key, fut)
            raise
        return await asyncio.get_running_loop().run_in_executor(None, convert, frame)

    async def _convert_mesh(self, key: TileKey, convert) -> tuple[bytes, bool]:
        """``convert(mesh, frame)`` of the tile's placed mesh, its edges stitched with its
        neighbours' (``HttpConfig.stitch``), off the event loop; and whether every
        neighbour came within ``stitch_wait_s`` (the bytes are then final)."""
        frame = await self._frame(key, float(key.level))
        loop = asyncio.get_running_loop()
        mesh = await loop.run_in_executor(None, E.tin_mesh, World.EARTH, E.frame_tile(frame))
        complete = True
        if self.config.stitch:
            self._edges.put(key, (edge_data(mesh),))
            sides = neighbour_keys(World.EARTH, key)
            tasks = {side: asyncio.ensure_future(self._edges_of(k)) for side, k in sides.items()}
            if tasks:
                # Late neighbours keep loading (into the EdgeData LRU) for later requests.
                await asyncio.wait(list(tasks.values()), timeout=self.config.stitch_wait_s)
            known = {}
            for side, task in tasks.items():
                if not task.done():
                    complete = False
                elif task.result() is not None:
                    known[side] = task.result()[opposite(side)]
            mesh = E.cesium_stitch(mesh, known)
        return await loop.run_in_executor(None, convert, mesh, frame), complete

    async def _edges_of(self, key: TileKey) -> dict | None:
        """A neighbour's ``EdgeData`` by side (LRU, else its frame placed once); None when
        it cannot be had (that edge keeps the along-edge rule)."""
        held = self._edges.get(key)
        if held is not None:
            return held[0]
        try:
            frame = await self._frame(key, key.level - 0.5)  # after the tiles asked for (highest first)
            mesh: TileMesh = await asyncio.get_running_loop().run_in_executor(
                None, E.tin_mesh, World.EARTH, E.frame_tile(frame))
            data = edge_data(mesh)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("neighbour %s for stitching failed: %s", key, exc)
            data = None
        self._edges.put(key, (data,))
        return data

    async def _tile_features(self, key: TileKey) -> dict | None:
        """The tile's {"buildings", "trees"} (LRU, else computed off the event loop); None
        without a features source."""
        if self.features is None:
            return None
        held = self._features.get(key)
        if held is None:
            held = dict(await asyncio.get_running_loop().run_in_executor(None, self.features, key))
            self._features.put(key, held)
        return held

    async def _frame(self, key: TileKey, priority: float) -> bytes:
        fut = self.service.get(key, priority=priority)
        try:
            return await fut
        except asyncio.CancelledError:
            self.service.release(key, fut)
            raise

    async def _tileset(self) -> bytes:
        """tileset.json; its implicit root regions span the level-0 tiles' content heights
        (chord sag included) and at least DEFAULT_HEIGHT_RANGE_M (every tile's own box comes
        from its subtree)."""
        lo, hi = DEFAULT_HEIGHT_RANGE_M
        for key in (TileKey(0, 0, 0), TileKey(0, 1, 0)):
            a, b = await self._convert(key, E.tile_height_range)
            lo, hi = min(lo, a), max(hi, b)
        ts = I.implicit_tileset_json(self.config.max_level, subtree_levels=I.SERVED_SUBTREE_LEVELS,
                                     height_range_m=(lo, hi))
        return json.dumps(ts).encode()

    def _remember(self, key, body: bytes) -> None:
        if key not in self._cache:  # a body already held stays where it is
            self._cache.put(key, body)


def _response(status: int, body: bytes, content_type: str | None, cors: str | None, *,
              max_age_s: int = 0, length: int | None = None, preflight: bool = False) -> Response:
    s = http.HTTPStatus(status)
    h = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                 ("Content-Length", str(len(body) if length is None else length))])
    if content_type:
        h["Content-Type"] = content_type
    if cors is not None:
        h["Access-Control-Allow-Origin"] = cors
        if cors != "*":
            h["Vary"] = "Origin"
    if preflight:
        h["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        h["Access-Control-Allow-Headers"] = "*"
        h["Access-Control-Max-Age"] = "86400"
    if status == 200 and max_age_s:
        h["Cache-Control"] = f"public, max-age={max_age_s}"
    return Response(s.value, s.phrase, h, body)
