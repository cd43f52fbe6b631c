"""Earth-fidelity evaluation: DEM geolocation and the agreement measures."""

import numpy as np

from generator.anchors.geodesy import dem_to_lonlat
from generator.eval.earth import agreement


def test_projected_dem_centres_land_where_the_data_says():
    # (crs, transform [x0, dx, y0, dy], shape, centre lon/lat stored with the DEM by its packager)
    cases = [("EPSG:32611 (WGS 84 / UTM 11N)", (376313.655, 30.0, 3807917.83, -30.0), (643, 1197),
              (-118.14922867, 34.32033417)),
             ("EPSG:2193 (NZGD2000 / New Zealand Transverse Mercator 2000)",
              (995456.546, 1000.0, 6191960.93, -1000.0), (1450, 1115), (172.44108258, -40.94713611))]
    for crs, (x0, dx, y0, dy), (h, w), (lon_c, lat_c) in cases:
        lat, lon = dem_to_lonlat(crs)(x0 + w / 2 * dx, y0 + h / 2 * dy)
        assert abs(lat - lat_c) < 2e-4 and abs(lon - lon_c) < 2e-4, (crs, lat, lon)  # < 20 m
    lat, lon = dem_to_lonlat("local equirectangular (WGS84 scales) about lon 7.000000, lat 43.500000: "
                             "x_m = (lon - 7.000000) * 80876.678, y_m = (lat - 43.500000) * 111102.484")(
        80876.678, -111102.484)
    assert np.allclose([lat, lon], [42.5, 8.0])


def test_agreement_measures():
    rng = np.random.default_rng(0)
    real = np.cumsum(np.cumsum(rng.normal(size=(64, 64)), axis=0), axis=1) * 10.0
    same = agreement(real, real, 100.0)
    assert same["rmse_m"] == 0.0 and same["bias_m"] == 0.0 and same["slope_w1_deg"] == 0.0
    assert np.isclose(same["corr"], 1.0) and np.isclose(same["relief_ratio"], 1.0)
    flat = agreement(real, 0.5 * real + 20.0, 100.0)
    assert np.isclose(flat["relief_ratio"], 0.5) and np.isclose(flat["corr"], 1.0)
    assert np.isclose(flat["bias_m"], np.mean(20.0 - 0.5 * real))
    assert flat["slope_w1_deg"] > 0.0
