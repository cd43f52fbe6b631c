"""Tile maths and world geometry: round trips, nesting, coverage (hypothesis properties)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.geometry import (
    box_distances_m,
    ecef_to_geodetic,
    geodetic_to_ecef,
    geometry_for,
)
from runtime.tiles import WGS84_A_M, WGS84_B_M, T, TileKey, World, neighbour, spacing_m

PLANE, EARTH = geometry_for("plane"), geometry_for("earth")


@st.composite
def earth_keys(draw, max_level=18):
    level = draw(st.integers(0, max_level))
    return TileKey(level, draw(st.integers(0, (2 << level) - 1)), draw(st.integers(0, (1 << level) - 1)))


@st.composite
def plane_keys(draw, max_level=18):
    level = draw(st.integers(0, max_level))
    lim = 1 << (level + 2)
    return TileKey(level, draw(st.integers(-lim, lim)), draw(st.integers(-lim, lim)))


@given(earth_keys(max_level=23))
def test_parent_child_round_trip(key):
    for child in key.children():
        assert child.parent() == key
        assert child.ancestor(key.level) == key
    # The four children tile the parent's sample window exactly (shared edges only).
    r0, c0 = key.sample_origin()
    origins = sorted(c.sample_origin() for c in key.children())
    assert origins == [(2 * r0, 2 * c0), (2 * r0, 2 * c0 + T), (2 * r0 + T, 2 * c0), (2 * r0 + T, 2 * c0 + T)]


@given(plane_keys(), st.integers(-3, 3), st.integers(-3, 3))
def test_plane_neighbour_round_trip(key, dx, dy):
    n = neighbour(World.PLANE, key, dx, dy)
    assert neighbour(World.PLANE, n, -dx, -dy) == key


@given(earth_keys(), st.integers(-5, 5), st.integers(-2, 2))
def test_earth_neighbour_round_trip(key, dx, dy):
    n = neighbour(World.EARTH, key, dx, dy)
    if n is None:
        assert not 0 <= key.y + dy < (1 << key.level)  # only past a pole
    else:
        assert neighbour(World.EARTH, n, -dx, -dy) == key


@given(st.integers(0, 20))
def test_antimeridian_neighbours_share_the_edge(level):
    # Westmost tile of a row: its west neighbour is the eastmost tile; their shared edge
    # (lon -180 == lon 180) is the same set of ECEF points.
    west = TileKey(level, 0, 0)
    east = neighbour(World.EARTH, west, -1, 0)
    assert east == TileKey(level, (2 << level) - 1, 0)
    rows = np.arange(T + 1, dtype=np.float64)
    a = EARTH.sample_to_world(level, rows, np.zeros(T + 1), 0.0)
    b = EARTH.sample_to_world(level, rows, np.full(T + 1, (east.x + 1) * T, np.float64), 0.0)
    assert np.abs(a - b).max() < 1e-6


@pytest.mark.parametrize("level", [0, 1, 2, 5])
def test_earth_tiles_cover_the_globe_once_per_level(level):
    # Area of every tile's lon/lat rectangle on the sphere sums to 4 pi, and random points
    # land in exactly one tile.
    d = math.radians(180.0 / (1 << level))
    total = 0.0
    for y in range(1 << level):
        north = math.pi / 2 - y * d
        total += (2 << level) * d * (math.sin(north) - math.sin(north - d))
    assert total == pytest.approx(4 * math.pi, rel=1e-12)
    rng = np.random.default_rng(level)
    lon = rng.uniform(-180, 180, 2000)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    pts = geodetic_to_ecef(lon, lat, 0.0)
    keys = [(k.x, k.y) for k in (EARTH.key_at(level, p) for p in pts)]
    for (x, y), lo, la in zip(keys, lon, lat, strict=True):
        w, s, e, n = EARTH.tile_extent_deg(TileKey(level, x, y))
        assert w - 1e-9 <= lo <= e + 1e-9 and s - 1e-9 <= la <= n + 1e-9


@settings(max_examples=60, deadline=None)
@given(earth_keys(max_level=16), st.floats(-500, 500), st.floats(0, 3000))
def test_earth_bounds_hold_the_surface_and_nest(key, hmin, span):
    hmax = hmin + span
    b = EARTH.tile_bounds(key, hmin, hmax)
    r0, c0 = key.sample_origin()
    rng = np.random.default_rng(key.level * 7919 + key.x)
    rows, cols = r0 + rng.uniform(0, T, 400), c0 + rng.uniform(0, T, 400)
    pts = EARTH.sample_to_world(key.level, rows, cols, rng.uniform(hmin, hmax, 400))
    assert b.contains(pts, tol_m=1e-3).all()
    # Each child's surface lies in the parent's box (oriented boxes themselves need not nest:
    # a child's box is turned to its own centre).
    for child in key.children():
        cr, cc = child.sample_origin()
        cpts = EARTH.sample_to_world(child.level, cr + rng.uniform(0, T, 100),
                                     cc + rng.uniform(0, T, 100), hmax)
        assert b.contains(cpts, tol_m=1e-3).all()


@settings(max_examples=60, deadline=None)
@given(plane_keys(), st.floats(-500, 500), st.floats(0, 3000))
def test_plane_bounds_nest_exactly(key, hmin, span):
    b = PLANE.tile_bounds(key, hmin, hmin + span)
    for child in key.children():
        assert b.contains(PLANE.tile_bounds(child, hmin, hmin + span).corners_m(), tol_m=1e-6).all()


def test_level0_earth_bounds_hold_the_whole_hemisphere():
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 0, 5000), np.degrees(np.arcsin(rng.uniform(-1, 1, 5000)))
    b = EARTH.tile_bounds(TileKey(0, 0, 0), -11000, 9000)
    assert b.contains(geodetic_to_ecef(lon, lat, rng.uniform(-11000, 9000, 5000))).all()
    assert b.horizon_point is None


@given(st.floats(-180, 180), st.floats(-90, 90), st.floats(-12000, 4.0e7))
def test_geodetic_round_trip_sub_millimetre(lon, lat, h):
    lo, la, hh = ecef_to_geodetic(geodetic_to_ecef(lon, lat, h))
    back = geodetic_to_ecef(lo, la, hh)
    assert np.abs(back - geodetic_to_ecef(lon, lat, h)).max() < 1e-3
    assert abs(hh[0] - h) < 1e-3


def test_ellipsoid_axes():
    p = geodetic_to_ecef([0, 90, 0], [0, 0, 90], [0, 0, 0])
    assert np.allclose(p, [[WGS84_A_M, 0, 0], [0, WGS84_A_M, 0], [0, 0, WGS84_B_M]], atol=1e-6)


@given(st.integers(0, 20), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(-1e4, 1e4))
def test_plane_sample_round_trip(level, r, c, h):
    pos = PLANE.sample_to_world(level, [r], [c], [h])
    s = spacing_m(level)
    assert np.allclose(pos[0], [c * s, -r * s, h])
    rr, cc, hh = PLANE.world_to_sample(level, pos)
    assert abs(rr[0] - r) < 1e-6 * max(1, abs(r)) and abs(cc[0] - c) < 1e-6 * max(1, abs(c)) and hh[0] == h


@given(st.integers(0, 20), st.floats(0, 1), st.floats(0, 1), st.floats(-1e4, 1e4))
def test_earth_sample_round_trip(level, fr, fc, h):
    r, c = fr * (T << level), fc * (2 * T << level)
    pos = EARTH.sample_to_world(level, [r], [c], [h])
    rr, cc, hh = EARTH.world_to_sample(level, pos)
    # 1 mm in samples of this level (poles make longitude undefined: compare positions there).
    back = EARTH.sample_to_world(level, rr, cc, hh)
    assert np.abs(back - pos).max() < 1e-3


def test_up_vectors():
    assert np.allclose(PLANE.up([[5.0, -3.0, 100.0]]), [[0, 0, 1]])
    p = geodetic_to_ecef([30.0], [45.0], [1000.0])
    up = EARTH.up(p)[0]
    assert np.allclose(up, [math.cos(math.radians(45)) * math.cos(math.radians(30)),
                            math.cos(math.radians(45)) * math.sin(math.radians(30)),
                            math.sin(math.radians(45))])


def test_tile_center_and_box_distance():
    key = TileKey(3, -2, 5)
    s = spacing_m(3) * T
    assert np.allclose(PLANE.tile_center(key), [-1.5 * s, -5.5 * s, 0.0])
    b = PLANE.tile_bounds(key, 0.0, 100.0)
    # 1 km above the box top, straight above the centre; and 1 km east of the east face.
    assert b.distance_m(b.center_m + [0, 0, 1050.0]) == pytest.approx(1000.0)
    assert b.distance_m(b.center_m + [s / 2 + 1000.0, 0, 0]) == pytest.approx(1000.0)
    assert b.distance_m(b.center_m) == 0.0
    d = box_distances_m(b.center_m[None], b.half_axes_m[None], b.center_m + [s / 2 + 300, s / 2 + 400, 50])
    assert d[0] == pytest.approx(500.0)


def test_bad_input_says_what_was_expected():
    with pytest.raises(ValueError, match="min_height_m must be <= max_height_m"):
        PLANE.tile_bounds(TileKey(0, 0, 0), 10.0, 0.0)
    with pytest.raises(ValueError, match="unknown world"):
        geometry_for("mars")


def _segment_hits_occluder(cam, pts):
    """True where the segment cam -> pt passes through the occluder ellipsoid."""
    from runtime.geometry import occluder_radii_m
    r = occluder_radii_m()
    c, d = cam / r, (pts - cam) / r
    a = (d * d).sum(axis=1)
    b = 2 * (d @ c)
    cc = c @ c - 1.0
    disc = b * b - 4 * a * cc
    sq = np.sqrt(np.maximum(disc, 0.0))
    t1, t2 = (-b - sq) / (2 * a), (-b + sq) / (2 * a)
    return (disc > 0) & (((t1 > 1e-9) & (t1 < 1 - 1e-9)) | ((t2 > 1e-9) & (t2 < 1 - 1e-9)))


@settings(max_examples=80, deadline=None)
@given(earth_keys(max_level=12), st.floats(-180, 180), st.floats(-89, 89), st.floats(10.0, 2.0e6),
       st.floats(-500, 500), st.floats(0, 9000))
def test_horizon_culling_is_conservative(key, lon, lat, h, hmin, span):
    # Whenever a tile's horizon point is hidden, every point of the tile's surface in its
    # height range is hidden too (the segment to it crosses the occluder ellipsoid).
    from runtime.geometry import horizon_visible
    b = EARTH.tile_bounds(key, hmin, hmin + span)
    if b.horizon_point is None:
        return
    cam = geodetic_to_ecef(lon, lat, h)[0]
    if horizon_visible(cam, b.horizon_point[None])[0]:
        return
    rng = np.random.default_rng(key.level * 131 + key.x)
    r0, c0 = key.sample_origin()
    pts = EARTH.sample_to_world(key.level, r0 + rng.uniform(0, T, 300), c0 + rng.uniform(0, T, 300),
                                rng.uniform(hmin, hmin + span, 300))
    assert _segment_hits_occluder(cam, pts).all()


def test_lattice_to_world_is_sample_to_world_bit_for_bit():
    from runtime.tiles import spacing_deg

    rng = np.random.default_rng(5)
    for world in (World.EARTH, World.PLANE):
        geo = geometry_for(world)
        level, r0, c0 = 9, 256 * 170, 256 * 270
        ki, kj = rng.integers(0, 513, 4000), rng.integers(0, 513, 4000)
        h = rng.normal(800.0, 600.0, 4000)
        got = geo.lattice_to_world(level, r0, c0, 0.5, ki, kj, h)
        assert np.array_equal(got, geo.sample_to_world(level, r0 + ki * 0.5, c0 + kj * 0.5, h))
    # The earth's sample at the equator and longitude 0, 100 m up: (a + 100 m, 0, 0).
    d = spacing_deg(9)
    p = geometry_for(World.EARTH).lattice_to_world(9, 0.0, 0.0, 1.0, [round(90 / d)], [round(180 / d)], [100.0])
    np.testing.assert_allclose(p[0], [WGS84_A_M + 100.0, 0.0, 0.0], atol=1e-6)
