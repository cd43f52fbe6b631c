"""streaming.ecosystem: stored frames -> quantized-mesh, imagery PNG, 3D Tiles (tileset,
subtrees, GLB), checked with independent tools: the ``quantized-mesh-tile`` decoder,
Khronos glTF-Validator (npm) and a subtree reader written from the 3D Tiles 1.1 spec."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from eco_fixtures import gltf_validate, node_available
from PIL import Image

from runtime.geometry import geodetic_normal
from runtime.tiles import T, TileKey, World, level_error_m, spacing_deg
from runtime.wire import decode_image
from streaming import ecosystem as E
from streaming.http import parse_route

KEYS = [TileKey(0, 0, 0), TileKey(0, 1, 0), TileKey(3, 11, 2), TileKey(6, 94, 21), TileKey(9, 759, 176)]


@pytest.fixture(scope="module")
def frames():
    from generator.pyramid import open_world
    from streaming.tileservice import mesh_encoder

    pyr = open_world("earth", 0)
    enc = mesh_encoder()
    return {k: enc(World.EARTH, k, f) for k, f in zip(KEYS, pyr.tiles(KEYS))}


def extent(key):
    d = spacing_deg(key.level) * T
    west, north = -180.0 + key.x * d, 90.0 - key.y * d
    return west, north - d, west + d, north


@pytest.mark.parametrize("key", KEYS[2:])
def test_terrain_decodes_with_independent_reader(frames, key, tmp_path):
    qmt = pytest.importorskip("quantized_mesh_tile")
    tile = E.frame_tile(frames[key])
    path = tmp_path / "t.terrain"
    path.write_bytes(E.terrain_bytes(frames[key]))
    west, south, east, north = extent(key)
    dec = qmt.decode(str(path), (west, south, east, north), hasLighting=True, gzipped=False)
    assert len(dec.h) == len(tile.grid_rc)
    coords = np.array(dec.getVerticesCoordinates())  # lon, lat, height
    # Every decoded vertex is a vertex of the stored TIN, at its height (one 15-bit quantum).
    col = np.round((coords[:, 0] - west) / (east - west) * T).astype(int)
    row = np.round((north - coords[:, 1]) / (north - south) * T).astype(int)
    lut = {(int(r), int(c)): i for i, (r, c) in enumerate(tile.grid_rc.astype(int))}
    idx = np.array([lut[(r, c)] for r, c in zip(row, col)])
    assert sorted(idx.tolist()) == list(range(len(idx)))
    span = tile.height_max_m - tile.height_min_m
    assert np.abs(coords[:, 2] - tile.height_m[idx]).max() <= span / 32767 / 2 + 1e-3
    # Normals point up on average (ECEF oct-encoded normals of a terrain surface).
    up = geodetic_normal(coords[:, 0], coords[:, 1])
    n = np.array(dec.vLight)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    assert (n * up).sum(1).min() > 0.0 and (n * up).sum(1).mean() > 0.8
    assert len(dec.indices) == 3 * len(tile.faces)


def test_terrain_route_flips_tms_rows():
    # Cesium asks for TMS rows (0 at the south); our rows count from the north.
    assert parse_route("/terrain/6/94/42.terrain?v=1.0.0", 16).key == TileKey(6, 94, 21)
    assert E.terrain_path_of(TileKey(6, 94, 21)) == "6/94/42.terrain"
    assert parse_route("/imagery/6/94/21.png", 16).key == TileKey(6, 94, 21)
    r = parse_route("/3dtiles/tiles/1/6/30/42.glb", 16)
    assert r.key == TileKey(6, 94, 21) and E.glb_path_of(r.key) == "tiles/1/6/30/42.glb"


def test_implicit_coordinates_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        level = int(rng.integers(0, 20))
        key = TileKey(level, int(rng.integers(0, 2 << level)), int(rng.integers(0, 1 << level)))
        c = E.implicit_coord(key)
        assert E.tile_key(c) == key
        # The implicit child region (CesiumJS deriveBoundingRegion) is the tile's extent.
        size = np.pi / (1 << level)
        west = -np.pi + c.root * np.pi + c.x * size
        south = -np.pi / 2 + c.y * size
        w, s, e, n = np.radians(extent(key))
        assert west == pytest.approx(w, abs=1e-12) and south == pytest.approx(s, abs=1e-12)
        assert e - w == pytest.approx(size) and n - s == pytest.approx(size)
    with pytest.raises(ValueError, match="root 0 or 1"):
        E.tile_key(E.ImplicitCoord(2, 0, 0, 0))


def test_imagery_png_is_the_pixel_mean_of_the_tile_colour(frames):
    key = KEYS[3]
    png = Image.open(io.BytesIO(E.imagery_png(frames[key])))
    assert png.size == (256, 256) and png.mode == "RGB"
    px = np.asarray(png).astype(float)
    rgb = decode_image(E.frame_tile(frames[key]).image).astype(float)
    assert rgb.shape == (T + 1, T + 1, 3)
    want = 0.25 * (rgb[:-1, :-1] + rgb[1:, :-1] + rgb[:-1, 1:] + rgb[1:, 1:])
    assert np.abs(px - want).max() <= 0.5 + 1e-9
    assert px.std() > 5.0  # a real picture, not a flat colour


def read_subtree(blob: bytes) -> tuple[dict, bytes]:
    """Independent reader of the 3D Tiles 1.1 binary subtree layout."""
    magic, version, jlen, blen = struct.unpack_from("<4sIQQ", blob)
    assert magic == b"subt" and version == 1 and jlen % 8 == 0 and blen % 8 == 0
    assert len(blob) == 24 + jlen + blen
    return json.loads(blob[24:24 + jlen]), blob[24 + jlen:]


def bit(js: dict, body: bytes, avail: dict, index: int) -> bool:
    if "constant" in avail:
        return bool(avail["constant"])
    view = js["bufferViews"][avail["bitstream"]]
    byte = body[view["byteOffset"] + index // 8]
    return bool((byte >> (index % 8)) & 1)


def morton(x: int, y: int) -> int:
    return sum((((x >> b) & 1) << (2 * b)) | (((y >> b) & 1) << (2 * b + 1)) for b in range(20))


def test_subtrees_mark_exactly_the_stored_tiles():
    keys = {TileKey(0, 0, 0), TileKey(0, 1, 0), TileKey(1, 1, 0), TileKey(2, 2, 1), TileKey(3, 5, 2),
            TileKey(4, 11, 5), TileKey(5, 22, 10), TileKey(5, 23, 11)}
    subs = E.subtrees_for(keys, max_level=5, subtree_levels=4)
    # Level-4 and level-5 tiles live in subtrees rooted at level 4.
    # (4, 11, 5) is column 11 of the west root's 16, row 15 - 5 = 10 from the south.
    assert set(subs) == {E.ImplicitCoord(0, 0, 0, 0), E.ImplicitCoord(1, 0, 0, 0), E.ImplicitCoord(0, 4, 11, 10)}
    js, body = read_subtree(subs[E.ImplicitCoord(0, 0, 0, 0)])
    found = set()
    for level in range(4):
        n = 1 << level
        for x in range(n):
            for y in range(n):
                i = (4 ** level - 1) // 3 + morton(x, y)
                if bit(js, body, js["tileAvailability"], i):
                    assert bit(js, body, js["contentAvailability"][0], i)
                    found.add(E.tile_key(E.ImplicitCoord(0, level, x, y)))
    assert found == {k for k in keys if k.level < 4 and k.x < 1 << k.level}
    assert js["tileAvailability"]["availableCount"] == len(found)
    # The child subtree at level 4 is marked, no other.
    child = [i for i in range(4 ** 4) if bit(js, body, js["childSubtreeAvailability"], i)]
    assert child == [morton(11, 10)]
    js, body = read_subtree(subs[E.ImplicitCoord(0, 4, 11, 10)])
    assert bit(js, body, js["tileAvailability"], 0)  # (4, 11, 5) is the subtree root
    # Its level-1 tiles: (5, 22, 10) -> x 0, y 1 and (5, 23, 11) -> x 1, y 0 below the root.
    avail = [i for i in range(5) if bit(js, body, js["tileAvailability"], i)]
    assert avail == sorted([0, 1 + morton(0, 1), 1 + morton(1, 0)])
    js, body = read_subtree(subs[E.ImplicitCoord(1, 0, 0, 0)])
    assert [i for i in range(85) if bit(js, body, js["tileAvailability"], i)] == [0]
    assert js["childSubtreeAvailability"] == {"constant": 0}
    # Live-server subtree: everything available, constants only, no binary chunk.
    js, body = read_subtree(E.subtree_bytes(True, True, False))
    assert js["tileAvailability"] == {"constant": 1} and body == b""


def test_implicit_tileset_json_is_quadtrees_with_halving_errors():
    ts = E.implicit_tileset_json(12)
    assert ts["asset"]["version"] == "1.1"
    kids = ts["root"]["children"]
    assert [k["boundingVolume"]["region"][:4] for k in kids] == [
        [-np.pi, -np.pi / 2, 0.0, np.pi / 2], [0.0, -np.pi / 2, np.pi, np.pi / 2]]
    for k in kids:
        it = k["implicitTiling"]
        assert it["subdivisionScheme"] == "QUADTREE" and it["availableLevels"] == 13
        assert "{level}" in k["content"]["uri"] and "{level}" in it["subtrees"]["uri"]
        # Implicit tiling halves the error per level; so does our TIN bound.
        assert k["geometricError"] == level_error_m(0)
        assert level_error_m(5) == pytest.approx(k["geometricError"] / 32)
    assert ts["root"]["geometricError"] > kids[0]["geometricError"]


@pytest.mark.skipif(not node_available(), reason="node + .ci/node/node_modules (bash .ci/setup --dev) needed")
def test_every_glb_passes_gltf_validator(frames, tmp_path):
    paths = []
    for k in KEYS:
        p = tmp_path / f"{k.level}_{k.x}_{k.y}.glb"
        p.write_bytes(E.glb_bytes(frames[k]))
        paths.append(p)
    reports = gltf_validate(paths)
    assert len(reports) == len(KEYS)
    for rep, k in zip(reports, KEYS):
        issues = rep["issues"]
        assert issues["numErrors"] == 0, (k, issues["messages"])
        tile = E.frame_tile(frames[k])
        # The validator sees our triangles (surface + skirts) and one textured primitive.
        assert rep["info"]["totalTriangleCount"] > len(tile.faces)
        assert rep["info"]["totalVertexCount"] > len(tile.grid_rc)
        assert rep["info"]["materialCount"] == 1
    # Terrain material: the texture is the albedo, not metal (glTF's metallic default is 1).
    glb = paths[-1].read_bytes()
    n = struct.unpack_from("<I", glb, 12)[0]
    pbr = json.loads(glb[20:20 + n])["materials"][0]["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["baseColorFactor"] == [1.0, 1.0, 1.0, 1.0]
    # Clamped texture edges: no bleeding of the opposite border along tile seams.
    gltf = json.loads(glb[20:20 + n])
    sampler = gltf["samplers"][gltf["textures"][0]["sampler"]]
    assert sampler["wrapS"] == sampler["wrapT"] == 33071
