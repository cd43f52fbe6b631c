"""Buildings and trees in the 3D Tiles content: a Paris tile's GLB read back from its bytes
(glTF 2.0 chunks, accessors against their buffer views, EXT_mesh_gpu_instancing), placed on
the terrain inside the tile's bounding volume, and the same through ``export`` and the live
``serve --http`` route."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from eco_fixtures import gltf_validate, node_available

from runtime.footprints import building_at, roof_levels, to_samples
from runtime.formats.export import tile_region
from runtime.formats.features_glb import INSTANCING, QUANTIZATION, ground_grid
from runtime.geometry import ecef_to_geodetic
from runtime.tiles import T, TileKey, World, spacing_deg
from streaming import ecosystem as E

PARIS_15 = TileKey(15, 33196, 7489)  # 48.857 N, 2.352 E: the centre of Paris
Y_UP_INV = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)  # glTF Y-up -> our Z-up


@pytest.fixture(scope="module")
def paris():
    from generator.pyramid import open_world
    from streaming.cli.compose import feature_source
    from streaming.tileservice import mesh_encoder

    pyr = open_world("earth", 0, refiner="fractal")
    (f,) = pyr.tiles([PARIS_15])
    frame = mesh_encoder()(World.EARTH, PARIS_15, f)
    return frame, feature_source(pyr)(PARIS_15)


def parse_glb(glb: bytes) -> tuple[dict, bytes]:
    """(JSON, BIN) of a GLB, checking the container as glTF 2.0 defines it."""
    magic, version, length = struct.unpack_from("<4sII", glb)
    assert (magic, version, length) == (b"glTF", 2, len(glb))
    jlen, jtype = struct.unpack_from("<I4s", glb, 12)
    assert jtype == b"JSON" and jlen % 4 == 0
    js = json.loads(glb[20:20 + jlen])
    blen, btype = struct.unpack_from("<I4s", glb, 20 + jlen)
    assert btype == b"BIN\0" and blen % 4 == 0 and 28 + jlen + blen == len(glb)
    body = glb[28 + jlen:]
    assert js["buffers"] == [{"byteLength": blen}]
    return js, body


DTYPES = {5126: "<f4", 5125: "<u4", 5123: "<u2", 5122: "<i2", 5120: "i1"}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def accessor(js: dict, body: bytes, i: int) -> np.ndarray:
    a = js["accessors"][i]
    v = js["bufferViews"][a["bufferView"]]
    dt = np.dtype(DTYPES[a["componentType"]])
    k = WIDTH[a["type"]]
    stride = v.get("byteStride", k * dt.itemsize)
    off = v["byteOffset"] + a.get("byteOffset", 0)
    assert off % 4 == 0 and stride % 4 == 0 or (k == 1 and "byteStride" not in v)  # glTF 2.0 alignment
    assert a.get("byteOffset", 0) + (a["count"] - 1) * stride + k * dt.itemsize <= v["byteLength"]
    assert v["byteOffset"] + v["byteLength"] <= len(body)
    rows = np.frombuffer(body, np.uint8, a["count"] * stride, off).reshape(a["count"], stride)
    data = rows[:, :k * dt.itemsize].copy().view(dt).reshape(a["count"], k)
    if "min" in a:
        assert np.allclose(data.min(axis=0), a["min"]) and np.allclose(data.max(axis=0), a["max"])
    if a.get("normalized"):
        data = np.maximum(data / float(np.iinfo(dt).max), -1.0)
    return data


def node_positions(js: dict, body: bytes, name: str, faces: bool = False) -> list:
    """Every primitive's POSITION of node ``name`` in ECEF metres (the node matrix undone);
    with ``faces``, (positions, (f, 3) indices) pairs."""
    node = next(n for n in js["nodes"] if n["name"] == name)
    m = np.array(node["matrix"], np.float64).reshape(4, 4).T  # glTF matrices are column-major
    out = []
    for p in js["meshes"][node["mesh"]]["primitives"]:
        pos = accessor(js, body, p["attributes"]["POSITION"]).astype(np.float64)
        idx = accessor(js, body, p["indices"]).reshape(-1)
        assert p["mode"] == 4 and len(idx) % 3 == 0 and idx.max() < len(pos)
        assert len(accessor(js, body, p["attributes"]["NORMAL"])) == len(pos)
        world = (pos @ m[:3, :3].T + m[:3, 3]) @ Y_UP_INV.T
        out.append((world, idx.reshape(-1, 3).astype(np.int64)) if faces else world)
    return out


def test_paris_glb_carries_buildings_and_instanced_trees(paris):
    frame, feats = paris
    b, t = feats["buildings"], feats["trees"]
    assert len(b) > 100 and len(t) > 10  # central Paris at level 15: a city block pattern
    plain = E.glb_bytes(frame)
    glb = E.glb_bytes(frame, features=feats)
    js0, body0 = parse_glb(plain)
    js, body = parse_glb(glb)
    # The terrain's JSON entries and bytes are kept as they were; features are appended.
    for key in ("accessors", "bufferViews", "meshes", "nodes", "materials"):
        assert js[key][:len(js0[key])] == js0[key]
    assert body[:len(body0)] == body0
    assert js["scenes"][0]["nodes"] == [0, 1, 2]
    assert js["extensionsUsed"] == [QUANTIZATION, INSTANCING] and js["extensionsRequired"] == [QUANTIZATION]
    # Trees: one mesh, one instance per generated tree.
    trees = next(n for n in js["nodes"] if n["name"] == "trees")
    attrs = trees["extensions"][INSTANCING]["attributes"]
    tr, rot, sc = (accessor(js, body, attrs[k]) for k in ("TRANSLATION", "ROTATION", "SCALE"))
    assert len(tr) == len(rot) == len(sc) == len(t)
    assert [js["accessors"][attrs[k]]["type"] for k in ("TRANSLATION", "ROTATION", "SCALE")] == ["VEC3", "VEC4", "VEC3"]
    assert np.allclose(np.linalg.norm(rot, axis=1), 1.0, atol=1e-6)
    assert np.allclose(sc, t[:, 2:3].repeat(3, 1))
    # A rotated instance's +Z is the local up at its foot (the trees stand upright on the globe).
    foot = tr.astype(np.float64) + E.tin_mesh(World.EARTH, E.frame_tile(frame)).center_m
    lon, lat, h = ecef_to_geodetic(foot)
    x, y, z, w = rot.astype(np.float64).T
    z_axis = np.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], 1)
    up = np.stack([np.cos(np.radians(lat)) * np.cos(np.radians(lon)),
                   np.cos(np.radians(lat)) * np.sin(np.radians(lon)), np.sin(np.radians(lat))], 1)
    assert np.allclose(z_axis, up, atol=1e-5)
    # Feet on the drawn ground (the TIN), 0.2 m sunk.
    tile = E.frame_tile(frame)
    ground = ground_grid(tile.grid_rc, tile.height_m, tile.faces)
    r, c = to_samples(World.EARTH, PARIS_15, t[:, 0], t[:, 1])
    from runtime.grids import bilinear

    assert np.allclose(h, bilinear(ground, r, c) - 0.2, atol=0.01)
    # Buildings: walls and roofs, every roof top at ground(centre) + height.
    walls, roofs = node_positions(js, body, "buildings")
    _, _, roof_h = ecef_to_geodetic(roofs)
    tops = roof_levels(World.EARTH, PARIS_15, b, ground)
    assert abs(roof_h.max() - tops.max()) < 0.03 and roof_h.min() > ground.min()  # int16 steps: ~1 cm
    assert len(walls) >= 16 * len(b) and len(roofs) >= 4 * len(b)
    assert_faces_outwards(walls_and_roofs=node_positions(js, body, "buildings", faces=True), buildings=b)


def assert_faces_outwards(walls_and_roofs, buildings):
    """Every triangle faces outwards (glTF culls back faces): roofs up, walls (and gables)
    with their building's footprint just behind them and none just in front."""
    (wv, wf), (rv, rf) = walls_and_roofs
    up = wv.mean(axis=0) / np.linalg.norm(wv.mean(axis=0))
    d = spacing_deg(PARIS_15.level)
    for v, f, kind in ((wv, wf, "walls"), (rv, rf, "roofs")):
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        if kind == "roofs":
            assert (n @ up > 0.3).all()
            continue
        cen = v[f].mean(axis=1)
        for step, inside in ((-0.05, True), (0.05, False)):
            lon, lat, _ = ecef_to_geodetic(cen + step * n)
            hit = building_at(World.EARTH, PARIS_15, buildings, (90.0 - lat) / d - PARIS_15.y * T,
                              (lon + 180.0) / d - PARIS_15.x * T)
            assert ((hit >= 0) == inside).all(), (kind, step)


