"""Tile placement in worker processes: wire payload -> ``ClientTile``, off the frame's process.

A realtime flight spends most of its client CPU on what one arriving tile needs before it
can be drawn: decoding the RTIN and the colour, placing the surface (skirts, normals, morph
inputs). In one process those steps share the GIL with the frame loop and the network
thread, so the client used ~1.3 of the cores it had and, on a 16-core GPU box, the client
alone was the learned teleport's floor (docs/BENCHMARKS.md, "Real time"). ``PlacePool`` runs
``client_tile`` in worker processes instead and hands each result back through shared
memory: the worker pickles the ``ClientTile`` with its arrays out of band into one
``/dev/shm`` file, the parent maps that file, unlinks it and unpickles around the mapping
(no copy: ~0.3 ms for an earth tile against ~4 ms to decode and place it).

The pool only transports; ordering, dropping and morph targets stay with the caller
(``viewer.flight._PoolPreparer``). A worker that dies fails its tile and is started again.
"""

from __future__ import annotations

import itertools
import mmap
import multiprocessing as mp
import os
import pickle
import time
from multiprocessing.connection import Connection

from runtime.tiles import TileKey, World

SHM_DIR = "/dev/shm"
"""Where results travel (a tmpfs on Linux); without it they go through the pipe, copied."""

_ALIGN = 64
START_TIMEOUT_S = 120.0  # a cold worker imports numpy, the viewer and the compiled kernels


def auto_procs(cpu_count: int | None = None) -> int:
    """Worker processes for a realtime flight: none on a 1-2 core machine (there a cold
    teleport keeps both cores generating, and workers did not make it faster: only a cached
    one, docs/BENCHMARKS.md), else up to 4, one core left to the frame loop."""
    n = os.cpu_count() if cpu_count is None else cpu_count
    return 0 if (n or 1) <= 2 else min(4, n - 1)


