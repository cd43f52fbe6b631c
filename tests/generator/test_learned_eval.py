"""generator.eval.learned: the region protocol on fields with known answers, measured with
generator.eval.metrics (the one yardstick)."""

import numpy as np
import pytest

from generator.eval import metrics
from generator.eval.learned import evaluate_region, measures, trim_voids


def _fbm(n, beta, seed):
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    k[0, 0] = 1.0
    spec = k ** (-beta / 2) * np.exp(2j * np.pi * rng.uniform(size=(n, n)))
    spec[0, 0] = 0
    return np.real(np.fft.ifft2(spec)) * 100


def test_a_field_against_itself_scores_zero():
    z = _fbm(64, 3.0, 2)
    m = measures(z, z, 30.0)
    assert m["psd_slope_abs_err"] == 0 and m["slope_w1_deg"] == 0 and m["curvature_w1_per_m"] == 0
    assert m["hypsometric_abs_err"] == 0 and m["rmse_m"] == 0


def test_measures_are_the_metrics_module_plus_errors_and_rmse():
    real, gen = _fbm(96, 3.0, 4), _fbm(96, 2.5, 5)
    m = measures(real, gen, 25.0)
    for k, v in metrics.realism(real, gen, 25.0).items():
        assert m[k] == v, k
    assert m["psd_slope_abs_err"] == pytest.approx(abs(m["psd_slope"] - m["psd_slope_real"]))
    assert m["rmse_m"] == pytest.approx(np.sqrt(np.mean((gen - real) ** 2)))


def test_bicubic_baseline_is_smoother_than_real():
    z = _fbm(129, 2.5, 3).astype(np.float32)
    res = evaluate_region(z, 30.0, {"bicubic": None})
    r = res["bicubic"]
    assert r["psd_slope_real"] == pytest.approx(metrics.psd_slope(z[4:-4, 4:-4], 30.0))
    assert r["psd_slope"] < r["psd_slope_real"] - 0.5  # steeper: missing detail
    assert r["slope_w1_deg"] > 0 and r["curvature_w1_per_m"] > 0
    assert np.array_equal(res["bicubic"]["field"][::4, ::4], z[::4, ::4])
    assert res["_level"] == 11  # 30 m is nearest (in log2) to level 11 (38 m)


def test_trim_voids_drops_border_rows_and_columns_with_voids():
    z = np.ones((20, 30))
    z[0, :] = np.nan
    z[:, 29] = np.nan
    assert trim_voids(z).shape == (19, 29)
    assert np.isfinite(trim_voids(z)).all()
