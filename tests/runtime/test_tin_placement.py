"""runtime.tin.placement: the one placement path (positions, skirts, normals, UVs) and
shared-edge normals that neighbours agree on in every export (quantized-mesh, GLB)."""

import json
import struct

import numpy as np
import pytest
from mesh_fixtures import fractal, real_crop

from runtime import wire
from runtime.formats import export
from runtime.geometry import geometry_for
from runtime.tiles import WGS84_A_M, WGS84_B_M, WGS84_E2, T, TileKey, spacing_m
from runtime.tin import build_tile_mesh, stitch_tiles, tile_mesh, tin_surface
from runtime.tin.simplify import face_residuals

EARTH_KEYS = [TileKey(9, 300, 140), TileKey(9, 301, 140), TileKey(9, 300, 141), TileKey(9, 301, 141)]
"""A 2 x 2 block of earth tiles (about 6 km each at 9.5 N): NW, NE, SW, SE."""


def test_plane_tile_mesh_skirts_normals_uvs():
    h = real_crop()
    key = TileKey(11, 0, 0)
    s = spacing_m(key.level)
    tm = build_tile_mesh("plane", key, h, 5.0, 25.0)
    n = len(tm.grid_rc)
    assert tm.vertices_m.dtype == np.float32 and tm.vertices_m.shape == (n + 4 * T, 3)
    np.testing.assert_allclose(tm.center_m, [T / 2 * s, -T / 2 * s, 0.0])
    world = tm.vertices_m.astype(np.float64) + tm.center_m
    np.testing.assert_allclose(world[:n, 0], tm.grid_rc[:, 1] * s, atol=1e-3)
    np.testing.assert_allclose(world[:n, 1], -tm.grid_rc[:, 0] * s, atol=1e-3)
    np.testing.assert_allclose(world[:n, 2], h[tm.grid_rc[:, 0], tm.grid_rc[:, 1]], atol=1e-4)
    # Skirt vertices hang exactly skirt_depth_m below their edge vertex.
    np.testing.assert_allclose(world[n:, 2], world[tm.skirt_src, 2] - 25.0, atol=1e-4)
    np.testing.assert_allclose(world[n:, :2], world[tm.skirt_src, :2], atol=1e-3)
    # Edge lists: full border, sorted along the edge.
    assert (tm.grid_rc[tm.west, 1] == 0).all() and (np.diff(tm.grid_rc[tm.west, 0]) == 1).all()
    assert (tm.grid_rc[tm.north, 0] == 0).all() and (np.diff(tm.grid_rc[tm.north, 1]) == 1).all()
    assert (tm.grid_rc[tm.east, 1] == T).all() and (tm.grid_rc[tm.south, 0] == T).all()
    # Normals: unit, pointing up; a corner's is the local up; skirts copy their edge vertex.
    np.testing.assert_allclose(np.linalg.norm(tm.normals, axis=1), 1.0, atol=1e-5)
    assert (tm.normals[:n, 2] > 0.2).all()
    np.testing.assert_array_equal(tm.normals[n:], tm.normals[tm.skirt_src])
    np.testing.assert_array_equal(tm.normals[tm.west[0]], [0, 0, 1])
    # UVs: u east, v south (image rows top-down), one convention everywhere.
    assert tm.uv.min() == 0.0 and tm.uv.max() == 1.0
    np.testing.assert_allclose(tm.uv[:n, 0], tm.grid_rc[:, 1] / T)
    np.testing.assert_allclose(tm.uv[:n, 1], tm.grid_rc[:, 0] / T)
    tri = tm.to_trimesh()
    assert tri.is_winding_consistent
    assert len(tri.faces) == len(tm.faces) + 2 * 4 * T
    np.testing.assert_allclose(tri.visual.uv[:n, 1], 1.0 - tm.grid_rc[:, 0] / T)  # trimesh's OpenGL UVs
    # Skirt faces face outwards: the west skirt's normals point west (-x).
    skirt_normals = tri.face_normals[len(tm.faces):]
    west_ids = np.concatenate([tm.west, tm.n + np.searchsorted(tm.skirt_src, tm.west)])
    west = np.isin(tm.skirt_faces, west_ids).all(1)
    assert west.sum() == 2 * T and (skirt_normals[west, 0] < -0.99).all()


