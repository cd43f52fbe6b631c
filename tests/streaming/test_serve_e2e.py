"""The composed server (generator.pyramid -> TileService -> TileServer, as `worldstream
serve` builds it): real tiles, heights from the pyramid, and a server process killed
with SIGKILL while writing its store, then restarted on the same store."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest
from stream_fixtures import run
from websockets.asyncio.client import connect

from runtime.tiles import TileKey, World, spacing_m
from streaming import protocol as P
from streaming.cli import build_server
from streaming.client import TileClient
from streaming.store import TileStore

ROOT = Path(__file__).resolve().parents[2]
pyramid = pytest.importorskip("generator.pyramid")


def test_served_tiles_and_heights_match_the_pyramid(tmp_path):
    keys = [TileKey(9, 3, -2), TileKey(9, 4, -2)]
    pyr = pyramid.open_world("plane", 5, refiner="fractal")

    async def main():
        server = build_server(World.PLANE, 5, "fractal", store_dir=str(tmp_path))
        port = await server.start("127.0.0.1", 0)
        try:
            c = TileClient()
            hello = await c.connect(f"ws://127.0.0.1:{port}", expect={"world": "plane", "seed": 5})
            tiles = await c.fetch(keys)
            s = spacing_m(9)
            # Sample (10, 20) of tile (9, 3, -2) and a point a third of the way to the next sample.
            r0, c0 = keys[0].sample_origin()
            pts = np.array([[(c0 + 20) * s, -(r0 + 10) * s], [(c0 + 20 + 1 / 3) * s, -(r0 + 10) * s]])
            best = await c.heights(pts, "best", level=9)
            await c.close()
            return hello, tiles, best
        finally:
            await server.close()

    hello, tiles, best = run(main(), 120)
    assert hello.model == pyr.model_id
    fields = {f.key: f for f in pyr.tiles(keys)}
    for k in keys:
        t = tiles[k]
        rc = t.grid_rc.astype(np.int64)
        assert t.model == pyr.model_id
        assert np.abs(t.height_m - fields[k].height[rc[:, 0], rc[:, 1]]).max() <= t.height_step_m
    h = fields[keys[0]].height.astype(np.float64)
    assert best["level"].tolist() == [9, 9]  # the asked level, held or not
    assert best["height_m"][0] == pytest.approx(h[10, 20], abs=1e-4)
    assert best["height_m"][1] == pytest.approx(h[10, 20] * 2 / 3 + h[10, 21] / 3, abs=1e-4)
    assert np.allclose(np.linalg.norm(best["normal"], axis=1), 1.0)


def _start_server(store: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streaming.cli",
            "serve",
            "--world",
            "plane",
            "--seed",
            "3",
            "--refiner",
            "fractal",
            "--port",
            "0",
            "--store",
            str(store),
            "--max-batch",
            "4",
            "--batch-wait-ms",
            "0",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
    assert m, f"server did not start: {line!r}"
    return proc, int(m.group(1))


def test_server_killed_mid_write_restarts_on_its_store(tmp_path):
    keys = [TileKey(10, x, y) for x in range(6) for y in range(5)]
    wire_keys = [P.key_to_wire(k) for k in keys]

    async def fetch(port, n):
        ws = await connect(f"ws://127.0.0.1:{port}", compression=None, max_size=16 << 20)
        await ws.send(P.pack({"type": "hello", "protocol": 1, "credits": 1000}))
        await ws.send(P.pack({"type": "request", "keys": wire_keys}))
        got = {}
        while len(got) < n:
            msg = msgpack.unpackb(await ws.recv(), raw=False)
            if msg["type"] == "tile":
                got[tuple(msg["key"])] = msg
        await ws.close()
        return got

    proc, port = _start_server(tmp_path)
    try:
        before = run(fetch(port, 3), 60)  # three tiles out: the server is writing the rest
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    stored_at_kill = len(list(tmp_path.rglob("*.tile")))
    assert stored_at_kill < len(keys)
    proc, port = _start_server(tmp_path)
    try:
        after = run(fetch(port, len(keys)), 120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert set(after) == {tuple(k) for k in wire_keys}
    for k, msg in before.items():
        assert after[k] == msg  # same bytes from the store as before the kill
    store = TileStore(tmp_path, pyramid.open_world("plane", 3, refiner="fractal").model_id, "plane", 3)
    assert all(store.get(k) is not None for k in keys) and store.stats().corrupt == 0
