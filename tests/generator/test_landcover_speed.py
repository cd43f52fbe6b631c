"""The class field's fast paths give the values of their plain definitions: the lattice noises,
the town test by blocks, the birth slope by groups, the windowed land fraction and the uniform
MODIS box; and the served layer costs a few milliseconds of CPU per tile."""


import numpy as np
import pytest

from generator import landcover as LC
from generator.anchors.plane import _value_noise
from generator.pyramid import open_world
from runtime.tiles import ANCHOR_LEVEL, T, TileKey, World, spacing_deg, spacing_m


def test_value_noise_hashes_each_node_once_with_the_same_bits():
    rng = np.random.default_rng(0)
    for wave, span in ((0.05, 0.02), (612.0, 2400.0), (612.0, 3.0e5), (3.0e4, 3.0e5)):  # table and per-corner paths
        x = -1000 + rng.random((65, 65)) * span
        y = 50 + rng.random((65, 1)) * span
        np.testing.assert_array_equal(LC.value_noise(0, 6, x, y, wave), _value_noise(0, 2006, x, y, wave))


def test_grid_noise_equals_point_noise_and_stays_in_range():
    xs = np.linspace(-7000.0, 9000.0, 301)
    ys = np.linspace(-300.0, 12000.0, 257)
    g = LC.grid_noise(3, 4, xs, ys, 3000.0)
    p = LC.point_noise(3, 4, np.broadcast_to(xs[None, :], g.shape), np.broadcast_to(ys[:, None], g.shape), 3000.0)
    np.testing.assert_array_equal(g, p)
    assert -1.0 <= g.min() < -0.5 and 0.5 < g.max() <= 1.0 and 0.25 < g.std() < 0.5
    # keyed by location: a sub-grid (every other point) reads the same values
    np.testing.assert_array_equal(LC.grid_noise(3, 4, xs[::2], ys[::2], 3000.0), g[::2, ::2])


@pytest.mark.parametrize("origin, step", [((0, -12 * 256 * 8), 8), ((4 * 256, -95 * 256), 1), ((-3000, 5000), 4)])
def test_towns_by_blocks_equal_the_city_field(origin, step):
    s = spacing_m(LC.PLANE_CONTEXT_LEVEL)
    ys = (origin[0] + np.arange(T + 1) * step) * s
    xs = (origin[1] + np.arange(T + 1) * step) * s
    want = np.ones((T + 1, T + 1), bool)
    want[::3] = False
    town = LC._town(0, xs, ys, want)
    x, y = np.broadcast_to(xs[None, :], want.shape), np.broadcast_to(ys[:, None], want.shape)
    ref = (LC.plane_city(0, x, y) > 0) & want
    np.testing.assert_array_equal(town, ref)


