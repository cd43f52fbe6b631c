"""streaming.ecosystem: stored frames -> quantized-mesh, imagery PNG, 3D Tiles (tileset,
subtrees, GLB), checked with independent tools: the ``quantized-mesh-tile`` decoder,
Khronos glTF-Validator (npm) and a subtree reader written from the 3D Tiles 1.1 spec."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from eco_fixtures import bit, gltf_validate, morton, node_available, read_subtree, tile_heights
from PIL import Image

from generator.water import earth_water_mask
from runtime.geometry import ecef_to_geodetic, geodetic_normal
from runtime.tiles import T, TileKey, World, spacing_deg
from runtime.wire import decode_image
from streaming import ecosystem as E
from streaming import implicit as I
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
    tile = E.cesium_tile(E.frame_tile(frames[key]))  # the TIN the Cesium formats carry
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


def test_cesium_tile_meshes_coarse_levels_to_cesiums_error(frames):
    """At a ``CESIUM_OWN_ERROR`` level the Cesium formats' TIN is the wire TIN meshed to
    CesiumJS's level error: fewer vertices, every border sample kept at its height (so
    neighbours meet without cracks), every vertex on the wire surface and the wire
    surface within the new bound of it (3D, chord sag included); elsewhere the wire TIN."""
    from runtime.formats.bounds import cesium_level_error_m
    from runtime.tin import max_deviation_m, tin_grid

    key = TileKey(3, 11, 2)
    wire = E.frame_tile(frames[key])
    tile = E.cesium_tile(wire)
    bound = E.cesium_mesh_error_m(3)
    assert bound == pytest.approx(cesium_level_error_m(3)) and tile.geometric_error_m == pytest.approx(bound)
    assert bound > 3.9 * wire.geometric_error_m
    assert len(tile.grid_rc) < len(wire.grid_rc) and len(tile.faces) < len(wire.faces)
    border = lambda t: {(int(r), int(c)): h for (r, c), h in zip(t.grid_rc, t.height_m)  # noqa: E731
                        if r in (0, T) or c in (0, T)}
    assert border(tile) == border(wire) and len(border(tile)) == 4 * T
    grid = tin_grid(wire.grid_rc, wire.height_m, wire.faces)
    rc = tile.grid_rc.astype(int)
    assert np.abs(tile.height_m - grid[rc[:, 0], rc[:, 1]]).max() < 1e-6
    dev_3d, _ = max_deviation_m(World.EARTH, key, grid, tile.grid_rc, tile.faces)
    assert 0.3 * bound < dev_3d <= bound * (1 + 1e-6)
    # Levels 6-15 keep the wire TIN.
    assert E.cesium_mesh_error_m(6) is None
    six = E.frame_tile(frames[TileKey(6, 94, 21)])
    assert E.cesium_tile(six) is six
    # 3D Tiles carry the same TIN (surface and skirt vertices of the placed mesh).
    trimesh = pytest.importorskip("trimesh")
    glb = trimesh.load(io.BytesIO(E.glb_bytes(frames[key])), file_type="glb", force="mesh", process=False)
    placed = E.tin_mesh(World.EARTH, wire)
    assert placed.n == len(tile.grid_rc) and len(glb.vertices) == len(placed.vertices_m)
    assert placed.skirt_depth_m == pytest.approx(5 * wire.geometric_error_m)  # the wire tile's skirts


def test_cesium_stitch_joins_smoothed_edges_that_agree(frames):
    """The two level-0 tiles share the 0 deg meridian: at a ``CESIUM_OWN_ERROR`` level the
    joined normals are smoothed along the edge, identically on both sides."""
    from runtime.tin import edge_data, stitch

    a, b = (E.tin_mesh(World.EARTH, E.frame_tile(frames[TileKey(0, x, 0)])) for x in (0, 1))
    sa = E.cesium_stitch(a, {"east": edge_data(b)["west"]})
    sb = E.cesium_stitch(b, {"west": edge_data(a)["east"]})
    na, nb = sa.normals[sa.east[1:-1]], sb.normals[sb.west[1:-1]]
    assert np.array_equal(na, nb)
    plain = stitch(a, {"east": edge_data(b)["west"]}).normals[a.east[1:-1]]
    assert not np.array_equal(na, plain)  # smoothed: the joined normals changed
    step = lambda n: np.degrees(np.arccos(np.clip((n[1:] * n[:-1]).sum(1), -1, 1))).max()  # noqa: E731
    assert step(na) <= step(plain)


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
        c = I.implicit_coord(key)
        assert I.tile_key(c) == key
        # The implicit child region (CesiumJS deriveBoundingRegion) is the tile's extent.
        size = np.pi / (1 << level)
        west = -np.pi + c.root * np.pi + c.x * size
        south = -np.pi / 2 + c.y * size
        w, s, e, n = np.radians(extent(key))
        assert west == pytest.approx(w, abs=1e-12) and south == pytest.approx(s, abs=1e-12)
        assert e - w == pytest.approx(size) and n - s == pytest.approx(size)
    with pytest.raises(ValueError, match="root 0 or 1"):
        I.tile_key(I.ImplicitCoord(2, 0, 0, 0))


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


def test_subtrees_mark_exactly_the_stored_tiles():
    keys = {TileKey(0, 0, 0), TileKey(0, 1, 0), TileKey(1, 1, 0), TileKey(2, 2, 1), TileKey(3, 5, 2),
            TileKey(4, 11, 5), TileKey(5, 22, 10), TileKey(5, 23, 11)}
    subs = I.subtrees_for(keys, max_level=5, subtree_levels=4)
    # Level-4 and level-5 tiles live in subtrees rooted at level 4.
    # (4, 11, 5) is column 11 of the west root's 16, row 15 - 5 = 10 from the south.
    assert set(subs) == {I.ImplicitCoord(0, 0, 0, 0), I.ImplicitCoord(1, 0, 0, 0), I.ImplicitCoord(0, 4, 11, 10)}
    js, body = read_subtree(subs[I.ImplicitCoord(0, 0, 0, 0)])
    found = set()
    for level in range(4):
        n = 1 << level
        for x in range(n):
            for y in range(n):
                i = (4 ** level - 1) // 3 + morton(x, y)
                if bit(js, body, js["tileAvailability"], i):
                    assert bit(js, body, js["contentAvailability"][0], i)
                    found.add(I.tile_key(I.ImplicitCoord(0, level, x, y)))
    assert found == {k for k in keys if k.level < 4 and k.x < 1 << k.level}
    assert js["tileAvailability"]["availableCount"] == len(found)
    # The child subtree at level 4 is marked, no other.
    child = [i for i in range(4 ** 4) if bit(js, body, js["childSubtreeAvailability"], i)]
    assert child == [morton(11, 10)]
    js, body = read_subtree(subs[I.ImplicitCoord(0, 4, 11, 10)])
    assert bit(js, body, js["tileAvailability"], 0)  # (4, 11, 5) is the subtree root
    # Its level-1 tiles: (5, 22, 10) -> x 0, y 1 and (5, 23, 11) -> x 1, y 0 below the root.
    avail = [i for i in range(5) if bit(js, body, js["tileAvailability"], i)]
    assert avail == sorted([0, 1 + morton(0, 1), 1 + morton(1, 0)])
    js, body = read_subtree(subs[I.ImplicitCoord(1, 0, 0, 0)])
    assert [i for i in range(85) if bit(js, body, js["tileAvailability"], i)] == [0]
    assert js["childSubtreeAvailability"] == {"constant": 0}
    # Constants only: no binary chunk.
    js, body = read_subtree(I.subtree_bytes(True, True, False))
    assert js["tileAvailability"] == {"constant": 1} and body == b""


def test_subtrees_carry_each_tiles_height_range_in_bit_order():
    keys = {TileKey(0, 0, 0), TileKey(0, 1, 0), TileKey(1, 0, 0), TileKey(1, 1, 1), TileKey(2, 1, 3)}
    heights = {k: (-100.0 * (i + 1), 10.0 * (i + 1)) for i, k in enumerate(sorted(keys))}
    subs = I.subtrees_for(keys, max_level=2, subtree_levels=4, heights_m=heights)
    js, body = read_subtree(subs[I.ImplicitCoord(0, 0, 0, 0)])
    assert js["tileMetadata"] == 0 and js["propertyTables"][0]["class"] == "tile"
    rows = tile_heights(js, body)
    # Bit order: root (bit 0), then level 1 by Morton index: (1, 1, 1) is implicit x 1, y 0
    # (bit 1 + 1), (1, 0, 0) is x 0, y 1 (bit 1 + 2). (2, 1, 3)'s parent (1, 0, 1) is missing,
    # so no client can reach it: not marked, no row.
    assert rows == [heights[TileKey(0, 0, 0)], heights[TileKey(1, 1, 1)], heights[TileKey(1, 0, 0)]]
    assert [i for i in range(21) if bit(js, body, js["tileAvailability"], i)] == [0, 2, 3]
    # The schema's semantics are the ones CesiumJS reads for implicit tiles.
    props = I.implicit_tileset_json(2)["schema"]["classes"]["tile"]["properties"]
    assert {p["semantic"] for p in props.values()} == {"TILE_MINIMUM_HEIGHT", "TILE_MAXIMUM_HEIGHT"}
    # The live server's one-tile subtree: the tile, its content, its children below max_level.
    js, body = read_subtree(I.served_subtree_bytes(I.ImplicitCoord(1, 3, 2, 5), 4, (-5.0, 7.0)))
    assert bit(js, body, js["tileAvailability"], 0) and bit(js, body, js["contentAvailability"][0], 0)
    assert js["childSubtreeAvailability"] == {"constant": 1} and tile_heights(js, body) == [(-5.0, 7.0)]
    js, body = read_subtree(I.served_subtree_bytes(I.ImplicitCoord(1, 4, 2, 5), 4, (-5.0, 7.0)))
    assert js["childSubtreeAvailability"] == {"constant": 0}
    with pytest.raises(ValueError, match="level must be in"):
        I.served_subtree_bytes(I.ImplicitCoord(1, 5, 2, 5), 4, (-5.0, 7.0))


def test_tileset_json_is_implicit_quadtrees_with_halving_errors():
    ts = I.implicit_tileset_json(12, height_range_m=(-3.5e6, 8000.0))
    assert ts["asset"]["version"] == "1.1"
    kids = ts["root"]["children"]
    assert [k["boundingVolume"]["region"][:4] for k in kids] == [
        [-np.pi, -np.pi / 2, 0.0, np.pi / 2], [0.0, -np.pi / 2, np.pi, np.pi / 2]]
    for k in kids:
        it = k["implicitTiling"]
        assert it["subdivisionScheme"] == "QUADTREE" and it["availableLevels"] == 13
        assert "{level}" in k["content"]["uri"] and "{level}" in it["subtrees"]["uri"]
        # CesiumJS's quantized-mesh error of level 0 (getEstimatedLevelZeroGeometricErrorForAHeightmap
        # with a 65-sample heightmap, 2 tiles around the equator), halved per level by implicit tiling.
        assert k["geometricError"] == pytest.approx(6378137.0 * 2 * np.pi * 0.25 / (65 * 2))
        assert k["boundingVolume"]["region"][4:] == [-3.5e6, 8000.0]
    # The contentless root refines into level 0 from any distance the globe fills a few pixels.
    assert ts["root"]["geometricError"] >= 6e6 and ts["geometricError"] == ts["root"]["geometricError"]


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


@pytest.mark.parametrize("key", [KEYS[0], KEYS[3]])
def test_content_height_range_holds_every_point_of_the_content(frames, key):
    """The range must hold the flat triangles' chord sag below their vertices, the skirts
    and the vertices, and not be much looser than that."""
    lo, hi = E.tile_height_range(frames[key])
    mesh = E.tin_mesh(World.EARTH, E.frame_tile(frames[key]))
    v = mesh.vertices_m.astype(np.float64) + mesh.center_m
    tri = v[mesh.all_faces]  # (m, 3, 3)
    # Barycentric points on a 12 x 12 lattice of every triangle (vertices, edges, inside).
    g = np.array([(i, j, 12 - i - j) for i in range(13) for j in range(13 - i)], float) / 12
    pts = np.einsum("pk,mkj->mpj", g, tri).reshape(-1, 3)
    _, _, h = ecef_to_geodetic(pts)
    assert lo <= h.min() and h.max() <= hi
    # Tight: within 2 % of the deepest sag below the lowest point found (plus 1 m).
    assert h.min() - lo <= 0.02 * (h.max() - h.min()) + 1.0
    assert hi - h.max() <= 1.0
    skirt_bottom = mesh.height_m[mesh.skirt_src].min() - mesh.skirt_depth_m
    assert lo <= skirt_bottom + 1.0  # skirts inside
    if key.level == 0:  # curved meshes (sag within the error): the skirts are the bottom
        assert lo > skirt_bottom - mesh.skirt_depth_m


def read_quantized_mesh(blob: bytes) -> tuple[int, dict[int, bytes]]:
    """Independent reader of quantized-mesh-1.0 (CesiumGS/quantized-mesh README):
    (vertex count, {extension id: data}); fails on any trailing or overlapping bytes."""
    pos = 88
    (n,) = struct.unpack_from("<I", blob, pos)
    pos += 4 + 3 * 2 * n
    wide = n > 65536
    size = 4 if wide else 2
    if wide and pos % 4:
        pos += 4 - pos % 4
    (tris,) = struct.unpack_from("<I", blob, pos)
    pos += 4 + 3 * tris * size
    for _ in range(4):  # west, south, east, north edge lists
        (m,) = struct.unpack_from("<I", blob, pos)
        pos += 4 + m * size
    ext = {}
    while pos < len(blob):
        eid, length = struct.unpack_from("<BI", blob, pos)
        pos += 5
        assert eid not in ext and pos + length <= len(blob)
        ext[eid] = blob[pos:pos + length]
        pos += length
    assert pos == len(blob)
    return n, ext


def test_terrain_extensions_are_exactly_the_asked_ones(frames):
    frame = frames[KEYS[3]]
    n, ext = read_quantized_mesh(E.terrain_bytes(frame, ()))
    assert ext == {}
    n, ext = read_quantized_mesh(E.terrain_bytes(frame, ("octvertexnormals",)))
    assert list(ext) == [1] and len(ext[1]) == 2 * n
    n, ext = read_quantized_mesh(E.terrain_bytes(frame, ("watermask",), water=earth_water_mask))
    assert list(ext) == [2]
    n, ext = read_quantized_mesh(E.terrain_bytes(frame, E.TERRAIN_EXTENSIONS, water=earth_water_mask))
    assert list(ext) == [1, 2]  # in id order (a static export writes both)
    n, ext = read_quantized_mesh(E.terrain_bytes(frame))
    assert list(ext) == [1]  # the default: normals
    with pytest.raises(ValueError, match="world's water"):
        E.terrain_bytes(frame, ("watermask",))
    with pytest.raises(ValueError, match="subset of"):
        E.terrain_bytes(frame, ("metadata",))
    # CesiumJS's Accept header (CesiumTerrainProvider getRequestHeader): names joined by '-'.
    accept = "application/vnd.quantized-mesh;extensions={},application/octet-stream;q=0.9,*/*;q=0.01"
    assert E.requested_extensions(accept.format("octvertexnormals-watermask")) == ("octvertexnormals", "watermask")
    assert E.requested_extensions(accept.format("watermask-octvertexnormals-metadata")) == (
        "octvertexnormals", "watermask")
    assert E.requested_extensions(accept.format("watermask")) == ("watermask",)
    assert E.requested_extensions("application/vnd.quantized-mesh,application/octet-stream;q=0.9") == ()
    assert E.requested_extensions(None) == ()
    assert E.terrain_content_type(("watermask", "octvertexnormals")) == (
        "application/vnd.quantized-mesh;extensions=octvertexnormals-watermask")


@pytest.mark.parametrize("key, kind", [(KEYS[0], "mixed"), (KEYS[4], "land"), (TileKey(5, 2, 16), "sea")])
def test_water_mask_extension_bytes(frames, key, kind):
    """Water mask (id 2): one byte 0 (all land) or 255 (all sea), or 256 x 256 bytes north
    row first; sea where the earth anchor's height is <= 0 m, and lakes."""
    from generator.anchors.earth import SPACING_DEG, EarthAnchor

    if key not in frames:
        from generator.pyramid import open_world
        from streaming.tileservice import mesh_encoder

        frames = {key: mesh_encoder()(World.EARTH, key, open_world("earth", 0).tile(key))}
    _, ext = read_quantized_mesh(E.terrain_bytes(frames[key], ("watermask",), water=earth_water_mask))
    data = ext[2]
    if kind == "land":
        assert data == b"\x00"
        return
    if kind == "sea":  # (5, 2, 16): 157.5..163.1 W, 0..5.6 S, the open Pacific
        assert data == b"\xff"
        return
    assert len(data) == 256 * 256 and set(data) == {0, 255}
    mask = np.frombuffer(data, np.uint8).reshape(256, 256)
    # Check cells against the anchor grid at its own nodes (nearest cell centre), away from coasts.
    anchor = EarthAnchor.load()
    west, south, east, north = extent(key)
    d = (east - west) / 256
    lat = north - (np.arange(256) + 0.5) * d
    lon = west + (np.arange(256) + 0.5) * d
    r = np.round((90 - lat) / SPACING_DEG).astype(int)
    c = np.round((lon + 180) / SPACING_DEG).astype(int) % anchor.height_m.shape[1]
    h = anchor.height_m[r][:, c]
    lake = anchor.lakes.water(*np.meshgrid(lat, lon, indexing="ij"))[0]  # lakes are water at any height
    assert (mask[h < -200] == 255).all() and (mask[(h > 200) & ~lake] == 0).all()
    assert lake.any() and (mask[lake] == 255).all()  # Superior, Titicaca, Great Salt Lake...
    assert 0.5 < (mask == 255).mean() < 0.9  # the western hemisphere: mostly ocean
    # North row first: the top rows (Arctic) hold more land than the rows around 60 S.
    assert (mask[20:40] == 0).mean() > (mask[170:190] == 0).mean()


