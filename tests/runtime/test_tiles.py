"""Per-level rules of runtime/tiles.py: the level's geometric error and the skirt depth."""

import math

import pytest

from runtime.tiles import SKIRT_FACTOR, T, level_error_m, skirt_depth_for, spacing_m


def test_level_error_follows_cesium_heightmap_estimate():
    # Cesium: maximumRadius * 2 pi * 0.25 / (tile width * level-0 tiles in x) at level 0
    cesium0 = 6378137.0 * 2 * math.pi * 0.25 / (T * 2)
    assert level_error_m(0) == pytest.approx(cesium0)
    assert level_error_m(0) == pytest.approx(19_567.9, rel=1e-4)
    assert level_error_m(10) == pytest.approx(cesium0 / 1024)


def test_level_error_is_a_quarter_spacing_and_halves_exactly_per_level():
    for level in range(25):
        assert level_error_m(level) == 0.25 * spacing_m(level)
        assert level_error_m(level + 1) == level_error_m(level) / 2  # powers of two: exact


def test_skirt_hangs_five_errors_deep():
    assert SKIRT_FACTOR == 5.0
    assert skirt_depth_for(level_error_m(6)) == pytest.approx(5 * 305.7, rel=1e-3)
    assert skirt_depth_for(0.0) == 0.0
