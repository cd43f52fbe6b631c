"""Server-side tile pipeline: keys -> fields (a source passed in) -> mesh -> wire frame.

Shared by every connection. A key goes through, in order:

1. the in-memory LRU of encoded frames (bounded by bytes; on the event loop);
2. the on-disk store, when one is given (read in an I/O thread);
3. the generator. Requests from all clients are deduplicated (one generation per
   key however many clients wait) and batched: the batcher takes up to
   ``max_batch`` keys by priority, waiting at most ``batch_wait_s`` for a batch to
   fill (dynamic batching, as in inference servers such as Triton). A batch is
   only formed when the generator is free, and is planned to take at most
   ``batch_budget_s`` of generator time (from the measured seconds per key): a
   request that arrives behind a batch waits for one short batch, not for sixteen
   expensive keys of another client (on a GPU keys cost ms and batches stay full).

The fair queue (one lane per connection) is charged each key's measured generator
seconds, so connections share generator time rather than key counts.

Preemption: when the source can be run in steps (``prepare``, ``Pyramid.prepare``), a
generator call works for at most ``step_s`` (plus one chunk of blocks); a key that is not
finished goes back to the front of its lane, charged what it used, and the next call
serves whichever lane's turn it is. So one deep fresh tile (~0.3 s on a CPU), or a height
query's tiles, holds the generator ``step_s`` at a time, and a light client's key waits
for one step, not for another client's whole job.

Cancellation removes work: when the last requester of a key lets it go (``release``),
the key leaves the generator queue at once, and a generated key that nobody wants
any more is not meshed. So the queue holds at most what live requesters want.
Height queries ask for fields (``fields``) through the same fair queue, in their
connection's lane, and skip meshing unless a tile requester also waits.

Generation runs on one dedicated thread (a generator and its caches need not be
thread-safe; on a GPU one stream of batches is what you want); meshing, encoding
and store writes run in a pool of ``workers`` threads, overlapping the next batch, fed
the most urgent generated tile first (a tile cancelled while it waits is not meshed);
store reads in their own ``io_workers`` threads, so a restart's burst of disk hits
never waits behind meshing.

With ``remote`` (``streaming.genprocs``, ``serve --gen-procs N``) there is no generator
thread: N worker processes each generate, mesh and encode the keys of their own shard
(a fair queue and a batcher each, as above), and return frames; the event loop keeps
the LRU, the store writes, dedup and cancellation.

One file (~820 lines): the LRU, dedup, batching, steps, cancellation and the worker handoffs
share one set of per-key states (waiters, busy, owner, priority) that must change
together on the event loop; split, each part would reach into the others' dicts.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from runtime.lru import LRU, nbytes
from runtime.tiles import T, TileKey, World, level_error_m
from streaming.fairqueue import FairQueue
from streaming.memtrim import Trimmer
from streaming.session import tile_frame
from streaming.store import TileStore

log = logging.getLogger(__name__)


class Fields(Protocol):
    """What a source returns per key (generator.pyramid.TileFields satisfies it)."""

    height: np.ndarray  # (T+1, T+1) float32 metres
    rgb: np.ndarray | None  # (T+1, T+1, 3) float32 in [0, 1]
    model: str
    # optional ``layer``: encode_layer's arrays (runtime.featurelayer), added to the payload


TileSource = Callable[[Sequence[TileKey]], Sequence[Fields]]
"""keys -> one Fields per key, in order (``generator.pyramid.Pyramid.tiles``)."""

Preparer = Callable[[Sequence[TileKey], float], Sequence[tuple[bool, float]]]
"""(keys, budget_s) -> per key (ready: the source now answers it at once, seconds spent):
the source's work done in steps of about ``budget_s`` (``generator.pyramid.Pyramid.prepare``)."""

_AGAIN = object()  # a key whose preparation ran out of its step: queued again
_NO_OWNER = object()  # no key's owner (owners may be None)

Encoder = Callable[[World, TileKey, Fields], bytes]
"""(world, key, fields) -> the complete ``tile`` frame bytes sent to clients."""


@dataclass(frozen=True)
class Made:
    """A key made by a generator worker (``remote``): its ``tile`` frame (None when only
    a height query wanted it) and its fields (None unless a height query wanted them)."""

    frame: bytes | None
    fields: Fields | None


