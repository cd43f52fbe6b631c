"""Request scheduling: bounded in flight, re-prioritised every frame, cancellation, and a
per-frame upload budget (DESIGN.md 3). Generic over hashable keys; the priority policy
comes from the caller (lower number = sooner), like 3DTilesRendererJS's PriorityQueue.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SchedulerOptions:
    """max_in_flight: requests sent and not answered; max_uploads_per_frame and
    max_upload_bytes_per_frame: what may become drawable in one frame (GPU upload time);
    retry_after_frames: a failed request is not asked again for this many frames;
    max_preempt_per_frame: when every slot is taken, at most this many in-flight requests
    are cancelled per frame to make room for wanted keys more urgent than them by at least
    ``preempt_margin`` (priority units: 10 is one level of ``steps``, 1000 one band), so a
    hole that opens behind a full pipe of prefetch or deep tiles is asked for now;
    reprioritise_delta: an in-flight request is re-prioritised when its priority moved by
    at least this (the view angle and error terms drift every frame; this is under one
    step or band)."""

    max_in_flight: int = 64
    max_uploads_per_frame: int = 32
    max_upload_bytes_per_frame: int = 32 << 20
    retry_after_frames: int = 30
    max_preempt_per_frame: int = 8
    preempt_margin: float = 10.0
    reprioritise_delta: float = 1.0

    def __post_init__(self):
        if self.retry_after_frames < 0:
            raise ValueError(f"retry_after_frames must be >= 0, got {self.retry_after_frames}")
        if self.max_preempt_per_frame < 0 or not self.preempt_margin >= 0 or not self.reprioritise_delta >= 0:
            raise ValueError(f"max_preempt_per_frame, preempt_margin and reprioritise_delta must be >= 0, got "
                             f"{self.max_preempt_per_frame}, {self.preempt_margin}, {self.reprioritise_delta}")
        for name in ("max_in_flight", "max_uploads_per_frame", "max_upload_bytes_per_frame"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Plan:
    """What to tell the tile source this frame.

    start: (key, priority) to request now, most urgent first; cancel: keys in flight that
    are no longer wanted, or displaced by more urgent ones (still wanted: asked again
    when there is room); reprioritise: (key, priority) in flight whose priority changed.
    """

    start: tuple[tuple[Hashable, float], ...]
    cancel: tuple[Hashable, ...]
    reprioritise: tuple[tuple[Hashable, float], ...]


class Scheduler:
    """State of requests (in flight) and of arrived payloads waiting for upload."""

    def __init__(self, options: SchedulerOptions = SchedulerOptions()):
        self.options = options
        self.in_flight: dict[Hashable, float] = {}
        self._arrived: dict[Hashable, tuple[int, Any]] = {}  # key -> (nbytes, payload)
        self._priority: dict[Hashable, float] = {}  # latest wanted priority of every key
        self._backoff: dict[Hashable, int] = {}  # failed key -> frames until it may be asked again

    def plan(self, wanted: Iterable[tuple[Hashable, float]]) -> Plan:
        """Re-prioritise with this frame's wanted (key, priority) pairs (any order). Keys
        in flight that are not wanted any more are cancelled; the most urgent wanted keys
        that are neither in flight nor arrived start while there is room; when there is
        none, the least urgent requests in flight make way for wanted keys more urgent
        than them by ``preempt_margin`` (at most ``max_preempt_per_frame`` a frame)."""
        pri: dict[Hashable, float] = {}
        for key, p in wanted:
            p = float(p)
            if key not in pri or p < pri[key]:
                pri[key] = p
        self._priority = pri
        if self._backoff:
            self._backoff = {k: n - 1 for k, n in self._backoff.items() if n > 1}
        cancel = tuple(k for k in self.in_flight if k not in pri)
        for k in cancel:
            del self.in_flight[k]
        changed = []
        for k, old in self.in_flight.items():
            if abs(pri[k] - old) >= self.options.reprioritise_delta and pri[k] != old:
                self.in_flight[k] = pri[k]
                changed.append((k, pri[k]))
        room = self.options.max_in_flight - len(self.in_flight)
        start, preempted = [], []
        # Worst in-flight requests first (highest number), the ones that may make way.
        victims = sorted(self.in_flight.items(), key=lambda kv: -kv[1])
        for k, p in sorted(pri.items(), key=lambda kv: kv[1]):
            if k in self.in_flight or k in self._arrived or k in self._backoff:
                continue
            if room <= 0:
                if (len(preempted) >= self.options.max_preempt_per_frame or not victims
                        or p + self.options.preempt_margin > victims[0][1]):
                    break
                gone, _ = victims.pop(0)
                del self.in_flight[gone]
                preempted.append(gone)
                room += 1
            start.append((k, p))
            self.in_flight[k] = p
            room -= 1
        if preempted:
            gone_set = set(preempted)
            changed = [kp for kp in changed if kp[0] not in gone_set]
        return Plan(tuple(start), cancel + tuple(preempted), tuple(changed))

    def wanted_priority(self, key: Hashable) -> float | None:
        """``key``'s priority in the last plan (lower is sooner), None if it was not wanted.
        Safe to call from another thread (the last plan's table is swapped, not edited)."""
        return self._priority.get(key)

    def arrived(self, key: Hashable, nbytes: int, payload: Any = None) -> bool:
        """A response came. Returns True when it was in flight (a cancelled request that
        arrives anyway returns False; the caller may still keep it). Either way it waits
        for upload."""
        expected = self.in_flight.pop(key, None) is not None
        self._arrived[key] = (int(nbytes), payload)
        return expected

    def failed(self, key: Hashable) -> None:
        """A request failed: free its slot; it is asked again after ``retry_after_frames``
        plans at the earliest (a failing server is not hammered every frame)."""
        self.in_flight.pop(key, None)
        if self.options.retry_after_frames:
            self._backoff[key] = self.options.retry_after_frames

    def forget(self, key: Hashable) -> None:
        """Drop an arrived payload that will not be uploaded (e.g. evicted)."""
        self._arrived.pop(key, None)

    @property
    def waiting_upload(self) -> int:
        return len(self._arrived)

    def uploads(self, max_count: int | None = None) -> list[tuple[Hashable, Any]]:
        """Arrived payloads to upload this frame, most urgent first, within the budget
        (at least one per frame so a single large tile can not stall forever).
        ``max_count``: this frame's count limit instead of ``max_uploads_per_frame`` (a
        caller that budgets upload time per frame; at least 1)."""
        if not self._arrived:
            return []
        limit = self.options.max_uploads_per_frame if max_count is None else max(1, int(max_count))
        inf = float("inf")
        order = sorted(self._arrived, key=lambda k: self._priority.get(k, inf))
        out, total = [], 0
        for k in order:
            nbytes, payload = self._arrived[k]
            if out and (len(out) >= limit
                        or total + nbytes > self.options.max_upload_bytes_per_frame):
                break
            out.append((k, payload))
            total += nbytes
        for k, _ in out:
            del self._arrived[k]
        return out
