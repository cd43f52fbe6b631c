"""Deep-cascade evaluation (generator.eval.cascade) on a synthetic fBm field."""

import numpy as np

from generator.eval.cascade import cascade, measure, octave_psd_ratios, run, wins
from generator.fractal import FractalRefiner


def _fbm(n: int = 129, hurst: float = 0.8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    k[0, 0] = 1.0
    spec = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) * k ** (-(1 + hurst))
    z = np.fft.ifft2(spec).real
    return (z / z.std() * 100.0).astype(np.float32)


def test_real_field_scores_perfect_and_bicubic_loses_fine_power():
    z = _fbm()
    m = measure(z, z, 30.0, 3)
    assert m["psd"] == 0.0 and m["slope_w1_deg"] == 0.0 and m["relief"] == 0.0
    assert m["psd_ratio"] == [1.0, 1.0, 1.0]
    smooth = cascade(None, z[::8, ::8], 30.0, 3, 0)
    assert smooth.shape == z.shape
    np.testing.assert_array_equal(smooth[::8, ::8], z[::8, ::8])  # nested: coarse samples kept
    r = octave_psd_ratios(smooth[8:-8, 8:-8], z[8:-8, 8:-8], 30.0, 3)
    assert r[0] < 0.05 < r[2]  # interpolation: the finest octave nearly empty


def test_run_and_wins_on_a_synthetic_crop():
    z = _fbm(seed=1)
    table = run({"fbm": (z, 30.0)}, {"bicubic": None, "fractal": FractalRefiner()}, levels=(3,),
                log=lambda s: None)
    row = table["fbm"][3]
    assert set(row) == {"bicubic", "fractal"} and len(row["fractal"]["psd_ratio"]) == 3
    w = wins(table, "fractal", ("bicubic",))
    assert w["cells"] == 4 and 0.0 <= w["beats_all"] <= 1.0
    # the procedural detail puts power in the finest octave, bicubic does not
    assert row["fractal"]["psd_ratio"][0] > 10 * row["bicubic"]["psd_ratio"][0]


def test_small_metrics_keep_their_digits():
    """A field in kilometres of relief at 1 km spacing has curvature W1 of order 1e-5 1/m: the
    table keeps 5 significant digits, so two refiners do not tie by rounding (a tie is a loss)."""
    z = _fbm(seed=2) * 0.5
    table = run({"fbm": (z, 1000.0)}, {"bicubic": None, "fractal": FractalRefiner()}, levels=(3,),
                log=lambda s: None)
    row = table["fbm"][3]
    b, f = row["bicubic"]["curv_w1"], row["fractal"]["curv_w1"]
    assert 0.0 < b < 1e-3 and 0.0 < f < 1e-3
    assert b != f
    assert round(b, 5) != b and round(f, 5) != f  # finer than the former 5 decimals
    assert row["bicubic"]["psd_ratio"][0] > 0.0  # tiny ratios are not rounded to 0


def test_figure_draws_a_row_per_crop_real_first(tmp_path):
    from PIL import Image

    from generator.eval.cascade import figure

    crops = {"a": (_fbm(seed=2), 30.0), "b": (_fbm(seed=3), 30.0)}
    figure(crops, {"bicubic": None, "fractal": FractalRefiner()}, 3, tmp_path / "f.png", size=64)
    img = np.asarray(Image.open(tmp_path / "f.png"))
    assert img.shape == (16 + 2 * (64 + 16), 3 * (64 + 4))
    real = img[30:94, 0:64].astype(float)
    smooth = img[30:94, 68:132].astype(float)
    # the real crop's shading varies more than bicubic's from an 8x coarser start
    assert np.abs(np.diff(real, axis=1)).mean() > 2 * np.abs(np.diff(smooth, axis=1)).mean()
