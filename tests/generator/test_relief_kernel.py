"""The compiled relief window (generator.relief._window_factor) against the reference it
replaced: numpy window sums in a fixed order and the C library's log10 / pow per node."""

import numpy as np

from generator.relief import (
    WINDOW,
    RegionalRelief,
    _bilinear_numpy,
    _window_factor,
    _window_factor_numpy,
    factor_of_relief,
)
from runtime.tiles import World

_reference = _window_factor_numpy


def test_window_factor_has_the_reference_bits():
    rng = np.random.default_rng(4)
    for scale in (0.0, 0.3, 40.0, 900.0, 6000.0):  # flat (relief clipped to 1 m) .. clipped at FACTOR_MAX
        h = rng.normal(0.0, 1.0, (70, 70)).cumsum(0).cumsum(1) * scale / 30.0 + 500.0
        n = 2 * WINDOW + 1
        got, ref = _window_factor(h, 64, 64, n), _reference(h, 64, 64, n)
        np.testing.assert_array_equal(got.view(np.int64), ref.view(np.int64))
    assert got.max() == 3.0 and _window_factor(np.full((10, 10), 7.0), 4, 4, n).min() == factor_of_relief(1.0)


def test_plane_relief_factor_spans_plains_and_ranges():
    rows, cols = np.arange(-40, 24, dtype=np.int64), np.arange(300, 364, dtype=np.int64)
    f = RegionalRelief(World.PLANE).at_anchor(0, rows, cols)
    assert f.shape == (64, 64) and 0.1 <= f.min() < f.max() <= 3.0 and f.max() / f.min() > 2.0


def test_factor_interpolation_has_the_reference_bits():
    from generator.relief import _bilinear

    grid = np.random.default_rng(1).uniform(0.1, 3.0, (5, 7))
    for shift in (1, 3, 9):  # levels just below the anchor .. deep
        fr = np.arange(0, (4 << shift) + 1, max(1, (1 << shift) // 16), dtype=np.int64) / float(1 << shift)
        fc = np.arange(3, (6 << shift) + 1, max(1, (1 << shift) // 8), dtype=np.int64) / float(1 << shift)
        out = np.empty((fr.size, fc.size), np.float32)
        _bilinear(grid, fr, fc, out)
        ref = np.empty_like(out)
        _bilinear_numpy(grid, fr, fc, ref)
        np.testing.assert_array_equal(out.view(np.int32), ref.view(np.int32))
        assert grid.min() - 1e-6 <= out.min() and out.max() <= grid.max() + 1e-6 and out.std() > 0.1
