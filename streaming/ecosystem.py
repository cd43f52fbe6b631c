"""Stored tile frames -> the ecosystem's formats (pure functions of bytes).

The tile store and the websocket server hold one thing per tile: the ``tile`` frame
(runtime.wire payload: the TIN, quantised heights, the colour image). Every other
format is derived from it, so HTTP clients, static exports and websocket clients
see the same vertices, placed by runtime.tin.tile_mesh as the viewer places them.
Normals on an edge shared with a neighbour agree exactly on both sides: a frame
converted alone uses the shared-edge rule; given its neighbours' frames (static exports:
``NeighbourEdges``) it uses the joined mesh's normal, as its neighbours then do too.

- Cesium quantized-mesh-1.0 terrain (runtime.formats.export.quantized_mesh; geographic
  tiling scheme, TMS rows) with the extensions a client asks for (oct-encoded normals,
  the water mask of ``sea_mask``) and its ``layer.json``;
- a 256 x 256 PNG imagery tile of the tile colour (same geographic tiling; Cesium's
  ``UrlTemplateImageryProvider`` ``{y}`` counts rows from the north, like our keys);
- 3D Tiles 1.1 with implicit quadtree tiling (3D Tiles 1.1 spec, "Implicit Tiling"):
  a ``tileset.json`` whose two children are the two level-0 tiles of the geographic
  scheme (an implicit tileset has one root), binary ``.subtree`` availability files
  and GLB content (runtime.formats.export.tile_glb, textured, with skirts). Each tile's
  box is the implicit region with its real content's height range (skirts and chord sag
  included, runtime.formats.bounds) given as TILE_MINIMUM_HEIGHT / TILE_MAXIMUM_HEIGHT
  tile metadata in the subtrees; each tile's geometric error is CesiumJS's error of a
  terrain tile of its level, so both providers refine at the same views.

Implicit tile coordinates of a region count y from the south (CesiumJS
``Implicit3DTileContent.deriveBoundingRegion``); ours count rows from the north.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from runtime.formats.bounds import CESIUM_LEVEL0_ERROR_M, content_height_range_m
from runtime.formats.export import layer_json, quantized_mesh, tile_glb
from runtime.formats.watermask import water_mask_extension
from runtime.geometry import DEFAULT_HEIGHT_RANGE_M
from runtime.lru import LRU
from runtime.tiles import MAX_LEVEL, WGS84_A_M, T, TileKey, World, skirt_depth_for, tiles_y, validate_key
from runtime.tin import (
    EdgeData,
    TileMesh,
    edge_data,
    facing_side,
    neighbour_keys,
    opposite,
    stitch,
    tile_mesh,
)
from runtime.wire import DecodedTile, decode_image, decode_tile

TERRAIN_EXTENSIONS = ("octvertexnormals", "watermask")
"""quantized-mesh extensions we can write, in the order layer.json lists them."""
TERRAIN_CONTENT_TYPE = "application/vnd.quantized-mesh"
GLB_CONTENT_TYPE = "model/gltf-binary"
SUBTREE_LEVELS = 4
"""Levels per implicit subtree file of a static export (a subtree covers 1 + 4 + 16 + 64 tiles)."""
SERVED_SUBTREE_LEVELS = 1
"""Levels per subtree of the live server: one tile, so a subtree (which carries the tile's
height range) needs only the tile CesiumJS is about to load anyway."""
ROOT_GEOMETRIC_ERROR_M = WGS84_A_M
"""Error of drawing none of the earth (the contentless tileset root): large enough that
CesiumJS always refines it into the level-0 tiles, as its terrain always draws level 0."""


# ---------------------------------------------------------------- frames -> meshes


def frame_tile(frame: bytes) -> DecodedTile:
    """Decode a stored ``tile`` frame (msgpack map with ``tile``: the wire payload)."""
    import msgpack

    try:
        msg = msgpack.unpackb(bytes(frame), raw=False, strict_map_key=True)
    except Exception as exc:
        raise ValueError(f"expected a msgpack tile frame: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(msg, dict) or msg.get("type") != "tile" or not isinstance(msg.get("tile"), dict):
        raise ValueError("expected a msgpack map with type 'tile' and a 'tile' payload")
    return decode_tile(msg["tile"])


def tin_mesh(world: World, tile: DecodedTile, skirt_depth_m: float | None = None) -> TileMesh:
    """Place a decoded TIN in world space (runtime.tin.tile_mesh, the viewer's path too):
    centre-relative positions, skirts, normals, UVs. Skirt depth defaults to runtime.tiles.skirt_depth_for
    of the tile's geometric error. Border normals follow the shared-edge rule until
    ``stitch``ed with neighbours."""
    if tile.grid_size != T:
        raise ValueError(f"expected a tile of grid size {T}, got {tile.grid_size}")
    depth = skirt_depth_for(tile.geometric_error_m) if skirt_depth_m is None else float(skirt_depth_m)
    return tile_mesh(world, tile.key, tile.grid_rc, tile.height_m, tile.faces, depth)


def frame_mesh(frame: bytes, world: World = World.EARTH,
               neighbours: Iterable[bytes] = ()) -> tuple[TileMesh, DecodedTile]:
    """Decode and place a tile frame; edges shared with the same-level tiles among
    ``neighbours`` (their frames) get the joined mesh's normals (``stitch``)."""
    tile = frame_tile(frame)
    mesh = tin_mesh(world, tile)
    known = {}
    for nf in neighbours:
        other = frame_tile(nf)
        sides = facing_side(world, tile.key, other.key)
        if sides is not None:
            known[sides[0]] = edge_data(tin_mesh(world, other))[sides[1]]
    return (stitch(mesh, known) if known else mesh), tile


def terrain_bytes(frame: bytes, extensions: Iterable[str] = ("octvertexnormals",),
                  neighbours: Iterable[bytes] = (), water: WaterMask | None = None) -> bytes:
    """quantized-mesh-1.0 bytes (uncompressed) of an earth tile frame with the named
    ``extensions`` (a subset of TERRAIN_EXTENSIONS), in id order: oct normals (1), water
    mask (2). A static export writes both (clients skip those they did not ask for).
    ``neighbours``: frames of adjacent tiles to stitch normals with (see ``frame_mesh``);
    ``water``: the world's water (needed for the water mask)."""
    ext = set(extensions)
    if not ext <= set(TERRAIN_EXTENSIONS):
        raise ValueError(f"extensions must be a subset of {TERRAIN_EXTENSIONS}, got {sorted(ext)}")
    mesh, tile = frame_mesh(frame, World.EARTH, neighbours)
    return mesh_terrain_bytes(mesh, ext, water)


def mesh_terrain_bytes(mesh: TileMesh, extensions: Iterable[str] = ("octvertexnormals",),
                       water: WaterMask | None = None) -> bytes:
    """quantized-mesh-1.0 bytes of an earth tile already placed (and maybe stitched)."""
    ext = set(extensions)
    validate_key(World.EARTH, mesh.key)
    if "watermask" in ext and water is None:
        raise ValueError("the water mask extension needs the world's water (water=...)")
    out = quantized_mesh(mesh, mesh.key, normals="octvertexnormals" in ext)
    if "watermask" in ext:
        out += water_mask_extension(water(mesh.key))
    return out



class NeighbourEdges:
    """Stitching a store's tiles one at a time (static exports): the ``EdgeData`` of
    recently placed tiles, bounded LRU; a neighbour not held is decoded and placed.

    frame_of: key -> stored frame bytes or None (absent or corrupt: that edge keeps the
    shared-edge rule, as it does in the neighbour's own export)."""

    def __init__(self, world: World, frame_of: Callable[[TileKey], bytes | None], max_tiles: int = 2048):
        self.world, self.frame_of = world, frame_of
        self._lru: LRU[TileKey, tuple[dict[str, EdgeData] | None]] = LRU(max_tiles)  # one count per tile

    def _remember(self, key: TileKey, data: dict[str, EdgeData] | None) -> None:
        self._lru.put(key, (data,))  # boxed: None (no neighbour there) is a value too

    def edges(self, key: TileKey) -> dict[str, EdgeData] | None:
        held = self._lru.get(key)
        if held is not None:
            return held[0]
        frame = self.frame_of(key)
        data = edge_data(tin_mesh(self.world, frame_tile(frame))) if frame is not None else None
        self._remember(key, data)
        return data

    def stitched(self, mesh: TileMesh) -> TileMesh:
        """``mesh`` with every edge shared with an existing neighbour joined."""
        self._remember(mesh.key, edge_data(mesh))
        known = {}
        for side, nk in neighbour_keys(self.world, mesh.key).items():
            data = self.edges(nk)
            if data is not None:
                known[side] = data[opposite(side)]
        return stitch(mesh, known)


def requested_extensions(accept: str | None) -> tuple[str, ...]:
    """The quantized-mesh extensions an ``Accept`` header asks for, in TERRAIN_EXTENSIONS
    order. CesiumJS sends ``application/vnd.quantized-mesh;extensions=a-b-c,
    application/octet-stream;q=0.9,*/*;q=0.01`` (names joined by '-'), or no
    ``extensions`` parameter when it wants none; names we do not write are ignored."""
    asked: set[str] = set()
    for media in (accept or "").split(","):
        parts = [p.strip() for p in media.split(";")]
        if parts[0].lower() != TERRAIN_CONTENT_TYPE:
            continue
        for p in parts[1:]:
            name, _, value = p.partition("=")
            if name.strip().lower() == "extensions":
                asked.update(v.strip().lower() for v in value.strip().strip('"').split("-"))
    return tuple(e for e in TERRAIN_EXTENSIONS if e in asked)


def terrain_content_type(extensions: Iterable[str]) -> str:
    """``Content-Type`` of a terrain tile carrying ``extensions``."""
    ext = [e for e in TERRAIN_EXTENSIONS if e in set(extensions)]
    return TERRAIN_CONTENT_TYPE + (";extensions=" + "-".join(ext) if ext else "")


WaterMask = Callable[[TileKey], np.ndarray]
"""key -> (256, 256) bool water cells of an earth tile (row 0 north): the world's water,
handed in by the composition root (generator.water.earth_water_mask)."""


def tile_height_range(frame: bytes, world: World = World.EARTH) -> tuple[float, float]:
    """Geodetic height range (m) enclosing a tile frame's 3D Tiles content: the TIN, its
    skirts and the chord sag of its flat triangles (runtime.formats.bounds)."""
    mesh = tin_mesh(World.parse(world), frame_tile(frame))
    return content_height_range_m(mesh.vertices_m.astype(np.float64) + mesh.center_m, mesh.all_faces)


def imagery_png(frame: bytes) -> bytes:
    """The tile colour as a 256 x 256 PNG imagery tile of the same extent.

    Pixel (i, j) covers samples i..i+1, j..j+1, so its value is their 2 x 2 mean
    (samples are points on the pixel corners)."""
    from PIL import Image

    tile = frame_tile(frame)
    if tile.image is None:
        raise ValueError(f"tile {tile.key} carries no colour image")
    rgb = decode_image(tile.image).astype(np.float32)
    px = 0.25 * (rgb[:-1, :-1] + rgb[1:, :-1] + rgb[:-1, 1:] + rgb[1:, 1:])
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.round(px), 0, 255).astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def glb_bytes(frame: bytes, world: World = World.EARTH, neighbours: Iterable[bytes] = ()) -> bytes:
    """A textured GLB (TIN + skirts, Y-up, centre in the node transform) of a tile frame;
    ``neighbours``: frames of adjacent tiles to stitch normals with (see ``frame_mesh``)."""
    mesh, tile = frame_mesh(frame, World.parse(world), neighbours)
    return mesh_glb(mesh, tile.image)


