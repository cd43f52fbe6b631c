"""runtime.formats.export: GLB via trimesh; quantized-mesh-1.0 checked with an independent decoder
(the PyPI ``quantized-mesh-tile`` package) and layer.json."""

import gzip
import io
import json

import numpy as np
import pytest
from mesh_fixtures import real_crop

from runtime.formats import export

from runtime.tin import mesh
from runtime.geometry import geometry_for
from runtime.tiles import WGS84_A_M, WGS84_B_M, WGS84_E2, T, TileKey, skirt_depth_for, spacing_deg

KEY = TileKey(9, 300, 140)  # about 6 km wide at 9.5 N


def lonlat(key, r, c):
    d = spacing_deg(key.level)
    return -180.0 + (key.x * T + c) * d, 90.0 - (key.y * T + r) * d


def earth_to_world(key):
    return geometry_for("earth").tile_to_world(key)


def earth_tile(key=KEY, max_error_m=10.0):
    tw = earth_to_world(key)
    centre = tw(np.array([T / 2]), np.array([T / 2]), np.array([0.0]))[0]
    return mesh.build_tile_mesh(real_crop(), max_error_m, skirt_depth_for(max_error_m), tw, centre)


@pytest.fixture(scope="module")
def tile():
    return earth_tile()


def test_glb_loads_back_with_same_geometry(tile):
    import trimesh

    data = export.tile_glb(tile, y_up=False)
    assert data[:4] == b"glTF"
    scene = trimesh.load(io.BytesIO(data), file_type="glb")
    (name,) = scene.geometry
    geom = scene.geometry[name]
    assert len(geom.faces) == len(tile.faces) + len(tile.skirt_faces)
    world = scene.to_geometry()
    # Node transform restores the float64 centre: vertices come back in ECEF within float32 precision.
    ours = np.sort(np.round(tile.vertices_m.astype(np.float64) + tile.center_m, 0), axis=0)
    theirs = np.sort(np.round(np.asarray(world.vertices), 0), axis=0)
    assert np.abs(ours - theirs).max() <= 1.0


def test_glb_y_up_rotation(tile):
    import trimesh

    scene = trimesh.load(io.BytesIO(export.tile_glb(tile)), file_type="glb")
    v = np.asarray(scene.to_geometry().vertices)
    c = tile.center_m
    # (x, y, z) -> (x, z, -y)
    assert np.abs(v.mean(0) - np.array([c[0], c[2], -c[1]])).max() < 5e3


