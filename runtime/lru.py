"""A least-recently-used map within a size budget: the one cache mechanism of the project.

Mechanism apart from policy (STYLE.md 5; the LRUCache of 3DTilesRendererJS): the caller
says what an entry weighs (``size``: bytes of a frame, 1 per height grid, GPU bytes
given at ``put``) and, where recency alone is not the rule, in which order to evict
(``evict(order=...)``, e.g. the viewer's "least recently drawn frame, deepest first").

Users: the generator's block cache (generator/pyramid.py), the server's frame LRU
(streaming/tileservice.py), the HTTP response cache (streaming/http.py), the server's
height grids (streaming/heights.py) and the client's tile cache (runtime/lod/cache.py).
Not thread-safe, and none of them needs it to be: each is used from one thread (the
event loop or the viewer's loop) or under its owner's lock (``Pyramid``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Set
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def one(_value: Any) -> int:
    """Every entry weighs 1: the budget is a number of entries."""
    return 1


def nbytes(value: Any) -> int:
    """Size of a numpy array (``.nbytes``) or a bytes-like object (``len``), in bytes."""
    n = getattr(value, "nbytes", None)
    return int(n) if n is not None else len(value)


class LRU(Generic[K, V]):
    """key -> value, evicted least recently used first so that ``total <= budget``.

    budget: the largest ``total`` kept, in the units of ``size`` (bytes for a byte
    budget, entries with the default ``one``); may be changed later (evicts on the next
    ``put`` or ``evict``). size: value -> its weight (int >= 0), unless ``put`` is told.
    evict_on_put: True evicts within every ``put`` (a plain LRU). False leaves eviction to
    ``evict`` calls, for owners that must learn the evicted keys and protect some
    (the viewer frees GPU memory and never drops what it drew last frame).

    ``get`` counts as a use (and counts ``hits`` / ``misses``); ``peek``, ``in`` and
    ``keys`` do not. With ``evict_on_put`` a value heavier than the whole budget is not
    kept (nor is the older value of its key): it would only flush everything else.
    """

    def __init__(self, budget: int, size: Callable[[V], int] = one, *, evict_on_put: bool = True):
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        self.budget = budget
        self.size = size
        self.evict_on_put = evict_on_put
        self.total = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()  # least recent first

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def keys(self) -> Iterator[K]:
        """Keys, least recently used first."""
        return iter(self._items)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` (now the most recently used), or ``default``."""
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return default
        self.hits += 1
        self._items.move_to_end(key)
        return item[0]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` without counting a use, or ``default``."""
        item = self._items.get(key)
        return default if item is None else item[0]

    def touch(self, key: K) -> bool:
        """Mark ``key`` used now; False when it is not held."""
        if key not in self._items:
            return False
        self._items.move_to_end(key)
        return True

    def put(self, key: K, value: V, size: int | None = None) -> list[K]:
        """Insert or replace ``key`` as the most recently used; ``size`` overrides
        ``self.size(value)``. Returns the keys evicted to make room (with ``evict_on_put``)."""
        n = int(self.size(value) if size is None else size)
        if n < 0:
            raise ValueError(f"size of {key!r} must be >= 0, got {n}")
        self.pop(key)
        if self.evict_on_put and n > self.budget:
            return []
        self._items[key] = (value, n)
        self.total += n
        return self.evict() if self.evict_on_put else []

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove ``key``; its value, or ``default`` when it was not held."""
        item = self._items.pop(key, None)
        if item is None:
            return default
        self.total -= item[1]
        return item[0]

    def evict(self, protected: Set[K] = frozenset(),
              order: Callable[[K], Any] | None = None) -> list[K]:
        """Evict until ``total <= budget``; returns the evicted keys in eviction order.

        order: sort key of the eviction order (smallest first; ties least recently used
        first); None is recency alone. Protected keys stay even if that leaves the map
        over budget."""
        out: list[K] = []
        if self.total <= self.budget:
            return out
        if order is None and not protected:  # the plain LRU: O(1) per eviction
            while self.total > self.budget:
                k, (_, n) = self._items.popitem(last=False)
                self.total -= n
                out.append(k)
            return out
        candidates = list(self._items) if order is None else sorted(self._items, key=order)
        for k in candidates:
            if self.total <= self.budget:
                break
            if k not in protected:
                self.pop(k)
                out.append(k)
        return out

    def clear(self) -> None:
        self._items.clear()
        self.total = 0