def mesh_glb(mesh: TileMesh, image: bytes | None) -> bytes:
    """runtime.formats.export.tile_glb with a terrain material: the texture (JPEG/PNG
    bytes or None) is the albedo (base colour factor 1), not metallic, fully rough.
    (trimesh's default material darkens the texture to 40 % and glTF's default metallic
    factor is 1.) Textures clamp to their edge (``clamp_textures``)."""
    import trimesh
    from PIL import Image

    picture = Image.open(io.BytesIO(image)).convert("RGB") if image is not None else None
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=picture, baseColorFactor=[255, 255, 255, 255], metallicFactor=0.0, roughnessFactor=1.0)
    return clamp_textures(tile_glb(mesh, material=material, y_up=True))


def clamp_textures(glb: bytes) -> bytes:
    """Give every texture of a GLB a clamp-to-edge, mipmapped sampler.

    With no sampler glTF repeats textures, so bilinear filtering at u, v = 0 or 1
    blends in the opposite edge and draws a dark line along every tile border."""
    magic, version, _ = struct.unpack_from("<4sII", glb)
    jlen, jtype = struct.unpack_from("<I4s", glb, 12)
    if magic != b"glTF" or version != 2 or jtype != b"JSON":
        raise ValueError("expected a glTF 2.0 binary with a JSON chunk first")
    js = json.loads(glb[20:20 + jlen])
    if not js.get("textures"):
        return glb
    # LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE (glTF 2.0 sampler enums)
    js["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
    for t in js["textures"]:
        t["sampler"] = 0
    text = json.dumps(js, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    rest = glb[20 + jlen:]
    return struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + len(rest)) + struct.pack(
        "<I4s", len(text), b"JSON") + text + rest


# ---------------------------------------------------------------- quantized-mesh layer


def full_layer_json(max_level: int, *, name: str, description: str = "", water: bool = True) -> dict:
    """``layer.json`` of a terrain where every earth tile of levels 0..max_level exists
    (a live server generates any tile on request)."""
    if not 0 <= max_level <= MAX_LEVEL:
        raise ValueError(f"max_level must be in [0, {MAX_LEVEL}], got {max_level}")
    layer = terrain_layer_json([TileKey(0, 0, 0), TileKey(0, 1, 0)], name=name, description=description, water=water)
    layer["maxzoom"] = max_level
    layer["available"] = [[{"startX": 0, "startY": 0, "endX": (2 << L) - 1, "endY": (1 << L) - 1}]
                          for L in range(max_level + 1)]
    return layer


def terrain_layer_json(keys: list[TileKey], *, name: str, description: str = "", water: bool = True) -> dict:
    """``layer.json`` of a terrain holding ``keys``, offering every extension we write
    (TERRAIN_EXTENSIONS; ``watermask`` only with ``water``, the world's water being known:
    CesiumJS asks for it only when layer.json lists it)."""
    layer = layer_json(keys, name=name, description=description)
    layer["extensions"] = [e for e in TERRAIN_EXTENSIONS if water or e != "watermask"]
    return layer


# ---------------------------------------------------------------- 3D Tiles implicit tiling


@dataclass(frozen=True, order=True)
class ImplicitCoord:
    """A tile of one of the two implicit quadtrees: ``root`` 0 (west) or 1 (east),
    ``level``, ``x`` eastward and ``y`` northward within that root."""

    root: int
    level: int
    x: int
    y: int


def implicit_coord(key: TileKey) -> ImplicitCoord:
    """Our earth key (rows from the north) -> its implicit tile (y from the south)."""
    validate_key(World.EARTH, key)
    n = 1 << key.level
    return ImplicitCoord(key.x // n, key.level, key.x % n, n - 1 - key.y)


def tile_key(c: ImplicitCoord) -> TileKey:
    """Inverse of ``implicit_coord``; raises ValueError for coordinates outside the quadtree."""
    n = 1 << c.level if 0 <= c.level <= MAX_LEVEL else 0
    if c.root not in (0, 1) or not (0 <= c.x < n and 0 <= c.y < n):
        raise ValueError(f"implicit tile must have root 0 or 1, level in [0, {MAX_LEVEL}] and x, y in "
                         f"[0, 2^level), got {c}")
    return TileKey(c.level, c.root * n + c.x, n - 1 - c.y)


TILE_BOUNDS_SCHEMA = {
    "id": "worldstream_tile_bounds",
    "classes": {"tile": {"properties": {
        "minimumHeight": {"type": "SCALAR", "componentType": "FLOAT64", "semantic": "TILE_MINIMUM_HEIGHT"},
        "maximumHeight": {"type": "SCALAR", "componentType": "FLOAT64", "semantic": "TILE_MAXIMUM_HEIGHT"},
    }}},
}
"""3D Tiles 1.1 metadata schema of the per-tile height range the subtrees carry: CesiumJS
replaces the heights of a tile's implicit region with these (Implicit3DTileContent)."""


def implicit_tileset_json(max_level: int, roots: Iterable[int] = (0, 1), *, subtree_levels: int = SUBTREE_LEVELS,
                          height_range_m: tuple[float, float] = DEFAULT_HEIGHT_RANGE_M) -> dict:
    """3D Tiles 1.1 ``tileset.json``: an empty global root refined into one implicit
    quadtree per geographic level-0 tile present in ``roots``.

    Geometric error of an implicit level-L tile is CesiumJS's error of a level-L
    quantized-mesh tile (runtime.formats.bounds.cesium_level_error_m: 77,067 m / 2^L),
    which halves per level as implicit tiling requires, so at one maximumScreenSpaceError
    both providers select the same levels. The global root's error (ROOT_GEOMETRIC_ERROR_M)
    makes it always refine. ``height_range_m`` gives the heights of the implicit root
    regions, which only the not-yet-loaded subtree placeholders use: every tile's region
    takes its own content's heights from its subtree's tile metadata (TILE_BOUNDS_SCHEMA).
    Paths: ``subtrees/{root}/{level}/{x}/{y}.subtree`` and ``tiles/{root}/{level}/{x}/{y}.glb``."""
    if not 0 <= max_level <= MAX_LEVEL:
        raise ValueError(f"max_level must be in [0, {MAX_LEVEL}], got {max_level}")
    if subtree_levels < 1:
        raise ValueError(f"subtree_levels must be >= 1, got {subtree_levels}")
    roots = sorted(set(roots))
    if not roots or not set(roots) <= {0, 1}:
        raise ValueError(f"roots must be a non-empty subset of (0, 1), got {roots}")
    h0, h1 = (float(v) for v in height_range_m)
    if not h0 <= h1:
        raise ValueError(f"height_range_m must be (low, high) with low <= high, got {height_range_m}")
    children = []
    for r in roots:
        west = -math.pi + r * math.pi
        children.append({
            "boundingVolume": {"region": [west, -math.pi / 2, west + math.pi, math.pi / 2, h0, h1]},
            "geometricError": CESIUM_LEVEL0_ERROR_M,
            "refine": "REPLACE",
            "content": {"uri": f"tiles/{r}/{{level}}/{{x}}/{{y}}.glb"},
            "implicitTiling": {
                "subdivisionScheme": "QUADTREE",
                "subtreeLevels": subtree_levels,
                "availableLevels": max_level + 1,
                "subtrees": {"uri": f"subtrees/{r}/{{level}}/{{x}}/{{y}}.subtree"},
            },
        })
    west = -math.pi + roots[0] * math.pi
    east = -math.pi + (roots[-1] + 1) * math.pi
    return {
        "asset": {"version": "1.1", "generator": "worldstream"},
        "schema": TILE_BOUNDS_SCHEMA,
        "geometricError": ROOT_GEOMETRIC_ERROR_M,
        "root": {
            "boundingVolume": {"region": [west, -math.pi / 2, east, math.pi / 2, h0, h1]},
            "geometricError": ROOT_GEOMETRIC_ERROR_M,
            "refine": "REPLACE",
            "children": children,
        },
    }


def morton2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Morton (Z-order) index of quadtree tiles: bits of x on even, of y on odd positions
    (3D Tiles 1.1, "Availability": tiles of a level are ordered by Morton index)."""
    x, y = np.asarray(x, np.uint64), np.asarray(y, np.uint64)
    out = np.zeros(np.broadcast(x, y).shape, np.uint64)
    for b in range(32):
        out |= ((x >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b)
        out |= ((y >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b + 1)
    return out


def subtree_bytes(tile: bool | np.ndarray, content: bool | np.ndarray, child: bool | np.ndarray,
                  heights_m: np.ndarray | None = None) -> bytes:
    """A binary ``.subtree`` file (magic ``subt``, version 1, JSON chunk, binary chunk).

    Each availability is a constant (bool) or a bitstream given as a (n,) bool array:
    tiles of every subtree level by Morton index, level after level (tile, content),
    or the subtree roots one level below the subtree (child). Bits are packed least
    significant first; chunks and buffer views are 8-byte aligned, as the spec asks.
    ``heights_m``: optional (k, 2) float64 [min, max] content heights of the k available
    tiles in bit order, written as a property table of TILE_BOUNDS_SCHEMA's ``tile``
    class (``tileMetadata``); it needs ``tile`` as a bitstream."""
    views, blob = [], bytearray()

    def view(data: bytes) -> int:
        while len(blob) % 8:
            blob.append(0)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        blob.extend(data)
        return len(views) - 1

    def avail(a):
        if isinstance(a, (bool, np.bool_)):
            return {"constant": int(bool(a))}
        a = np.asarray(a, dtype=bool)
        return {"bitstream": view(np.packbits(a, bitorder="little").tobytes()), "availableCount": int(a.sum())}

    js = {"tileAvailability": avail(tile), "contentAvailability": [avail(content)],
          "childSubtreeAvailability": avail(child)}
    if heights_m is not None:
        hm = np.asarray(heights_m, dtype="<f8").reshape(-1, 2)
        if isinstance(tile, (bool, np.bool_)) or len(hm) != js["tileAvailability"]["availableCount"]:
            raise ValueError(f"heights_m needs one [min, max] row per available tile of a tile bitstream, "
                             f"got {len(hm)} rows")
        if not (np.isfinite(hm).all() and (hm[:, 0] <= hm[:, 1]).all()):
            raise ValueError("heights_m rows must be finite [min, max] with min <= max")
        js["propertyTables"] = [{"class": "tile", "count": len(hm), "properties": {
            "minimumHeight": {"values": view(hm[:, 0].tobytes())},
            "maximumHeight": {"values": view(hm[:, 1].tobytes())}}}]
        js["tileMetadata"] = 0
    while len(blob) % 8:
        blob.append(0)
    if blob:
        js["buffers"] = [{"byteLength": len(blob)}]
        js["bufferViews"] = views
    text = json.dumps(js, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<4sIQQ", b"subt", 1, len(text), len(blob)) + text + bytes(blob)


def reachable(keys: Iterable[TileKey]) -> set[TileKey]:
    """The earth keys whose every ancestor is in ``keys`` too: the tiles a client can reach
    from the level-0 roots (implicit availability must not mark a tile with no parent)."""
    keys = set(keys)
    out: set[TileKey] = set()
    for k in sorted(keys, key=lambda k: k.level):
        if k.level == 0 or k.parent() in out:
            out.add(k)
    return out


def subtrees_for(keys: Iterable[TileKey], max_level: int, subtree_levels: int = SUBTREE_LEVELS,
                 heights_m: dict[TileKey, tuple[float, float]] | None = None) -> dict[ImplicitCoord, bytes]:
    """The ``.subtree`` files of a tileset holding exactly ``keys`` (earth, levels <= max_level).

    Only tiles a client can reach (``reachable``) are marked. A subtree is written for every
    subtree root that has an available tile below it; a tile's content is available exactly
    when the tile is (every stored tile has a GLB); a child subtree exactly when it is
    written. ``heights_m``: key -> (min, max) content heights (``tile_height_range``) of
    every key, written as tile metadata."""
    coords = {implicit_coord(k) for k in reachable(k for k in keys if k.level <= max_level)}
    by_subtree: dict[ImplicitCoord, list[ImplicitCoord]] = {}
    for c in coords:
        s_level = (c.level // subtree_levels) * subtree_levels
        d = c.level - s_level
        by_subtree.setdefault(ImplicitCoord(c.root, s_level, c.x >> d, c.y >> d), []).append(c)
    d = subtree_levels
    children: dict[ImplicitCoord, np.ndarray] = {}
    for cs in by_subtree:
        if cs.level >= d:
            p = ImplicitCoord(cs.root, cs.level - d, cs.x >> d, cs.y >> d)
            bits = children.setdefault(p, np.zeros(4 ** d, dtype=bool))
            bits[int(morton2(cs.x - (p.x << d), cs.y - (p.y << d)))] = True
    out = {}
    n_tiles = (4 ** d - 1) // 3
    for s, members in by_subtree.items():
        bits = np.zeros(n_tiles, dtype=bool)
        at = {}
        for c in members:
            k = c.level - s.level
            i = (4 ** k - 1) // 3 + int(morton2(c.x - (s.x << k), c.y - (s.y << k)))
            bits[i] = True
            at[i] = c
        hm = None
        if heights_m is not None:
            hm = np.array([heights_m[tile_key(at[i])] for i in sorted(at)], dtype=np.float64)
        child = children.get(s)
        out[s] = subtree_bytes(bits, bits, child if child is not None else False, hm)
    return out


def served_subtree_bytes(c: ImplicitCoord, max_level: int, height_range_m: tuple[float, float]) -> bytes:
    """The one-tile subtree (SERVED_SUBTREE_LEVELS) of a live server, where every tile to
    ``max_level`` exists: the tile and its content are available, with the content's
    ``height_range_m``; the four child subtrees exist while ``c.level < max_level``."""
    tile_key(c)
    if not 0 <= c.level <= max_level:
        raise ValueError(f"subtree level must be in [0, {max_level}], got {c.level}")
    one = np.ones(1, dtype=bool)
    return subtree_bytes(one, one, bool(c.level < max_level), np.array([height_range_m], np.float64))


def terrain_path_of(key: TileKey) -> str:
    """``{z}/{x}/{y}.terrain`` with TMS y (0 at the south), as layer.json's scheme says."""
    return f"{key.level}/{key.x}/{tiles_y(World.EARTH, key.level) - 1 - key.y}.terrain"


def glb_path_of(key: TileKey) -> str:
    c = implicit_coord(key)
    return f"tiles/{c.root}/{c.level}/{c.x}/{c.y}.glb"


def subtree_path_of(c: ImplicitCoord) -> str:
    return f"subtrees/{c.root}/{c.level}/{c.x}/{c.y}.subtree"
