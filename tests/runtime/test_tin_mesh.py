"""runtime.tin.mesh: RTIN simplification, error bound, borders, skirts, normals, UVs."""


import numpy as np
import pytest
from mesh_fixtures import fractal, real_crop

from runtime.tin import mesh
from runtime.geometry import geometry_for
from runtime.tiles import WGS84_A_M, WGS84_B_M, WGS84_E2, T, TileKey, spacing_m


def plane_to_world(level: int):
    return geometry_for("plane").tile_to_world(TileKey(level, 0, 0))


def earth_to_world(level: int, x: int, y: int):
    return geometry_for("earth").tile_to_world(TileKey(level, x, y))


def signed_area2(grid_rc, faces):
    """2 x signed area in (east = col, north = -row): > 0 is counter-clockwise from above."""
    p = grid_rc[faces].astype(np.float64)
    x, y = p[..., 1], -p[..., 0]
    return (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])


@pytest.mark.parametrize("border", mesh.BORDERS)
@pytest.mark.parametrize("max_error_m", [0.5, 2.0, 10.0, 40.0, 150.0])
@pytest.mark.parametrize("source", ["real", "fractal"])
def test_measured_error_within_bound(source, max_error_m, border):
    h = real_crop() if source == "real" else fractal(T + 1, seed=3)
    grid_rc, faces = mesh.simplify_grid(h, max_error_m, border)
    err = mesh.max_vertical_error(h, grid_rc, faces)  # also fails on holes
    assert err <= max_error_m + 1e-3
    assert len(faces) < 2 * T * T  # it did simplify


def test_real_tile_is_simplified_and_tiles_the_square():
    h = real_crop()
    grid_rc, faces = mesh.simplify_grid(h, 5.0)
    assert grid_rc.dtype == np.int32 and faces.dtype == np.int32
    assert 5_000 < len(faces) < 60_000
    area2 = signed_area2(grid_rc, faces)
    assert (area2 > 0).all()  # CCW seen from above
    assert area2.sum() == 2 * T * T  # covers the tile exactly once
    assert len(np.unique(grid_rc, axis=0)) == len(grid_rc)
    assert faces.max() == len(grid_rc) - 1  # every vertex used


@pytest.mark.parametrize("border, max_error_m", [("fan", 20.0), ("fan", 300.0), ("graded", 20.0)])
def test_every_border_sample_kept_and_mesh_is_conforming(border, max_error_m):
    h = fractal(T + 1, seed=5)
    grid_rc, faces = mesh.simplify_grid(h, max_error_m, border)
    assert (signed_area2(grid_rc, faces) > 0).all()
    assert signed_area2(grid_rc, faces).sum() == 2 * T * T
    r, c = grid_rc[:, 0], grid_rc[:, 1]
    on_border = (r == 0) | (r == T) | (c == 0) | (c == T)
    assert on_border.sum() == 4 * T
    # Conforming (no T-junctions): each undirected edge is used by 2 faces inside, 1 on the border.
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    edges, count = np.unique(e, axis=0, return_counts=True)
    boundary = edges[count == 1]
    assert set(np.unique(count)) == {1, 2}
    assert len(boundary) == 4 * T
    br, bc = grid_rc[boundary, 0], grid_rc[boundary, 1]
    assert (((br == 0) | (br == T)) & (br[:, 0:1] == br)).all(1).sum() + (
        ((bc == 0) | (bc == T)) & (bc[:, 0:1] == bc)
    ).all(1).sum() == 4 * T


@pytest.mark.parametrize("border, interior_max", [("fan", 8), ("graded", 1.5 * 4 * T)])
def test_planar_field_needs_only_the_border(border, interior_max):
    r, c = np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij")
    h = (100.0 + 0.25 * r - 0.5 * c).astype(np.float32)
    grid_rc, faces = mesh.simplify_grid(h, 0.01, border)
    interior = (grid_rc > 0).all(1) & (grid_rc < T).all(1)
    # Fans reach the kept border samples from a handful of interior vertices; "graded"
    # makes the RTIN refine towards the border (about 1.4 interior vertices per sample).
    assert mesh.max_vertical_error(h, grid_rc, faces) < 1e-3
    assert interior.sum() <= interior_max
    assert (~interior).sum() == 4 * T


def test_fan_border_is_far_cheaper_than_graded_on_smooth_tiles():
    h = real_crop()
    fan = len(mesh.simplify_grid(h, 60.0, "fan")[1])
    graded = len(mesh.simplify_grid(h, 60.0, "graded")[1])
    assert fan < 0.6 * graded


