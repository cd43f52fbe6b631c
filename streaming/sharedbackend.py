"""One process owns the learned refiner's backend; generator workers call it through pipes.

Generator workers (``streaming.genprocs``) each opened their own model. On a GPU that is one
CUDA context per worker, and contexts time-slice the card: on an H200, 12 learned workers
made 102-107 uncached tiles/s against one process's 152-174, each spinning ~120 ms of CPU a
tile while it waited its turn (docs/BENCHMARKS.md, 2026-12-06). Here the server process keeps
the one backend: ``BackendServer`` runs ``backend.run_level`` on one thread for every
worker, and a worker's ``RemoteBackend`` sends it the network's inputs (parents, noise
coordinates, spacing, context: host work stays in the worker) and waits for the child.

The bytes do not move: the workers' ``LearnedRefiner`` computes the same inputs, and the
backend is the one the thread server runs (the compiled one pads every call to its one batch
bucket; the CPU reference runs one tile at a time), so a tile's bytes do not depend on which
process asked. ``RemoteBackend.name`` is the owner's, so the model id is the same.
"""

from __future__ import annotations

import os
import threading
from multiprocessing import connection
from multiprocessing.connection import Connection

import numpy as np


class BackendServer:
    """Runs ``backend.run_level`` for the workers connected with ``connect()``, one call at a
    time on its own thread (a GPU backend's graphs and stream stay on one thread)."""

    def __init__(self, backend):
        self.backend = backend
        self.name = getattr(backend, "name", type(backend).__name__)
        self.calls = 0
        self._conns: list[Connection] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()  # a new connection or close() wakes the wait
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="shared-backend", daemon=True)
        self._thread.start()

    def connect(self) -> Connection:
        """A new worker's end of a pipe to this server (pass it to the worker process)."""
        import multiprocessing

        ours, theirs = multiprocessing.Pipe(duplex=True)
        with self._lock:
            if self._closed:
                raise RuntimeError("the shared backend is closed")
            self._conns.append(ours)
        os.write(self._wake_w, b"c")
        return theirs

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                conns = list(self._conns)
            ready = connection.wait(conns + [self._wake_r])
            for c in ready:
                if c == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                try:
                    args = c.recv()
                except (EOFError, OSError):  # that worker is gone (a restart connects anew)
                    self._drop(c)
                    continue
                try:
                    out = ("ok", np.ascontiguousarray(self.backend.run_level(*args)))
                except Exception as exc:  # noqa: BLE001  (the worker raises it for its block)
                    out = ("error", f"{type(exc).__name__}: {exc}")
                self.calls += 1
                try:
                    c.send(out)
                except (BrokenPipeError, OSError):
                    self._drop(c)

    def _drop(self, c: Connection) -> None:
        with self._lock:
            if c in self._conns:
                self._conns.remove(c)
        c.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(10.0)
        for c in self._conns:
            c.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


class RemoteBackend:
    """A worker's stand-in for the owner's backend: the same ``run_level`` and ``name``."""

    def __init__(self, conn: Connection, name: str):
        self.conn = conn
        self.name = name

    def run_level(self, parents5, seed, level, rows, cols, spacing_m, present, context=None) -> np.ndarray:
        self.conn.send((parents5, seed, level, rows, cols, spacing_m, present, context))
        kind, out = self.conn.recv()
        if kind != "ok":
            raise RuntimeError(f"shared backend failed: {out}")
        return out
