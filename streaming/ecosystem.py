"""Stored tile frames -> the ecosystem's formats (pure functions of bytes).

The tile store and the websocket server hold one thing per tile: the ``tile`` frame
(runtime.wire payload: the TIN, quantised heights, the colour image). Every other
format is derived from it, so HTTP clients, static exports and websocket clients
see the same vertices, placed by runtime.tin.tile_mesh as the viewer places them, except
at the levels where CesiumJS's fixed per-level error would be far from the wire mesh's
true error: there the Cesium formats mesh the tile to CesiumJS's error (``cesium_tile``).
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

import dataclasses
import io
import json
import struct
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from runtime.formats.bounds import cesium_level_error_m, content_height_range_m
from runtime.formats.export import layer_json, quantized_mesh, tile_glb
from runtime.formats.features_glb import append_features, feature_height_range, ground_grid
from runtime.formats.watermask import water_mask_extension
from runtime.lru import LRU
from runtime.tiles import MAX_LEVEL, T, TileKey, World, skirt_depth_for, tiles_y, validate_key
from runtime.tin import (
    EdgeData,
    TileMesh,
    curved_positions,
    edge_data,
    facing_side,
    neighbour_keys,
    opposite,
    simplify_grid,
    stitch,
    tile_mesh,
    tin_grid,
)
from runtime.tin.placement import edge_indices
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


CESIUM_OWN_ERROR = ((range(0, 6), 1.0), (range(16, MAX_LEVEL + 1), 0.45))
"""(levels, factor): the Cesium formats mesh an earth tile of these levels to ``factor``
x the error CesiumJS assumes for its level (``cesium_tile``), elsewhere they carry the
wire frame's mesh. CesiumJS takes every quantized-mesh tile's error to be
``runtime.formats.bounds.cesium_level_error_m`` (a 65-sample heightmap: 256/65 = 3.94x
our mesh bound); 3D Tiles states the same so both providers pick the same levels.
Measured (``bench/borders.py --errors``, earth seed 0, fractal refiner, the tiles holding
the Alps' and the Himalaya's views), CesiumJS's error / the true error (3D, chord sag
included, against the next level's samples): with the wire mesh 2.4-4.0 at levels 0-5
and 2.1-3.0 at 16-18 (little new detail below the tile: its error is about its bound),
0.58-1.88 at 6-15 (the next level's detail makes the true error about CesiumJS's).
Levels 0-5 meshed to CesiumJS's error: 0.88-1.14. Levels 16+ to 0.45 of it: 1.32-1.55
at 16-18 (any coarser and the borders show, ``CESIUM_BORDER_PASSES``: the coarse interior
shades smoothly, the every-sample border does not). Levels 6-15 meshed to CesiumJS's
error would give 0.56-0.88 with 4-5x fewer vertices, a coarser picture, and the Alps
level-10 border contrast gets worse: left as served."""

CESIUM_BORDER_PASSES = 4
"""Smoothing passes along the joined edge normals (``runtime.tin.joined_normals``) of
tiles at ``CESIUM_OWN_ERROR`` levels (``cesium_stitch``). Measured (``bench/borders.py``,
border / in-tile contrast of 3 x 3 level-16 blocks, wire mesh -> meshed to 0.45 of
CesiumJS's error unsmoothed -> with 4 passes): Himalaya 16/97175/22591 0.96 -> 1.64 ->
0.88, the page test's 16/97175/22608 0.82 -> 1.45 -> 0.80, Alps 16/68357/16074 0.85 ->
1.59 -> 0.69 (6 or 8 passes, or half CesiumJS's error: worse on some block). At levels 6-15 smoothing hurts
the Alps level-10 block (0.43 -> 0.48 with one pass): none there."""


def cesium_mesh_error_m(level: int) -> float | None:
    """The error bound (m, 3D with the chord sag) the Cesium formats mesh an earth tile
    of ``level`` to (``CESIUM_OWN_ERROR``), or None where they keep the wire mesh."""
    for levels, factor in CESIUM_OWN_ERROR:
        if level in levels:
            return factor * cesium_level_error_m(level)
    return None


def cesium_stitch(mesh: TileMesh, known: dict[str, EdgeData]) -> TileMesh:
    """``runtime.tin.stitch`` as the Cesium formats do it: at ``CESIUM_OWN_ERROR`` levels
    the joined edge normals are smoothed along the edge (``CESIUM_BORDER_PASSES``); both
    neighbours, of one level, do the same, so the edge agrees."""
    passes = CESIUM_BORDER_PASSES if cesium_mesh_error_m(mesh.key.level) is not None else 0
    return stitch(mesh, known, passes)


def cesium_tile(tile: DecodedTile) -> DecodedTile:
    """The earth tile the Cesium formats carry: ``tile`` itself, or at a level with a
    ``cesium_mesh_error_m`` above the tile's own bound, its TIN re-meshed to that bound.

    The wire TIN is rasterised to the (T+1, T+1) sample grid (``tin_grid``) and simplified
    again (``simplify_grid``, the earth's 3D error with the chord sag, fan border: every
    border sample stays a vertex, so neighbours still meet sample for sample and no
    crack opens). Vertices keep the wire TIN's heights (a kept wire vertex exactly, any
    other on the wire surface), so the result lies within the new bound of the wire TIN
    and within the sum of both bounds of the samples. The returned tile's
    ``geometric_error_m`` is the new bound; its border is the wire tile's, so are the gaps
    to a neighbour of another level, and ``tin_mesh`` keeps the wire tile's skirts."""
    bound = cesium_mesh_error_m(tile.key.level)
    if bound is None or bound <= tile.geometric_error_m:
        return tile
    t = tile.grid_size
    grid = tin_grid(tile.grid_rc, tile.height_m, tile.faces, t)
    rc, faces = simplify_grid(grid, bound, positions_m=curved_positions(World.EARTH, tile.key, grid))
    h = grid[rc[:, 0], rc[:, 1]]
    west, south, east, north = edge_indices(rc, t)
    return dataclasses.replace(
        tile, grid_rc=rc.astype(np.float64), height_m=h, faces=faces.astype(np.int32), west=west, south=south,
        east=east, north=north, height_min_m=float(h.min()), height_max_m=float(h.max()),
        geometric_error_m=float(bound), topology="rtin")


def tin_mesh(world: World, tile: DecodedTile, skirt_depth_m: float | None = None) -> TileMesh:
    """Place a decoded TIN in world space (runtime.tin.tile_mesh, the viewer's path too):
    centre-relative positions, skirts, normals, UVs; an earth tile as the Cesium formats
    carry it (``cesium_tile``). Skirt depth defaults to runtime.tiles.skirt_depth_for
    of the stored tile's geometric error. Border normals follow the shared-edge rule until
    ``stitch``ed with neighbours."""
    if tile.grid_size != T:
        raise ValueError(f"expected a tile of grid size {T}, got {tile.grid_size}")
    depth = skirt_depth_for(tile.geometric_error_m) if skirt_depth_m is None else float(skirt_depth_m)
    if World.parse(world) is World.EARTH:
        tile = cesium_tile(tile)  # same border: the skirts stay the wire tile's
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
    return (cesium_stitch(mesh, known) if known else mesh), tile


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
        return cesium_stitch(mesh, known)


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
