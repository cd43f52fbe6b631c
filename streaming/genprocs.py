"""Generation in worker processes: ``serve --gen-procs N`` (issue 15).

With one generator thread the server made at most ~150 fresh tiles/s on a 16-core GPU
box: every tile cost the main process 6.6-23 ms (pyramid blocks, the earth's land/water
rule and lakes, handing fields to mesh processes). ``GenProcs`` moves all of it out: N
worker processes, each with its own pyramid (and its own learned model; on CUDA each
opens the GPU), each doing generate + mesh + encode and returning the finished ``tile``
frame (a few KiB). The main process keeps the event loop, the fair queues, the LRU and
the store.

Keys are sharded so that a worker owns whole regions: the shard of a key is chosen by
its ancestor ``shard_up`` levels up (default 2: a worker makes a 4 x 4 group of tiles of
one level, which share their parent blocks and the chain above them; tiles of levels
below ``shard_up`` go by their root), groups dealt on a lattice (``shard_of``). A fixed
shard level (every tile under one level-10 tile in one worker) would keep more parents in
one cache, but a flight's deep tiles all lie near the camera, under one or two such tiles:
one worker would do all of them. What a static deal leaves uneven (a burst of one group's
keys) is evened out by stealing: a worker whose queue is empty takes the next batch of
the longest queue of a busy worker (``TileService._next_queue``; same bytes, its own
cache pays the parents).

Each shard has its own fair queue (``ShardedQueue``) and at most one batch in its worker
at a time, so cancelling a key that has not reached a worker removes it before any work;
a key inside a worker's step finishes that step (``step_s``, 30 ms on a CPU) and a key
preempted there goes back to the front of the queue of the worker that ran it (``pin``: its
blocks are in that cache, a stolen key's too), as in-process. A worker that dies is started
again; the keys it held are queued again once, and fail with an error the second time (a
key that kills its worker must not kill every new one). Workers are spawned (no inherited
threads or CUDA state: fork after CUDA init breaks) and exit when the server closes, or
when it dies (their pipe reads EOF).

The bytes are the in-process ones: a worker runs ``TileService``'s own generator step
(``_generate``: steps, per-key retries, checks) on the same pyramid, then
``mesh_encoder``. Height queries get their fields' heights back (rgb None); fields of
tiles made for frames stay in the worker (the height cache is filled by the queries).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.tiles import TileKey, World
from streaming import tileservice
from streaming.fairqueue import FairQueue
from streaming.tileservice import Made

log = logging.getLogger(__name__)

SHARD_UP = 2  # a key's shard is its ancestor this many levels up: 4 x 4 tiles of a level per worker group
_START_TIMEOUT_S = 600.0  # a worker's imports, pyramid and warm-up (a learned model's compile takes minutes)


def auto_procs(cores: int | None = None, gpu: bool = False) -> int:
    """``serve --gen-procs auto``: generator processes for ``cores`` CPUs (None: this
    machine's, ``os.sched_getaffinity``): 0 on one core (a worker only adds a hop there),
    else three quarters of the cores, at least 2, at most 12 (2 on the project's 2-core
    box: each worker holds its own pyramid, ~1 GB on earth).
    ``gpu``: the workers call a shared learned backend on a GPU and wait on it for about a third
    of their time, so one per core, at most 16: on a 16-core H100 box 16 made 662.5 uncached
    tiles/s against 12's 559.6 in the same run (20 made fewer; docs/BENCHMARKS.md, 2026-12-07)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores < 2:
        return 0
    if gpu:
        return min(16, cores)
    return min(12, max(2, cores - cores // 4))


def shard_of(key: TileKey, shards: int, up: int = SHARD_UP) -> int:
    """The worker (0 .. shards-1) of ``key``: by its ancestor ``up`` levels up (its root
    above level ``up``), so siblings and cousins share a worker and its cache. Groups are
    dealt on a lattice, ``(gx + 3 gy + 7 level) mod shards``, not hashed: the 3 x 3 groups
    around a camera go to 9 different workers, and each level starts elsewhere (a hash put
    161 of the 576 keys of bench/throughput.py's plane run on one of 12 workers, the
    lattice 65)."""
    d = min(up, key.level)
    return ((key.x >> d) + 3 * (key.y >> d) + 7 * key.level) % shards


@dataclass(frozen=True)
class GenSpec:
    """What a worker builds: ``open_source() -> (source, prepare or None, model id)`` (a
    picklable callable, e.g. a ``functools.partial`` of a module-level function: the
    composition root's ``streaming.cli.compose.worker_source``), the world, the mesh error
    scale and the generator step (``ServiceConfig.step_s``; 0: whole keys)."""

    world: str
    open_source: Callable[[], tuple[Callable, Callable | None, str]]
    error_scale: float = 1.0
    step_s: float = 0.03
    # Keys (level, x, y) a worker makes before it reports ready, after the root: a compiled
    # model's graphs are built then, not while serving (``compose.build_server`` names one for
    # the learned refiner on a GPU).
    warm_keys: tuple[tuple[int, int, int], ...] = ()
    # Start one worker and wait for it before the others: its compile fills torch's on-disk
    # caches, so the rest load rather than compile, and not all at once on the same cores.
    first_alone: bool = False


class ShardedQueue:
    """One ``FairQueue`` per shard behind FairQueue's interface (items routed by
    ``shard_of(item)``, or where ``pin`` put them): each shard's runner pops from its own
    (``shard(i)``)."""

    def __init__(self, shards: int, shard_of: Callable[[Hashable], int], idle_credit: float = 0.0,
                 new_debit: float = 0.0):
        self.queues = [FairQueue(idle_credit=idle_credit, new_debit=new_debit) for _ in range(shards)]
        self.shard_of = shard_of
        self._pinned: dict[Hashable, int] = {}

    def shard(self, i: int) -> FairQueue:
        return self.queues[i]

    def where(self, item: Hashable) -> int:
        """The shard ``item`` is queued in (or would be)."""
        return self._pinned.get(item, self.shard_of(item)) if self._pinned else self.shard_of(item)

    def pin(self, item: Hashable, shard: int) -> None:
        """Queue ``item`` in ``shard`` from now on (a key part made there: its blocks are
        in that worker's cache), until ``unpin``. Only for an item not queued now."""
        if shard == self.shard_of(item):
            self._pinned.pop(item, None)
        else:
            self._pinned[item] = shard

    def unpin(self, item: Hashable) -> None:
        self._pinned.pop(item, None)

    def _q(self, item: Hashable) -> FairQueue:
        return self.queues[self.where(item)]

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues)

    def __bool__(self) -> bool:
        return any(self.queues)

    def __contains__(self, item: Hashable) -> bool:
        return item in self._q(item)

    def push(self, owner: Hashable, item: Hashable, priority: float, first: bool = False) -> bool:
        return self._q(item).push(owner, item, priority, first=first)

    def reprioritise(self, item: Hashable, priority: float) -> bool:
        return self._q(item).reprioritise(item, priority)

    def owner(self, item: Hashable) -> Hashable:
        return self._q(item).owner(item)

    def remove(self, item: Hashable) -> bool:
        return self._q(item).remove(item)

    def heap_entries(self) -> int:
        return sum(q.heap_entries() for q in self.queues)


class WorkerDied(RuntimeError):
    """A generator worker process exited while it held a key (twice for this key)."""


class GenProcs:
    """``processes`` generator workers (``TileService``'s ``remote``), started and warmed
    before the constructor returns. ``run(shard, keys, want_frame, want_fields)`` is the
    one call: per key a ``Made``, None (its step ran out: queue it again) or an Exception."""

    def __init__(self, processes: int, spec: GenSpec, shard_up: int = SHARD_UP, steal: bool = True,
                 start_timeout_s: float = _START_TIMEOUT_S, backend=None, shared=None):
        """``backend``: a ``streaming.sharedbackend.BackendServer``, ``BackendProcess`` or
        ``BackendPool`` every worker's refiner calls (``spec.open_source`` then gets what its
        ``connect()`` gives: a pipe's end or a process's address), owned and closed here; None:
        each worker opens its own. ``shared``: the workers' shared block table
        (``generator.sharedblocks.SharedBlocks``, handed to them by ``spec.open_source``), closed
        (its file removed) here."""
        try:
            if processes < 1:
                raise ValueError(f"processes must be >= 1, got {processes}")
            if not 0 <= shard_up <= 8:
                raise ValueError(f"shard_up must be in [0, 8] levels, got {shard_up}")
        except ValueError:  # what was handed in is owned here from the start: closed, then refused
            for owned in (shared, backend):
                if owned is not None:
                    owned.close()
            raise
        self.shards = processes
        self.shard_up = shard_up
        self.spec = spec
        self.stepped = spec.step_s > 0
        self.steal = steal  # an idle worker takes keys queued for a busy one (TileService._next_queue)
        self.start_timeout_s = start_timeout_s
        self.backend = backend
        self.shared = shared
        self.model: str | None = None
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * processes
        self._crashes: dict[TileKey, int] = {}  # keys held by a worker that died, and how often
        self._lock = threading.Lock()  # _crashes and restarts: touched by the call threads
        self._closed = False
        self._threads = ThreadPoolExecutor(processes, thread_name_prefix="genprocs")  # restarts only
        try:
            first = 1 if spec.first_alone else 0
            for group in (range(first), range(first, processes)):
                started = [self._spawn() for _ in group]
                self._workers[group.start : group.stop] = started
                for w in started:  # a group started at once, then each awaited
                    self._check_model(w.wait_ready(start_timeout_s))
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> _Worker:
        return _Worker.spawn(self._ctx, self.spec, None if self.backend is None else self.backend.connect())

    def _check_model(self, model: str) -> None:
        if self.model is None:
            self.model = model
        elif model != self.model:
            raise RuntimeError(f"generator workers disagree on the model: {model} != {self.model}")

    def shard_of(self, key: TileKey) -> int:
        return shard_of(key, self.shards, self.shard_up)

    def queue(self, idle_credit: float = 0.0, new_debit: float = 0.0) -> ShardedQueue:
        """The service's generator queue: one fair queue per worker."""
        return ShardedQueue(self.shards, self.shard_of, idle_credit, new_debit)

    def pids(self) -> list[int]:
        """Process ids of the live workers (tests, RSS per worker)."""
        return [w.proc.pid for w in self._workers if w is not None and w.proc.is_alive()]

    async def run(self, shard: int, keys: Sequence[TileKey], want_frame: Sequence[bool],
                  want_fields: Sequence[bool]) -> tuple[list[Any], list[float]]:
        """Worker ``shard`` advances ``keys`` one step: per key a ``Made`` (the frame where
        ``want_frame``, the heights where ``want_fields``), None (not finished: queue it
        again) or an Exception; and per key the worker's CPU seconds.

        The job goes down the pipe and the answer is read on the event loop, which watches
        each worker's pipe (jobs are a few keys, answers a few KiB): no thread hop and no
        watch set up per batch. Only starting a worker again runs in a thread."""
        loop = asyncio.get_running_loop()
        keys = list(keys)
        w = self._workers[shard]
        if w is None or w.dead or w.desynced:  # dead: its pipe read EOF (a send to it fails too)
            if w is not None:
                w.unwatch()
            code = None if w is None else w.proc.exitcode
            w = await loop.run_in_executor(self._threads, self._restart, shard, code)
        w.watch(loop)
        w.answer = answer = loop.create_future()
        try:
            w.conn.send(([(k.level, k.x, k.y) for k in keys], list(want_frame), list(want_fields)))
            results, spent = await answer
        except (EOFError, OSError) as exc:
            if self._closed:
                raise RuntimeError("generator workers closed") from exc
            w.unwatch()
            code = await loop.run_in_executor(self._threads, w.exit_code)
            log.warning("generator worker %d (pid %d) died with exit code %s holding %d keys",
                        shard, w.proc.pid, code, len(keys))
            await loop.run_in_executor(self._threads, self._restart, shard, code)
            return self._after_crash(shard, keys, code), [0.0] * len(keys)
        except asyncio.CancelledError:
            w.desynced = True  # its answer, if any comes, would be read as the next job's
            raise
        finally:
            w.answer = None
        out = []
        with self._lock:
            for k, r in zip(keys, results, strict=True):
                if r is not None and r[0] == "ok":
                    self._crashes.pop(k, None)
                out.append(_decode(k, r))
        return out, spent

    def _after_crash(self, shard: int, keys: list[TileKey], code) -> list[Any]:
        """Keys a dying worker held: queued again (None) the first time, an error the second."""
        out: list[Any] = []
        with self._lock:
            for k in keys:
                n = self._crashes[k] = self._crashes.get(k, 0) + 1
                if n >= 2:
                    del self._crashes[k]
                    out.append(WorkerDied(f"generator worker {shard} died (exit code {code}) twice while "
                                          f"making {k}; ask again to retry"))
                else:
                    out.append(None)
            if len(self._crashes) > 4096:  # keys never asked again: keep the newest half
                self._crashes = dict(list(self._crashes.items())[2048:])
        return out

    def _restart(self, shard: int, code) -> _Worker:
        if self._closed:
            raise RuntimeError("generator workers closed")
        old = self._workers[shard]
        if old is not None:
            old.stop()
        log.warning("starting generator worker %d again (the last exited with %s)", shard, code)
        self._workers[shard] = None
        w = self._spawn()
        try:
            self._check_model(w.wait_ready(self.start_timeout_s))
        except BaseException:
            w.stop()
            raise
        self._workers[shard] = w
        with self._lock:
            self.restarts += 1
        return w

    def close(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after 5 s) and the restart threads
        (on the event loop's thread when the service started them)."""
        self._closed = True
        live = [w for w in self._workers if w is not None]
        for w in live:  # all told first, then each awaited: N workers stop in one worker's time
            w.unwatch()
            if w.proc.is_alive():
                w.proc.terminate()
        for w in live:
            w.stop()
        self._threads.shutdown(wait=True, cancel_futures=True)
        if self.backend is not None:
            self.backend.close()
        if self.shared is not None:
            self.shared.close()


def _decode(key: TileKey, r) -> Any:
    if r is None:
        return None
    if r[0] == "ok":
        _, frame, height, model = r
        return Made(frame, None if height is None else _Heights(key, height, None, model))
    _, kind, msg = r
    return ValueError(msg) if kind == "ValueError" else RuntimeError(f"{kind}: {msg}")


@dataclass(frozen=True)
class _Heights:
    """Fields a worker sends back for height queries (``tileservice.Fields``): heights only."""

    key: TileKey
    height: np.ndarray  # (T+1, T+1) float32 metres
    rgb: None
    model: str


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, proc, conn):
        self.proc, self.conn = proc, conn
        self.desynced = False  # a job was abandoned (cancelled) before its answer was read
        self.dead = False  # its pipe read EOF
        self.answer: asyncio.Future | None = None  # the answer of the job in flight
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop watching the pipe

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have ``loop`` read the pipe whenever it is readable (once per worker)."""
        if self._loop is None:
            self._loop = loop
            loop.add_reader(self.conn.fileno(), self._readable)

    def unwatch(self) -> None:
        """Stop watching (on the watching loop's thread, before the pipe is closed)."""
        if self._loop is not None and not self.conn.closed:
            self._loop.remove_reader(self.conn.fileno())
        self._loop = None

    def _readable(self) -> None:
        """The answer of the job in flight, or EOF (the worker died)."""
        try:
            msg = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.dead = True
            self.unwatch()
            if self.answer is not None and not self.answer.done():
                self.answer.set_exception(exc)
            return
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(msg)

    def exit_code(self) -> int | None:
        """The exit code of a worker whose pipe closed (waits for it at most 5 s)."""
        self.proc.join(5.0)
        return self.proc.exitcode

    @classmethod
    def spawn(cls, ctx, spec: GenSpec, backend_conn=None) -> _Worker:
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_main, args=(child, spec, backend_conn), name="worldstream-gen", daemon=True)
        proc.start()
        child.close()  # the parent keeps only its end: the worker's reads see EOF when the parent dies
        if hasattr(backend_conn, "close"):  # a pipe (not a backend process's address)
            backend_conn.close()  # the worker's end: the backend server sees EOF when the worker dies
        return cls(proc, parent)

    def wait_ready(self, timeout_s: float) -> str:
        """The worker's model id once it is warmed; RuntimeError if it failed or took too long."""
        t_end = time.monotonic() + timeout_s
        while not self.conn.poll(1.0):
            if not self.proc.is_alive():
                raise RuntimeError(f"generator worker exited with {self.proc.exitcode} while starting")
            if time.monotonic() > t_end:
                raise RuntimeError(f"generator worker not ready after {timeout_s:.0f} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"generator worker exited with {self.exit_code()} while starting") from None
        if msg[0] != "ready":
            raise RuntimeError(f"generator worker failed to start: {msg[1]}")
        return msg[2]

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5.0)
            if self.proc.is_alive():
                self.proc.kill()
        self.proc.join(5.0)
        self.conn.close()


# -- the worker process ------------------------------------------------------------------

def _worker_main(conn, spec: GenSpec, backend_conn=None) -> None:
    """Build the source and encoder, warm them, then answer jobs until EOF or None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the parent stops us
    try:
        import runtime.tin.warmup  # noqa: F401  (registers the mesher's warm-up)
        from runtime import jit
        from streaming.tileservice import ServiceConfig, TileService, mesh_encoder

        jit.warm()
        source, prepare, model = spec.open_source() if backend_conn is None else spec.open_source(backend_conn)
        world = World.parse(spec.world)
        # The service's own generator step (steps, per-key retries, checks): the in-process bytes.
        core = TileService(world, source, ServiceConfig(step_s=spec.step_s), prepare=prepare)
        encode = mesh_encoder(spec.error_scale)
        # imports, anchor data, tables and compiled kernels (and a model's graphs) paid before serving
        warm = [TileKey(0, 0, 0)] + [TileKey(*k) for k in spec.warm_keys]
        for _ in range(10_000):  # steps of ``step_s``: until every warm key is made
            out, _spent = _job(core, encode, world, warm, [True] * len(warm), [False] * len(warm))
            for key, o in zip(warm, out, strict=True):
                if o is not None and o[0] == "error":
                    raise RuntimeError(f"warm-up tile {key}: {o[1]}: {o[2]}")
            warm = [k for k, o in zip(warm, out, strict=True) if o is None]
            if not warm:
                break
        conn.send(("ready", os.getpid(), model))
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which raises)
        try:
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        except (OSError, ValueError):  # the parent is gone: nobody to tell
            pass
        return
    from streaming.memtrim import Trimmer

    trimmer = Trimmer(2.0)  # as the generator thread: freed pages go back when idle
    while True:
        try:
            if not conn.poll(0):  # nothing to do now: a burst's freed pages back to the OS
                trimmer.maybe()
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        keys, want_frame, want_fields = job
        try:
            out = _job(core, encode, world, [TileKey(*k) for k in keys], want_frame, want_fields)
        except Exception as exc:  # noqa: BLE001  (never let a worker die on one job)
            out = ([("error", type(exc).__name__, str(exc))] * len(keys), [0.0] * len(keys))
        try:
            conn.send(out)
        except OSError:  # a broken pipe: the parent is gone
            return


def _job(core, encode, world: World, keys: list[TileKey], want_frame, want_fields):
    """One step of ``keys``: (per key None | ("ok", frame, heights, model) | ("error", type, message),
    per key CPU seconds (generation's share plus its own meshing))."""
    results, spent = core._generate(keys)
    out = []
    for i, (key, res) in enumerate(zip(keys, results, strict=True)):
        if isinstance(res, Exception):
            out.append(("error", type(res).__name__, str(res)))
        elif res is tileservice._AGAIN:  # the step ran out before this key
            out.append(None)
        else:
            t0 = time.thread_time()
            try:
                frame = encode(world, key, res) if want_frame[i] else None
            except Exception as exc:  # noqa: BLE001  (this tile's requesters get the error)
                out.append(("error", type(exc).__name__, f"meshing failed: {exc}"))
                continue
            spent[i] += time.thread_time() - t0
            height = np.array(res.height, np.float32) if want_fields[i] else None
            out.append(("ok", frame, height, res.model))
    return out, spent
