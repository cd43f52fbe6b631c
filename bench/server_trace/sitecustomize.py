"""Per-key timestamps from inside a `worldstream serve` process, for bench/realtime_trace.py
(`--server-trace`); nothing here is imported by the product.

On the PYTHONPATH of a process whose environment names ``WORLDSTREAM_BENCH_TRACE=PREFIX``,
Python imports this module at start-up (``site``); when that process imports
``streaming.tileservice`` the module wraps seven ``TileService`` methods to append one line per
event to ``PREFIX.<pid>`` (``repr`` of a tuple, ``time.perf_counter()`` first: CLOCK_MONOTONIC,
so the bench's and the server's clocks agree):

- ``(t, "get", (level, x, y), priority)``: a client asked for the key (priority: higher sooner);
- ``(t, "prio", (level, x, y), priority)``: a client changed its priority;
- ``(t, "release", (level, x, y))``: a requester cancelled it;
- ``(t, "queued", (level, x, y), first)``: it entered the generator queue (after the store
  lookup; ``first``: back to the front after a step ran out);
- ``(t, "dispatch", shard, [keys])`` / ``(t, "back", shard, [keys], [step ran out])``: a batch
  went to generator process ``shard`` and came back (``-1``: the in-process generator thread);
- ``(t, "finish", (level, x, y))``: its frame was ready to send.
"""

import os
import sys

PREFIX = os.environ.get("WORLDSTREAM_BENCH_TRACE")


def _patch(T) -> None:
    import multiprocessing
    import threading
    import time

    files: dict = {}
    lock = threading.Lock()  # the event loop and the generator thread both log

    def log(*event) -> None:
        line = repr((time.perf_counter(),) + event) + "\n"
        with lock:
            f = files.get(os.getpid())
            if f is None:  # opened on the first event: processes that never log leave no file
                f = files[os.getpid()] = open(f"{PREFIX}.{os.getpid()}", "a", buffering=1)
            f.write(line)

    main = multiprocessing.current_process().name == "MainProcess"
    S = T.TileService
    get, release, reprioritise, enqueue, run_remote, generate, finish = (
        S.get, S.release, S.reprioritise, S._enqueue, S._run_remote, S._generate, S._finish)

    def traced_get(self, key, priority=0.0, owner=None):
        log("get", tuple(key), float(priority))
        return get(self, key, priority, owner)

    def traced_release(self, key, fut):
        log("release", tuple(key))
        return release(self, key, fut)

    def traced_reprioritise(self, key, priority, owner=None):
        log("prio", tuple(key), float(priority))
        return reprioritise(self, key, priority, owner)

    def traced_enqueue(self, key, first=False):
        log("queued", tuple(key), bool(first))
        return enqueue(self, key, first)

    async def traced_run_remote(self, shard, batch):
        log("dispatch", shard, [tuple(k) for k in batch])
        results, spent = await run_remote(self, shard, batch)
        log("back", shard, [tuple(k) for k in batch], [r is T._AGAIN for r in results])
        return results, spent

    def traced_generate(self, keys):
        if not main:  # a generator process's own step: its server logs the batch
            return generate(self, keys)
        log("dispatch", -1, [tuple(k) for k in keys])
        results, spent = generate(self, keys)
        log("back", -1, [tuple(k) for k in keys], [r is T._AGAIN for r in results])
        return results, spent

    def traced_finish(self, key, frame):
        log("finish", tuple(key))
        return finish(self, key, frame)

    S.get, S.release, S.reprioritise, S._enqueue, S._run_remote, S._generate, S._finish = (
        traced_get, traced_release, traced_reprioritise, traced_enqueue, traced_run_remote, traced_generate,
        traced_finish)


class _Finder:
    """Finds ``streaming.tileservice`` the usual way, and patches it once it has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "streaming.tileservice":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if PREFIX:
    sys.meta_path.insert(0, _Finder())