def test_oct_encoding_matches_cesium_reference_values():
    # Cesium: octEncode((0,0,1)) -> (128,128); (1,0,0) -> (255,128); (0,0,-1) -> (255,255)
    v = np.array([[0, 0, 1], [1, 0, 0], [0, 0, -1], [0, -1, 0]], np.float64)
    np.testing.assert_array_equal(export.oct_encode(v), [[128, 128], [255, 128], [255, 255], [128, 0]])
    rng = np.random.default_rng(0)
    u = rng.normal(size=(1000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    back = export.oct_decode(export.oct_encode(u))
    assert np.degrees(np.arccos(np.clip((back * u).sum(1), -1, 1))).max() < 1.0


def test_quantized_mesh_decodes_with_independent_reader(tile, tmp_path):
    qmt = pytest.importorskip("quantized_mesh_tile")
    data = export.quantized_mesh(tile, KEY)
    path = tmp_path / "t.terrain"
    path.write_bytes(gzip.compress(data))
    lon0, lat1 = lonlat(KEY, 0, 0)
    lon1, lat0 = lonlat(KEY, T, T)
    dec = qmt.decode(str(path), (lon0, lat0, lon1, lat1), hasLighting=True, gzipped=True)
    n = len(tile.grid_rc)
    assert len(dec.u) == len(dec.v) == len(dec.h) == n
    # Header
    assert dec.header["centerX"] == tile.center_m[0] and dec.header["centerZ"] == tile.center_m[2]
    assert dec.header["minimumHeight"] == pytest.approx(tile.height_m.min())
    assert dec.header["maximumHeight"] == pytest.approx(tile.height_m.max())
    # Vertices: u, v on the grid (32767 / 256 steps), heights within half a quantum.
    u, v = np.array(dec.u), np.array(dec.v)
    col = np.round(u * T / 32767).astype(np.int64)
    row = T - np.round(v * T / 32767).astype(np.int64)
    np.testing.assert_array_equal(u, np.round(col * 32767 / T))
    lut = np.full((T + 1) ** 2, -1)
    lut[tile.grid_rc[:, 0] * (T + 1) + tile.grid_rc[:, 1]] = np.arange(n)
    perm = lut[row * (T + 1) + col]  # exporter vertex i is our vertex perm[i]
    assert sorted(perm.tolist()) == list(range(n))
    coords = np.array(dec.getVerticesCoordinates())
    span = tile.height_m.max() - tile.height_m.min()
    assert np.abs(coords[:, 2] - tile.height_m[perm]).max() <= span / 32767 / 2 + 1e-3
    lon, lat = lonlat(KEY, tile.grid_rc[perm, 0], tile.grid_rc[perm, 1])
    quantum_deg = (lon1 - lon0) / 32767  # 32767 is odd: grid columns land within half a step
    assert np.abs(coords[:, 0] - lon).max() <= quantum_deg / 2 + 1e-12
    assert np.abs(coords[:, 1] - lat).max() <= quantum_deg / 2 + 1e-12
    # Topology: the same triangles with the same winding, counter-clockwise in (u, v).
    faces = perm[np.array(dec.indices).reshape(-1, 3)]

    def canon(f):
        rot = np.argmin(f, axis=1)
        return {tuple(row) for row in np.take_along_axis(f, (np.arange(3) + rot[:, None]) % 3, 1).tolist()}

    assert len(faces) == len(tile.faces) and canon(faces) == canon(tile.faces)
    p = np.stack([u, v], 1)[np.array(dec.indices).reshape(-1, 3)].astype(np.float64)
    cross = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (
        p[:, 1, 1] - p[:, 0, 1]
    )
    assert (cross > 0).all()
    # Edges: west/east south->north, south/north west->east.
    np.testing.assert_array_equal(perm[dec.westI], tile.west[::-1])
    np.testing.assert_array_equal(perm[dec.eastI], tile.east[::-1])
    np.testing.assert_array_equal(perm[dec.southI], tile.south)
    np.testing.assert_array_equal(perm[dec.northI], tile.north)
    assert (u[dec.westI] == 0).all() and (np.diff(v[dec.westI]) > 0).all()
    # Oct-encoded normals: within the 8-bit encoding error of ours.
    normals = np.array(dec.vLight)
    assert normals.shape == (n, 3)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip((normals * tile.normals[perm]).sum(1), -1, 1)))
    assert ang.max() < 1.0
    assert dec.getContentType() == "application/vnd.quantized-mesh;extensions=octvertexnormals"


def test_quantized_mesh_layout_by_hand(tile):
    """Byte layout per the spec, independent of any reader."""
    data = export.quantized_mesh(tile, KEY)
    n, m = len(tile.grid_rc), len(tile.faces)
    size = 88 + 4 + 6 * n + 4 + 6 * m + 4 * 4 + 2 * 4 * (T + 1) + 5 + 2 * n
    assert len(data) == size
    assert int.from_bytes(data[88:92], "little") == n
    ext = data[-(5 + 2 * n) :]
    assert ext[0] == 1 and int.from_bytes(ext[1:5], "little") == 2 * n


def test_horizon_occlusion_point_hides_only_when_all_vertices_hidden(tile):
    """Cesium's occlusion test with random cameras: whenever the point is occluded by
    the ellipsoid, every vertex must be too (otherwise Cesium would cull a visible tile)."""
    radii = np.array([WGS84_A_M, WGS84_A_M, WGS84_B_M])
    n = len(tile.grid_rc)
    pos = (tile.vertices_m[:n].astype(np.float64) + tile.center_m) / radii
    hop = export.horizon_occlusion_point(pos * radii, tile.center_m)
    assert np.isfinite(hop).all() and np.linalg.norm(hop) > 1.0

    def occluded(points, cam):
        vh2 = cam @ cam - 1.0
        vt = points - cam
        vt_dot_vc = -(vt @ cam)
        return (vt_dot_vc > vh2) & (vt_dot_vc**2 / (vt * vt).sum(-1) > vh2)

    rng = np.random.default_rng(3)
    up = tile.center_m / radii / np.linalg.norm(tile.center_m / radii)
    hidden_cases = 0
    for _ in range(400):
        d = up + rng.normal(scale=0.6, size=3)
        cam = d / np.linalg.norm(d) * rng.uniform(1.0005, 1.2)
        if occluded(hop[None], cam)[0]:
            hidden_cases += 1
            assert occluded(
                np.maximum(np.linalg.norm(pos, axis=1, keepdims=True), 1.0)
                * pos
                / np.linalg.norm(pos, axis=1, keepdims=True),
                cam,
            ).all()
    assert hidden_cases > 20


