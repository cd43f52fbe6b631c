"""generator.relief: the regional detail factor is pure in global coordinates and follows relief."""

import numpy as np
import pytest

from generator.relief import FACTOR_MAX, FACTOR_MIN, ConstantRelief, RegionalRelief
from runtime.tiles import World


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_factor_does_not_depend_on_the_block_that_asks(world):
    rel = RegionalRelief(world)
    level = 9
    rows = np.arange(1000, 1300, dtype=np.int64)[None]
    cols = np.arange(3000, 3200, dtype=np.int64)[None]
    whole = rel.factor(4, level, rows, cols)[0]
    # two overlapping sub-blocks (they share row 1100 and column 3090) give the same bits
    a = rel.factor(4, level, rows[:, 50:101], cols[:, 40:91])[0]
    b = rel.factor(4, level, rows[:, 100:181], cols[:, 90:171])[0]
    np.testing.assert_array_equal(a, whole[50:101, 40:91])
    np.testing.assert_array_equal(b, whole[100:181, 90:171])
    assert whole.dtype == np.float32 and np.all((whole >= FACTOR_MIN) & (whole <= FACTOR_MAX))


def test_earth_factor_separates_ranges_from_plains():
    rel = RegionalRelief(World.EARTH)

    def at(lon, lat, level=10):
        d = (180.0 / 256) / 2**level
        r, c = int((90 - lat) / d), int((lon + 180) / d)
        return float(rel.factor(0, level, np.array([[r]]), np.array([[c]]))[0, 0, 0])

    alps, himalaya, paris, amazon = at(7.0, 46.0), at(86.9, 28.0), at(2.35, 48.85), at(-60.0, -3.1)
    assert alps > 1.2 and himalaya > 1.2
    assert paris < 0.6 and amazon < 0.6


def test_constant_relief_from_a_dem():
    flat = ConstantRelief.from_heights(np.full((10, 10), 100.0))
    rough = ConstantRelief.from_heights(np.random.default_rng(0).normal(0, 800, (50, 50)))
    assert flat.value == FACTOR_MIN and 1.0 < rough.value <= FACTOR_MAX
    got = rough.factor(0, 12, np.zeros((2, 5), np.int64), np.zeros((2, 7), np.int64))
    assert got.shape == (2, 5, 7) and np.all(got == np.float32(rough.value))
    with pytest.raises(ValueError, match="positive"):
        ConstantRelief(0.0)


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_anchor_factor_does_not_depend_on_the_chunk(world):
    """``at_anchor`` over one window gives the bits of smaller windows inside it (the cached
    chunk size is a speed choice: 64 nodes a side since branch tele, 32 before)."""
    rel = RegionalRelief(world)
    rows, cols = np.arange(640, 768, dtype=np.int64), np.arange(1280, 1408, dtype=np.int64)
    whole = rel.at_anchor(4, rows, cols)
    for r0, c0, n in ((0, 0, 32), (32, 64, 32), (64, 0, 64), (5, 77, 19)):
        part = rel.at_anchor(4, rows[r0:r0 + n], cols[c0:c0 + n])
        np.testing.assert_array_equal(part, whole[r0:r0 + n, c0:c0 + n])
