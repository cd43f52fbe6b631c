"""`refine`: bring your own DEM, get detail; exact at the input samples; clear errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generator.dem import STRIP_SAMPLES, base_level, refine_dem
from runtime.tiles import spacing_m
from streaming.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEM = ROOT / "tests" / "data" / "bigtujunga_129.npz"


@pytest.mark.parametrize("refiner", ["fractal", "bicubic"])
def test_refine_keeps_input_samples_exactly(tmp_path, refiner):
    out = tmp_path / "out.npz"
    assert main(["refine", "--input", str(DEM), "--levels", "2", "--seed", "3", "--refiner", refiner,
                 "--out", str(out)]) == 0
    src, res = np.load(DEM), np.load(out)
    assert res["elev"].shape == (128 * 4 + 1, 128 * 4 + 1) and res["elev"].dtype == np.float32
    assert float(res["pixel_m"]) == pytest.approx(30.0 / 4)
    np.testing.assert_array_equal(res["elev"][::4, ::4], src["elev"])


def test_fractal_adds_detail_scaled_to_the_pixel_size():
    z = np.load(DEM)["elev"]
    frac, _ = refine_dem(z, 30.0, 1, 0, "fractal")
    cubic, _ = refine_dem(z, 30.0, 1, 0, "bicubic")
    detail = (frac - cubic)[1::2, 1::2]
    # the law at 30 m parent spacing times the terrain's roughness factor: metres, not km or mm
    assert 0.3 < float(detail.std()) < 5.0
    level, scale = base_level(30.0)
    assert spacing_m(level) * scale == pytest.approx(30.0)


def test_strips_do_not_change_values(monkeypatch):
    z = np.load(DEM)["elev"][:40, :50]
    whole, _ = refine_dem(z, 30.0, 1, 9, "fractal")
    monkeypatch.setattr("generator.dem.STRIP_SAMPLES", 7 * 52)  # 7-row strips
    strips, _ = refine_dem(z, 30.0, 1, 9, "fractal")
    assert STRIP_SAMPLES > 7 * 52
    np.testing.assert_array_equal(whole, strips)


def _write(tmp_path, **arrays):
    p = tmp_path / "in.npz"
    np.savez(p, **arrays)
    return p


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"elev": np.array([[1.0, np.nan], [2.0, 3.0]], np.float32), "pixel_m": 30.0}, "NaN"),
        ({"elev": np.zeros((4, 4, 3), np.float32), "pixel_m": 30.0}, "2-D"),
        ({"elev": np.zeros((1, 9), np.float32), "pixel_m": 30.0}, "2-D"),
        ({"elev": np.zeros((4, 4), np.float32), "pixel_m": -1.0}, "pixel_m"),
        ({"elev": np.zeros((4, 4), np.float32)}, "missing"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path, arrays, message):
    src = _write(tmp_path, **arrays)
    proc = subprocess.run([sys.executable, "-m", "streaming.cli", "refine", "--input", str(src),
                           "--levels", "1", "--out", str(tmp_path / "o.npz")],
                          capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("worldstream refine: error:") and message in lines[0]
    assert not (tmp_path / "o.npz").exists()
