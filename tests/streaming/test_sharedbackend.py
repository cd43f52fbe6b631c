"""One learned backend for every generator worker (streaming/sharedbackend.py).

On the CPU reference backend (eager torch, one tile at a time: its bytes do not depend on
batching): a ``RemoteBackend`` call answers exactly what the backend answers; a bad call
comes back as an error and the server keeps serving; a live server whose 2 generator
workers call the server's one backend sends the frames the generator thread makes, and a
killed worker's replacement connects anew.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

import numpy as np
import pytest
from stream_fixtures import run

from runtime.tiles import TileKey, World
from streaming.cli.compose import learned_backend
from streaming.client import TileClient
from streaming.sharedbackend import BackendPool, BackendProcess, BackendServer, RemoteBackend, auto_backends

SEED = 7
KEYS = [TileKey(4, 5, 5), TileKey(5, 10, 11), TileKey(5, 11, 11)]  # plane anchor: level 3


def _inputs(refiner, level: int = 5, batch: int = 2):
    """Real network inputs: the plane's anchor field around the origin as parents."""
    from generator.anchors.plane import PlaneAnchor
    from generator.learned.inputs import noise_coords, widen
    from runtime.tiles import spacing_m

    n = 2 * refiner.margin + 8
    field = PlaneAnchor(SEED).sample(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64))
    parents = np.stack([field[: refiner.channels]] * batch).astype(np.float32)
    p5, present = widen(parents)
    origins = np.array([[0, 0], [8, 8]][:batch], np.int64)
    rows, cols = noise_coords(origins, n, n, refiner.margin)
    s = np.full((batch,), spacing_m(level), np.float32)
    return p5, SEED, level, rows, cols, s, present, None


def test_a_remote_call_answers_what_the_backend_answers_and_a_bad_one_an_error():
    from generator.learned.refiner import LearnedRefiner

    refiner = LearnedRefiner(World.PLANE, backend="torch")
    server = BackendServer(refiner.backend)
    try:
        remote = RemoteBackend(server.connect(), server.name)
        args = _inputs(refiner)
        want = refiner.backend.run_level(*args)
        got = remote.run_level(*args)
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
        bad = (args[0][:, :2],) + args[1:]  # 2 of the network's 5 input channels
        with pytest.raises(RuntimeError, match="shared backend failed"):
            remote.run_level(*bad)
        assert np.array_equal(remote.run_level(*args), want)  # still serving
        assert server.calls == 3 and remote.name == "torch"
    finally:
        server.close()


def test_a_backend_process_answers_what_the_backend_answers_and_stops_when_closed():
    """The same server in its own process (built there from compose's ``learned_backend``), dialled on
    its Unix socket by two callers."""
    import functools

    from generator.learned.refiner import LearnedRefiner

    refiner = LearnedRefiner(World.PLANE, backend="torch")
    args = _inputs(refiner)
    want = refiner.backend.run_level(*args)
    proc = BackendProcess(functools.partial(learned_backend, "plane", "learned"), start_timeout_s=300)
    try:
        assert proc.name == "torch" and proc.proc.is_alive()  # no GPU here: the CPU reference
        a, b = RemoteBackend(proc.connect(), proc.name), RemoteBackend(proc.connect(), proc.name)
        assert np.array_equal(a.run_level(*args), want) and np.array_equal(b.run_level(*args), want)
        with pytest.raises(RuntimeError, match="shared backend failed"):
            a.run_level(*((args[0][:, :2],) + args[1:]))
        assert np.array_equal(a.run_level(*args), want)  # still serving
        assert proc.calls == 4 and proc.rounds == 4  # one at a time here: no two waited together
        with pytest.raises(Exception):  # noqa: B017  (the wrong key: refused at the handshake)
            RemoteBackend((proc.address, b"not the key"), proc.name)
        assert np.array_equal(b.run_level(*args), want)
    finally:
        proc.close()
    assert not proc.proc.is_alive()


def test_a_backend_pool_deals_workers_round_robin_and_every_process_answers_the_same_bytes():
    """``serve --gen-backends 2``: two processes with the same model; callers connect in turn and
    get the bytes the backend gives alone; the pool counts both processes' requests."""
    import functools

    from generator.learned.refiner import LearnedRefiner

    refiner = LearnedRefiner(World.PLANE, backend="torch")
    args = _inputs(refiner)
    want = refiner.backend.run_level(*args)
    with pytest.raises(ValueError, match="at least one"):
        BackendPool(functools.partial(learned_backend, "plane", "learned"), 0)
    pool = BackendPool(functools.partial(learned_backend, "plane", "learned"), 2, start_timeout_s=300)
    try:
        assert pool.name == "torch" and len(pool.procs) == 2
        addrs = [pool.connect() for _ in range(3)]
        assert addrs[0] != addrs[1] and addrs[2] == addrs[0]  # in turn
        callers = [RemoteBackend(a, pool.name) for a in addrs]
        for c in callers:
            assert np.array_equal(c.run_level(*args), want)
        assert [p.calls for p in pool.procs] == [2, 1] and pool.calls == 3 and pool.rounds == 3
    finally:
        pool.close()
    assert not any(p.proc.is_alive() for p in pool.procs)


