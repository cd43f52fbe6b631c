"""The compiled relief window (generator.relief._window_factor) against the reference it
replaced: numpy window sums in a fixed order and the C library's log10 / pow per node."""

import numpy as np

from generator.relief import (
    WINDOW,
    RegionalRelief,
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

