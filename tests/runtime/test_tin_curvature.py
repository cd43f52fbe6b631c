"""runtime.tin.curvature: the earth's chord sag is part of the simplification error."""

import numpy as np
import pytest
from mesh_fixtures import fractal, signed_area2

from runtime.tiles import T, TileKey, World, level_error_m
from runtime.tin import simplify
from runtime.tin.curvature import curved_positions, max_deviation_m
from runtime.wire import decode_tile, encode_heights

# Level-0..4 tiles of the earth over flat ground (sea level): every bit of their error is sag.
KEYS = [TileKey(0, 0, 0), TileKey(1, 2, 0), TileKey(2, 5, 1), TileKey(4, 22, 5)]


@pytest.mark.parametrize("key", KEYS, ids=str)
def test_coarse_earth_tiles_are_curved_within_their_bound(key):
    h = np.zeros((T + 1, T + 1), np.float32)
    bound = level_error_m(key.level)
    flat_rc, flat_f = simplify.simplify_grid(h, bound)
    sag_before = max_deviation_m(World.EARTH, key, h, flat_rc, flat_f)
    rc, f = simplify.simplify_grid(h, bound, positions_m=curved_positions(World.EARTH, key, h))
    dist, below = max_deviation_m(World.EARTH, key, h, rc, f)
    assert dist <= bound * (1 + 1e-9) and below <= bound * (1 + 1e-9)
    assert below > 0.5 * bound  # not over-refined: the bound is close to the real deviation
    # the height-only mesh is the border fan, sagging far below its error (the old facets)
    assert len(flat_f) == 4 * T and sag_before[1] > 3 * bound
    assert len(f) > len(flat_f)
    area2 = signed_area2(rc, f)
    assert (area2 > 0).all() and area2.sum() == 2 * T * T  # conforming, covers the tile


def test_level_zero_sag_matches_the_chord_formula():
    # The level-0 fan's worst triangle reaches 90 deg from its border vertices: its sag is
    # of the order of R (1 - cos 45 deg) ~ 1,870 km, and at least L^2 / 8R for its edges.
    key = TileKey(0, 0, 0)
    h = np.zeros((T + 1, T + 1), np.float32)
    rc, f = simplify.simplify_grid(h, level_error_m(0))
    _, below = max_deviation_m(World.EARTH, key, h, rc, f)
    assert 1.5e6 < below < 4e6


def test_plane_world_keeps_the_height_only_error():
    h = fractal(T + 1, seed=3)
    assert curved_positions(World.PLANE, TileKey(3, 2, 2), h) is None
    a = simplify.simplify_grid(h, 20.0)
    b = simplify.simplify_grid(h, 20.0, positions_m=h[None].astype(np.float64))  # one component = heights
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_rough_earth_tile_bound_holds_and_wire_round_trips():
    key = TileKey(3, 11, 2)
    h = fractal(T + 1, seed=4, relief_m=6000.0)
    bound = level_error_m(3)
    pos = curved_positions(World.EARTH, key, h)
    payload, rc, f = encode_heights(h, bound, key=key, model="test", positions_m=pos)
    dist, _ = max_deviation_m(World.EARTH, key, h, rc, f)
    assert dist <= bound * (1 + 1e-9)
    d = decode_tile(payload)
    assert np.array_equal(d.grid_rc, rc) and np.array_equal(d.faces, f)


def test_positions_shape_checked():
    h = np.zeros((T + 1, T + 1), np.float32)
    with pytest.raises(ValueError, match="positions_m must be"):
        simplify.simplify_grid(h, 1.0, positions_m=np.zeros((3, 5, 5)))


def test_up_component_alone_from_level_six_keeps_the_3d_distance_within_the_bound():
    from runtime.tin.curvature import FULL_3D_BELOW_LEVEL

    key = TileKey(FULL_3D_BELOW_LEVEL, 90, 20)
    h = fractal(T + 1, seed=6, relief_m=3000.0)
    pos = curved_positions(World.EARTH, key, h)
    assert pos.shape == (1, T + 1, T + 1)  # the up component: vertical error + sag
    bound = level_error_m(key.level)
    rc, f = simplify.simplify_grid(h, bound, positions_m=pos)
    dist, below = max_deviation_m(World.EARTH, key, h, rc, f)
    assert below <= bound * 1.001 and dist <= bound * 1.001  # horizontal residuals: < 0.1 %
