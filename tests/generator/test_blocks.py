"""Merged blocks on level-12 tiles (generator.features.blocks): the far field's stand-in for the
buildings of the level-13 children: inside their tile and their 4 x 4 parcel group, the same
built-up share and heights as the children, deterministic, and only at level 12."""

import numpy as np
import pytest

from generator.features import BLOCK_LEVEL, BLOCK_MERGE, blocks, buildings
from generator.landcover import tile_landcover
from generator.layer import tile_layer
from generator.pyramid import open_world
from runtime.tiles import T, TileKey, spacing_m

CITY12 = TileKey(12, -760, 32)  # plane seed 0: the city core of tests/generator/test_features.py


@pytest.fixture(scope="module")
def plane():
    return open_world("plane", 0, refiner="fractal")


def _blocks(plane, key):
    h = plane.tile(key).height
    return blocks(plane.world, plane.seed, key, h, tile_landcover(plane, key, h))


def test_blocks_stand_inside_their_tile_and_their_parcel_group(plane):
    b = _blocks(plane, CITY12).astype(np.float64)
    side = T * spacing_m(CITY12.level)
    group = side * BLOCK_MERGE / (T // (1 << (CITY12.level - 11)))  # 4 parcels, metres
    assert 500 < len(b) <= (T // 2 // BLOCK_MERGE) ** 2  # at most one per group; a city core fills most
    e0, e1 = b[:, 0] - b[:, 2] / 2, b[:, 0] + b[:, 2] / 2
    s0, s1 = -b[:, 1] - b[:, 3] / 2, -b[:, 1] + b[:, 3] / 2
    eps = 0.01  # float32 metres
    assert (e0 >= -eps).all() and (e1 <= side + eps).all() and (s0 >= -eps).all() and (s1 <= side + eps).all()
    assert (np.floor((e0 + eps) / group) == np.floor((e1 - eps) / group)).all()  # one group each
    assert (np.floor((s0 + eps) / group) == np.floor((s1 - eps) / group)).all()
    assert (b[:, 4] > 3.0).all()


def test_blocks_carry_the_childrens_share_and_heights(plane):
    b = _blocks(plane, CITY12).astype(np.float64)
    kids = []
    for dy in (0, 1):
        for dx in (0, 1):
            k = TileKey(13, 2 * CITY12.x + dx, 2 * CITY12.y + dy)
            h = plane.tile(k).height
            kids.append(buildings(plane.world, plane.seed, k, h, tile_landcover(plane, k, h)).astype(np.float64))
    c = np.concatenate(kids)
    area = (T * spacing_m(CITY12.level)) ** 2
    share_b, share_c = (b[:, 2] * b[:, 3]).sum() / area, (c[:, 2] * c[:, 3]).sum() / area
    assert abs(share_b - share_c) < 0.1 * share_c, (share_b, share_c)
    mean_b = (b[:, 2] * b[:, 3] * b[:, 4]).sum() / (b[:, 2] * b[:, 3]).sum()
    mean_c = (c[:, 2] * c[:, 3] * c[:, 4]).sum() / (c[:, 2] * c[:, 3]).sum()
    assert abs(mean_b - mean_c) < 0.1 * mean_c, (mean_b, mean_c)


def test_blocks_only_at_their_level_and_in_the_served_layer(plane):
    assert BLOCK_LEVEL == 12
    for key in (TileKey(11, -380, 16), TileKey(13, -1520, 64)):
        h = plane.tile(key).height
        assert blocks(plane.world, plane.seed, key, h, tile_landcover(plane, key, h)).shape == (0, 5)
    layer = tile_layer(plane, CITY12, plane.tile(CITY12).height)
    np.testing.assert_array_equal(layer["buildings"], _blocks(plane, CITY12))  # same bytes on every call
    assert "trees" not in layer


@pytest.mark.slow
def test_no_block_over_water_or_on_a_steep_site_on_earth_waterfronts():
    from bench.cities import earth_key, footprint_checks

    earth = open_world("earth", 0, refiner="fractal")
    # Lower Manhattan and the Upper Bay, Tokyo Bay. (Midtown's rivers are land in the 30" mask, so
    # since lakes2 they are not water in the classes either: classes follow the terrain's water.)
    for lat, lon in ((40.70, -74.01), (35.60, 139.80)):
        k = earth_key(lat, lon, BLOCK_LEVEL)
        h = earth.tile(k).height
        lc = tile_landcover(earth, k, h)
        b = blocks(earth.world, earth.seed, k, h, lc)
        wet, slope = footprint_checks("earth", k, b, h, lc)
        assert len(b) > 300 and (lc == 0).mean() > 0.05
        assert not wet.any() and (slope <= 30.0).all()
