"""Snow on the served colour (generator.snowcover): white where the class field says snow, the
same bits at every level, nothing changed where no sample can be snow."""

import numpy as np
import pytest

from generator.landcover import BARE_ROCK, SNOW_ICE, tile_landcover
from generator.pyramid import open_world
from generator.snowcover import SNOW_RGB, snow_weight, with_snow
from runtime.tiles import T, TileKey, World, spacing_deg


def _key(level: int, lon: float, lat: float) -> TileKey:
    d = spacing_deg(level)
    return TileKey(level, int((lon + 180.0) / d) // T, int((90.0 - lat) / d) // T)


@pytest.fixture(scope="module")
def earth():
    return open_world("earth", 0, "fractal")


def test_monte_rosa_is_white_where_the_classes_say_snow(earth):
    key = _key(10, 7.75, 45.95)  # the Monte Rosa massif, glaciers above ~2,600 m
    tile = earth.tile(key)
    classes = tile_landcover(earth, key, tile.height)
    w = snow_weight(World.EARTH, 0, key, tile.height)
    snow = classes == SNOW_ICE
    assert snow.mean() > 0.3  # the massif: a third of the tile and more is snow in the classes
    assert (w[snow] >= 0.55).all()  # every snow sample is at least 55 % snow colour
    assert np.isin(classes[w > 0], [SNOW_ICE, BARE_ROCK]).all()  # else rock (steep) wins the class
    rgb = np.asarray(tile.rgb)
    assert rgb[snow].min() > 0.45 and np.median(rgb[snow]) > 0.8  # white, not the forest green
    assert (w[tile.height < 2000.0] == 0).all()  # valleys keep their colour


def test_snow_colour_nests_exactly(earth):
    parent = _key(9, 7.75, 45.95)
    child = TileKey(10, 2 * parent.x + 1, 2 * parent.y)  # its north-east quarter
    p, c = earth.tile(parent), earth.tile(child)
    assert snow_weight(World.EARTH, 0, child, c.height) is not None
    got = np.asarray(c.rgb)[::2, ::2]
    want = np.asarray(p.rgb)[: T // 2 + 1, T // 2 :]
    assert np.array_equal(got, want)


def test_tiles_without_snow_keep_their_colour():
    rgb = np.random.default_rng(0).random((3, T + 1, T + 1)).astype(np.float32)
    h = np.full((T + 1, T + 1), 800.0, np.float32)  # Paris at 800 m: far below its ~2,400 m snowline
    key = _key(9, 2.35, 48.85)
    assert snow_weight(World.EARTH, 0, key, h) is None
    assert with_snow(World.EARTH, 0, key, h, rgb) is rgb
    high = with_snow(World.EARTH, 0, key, h + 4000.0, rgb)  # the same land 4 km higher: all snow
    assert high is not rgb and np.allclose(high, SNOW_RGB[:, None, None], atol=1e-6)


def test_bad_height_shape_is_refused():
    with pytest.raises(ValueError, match=r"height must be \(257, 257\)"):
        snow_weight(World.EARTH, 0, TileKey(9, 0, 0), np.zeros((10, 10), np.float32))
