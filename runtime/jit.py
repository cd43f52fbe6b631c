"""Compiled kernels (numba), optional: the numpy code they replace stays the reference.

A kernel here must give the same bits as the numpy expression it stands for: integer maths,
or float maths in the same operations, the same order and the same precision (float32
constants as float32, no fast-math, so no reassociation and no fused multiply-add). Callers
use a kernel only where ``ENABLED`` and fall back to numpy otherwise (a machine without
numba, ``WORLDSTREAM_NO_JIT=1``).

``cache=True`` keeps the machine code on disk beside the module (``__pycache__``), so a
process pays compilation once per machine and loading (milliseconds) once per process;
:func:`warm` loads or compiles every kernel up front, at server start, so that no request
pays it.
"""

from __future__ import annotations

import os

try:  # pragma: no cover - exercised by whichever environment runs the tests
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None

ENABLED = _numba is not None and os.environ.get("WORLDSTREAM_NO_JIT", "") in ("", "0")
"""True where kernels run (numba importable and not switched off)."""

_WARMERS: list = []


def njit(fn):
    """``numba.njit(cache=True, nogil=True)`` (no fast-math) when ENABLED, else ``fn`` itself
    (callers check ENABLED before calling, so the plain function is never the hot path)."""
    if not ENABLED:
        return fn
    return _numba.njit(cache=True, nogil=True)(fn)


def warmer(fn):
    """Register ``fn()`` (calls its module's kernels once on tiny inputs) for :func:`warm`."""
    _WARMERS.append(fn)
    return fn


def warm() -> int:
    """Compile or load now (server start) the kernels of every module imported so far that
    registered a warmer: ``runtime.tin.warmup`` (the mesher and wire codec; the server's
    entry points import it) and ``generator.fractal_kernels`` (loaded with the fractal
    refiner). Returns how many warmers ran (0 without numba)."""
    if not ENABLED:
        return 0
    for fn in _WARMERS:
        fn()
    return len(_WARMERS)
