"""runtime.tin.simplify: heights -> TIN within the bound, borders, error measures."""

import numpy as np
import pytest
from mesh_fixtures import fractal, real_crop, signed_area2

from runtime.tiles import T
from runtime.tin import rtin, simplify


@pytest.mark.parametrize("border", rtin.BORDERS)
@pytest.mark.parametrize("max_error_m", [0.5, 2.0, 10.0, 40.0, 150.0])
@pytest.mark.parametrize("source", ["real", "fractal"])
def test_measured_error_within_bound(source, max_error_m, border):
    h = real_crop() if source == "real" else fractal(T + 1, seed=3)
    grid_rc, faces = simplify.simplify_grid(h, max_error_m, border)
    err = simplify.max_vertical_error(h, grid_rc, faces)  # also fails on holes
    assert err <= max_error_m + 1e-3
    assert len(faces) < 2 * T * T  # it did simplify


def test_real_tile_is_simplified_and_tiles_the_square():
    h = real_crop()
    grid_rc, faces = simplify.simplify_grid(h, 5.0)
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
    grid_rc, faces = simplify.simplify_grid(h, max_error_m, border)
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
    grid_rc, faces = simplify.simplify_grid(h, 0.01, border)
    interior = (grid_rc > 0).all(1) & (grid_rc < T).all(1)
    # Fans reach the kept border samples from a handful of interior vertices; "graded"
    # makes the RTIN refine towards the border (about 1.4 interior vertices per sample).
    assert simplify.max_vertical_error(h, grid_rc, faces) < 1e-3
    assert interior.sum() <= interior_max
    assert (~interior).sum() == 4 * T


def test_fan_border_is_far_cheaper_than_graded_on_smooth_tiles():
    h = real_crop()
    fan = len(simplify.simplify_grid(h, 60.0, "fan")[1])
    graded = len(simplify.simplify_grid(h, 60.0, "graded")[1])
    assert fan < 0.6 * graded


def test_more_error_fewer_triangles():
    h = real_crop()
    counts = [len(simplify.simplify_grid(h, e)[1]) for e in (1.0, 4.0, 16.0, 64.0)]
    assert counts == sorted(counts, reverse=True) and counts[0] > 3 * counts[-1]


def test_exact_error_is_tighter_than_martini_midpoint_estimate():
    """Martini's midpoint-only error lets the real error exceed the bound; ours never does."""
    from pymartini import Martini

    h = real_crop()
    vertices, triangles = Martini(T + 1).create_tile(h).get_mesh(5.0)
    # pymartini vertices are (x = col, y = row)
    err = simplify.max_vertical_error(h, vertices[:, ::-1].astype(np.int32), triangles)
    assert err > 5.0
    grid_rc, faces = simplify.simplify_grid(h, 5.0)
    assert simplify.max_vertical_error(h, grid_rc, faces) <= 5.0


@pytest.mark.parametrize("bad", [np.zeros((10, 10)), np.zeros((257, 256)), np.full((257, 257), np.nan)])
def test_bad_grids_rejected(bad):
    with pytest.raises(ValueError, match="height_m"):
        simplify.simplify_grid(bad, 1.0)


def test_bad_error_rejected():
    with pytest.raises(ValueError, match="max_error_m"):
        simplify.simplify_grid(real_crop(), -1.0)
    with pytest.raises(ValueError, match="border"):
        simplify.simplify_grid(real_crop(), 1.0, "none")


@pytest.mark.parametrize("n", [3, 5, 9, 33, 129])
@pytest.mark.parametrize("border", rtin.BORDERS)
def test_other_grid_sizes(n, border):
    from runtime import wire
    from runtime.tiles import TileKey

    h = fractal(n, seed=n, relief_m=100.0)
    for bound in (0.5, 5.0, 50.0):
        grid_rc, faces = simplify.simplify_grid(h, bound, border)
        assert simplify.max_vertical_error(h, grid_rc, faces) <= bound + 1e-6
        assert signed_area2(grid_rc, faces).sum() == 2 * (n - 1) ** 2
        payload, _, _ = wire.encode_heights(h, bound, key=TileKey(5, 1, 1), model="m", border=border)
        d = wire.decode_tile(payload)
        np.testing.assert_array_equal(d.faces, faces)


def test_geometric_error_against_children_samples():
    # Exact nesting: the parent is the children's even samples.
    fine = fractal(2 * T + 1, seed=17, relief_m=600.0)
    parent = fine[::2, ::2]
    kids = [fine[r : r + T + 1, c : c + T + 1] for r in (0, T) for c in (0, T)]
    assembled = simplify.children_grid(*kids)
    np.testing.assert_array_equal(assembled, fine)
    grid_rc, faces = simplify.simplify_grid(parent, 4.0)
    own = simplify.max_vertical_error(parent, grid_rc, faces)
    geo = simplify.geometric_error_m(grid_rc, faces, assembled)
    # The children's detail between the parent's samples can only add error.
    assert own <= 4.0 < geo
    # An exact parent mesh (every sample) still misses the children's odd samples.
    full_rc, full_faces = simplify.simplify_grid(parent, 0.0)
    assert simplify.max_vertical_error(parent, full_rc, full_faces) == 0.0
    assert simplify.geometric_error_m(full_rc, full_faces, assembled) > 0.0
    bad = [k.copy() for k in kids]
    bad[1][5, 0] += 1.0
    with pytest.raises(ValueError, match="share"):
        simplify.children_grid(*bad)


@pytest.mark.parametrize("max_error_m", [0.5, 20.0])
def test_one_component_positions_skip_the_norm(max_error_m):
    """One positions component (the earth's up from level 6): the vertex set is the one of
    sqrt(e^2), the norm over that component, which rtin_vertex_set no longer computes."""
    up = fractal(T + 1, seed=4).astype(np.float64) + np.add.outer(np.arange(T + 1.0), np.arange(T + 1.0)) ** 2 * 1e-3
    want = rtin.rtin_vertices(np.sqrt(np.square(rtin.rtin_errors(up, max_error_m, "fan"))), max_error_m, "fan")
    got, _, _ = simplify.rtin_vertex_set(up.astype(np.float32), max_error_m, "fan", flips=False, positions_m=up[None])
    np.testing.assert_array_equal(got, want)
    assert 100 < got.sum() < (T + 1) ** 2 and not got.all()  # a real vertex set, simplified