def test_more_error_fewer_triangles():
    h = real_crop()
    counts = [len(mesh.simplify_grid(h, e)[1]) for e in (1.0, 4.0, 16.0, 64.0)]
    assert counts == sorted(counts, reverse=True) and counts[0] > 3 * counts[-1]


def test_exact_error_is_tighter_than_martini_midpoint_estimate():
    """Martini's midpoint-only error lets the real error exceed the bound; ours never does."""
    from pymartini import Martini

    h = real_crop()
    vertices, triangles = Martini(T + 1).create_tile(h).get_mesh(5.0)
    # pymartini vertices are (x = col, y = row)
    err = mesh.max_vertical_error(h, vertices[:, ::-1].astype(np.int32), triangles)
    assert err > 5.0
    grid_rc, faces = mesh.simplify_grid(h, 5.0)
    assert mesh.max_vertical_error(h, grid_rc, faces) <= 5.0


@pytest.mark.parametrize("bad", [np.zeros((10, 10)), np.zeros((257, 256)), np.full((257, 257), np.nan)])
def test_bad_grids_rejected(bad):
    with pytest.raises(ValueError, match="height_m"):
        mesh.simplify_grid(bad, 1.0)


def test_bad_error_rejected():
    with pytest.raises(ValueError, match="max_error_m"):
        mesh.simplify_grid(real_crop(), -1.0)
    with pytest.raises(ValueError, match="border"):
        mesh.simplify_grid(real_crop(), 1.0, "none")


def test_plane_tile_mesh_skirts_normals_uvs():
    h = real_crop()
    level = 11
    s = spacing_m(level)
    centre = np.array([T / 2 * s, -T / 2 * s, 1000.0])
    tm = mesh.build_tile_mesh(h, 5.0, 25.0, plane_to_world(level), centre)
    n = len(tm.grid_rc)
    assert tm.vertices_m.dtype == np.float32 and tm.vertices_m.shape == (n + 4 * T, 3)
    world = tm.vertices_m.astype(np.float64) + centre
    np.testing.assert_allclose(world[:n, 0], tm.grid_rc[:, 1] * s, atol=1e-3)
    np.testing.assert_allclose(world[:n, 1], -tm.grid_rc[:, 0] * s, atol=1e-3)
    np.testing.assert_allclose(world[:n, 2], h[tm.grid_rc[:, 0], tm.grid_rc[:, 1]], atol=1e-4)
    # Skirt vertices hang exactly skirt_depth_m below their edge vertex.
    border = np.unique(np.concatenate([tm.west, tm.south, tm.east, tm.north]))
    np.testing.assert_allclose(world[n:, 2], world[border, 2] - 25.0, atol=1e-4)
    np.testing.assert_allclose(world[n:, :2], world[border, :2], atol=1e-3)
    # Edge lists: full border, sorted along the edge.
    assert (tm.grid_rc[tm.west, 1] == 0).all() and (np.diff(tm.grid_rc[tm.west, 0]) == 1).all()
    assert (tm.grid_rc[tm.north, 0] == 0).all() and (np.diff(tm.grid_rc[tm.north, 1]) == 1).all()
    assert (tm.grid_rc[tm.east, 1] == T).all() and (tm.grid_rc[tm.south, 0] == T).all()
    # Normals: unit, pointing up on the terrain; flat ground -> straight up.
    np.testing.assert_allclose(np.linalg.norm(tm.normals, axis=1), 1.0, atol=1e-5)
    assert (tm.normals[:n, 2] > 0.2).all()
    assert tm.uv.min() == 0.0 and tm.uv.max() == 1.0
    np.testing.assert_allclose(tm.uv[:n, 0], tm.grid_rc[:, 1] / T)
    np.testing.assert_allclose(tm.uv[:n, 1], 1.0 - tm.grid_rc[:, 0] / T)
    tri = tm.to_trimesh()
    assert tri.is_winding_consistent
    assert len(tri.faces) == len(tm.faces) + 2 * 4 * T
    # Skirt faces face outwards: the west skirt's normals point west.
    west_skirt = tri.face_normals[len(tm.faces) :][tm.skirt_faces.max(1) >= n]
    assert (np.abs(west_skirt).max(1) > 0.99).all()