def test_low_buildings_get_gabled_roofs_facing_outwards(paris):
    """Buildings up to PITCHED_MAX_M (villages, low city blocks) get two roof slopes and two
    gables; with the long side east-west or north-south, every face points outwards and the
    ridge is at ground(centre) + height."""
    from runtime.formats.features_glb import PITCHED_MAX_M, building_geometry

    frame, feats = paris
    b = feats["buildings"].astype(np.float64).copy()
    b[::2, 4] = PITCHED_MAX_M - 2.0  # every other building low
    b[::4, 3] = 0.5 * b[::4, 2]  # and some of those wider than deep (inside their own footprint)
    tile = E.frame_tile(frame)
    ground = ground_grid(tile.grid_rc, tile.height_m, tile.faces)
    geo = building_geometry(World.EARTH, PARIS_15, b, ground)
    flat, low = int((b[:, 4] > PITCHED_MAX_M).sum()), int((b[:, 4] <= PITCHED_MAX_M).sum())
    assert len(geo["walls"][1]) == 8 * flat + 10 * low and len(geo["roofs"][1]) == 2 * flat + 4 * low
    assert (b[::2, 2] > b[::2, 3]).any() and (b[::2, 2] < b[::2, 3]).any()  # both ridge directions
    assert_faces_outwards((geo["walls"], geo["roofs"]), b)
    _, _, h = ecef_to_geodetic(geo["roofs"][0])
    assert abs(h.max() - roof_levels(World.EARTH, PARIS_15, b, ground).max()) < 0.01