def test_every_advertised_tile_of_an_exported_tileset_exists(tmp_path):
    """``bake`` + ``export``, hosted by a plain static web server, walked as CesiumJS would."""
    from eco_browser import StaticSite
    from eco_fixtures import get, walk_tileset

    from generator.pyramid import open_world
    from streaming.bake import BBox, bake, export_store, open_store, plan_keys

    keys = plan_keys(World.EARTH, BBox(86.0, 27.0, 88.0, 29.0), (3, 5))
    bake(World.EARTH, 0, keys, tmp_path / "store", use_ray=False, progress_stream=io.StringIO(),
         open_pyramid=open_world)
    store = open_store(tmp_path / "store")
    for fmt in ("3dtiles", "quantized-mesh"):
        export_store(store, tmp_path / "out", fmt, progress_stream=io.StringIO(), water=earth_water_mask)
    site = StaticSite(tmp_path / "out")
    try:
        walk = walk_tileset(f"http://127.0.0.1:{site.port}/3dtiles")
        layer = json.loads(get(f"http://127.0.0.1:{site.port}/terrain/layer.json")[2])
    finally:
        site.close()
    assert walk["failed"] == [] and walk["last_level"] == 5
    assert {I.tile_key(I.ImplicitCoord(*c)) for c in walk["tiles"]} == set(keys)
    # Each tile's box heights are its content's, skirts and chord sag included.
    for c, hm in walk["tiles"].items():
        k = I.tile_key(I.ImplicitCoord(*c))
        assert hm == E.tile_height_range(store.get(k))
    assert layer["extensions"] == ["octvertexnormals", "watermask"]
    _, ext = read_quantized_mesh((tmp_path / "out" / "terrain" / E.terrain_path_of(keys[-1])).read_bytes())
    assert sorted(ext) == [1, 2]
    # Levels 0-5 are exported as the live server serves them: meshed to CesiumJS's error.
    exported, stored = 0, 0
    for k in keys:
        n, _ = read_quantized_mesh((tmp_path / "out" / "terrain" / E.terrain_path_of(k)).read_bytes())
        wire = E.frame_tile(store.get(k))
        assert n == len(E.cesium_tile(wire).grid_rc) <= len(wire.grid_rc), k
        exported, stored = exported + n, stored + len(wire.grid_rc)
    assert exported < 0.9 * stored
