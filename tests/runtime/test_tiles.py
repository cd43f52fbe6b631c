"""Per-level rules of runtime/tiles.py: the level's geometric error and the skirt depth."""

import math

import pytest

from runtime.tiles import SKIRT_FACTOR, T, TileKey, level_error_m, skirt_depth_for, spacing_m


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


def test_tile_keys_are_immutable_values_ordered_and_hashed_as_level_x_y():
    k = TileKey(12, 2048, 1023)
    assert (k.level, k.x, k.y) == (12, 2048, 1023) and str(k) == "12/2048/1023"
    assert hash(k) == hash(TileKey(12, 2048, 1023)) == hash((12, 2048, 1023))
    assert {k: 1}[TileKey(level=12, x=2048, y=1023)] == 1
    with pytest.raises(AttributeError):
        k.level = 3  # type: ignore[misc]
    keys = [TileKey(3, 0, 1), TileKey(2, 5, 5), TileKey(3, 0, 0), TileKey(2, 4, 9)]
    assert sorted(keys) == [TileKey(2, 4, 9), TileKey(2, 5, 5), TileKey(3, 0, 0), TileKey(3, 0, 1)]
    assert k.parent() == TileKey(11, 1024, 511) and k.children()[3] == TileKey(13, 4097, 2047)
    assert k.ancestor(0) == TileKey(0, 0, 0) and k.sample_origin() == (1023 * T, 2048 * T)
    with pytest.raises(ValueError, match="root tile"):
        TileKey(0, 0, 0).parent()
