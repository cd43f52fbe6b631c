"""numba's ``njit`` with the project's settings, or ``None`` where numba is not installed.

Every compiled kernel has a numpy reference with the same bits (docs/DECISIONS.md 36): a module
uses its kernel when :data:`kernel` is not None and its reference otherwise, so a machine
without numba (a GPU image without the wheel) serves the same tiles, only slower.
"""

from __future__ import annotations

from typing import Callable

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; this is the reference path
    numba = None

kernel: Callable | None = None
"""``kernel(f)``: f compiled with ``cache=True, nogil=True, fastmath=False`` (no reassociation and
no fused multiply-add: the same float64 results as the numpy reference), or None without numba."""
if numba is not None:
    kernel = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