class Generators(Protocol):
    """Generation out of the process (``streaming.genprocs.GenProcs``): ``shards`` workers,
    each fed from its own fair queue, each making whole frames."""

    shards: int
    stepped: bool  # the workers run keys in steps (preemption), as ``prepare`` does here
    steal: bool  # an idle worker may take keys queued for a busy one
    restarts: int  # workers started again after they died

    def queue(self, idle_credit: float, new_debit: float) -> Any:
        """A FairQueue-like queue whose ``shard(i)`` is worker i's own (``genprocs.ShardedQueue``)."""
        ...

    async def run(self, shard: int, keys: Sequence[TileKey], want_frame: Sequence[bool],
                  want_fields: Sequence[bool]) -> tuple[list[Any], list[float]]:
        """Per key a ``Made``, None (its step ran out) or an Exception; per key worker seconds."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ServiceConfig:
    max_batch: int = 16  # keys per generator call
    batch_wait_s: float = 0.004  # longest wait for a batch to fill
    cache_bytes: int = 256 << 20  # in-memory LRU of encoded frames
    workers: int = 2  # mesh / encode / store-write threads
    io_workers: int = 4  # store-read threads (file reads release the GIL; kept apart from meshing)
    max_encoding: int = 32  # generated tiles waiting for a mesh worker before the generator pauses
    batch_budget_s: float = 0.25  # planned generator time per batch: keys = budget / measured s per key
    step_s: float = 0.03  # longest generator call when the source runs in steps (``prepare``); 0: whole keys
    idle_credit_s: float = 0.09  # with steps: generator time a lane that was idle may take before others' turns
    trim_interval_s: float = 2.0  # malloc_trim at most this often, when idle or between steps (streaming/memtrim.py)
    error_scale: float = 1.0  # mesh error bound = error_scale * level_error_m(level)
    # Every generator call takes up to ``max_batch`` keys, however long a key takes: for a source
    # whose refiner calls are GPU round trips (``Pyramid.prepare_together``: a batch's blocks go
    # level by level in one call each), a step's keys share its calls; sized by ``step_s`` instead,
    # learned workers took 1-3 keys a call and paid 2.9 backend round trips a tile (H100, 2026-12-06).
    full_batches: bool = False

    def __post_init__(self):
        if self.max_batch < 1 or self.workers < 1 or self.max_encoding < 1 or self.io_workers < 1:
            raise ValueError("max_batch, workers, io_workers and max_encoding must be >= 1")
        if not 0.0 <= self.batch_wait_s <= 1.0:
            raise ValueError(f"batch_wait_s must be in [0, 1] s, got {self.batch_wait_s}")
        if not 0.0 < self.batch_budget_s <= 60.0:
            raise ValueError(f"batch_budget_s must be in (0, 60] s, got {self.batch_budget_s}")
        if not 0.0 <= self.step_s <= 60.0:
            raise ValueError(f"step_s must be in [0, 60] s, got {self.step_s}")
        if not 0.0 <= self.idle_credit_s <= 60.0:
            raise ValueError(f"idle_credit_s must be in [0, 60] s, got {self.idle_credit_s}")


def check_fields(key: TileKey, fields: Any) -> None:
    """Validate a source's output for ``key`` (raise ValueError saying what was expected)."""
    h = getattr(fields, "height", None)
    if not isinstance(h, np.ndarray) or h.shape != (T + 1, T + 1):
        raise ValueError(
            f"source returned height of shape {getattr(h, 'shape', None)} for {key}, "
            f"expected ({T + 1}, {T + 1})"
        )
    if not np.isfinite(h).all():
        raise ValueError(f"source returned non-finite heights for {key}")


def encode_fields(world: World, key: TileKey, fields: Fields, error_scale: float = 1.0) -> dict[str, Any]:
    """Simplify one tile's heights once and encode the wire payload (runtime.wire).

    ``encode_heights`` hands the RTIN vertex set and flip bits straight to the codec and
    never builds the faces (the rtin coding does not send them; their count follows from
    the vertex count); placement (skirts, normals) is the client's job, so the server
    builds none. ``world``
    decides the error metric (the earth's includes the chord sag); the payload is in
    tile grid coordinates."""
    # Imported here: the pipeline's only use of meshing and the wire format.
    from runtime.tin.curvature import curved_positions
    from runtime.wire import encode_heights, encode_image

    err = error_scale * level_error_m(key.level)
    image = encode_image(fields.rgb) if fields.rgb is not None else None
    # The earth's error includes the chord sag of flat triangles (None on the plane).
    pos = curved_positions(world, key, np.asarray(fields.height, np.float32))
    payload, _, _ = encode_heights(fields.height, err, key=key, model=fields.model, geometric_error_m=err,
                                   rgb_jpeg_or_png=image, positions_m=pos, faces=False)
    layer = getattr(fields, "layer", None)  # the optional feature layer (a source that makes one)
    if layer is not None:
        from runtime.featurelayer import LAYER, encode_layer

        payload[LAYER] = encode_layer(key.level, **layer)
    return payload