def test_earth_tile_on_ellipsoid_relative_to_float64_centre():
    h = fractal(T + 1, seed=7, relief_m=3000.0)
    level, x, y = 9, 300, 100
    to_world = earth_to_world(level, x, y)
    centre = to_world(np.array([T / 2]), np.array([T / 2]), np.array([0.0]))[0]
    tm = mesh.build_tile_mesh(h, 10.0, 50.0, to_world, centre)
    world = tm.vertices_m.astype(np.float64) + centre
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


def test_skipping_unneeded_error_measurements_changes_nothing():
    """rtin_errors only measures triangles that may stay unsplit; the fully measured
    pyramid must give the very same vertex set for every bound."""
    h = fractal(T + 1, seed=9, relief_m=1200.0)
    full = mesh.rtin_errors(h)  # every triangle measured
    for bound in (0.5, 3.0, 25.0, 150.0):
        fast = mesh.rtin_errors(h, bound)
        np.testing.assert_array_equal(fast > bound, full > bound)
        exact = fast <= bound
        np.testing.assert_array_equal(fast[exact], full[exact])


def test_vertex_set_is_every_sample_above_the_bound():
    h = real_crop()
    kept = np.zeros((T + 1, T + 1), dtype=bool)
    inner = (slice(1, -1), slice(1, -1))
    for border in mesh.BORDERS:
        err = mesh.rtin_errors(h, border=border)
        grid_rc, _ = mesh.simplify_grid(h, 7.0, border, flips=False)
        kept[:] = False
        kept[grid_rc[:, 0], grid_rc[:, 1]] = True
        np.testing.assert_array_equal(kept[inner], (err > 7.0)[inner])
        edge = np.concatenate([kept[0], kept[-1], kept[:, 0], kept[:, -1]])
        assert edge.all() == (border != "free")
        # dropping diamonds only takes vertices away from the plain RTIN
        present, flipped, rc2, _ = mesh.simplify_rtin(h, 7.0, border)
        kept2 = np.zeros_like(kept)
        kept2[rc2[:, 0], rc2[:, 1]] = True
        assert not (kept2 & ~kept).any() and (kept & ~kept2).sum() > 0.1 * kept.sum()
        assert not (flipped[:-1] & present[:-1]).any()  # a flipped diamond's centre is gone


def canonical_triangles(grid_ids: np.ndarray) -> np.ndarray:
    """Triangles rotated to start at their smallest id (winding kept), rows sorted."""
    f = np.asarray(grid_ids, dtype=np.int64)
    k = np.argmin(f, axis=1)
    rows = np.arange(len(f))[:, None]
    f = f[rows, (k[:, None] + np.arange(3)) % 3]
    return f[np.lexsort(f.T[::-1])]


def edge_uses(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges and how many faces use each; directed edges must be unique."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), "a directed edge is used twice"
    return np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)


@pytest.mark.parametrize("border", mesh.BORDERS)
@pytest.mark.parametrize("source", ["real", "fractal"])
def test_dropped_diamonds_remove_vertices_and_keep_the_mesh_conforming(source, border):
    h = real_crop() if source == "real" else fractal(T + 1, seed=21, relief_m=600.0)
    hier = mesh.hierarchy(T)
    for bound in (0.5, 3.0, 12.0):
        rc0, f0 = mesh.simplify_grid(h, bound, border, flips=False)
        present, flipped, rc, f = mesh.simplify_rtin(h, bound, border)
        k = len(rc0) - len(rc)
        assert k > 0.05 * len(rc0)  # a real share of the vertices goes
        assert len(f) == len(f0) - 2 * k  # two triangles per vertex (Euler: the outline is kept)
        assert mesh.max_vertical_error(h, rc, f) <= bound + 1e-6
        assert signed_area2(rc, f).min() > 0 and signed_area2(rc, f).sum() == 2 * T * T
        # conforming: every edge inside the tile is shared by exactly two faces, every
        # edge on the border belongs to one, and the border keeps its samples
        edges, uses = edge_uses(f)
        a, b = rc[edges[:, 0]], rc[edges[:, 1]]
        same_row = (a[:, 0] == b[:, 0]) & np.isin(a[:, 0], [0, T])
        on_border = same_row | ((a[:, 1] == b[:, 1]) & np.isin(a[:, 1], [0, T]))
        assert (uses[on_border] == 1).all() and (uses[~on_border] == 2).all()
        # every flipped diamond is drawn on its a1-a2 diagonal
        grid_ids = rc[:, 0].astype(np.int64) * (T + 1) + rc[:, 1]
        drawn = {tuple(e) for e in np.sort(grid_ids[edges], axis=1).tolist()}
        ids = np.flatnonzero(flipped[:-1])
        diagonals = np.sort(np.stack([hier.diamond_a1[ids], hier.diamond_a2[ids]], 1), axis=1)
        assert len(ids) and all(tuple(d) in drawn for d in diagonals.tolist())
        # and the wire rebuilds exactly this mesh from the vertex set and the flip bits
        np.testing.assert_array_equal(mesh.tin_faces(present, T, border, flipped), grid_ids[f])


