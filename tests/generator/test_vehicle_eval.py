"""Vehicle-scale evaluation (generator.eval.vehicle) on synthetic grids (no real data needed)."""

import numpy as np

from generator.eval.vehicle import DEMS, cascade_rows, extrema_per_1000
from generator.fractal import V4, FractalConfig


def test_extrema_count_strict_peaks_and_pits_only():
    y, x = np.mgrid[0:41, 0:41].astype(np.float64)
    assert extrema_per_1000(x + 0.5 * y) == 0.0  # a plane has none
    bump = -((x - 20) ** 2 + (y - 20) ** 2)
    np.testing.assert_allclose(extrema_per_1000(bump), 1000.0 / 39**2)  # one summit among 39 x 39 inner samples
    assert extrema_per_1000(np.zeros((10, 10))) == 0.0  # ties are not extrema


def _fbm(n: int, seed: int, hurst: float = 0.8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    k[0, 0] = 1.0
    z = np.fft.ifft2((rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) * k ** (-(1 + hurst))).real
    return (z / z.std() * 60.0).astype(np.float32)


def test_cascade_rows_on_synthetic_dems(tmp_path):
    for i, (name, (folder, _)) in enumerate(DEMS.items()):
        (tmp_path / folder).mkdir(exist_ok=True)
        z = _fbm(150, i)
        np.savez(tmp_path / folder / f"{name}.npz", elev=z, pixel_m=np.float64(10.0))
    rows = cascade_rows(tmp_path, {"fractal_v4": V4, "fractal": FractalConfig()}, levels=(3,), seeds=(0,))
    assert {r["refiner"] for r in rows} == {"bicubic", "fractal_v4", "fractal"}
    assert len(rows) == 3 * len(DEMS)
    for r in rows:
        assert r["K"] == 3 and r["slope_w1_deg"] >= 0.0 and r["extrema_per_1000_real"] >= 0.0
    bic = [r for r in rows if r["refiner"] == "bicubic"]
    frac = [r for r in rows if r["refiner"] == "fractal"]
    # interpolation empties the finest octave; the fractal refiner puts power back (far less than
    # this white-ish field has: ~3 % here) and gets the slopes closer
    for b, f in zip(bic, frac, strict=True):
        assert f["finest_octave_power"] > 10 * b["finest_octave_power"]
        assert f["slope_w1_deg"] < b["slope_w1_deg"] and f["median_gen_deg"] > b["median_gen_deg"]
