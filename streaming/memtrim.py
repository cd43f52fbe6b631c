"""Give freed heap memory back to the OS after a burst (glibc ``malloc_trim``).

numpy buffers of 64-264 KB (blocks, height grids, frames) come from malloc's arenas once
glibc's dynamic mmap threshold has grown past them, so after an attack's allocations are
freed the pages stay in the process: RSS keeps its peak. ``malloc_trim(0)`` returns free
pages of every arena (``madvise``), which is what brings RSS back toward its baseline.
Elsewhere (macOS, musl) ``trim`` does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


class Trimmer:
    """``maybe()`` trims at most once per ``min_interval_s`` seconds (of ``clock``)."""

    def __init__(self, min_interval_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {min_interval_s}")
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._trim = _malloc_trim()
        self._last = -float("inf")
        self.trims = 0  # calls that reached malloc_trim
        self.seconds = 0.0  # time spent in them

    @property
    def available(self) -> bool:
        return self._trim is not None

    def due(self) -> bool:
        """True if ``maybe`` would trim now (cheap: no trim, no call into libc)."""
        return self._trim is not None and self.clock() - self._last >= self.min_interval_s

    def maybe(self) -> bool:
        """Trim now if the interval has passed since the last trim; True if it trimmed."""
        now = self.clock()
        if self._trim is None or now - self._last < self.min_interval_s:
            return False
        self._last = now
        t0 = time.perf_counter()
        self._trim(0)
        self.seconds += time.perf_counter() - t0
        self.trims += 1
        return True
