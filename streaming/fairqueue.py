"""A priority queue with one lane per owner, served by start-time fair queuing.

Generic (no tile knowledge): items are hashable keys, each queued once; within a lane
the highest priority goes first; across lanes, start-time fair queuing (SFQ, Goyal,
Vin and Cheng 1996): each lane carries a virtual finish time (the cost of what it was
served: one unit per item, or what the caller charges, e.g. generator seconds); the lane
with the smallest one is served next, and a lane that becomes active
starts at the current virtual time, or at its own finish if that is later (a lane that
empties and refills at once gains nothing). Backlogged lanes therefore take turns one
item at a time (round-robin, as in Demers, Keshav and Shenker's fair queuing), and a
lane that was idle wins ties, so a client that asks now and then (a well-behaved one)
is served next rather than after one turn of every backlogged lane. The tile server
uses one lane per connection, so a client that asks for hundreds of tiles (or claims
huge priorities) gets its share and no more.

Idle credit (``idle_credit``, in cost units; sleeper credit, as in Linux's CFS): a known
lane that becomes active starts at its own finish, or at the virtual time less the credit
if that is later. A lane that was idle may so take up to ``idle_credit`` of cost before
the backlogged lanes get another turn (on a preemptible server: a light client's key of a
few short steps is not cut by a turn of every lane per step); a lane that stays busy, or
empties and refills at once, keeps its own finish and gains nothing. A lane never seen
before gets no credit and starts ``new_debit`` after the virtual time (CFS's START_DEBIT:
a new task starts one slice behind; with no debit it starts at the virtual time and wins
ties, as an idle lane does, so a one-off client of a non-preemptive server is served
next): opening many
connections at once, or one per request, buys nothing, and each new lane waits for the
turn of the lanes already known (a client that connects, asks and leaves over and over
never goes before the client that stays).

``remove`` takes an item out at once (lazy deletion: its heap entry is marked dead and
a lane is compacted when more than half of it is dead), so the queue never holds more
than about twice what its owners still want, however fast they request and cancel.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable

_DEAD = object()  # the item slot of a removed entry
_MAX_IDLE_LANES = 1024  # finishes of emptied lanes kept beyond the active ones (a forgotten lane gets no credit)


class FairQueue:
    def __init__(self, idle_credit: float = 0.0, new_debit: float = 0.0):
        if idle_credit < 0 or new_debit < 0:
            raise ValueError(f"idle_credit and new_debit must be >= 0, got {idle_credit}, {new_debit}")
        self.idle_credit = idle_credit
        self.new_debit = new_debit
        # entry: [-priority, seq, item]; item is _DEAD once removed
        self._lanes: dict[Hashable, list[list]] = {}
        self._live: dict[Hashable, int] = {}  # live entries per lane
        self._tag: dict[Hashable, tuple[float, int]] = {}  # active lane -> (virtual finish, tie-break)
        self._ready: list[tuple[float, int, Hashable]] = []  # heap of lane tags; stale ones skipped
        self._vtime = 0.0  # virtual time: the start tag of the lane served last
        self._finish: dict[Hashable, float] = {}  # emptied lanes' finish (forgotten once far behind)
        self._entry: dict[Hashable, tuple[Hashable, list]] = {}  # item -> (owner, entry)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entry)

    def __contains__(self, item: Hashable) -> bool:
        return item in self._entry

    def push(self, owner: Hashable, item: Hashable, priority: float, first: bool = False) -> bool:
        """Queue ``item`` in ``owner``'s lane; False (and nothing changes) if queued already.
        ``first``: ahead of the lane's items of equal priority (work already begun, so a
        lane finishes what it started before it starts more)."""
        if item in self._entry:
            return False
        lane = self._lanes.get(owner)
        if lane is None:  # the lane becomes active
            lane = self._lanes[owner] = []
            self._live[owner] = 0
            finish = self._finish.pop(owner, None)
            if finish is None:  # a lane never seen (or long forgotten): behind the current turn
                self._set_tag(owner, self._vtime + self.new_debit, idle=not self.new_debit)
            else:
                self._set_tag(owner, max(finish, self._floor()), idle=finish <= self._vtime)
        entry = [-priority, -next(self._seq) if first else next(self._seq), item]
        heapq.heappush(lane, entry)
        self._live[owner] += 1
        self._entry[item] = (owner, entry)
        return True

    def reprioritise(self, item: Hashable, priority: float) -> bool:
        """Give a queued ``item`` a new priority within its lane (its lane's turn is
        unchanged); False if it is not queued."""
        found = self._entry.get(item)
        if found is None:
            return False
        owner, entry = found
        if entry[0] == -priority:
            return True
        entry[2] = _DEAD  # lazy deletion, as in remove; the lane's live count is unchanged
        fresh = [-priority, next(self._seq), item]
        lane = self._lanes[owner]
        heapq.heappush(lane, fresh)
        self._entry[item] = (owner, fresh)
        if len(lane) > 2 * self._live[owner] + 16:
            lane[:] = [e for e in lane if e[2] is not _DEAD]
            heapq.heapify(lane)
        return True

    def owner(self, item: Hashable) -> Hashable:
        """The lane ``item`` is queued in; KeyError if it is not queued."""
        return self._entry[item][0]

    def remove(self, item: Hashable) -> bool:
        """Take ``item`` out of its lane now; False if it was not queued."""
        found = self._entry.pop(item, None)
        if found is None:
            return False
        owner, entry = found
        entry[2] = _DEAD
        self._live[owner] -= 1
        lane = self._lanes[owner]
        if self._live[owner] == 0:
            self._drop_lane(owner, self._tag[owner][0])
        elif len(lane) > 2 * self._live[owner] + 16:  # compact: memory stays ~ live items
            lane[:] = [e for e in lane if e[2] is not _DEAD]
            heapq.heapify(lane)
        return True

    def pop(self, cost: float = 1.0) -> Hashable:
        """The best item of the lane with the smallest virtual finish, which is charged
        ``cost`` (an estimate; ``charge`` corrects it); IndexError when empty."""
        while True:
            finish, tie, owner = self._ready[0]  # IndexError when nothing is queued
            if self._tag.get(owner) == (finish, tie):
                break
            heapq.heappop(self._ready)  # stale: the lane was served, emptied or re-tagged
        lane = self._lanes[owner]
        while True:
            _, _, item = heapq.heappop(lane)
            if item is not _DEAD:
                break
        del self._entry[item]
        self._live[owner] -= 1
        self._vtime = max(self._vtime, finish)  # a credited start lies behind it
        if self._live[owner]:
            self._set_tag(owner, finish + cost)
        else:
            self._drop_lane(owner, finish + cost)
        return item

    def charge(self, owner: Hashable, extra: float) -> None:
        """Add ``extra`` (may be negative) to ``owner``'s virtual finish: the measured cost
        of what it was served, minus the estimate ``pop`` charged."""
        tag = self._tag.get(owner)
        if tag is not None:
            self._set_tag(owner, tag[0] + extra)
            return
        self._finish[owner] = max(self._finish.get(owner, -math.inf), self._floor()) + extra

    def _set_tag(self, owner: Hashable, finish: float, idle: bool = False) -> None:
        # ties: lanes that were idle first, then the lane tagged first
        tag = (finish, next(self._seq) - (1 << 62 if idle else 0))
        self._tag[owner] = tag
        heapq.heappush(self._ready, (*tag, owner))
        if len(self._ready) > 2 * len(self._tag) + 16:  # drop stale tags
            self._ready = [(f, t, o) for o, (f, t) in self._tag.items()]
            heapq.heapify(self._ready)

    def _drop_lane(self, owner: Hashable, finish: float) -> None:
        del self._lanes[owner], self._live[owner], self._tag[owner]
        self._finish[owner] = finish
        if len(self._finish) > 2 * len(self._tag) + 16:  # forget lanes idle for long (memory stays bounded)
            horizon = self._vtime - 4 * self.idle_credit
            self._finish = {o: f for o, f in self._finish.items() if f > horizon}
            cap = 4 * len(self._tag) + _MAX_IDLE_LANES
            if len(self._finish) > cap:  # virtual time stood still (nothing served): keep those owing most
                kept = heapq.nlargest(cap // 2, self._finish.items(), key=lambda of: of[1])
                self._finish = dict(kept)

    def _floor(self) -> float:
        """The earliest start a lane that becomes active gets: the virtual time less the
        idle credit (a lane's own finish, if later, wins)."""
        return self._vtime - self.idle_credit

    def lanes(self) -> int:
        return len(self._lanes)

    def heap_entries(self) -> int:
        """Entries held in all lanes, dead ones included (what the queue costs in memory)."""
        return sum(len(lane) for lane in self._lanes.values())
