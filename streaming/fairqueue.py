"""A priority queue with one lane per owner, served round-robin.

Generic (no tile knowledge): items are hashable keys, each queued once; within a lane
the highest priority goes first; across lanes each non-empty lane gives one item per
round. The tile server uses one lane per connection, so a client that asks for
hundreds of tiles (or claims huge priorities) gets its fair share of the generator
and no more, as in fair queuing for packet schedulers (Demers, Keshav, Shenker 1989).

``remove`` takes an item out at once (lazy deletion: its heap entry is marked dead and
a lane is compacted when more than half of it is dead), so the queue never holds more
than about twice what its owners still want, however fast they request and cancel.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable

_DEAD = object()  # the item slot of a removed entry


class FairQueue:
    def __init__(self):
        # entry: [-priority, seq, item]; item is _DEAD once removed
        self._lanes: dict[Hashable, list[list]] = {}
        self._live: dict[Hashable, int] = {}  # live entries per lane
        self._order: deque[Hashable] = deque()  # lanes with live items, next to serve first
        self._entry: dict[Hashable, tuple[Hashable, list]] = {}  # item -> (owner, entry)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entry)

    def __contains__(self, item: Hashable) -> bool:
        return item in self._entry

    def push(self, owner: Hashable, item: Hashable, priority: float) -> bool:
        """Queue ``item`` in ``owner``'s lane; False (and nothing changes) if queued already."""
        if item in self._entry:
            return False
        lane = self._lanes.get(owner)
        if lane is None:
            lane = self._lanes[owner] = []
            self._live[owner] = 0
            self._order.append(owner)
        entry = [-priority, next(self._seq), item]
        heapq.heappush(lane, entry)
        self._live[owner] += 1
        self._entry[item] = (owner, entry)
        return True

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
            self._drop_lane(owner)
        elif len(lane) > 2 * self._live[owner] + 16:  # compact: memory stays ~ live items
            lane[:] = [e for e in lane if e[2] is not _DEAD]
            heapq.heapify(lane)
        return True

    def pop(self) -> Hashable:
        """The best item of the next lane in the round; raises IndexError when empty."""
        owner = self._order[0]
        lane = self._lanes[owner]
        while True:
            _, _, item = heapq.heappop(lane)
            if item is not _DEAD:
                break
        del self._entry[item]
        self._live[owner] -= 1
        if self._live[owner]:
            self._order.rotate(-1)
        else:
            self._drop_lane(owner)
        return item

    def _drop_lane(self, owner: Hashable) -> None:
        del self._lanes[owner], self._live[owner]
        self._order.remove(owner)  # O(lanes): lanes are connections, a few thousand at most

    def lanes(self) -> int:
        return len(self._lanes)

    def heap_entries(self) -> int:
        """Entries held in all lanes, dead ones included (what the queue costs in memory)."""
        return sum(len(lane) for lane in self._lanes.values())
