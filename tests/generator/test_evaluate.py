"""`eval`: contracts hold on both worlds, realism table and figure from real crops, graceful skip."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.commands import main
from generator.eval import evaluate

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"


@pytest.mark.slow
def test_eval_reports_contracts_realism_and_figure(tmp_path):
    data = tmp_path / "data"
    (data / "dem").mkdir(parents=True)
    shutil.copy(DATA / "bigtujunga_129.npz", data / "dem" / "bigtujunga.npz")
    lines = []
    report = evaluate.run(data, tmp_path / "out", levels=2, seed=1, as_json=True, print_fn=lines.append)
    assert json.loads(lines[0])["contracts"]["plane"]["seam_max_m"] == 0.0
    for world in ("plane", "earth"):
        c = report["contracts"][world]
        assert c["seam_max_m"] == 0.0 and c["nesting_max_m"] == 0.0
        assert c["order_independent"] and c["batch_and_cache_independent"] and c["process_independent"]
    row = report["realism"]["per_dem"]["bigtujunga"]
    assert set(evaluate.refiners_to_compare()) <= set(row)
    assert row["bicubic"]["psd_slope"] < row["fractal"]["psd_slope"]
    assert report["realism"]["mean"]["fractal"]["n_dems"] == 1
    img = np.asarray(Image.open(report["figure"]))
    assert img.shape[0] == 129 and img.shape[1] == 129 * (1 + len(evaluate.refiners_to_compare()))


def test_eval_without_data_skips_realism_with_a_clear_message(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "realism skipped: no DEMs under" in out and "nowhere" in out
    assert "plane" in out and "earth" in out
