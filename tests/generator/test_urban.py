"""Urban intensity from data (generator/urban.py): core depth, metro factor, greyness, and what
they do to the buildings of real cities."""

import numpy as np
import pytest

from generator import urban as U

MIDTOWN, PARIS, CAIRO, IOWA_TOWN = (40.758, -73.985), (48.857, 2.352), (30.044, 31.236), (41.66, -91.53)


def _depth(lat, lon):
    return float(U.core_depth_km(np.array([lat]), np.array([lon]))[0])


def test_core_depth_orders_agglomerations_by_size():
    ny, paris, cairo, town = (_depth(*p) for p in (MIDTOWN, PARIS, CAIRO, IOWA_TOWN))
    assert ny > 35.0  # midtown: tens of km of built-up land (and water) all round
    assert 12.0 < paris < 20.0 and 5.0 < cairo < 15.0
    assert town < 3.0  # a small town in farmland
    assert 0.0 <= min(ny, paris, cairo, town) and max(ny, paris, cairo, town) <= U.DEPTH_CAP_KM


def test_core_depth_is_continuous_across_cell_borders_and_a_pure_function_of_location():
    lat = np.full(2001, 40.70)
    lon = np.linspace(-74.05, -73.85, 2001)  # 17 km across several 0.05 deg cells, 10 m steps
    d = U.core_depth_km(lat, lon)
    assert np.abs(np.diff(d)).max() < 0.2  # bilinear between cell centres: no 5 km steps
    again = np.array([_depth(a, b) for a, b in zip(lat[::250], lon[::250])])
    np.testing.assert_array_equal(again, d[::250])  # one point or many: the same value


def test_metro_factor_ramps_between_the_documented_depths():
    m = U.metro_factor(np.array([0.0, U.METRO_FROM_KM, 27.5, U.METRO_FULL_KM, 60.0]))
    np.testing.assert_allclose(m, [0.0, 0.0, 0.5, 1.0, 1.0])


def test_greyness_is_full_in_grey_cores_and_zero_in_green_towns():
    g = U.greyness(np.array([PARIS[0], CAIRO[0], IOWA_TOWN[0]]), np.array([PARIS[1], CAIRO[1], IOWA_TOWN[1]]))
    assert g[0] > 0.9 and g[1] == 1.0 and g[2] == 0.0


@pytest.mark.slow
def test_greyness_constants_come_from_the_calibration():
    c = U.calibration()
    assert abs(c["fringe"]["ndvi_max_p10_25_50_75_90"][2] - U.GREY_ZERO_NDVI) < 0.01
    assert abs(c["core"]["ndvi_max_p10_25_50_75_90"][1] - U.GREY_FULL_NDVI) < 0.01
    assert c["core"]["cells"] > 300 and c["fringe"]["cells"] > 10_000


@pytest.mark.slow
def test_midtown_is_taller_than_paris_and_both_match_their_references():
    from bench.cities import REFERENCE, earth_key, measure
    from generator.pyramid import open_world
    from runtime.tiles import TileKey

    earth = open_world("earth", 0, refiner="fractal")
    got = {}
    for name, (lat, lon) in (("New York", MIDTOWN), ("Paris", PARIS)):
        k = earth_key(lat, lon, 15)
        got[name] = measure(earth, [TileKey(15, k.x + i, k.y + j) for i in range(2) for j in range(2)])
    for name, m in got.items():
        (s0, s1), (h0, h1), _ = REFERENCE[name]
        assert s0 - 0.03 <= m["built_share"] <= s1 + 0.03, (name, m["built_share"])
        assert h0 <= m["height_p10_p50_p90"][1] <= h1, (name, m["height_p10_p50_p90"])
        assert m["water_under_buildings"] == 0 and m["steep_sites"] == 0
    assert got["New York"]["height_p10_p50_p90"][1] > 2 * got["Paris"]["height_p10_p50_p90"][1]
