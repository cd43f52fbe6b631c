"""Realism measures of generator.eval.learned on fields with known answers."""

import numpy as np
import pytest

from generator.eval.learned import (
    curvature,
    evaluate_region,
    hillshade,
    metrics,
    psd_slope,
    slope_deg,
    trim_voids,
)


def _fbm(n, beta, seed):
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    k[0, 0] = 1.0
    spec = k ** (-beta / 2) * np.exp(2j * np.pi * rng.uniform(size=(n, n)))
    spec[0, 0] = 0
    return np.real(np.fft.ifft2(spec)) * 100


def test_psd_slope_of_synthetic_fbm():
    assert psd_slope(_fbm(256, 3.0, 0)) == pytest.approx(-3.0, abs=0.3)
    assert psd_slope(_fbm(256, 2.0, 1)) == pytest.approx(-2.0, abs=0.3)


def test_slope_and_curvature_of_known_surfaces():
    x = np.arange(50.0) * 10.0
    ramp = np.tile(x, (50, 1)) * 0.1  # 10 % grade
    assert np.allclose(slope_deg(ramp, 10.0), np.degrees(np.arctan(0.1)))
    bowl = (x[None] ** 2 + x[:, None] ** 2) / 1000.0
    assert np.allclose(curvature(bowl, 10.0), 4.0 / 1000.0)


def test_a_field_against_itself_scores_zero():
    z = _fbm(64, 3.0, 2)
    m = metrics(z, z, 30.0)
    assert m["psd_slope_err"] == 0 and m["slope_w1_deg"] == 0 and m["curv_w1"] == 0 and m["rmse_m"] == 0


def test_bicubic_baseline_is_smoother_than_real():
    z = _fbm(129, 2.5, 3).astype(np.float32)
    res = evaluate_region(z, 30.0, {"bicubic": None})
    assert res["bicubic"]["psd_slope"] < psd_slope(z[4:-4, 4:-4]) - 0.5  # steeper: missing detail
    assert res["bicubic"]["slope_w1_deg"] > 0
    assert np.array_equal(res["bicubic"]["field"][::4, ::4], z[::4, ::4])


def test_trim_voids_and_hillshade():
    z = np.ones((20, 30))
    z[0, :] = np.nan
    z[:, 29] = np.nan
    assert trim_voids(z).shape == (19, 29)
    h = hillshade(np.zeros((8, 8)), 10.0)
    assert h.dtype == np.uint8 and np.all(h == int(np.sin(np.radians(45)) * 255))
