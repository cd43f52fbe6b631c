"""The generated straight-line triangle kernels (runtime/tin/trismall.py) are current and
measure what the table-driven loop (``meshkernels._tri_error``) and numpy measure."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import jit


def test_generated_file_is_current():
    from runtime.tin import trismallgen

    assert trismallgen.TARGET.read_text() == trismallgen.source(), "run: python -m runtime.tin.trismallgen"


@pytest.mark.skipif(not jit.ENABLED, reason="numba not installed or WORLDSTREAM_NO_JIT set")
@pytest.mark.parametrize("b", [4, 8])
def test_tri_small_same_bits_as_table_loop(b):
    """Every pattern in every block of a rough 257 x 257 grid: the same float64 bits as
    ``_tri_error`` (and numpy's ``w.T @ corners`` through ``_plane_error_at``'s dgemm twin)."""
    import runtime.tin.meshkernels as mk
    from runtime.tin.rtin import _halves, _level_patterns, _pattern, _quarters

    rng = np.random.default_rng(7)
    h = np.cumsum(np.cumsum(rng.normal(size=(257, 257)) * 0.7, 0), 1) + rng.normal(size=(257, 257)) * 1e-3
    flat = np.ascontiguousarray(h).ravel()
    pi, pj, pw, pk, vr, vc = _level_patterns(b)
    verts = _quarters(b) + tuple(d for _, d1, d2 in _halves(b) for d in (d1, d2))
    nb = 256 // b
    bi, bj = (a.ravel() for a in np.meshgrid(np.arange(nb), np.arange(nb), indexing="ij"))
    for p in range(8):
        small = np.array([mk.tri_small(flat, 257, int(i * b * 257 + j * b), b, p) for i, j in zip(bi, bj)])
        table = np.array([mk._tri_error(flat, 257, int(i * b * 257 + j * b), p, pi, pj, pw, pk, vr, vc)
                          for i, j in zip(bi, bj)])
        np.testing.assert_array_equal(small.view(np.uint64), table.view(np.uint64))
        # numpy: sample minus the dgemm plane, max |.| per block
        i, j, w, v = _pattern(b, verts[p])
        base = bi * b * 257 + bj * b
        corners = flat[(v[0] * 257 + v[1])[:, None] + base]
        want = np.abs(flat[(i * 257 + j)[:, None] + base] - w.T @ corners).max(axis=0)
        np.testing.assert_array_equal(small.view(np.uint64), want.view(np.uint64))
        assert small.max() > 0
    assert mk.tri_small(flat, 257, 0, 16, 0) == -1.0
