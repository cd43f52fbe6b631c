"""A priority queue with one lane per owner, served round-robin.

Generic (no tile knowledge): items are hashable keys, each queued once; within a lane
the highest priority goes first; across lanes each non-empty lane gives one item per
round. The tile server uses one lane per connection, so a client that asks for
hundreds of tiles (or claims huge priorities) gets its fair share of the generator
and no more, as in fair queuing for packet schedulers (Demers, Keshav, Shenker 1989).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable


class FairQueue:
    def __init__(self):
        self._lanes: dict[Hashable, list[tuple[float, int, Hashable]]] = {}
        self._order: deque[Hashable] = deque()  # lanes with items, next to serve first
        self._lane_of: dict[Hashable, Hashable] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._lane_of)

    def __contains__(self, item: Hashable) -> bool:
        return item in self._lane_of

    def push(self, owner: Hashable, item: Hashable, priority: float) -> bool:
        """Queue ``item`` in ``owner``'s lane; False (and nothing changes) if queued already."""
        if item in self._lane_of:
            return False
        lane = self._lanes.get(owner)
        if lane is None:
            lane = self._lanes[owner] = []
            self._order.append(owner)
        heapq.heappush(lane, (-priority, next(self._seq), item))
        self._lane_of[item] = owner
        return True

    def pop(self) -> Hashable:
        """The best item of the next lane in the round; raises IndexError when empty."""
        owner = self._order[0]
        lane = self._lanes[owner]
        _, _, item = heapq.heappop(lane)
        del self._lane_of[item]
        if lane:
            self._order.rotate(-1)
        else:
            del self._lanes[owner]
            self._order.popleft()
        return item

    def lanes(self) -> int:
        return len(self._lanes)