def mesh_encoder(error_scale: float = 1.0) -> Encoder:
    """The production encoder: TIN (runtime.tin.simplify) -> wire payload -> ``tile`` frame."""

    def encode(world: World, key: TileKey, fields: Fields) -> bytes:
        return tile_frame(key, encode_fields(world, key, fields, error_scale))

    return encode


@dataclass(frozen=True)
class ServiceStats:
    requests: int  # get() calls
    lru_hits: int
    store_hits: int
    generated: int  # tiles the source produced (for tiles; height queries not counted)
    source_calls: int
    batches: int
    mean_batch: float
    dropped_cancelled: int  # keys dropped before generation because nobody wanted them any more
    dropped_unmeshed: int  # generated keys not meshed because nobody wanted their tile any more
    preempted: int  # generator steps that ended with their key unfinished (queued again)
    failed: int
    lru_bytes: int
    lru_tiles: int
    queued: int  # keys waiting for the generator
    queue_entries: int  # heap entries behind them (removed ones included): bounded by ~2x queued
    waiting_keys: int  # keys some requester waits for (queued, in a store read, generating or meshing)
    trims: int = 0  # malloc_trim calls (streaming/memtrim.py)
    trim_s: float = 0.0  # seconds the generator thread spent in them
    worker_restarts: int = 0  # generator worker processes started again after they died (``remote``)
    stolen: int = 0  # batches an idle worker took from a busy worker's queue (``remote``)
    backend_requests: int = 0  # requests the workers sent the shared learned backend (``remote``)
    backend_calls: int = 0  # backend calls that answered them (several requests can share one)

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


