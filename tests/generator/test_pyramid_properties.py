"""Property tests: nesting and seams hold bit for bit for arbitrary keys on both worlds."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.pyramid import open_world
from runtime.tiles import T, TileKey

_worlds = {}


def _world(name):
    if name not in _worlds:
        _worlds[name] = open_world(name, 13, "fractal", cache_bytes=64 << 20)
    return _worlds[name]


@st.composite
def keys(draw, world):
    level = draw(st.integers(1, 20))
    if world == "earth":
        return TileKey(level, draw(st.integers(0, (2 << level) - 1)), draw(st.integers(0, (1 << level) - 1)))
    lim = 2**40 // T
    return TileKey(level, draw(st.integers(-lim, lim)), draw(st.integers(-lim, lim)))


@pytest.mark.parametrize("world", ["plane", "earth"])
def test_random_keys_nest_and_meet_their_east_neighbour_exactly(world):
    @settings(max_examples=8, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(keys(world))
    def check(key):
        p = _world(world)
        f = p.tile(key)
        parent = p.tile(key.parent())
        h = T // 2
        r0, c0 = (key.y & 1) * h, (key.x & 1) * h
        np.testing.assert_array_equal(f.height[::2, ::2], parent.height[r0 : r0 + h + 1, c0 : c0 + h + 1])
        east_x = key.x + 1 if world == "plane" else (key.x + 1) % (2 << key.level)
        east = p.tile(TileKey(key.level, east_x, key.y))
        np.testing.assert_array_equal(f.height[:, -1], east.height[:, 0])
        np.testing.assert_array_equal(f.rgb[:, -1], east.rgb[:, 0])
        assert np.isfinite(f.height).all() and -12000 < f.height.min() and f.height.max() < 12000

    check()
