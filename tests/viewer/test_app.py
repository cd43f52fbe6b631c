"""`worldstream fly --headless` end to end: in-process server on loopback, lockstep frames."""

import json

import numpy as np
from PIL import Image

from streaming.cli import main


def _fly(out, frames=3):
    code = main(["fly", "--headless", "--world", "plane", "--seed", "11", "--frames", str(frames),
                 "--size", "160x96", "--out", str(out)])
    assert code == 0
    return json.loads((out / "stats.json").read_text())


def test_headless_fly_writes_frames_video_and_stats_and_repeats_exactly(tmp_path):
    a = _fly(tmp_path / "a")
    assert a["frames"] == 3 and a["png_frames"] == 3 and a["world"] == "plane" and a["seed"] == 11
    assert a["hole_frames"] == 0 and a["frames_over_error_target"] == 0 and a["tiles_failed"] == 0
    assert a["tiles_received"] > 0 and a["triangles_max"] > 1000
    assert a["mp4"] and (tmp_path / "a" / "flight.mp4").stat().st_size > 1000
    img = np.asarray(Image.open(tmp_path / "a" / "frame_00002.png"))
    assert img.shape == (96, 160, 3) and img.std() > 5
    b = _fly(tmp_path / "b")
    assert b["hole_frames"] == 0 and b["triangles_max"] == a["triangles_max"]
    for i in range(3):
        fa = np.asarray(Image.open(tmp_path / "a" / f"frame_{i:05d}.png"))
        fb = np.asarray(Image.open(tmp_path / "b" / f"frame_{i:05d}.png"))
        assert np.array_equal(fa, fb), f"frame {i} differs between runs"