class TileService:
    """Shared by all connections: LRU, store, dedup, dynamic batching, worker threads."""

    def __init__(
        self,
        world: World | str,
        source: TileSource,
        config: ServiceConfig = ServiceConfig(),
        store: TileStore | None = None,
        encode: Encoder | None = None,
        on_fields: Callable[[TileKey, Fields], None] | None = None,
        prepare: Preparer | None = None,
        remote: Generators | None = None,
    ):
        self.world = World.parse(world) if not isinstance(world, World) else world
        self.source = source
        self.config = config
        self.store = store
        self.encode = encode or mesh_encoder(config.error_scale)
        self.on_fields = on_fields  # sees every generated tile's fields (the height cache)
        self.prepare = prepare if config.step_s > 0 else None  # the source in steps (preemption)
        # ``remote``: generation, meshing and encoding in worker processes (``streaming.genprocs``,
        # ``serve --gen-procs``), one fair queue and one batcher per worker; ``source`` unused.
        self.remote = remote
        self._lru: LRU[TileKey, bytes] = LRU(config.cache_bytes, size=nbytes)
        self._waiters: dict[TileKey, set[asyncio.Future]] = {}  # futures of tile frames
        self._field_waiters: dict[TileKey, set[asyncio.Future]] = {}  # futures of Fields (heights)
        self._busy: set[TileKey] = set()  # in a store read, the generator or a mesh worker
        self._prio: dict[TileKey, float] = {}
        self._owner: dict[TileKey, Hashable] = {}  # the lane a waiting key is queued in
        # One lane per requester (connection). With steps, a lane that was idle may take
        # ``idle_credit_s`` of steps in a row (sleeper credit, as in Linux's CFS): a light
        # client's key of a few steps is not cut by a turn of every backlogged lane per step.
        # A lane never seen starts one step behind the current turn (``FairQueue.new_debit``).
        stepped = self._stepped = self.prepare is not None or (remote is not None and remote.stepped)
        credit, debit = (config.idle_credit_s, config.step_s) if stepped else (0.0, 0.0)
        self._queue = FairQueue(credit, debit) if remote is None else remote.queue(credit, debit)
        self._wake: asyncio.Event | None = None
        self._wakes: list[asyncio.Event] = []  # with ``remote``: one per worker's batcher
        self._encoding: asyncio.Semaphore | None = None
        # Generated tiles waiting for a mesh worker: (-priority, seq, key, fields), the most
        # urgent meshed first, and one cancelled meanwhile dropped when its turn comes.
        self._mesh_queue: list[tuple[float, int, TileKey, Fields]] = []
        self._mesh_wake: asyncio.Event | None = None
        self._mesh_seq = itertools.count()
        self._meshers: list[asyncio.Task] = []
        self._batchers: list[asyncio.Task] = []  # with ``remote``: one per worker
        self._running: set[int] = set()  # with ``remote``: workers with a batch in flight
        self._gen_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generator")
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="tiles")
        self._io_pool = ThreadPoolExecutor(max_workers=config.io_workers, thread_name_prefix="store")
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._key_s = 0.0  # moving average of generator seconds per key
        self._trimmer = Trimmer(config.trim_interval_s)
        # Per lane (owner): what it got from the generator, to check fair shares from outside
        # (``lane_stats``): [key steps, generator s, keys finished, generator calls its
        # finished keys waited through, seconds they waited]; the oldest half dropped beyond 4,096.
        self._lane_n: dict[Hashable, list[float]] = {}
        self._claimed: dict[TileKey, tuple[int, float]] = {}  # key -> (generator calls, loop s) at claim
        self._n = dict(
            requests=0,
            lru_hits=0,
            store_hits=0,
            generated=0,
            source_calls=0,
            batches=0,
            batched_keys=0,
            dropped_cancelled=0,
            dropped_unmeshed=0,
            preempted=0,
            failed=0,
            stolen=0,
        )

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._encoding = asyncio.Semaphore(self.config.max_encoding)
        self._mesh_wake = asyncio.Event()
        self._meshers = [asyncio.create_task(self._mesher(), name=f"tile-mesher-{i}")
                         for i in range(self.config.workers)]
        if self.remote is None:
            self._task = asyncio.create_task(self._run(), name="tile-batcher")
        else:  # one batcher per worker, each on its own queue
            self._wakes = [asyncio.Event() for _ in range(self.remote.shards)]
            self._batchers = [asyncio.create_task(self._run(i), name=f"tile-batcher-{i}")
                              for i in range(self.remote.shards)]

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._batchers, *self._meshers, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in (self._gen_pool, self._pool, self._io_pool):
            pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(self.encode, "close", None)  # an encoder with workers (streaming.procencode)
        if callable(close):
            close()
        if self.remote is not None:
            self.remote.close()

    # -- public API ----------------------------------------------------------------------
    def cached(self, key: TileKey) -> bytes | None:
        return self._lru.get(key)

    def get_now(self, key: TileKey) -> bytes | None:
        """The frame of ``key`` if the LRU holds it (counted as a request), else None:
        the fast path of the server, with no future and no callback."""
        frame = self.cached(key)
        if frame is not None:
            self._n["requests"] += 1
            self._n["lru_hits"] += 1
        return frame

    def get(self, key: TileKey, priority: float = 0.0, owner: Hashable = None) -> asyncio.Future:
        """A future resolving to the tile's frame bytes (or raising the generator's error).

        ``owner`` (a connection) picks the fair-queue lane: the generator serves owners
        round-robin, by priority within each. Cancel the future (or call ``release``)
        when the tile is no longer wanted."""
        self._n["requests"] += 1
        fut = asyncio.get_running_loop().create_future()
        frame = self.cached(key)
        if frame is not None:
            self._n["lru_hits"] += 1
            fut.set_result(frame)
            return fut
        self._waiters.setdefault(key, set()).add(fut)
        if self._claim(key, priority, owner) and key not in self._busy:
            if self.store is not None:
                self._busy.add(key)
                self._spawn(self._lookup(key))
            else:
                self._enqueue(key)
        return fut

    def release(self, key: TileKey, fut: asyncio.Future) -> None:
        """``fut`` no longer wants ``key``: cancel it and forget it. When no live
        requester is left the key leaves the generator queue now."""
        fut.cancel()
        for table in (self._waiters, self._field_waiters):
            waiters = table.get(key)
            if waiters is not None:
                waiters.discard(fut)
        if not self._wanted(key):
            if self._queue.remove(key):
                self._n["dropped_cancelled"] += 1
            self._forget(key)

    def reprioritise(self, key: TileKey, priority: float, owner: Hashable = None) -> bool:
        """``owner`` now wants queued ``key`` at ``priority`` (higher first). Only the lane
        the key is queued in is re-ordered, and only by that lane's owner: priorities are
        compared within a lane (each client's own scale), never across lanes. True if the
        key's place in the generator queue changed.

        A key of that owner in the generator now (a step of it running) keeps the priority
        for when its step runs out and it is queued again: a client re-prioritises a key
        once, when its view changes, so a priority dropped there was lost for good. After a
        plane teleport the view's top ancestor, raised from 1020 to 1000 while its first step
        ran, went back at 1020 behind every hole at 1000-1005 and was made last, 1.2 s later,
        with its column below it (bench/realtime_trace.py --server-trace)."""
        if self._owner.get(key, _NO_OWNER) != owner or (key not in self._queue and key not in self._busy):
            return False  # the queue's lane of a key is its owner's (``_enqueue``)
        self._prio[key] = priority
        return self._queue.reprioritise(key, priority)  # False while a step of it runs

    async def fields(
        self, keys: Sequence[TileKey], owner: Hashable = None, priority: float = float("inf")
    ) -> list[Fields]:
        """Fields of ``keys`` (height queries), generated through the fair queue in
        ``owner``'s lane and not meshed unless a tile requester waits too. Cancelling
        the caller releases every key it still waited for. Default priority: first in
        the owner's lane (heights are what lies under a camera); across lanes, turns."""
        loop = asyncio.get_running_loop()
        futs = []
        for key in keys:
            fut = loop.create_future()
            self._field_waiters.setdefault(key, set()).add(fut)
            if self._claim(key, priority, owner) and key not in self._busy:
                self._enqueue(key)  # the store holds frames, not fields: straight to the generator
            futs.append(fut)
        try:
            return list(await asyncio.gather(*futs))
        finally:
            for key, fut in zip(keys, futs, strict=True):
                if not fut.done():
                    self.release(key, fut)

    def stats(self) -> ServiceStats:
        n = self._n
        backend = None if self.remote is None else getattr(self.remote, "backend", None)
        return ServiceStats(
            requests=n["requests"],
            lru_hits=n["lru_hits"],
            store_hits=n["store_hits"],
            generated=n["generated"],
            source_calls=n["source_calls"],
            batches=n["batches"],
            mean_batch=n["batched_keys"] / n["batches"] if n["batches"] else 0.0,
            dropped_cancelled=n["dropped_cancelled"],
            dropped_unmeshed=n["dropped_unmeshed"],
            preempted=n["preempted"],
            failed=n["failed"],
            lru_bytes=self._lru.total,
            lru_tiles=len(self._lru),
            queued=len(self._queue),
            queue_entries=self._queue.heap_entries(),
            waiting_keys=len(self._owner),
            trims=self._trimmer.trims,
            trim_s=self._trimmer.seconds,
            worker_restarts=0 if self.remote is None else self.remote.restarts,
            stolen=n["stolen"],
            backend_requests=int(getattr(backend, "calls", 0)),
            backend_calls=int(getattr(backend, "rounds", 0)),
        )

    # -- pipeline ------------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _claim(self, key: TileKey, priority: float, owner: Hashable) -> bool:
        """Record a requester's priority; True if the key had no owner yet (new work)."""
        if key in self._owner:
            self._prio[key] = max(self._prio[key], priority)
            return key not in self._queue and key not in self._busy
        self._prio[key] = priority
        self._owner[key] = owner
        self._claimed[key] = (self._n["batches"], time.monotonic())
        return True

    def _wanted(self, key: TileKey) -> bool:
        return self._wants_frame(key) or any(not f.done() for f in self._field_waiters.get(key, ()))

    def _wants_frame(self, key: TileKey) -> bool:
        return any(not f.done() for f in self._waiters.get(key, ()))

    def _enqueue(self, key: TileKey, first: bool = False) -> None:
        self._queue.push(self._owner.get(key), key, self._prio.get(key, 0.0), first=first)
        assert self._wake is not None, "TileService.start() was not awaited"
        if self.remote is None:
            self._wake.set()
            return
        shard = self._queue.where(key)
        self._wakes[shard].set()
        if self.remote.steal and shard in self._running:  # its worker is busy: idle ones may take it
            for i, w in enumerate(self._wakes):
                if i not in self._running:
                    w.set()

    async def _lookup(self, key: TileKey) -> None:
        assert self.store is not None
        frame = None
        try:
            if self._wanted(key):
                frame = await asyncio.get_running_loop().run_in_executor(self._io_pool, self.store.get, key)
        finally:
            self._busy.discard(key)
        if frame is not None:
            self._n["store_hits"] += 1
            self._finish(key, frame)
        elif self._wanted(key):
            self._enqueue(key)
        else:
            self._forget(key)

    def _estimate_s(self) -> float:
        """Generator seconds a key is charged to its lane when taken (corrected after)."""
        return self._key_s if self._key_s > 0.0 else 0.01

    def _charge(self, queue: FairQueue, owners: list[Hashable], estimate_s: float, spent_s: list[float]) -> None:
        """Fair share by generator time, not key count: a client whose keys are cheap (a
        neighbour of what it has) is not made to wait a turn of every expensive lane.
        Charged before the next batch is taken, so the next pick sees this batch's cost."""
        for owner, s in zip(owners, spent_s, strict=True):
            queue.charge(owner, s - estimate_s)

    def batch_size(self) -> int:
        """Keys in the next batch: as many as fit ``batch_budget_s`` (``step_s`` when the
        source runs in steps) at the measured generator seconds per key and call, at least
        1, at most ``max_batch`` (always ``max_batch`` with ``full_batches``)."""
        if self._key_s <= 0.0 or self.config.full_batches:
            return self.config.max_batch
        budget_s = self.config.step_s if self._stepped else self.config.batch_budget_s
        return max(1, min(self.config.max_batch, int(budget_s / self._key_s)))

    def _take_batch(self, queue: FairQueue) -> list[TileKey]:
        batch: list[TileKey] = []
        size = self.batch_size()
        while queue and len(batch) < size:
            key = queue.pop(cost=self._estimate_s())
            if self._wanted(key):
                batch.append(key)
                self._busy.add(key)
            else:  # every requester cancelled: dropped before it costs generator time
                self._n["dropped_cancelled"] += 1
                self._forget(key)
        return batch

    async def _run(self, shard: int | None = None) -> None:
        """The batcher of the generator thread, or (``shard``) of one ``remote`` worker."""
        loop = asyncio.get_running_loop()
        assert self._wake is not None and self._encoding is not None and self._mesh_wake is not None
        local = shard is None
        wake = self._wake if local else self._wakes[shard]
        while True:
            if local and not wake.is_set():  # the generator is idle: hand a burst's freed pages back
                await loop.run_in_executor(self._gen_pool, self._trimmer.maybe)
            await wake.wait()
            wake.clear()
            resumed = False
            busy_since = loop.time()
            while (queue := self._next_queue(shard)) is not None:
                # busy for long (an attack): freed pages go back now and then, not only when idle
                if local and loop.time() - busy_since >= self.config.trim_interval_s and self._trimmer.due():
                    await loop.run_in_executor(self._gen_pool, self._trimmer.maybe)
                if not resumed and len(queue) < self.batch_size() and self.config.batch_wait_s > 0:
                    await asyncio.sleep(self.config.batch_wait_s)  # let the batch fill
                estimate_s = self._estimate_s()
                batch = self._take_batch(queue)
                if not batch:
                    continue
                owners = [self._owner.get(k) for k in batch]
                self._n["batches"] += 1
                self._n["batched_keys"] += len(batch)
                t0 = loop.time()
                try:
                    if local:
                        results, spent = await loop.run_in_executor(self._gen_pool, self._generate, batch)
                    else:
                        self._running.add(shard)
                        try:
                            results, spent = await self._run_remote(shard, batch)
                        finally:
                            self._running.discard(shard)
                except Exception as exc:  # never let the batcher die: fail this batch's requesters
                    log.exception("generator batch failed")
                    results, spent = [exc] * len(batch), [(loop.time() - t0) / len(batch)] * len(batch)
                # keys worked on: all but those a step ran out before (they cost ~0 and wait again)
                worked = next((i + 1 for i, r in enumerate(results) if r is _AGAIN), len(batch))
                per_key = (loop.time() - t0) / worked
                self._charge(queue, owners, estimate_s, spent)
                for owner, sec in zip(owners, spent, strict=True):
                    lane = self._lane(owner)
                    lane[0] += 1
                    lane[1] += sec
                self._key_s = per_key if self._key_s <= 0.0 else 0.7 * self._key_s + 0.3 * per_key
                unfinished = [k for k, res in zip(batch, results, strict=True) if res is _AGAIN]
                resumed = bool(unfinished)
                for key in reversed(unfinished):  # pushed to the front: the batch's order stays
                    if not local:  # its next steps where its blocks are (a stolen key stays with the thief)
                        self._queue.pin(key, shard)
                    self._again(key)
                for key, res in zip(batch, results, strict=True):
                    if res is _AGAIN:
                        continue
                    if isinstance(res, Exception):
                        self._fail(key, res)
                        continue
                    self._n["generated"] += 1
                    if isinstance(res, Made):  # a worker's frame (and heights, for a height query)
                        self._made(key, res)
                        continue
                    if self.on_fields is not None:
                        try:
                            self.on_fields(key, res)
                        except Exception:  # a hook must never stop the pipeline
                            log.exception("on_fields hook failed on %s", key)
                    self._give_fields(key, res)
                    if not self._wants_frame(key):  # nobody waits for the mesh: skip meshing
                        self._drop_unmeshed(key)
                        continue
                    await self._encoding.acquire()  # bounded: the generator pauses when meshing lags
                    heapq.heappush(self._mesh_queue, (-self._prio.get(key, 0.0), next(self._mesh_seq), key, res))
                    self._mesh_wake.set()

    def _next_queue(self, shard: int | None) -> FairQueue | None:
        """The queue the batcher of ``shard`` (None: the generator thread) takes its next batch
        from: its own while it holds keys; else, when the workers may steal, the longest queue
        of a worker that is busy (its keys would wait for it while this worker idles; made
        here, they cost their parents' blocks again, not other bytes); None: nothing to do."""
        if shard is None:
            return self._queue if self._queue else None
        own = self._queue.shard(shard)
        if own or not self.remote.steal:
            return own if own else None
        busy = [self._queue.shard(i) for i in self._running if i != shard]
        victim = max(busy, key=len, default=None)
        if victim:  # None, or a queue: true while it holds keys
            self._n["stolen"] += 1
            return victim
        return None

    async def _run_remote(self, shard: int, batch: list[TileKey]) -> tuple[list, list[float]]:
        """One step of ``batch`` in worker ``shard``: frames for the keys a tile requester
        waits for, heights for those a height query waits for."""
        want_fields = [any(not f.done() for f in self._field_waiters.get(k, ())) for k in batch]
        results, spent = await self.remote.run(shard, batch, [self._wants_frame(k) for k in batch], want_fields)
        return [_AGAIN if r is None else r for r in results], spent

    def _made(self, key: TileKey, made: Made) -> None:
        if made.fields is not None:
            self._give_fields(key, made.fields)
        if made.frame is not None and self.store is not None:  # stored as the mesh workers store, then answered
            self._spawn(self._store_and_finish(key, made.frame))
        elif made.frame is not None:
            self._finish(key, made.frame)
        elif self._wants_frame(key):  # a tile requester came while the worker made heights only
            self._busy.discard(key)
            self._enqueue(key)
        else:
            self._drop_unmeshed(key)

    async def _store_and_finish(self, key: TileKey, frame: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._put, key, frame)
        self._finish(key, frame)

    def _again(self, key: TileKey) -> None:
        """A key whose step ran out: back to the front of its lane if still wanted."""
        self._n["preempted"] += 1
        self._busy.discard(key)
        if self._wanted(key):
            self._enqueue(key, first=True)
        else:  # everyone cancelled between steps: the rest of its work is never done
            self._n["dropped_cancelled"] += 1
            self._forget(key)

    def _generate(self, keys: list[TileKey]) -> tuple[list, list[float]]:
        """Advance a batch (generator thread): (per key its Fields, an Exception, or
        ``_AGAIN`` when its step ran out; per key the generator seconds it used).

        With ``prepare``, keys are prepared in order for at most ``step_s``; the ready ones
        are then made by the source (an assembly of held blocks)."""
        # Steps are measured in CPU seconds of this thread (a step descheduled by other load
        # is not charged to its lane); whole keys in wall seconds (a GPU's time is not ours).
        clock = time.thread_time if self.prepare is not None else time.perf_counter
        t0 = clock()
        ready, spent = list(keys), [0.0] * len(keys)
        if self.prepare is not None:
            try:
                steps = list(self.prepare(keys, self.config.step_s))
                if len(steps) != len(keys):
                    raise ValueError(f"prepare returned {len(steps)} results for {len(keys)} keys")
            except Exception as exc:  # the source itself (below) reports the error per key
                log.warning("generator prepare failed on %s: %s", keys, exc)
                steps = [(True, 0.0)] * len(keys)
            spent = [float(s) for _, s in steps]
            ready = [k for k, (done, _) in zip(keys, steps, strict=True) if done]
        t1 = clock()
        made = dict(zip(ready, self._make(ready), strict=True)) if ready else {}
        share = (clock() - t1) / max(1, len(ready))
        if self.prepare is None:
            share = (clock() - t0) / len(keys)
        out = [made.get(k, _AGAIN) for k in keys]
        return out, [s + (share if k in made else 0.0) for k, s in zip(keys, spent, strict=True)]

    def _make(self, keys: list[TileKey]) -> list[Fields | Exception]:
        """Run the source on a batch (generator thread). One bad tile never fails its
        batch-mates: on an error the batch is retried one key at a time."""
        self._n["source_calls"] += 1
        try:
            out = list(self.source(keys))
            if len(out) != len(keys):
                raise ValueError(f"source returned {len(out)} fields for {len(keys)} keys")
            for k, f in zip(keys, out, strict=True):
                check_fields(k, f)
            return out
        except Exception as exc:
            if len(keys) == 1:
                log.warning("generator failed on %s: %s", keys[0], exc)
                return [exc]
        res: list[Fields | Exception] = []
        for k in keys:
            try:
                self._n["source_calls"] += 1
                (f,) = self.source([k])
                check_fields(k, f)
                res.append(f)
            except Exception as exc:  # reported to that tile's requesters only
                log.warning("generator failed on %s: %s", k, exc)
                res.append(exc)
        return res

    async def _mesher(self) -> None:
        """One of ``workers`` loops feeding the mesh pool: the most urgent generated tile
        first (a root generated behind a batch of deep tiles is not meshed after them)."""
        assert self._mesh_wake is not None
        while True:
            while not self._mesh_queue:
                self._mesh_wake.clear()
                await self._mesh_wake.wait()
            _, _, key, fields = heapq.heappop(self._mesh_queue)
            await self._encode(key, fields)

    async def _encode(self, key: TileKey, fields: Fields) -> None:
        assert self._encoding is not None
        if not self._wants_frame(key):  # cancelled while waiting for a mesh worker
            self._encoding.release()
            self._drop_unmeshed(key)
            return
        try:
            frame = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._encode_and_store, key, fields
            )
        except Exception as exc:
            log.warning("meshing failed on %s: %s", key, exc)
            self._fail(key, exc)
        else:
            self._finish(key, frame)
        finally:
            self._encoding.release()

    def _encode_and_store(self, key: TileKey, fields: Fields) -> bytes:
        frame = self.encode(self.world, key, fields)
        if self.store is not None:
            self._put(key, frame)
        return frame

    def _put(self, key: TileKey, frame: bytes) -> None:
        try:
            self.store.put(key, frame)
        except OSError as exc:  # a full or read-only disk degrades to memory-only serving
            log.warning("tile store: cannot write %s: %s", key, exc)

    # -- results (event loop thread only) ------------------------------------------------
    def _finish(self, key: TileKey, frame: bytes) -> None:
        self._busy.discard(key)
        self._done(key)
        self._remember(key, frame)
        for fut in self._waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(frame)
        if any(not f.done() for f in self._field_waiters.get(key, ())):
            self._enqueue(key)  # a height query arrived after generation: the frame has no fields
            return
        self._forget(key)

    def _give_fields(self, key: TileKey, fields: Fields) -> None:
        if self._field_waiters.get(key):
            self._done(key)
        for fut in self._field_waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(fields)

    def _drop_unmeshed(self, key: TileKey) -> None:
        self._n["dropped_unmeshed"] += 1
        self._busy.discard(key)
        self._forget(key)

    def _fail(self, key: TileKey, exc: BaseException) -> None:
        self._n["failed"] += 1
        self._busy.discard(key)
        for table in (self._waiters, self._field_waiters):
            for fut in table.pop(key, ()):
                if not fut.done():
                    fut.set_exception(exc)
        self._forget(key)

    def _lane(self, owner: Hashable) -> list[float]:
        lane = self._lane_n.get(owner)
        if lane is None:
            if len(self._lane_n) >= 4096:  # connections come and go: keep the newest half
                self._lane_n = dict(list(self._lane_n.items())[2048:])
            lane = self._lane_n[owner] = [0, 0.0, 0, 0, 0.0]
        return lane

    def _done(self, key: TileKey) -> None:
        """``key`` was answered: its lane's count of finished keys and what they waited."""
        claimed = self._claimed.pop(key, None)
        if claimed is not None:
            lane = self._lane(self._owner.get(key))
            lane[2] += 1
            lane[3] += self._n["batches"] - claimed[0]
            lane[4] += time.monotonic() - claimed[1]

    def lane_stats(self, owner: Hashable) -> dict[str, float]:
        """What ``owner``'s lane got: ``key_steps`` (generator calls that worked on one of its
        keys, a key counted per call), ``generator_s`` (their seconds), ``keys_done`` (keys it
        was answered, tiles or fields), ``calls_waited`` (generator calls, of every lane,
        between each finished key's request and its answer, summed), ``wait_s`` (those waits).
        With n lanes backlogged and fair turns, calls_waited ~ n x its own key steps."""
        lane = self._lane_n.get(owner, [0, 0.0, 0, 0, 0.0])
        return dict(zip(("key_steps", "generator_s", "keys_done", "calls_waited", "wait_s"), lane, strict=True))

    def _forget(self, key: TileKey) -> None:
        if self.remote is not None:
            self._queue.unpin(key)
        self._claimed.pop(key, None)
        self._waiters.pop(key, None)
        self._field_waiters.pop(key, None)
        self._prio.pop(key, None)
        self._owner.pop(key, None)

    def _remember(self, key: TileKey, frame: bytes) -> None:
        if key not in self._lru:  # a frame already held stays where it is
            self._lru.put(key, frame)


__all__ = [
    "TileService",
    "ServiceConfig",
    "Made",
    "Generators",
    "ServiceStats",
    "TileSource",
    "Encoder",
    "encode_fields",
    "mesh_encoder",
    "check_fields",
]
