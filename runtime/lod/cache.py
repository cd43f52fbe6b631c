"""A byte-budgeted tile cache: least recently used first, deepest first among equally
recent, never what is protected (drawn last frame); eviction returns the keys so the
owner frees GPU memory (DESIGN.md 3). Generic: depth comes from a function passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Set
from typing import Any


def _level(key) -> int:
    return key.level


class TileCache:
    """key -> value with a size in bytes. ``budget_bytes``: the cache evicts down to it."""

    def __init__(self, budget_bytes: int, depth: Callable[[Hashable], int] = _level):
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.budget_bytes = int(budget_bytes)
        self._depth = depth
        self._items: dict[Hashable, tuple[Any, int]] = {}
        self._last_used: dict[Hashable, int] = {}
        self._frame = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def keys(self):
        return self._items.keys()

    def get(self, key, default=None):
        item = self._items.get(key)
        return default if item is None else item[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Insert or replace; counts as used this frame."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        old = self._items.get(key)
        if old is not None:
            self.bytes -= old[1]
        self._items[key] = (value, int(nbytes))
        self.bytes += int(nbytes)
        self._last_used[key] = self._frame

    def remove(self, key: Hashable) -> bool:
        item = self._items.pop(key, None)
        if item is None:
            return False
        self.bytes -= item[1]
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
        if self.bytes <= self.budget_bytes:
            return []
        last, depth = self._last_used, self._depth
        candidates = sorted((k for k in self._items if k not in protected),
                            key=lambda k: (last[k], -depth(k)))
        out = []
        for k in candidates:
            if self.bytes <= self.budget_bytes:
                break
            self.remove(k)
            out.append(k)
        return out