def test_layer_json_and_tileset_files(tmp_path):
    keys = [TileKey(0, 0, 0), TileKey(0, 1, 0), TileKey(1, 2, 0), TileKey(1, 3, 0), TileKey(1, 3, 1)]
    lj = export.layer_json(keys, name="worldstream")
    assert lj["format"] == "quantized-mesh-1.0" and lj["scheme"] == "tms"
    assert lj["extensions"] == ["octvertexnormals"] and lj["projection"] == "EPSG:4326"
    assert lj["available"][0] == [{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]
    # Level 1: y = 0 (north) is TMS row 1.
    assert lj["available"][1] == [
        {"startX": 3, "startY": 0, "endX": 3, "endY": 0},
        {"startX": 2, "startY": 1, "endX": 3, "endY": 1},
    ]
    assert export.terrain_path(TileKey(1, 3, 0)) == "1/3/1.terrain"
    written = export.write_quantized_mesh_tileset(tmp_path, {KEY: earth_tile()}, name="t")
    assert written == [export.terrain_path(KEY), "layer.json"]
    assert (tmp_path / export.terrain_path(KEY)).stat().st_size > 1000
    assert json.loads((tmp_path / "layer.json").read_text())["maxzoom"] == KEY.level


def test_quantized_mesh_rejects_plane_keys(tile):
    with pytest.raises(ValueError):
        export.quantized_mesh(tile, TileKey(2, -1, 0))


def test_3d_tiles_tileset_with_parent_and_children(tmp_path):
    import trimesh

    parent = KEY
    keys = [parent, *parent.children()]
    tiles = {
        k: (earth_tile(k, max_error_m=10.0 / 2 ** (k.level - parent.level)), 10.0 / 2 ** (k.level - 9))
        for k in keys
    }
    written = export.write_3d_tiles(tmp_path, tiles)
    assert sorted(written) == sorted([f"{k.level}/{k.x}/{k.y}.glb" for k in keys] + ["tileset.json"])
    ts = json.loads((tmp_path / "tileset.json").read_text())
    assert ts["asset"]["version"] == "1.1"
    (top,) = ts["root"]["children"]
    assert top["content"]["uri"] == f"{parent.level}/{parent.x}/{parent.y}.glb"
    assert [c["content"]["uri"] for c in top["children"]] == [
        f"{k.level}/{k.x}/{k.y}.glb" for k in parent.children()
    ]
    assert top["geometricError"] == 10.0 and all(c["geometricError"] == 5.0 for c in top["children"])
    assert ts["root"]["geometricError"] > top["geometricError"]
    w, s, e, n, lo, hi = top["boundingVolume"]["region"]
    for child in top["children"]:
        cw, cs, ce, cn, clo, chi = child["boundingVolume"]["region"]
        assert w <= cw < ce <= e and s <= cs < cn <= n and lo <= clo and chi <= hi
    # Every vertex of a tile's GLB (Y-up undone) lies inside its region.
    for k in keys:
        scene = trimesh.load(tmp_path / f"{k.level}/{k.x}/{k.y}.glb")
        v = np.asarray(scene.to_geometry().vertices)
        ecef = np.stack([v[:, 0], -v[:, 2], v[:, 1]], 1)  # glTF Y-up -> Z-up
        lon = np.arctan2(ecef[:, 1], ecef[:, 0])
        p = np.hypot(ecef[:, 0], ecef[:, 1])
        lat = np.arctan2(ecef[:, 2], p * (1 - WGS84_E2))  # geodetic latitude to ~1e-6 rad at these heights
        rw, rs, re_, rn, rlo, rhi = export.tile_region(k, 0, 0)
        eps = 1e-5
        assert (lon >= rw - eps).all() and (lon <= re_ + eps).all()
        assert (lat >= rs - eps).all() and (lat <= rn + eps).all()
