"""One frame of streaming: selection + scheduler + cache composed (pure: no I/O, no clock).

The owner (viewer, simulator, bench) calls ``on_tile`` when a tile arrives and ``frame``
once per rendered frame; it sends ``plan.start`` / ``plan.cancel`` to its tile source,
uploads ``uploaded`` before drawing ``selection.draw`` and frees ``evicted``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.geometry import WorldGeometry, geometry_for
from runtime.lod.cache import TileCache
from runtime.lod.camera import Camera
from runtime.lod.scheduler import Plan, Scheduler, SchedulerOptions
from runtime.lod.selection import Band, Selection, SelectionOptions, TileInfo, View, select
from runtime.tiles import TileKey, World

URGENT_PRIORITY = -1.0
"""Priority of keys a caller needs now (height queries): before anything selection asks."""


@dataclass(frozen=True)
class StreamerOptions:
    """selection / scheduler policies and the cache's byte budget. max_prefetch_incomplete:
    while the view is not complete (holes, or drawn tiles over the error target), at most
    this many prefetch-band requests are in flight (those already in flight stay; no new
    ones start beyond it): on a CPU-bound source every prefetch tile takes server and
    client CPU from the tiles the view is waiting for (after a teleport on the plane, 24
    of the 129 tiles placed before the view was complete were prefetch). None: no cap."""

    selection: SelectionOptions = field(default_factory=SelectionOptions)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    cache_bytes: int = 512 << 20
    max_prefetch_incomplete: int | None = 4

    def __post_init__(self):
        if self.max_prefetch_incomplete is not None and self.max_prefetch_incomplete < 0:
            raise ValueError(f"max_prefetch_incomplete must be >= 0 or None, got {self.max_prefetch_incomplete}")


@dataclass(frozen=True, eq=False)
class FrameResult:
    selection: Selection
    plan: Plan
    uploaded: tuple[TileKey, ...]
    evicted: tuple[TileKey, ...]
    select_s: float = 0.0  # time spent in selection, when a clock was passed


class TileStreamer:
    """Client-side streaming state of one world: known tiles, ready tiles, requests."""

    def __init__(self, world: World | str | WorldGeometry, options: StreamerOptions = StreamerOptions()):
        self.geometry = world if isinstance(world, WorldGeometry) else geometry_for(world)
        self.options = options
        self.scheduler = Scheduler(options.scheduler)
        self.cache = TileCache(options.cache_bytes)
        self.known: dict[TileKey, TileInfo] = {}
        self.ready: set[TileKey] = set()
        self.drawn_last: frozenset[TileKey] = frozenset()
        self._expanded_last: frozenset[TileKey] = frozenset()

    def on_tile(self, key: TileKey, info: TileInfo, nbytes: int, payload: Any = None) -> None:
        """A tile arrived: its heights are known now; it becomes drawable once uploaded."""
        self.known[key] = info
        self.cache.put(key, payload, nbytes)
        self.scheduler.arrived(key, nbytes, payload)

    def on_failed(self, key: TileKey) -> None:
        self.scheduler.failed(key)

    def payload(self, key: TileKey):
        return self.cache.get(key)

    def frame(self, views: Sequence[View] | View | Camera, urgent: Iterable[TileKey] = (),
              clock: Callable[[], float] | None = None, max_uploads: int | None = None) -> FrameResult:
        """Upload within budget, select, plan requests, evict. ``urgent`` keys (height
        queries) are requested before everything else and kept. ``clock`` (e.g.
        time.perf_counter), when given, times the selection. ``max_uploads``: new tiles
        made drawable this frame (None: the scheduler's ``max_uploads_per_frame``)."""
        uploaded = []
        for key, _ in self.scheduler.uploads(max_uploads):
            if key in self.cache:
                self.ready.add(key)
                uploaded.append(key)
        t0 = clock() if clock else 0.0
        sel = select(views, self.geometry, self.known, self.ready, self.drawn_last, self.options.selection,
                     self._expanded_last)
        self._expanded_last = sel.expanded
        select_s = clock() - t0 if clock else 0.0
        urgent = list(urgent)
        protected = set(sel.keep)
        protected.update(self.drawn_last)
        protected.update(urgent)
        wanted = [(k, URGENT_PRIORITY) for k in urgent if k not in self.known]
        wanted += [(r.key, r.priority) for r in self._capped(sel)]
        plan = self.scheduler.plan(wanted)
        self.cache.next_frame(protected)
        evicted = self.cache.evict(protected)
        for key in evicted:
            self.known.pop(key, None)
            self.ready.discard(key)
            self.scheduler.forget(key)
        self.drawn_last = frozenset(sel.draw)
        return FrameResult(sel, plan, tuple(uploaded), tuple(evicted), select_s)

    def _capped(self, sel: Selection) -> list:
        """``sel.load`` less the prefetch requests beyond ``max_prefetch_incomplete`` while the
        view is incomplete (in-flight ones are kept: cancelling them would throw away work
        the source may have started)."""
        cap = self.options.max_prefetch_incomplete
        if cap is None or sel.complete:
            return list(sel.load)
        in_flight = self.scheduler.in_flight
        room = cap - sum(1 for r in sel.load if r.band == Band.PREFETCH and r.key in in_flight)
        out = []
        for r in sel.load:  # most urgent first
            if r.band == Band.PREFETCH and r.key not in in_flight:
                if room <= 0:
                    continue
                room -= 1
            out.append(r)
        return out