def test_earth_tile_on_ellipsoid_relative_to_float64_centre():
    h = fractal(T + 1, seed=7, relief_m=3000.0)
    key = TileKey(9, 300, 100)
    tm = build_tile_mesh("earth", key, h, 10.0, 50.0)
    world = tm.vertices_m.astype(np.float64) + tm.center_m
    n = len(tm.grid_rc)
    # Back to geodetic height with Bowring's method: matches the samples to float32 precision.
    px, py, pz = world[:n].T
    p = np.hypot(px, py)
    theta = np.arctan2(pz * WGS84_A_M, p * WGS84_B_M)
    ep2 = (WGS84_A_M**2 - WGS84_B_M**2) / WGS84_B_M**2
    lat = np.arctan2(pz + ep2 * WGS84_B_M * np.sin(theta) ** 3, p - WGS84_E2 * WGS84_A_M * np.cos(theta) ** 3)
    nrad = WGS84_A_M / np.sqrt(1 - WGS84_E2 * np.sin(lat) ** 2)
    height = p / np.cos(lat) - nrad
    np.testing.assert_allclose(height, h[tm.grid_rc[:, 0], tm.grid_rc[:, 1]], atol=0.05)
    # float32 offsets from the centre keep ~mm precision on a ~40 km tile.
    assert np.abs(tm.vertices_m).max() < 1e5
    # Normals point away from the Earth's centre (outwards, CCW from above).
    up = world[:n] / np.linalg.norm(world[:n], axis=1, keepdims=True)
    assert ((tm.normals[:n] * up).sum(1) > 0.3).all()


def test_decoded_payload_places_like_the_heights_and_like_the_viewer():
    h = real_crop()
    key = TileKey(11, 3, 4)
    server = build_tile_mesh("plane", key, h, 4.0, 20.0)
    payload, _, _ = wire.encode_heights(h, 4.0, key=key, model="m")
    d = wire.decode_tile(payload)
    client = tile_mesh("plane", d.key, d.grid_rc, d.height_m, d.faces, 20.0)
    np.testing.assert_array_equal(client.faces, server.faces)
    np.testing.assert_array_equal(client.skirt_faces, server.skirt_faces)
    # heights of this DEM are whole metres, so 0.125 m quantisation is lossless here
    np.testing.assert_array_equal(client.vertices_m, server.vertices_m)
    np.testing.assert_array_equal(client.normals, server.normals)
    # the viewer's Surface is the same placement
    s = tin_surface("plane", key, d.grid_rc, d.height_m, d.faces, (d.west, d.south, d.east, d.north), 20.0)
    np.testing.assert_array_equal(s.vertices, client.vertices_m)
    np.testing.assert_array_equal(s.normals, client.normals)
    np.testing.assert_array_equal(s.uv, client.uv)
    np.testing.assert_array_equal(s.faces, client.all_faces)
    with pytest.raises(ValueError, match="edges"):
        tin_surface("plane", key, d.grid_rc, d.height_m, d.faces, (d.west, d.south), 20.0)


# ---------------------------------------------------------------- shared-edge normals


