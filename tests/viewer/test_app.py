"""`worldstream fly --headless` end to end: in-process server on loopback, lockstep frames."""

import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_teleport_path
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
    assert b["hole_frames"] == 0 and b["triangles_max"] == a["triangles_max"]  # tile arrivals vary; frames do not
    for i in range(3):
        fa = np.asarray(Image.open(tmp_path / "a" / f"frame_{i:05d}.png"))
        fb = np.asarray(Image.open(tmp_path / "b" / f"frame_{i:05d}.png"))
        assert np.array_equal(fa, fb), f"frame {i} differs between runs"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run for a GLFW window")
def test_window_mode_runs_free_flight_with_hud_under_xvfb(tmp_path):
    """The interactive path (GLFW window, free-flight controller, HUD) runs in real time."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("DISPLAY", None)
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 800x600x24", sys.executable, "-m", "streaming.cli", "fly",
           "--world", "plane", "--seed", "11", "--frames", "40", "--size", "320x200", "--out", str(tmp_path)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == 40 and stats["lockstep"] is False and stats["png_frames"] == 0


def test_headless_realtime_follows_the_wall_clock_and_times_the_teleport(tmp_path):
    """--realtime: poses from the wall clock (3 s of path, 30 frames/s at most), tiles drawn as
    they arrive, a teleport (cut keyframe) timed to a complete view; PNGs as usual."""
    path = tmp_path / "path.json"
    write_teleport_path(path)
    out = tmp_path / "rt"
    code = main(["fly", "--headless", "--realtime", "--world", "plane", "--seed", "11", "--frames", "90",
                 "--size", "96x64", "--out", str(out), "--path", str(path), "--error-target-px", "8"])
    assert code == 0
    s = json.loads((out / "stats.json").read_text())
    assert s["realtime"] is True and s["lockstep"] is False and s["path_s"] == 3.0
    # Frames follow the clock: never more than the path's 90 frames (pacing), a slow one skips poses.
    assert 1 <= s["frames"] <= 90 and s["png_frames"] == s["frames"]
    assert s["frames"] + s["poses_skipped"] == 90
    (tele,) = s["teleport_complete_s"]  # one teleport; None only if the view never completed
    assert tele is None or 0.0 < tele < 2.5
    (coarse,) = s["teleport_coarse_s"]  # the coarse cover comes no later than the complete view
    assert coarse is None or (0.0 <= coarse < 2.5 and (tele is None or coarse <= tele))
    assert s["tiles_received"] > 0 and s["tile_latency_ms_p50"] > 0 and s["client_ms_per_tile"] > 0
    assert 0.0 <= s["frac_over_error_target"] <= 1.0 and s["stall_ms_max"] >= s["tile_ms_max"] > 0
    # Loading screen: roots first, then the first pose's complete view (10 s at most) before the clock.
    assert s["loading_complete"] is True and 0.0 < s["boot_s"] <= s["loading_s"] < 10.0
    # What existed before the flight (modules, kernels, the first view) was kept out of the
    # collector's full passes during it (a pass over it cost one frame 40-110 ms), and let go after.
    assert s["gc_frozen"] > 10_000 and gc.get_freeze_count() == 0


def test_the_frame_pacing_reads_the_clock_once():
    """A frame that ends just before its deadline sleeps what was left when the clock was read
    (before, a second read could land past the deadline: time.sleep(negative) raised and ended a
    real-time flight); one that ends after it does not sleep."""
    from viewer.realtime import pace

    slept = []
    ticks = iter([9.999999, 10.5])  # a second read would be past the deadline
    assert pace(10.0, clock=lambda: next(ticks), sleep=slept.append) is True
    assert slept == [pytest.approx(1e-6)]
    assert pace(10.0, clock=lambda: 10.0, sleep=slept.append) is False and len(slept) == 1


def test_the_video_keeps_the_frame_size(tmp_path):
    """960 x 540 (the default fly) is not a multiple of 8 or 16: the MP4 keeps the frames' size
    (no stretch to 960 x 544) and their content."""
    imageio = pytest.importorskip("imageio.v2")
    from viewer.app import _write_mp4

    frames = []
    for i in range(3):
        img = np.zeros((54, 100, 3), np.uint8)
        img[:, : 30 + 10 * i] = (200, 120, 40)  # a bar that grows frame by frame
        frames.append(tmp_path / f"f{i}.png")
        Image.fromarray(img).save(frames[-1])
    path = _write_mp4(tmp_path / "v.mp4", frames, 10.0)
    if path is None:
        pytest.skip("no ffmpeg for imageio here")
    reader = imageio.get_reader(path)
    try:
        assert tuple(reader.get_meta_data()["size"]) == (100, 54)
        first = reader.get_data(0)
    finally:
        reader.close()
    assert first.shape == (54, 100, 3)
    assert abs(int(first[27, 10, 0]) - 200) < 24 and int(first[27, 80].max()) < 24  # the bar, then black


def test_guess_levels_reach_the_selection_and_bad_values_are_refused(capsys):
    from runtime.lod.selection import SPECULATIVE_LEVELS
    from streaming.cli import build_parser
    from viewer.app import FlyOptions
    from viewer.flight import Flight
    from viewer.realtime import NullRenderer

    class Client:
        def poll(self):
            return []

        def wait(self, timeout_s):
            time.sleep(timeout_s)

    assert build_parser().parse_args(["fly"]).guess_levels == SPECULATIVE_LEVELS
    args = build_parser().parse_args(["fly", "--guess-levels", "4"])
    for realtime in (False, True):
        opts = FlyOptions(guess_levels=args.guess_levels, realtime=realtime, place_procs=0)
        flight = Flight("plane", Client(), NullRenderer((32, 32)), opts.flight)
        try:
            assert flight.streamer.options.selection.speculative_levels == 4
        finally:
            flight.close()
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["fly", "--guess-levels", "-1"])
    assert info.value.code == 2 and "guess levels" in capsys.readouterr().err