def test_auto_backends_is_one_per_four_workers_from_1_to_3():
    assert [auto_backends(w) for w in (0, 1, 2, 4, 7, 8, 12, 64)] == [1, 1, 1, 1, 1, 2, 3, 3]


def test_a_backend_process_that_cannot_build_its_backend_says_why():
    import functools

    with pytest.raises(RuntimeError, match="not the learned one"):
        BackendProcess(functools.partial(learned_backend, "plane", "fractal"), start_timeout_s=300)


class _ChunkBackend:
    """A one-bucket backend whose answer for a crop depends on the other crops of its batch of
    4 (what a merge must not change): pads like the compiled one, by repeating the last crop."""

    name, buckets = "chunky", (4,)

    def __init__(self):
        self.calls = 0

    def run_level(self, parents5, seed, level, rows, cols, spacing_m, present, context=None):
        self.calls += 1
        b = parents5.shape[0]
        n = -(-b // 4) * 4
        p = np.concatenate([parents5, np.repeat(parents5[-1:], n - b, 0)])
        chunks = p.reshape(n // 4, 4, *p.shape[1:])
        out = chunks + chunks.sum(axis=1, keepdims=True) + seed + level + rows[0, 0]
        return out.reshape(p.shape)[:b]


class _FiveChannels(_ChunkBackend):
    def run_level(self, parents5, *args):
        if parents5.shape[1] != 5:
            raise ValueError(f"5 channels, got {parents5.shape[1]}")
        return super().run_level(parents5, *args)


class _Upsample(_ChunkBackend):
    """A child with 4x the parents' bytes (each sample repeated 2 x 2)."""

    def run_level(self, parents5, *args):
        return np.repeat(np.repeat(parents5, 2, 2), 2, 3) + args[1]


def test_requests_waiting_together_share_one_call_with_the_same_bytes():
    from streaming.sharedbackend import _groups

    backend = _ChunkBackend()
    server = BackendServer(backend)
    try:
        rng = np.random.default_rng(0)
        def req(b, level=9, seed=SEED):
            return (rng.normal(size=(b, 5, 6, 6)).astype(np.float32), seed, level,
                    np.zeros((b, 6), np.int64), np.zeros((b, 6), np.int64), np.ones(b, np.float32),
                    np.ones((b, 2), np.float32), None)
        reqs = [req(3), req(6), req(4), req(5, level=10), req(2, seed=SEED + 1)]
        alone = [backend.run_level(*a) for a in reqs]
        backend.calls = 0
        groups = _groups([(i, a) for i, a in enumerate(reqs)], server._unit)
        assert [[i for i, _ in g] for g in groups] == [[0, 1, 2], [3], [4]]  # same seed and level only
        got = {}
        for g in groups:
            for (i, _), (kind, out) in zip(g, server._run(g), strict=True):
                got[i] = out
                assert kind == "ok"
        assert backend.calls == 3 and server.merged == 3  # the three level-9 requests: one call
        assert server.rounds == 3
        assert all(np.array_equal(got[i], alone[i]) for i in range(len(reqs)))
        bad = (reqs[0][0][:, :2],) + reqs[0][1:]  # a request the backend cannot run: its own error
        server2 = BackendServer(_FiveChannels())
        try:
            kinds = [k for k, _ in server2._run([(0, reqs[0]), (1, bad), (2, reqs[1])])]
            assert kinds == ["ok", "error", "ok"]
        finally:
            server2.close()
    finally:
        server.close()


async def _payloads(url: str, keys) -> dict:
    c = TileClient(window=64, decode=False)
    await c.connect(url)
    try:
        return await c.fetch(keys, timeout_s=600)
    finally:
        await c.close()


def test_workers_on_one_shared_backend_send_the_generator_threads_frames():
    from streaming.cli.compose import build_server

    async def frames(gen_procs: int, share: bool | None, kill: bool = False):
        server = build_server(World.PLANE, SEED, "learned", gen_procs=gen_procs, share_backend=share)
        server.config = replace(server.config, loop_share=1.0, loop_burst_s=10.0)
        port = await server.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}"
        try:
            got = await _payloads(url, KEYS[:1])
            remote = server.service.remote
            if remote is not None:
                assert remote.backend is not None and remote.backend.calls > 0  # the workers called it
                st = server.service.stats()
                assert st.backend_requests == remote.backend.calls > 0
                assert 0 < st.backend_calls <= st.backend_requests
                if kill:  # a worker killed: its replacement connects to the backend anew
                    victim = remote._workers[remote.shard_of(KEYS[1])].proc.pid
                    os.kill(victim, signal.SIGKILL)
                    async with asyncio.timeout(300):
                        while remote.restarts == 0 and victim in remote.pids():
                            await asyncio.sleep(0.05)
            got.update(await _payloads(url, KEYS[1:]))
            return got, server.info.model
        finally:
            await server.close()

    thread, model = run(frames(0, None), timeout_s=900)
    shared, shared_model = run(frames(2, True, kill=True), timeout_s=900)
    assert shared_model == model
    assert set(shared) == set(KEYS) and all(shared[k] == thread[k] for k in KEYS)


def test_requests_travel_through_shared_memory_with_the_same_bytes_and_fall_back_to_the_pipe(monkeypatch):
    """A worker's arrays go through its shared-memory segment (the pipe carries a header), the
    child comes back in it; without room in /dev/shm, or for a child larger than the segment,
    the pipe carries them: the same bytes every way. The worker's segment is gone when it closes."""
    import streaming.sharedbackend as sb

    backend = _ChunkBackend()
    server = BackendServer(backend)
    rng = np.random.default_rng(1)
    args = (rng.normal(size=(6, 5, 9, 9)).astype(np.float32), SEED, 9, np.arange(54).reshape(6, 9),
            np.zeros((6, 9), np.int64), np.ones(6, np.float32), np.ones((6, 2), np.float32), None)
    want = backend.run_level(*args)
    try:
        shm = RemoteBackend(server.connect(), server.name)
        got = shm.run_level(*args)
        assert shm.segment is not None and os.path.exists(f"/dev/shm/{shm.segment.name}")
        assert got.dtype == want.dtype and np.array_equal(got, want)
        assert np.array_equal(shm.run_level(*args), want)  # the segment is reused
        bad = (args[0][:, :2],) + args[1:]
        server2 = BackendServer(_FiveChannels())
        try:
            r2 = RemoteBackend(server2.connect(), server2.name)
            with pytest.raises(RuntimeError, match="5 channels"):
                r2.run_level(*bad)
            assert np.array_equal(r2.run_level(*args), _FiveChannels().run_level(*args))  # still serving
            r2.close()
        finally:
            server2.close()
        # a child larger than the segment: pickled back, and the segment grows for the next one
        up = BackendServer(_Upsample())
        try:
            r3 = RemoteBackend(up.connect(), up.name)
            big = (rng.normal(size=(4, 5, 300, 300)).astype(np.float32),) + args[1:3] + (
                np.zeros((4, 300), np.int64), np.zeros((4, 300), np.int64), np.ones(4, np.float32),
                np.ones((4, 2), np.float32), None)
            inputs_only = sb._layout(big[:1] + big[3:])[1]
            r3._segment_for = lambda arrays: r3.segment or setattr(r3, "segment", sb.SharedSegment.make(inputs_only)) \
                or r3.segment  # a segment with room for the inputs only
            assert np.array_equal(r3.run_level(*big), _Upsample().run_level(*big))
            assert r3.segment.size >= 4 * big[0].nbytes  # grown
            assert np.array_equal(r3.run_level(*big), _Upsample().run_level(*big))  # now through the segment
            r3.close()
        finally:
            up.close()
        name = shm.segment.name
        shm.close()
        assert not os.path.exists(f"/dev/shm/{name}")
        # no room in /dev/shm: the pipe
        monkeypatch.setattr(sb.os, "statvfs", lambda path: os.statvfs_result((4096, 4096, 10, 1, 1, 10, 1, 1, 0, 255)))
        pipe = RemoteBackend(server.connect(), server.name)
        assert np.array_equal(pipe.run_level(*args), want)
        assert pipe.segment is None and not pipe.use_shm
    finally:
        server.close()


def test_a_compiled_model_builds_its_graphs_before_the_thread_server_serves():
    """build_server's thread path warms a compiled backend (the first view waited behind
    torch.compile on an H100); CPU refiners have nothing to build and are not asked."""
    from types import SimpleNamespace

    from generator.learned.refiner import LearnedRefiner
    from streaming.cli.compose import WARM_KEY, open_world, warm_compiled

    assert not LearnedRefiner(World.PLANE, backend="torch").compiled  # the CPU reference: nothing to build
    pyr = open_world(World.PLANE, SEED, "fractal")
    assert warm_compiled(pyr) is None and pyr.blocks_computed == 0
    # the same pyramid seen with what LearnedRefiner reports on a GPU (a compiled backend)
    gpu_like = SimpleNamespace(refiner=SimpleNamespace(compiled=True), tiles=pyr.tiles)
    assert warm_compiled(gpu_like) == WARM_KEY
    assert pyr.blocks_computed > 0  # the tile under the anchor was made
