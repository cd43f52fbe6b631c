"""Lakes: real inland water, flat at its real surface height, pure, nested and seamless."""

import numpy as np
import pytest

from generator.anchors.lakes import MIN_CELLS, find_lakes
from generator.pyramid import open_world
from runtime.tiles import T, TileKey, spacing_deg


@pytest.fixture(scope="module")
def earth():
    return open_world("earth", 3, "fractal")


def _tile_at(level: int, lat: float, lon: float) -> tuple[TileKey, int, int]:
    d = spacing_deg(level)
    r, c = int(round((90.0 - lat) / d)), int(round((lon + 180.0) / d))
    return TileKey(level, c // T, r // T), r % T, c % T


def _lat_lon(key: TileKey) -> tuple[np.ndarray, np.ndarray]:
    d = spacing_deg(key.level)
    lat = 90.0 - (key.y * T + np.arange(T + 1)) * d
    lon = -180.0 + np.mod(key.x * T + np.arange(T + 1), 2 * T << key.level) * d
    return np.broadcast_arrays(lat[:, None], lon[None, :])


@pytest.mark.parametrize("name, lat, lon, real_m, tol_m", [
    ("Victoria", -1.0, 33.0, 1134, 15), ("Baikal", 53.5, 108.0, 456, 15), ("Superior", 47.7, -87.5, 183, 15),
    ("Titicaca", -15.8, -69.4, 3812, 15), ("Geneva", 46.43, 6.55, 372, 15), ("Constance", 47.6, 9.4, 395, 15),
    ("Caspian", 42.0, 51.0, -28, 10)])
def test_lake_surfaces_are_the_real_levels(earth, name, lat, lon, real_m, tol_m):
    wet, surface = earth.anchor.lakes.water(np.array([lat]), np.array([lon]))
    assert wet[0], f"{name} is not a lake"
    assert abs(surface[0] - real_m) <= tol_m, f"{name}: {surface[0]} m, real {real_m} m"


def test_a_lake_reads_as_water_at_its_surface_in_a_tile_and_a_height_query(earth):
    from generator.landcover import WATER, tile_landcover
    from generator.water import earth_lake_surface, earth_water_mask
    from streaming.cli.height import ground_query

    key, r, c = _tile_at(9, -1.0, 33.0)  # Lake Victoria, 40 km offshore
    f = earth.tile(key)
    frac, surface = earth.anchor.lakes.at(*_lat_lon(key))
    lake = frac >= 0.5
    assert lake.all() and (f.height == surface).all() and f.height[r, c] == 1128.0  # flat water
    assert (tile_landcover(earth, key, f.height) == WATER).all()
    odd = np.zeros((T + 1, T + 1), bool)
    odd[1::2] = True
    odd[:, 1::2] = True
    victoria = earth.anchor.lakes.at(np.array([-1.0]), np.array([33.0]), with_ids=True)[2][0]
    colour = earth.anchor.lakes.rgb[victoria]  # Blue Marble's, on every sample born below level 3
    np.testing.assert_array_equal(f.rgb[odd], np.broadcast_to(colour, (odd.sum(), 3)))
    assert earth_water_mask(key).all()
    ans = ground_query("earth", earth.tiles, np.array([[33.0, -1.0], [33.7, -0.25]]), lakes=earth_lake_surface)
    assert ans["is_water"].all() and (ans["water_m"] == 1128.0).all() and (ans["ground_m"] == 1128.0).all()
    dry = ground_query("earth", earth.tiles, np.array([[36.8, -1.3]]), lakes=earth_lake_surface)  # Nairobi
    assert not dry["is_water"][0] and np.isnan(dry["water_m"][0])


@pytest.mark.parametrize("level, lat, lon", [(10, 46.45, 6.35), (9, 42.95, 47.55), (8, -15.6, -69.6)])
def test_lake_shores_nest_and_join(earth, level, lat, lon):
    """Geneva's, the Caspian's (a depression) and Titicaca's shores: the lake is flat at its
    surface, the shore ramps into it, even samples are the parent's, and neighbours share edges."""
    key, _, _ = _tile_at(level, lat, lon)
    h, rgb = earth.tile(key).height, earth.tile(key).rgb
    frac, surface = earth.anchor.lakes.at(*_lat_lon(key))
    assert (frac >= 0.5).mean() > 0.05 and (frac == 0).mean() > 0.05  # a shore crosses the tile
    assert (h == surface)[frac >= 0.5].all()
    parent = earth.tile(key.parent())
    r0, c0 = (key.y & 1) * T // 2, (key.x & 1) * T // 2
    np.testing.assert_array_equal(h[::2, ::2], parent.height[r0 : r0 + T // 2 + 1, c0 : c0 + T // 2 + 1])
    np.testing.assert_array_equal(rgb[::2, ::2], parent.rgb[r0 : r0 + T // 2 + 1, c0 : c0 + T // 2 + 1])
    east = earth.tile(TileKey(level, key.x + 1, key.y)).height
    south = earth.tile(TileKey(level, key.x, key.y + 1)).height
    np.testing.assert_array_equal(h[:, -1], east[:, 0])
    np.testing.assert_array_equal(h[-1], south[0])


def test_the_sea_and_lake_rules_together_are_idempotent(earth):
    """sea(lake(sea(h))) applied twice is applied once, on random heights over a lake shore
    (Lake Ladoga near the Gulf of Finland, Geneva, the Caspian's shore, Lake Victoria)."""
    a = earth.anchor
    rng = np.random.default_rng(0)
    for lat0, lon0 in ((61.0, 30.0), (46.3, 6.2), (42.5, 50.2), (-1.2, 32.0)):
        lat = lat0 + np.arange(64) * 0.01
        lon = lon0 + np.arange(64) * 0.02
        h = rng.normal(0.0, 800.0, (64, 64)).astype(np.float32)

        once = a.lakes.constrain_grid(a.landwater, h, lat, lon)
        np.testing.assert_array_equal(a.lakes.constrain_grid(a.landwater, once, lat, lon), once)


def test_find_lakes_keeps_inland_water_only():
    modis = np.full((20, 30), 10, np.uint8)  # grassland
    share = np.ones((20, 30), np.float32)
    share[:, :3] = 0.0  # the sea on the west
    modis[:, :3] = 0
    modis[5:8, 3:5] = 0  # a coastal sliver: water next to the sea -> not a lake
    modis[10:13, 10:14] = 0  # a 12-cell lake
    modis[2:4, 20:23] = 0  # a 6-cell lake
    modis[16, 25] = 0  # a pond below MIN_CELLS
    modis[18, 4:30] = 0  # a river: 26 cells in a row (>= 5 x sqrt(26) long), not one level
    ids = find_lakes(modis, share)
    assert MIN_CELLS > 1 and ids.max() == 2
    assert (ids[10:13, 10:14] == 1).all() and (ids[2:4, 20:23] == 2).all()  # numbered by size
    assert (ids > 0).sum() == 18


def test_grid_reads_equal_point_reads(earth):
    """Tiles read lakes on their grid, height queries at points: the same bits (else a query
    could say water where the tile is not flat)."""
    lakes = earth.anchor.lakes
    for lat0, lon0, span in ((46.3, 6.1, 0.9), (-1.5, 31.8, 2.0), (42.7, 47.3, 0.5), (61.0, 30.0, 0.05)):
        lat = lat0 + np.arange(65) * span / 64
        lon = lon0 + np.arange(65) * span / 64
        fg, sg = lakes.at_grid(lat, lon)
        fp, sp = lakes.at(*np.broadcast_arrays(lat[:, None], lon[None, :]))
        assert (fg > 0).any()
        np.testing.assert_array_equal(fg, fp)
        np.testing.assert_array_equal(sg, sp)


def test_water_rule_reads_lakes_at_their_surface():
    from runtime.ground import water_at

    ground = [1128.0, -32.0, -500.0, 300.0, -3.0]
    context = [1100.0, -30.0, -800.0, 250.0, 40.0]
    lake = [1128.0, -32.0, np.nan, np.nan, np.nan]  # Victoria, the Caspian, sea, land, land below 0 m
    water_m, is_water = water_at("earth", ground, context, lake)
    assert is_water.tolist() == [True, True, True, False, False]
    np.testing.assert_array_equal(water_m[:3], [1128.0, -32.0, 0.0])
    assert np.isnan(water_m[3:]).all()
    with pytest.raises(ValueError, match="one value per point"):
        water_at("earth", ground, context, lake[:2])


def test_no_lakes_at_the_south_pole(earth):
    """MODIS's water class covers the polar gap; a 'lake' there flattened Antarctica's plateau."""
    lakes = earth.anchor.lakes
    assert not lakes.near(-90.0, -60.0, -180.0, 179.9)
    frac, _ = lakes.at(np.array([-89.6, -75.0]), np.array([0.0, 100.0]))
    assert (frac == 0).all()


def test_a_dry_grid_reads_no_lake(earth):
    """``dry_grid`` (which lets the earth's constrain skip the lake rule) says True only where
    the per-point read is fraction 0 everywhere, and the rule and colour are then no-ops;
    beside Lake Geneva and in New Zealand's Southern Alps at levels 8-18, some grids dry and some not."""
    lakes, lw = earth.anchor.lakes, earth.anchor.landwater
    rng = np.random.default_rng(4)
    seen = set()
    for lat0, lon0 in ((46.43, 6.55), (-43.5, 170.2), (-44.0, 170.1)):
        for level in (8, 10, 12, 14, 16, 18):
            d = spacing_deg(level)
            for k in range(-3, 4):
                lat = lat0 + (k * 40 - np.arange(65)) * d
                lon = lon0 + (k * 25 + np.arange(65)) * d
                if not lakes.dry_grid(lat, lon):
                    seen.add(False)
                    continue
                seen.add(True)
                frac, _ = lakes.at(*np.broadcast_arrays(lat[:, None], lon[None, :]))
                assert not (frac > 0).any()
                read = lakes.at_grid(lat, lon, with_ids=True)
                h = rng.uniform(-50.0, 3000.0, (65, 65)).astype(np.float32)
                want = lw.clamp_grid(h, lat, lon)
                np.testing.assert_array_equal(lakes.constrain_grid(lw, h, lat, lon, read=read), want)
                rgb = rng.random((3, 65, 65)).astype(np.float32)
                rows, cols = np.arange(65, dtype=np.int64), np.arange(65, dtype=np.int64)
                np.testing.assert_array_equal(lakes.colour_grid(rgb, rows, cols, read), rgb)
    assert seen == {True, False}


def test_land_share_is_the_block_mean_of_land_whatever_the_strips():
    """The one block mean of the 30" mask (lakes' 6 x 6, registration's 4 x 4, colour's 8 x 8)."""
    from generator.anchors.landwater import land_share

    water = np.random.default_rng(3).random((36, 48)) < 0.3
    want = (~water).reshape(6, 6, 8, 6).mean(axis=(1, 3)).astype(np.float32)
    for strip in (1, 4, 600):
        got = land_share(water, 6, strip)
        assert got.dtype == np.float32 and np.array_equal(got, want)
    assert land_share(np.zeros((8, 8), bool), 4).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert land_share(np.eye(8, dtype=bool), 8)[0, 0] == np.float32(56 / 64)
