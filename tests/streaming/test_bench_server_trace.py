"""bench/server_trace/sitecustomize.py (`bench/realtime_trace.py --server-trace`) still fits
TileService: in a process started with the hook on its path and WORLDSTREAM_BENCH_TRACE set,
one real tile leaves its ask, queueing, batch and finish in order, with the key and the priority."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio
from runtime.tiles import TileKey, World
from streaming.cli.compose import open_world
from streaming.tileservice import ServiceConfig, TileService

pyr = open_world(World.PLANE, 0, "fractal")

async def main():
    service = TileService("plane", pyr.tiles, ServiceConfig(batch_wait_s=0))
    await service.start()
    try:
        frame = await asyncio.wait_for(service.get(TileKey(3, 1, 2), 7.5, owner="t"), 120)
    finally:
        await service.close()
    assert len(frame) > 100

asyncio.run(main())
"""


def test_the_server_trace_hook_times_one_tile(tmp_path):
    prefix = tmp_path / "server"
    env = {**os.environ, "WORLDSTREAM_BENCH_TRACE": str(prefix),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "server_trace"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    files = list(tmp_path.glob("server.*"))
    assert len(files) == 1  # one process logged: the one that served
    events = [ast.literal_eval(line) for line in files[0].read_text().splitlines()]
    assert [e[1] for e in events] == ["get", "queued", "dispatch", "back", "finish"]
    times = [e[0] for e in events]
    assert times == sorted(times)
    assert events[0][2:] == ((3, 1, 2), 7.5)
    assert events[1][2:] == ((3, 1, 2), False)
    assert events[2][2:] == (-1, [(3, 1, 2)])
    assert events[3][2:] == (-1, [(3, 1, 2)], [False])
    assert events[4][2] == (3, 1, 2)


def test_without_the_variable_nothing_is_patched(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "server_trace"), str(ROOT)])}
    env.pop("WORLDSTREAM_BENCH_TRACE", None)
    code = "import streaming.tileservice as T; print(T.TileService.get.__name__)"
    done = subprocess.run([sys.executable, "-c", code],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "get"
