"""The viewer's tile cache: the eviction policy of DESIGN.md 3 over the generic LRU.

Policy: least recently *drawn frame* first, deepest first among tiles last used in the
same frame (3DTilesRendererJS's unload priority), never what is protected (drawn last
frame). Eviction runs when the owner asks and returns the keys, so the owner frees GPU
memory. Mechanism (entries, byte accounting, eviction loop): runtime.lru.LRU, with
eviction left to ``evict`` and the order passed in. Depth comes from a function passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Set
from typing import Any

from runtime.lru import LRU


def _level(key) -> int:
    return key.level


class TileCache:
    """key -> value with a size in bytes. ``budget_bytes``: the cache evicts down to it."""

    def __init__(self, budget_bytes: int, depth: Callable[[Hashable], int] = _level):
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self._lru: LRU[Hashable, Any] = LRU(int(budget_bytes), evict_on_put=False)
        self._depth = depth
        self._last_used: dict[Hashable, int] = {}  # key -> frame it was last used in
        self._frame = 0

    @property
    def budget_bytes(self) -> int:
        return self._lru.budget

    @budget_bytes.setter
    def budget_bytes(self, value: int) -> None:
        self._lru.budget = int(value)

    @property
    def bytes(self) -> int:
        return self._lru.total

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, key) -> bool:
        return key in self._lru

    def keys(self):
        return self._lru.keys()

    def get(self, key, default=None):
        return self._lru.peek(key, default)  # recency is per frame (next_frame), not per get

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Insert or replace; counts as used this frame."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self._lru.put(key, value, size=nbytes)
        self._last_used[key] = self._frame

    def remove(self, key: Hashable) -> bool:
        if key not in self._lru:
            return False
        self._lru.pop(key)
        del self._last_used[key]
        return True

    def next_frame(self, used: Iterable[Hashable] = ()) -> None:
        """Advance the frame clock and mark ``used`` (e.g. the selection's keep set) used."""
        self._frame += 1
        f, last = self._frame, self._last_used
        for k in used:
            if k in last:
                last[k] = f

    def evict(self, protected: Set[Hashable] = frozenset()) -> list[Hashable]:
        """Evict until within budget; returns the evicted keys, in eviction order. Protected
        keys stay even if that leaves the cache over budget."""
        last, depth = self._last_used, self._depth
        out = self._lru.evict(protected, order=lambda k: (last[k], -depth(k)))
        for k in out:
            del last[k]
        return out