def _slope_reference(level, rows, cols, h, far):
    """Per sample: the birth level's four parents as in the module docstring (plane)."""
    out = np.full(h.shape, np.nan, np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            k = min(LC._ctz(np.array([r]))[0], LC._ctz(np.array([c]))[0], level)
            if k >= level - ANCHOR_LEVEL:
                continue
            st = 1 << k
            sr, sc = (st if (r >> k) & 1 else 0), (st if (c >> k) & 1 else 0)

            def at(dr, dc, i=i, j=j, r=r, c=c, k=k):
                ii, jj = i + dr, j + dc
                if 0 <= ii < h.shape[0] and 0 <= jj < h.shape[1]:
                    return float(h[ii, jj])
                return float(far(level - k, np.array([(r + dr) >> k]), np.array([(c + dc) >> k]))[0])

            nw, ne, sw, se = at(-sr, -sc), at(-sr, sc), at(sr, -sc), at(sr, sc)
            sb = spacing_m(level) * float(st)
            out[i, j] = np.hypot((ne + se - nw - sw) / (4.0 * sb), (sw + se - nw - ne) / (4.0 * sb))
    return out


def test_birth_slope_by_groups_equals_the_per_sample_definition():
    rng = np.random.default_rng(1)
    rows = np.arange(4096 - 3, 4096 + 30, dtype=np.int64)
    cols = np.arange(2048, 2048 + 33, dtype=np.int64)
    h = rng.normal(100.0, 30.0, (rows.size, cols.size)).astype(np.float32)

    def far(level, r, c):
        return (np.sin(r * 0.37 + level) * 40.0 + np.cos(c * 0.11) * 25.0 + 100.0).astype(np.float32)

    got = LC.birth_slope(World.PLANE, 14, rows, cols, h, far)
    np.testing.assert_array_equal(got, _slope_reference(14, rows, cols, h, far))
    assert np.isfinite(got).sum() > 0.9 * got.size


def test_land_fraction_of_a_window_reads_the_mask_like_the_points():
    from generator.anchors.landwater import LandWater

    lw = LandWater.load()
    d = spacing_deg(12)
    for lat0, lon0 in ((35.60, 139.80), (48.85, 2.35), (40.70, -74.05)):  # Tokyo Bay, Paris, New York harbour
        lat1 = lat0 - np.arange(T + 1) * d
        lon1 = lon0 + np.arange(T + 1) * d
        got = LC._land_fraction(lw, lat1, lon1)
        ref = lw.land_fraction(np.broadcast_to(lat1[:, None], got.shape), np.broadcast_to(lon1[None, :], got.shape))
        np.testing.assert_array_equal(got >= 0.5, ref >= 0.5)
        np.testing.assert_array_equal(got < 0.8, ref < 0.8)
        if 0 < ref.min() or ref.max() < 1:  # a mixed window goes through the same float32 expressions
            np.testing.assert_array_equal(got, ref)


def test_uniform_modis_box_needs_every_cell_within_the_warp():
    grid = np.full((3600, 7200), 13, np.uint8)  # 0.05 deg cells, all urban
    lat1 = 48.86 - np.arange(T + 1) * spacing_deg(15)
    lon1 = 2.35 + np.arange(T + 1) * spacing_deg(15)
    assert LC._uniform_cell(grid, lat1, lon1, LC.WARP_DEG) == 13
    i = int((90.0 - 48.86 - 0.03) * 20)  # a park cell 0.03 deg north: within reach of the warp + a cell
    grid[i, int((2.35 + 180.0) * 20)] = 9
    assert LC._uniform_cell(grid, lat1, lon1, LC.WARP_DEG) is None


def test_the_served_layer_of_a_city_core_is_the_same_on_every_call():
    """The layer's speed is measured by bench/featurelayer.py (not here: no timed unit tests);
    here its repeated calls (the memoised paths warm) give the same buildings and trees."""
    from generator.layer import tile_layer

    plane = open_world("plane", 0, refiner="fractal")
    key = TileKey(15, -6077, 259)  # the plane city core: buildings, streets, trees
    h = plane.tile(key).height
    first = tile_layer(plane, key, h)
    again = tile_layer(plane, key, h)
    assert len(first["buildings"]) > 100 and len(first["trees"]) > 50
    for name in ("buildings", "trees"):
        np.testing.assert_array_equal(np.asarray(first[name]), np.asarray(again[name]))


def test_land_box_reads_the_30s_mask_like_land_cells():
    from generator.anchors.landwater import LandWater

    lw = LandWater.load()
    for ia, ni, ja, nj in ((4000, 700, 21000, 700), (21400, 300, 43000, 600), (6000, 90, 30100, 130)):
        i, j = np.arange(ia, ia + ni), np.arange(ja, ja + nj)  # a coast, the pole row and the antimeridian
        np.testing.assert_array_equal(LC._land_box(lw, i, j), lw.land_cells(i[:, None], j[None, :]))


def test_birth_slope_relief_bound_and_pointwise_tail_keep_every_steep_sample():
    rng = np.random.default_rng(3)
    rows = np.arange(8192, 8192 + T + 1, dtype=np.int64)
    cols = np.arange(4096, 4096 + T + 1, dtype=np.int64)
    for relief in (0.5, 40.0):  # a flat window (every group skipped by the bound) and a rough one
        h = (100.0 + rng.normal(0.0, relief, (T + 1, T + 1))).astype(np.float32)

        def far(level, r, c):
            return np.full(r.shape, 100.0, np.float32)

        full = LC.birth_slope(World.PLANE, 15, rows, cols, h, far)
        rough = LC.birth_slope(World.PLANE, 15, rows, cols, h, far, None, np.float32, max_k=LC.ROCK_TAIL_K,
                               at_most=0.98 * LC.ROCK_SLOPE)
        tail = LC.birth_groups_from(15, rows, cols, LC.ROCK_TAIL_K)
        steep = full > LC.ROCK_SLOPE
        screened = rough > np.float32(0.98 * LC.ROCK_SLOPE)
        assert not (steep & ~tail & ~screened).any()  # every steep sample is screened or in the tail
        assert (np.isnan(rough) & ~tail & np.isfinite(full)).any() == (relief < 1.0)  # the bound skips the flat one
        np.testing.assert_array_equal(tail, np.isfinite(full) & np.isnan(
            LC.birth_slope(World.PLANE, 15, rows, cols, h, far, max_k=LC.ROCK_TAIL_K)))


def test_plane_warp_only_where_node_cells_disagree_gives_the_plain_lookup():
    s = LC.spacing_m(LC.PLANE_CONTEXT_LEVEL)
    for level, r0, c0 in ((15, 259 * T, -6077 * T), (13, 64 * T, -1504 * T), (17, 527 * T, -15345 * T)):
        rows = np.arange(r0, r0 + T + 1, dtype=np.int64)
        cols = np.arange(c0, c0 + T + 1, dtype=np.int64)
        cls, land, _ = LC._plane_base(0, level, rows, cols)
        x1, y1 = LC.axis_locations(World.PLANE, level, rows, cols)  # the plain rule: warp every sample
        ri = np.round((y1[:, None] + 0.5 * s * LC.grid_noise(0, 7, x1, y1, 4.0 * s)) / s).astype(np.int64)
        ci = np.round((x1[None, :] + 0.5 * s * LC.grid_noise(0, 6, x1, y1, 4.0 * s)) / s).astype(np.int64)
        k = level - LC.PLANE_CONTEXT_LEVEL
        node_r, node_c = rows % (1 << k) == 0, cols % (1 << k) == 0
        ri[np.ix_(node_r, node_c)] = (rows[node_r] >> k)[:, None]
        ci[np.ix_(node_r, node_c)] = (cols[node_c] >> k)[None, :]
        box = LC._plane_node_codes(0, np.arange(ri.min(), ri.max() + 1), np.arange(ci.min(), ci.max() + 1))
        code = box[ri - ri.min(), ci - ci.min()]
        np.testing.assert_array_equal(cls, code & np.uint8(15))
        np.testing.assert_array_equal(land, code >= 16)


def test_anchor_nodes_from_the_area_memo_are_the_direct_nodes():
    from generator.anchors.plane import PlaneAnchor

    for r0, r1, c0, c1 in ((16, 17, -95, -94), (31, 33, -97, -80), (0, 40, -10, 30)):  # in one area, on its edge, large
        want = PlaneAnchor(0).node_context(np.arange(r0, r1 + 1), np.arange(c0, c1 + 1))[[0, 2, 4, 5, 6, 7, 8, 9, 10,
                                                                                            11, 12]]
        np.testing.assert_array_equal(LC._anchor_nodes(0, r0, r1, c0, c1), want)


def test_a_level6_box_fills_the_areas_inside_it_with_the_direct_nodes():
    from generator.anchors.plane import PlaneAnchor

    LC.anchor_memo_clear()
    LC._anchor_nodes(0, 32, 65, -64, -31)  # a level-6 tile's box (34 nodes a side): 2 x 2 areas inside
    assert set(LC._AREAS) == {(0, 2, -4), (0, 2, -3), (0, 3, -4), (0, 3, -3)}
    want = PlaneAnchor(0).node_context(np.arange(31, 50), np.arange(-49, -30))[[0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]]
    np.testing.assert_array_equal(LC._anchor_area(0, 2, -3), want)
    for k in range(LC.ANCHOR_AREAS_KEPT + 5):  # bounded
        LC._anchor_area(0, 100 + k, 0)
    assert len(LC._AREAS) == LC.ANCHOR_AREAS_KEPT


def test_lake_water_of_a_window_is_the_anchors_lake_rule():
    """``lake_water`` (the column step once per row of cells) gives the decisions of
    ``Lakes.at_grid``'s fraction >= 0.5, bit for bit, on shores of four lakes at several levels."""
    from generator.anchors.lakes import Lakes
    from generator.landcover_lakes import lake_water
    from runtime.tiles import spacing_deg

    lakes, wet = Lakes.load(), 0
    for lat, lon in ((46.45, 6.55), (-1.0, 33.0), (42.0, 50.0), (-15.9, -69.4)):
        for level in (5, 8, 11, 14):
            d = spacing_deg(level)
            rows = int((90.0 - lat) / d) - 100 + np.arange(201)
            cols = int((lon + 180.0) / d) - 100 + np.arange(201)
            lat1, lon1 = 90.0 - rows * d, -180.0 + np.mod(cols * d, 360.0)
            got = lake_water(lat1, lon1)
            np.testing.assert_array_equal(got, lakes.at_grid(lat1, lon1)[0] >= np.float32(0.5))
            wet += int(got.sum())
    assert wet > 100_000
