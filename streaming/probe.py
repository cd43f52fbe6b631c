"""Where a server's latency goes: event-loop lag, GIL waits, CPU per thread (``serve --probe``).

Off by default (a server without ``--probe`` runs none of this). On, it adds to every
``stats`` answer a ``probe`` map of cumulative counters, so a benchmark that asks for
stats before and after a phase gets that phase's numbers from the differences:

- ``loop_lag``: a task asks to sleep ``tick_s``; how much later than asked it runs
  (the event loop busy, waiting for the GIL, or its thread waiting for a CPU);
- ``gil_wait``: a thread sleeps ``tick_s`` with the GIL released, then takes it back;
  the time from waking to holding it, less what the thread spent on the CPU run queue
  (``/proc/thread-self/schedstat``): what a thread that wants the GIL waits for it;
- ``gc``, ``gc2``: the garbage collector's pauses (``gc.callbacks``; ``gc2``: full
  collections only), which stop every thread that runs Python;
- ``cached_send``: a request answered from the LRU, from the reader taking its message
  to the frame handed to the socket (recorded by ``streaming.server``);
- ``threads``: per thread name (``threading``), CPU seconds and seconds runnable but
  waiting for a CPU (``/proc/self/task/TID/schedstat``, Linux; empty elsewhere).

Histograms are bucket counts on fixed log-spaced edges (``EDGES_MS``): percentiles of a
phase come from the difference of two snapshots (``quantile_ms``).
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import threading
import time
from collections.abc import Sequence

EDGES_MS: tuple[float, ...] = tuple(round(0.05 * 1.25**i, 4) for i in range(60))
"""Upper bucket edges in ms (0.05 ms .. ~32 s, 25 % apart); one more bucket above."""


class Histogram:
    """Counts of durations in the buckets of ``EDGES_MS``, plus their sum."""

    def __init__(self):
        self.counts = [0] * (len(EDGES_MS) + 1)
        self.total_s = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(EDGES_MS, seconds * 1000.0)] += 1
        self.total_s += seconds

    def as_dict(self) -> dict:
        return {"counts": list(self.counts), "total_s": self.total_s}


def quantile_ms(after: Sequence[int], before: Sequence[int] | None, q: float) -> float:
    """The ``q`` quantile (0..1) in ms of what was added between two ``counts`` snapshots
    (the upper edge of the bucket holding it); NaN when nothing was added."""
    diff = [a - (before[i] if before else 0) for i, a in enumerate(after)]
    n = sum(diff)
    if n <= 0:
        return float("nan")
    rank, acc = q * n, 0
    for i, c in enumerate(diff):
        acc += c
        if acc >= rank and c:
            return EDGES_MS[i] if i < len(EDGES_MS) else float("inf")
    return float("inf")


def _schedstat(tid: int | str) -> tuple[float, float]:
    """(CPU s, run-queue wait s) of a thread of this process; (0, 0) where unreadable."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            cpu_ns, wait_ns, _ = f.read().split()
        return int(cpu_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return 0.0, 0.0


class Probe:
    """The counters above; ``start`` on the event loop, ``stop`` when the server closes."""

    def __init__(self, tick_s: float = 0.005):
        if not 0.0 < tick_s <= 1.0:
            raise ValueError(f"tick_s must be in (0, 1] s, got {tick_s}")
        self.tick_s = tick_s
        self.loop_lag = Histogram()
        self.gil_wait = Histogram()
        self.cached_send = Histogram()
        self.gc = Histogram()
        self.gc2 = Histogram()  # full collections (generation 2) only
        self._gc_t0 = 0.0
        self._gc_cpu0 = 0.0
        self.gc2_cpu_s = 0.0  # CPU seconds of full collections (their wall time less run-queue waits)
        self._task: asyncio.Task | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def _lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.tick_s)
            self.loop_lag.add(max(0.0, loop.time() - t - self.tick_s))

    def _gil(self) -> None:
        tid = threading.get_native_id()
        while not self._stop.is_set():
            _, q0 = _schedstat(tid)
            t = time.perf_counter()
            time.sleep(self.tick_s)  # the GIL is released; after: wait for it (and a CPU)
            late = time.perf_counter() - t - self.tick_s
            _, q1 = _schedstat(tid)
            self.gil_wait.add(max(0.0, late - (q1 - q0)))

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            self._gc_cpu0 = time.thread_time()
        else:
            dt = time.perf_counter() - self._gc_t0
            self.gc.add(dt)
            if info.get("generation") == 2:
                self.gc2.add(dt)
                self.gc2_cpu_s += time.thread_time() - self._gc_cpu0

    def start(self) -> None:
        gc.callbacks.append(self._gc)
        self._task = asyncio.get_running_loop().create_task(self._lag(), name="probe-loop-lag")
        self._thread = threading.Thread(target=self._gil, name="probe-gil", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self._task is not None:
            self._task.cancel()

    def threads(self) -> dict[str, list[float]]:
        """name -> [CPU s, run-queue wait s] of this process's live threads (names of
        thread pools' workers, e.g. ``generator_0``, ``tiles_1``, ``MainThread``)."""
        out: dict[str, list[float]] = {}
        for t in threading.enumerate():
            if t.native_id is None:
                continue
            cpu, wait = _schedstat(t.native_id)
            out[t.name] = [round(cpu, 4), round(wait, 4)]
        return out

    def as_dict(self) -> dict:
        return {"loop_lag": self.loop_lag.as_dict(), "gil_wait": self.gil_wait.as_dict(),
                "cached_send": self.cached_send.as_dict(), "gc": self.gc.as_dict(), "gc2": self.gc2.as_dict(),
                "gc2_cpu_s": self.gc2_cpu_s, "gc_objects": [len(gc.get_objects(g)) for g in range(3)],
                "gc_frozen": gc.get_freeze_count(), "threads": self.threads()}