def _pack(obj, name: str | None) -> tuple:
    """(pickle bytes, shm path or None, [(offset, nbytes)]): ``obj``'s contiguous arrays
    written out of band into one shared-memory file (or in band when ``name`` is None)."""
    if name is None:
        return pickle.dumps(obj, protocol=5), None, []
    bufs: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    raws = [b.raw() for b in bufs]
    spans, size = [], 0
    for r in raws:
        spans.append((size, r.nbytes))
        size += -(-r.nbytes // _ALIGN) * _ALIGN
    if not raws:
        return data, None, []
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as mm:
            for (off, n), r in zip(spans, raws, strict=True):
                mm[off:off + n] = r
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return data, path, spans


def _unpack(data: bytes, path: str | None, spans: list) -> object:
    """The object ``_pack`` wrote; its arrays view the mapped file, which is unlinked now
    and freed when the last of them is."""
    if path is None:
        return pickle.loads(data)
    fd = os.open(path, os.O_RDWR)
    try:
        os.unlink(path)
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    view = memoryview(mm)
    return pickle.loads(data, buffers=[view[off:off + n] for off, n in spans])


def _worker(conn: Connection, world_value: str, use_shm: bool, place) -> None:
    """A worker's loop: (key tuple, wire payload) -> ("ok", key, cpu_s, packed) or
    ("err", key, cpu_s, exception); None stops it. ``place(world, key, decoded)`` makes the
    object sent back (``viewer.flight.client_tile``; pickled by name)."""
    from runtime import wire
    from runtime.tin import kernels

    kernels.warm()
    world = World(world_value)
    names = (f"worldstream-place-{os.getpid()}-{i}" for i in itertools.count())
    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        k, payload = msg
        key = TileKey(*k)
        t0 = time.thread_time()
        try:
            tile = place(world, key, wire.decode_tile(payload))
            packed = _pack(tile, next(names) if use_shm else None)
            reply = ("ok", k, time.thread_time() - t0, packed)
        except Exception as exc:  # a tile that can not be placed fails alone
            try:
                pickle.dumps(exc)
            except Exception:
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            reply = ("err", k, time.thread_time() - t0, exc)
        conn.send(reply)


class PlacePool:
    """``procs`` worker processes that each place one tile at a time with ``place(world, key,
    decoded tile)``, a module-level function (the viewer's ``client_tile``).

    ``submit(i, key, payload)`` gives worker ``i`` (from ``idle()``) a tile; ``busy()`` maps
    the busy workers' connections to their index, for ``multiprocessing.connection.wait``;
    ``collect(i)`` takes a ready worker's result. Not thread-safe: the caller locks."""

    def __init__(self, world: World, procs: int, place):
        if procs < 1:
            raise ValueError(f"a place pool needs at least 1 process, got {procs}")
        self.world, self.place = world, place
        self.use_shm = os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)
        self._ctx = mp.get_context("spawn")  # the parent runs threads: no fork
        self._procs: list = [None] * procs
        self._conns: list[Connection | None] = [None] * procs
        self._busy: dict[int, TileKey] = {}
        self._pids: set[int] = set()  # every worker this pool started: their leftover files go at close
        for i in range(procs):
            self._start(i)
        deadline = time.monotonic() + START_TIMEOUT_S
        for i in range(procs):
            self._await_ready(i, deadline)

    def _start(self, i: int) -> None:
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=_worker, args=(child, self.world.value, self.use_shm, self.place),
                              name=f"worldstream-place-{i}", daemon=True)
        p.start()
        child.close()
        self._procs[i], self._conns[i] = p, parent
        self._pids.add(p.pid)

    def _await_ready(self, i: int, deadline: float) -> None:
        conn = self._conns[i]
        if not conn.poll(max(0.0, deadline - time.monotonic())) or conn.recv() != "ready":
            self.close()
            raise RuntimeError(f"place worker {i} did not start within {START_TIMEOUT_S:.0f} s")

    def __len__(self) -> int:
        return len(self._procs)

    def idle(self) -> list[int]:
        return [i for i in range(len(self._procs)) if i not in self._busy]

    def submit(self, i: int, key: TileKey, payload: dict) -> None:
        if i in self._busy:
            raise RuntimeError(f"place worker {i} is busy with {self._busy[i]}")
        self._busy[i] = key
        self._conns[i].send((tuple(key), payload))

    def busy(self) -> dict[Connection, int]:
        """The connections of the busy workers (``multiprocessing.connection.wait`` on them
        says whose result is ready) -> worker index."""
        return {self._conns[i]: i for i in self._busy}

    def collect(self, i: int) -> tuple[TileKey, object, float]:
        """Worker ``i``'s result (call when its connection is ready): (key, ClientTile or
        Exception, the worker's CPU s on it); the worker is idle again."""
        key = self._busy.pop(i)
        try:
            status, _, cpu_s, body = self._conns[i].recv()
        except (EOFError, OSError) as exc:  # the worker died: its tile fails, a new one starts
            self._restart(i)
            return key, RuntimeError(f"place worker {i} died on {key}: {exc!r}"), 0.0
        if status == "ok":
            try:
                body = _unpack(*body)
            except Exception as exc:
                body = exc
        return key, body, cpu_s

    def _restart(self, i: int) -> None:
        p = self._procs[i]
        if p is not None and p.is_alive():
            p.kill()
        self._start(i)
        self._await_ready(i, time.monotonic() + START_TIMEOUT_S)

    def close(self) -> None:
        for conn in self._conns:
            if conn is not None:
                try:
                    conn.send(None)
                except (OSError, ValueError):
                    pass
        for p in self._procs:
            if p is not None:
                p.join(2)
                if p.is_alive():
                    p.kill()
                    p.join(1)
        for conn in self._conns:
            if conn is not None:
                conn.close()
        # Results never collected (a worker killed after writing one, or closed meanwhile)
        # leave their files behind: remove those of every worker this pool started.
        if self.use_shm:
            pids = {str(pid) for pid in self._pids}
            for name in os.listdir(SHM_DIR):
                if name.startswith("worldstream-place-") and name.split("-")[2] in pids:
                    try:
                        os.unlink(os.path.join(SHM_DIR, name))
                    except OSError:
                        pass
