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
- 3D Tiles GLB content (runtime.formats.export.tile_glb, textured, with skirts), with the
  tile's buildings (extruded, roofed) and trees (``EXT_mesh_gpu_instancing``) when a
  ``Features`` source is handed in (runtime.formats.features_glb), and each tile's content
  height range (skirts, chord sag, roofs and tree tops included, runtime.formats.bounds);
  the implicit tiling around them is ``streaming.implicit``.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from runtime.formats.bounds import content_height_range_m
from runtime.formats.export import layer_json, quantized_mesh, tile_glb
from runtime.formats.features_glb import append_features, feature_height_range, ground_grid
from runtime.formats.watermask import water_mask_extension
from runtime.lru import LRU
from runtime.tiles import MAX_LEVEL, T, TileKey, World, skirt_depth_for, tiles_y, validate_key
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
from streaming.implicit import implicit_coord

TERRAIN_EXTENSIONS = ("octvertexnormals", "watermask")
"""quantized-mesh extensions we can write, in the order layer.json lists them."""
TERRAIN_CONTENT_TYPE = "application/vnd.quantized-mesh"
GLB_CONTENT_TYPE = "model/gltf-binary"


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


Features = Callable[[TileKey], Mapping[str, np.ndarray]]
"""key -> {"buildings": (N, 5), "trees": (M, 3)} float32 of a tile (the generator's check
contract, runtime.footprints), empty arrays at levels that carry none: handed in by the
composition root (streaming never imports the generator)."""


def tile_height_range(frame: bytes, world: World = World.EARTH,
                      features: Mapping[str, np.ndarray] | None = None) -> tuple[float, float]:
    """Geodetic height range (m) enclosing a tile frame's 3D Tiles content: the TIN, its
    skirts and the chord sag of its flat triangles (runtime.formats.bounds), and the
    ``features`` drawn with it (building walls and roofs, tree tops)."""
    world = World.parse(world)
    tile = frame_tile(frame)
    mesh = tin_mesh(world, tile)
    lo, hi = content_height_range_m(mesh.vertices_m.astype(np.float64) + mesh.center_m, mesh.all_faces)
    if features:
        r = feature_height_range(world, tile.key, ground_grid(tile.grid_rc, tile.height_m, tile.faces),
                                 features.get("buildings"), features.get("trees"))
        if r is not None:
            lo, hi = min(lo, r[0]), max(hi, r[1])
    return lo, hi


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


def glb_bytes(frame: bytes, world: World = World.EARTH, neighbours: Iterable[bytes] = (),
              features: Mapping[str, np.ndarray] | None = None) -> bytes:
    """A textured GLB (TIN + skirts, Y-up, centre in the node transform) of a tile frame;
    ``neighbours``: frames of adjacent tiles to stitch normals with (see ``frame_mesh``);
    ``features``: the tile's buildings and trees (``Features``), drawn on the TIN."""
    mesh, tile = frame_mesh(frame, World.parse(world), neighbours)
    return mesh_glb(mesh, tile.image, features, World.parse(world))


def mesh_glb(mesh: TileMesh, image: bytes | None, features: Mapping[str, np.ndarray] | None = None,
             world: World = World.EARTH) -> bytes:
    """runtime.formats.export.tile_glb with a terrain material: the texture (JPEG/PNG
    bytes or None) is the albedo (base colour factor 1), not metallic, fully rough.
    (trimesh's default material darkens the texture to 40 % and glTF's default metallic
    factor is 1.) Textures clamp to their edge (``clamp_textures``). ``features``: the
    tile's {"buildings", "trees"} arrays (``world``'s frame), appended as a building mesh and instanced trees
    standing on the TIN (runtime.formats.features_glb); the terrain's bytes stay as they are."""
    import trimesh
    from PIL import Image

    picture = Image.open(io.BytesIO(image)).convert("RGB") if image is not None else None
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=picture, baseColorFactor=[255, 255, 255, 255], metallicFactor=0.0, roughnessFactor=1.0)
    glb = clamp_textures(tile_glb(mesh, material=material, y_up=True))
    if features:
        glb = append_features(glb, World.parse(world), mesh.key, mesh.center_m,
                              ground_grid(mesh.grid_rc, mesh.height_m, mesh.faces),
                              features.get("buildings"), features.get("trees"))
    return glb



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


def terrain_path_of(key: TileKey) -> str:
    """``{z}/{x}/{y}.terrain`` with TMS y (0 at the south), as layer.json's scheme says."""
    return f"{key.level}/{key.x}/{tiles_y(World.EARTH, key.level) - 1 - key.y}.terrain"


def glb_path_of(key: TileKey) -> str:
    c = implicit_coord(key)
    return f"tiles/{c.root}/{c.level}/{c.x}/{c.y}.glb"