def test_features_lie_in_the_tiles_bounding_volume(paris):
    frame, feats = paris
    lo0, hi0 = E.tile_height_range(frame)
    lo, hi = E.tile_height_range(frame, World.EARTH, feats)
    assert lo <= lo0 and hi > hi0 + 10.0  # roofs rise far above central Paris's ground
    west, south, east, north, _, _ = tile_region(PARIS_15, lo, hi)
    js, body = parse_glb(E.glb_bytes(frame, features=feats))
    for pos in node_positions(js, body, "buildings"):
        lon, lat, h = ecef_to_geodetic(pos)
        assert (np.radians(lon) >= west).all() and (np.radians(lon) <= east).all()
        assert (np.radians(lat) >= south).all() and (np.radians(lat) <= north).all()
        assert (h >= lo).all() and (h <= hi).all()


@pytest.mark.skipif(not node_available(), reason="node + .ci/node/node_modules (bash .ci/setup --dev) needed")
def test_glb_with_features_passes_gltf_validator(paris, tmp_path):
    frame, feats = paris
    p = tmp_path / "paris.glb"
    p.write_bytes(E.glb_bytes(frame, features=feats))
    (rep,) = gltf_validate([p])
    assert rep["issues"]["numErrors"] == 0, rep["issues"]["messages"]
    assert rep["info"]["materialCount"] == 5  # terrain, walls, roofs, trunk, crown
    assert rep["info"]["extensionsUsed"] == [QUANTIZATION, INSTANCING]


def test_export_and_served_glb_carry_the_same_features(paris, tmp_path):
    """``export --format 3dtiles`` of a store holding Paris (and its ancestors) and the live
    server's GLB route both draw the generator's buildings and trees."""
    from eco_fixtures import ServerThread, get

    from generator.pyramid import open_world
    from streaming import implicit as I
    from streaming.bake import bake, export_store, open_store
    from streaming.cli import build_server
    from streaming.cli.compose import feature_source
    from streaming.http import HttpConfig

    frame, feats = paris
    keys = [PARIS_15]
    while keys[-1].level:
        keys.append(keys[-1].parent())
    keys += [TileKey(0, 0, 0), TileKey(0, 1, 0)]
    bake(World.EARTH, 0, sorted(set(keys)), tmp_path / "store", use_ray=False, progress_stream=io.StringIO(),
         open_pyramid=lambda w, s: open_world(w, s, refiner="fractal"))
    store = open_store(tmp_path / "store")
    export_store(store, tmp_path / "out", "3dtiles", progress_stream=io.StringIO(),
                 features=feature_source(open_world("earth", 0, refiner="fractal")))
    js, body = parse_glb((tmp_path / "out" / "3dtiles" / E.glb_path_of(PARIS_15)).read_bytes())
    trees = next(n for n in js["nodes"] if n["name"] == "trees")
    assert js["accessors"][trees["extensions"][INSTANCING]["attributes"]["SCALE"]]["count"] == len(feats["trees"])
    assert [n["name"] for n in js["nodes"]] == ["tile", "buildings", "trees"]
    server = build_server("earth", 0, "fractal", http=HttpConfig(max_level=16, stitch=False))
    web = ServerThread(server)
    try:
        status, headers, glb = get(f"{web.base}/3dtiles/{E.glb_path_of(PARIS_15)}")
        _, _, sub = get(f"{web.base}/3dtiles/{I.subtree_path_of(I.implicit_coord(PARIS_15))}")
    finally:
        web.close()
    assert status == 200 and headers["Content-Type"] == E.GLB_CONTENT_TYPE
    assert glb == E.glb_bytes(frame, features=feats)  # stitching off: the tile converted alone
    from eco_fixtures import read_subtree, tile_heights

    assert tile_heights(*read_subtree(sub)) == [E.tile_height_range(frame, World.EARTH, feats)]
