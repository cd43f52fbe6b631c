"""Server-side tile pipeline: keys -> fields (a source passed in) -> mesh -> wire frame.

Requests from every client are deduplicated and batched into the source (dynamic
batching: take what is queued, up to ``max_batch``, waiting at most ``batch_wait_s``
for more); generation, meshing and encoding run off the event loop in a thread
pool; encoded frames live in an LRU bounded by bytes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from runtime import wire
from runtime.geometry import geometry_for
from runtime.mesh import build_tile_mesh
from runtime.tiles import T, TileKey, World, spacing_m
from streaming.session import tile_frame

log = logging.getLogger(__name__)


class Fields(Protocol):
    """What a source returns per key (generator.pyramid.TileFields satisfies it)."""

    height: np.ndarray  # (T+1, T+1) float32 metres
    rgb: np.ndarray | None  # (T+1, T+1, 3) float32 in [0, 1]
    model: str


TileSource = Callable[[Sequence[TileKey]], Sequence[Fields]]


@dataclass(frozen=True)
class ServiceConfig:
    max_batch: int = 16
    batch_wait_s: float = 0.004
    cache_bytes: int = 256 << 20
    workers: int = 2
    error_scale: float = 1.0  # mesh error bound = error_scale * level_error_m(level)


def level_error_m(level: int) -> float:
    """Default geometric error of a level: a quarter of the sample spacing.

    The TIN's vertical error bound is tied to it, so the screen-space error a
    client computes from it bounds what the mesh leaves out.
    """
    return 0.25 * spacing_m(level)


def encode_fields(world: World, key: TileKey, fields: Fields, error_scale: float = 1.0) -> dict[str, Any]:
    """Mesh one tile's heights (TIN + skirts) and encode the wire payload."""
    geo = geometry_for(world)
    err = error_scale * level_error_m(key.level)
    r0, c0 = key.sample_origin()

    def to_world(rows, cols, h):
        return geo.sample_to_world(key.level, np.asarray(rows, np.float64) + r0,
                                   np.asarray(cols, np.float64) + c0, np.asarray(h, np.float64))

    mesh = build_tile_mesh(fields.height, err, 5.0 * err, to_world, geo.tile_center(key))
    image = wire.encode_image(fields.rgb) if fields.rgb is not None else None
    return wire.encode_tile(mesh.grid_rc, mesh.height_m, mesh.faces, key=key, geometric_error_m=err,
                            model=fields.model, rgb_jpeg_or_png=image)


class TileService:
    """Shared by all connections: dedup, batching, LRU of encoded frames."""

    def __init__(self, world: World, source: TileSource, config: ServiceConfig = ServiceConfig()):
        self.world = World.parse(world)
        self.source = source
        self.config = config
        self._lru: OrderedDict[TileKey, bytes] = OrderedDict()
        self._lru_bytes = 0
        self._waiters: dict[TileKey, list[asyncio.Future]] = {}
        self._queue: list[tuple[float, int, TileKey]] = []
        self._counter = itertools.count()
        self._wake: asyncio.Event | None = None
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="tiles")
        self._task: asyncio.Task | None = None
        self.generated = 0
        self.cache_hits = 0

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="tile-batcher")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True, cancel_futures=True)

    def cached(self, key: TileKey) -> bytes | None:
        frame = self._lru.get(key)
        if frame is not None:
            self._lru.move_to_end(key)
            self.cache_hits += 1
        return frame

    def get(self, key: TileKey, priority: float) -> asyncio.Future:
        """A future resolving to the tile's frame bytes (or raising the generator's error)."""
        fut = asyncio.get_running_loop().create_future()
        frame = self.cached(key)
        if frame is not None:
            fut.set_result(frame)
            return fut
        waiters = self._waiters.setdefault(key, [])
        waiters.append(fut)
        if len(waiters) == 1:
            heapq.heappush(self._queue, (-priority, next(self._counter), key))
            assert self._wake is not None
            self._wake.set()
        return fut

    def _take_batch(self) -> list[TileKey]:
        batch: list[TileKey] = []
        while self._queue and len(batch) < self.config.max_batch:
            _, _, key = heapq.heappop(self._queue)
            # Dropped before it costs generator time when every requester cancelled.
            if any(not f.done() for f in self._waiters.get(key, [])):
                batch.append(key)
            else:
                self._waiters.pop(key, None)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if len(self._queue) < self.config.max_batch:
                    await asyncio.sleep(self.config.batch_wait_s)
                batch = self._take_batch()
                if not batch:
                    continue
                results = await loop.run_in_executor(self._pool, self._produce, batch)
                for key, res in zip(batch, results):
                    if not isinstance(res, Exception):
                        self._remember(key, res)
                    for fut in self._waiters.pop(key, []):
                        if fut.done():
                            continue
                        if isinstance(res, Exception):
                            fut.set_exception(res)
                        else:
                            fut.set_result(res)

    def _produce(self, keys: list[TileKey]) -> list[bytes | Exception]:
        """Generate, mesh and encode a batch (runs in a worker thread)."""
        try:
            fields = list(self.source(keys))
        except Exception:
            # One bad tile must not fail its batch-mates: retry one by one.
            fields = []
            for k in keys:
                try:
                    fields.append(self.source([k])[0])
                except Exception as exc:  # reported to that tile's requesters only
                    log.warning("generator failed on %s: %s", k, exc)
                    fields.append(exc)
        out: list[bytes | Exception] = []
        for key, f in zip(keys, fields):
            if isinstance(f, Exception):
                out.append(f)
                continue
            try:
                frame = tile_frame(key, encode_fields(self.world, key, f, self.config.error_scale))
            except Exception as exc:
                log.warning("meshing failed on %s: %s", key, exc)
                out.append(exc)
                continue
            self.generated += 1
            out.append(frame)
        return out

    def _remember(self, key: TileKey, frame: bytes) -> None:
        # Only ever called on the event loop thread, like cached().
        if key in self._lru:
            return
        self._lru[key] = frame
        self._lru_bytes += len(frame)
        while self._lru_bytes > self.config.cache_bytes and self._lru:
            _, old = self._lru.popitem(last=False)
            self._lru_bytes -= len(old)


__all__ = ["TileService", "ServiceConfig", "encode_fields", "level_error_m", "T"]
