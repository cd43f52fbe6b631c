"""``worldstream height`` (streaming/cli/height.py): ground truth at points from the local pyramid."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from runtime.ground import DEFAULT_LEVEL, enu_to_ecef
from runtime.tiles import T, TileKey, spacing_m
from streaming.cli import main
from streaming.cli.height import ground_query

ROOT = Path(__file__).resolve().parents[2]
SEA, LAND = "0,0", "-3000000,0"  # plane seed 0: open ocean (~-4950 m), inland (~490 m)


@dataclass(frozen=True)
class _Fields:
    height: np.ndarray


def tilted_tiles(h0: float, ge: float, gn: float):
    """A tile source of h = h0 + ge * east + gn * north (plane metres)."""

    def tiles(keys: list[TileKey]):
        out = []
        for k in keys:
            r0, c0 = k.sample_origin()
            rows, cols = np.mgrid[r0:r0 + T + 1, c0:c0 + T + 1].astype(np.float64)
            s = spacing_m(k.level)
            out.append(_Fields((h0 + ge * cols * s - gn * rows * s).astype(np.float32)))
        return out

    return tiles


def test_ground_query_on_a_tilted_plane_gives_the_analytic_enu_normal():
    pts = np.array([[10.0, 20.0], [500.0, -300.0], [1e6, -2e6]])
    ans = ground_query("plane", tilted_tiles(100.0, 0.3, -0.2), pts[:2])
    want = np.array([-0.3, 0.2, 1.0]) / math.sqrt(0.09 + 0.04 + 1.0)
    np.testing.assert_allclose(ans["normal_enu"], [want, want], atol=1e-5)
    np.testing.assert_allclose(ans["ground_m"], 100.0 + 0.3 * pts[:2, 0] - 0.2 * pts[:2, 1], atol=1e-3)
    assert ans["level"] == DEFAULT_LEVEL and not ans["is_water"].any() and np.isnan(ans["water_m"]).all()
    sea = ground_query("plane", tilted_tiles(-30.0, 0.0, 1e-6), pts, level=12)
    assert sea["is_water"].all() and (sea["water_m"] == 0.0).all() and sea["level"] == 12
    np.testing.assert_allclose(sea["normal_enu"], [[0.0, 0.0, 1.0]] * 3, atol=1e-5)


def test_enu_to_ecef_is_the_local_basis():
    # lon 0, lat 0: east = +y, north = +z, up = +x; lon 90, lat 45: up = (0, cos, sin).
    v = enu_to_ecef("earth", [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [90.0, 45.0]],
                    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
    r = math.sqrt(0.5)
    np.testing.assert_allclose(v, [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, r, r]], atol=1e-15)
    np.testing.assert_array_equal(enu_to_ecef("plane", [[5.0, 6.0]], [[0.6, 0.0, 0.8]]), [[0.6, 0.0, 0.8]])


def _json_lines(capsys, argv) -> list[dict]:
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_at_sea_and_on_land(capsys):
    rows = _json_lines(capsys, ["height", "--refiner", "fractal", f"--at={SEA};{LAND}", "--json"])
    assert [sorted(r) for r in rows] == [["at", "ground_m", "is_water", "level", "normal_enu", "water_m"]] * 2
    sea, land = rows
    assert sea["is_water"] is True and sea["water_m"] == 0.0 and sea["ground_m"] < -4000.0
    assert land["is_water"] is False and land["water_m"] is None and land["ground_m"] > 300.0
    for r in rows:
        assert r["level"] == DEFAULT_LEVEL
        assert math.isclose(math.hypot(*r["normal_enu"]), 1.0, abs_tol=1e-12) and r["normal_enu"][2] > 0
    text = main(["height", "--refiner", "fractal", f"--at={SEA}"])
    assert text == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("0,0  ground_m=-") and "water_m=0.000  is_water=true" in line and "level=16" in line


def test_fresh_processes_and_orders_agree(capsys):
    here = _json_lines(capsys, ["height", "--refiner", "fractal", f"--at={LAND};{SEA};100,-50", "--json"])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "streaming.cli", "height", "--refiner", "fractal",
                          f"--at=100,-50;{SEA};{LAND}", "--json"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    there = [json.loads(line) for line in out.stdout.splitlines()]
    assert there[::-1] == here


@pytest.mark.parametrize("argv,message", [
    (["--at", "1,2,3"], "--at must be X,Y"),
    (["--at", "nan,1"], "--at must be X,Y"),
    (["--world", "earth", "--at", "200,10"], "lon in [-180, 180]"),
    (["--at", "1,2", "--level", "25"], "level must be in [0, 24]"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        rc = main(["height", "--refiner", "fractal", *argv])
        raise SystemExit(rc)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_documented_plane_command_prints_what_the_doc_shows(capsys):
    import shlex

    doc = (ROOT / "docs" / "SIMULATOR.md").read_text()
    lines = doc.split("worldstream height --world plane", 1)[1].splitlines()
    argv = ["height", "--world", "plane", *shlex.split(lines[0])]
    shown = [json.loads(line.replace("...", "")) for line in lines[1:3]]
    rows = _json_lines(capsys, argv)
    assert len(rows) == len(shown) == 2
    for got, want in zip(rows, shown):
        assert got["at"] == want["at"] and got["is_water"] == want["is_water"] and got["water_m"] == want["water_m"]
        assert abs(got["ground_m"] - want["ground_m"]) < 1e-3
        np.testing.assert_allclose(got["normal_enu"], want["normal_enu"], atol=1e-4)


def test_earth_sea_off_iceland_is_water_at_the_surface(capsys):
    """The issue's case: a height query off Iceland returned the sea floor and nothing else."""
    sea, summit = _json_lines(capsys, ["height", "--world", "earth", "--refiner", "fractal",
                                       "--at=-25,64;6.8652,45.8326", "--json"])
    assert sea["is_water"] is True and sea["water_m"] == 0.0 and sea["ground_m"] < -50.0
    assert summit["is_water"] is False and summit["water_m"] is None and summit["ground_m"] > 1500.0