@pytest.fixture(scope="module")
def block():
    """The 2 x 2 earth tiles of one fBm field (shared edges exact), through the server
    codec and back: {key: placed TileMesh}, and the field (2T+1, 2T+1)."""
    field = fractal(2 * T + 1, seed=11, relief_m=2500.0)
    meshes = {}
    for i, key in enumerate(EARTH_KEYS):
        r, c = (i // 2) * T, (i % 2) * T
        payload, _, _ = wire.encode_heights(field[r:r + T + 1, c:c + T + 1], 8.0, key=key, model="m")
        d = wire.decode_tile(payload)
        meshes[key] = tile_mesh("earth", key, d.grid_rc, d.height_m, d.faces, 40.0)
    return meshes, field


PAIRS = [(0, 1, "east"), (2, 3, "east"), (0, 2, "south"), (1, 3, "south")]
"""(tile a, tile b, side of a) of the block's shared edges."""


def _unzig(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.int64)
    return (x >> 1) ^ -(x & 1)


def qm_grid_normals(data: bytes) -> dict[tuple[int, int], np.ndarray]:
    """{(row, col): oct-decoded normal} of a quantized-mesh tile, parsed from the bytes."""
    n = struct.unpack_from("<I", data, 88)[0]
    u = np.cumsum(_unzig(np.frombuffer(data, "<u2", n, 92)))
    v = np.cumsum(_unzig(np.frombuffer(data, "<u2", n, 92 + 2 * n)))
    xy = np.frombuffer(data, np.uint8, 2 * n, len(data) - 2 * n).reshape(n, 2)
    normals = export.oct_decode(xy)
    cols, rows = np.round(u * T / 32767).astype(int), T - np.round(v * T / 32767).astype(int)
    return {(int(r), int(c)): normals[i] for i, (r, c) in enumerate(zip(rows, cols, strict=True))}


def glb_grid_normals(data: bytes) -> dict[tuple[int, int], np.ndarray]:
    """{(row, col): NORMAL} of a GLB written by ``export.tile_glb``, parsed from the bytes
    (TEXCOORD_0 is (col / T, row / T) in glTF's convention: the UVs say where a vertex is)."""
    jlen = struct.unpack_from("<I", data, 12)[0]
    js = json.loads(data[20:20 + jlen])
    binary = 20 + jlen + 8

    def accessor(i):
        a = js["accessors"][i]
        bv = js["bufferViews"][a["bufferView"]]
        width = {"VEC3": 3, "VEC2": 2}[a["type"]]
        off = binary + bv.get("byteOffset", 0) + a.get("byteOffset", 0)
        return np.frombuffer(data, "<f4", a["count"] * width, off).reshape(-1, width)

    attrs = js["meshes"][0]["primitives"][0]["attributes"]
    normals, uv = accessor(attrs["NORMAL"]), accessor(attrs["TEXCOORD_0"])
    rc = np.round(uv[:, ::-1] * T).astype(int)
    return {(int(r), int(c)): normals[i].astype(np.float64) for i, (r, c) in enumerate(rc)}


def edge_angles_deg(na: dict, nb: dict, side: str) -> np.ndarray:
    """Angles between the two tiles' normals at each sample of a's ``side`` (b's facing one)."""
    out = []
    for j in range(T + 1):
        (ra, ca), (rb, cb) = ((j, T), (j, 0)) if side == "east" else ((T, j), (0, j))
        a, b = na[(ra, ca)], nb[(rb, cb)]
        out.append(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))
    return np.array(out)


def test_one_sided_normals_disagree_across_edges(block):
    """Why the rule exists: each tile's own faces see one side of the edge."""
    meshes, _ = block
    worst = 0.0
    for i, j, side in PAIRS:
        a, b = meshes[EARTH_KEYS[i]], meshes[EARTH_KEYS[j]]
        own = lambda m, e: {tuple(m.grid_rc[v]): m.own_normals[v].astype(np.float64) for v in e}  # noqa: E731
        other = "west" if side == "east" else "north"
        worst = max(worst, edge_angles_deg(own(a, a.edge(side)), own(b, b.edge(other)), side).max())
    assert worst > 10.0


@pytest.mark.parametrize("stitched", [True, False])
def test_quantized_mesh_neighbours_agree_on_shared_edge_normals(block, tmp_path, stitched):
    meshes, _ = block
    if stitched:  # a tileset: all tiles at once, joined normals
        export.write_quantized_mesh_tileset(tmp_path, meshes, name="t")
        data = {k: (tmp_path / export.terrain_path(k)).read_bytes() for k in EARTH_KEYS}
    else:  # each tile alone (a live server): the shared-edge rule
        data = {k: export.quantized_mesh(m, k) for k, m in meshes.items()}
    normals = {k: qm_grid_normals(b) for k, b in data.items()}
    for i, j, side in PAIRS:
        ang = edge_angles_deg(normals[EARTH_KEYS[i]], normals[EARTH_KEYS[j]], side)
        assert ang.max() < 1.0, (i, j, ang.max())


def test_glb_tileset_neighbours_agree_on_shared_edge_normals(block, tmp_path):
    meshes, _ = block
    export.write_3d_tiles(tmp_path, {k: (m, 8.0) for k, m in meshes.items()})
    normals = {k: glb_grid_normals((tmp_path / f"{k.level}/{k.x}/{k.y}.glb").read_bytes()) for k in EARTH_KEYS}
    for i, j, side in PAIRS:
        ang = edge_angles_deg(normals[EARTH_KEYS[i]], normals[EARTH_KEYS[j]], side)
        assert ang.max() < 1e-3, (i, j, ang.max())
    alone = {k: glb_grid_normals(export.tile_glb(m)) for k, m in meshes.items()}
    for i, j, side in PAIRS:
        assert edge_angles_deg(alone[EARTH_KEYS[i]], alone[EARTH_KEYS[j]], side).max() < 1e-3


