"""``serve --gen-procs``: generation, meshing and encoding in worker processes (streaming/genprocs.py).

Live servers (``build_server``, the production composition, fractal refiner) on 127.0.0.1:
the frames a client gets with 2 generator workers are the ones it gets with the generator
thread, on both worlds; a worker killed while idle or while it holds a key is started again
and the key is still answered (right bytes); an idle worker takes a busy one's key; a key
cancelled while it waits for its worker never reaches it; the workers' frames go to the
store a server without workers reads; closing the server, or killing it, leaves no worker process.
Waits are on the service's own state (polled), never on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from stream_fixtures import run

from runtime.tiles import TileKey, World
from streaming import genprocs
from streaming.client import ServerError, TileClient
from streaming.genprocs import ShardedQueue, shard_of

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
KEYS = {
    World.PLANE: [TileKey(3, 2, 2), TileKey(6, 17, 19), TileKey(9, 139, 150), TileKey(9, 140, 150),
                  TileKey(10, -5, 7), TileKey(10, 278, 301)],
    World.EARTH: [TileKey(0, 1, 0), TileKey(3, 8, 2), TileKey(6, 67, 15), TileKey(8, 266, 62),
                  TileKey(9, 533, 125), TileKey(9, 537, 125)],
}


def test_shard_of_keeps_a_group_of_tiles_together_and_spreads_groups():
    group = {shard_of(TileKey(12, 4 * 37 + i, 4 * -11 + j), 5) for i in range(4) for j in range(4)}
    assert len(group) == 1  # one ancestor two levels up: one worker
    counts = [0] * 3
    for gx in range(12):
        for gy in range(12):
            counts[shard_of(TileKey(10, 4 * gx, 4 * gy), 3)] += 1
    assert sum(counts) == 144 and min(counts) >= 30  # 144 groups over 3 workers, none starved
    around = {shard_of(TileKey(14, 4 * (500 + i), 4 * (-70 + j)), 12) for i in range(3) for j in range(3)}
    assert len(around) == 9  # the 3 x 3 groups around a camera: 9 different workers


def test_sharded_queue_routes_each_key_to_its_shard():
    q = ShardedQueue(3, lambda k: k % 3)
    for k in range(9):
        q.push("a", k, float(k))
    assert len(q) == 9 and 4 in q and q.owner(4) == "a"
    assert q.remove(4) and 4 not in q and len(q) == 8 and len(q.shard(1)) == 2
    assert [q.shard(1).pop(), q.shard(1).pop()] == [7, 1]  # its own keys, highest priority first
    assert q and len(q) == 6 and q.heap_entries() >= 6
    q.pin(1, 2)  # a key stolen by shard 2 and preempted there: its next steps in shard 2
    assert q.where(1) == 2 and q.push("a", 1, 9.0) and 1 in q and len(q.shard(2)) == 4 and q.shard(2).pop() == 1
    q.unpin(1)
    assert q.where(1) == 1 and q.where(5) == 2


async def _server(world: World, gen_procs: int, **kw):
    from streaming.cli.compose import build_server
    from streaming.server import ServerConfig

    server = build_server(world, SEED, "fractal", gen_procs=gen_procs, **kw)
    server.config = replace(server.config, loop_share=1.0, loop_burst_s=10.0)  # a test client floods
    port = await server.start("127.0.0.1", 0)
    assert isinstance(server.config, ServerConfig)
    return server, f"ws://127.0.0.1:{port}"


async def _frames(url: str, keys: list[TileKey], points=None) -> dict:
    """The payloads of ``keys`` (and with ``points``, their height query's answer under "heights")."""
    c = TileClient(window=64, decode=False)
    await c.connect(url)
    try:
        got = await c.fetch(keys, timeout_s=300)
        if points is not None:
            got["heights"] = await c.heights(points, level=10)
        return got
    finally:
        await c.close()


def _gone(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in text  # a zombie has exited; its parent reaps it


async def _until(pred, what: str, limit_s: float = 120.0) -> None:
    """Poll ``pred`` (the service's state) until true; the limit only stops a hang."""
    async with asyncio.timeout(limit_s):
        while not pred():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_frames_with_two_generator_workers_equal_the_generator_threads(world):
    keys = KEYS[world]

    async def main():
        want: dict = {}
        # heights on the plane: tiles of level 10 the key list does not hold (the workers send heights back)
        points = np.array([[1_500.0, -2_300.0], [-40_000.0, 9_000.0]]) if world is World.PLANE else None
        server, url = await _server(world, 0)
        try:
            want = await _frames(url, keys, points)
        finally:
            await server.close()
        server, url = await _server(world, 2)  # auto: a shared block table
        pids = server.service.remote.pids()
        try:
            assert len({server.service.remote.shard_of(k) for k in keys}) == 2  # both workers make tiles
            got = await _frames(url, keys, points)
            table = server.service.remote.shared  # the workers' shared block table
            assert table is not None and table.model_id == server.info.model and table.held() > 0
            if points is not None:
                h, w = got.pop("heights"), want.pop("heights")
                assert np.array_equal(h["height_m"], w["height_m"]) and np.array_equal(h["level"], w["level"])
                assert list(h["level"]) == [10, 10] and np.isfinite(h["height_m"]).all()
            assert got == want
            if world is World.EARTH:  # a key the generator refuses: its error, with the generator's words
                with pytest.raises(ValueError, match=r"earth tile x at level 2 must be in \[0, 7\], got 99"):
                    await server.service.get(TileKey(2, 99, 0))
                st = server.service.stats()
                assert st.generated == len(keys) and st.failed == 1 and st.worker_restarts == 0
        finally:
            await server.close()
        assert len(pids) == 2 and all(_gone(p) for p in pids)  # close leaves no worker behind
        assert not os.path.exists(table.path)  # nor the table

    run(main(), timeout_s=600)


def test_workers_without_a_shared_table_make_the_same_frames():
    from streaming.cli.compose import DEFAULT_SHARED_BYTES, auto_shared_bytes

    assert [auto_shared_bytes(n) for n in (1, 2, 16)] == [0, DEFAULT_SHARED_BYTES, DEFAULT_SHARED_BYTES]
    assert auto_shared_bytes(16, gpu=True) == 0  # slower on an H100 (699 -> 618 tiles/s)
    keys = KEYS[World.PLANE][:4]

    async def main():
        server, url = await _server(World.PLANE, 0)
        try:
            want = await _frames(url, keys)
        finally:
            await server.close()
        server, url = await _server(World.PLANE, 2, gen_shared_bytes=0)
        try:
            assert server.service.remote.shared is None
            assert await _frames(url, keys) == want
        finally:
            await server.close()

    run(main(), timeout_s=600)


def test_bad_worker_counts_are_refused_and_close_the_table_they_were_given():
    from generator.sharedblocks import SharedBlocks

    for kwargs, msg in (({"processes": 0}, "processes must be >= 1, got 0"),
                        ({"processes": 2, "shard_up": 9}, r"shard_up must be in \[0, 8\] levels, got 9")):
        table = SharedBlocks.create(1 << 20, 1, 16, "m")
        assert os.path.exists(table.path)
        with pytest.raises(ValueError, match=msg):
            genprocs.GenProcs(spec=None, shared=table, **kwargs)
        assert not os.path.exists(table.path)  # the refused server's table leaves /dev/shm


def test_a_killed_worker_is_started_again_and_its_keys_answered():
    keys = KEYS[World.PLANE]

    async def main():
        server, url = await _server(World.PLANE, 2)
        svc = server.service
        try:
            remote = svc.remote
            a, b = keys[2], next(k for k in keys if remote.shard_of(k) != remote.shard_of(keys[2]))
            from streaming.cli.compose import open_world
            from streaming.tileservice import mesh_encoder

            pyr, enc = open_world(World.PLANE, SEED, "fractal"), mesh_encoder()
            # killed while it holds a key: stopped first, so the key is surely inside it
            victim = remote._workers[remote.shard_of(a)].proc.pid
            os.kill(victim, signal.SIGSTOP)
            fut = svc.get(a, 1.0, owner="t")
            await _until(lambda: svc.stats().queued == 0 and svc.stats().waiting_keys == 1, "a in its worker")
            os.kill(victim, signal.SIGKILL)
            assert await fut == enc(World.PLANE, a, pyr.tile(a))  # queued again, made by the new worker
            assert svc.stats().worker_restarts == 1 and victim not in remote.pids()
            # killed while idle: started again before its next key
            idle = remote._workers[remote.shard_of(b)].proc.pid
            os.kill(idle, signal.SIGKILL)
            await _until(lambda: _gone(idle), "the idle worker gone")
            got = await _frames(url, [b])
            assert got == await _frames(url, [b])  # and the LRU's copy is the same
            assert await svc.get(b) == enc(World.PLANE, b, pyr.tile(b))
            assert svc.stats().worker_restarts == 2 and len(remote.pids()) == 2
        finally:
            await server.close()

    run(main(), timeout_s=600)


def test_an_idle_worker_steals_and_keys_cancelled_before_a_worker_takes_them_are_never_made():
    keys = [TileKey(11, 4 * 100 + i, 4 * 60) for i in range(4)]  # one group: one worker's

    async def main():
        server, url = await _server(World.PLANE, 2)
        svc = server.service
        remote = svc.remote
        assert len({remote.shard_of(k) for k in keys}) == 1
        pid = remote._workers[remote.shard_of(keys[0])].proc.pid
        try:
            os.kill(pid, signal.SIGSTOP)  # the owner holds the first key until let go
            c = TileClient(window=64, decode=False)
            await c.connect(url)
            try:
                await c.request(keys[:1])
                await _until(lambda: svc.stats().queued == 0 and svc.stats().waiting_keys == 1, "first key taken")
                await c.request(keys[1:2])  # its owner is busy: the other worker takes it
                key, tile = await asyncio.wait_for(c.tiles.get(), 300)
                assert key == keys[1] and not isinstance(tile, ServerError) and svc.stats().stolen >= 1
                remote.steal = False  # now they wait for their owner
                await c.request(keys[2:])
                await _until(lambda: svc.stats().queued == 2, "two keys queued behind it")
                await c.cancel(keys[2:])
                await _until(lambda: svc.stats().queued == 0, "cancelled keys out of the queue")
                os.kill(pid, signal.SIGCONT)
                key, tile = await asyncio.wait_for(c.tiles.get(), 300)
                assert key == keys[0] and not isinstance(tile, ServerError)
            finally:
                await c.close()
            st = svc.stats()
            assert st.generated == 2 and st.dropped_cancelled == 2 and st.failed == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            await server.close()

    run(main(), timeout_s=600)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_auto_is_three_quarters_of_the_cores_from_2_to_12():
    assert [genprocs.auto_procs(c) for c in (1, 2, 3, 4, 8, 16, 64)] == [0, 2, 3, 3, 6, 12, 12]
    # workers of a GPU's shared learned backend wait on it: one per core, at most 16
    assert [genprocs.auto_procs(c, gpu=True) for c in (1, 2, 8, 16, 64)] == [0, 2, 8, 16, 16]
    assert genprocs.auto_procs() == genprocs.auto_procs(len(os.sched_getaffinity(0)))


@pytest.mark.parametrize("refiner, mesh_procs, workers", [
    ("fractal", 0, genprocs.auto_procs()), ("fractal", 1, 0), ("learned", 0, 0)])
def test_auto_starts_workers_for_a_cpu_refiner_only(refiner, mesh_procs, workers):
    from streaming.cli.compose import build_server

    server = build_server(World.PLANE, SEED, refiner, gen_procs="auto", mesh_procs=mesh_procs)
    try:
        remote = server.service.remote
        assert (0 if remote is None else remote.shards) == workers
    finally:
        run(server.close())


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_server_leaves_no_worker_process(how):
    # no --gen-procs: the default (auto) starts workers on a machine with 2 or more cores
    assert genprocs.auto_procs() >= 2, "this test needs a machine with at least 2 cores"
    cmd = [sys.executable, "-m", "streaming.cli", "serve", "--world", "plane", "--seed", "0", "--refiner", "fractal",
           "--port", "0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert re.search(r"ws://127\.0\.0\.1:\d+", line), line
        workers = _children(proc.pid)  # the two generator workers (and multiprocessing's resource tracker)
        assert len(workers) >= 2
        os.kill(proc.pid, getattr(signal, how))
        proc.wait(60)
        if how == "SIGTERM":
            assert proc.returncode == 0 and "stopped" in proc.stdout.read()

        async def gone():
            await _until(lambda: all(_gone(p) for p in workers), "workers exit", limit_s=60)

        run(gone(), timeout_s=90)  # killed: they read EOF on their pipe and exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_frames_made_by_workers_go_to_the_store_a_thread_server_reads(tmp_path):
    keys = KEYS[World.PLANE][:4]

    async def main():
        server, url = await _server(World.PLANE, 2, store_dir=tmp_path)
        try:
            made = await _frames(url, keys)
            assert server.service.stats().generated == len(keys)
        finally:
            await server.close()
        server, url = await _server(World.PLANE, 0, store_dir=tmp_path)  # a restart without workers
        try:
            assert await _frames(url, keys) == made
            st = server.service.stats()
            assert st.store_hits == len(keys) and st.generated == 0
        finally:
            await server.close()

    run(main(), timeout_s=600)


def test_a_compiled_model_warms_in_one_worker_first_and_a_failing_warm_up_stops_the_start(monkeypatch):
    import functools

    from streaming.cli.compose import worker_source

    events = []
    spawn, ready = genprocs._Worker.spawn.__func__, genprocs._Worker.wait_ready

    def logged_spawn(cls, ctx, spec, backend_conn=None):
        events.append("spawn")
        return spawn(cls, ctx, spec, backend_conn)

    def logged_ready(self, timeout_s):
        model = ready(self, timeout_s)
        events.append("ready")
        return model

    monkeypatch.setattr(genprocs._Worker, "spawn", classmethod(logged_spawn))
    monkeypatch.setattr(genprocs._Worker, "wait_ready", logged_ready)
    opener = functools.partial(worker_source, World.PLANE.value, SEED, "fractal", None, False)
    spec = genprocs.GenSpec(World.PLANE.value, opener, warm_keys=((6, 17, 19),), first_alone=True)
    procs = genprocs.GenProcs(3, spec)
    try:
        # the first worker is ready (its warm-up tile made) before the other two start
        assert events == ["spawn", "ready", "spawn", "spawn", "ready", "ready"]
        assert len(procs.pids()) == 3
    finally:
        procs.close()
    bad = replace(spec, warm_keys=((30, 0, 0),), first_alone=False)  # deeper than MAX_LEVEL
    with pytest.raises(RuntimeError, match=r"failed to start: RuntimeError: warm-up tile .*level"):
        genprocs.GenProcs(1, bad)