def test_tile_mesh_from_decoded_payload_matches_server_mesh():
    from runtime import wire
    from runtime.tiles import TileKey

    h = real_crop()
    level = 11
    s = spacing_m(level)
    centre = np.array([T / 2 * s, -T / 2 * s, 1000.0])
    server = mesh.build_tile_mesh(h, 4.0, 20.0, plane_to_world(level), centre)
    payload, _, _ = wire.encode_heights(h, 4.0, key=TileKey(level, 3, 4), model="m")
    d = wire.decode_tile(payload)
    client = mesh.tile_mesh(d.grid_rc, d.height_m, d.faces, 20.0, plane_to_world(level), centre, d.grid_size)
    np.testing.assert_array_equal(client.faces, server.faces)
    np.testing.assert_array_equal(client.skirt_faces, server.skirt_faces)
    # heights of this DEM are whole metres, so 0.125 m quantisation is lossless here
    np.testing.assert_array_equal(client.vertices_m, server.vertices_m)


def test_tin_faces_fast_path_equals_fanning_every_leaf():
    h = fractal(T + 1, seed=13, relief_m=900.0)
    for bound in (0.7, 9.0, 90.0):
        present = mesh.rtin_vertices(mesh.rtin_errors(h, bound), bound)
        # the level-by-level reference against the one-pass version (same triangles,
        # same windings; the order is each one's own)
        slow = mesh.fan_out(mesh.rtin_faces(present, T), T)
        np.testing.assert_array_equal(canonical_triangles(mesh.tin_faces(present, T, "fan")), canonical_triangles(slow))
        graded = mesh.rtin_vertices(mesh.rtin_errors(h, bound, "graded"), bound, "graded")
        np.testing.assert_array_equal(
            canonical_triangles(mesh.tin_faces(graded, T, "graded")), canonical_triangles(mesh.rtin_faces(graded, T))
        )


@pytest.mark.parametrize("n", [3, 5, 9, 33, 129])
@pytest.mark.parametrize("border", mesh.BORDERS)
def test_other_grid_sizes(n, border):
    from runtime import wire
    from runtime.tiles import TileKey

    h = fractal(n, seed=n, relief_m=100.0)
    for bound in (0.5, 5.0, 50.0):
        grid_rc, faces = mesh.simplify_grid(h, bound, border)
        assert mesh.max_vertical_error(h, grid_rc, faces) <= bound + 1e-6
        assert signed_area2(grid_rc, faces).sum() == 2 * (n - 1) ** 2
        payload, _, _ = wire.encode_heights(h, bound, key=TileKey(5, 1, 1), model="m", border=border)
        d = wire.decode_tile(payload)
        np.testing.assert_array_equal(d.faces, faces)


def test_geometric_error_against_children_samples():
    # Exact nesting: the parent is the children's even samples.
    fine = fractal(2 * T + 1, seed=17, relief_m=600.0)
    parent = fine[::2, ::2]
    kids = [fine[r : r + T + 1, c : c + T + 1] for r in (0, T) for c in (0, T)]
    assembled = mesh.children_grid(*kids)
    np.testing.assert_array_equal(assembled, fine)
    grid_rc, faces = mesh.simplify_grid(parent, 4.0)
    own = mesh.max_vertical_error(parent, grid_rc, faces)
    geo = mesh.geometric_error_m(grid_rc, faces, assembled)
    # The children's detail between the parent's samples can only add error.
    assert own <= 4.0 < geo
    # An exact parent mesh (every sample) still misses the children's odd samples.
    full_rc, full_faces = mesh.simplify_grid(parent, 0.0)
    assert mesh.max_vertical_error(parent, full_rc, full_faces) == 0.0
    assert mesh.geometric_error_m(full_rc, full_faces, assembled) > 0.0
    bad = [k.copy() for k in kids]
    bad[1][5, 0] += 1.0
    with pytest.raises(ValueError, match="share"):
        mesh.children_grid(*bad)