def _gouraud(mesh) -> np.ndarray:
    """(T+1, T+1, 3) unit normals as Gouraud shading draws them at every grid sample."""
    nf = np.zeros((3, T + 1, T + 1))
    nf[:, mesh.grid_rc[:, 0], mesh.grid_rc[:, 1]] = mesh.normals[: mesh.n].T
    res, r, c = face_residuals(nf, mesh.grid_rc, mesh.faces)
    out = np.zeros_like(nf)
    out[:, r, c] = nf[:, r, c] - res
    out = out.transpose(1, 2, 0)
    return out / np.linalg.norm(out, axis=2, keepdims=True)


def test_joined_normals_continue_the_shading_across_the_edge(block):
    """Stitched edge normals (``inward_normals``): the shading has no kink across a shared
    edge (each edge normal lies halfway between the Gouraud normals one sample inward on
    both sides, where a border line used to show), and they are about as close to the
    field's own normal (central differences on the full field) as the shading inside the
    tile, closer than the tile-alone rule, which drops the cross-edge slope."""
    meshes, field = block
    geo = geometry_for("earth")
    stitched = stitch_tiles("earth", meshes)
    a, a2, b2 = meshes[EARTH_KEYS[0]], stitched[EARTH_KEYS[0]], stitched[EARTH_KEYS[1]]
    e = a.east[1:-1]
    rows = a.grid_rc[e, 0].astype(np.int64)
    ga, gb = _gouraud(a2), _gouraud(b2)
    mid = ga[rows, T - 1] + gb[rows, 1]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    kink = np.degrees(np.arccos(np.clip((mid * a2.normals[e]).sum(1), -1, 1)))
    # measured: median 0.01 deg, mean 0.27 (up to 2.5 where a fan's apex changes); the
    # face-sum rule before: median 1.6, mean 1.9, max 8.2
    assert np.median(kink) < 0.1 and kink.mean() < 0.5, (np.median(kink), kink.mean())

    r0, c0 = EARTH_KEYS[0].sample_origin()

    def true_normals(r, c):
        def at(dr, dc):
            return geo.sample_to_world(9, (r + dr + r0).astype(np.float64), (c + dc + c0).astype(np.float64),
                                       field[r + dr, c + dc].astype(np.float64))

        n = np.cross(at(1, 0) - at(-1, 0), at(0, 1) - at(0, -1))  # south x east = up
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    def err(n, true):
        return np.degrees(np.arccos(np.clip((n.astype(np.float64) * true).sum(1), -1, 1))).mean()

    edge_true = true_normals(rows, np.full_like(rows, T))
    rr, cc = (x.ravel() for x in np.meshgrid(np.arange(2, T - 1), np.arange(2, T - 1), indexing="ij"))
    inside = err(ga[rr, cc], true_normals(rr, cc))
    stitched_err, alone_err = err(a2.normals[e], edge_true), err(a.normals[e], edge_true)
    # measured: edge 2.96 deg, inside 2.11, alone 3.91 (the face-sum rule before: 1.1)
    assert stitched_err < 1.5 * inside and stitched_err < alone_err, (stitched_err, inside, alone_err)


@pytest.mark.parametrize("world,key", [("earth", TileKey(9, 300, 140)), ("earth", TileKey(3, 0, 0)),
                                       ("plane", TileKey(11, -3, 2))])
def test_tile_mesh_centre_and_corners_are_the_geometry_s_bits(world, key):
    """tile_mesh takes the centre from its lattice tables and the centre's and corners' up
    in one call: the same bits as ``tile_center`` and ``up`` of the corners, and the edge
    normals the same with the edges passed or made (edge_indices)."""
    geo = geometry_for(world)
    tm = build_tile_mesh(world, key, real_crop(), 5.0, 25.0)
    assert np.array_equal(tm.center_m, geo.tile_center(key))
    corners = np.flatnonzero(np.isin(tm.grid_rc[:, 0], (0, T)) & np.isin(tm.grid_rc[:, 1], (0, T)))
    assert len(corners) == 4
    n = len(tm.grid_rc)
    exact = geo.tile_to_world(key)(tm.grid_rc[corners, 0], tm.grid_rc[corners, 1], tm.height_m[corners])
    assert np.array_equal(tm.normals[:n][corners], geo.up(exact).astype(np.float32))
    again = tile_mesh(world, key, tm.grid_rc.astype(np.float64), tm.height_m, tm.faces, 25.0,
                      (tm.west, tm.south, tm.east, tm.north))
    assert np.array_equal(again.normals, tm.normals) and np.array_equal(again.vertices_m, tm.vertices_m)
