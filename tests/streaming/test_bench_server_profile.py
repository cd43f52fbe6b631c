"""bench/server_profile (`bench/throughput.py` with WORLDSTREAM_BENCH_PROFILE, `PROFILE=1
bench/throughput_device.sh`): a process started with the hook on its path profiles exactly
while DIR/window exists, writes its statistics and CPU seconds when the window closes, and
report.py names the work it did."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, sys, time
window = os.path.join(sys.argv[1], "window")

def busy_in_window(seconds):  # named so that the report can be checked for it
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        sum(i * i for i in range(1000))

time.sleep(0.5)
open(window, "w").close()
time.sleep(0.6)  # the hook looks every 0.2 s
busy_in_window(0.5)
os.unlink(window)
time.sleep(0.6)
busy_in_window(0.3)  # after the window: not in the dump
"""


def test_the_profile_hook_covers_only_the_window(tmp_path):
    env = {**os.environ, "WORLDSTREAM_BENCH_PROFILE": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "server_profile"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    metas = list(tmp_path.glob("*.json"))
    assert len(metas) == 1 and metas[0].with_suffix(".prof").exists()
    info = json.loads(metas[0].read_text())
    assert info["pid"] > 0
    assert 0.45 <= info["cpu_s"] < 0.75  # the 0.5 s of work in the window, not the 0.3 s after it
    assert 1.0 <= info["wall_s"] < 3.0
    report = subprocess.run([sys.executable, str(ROOT / "bench" / "server_profile" / "report.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "1 processes" in report.stdout
    assert "busy_in_window" in report.stdout
    assert "-- by tottime" in report.stdout and "-- by cumulative" in report.stdout


def test_without_the_variable_nothing_is_profiled(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "server_profile"), str(ROOT)])}
    env.pop("WORLDSTREAM_BENCH_PROFILE", None)
    code = "import sys, threading; print(sorted(t.name for t in threading.enumerate()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bench-profile" not in done.stdout
