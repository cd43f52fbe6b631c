"""WorldGeometry keeps each earth tile's height-independent box frame: a tile fitted again
with a new height range (a guess re-bounded when an ancestor arrives) gets the bits of a
fresh ``packed_bounds``, and the box holds the tile's surface between the two heights."""

import numpy as np

from runtime.geometry import WorldGeometry, geodetic_to_ecef, packed_bounds
from runtime.tiles import LEVEL0_SPACING_DEG, T, TileKey, World


def random_keys(n: int, seed: int) -> list[TileKey]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lv = int(rng.integers(1, 21))
        out.append(TileKey(lv, int(rng.integers(0, 2 << lv)), int(rng.integers(0, 1 << lv))))
    return out


def test_rebounded_earth_tiles_get_a_fresh_fits_bits():
    keys = random_keys(120, 3)
    rng = np.random.default_rng(4)
    lo = rng.uniform(-6000.0, 500.0, len(keys))
    hi = lo + rng.uniform(0.0, 9000.0, len(keys))
    geo = WorldGeometry(World.EARTH)
    for pad_m in (0.0, 25.0, 400.0):  # the same tiles re-bounded: frames kept from the first round
        tiles = [(k, a - pad_m, b + pad_m) for k, a, b in zip(keys, lo, hi, strict=True)]
        got = np.concatenate([geo.packed_tile_bounds(tiles[i:i + 13]) for i in range(0, len(tiles), 13)])
        want = packed_bounds(World.EARTH, keys, lo - pad_m, hi + pad_m)
        np.testing.assert_array_equal(got, want)
    assert len(geo._frames) == len(set(keys))


def test_kept_frame_boxes_hold_the_tile_between_its_heights():
    geo = WorldGeometry(World.EARTH)
    key = TileKey(9, 700, 130)
    geo.packed_tile_bounds([(key, 0.0, 10.0)])  # frame kept
    p = geo.packed_tile_bounds([(key, -200.0, 3000.0)])[0]
    d = LEVEL0_SPACING_DEG * T / 2 ** key.level
    west, north = -180.0 + key.x * d, 90.0 - key.y * d
    lon, lat = np.meshgrid(np.linspace(west, west + d, 5), np.linspace(north - d, north, 5))
    units, lengths = p[12:21].reshape(3, 3), p[21:24]
    for h in (-200.0, 3000.0):
        pts = geodetic_to_ecef(lon.ravel(), lat.ravel(), np.full(lon.size, h))
        local = (pts - p[0:3]) @ units.T
        assert (np.abs(local) <= lengths + 1e-6).all()
    assert 1600.0 < lengths[2] < 1700.0  # up: half the 3.2 km range plus the sag of a ~39 km tile (~30 m)
