"""Earth anchor: ETOPO5 registration, real land and water, GLOBE levels, context channels."""

from pathlib import Path

import numpy as np
import pytest

from generator.anchors.context import CHANNELS, context
from generator.anchors.registration import coastal_cells, load_offset_table, offset_arcmin, sample_etopo5
from generator.pyramid import open_world
from runtime.tiles import T, TileKey, spacing_deg

CROP = Path(__file__).resolve().parents[1] / "data" / "etopo5_registration_alps_adriatic.npz"


@pytest.fixture(scope="module")
def earth():
    return open_world("earth", 5, "fractal")


@pytest.fixture(scope="module")
def crop():
    """The 36-48 N, 5-25 E crop pasted into a global ETOPO5-shaped grid, and its 30" water mask."""
    d = np.load(CROP)
    lat_n, _, lon_w, _ = (float(v) for v in d["box"])
    z = np.zeros((2160, 4320), np.float32)
    i0, j0 = int(round((90 - lat_n) * 12)), int(round((lon_w + 180) * 12))
    z[i0 : i0 + d["etopo5"].shape[0], j0 : j0 + d["etopo5"].shape[1]] = d["etopo5"]
    water = np.unpackbits(d["water_30s"], axis=1)[:, :2400].astype(bool)
    return d, z, water


def _tile_at(level: int, lat: float, lon: float) -> tuple[TileKey, int, int]:
    d = spacing_deg(level)
    r, c = int(round((90.0 - lat) / d)), int(round((lon + 180.0) / d))
    return TileKey(level, c // T, r // T), r % T, c % T


def _lat_lon(key: TileKey):
    d = spacing_deg(key.level)
    lat = 90.0 - (key.y * T + np.arange(T + 1)) * d
    lon = -180.0 + (key.x * T + np.arange(T + 1)) * d
    return np.meshgrid(lat, lon, indexing="ij")


def test_offset_field_makes_etopo5_coasts_agree_with_the_land_mask(crop):
    _, z, water = crop
    frac = (~water).reshape(360, 4, 600, 4).mean(axis=(1, 3))  # 2' cells, as measured
    ii, jj = np.nonzero(coastal_cells(frac)[8:-8, 8:-8])
    ii, jj = ii + 8, jj + 8
    lat, lon = 48.0 - (ii + 0.5) / 30.0, 5.0 + (jj + 0.5) / 30.0
    land = frac[ii, jj] >= 0.5
    dlat, dlon = offset_arcmin(load_offset_table(), lat, lon)
    assert 1.0 < np.median(dlat) < 4.0 and -9.0 < np.median(dlon) < -3.0  # north and west, arc-minutes
    zero = np.mean((sample_etopo5(z, lat, lon) > 0) == land)
    moved = np.mean((sample_etopo5(z, lat + dlat / 60.0, lon + dlon / 60.0) > 0) == land)
    assert moved > zero + 0.005, (zero, moved)  # 0.757 -> 0.767 here (worldwide coasts want less shift)


def test_offset_field_brings_etopo5_relief_onto_globe(crop):
    d, z, _ = crop
    g = d["globe_5min"].astype(np.float64)
    ii, jj = np.nonzero(d["land_5min"] == 100)
    lat, lon = 48.0 - (ii + 0.5) / 12.0, 5.0 + (jj + 0.5) / 12.0
    dlat, dlon = offset_arcmin(load_offset_table(), lat, lon)
    rmse0 = np.sqrt(np.mean((sample_etopo5(z, lat, lon) - g[ii, jj]) ** 2))
    rmse = np.sqrt(np.mean((sample_etopo5(z, lat + dlat / 60.0, lon + dlon / 60.0) - g[ii, jj]) ** 2))
    assert rmse < 0.8 * rmse0, (rmse0, rmse)


def test_anchor_coasts_are_the_land_mask(earth, crop):
    _, _, water = crop
    lw = earth.anchor.landwater
    rows = np.arange(int(np.ceil((90 - 47.5) / spacing_deg(3))), int((90 - 36.5) / spacing_deg(3)))
    cols = np.arange(int(np.ceil((5.5 + 180) / spacing_deg(3))), int((24.5 + 180) / spacing_deg(3)))
    h = earth.region(3, int(rows[0]), int(cols[0]), rows.size, cols.size)[0]
    lat, lon = np.meshgrid(90.0 - rows * spacing_deg(3), -180.0 + cols * spacing_deg(3), indexing="ij")
    # the crop's own mask, read the way the run-time asset is: bilinear between cell centres
    fi, fj = (48.0 - lat) * 120 - 0.5, (lon - 5.0) * 120 - 0.5
    i0, j0 = np.floor(fi).astype(int), np.floor(fj).astype(int)
    ti, tj = fi - i0, fj - j0
    land = (~water).astype(np.float64)
    frac = ((land[i0, j0] * (1 - tj) + land[i0, j0 + 1] * tj) * (1 - ti)
            + (land[i0 + 1, j0] * (1 - tj) + land[i0 + 1, j0 + 1] * tj) * ti)
    np.testing.assert_allclose(lw.land_fraction(lat, lon), frac, atol=1e-5)
    dep = lw.in_depression(lat, lon)  # Lake Skadar's bed (a cryptodepression) is the one here
    assert 0 < dep.sum() < 5
    np.testing.assert_array_equal((h >= 0)[~dep], (frac >= 0.5)[~dep])
    assert (frac[dep] >= 0.5).all()
    lake, surface = earth.anchor.lakes.at(lat, lon)  # that bed is Lake Skadar: flat water at its surface
    assert (lake[dep] >= 0.5).all() and (h[dep] == surface[dep]).all() and (h[dep] >= 0).all()


@pytest.mark.parametrize("level, lat, lon", [(9, 43.3, 5.37), (12, 48.8566, 2.3522), (8, -3.119, -60.02)])
def test_refined_land_never_below_sea_level_and_water_reads_as_water(earth, level, lat, lon):
    key, _, _ = _tile_at(level, lat, lon)  # Marseille's coast, Paris, Manaus
    h = earth.tile(key).height
    la, lo = _lat_lon(key)
    land = earth.anchor.landwater.land_fraction(la, lo) >= 0.5
    assert land.any()
    assert h[land].min() >= 0.0
    assert (h[~land] <= -1.0).all()
    parent = earth.tile(key.parent()).height
    r0, c0 = (key.y & 1) * T // 2, (key.x & 1) * T // 2
    np.testing.assert_array_equal(h[::2, ::2], parent[r0 : r0 + T // 2 + 1, c0 : c0 + T // 2 + 1])


def test_real_depressions_stay_below_sea_level(earth):
    key, r, c = _tile_at(8, 31.5, 35.5)  # the Dead Sea (-430 m)
    h = earth.tile(key).height
    assert h[r - 10 : r + 11, c - 10 : c + 11].min() < -150.0


def test_globe_is_the_relief_at_level_6_where_it_covers(earth):
    key, r, c = _tile_at(6, 46.0, 8.5)  # Alps, far inside the GLOBE tile
    h = earth.tile(key).height
    g = earth.anchor.globe.value(6, key.y * T + np.arange(T + 1), key.x * T + np.arange(T + 1))
    la, lo = _lat_lon(key)
    lake, surface = earth.anchor.lakes.at(la, lo)  # lakes (Geneva, Constance, Maggiore...) are flat water
    inside = (earth.anchor.landwater.land_fraction(la, lo) >= 0.5) & (la > 44.0) & (la < 48.0) & (lake == 0)
    assert inside.mean() > 0.5
    assert np.abs(h - g)[inside].max() <= 12.0  # two 5 m codec steps: the anchor's and GLOBE's
    assert (lake >= 0.5).any() and (h == surface)[lake >= 0.5].all()
    assert g[inside].max() > 3400.0  # Piz Bernina (4,049 m) and the Ortler (3,905 m) at 1.2 km


def test_earth_context_is_real_pure_and_nested(earth):
    rows = np.arange(40, 60, dtype=np.int64)
    cols = np.arange(2000, 2030, dtype=np.int64)
    c6 = context("earth", 6, rows * 8, cols * 8)
    np.testing.assert_array_equal(context("earth", 9, rows * 64, cols * 64), c6.copy())  # same points
    assert c6.shape == (len(CHANNELS), 20, 30)
    onehot = c6[1:6].sum(axis=0)
    assert set(np.unique(onehot)) <= {0.0, 1.0}
    for name, lat, lon, climate, cover in [("Sahara", 23.0, 12.0, "climate_B", "barren"),
                                           ("Gabon", 0.5, 11.5, "climate_A", "forest"),
                                           ("Greenland", 75.0, -40.0, "climate_E", "snow_ice")]:
        d = spacing_deg(8)
        cx = context("earth", 8, np.array([round((90 - lat) / d)]), np.array([round((lon + 180) / d)]))[:, 0, 0]
        assert cx[CHANNELS.index("land")] == 1.0, name
        assert cx[CHANNELS.index(climate)] == 1.0 and cx[CHANNELS.index(cover)] == 1.0, name
    key, _, _ = _tile_at(7, 43.3, 5.37)
    land = context("earth", 7, key.y * T + np.arange(T + 1), key.x * T + np.arange(T + 1))[0] >= 0.5
    np.testing.assert_array_equal(land, earth.tile(key).height >= 0)


def test_plane_context_has_the_same_channels_and_follows_the_coast():
    from generator.anchors.plane import PlaneAnchor

    a = PlaneAnchor(0)
    rows = cols = np.arange(-3000, 3000, 40, dtype=np.int64)
    ctx = a.context(3, rows, cols)
    assert ctx.shape == (len(CHANNELS), rows.size, cols.size)
    np.testing.assert_array_equal(ctx[0] > 0.5, a.sample(rows, cols)[0] > 0)
    land = ctx[0] > 0.5
    assert 0.1 < land.mean() < 0.5
    np.testing.assert_array_equal(ctx[1:6].sum(axis=0), land.astype(np.float32))  # one climate on land
    assert min(ctx[k][land].mean() for k in range(1, 6)) > 0.03  # every climate occurs
    np.testing.assert_array_equal(a.context(5, rows * 4, cols * 4), ctx)  # a point's value at every level
    fine = a.context(6, np.arange(-40, 25), np.arange(300, 365))  # between nodes: fractions
    np.testing.assert_array_equal(a.context(8, np.arange(-160, 100, 4), np.arange(1200, 1460, 4)), fine)
    np.testing.assert_array_equal(fine[:, ::8, ::8], a.context(3, np.arange(-5, 4), np.arange(37, 46)))
    assert ((fine >= -0.2) & (fine <= 1.0)).all()
    np.testing.assert_allclose(fine[1:6].sum(axis=0), fine[0], atol=1e-6)  # climate shares = land share


def test_constrain_is_idempotent_and_keeps_even_samples(earth):
    """The pyramid hook's contract: even samples of a refined block that already obey the rule
    (as parents do) are left bit for bit; the clamp is idempotent (the GLOBE blend touches only
    odd samples, and at full weight, as here, it is idempotent too)."""
    a = earth.anchor
    rng = np.random.default_rng(3)
    level = 5  # GLOBE blend and clamp both active (Adriatic coast)
    d = spacing_deg(level)
    r0, c0 = int((90 - 45.5) / d) // 2 * 2, int((180 + 13.0) / d) // 2 * 2
    fields = rng.normal(0.0, 300.0, size=(2, 4, 65, 65)).astype(np.float32)
    origins = np.array([[r0, c0], [r0 + 64, c0 + 64]], dtype=np.int64)
    once = a.constrain(fields, level, origins)
    np.testing.assert_array_equal(a.constrain(once, level, origins), once)
    kept = fields.copy()
    kept[:, :, ::2, ::2] = once[:, :, ::2, ::2]
    np.testing.assert_array_equal(a.constrain(kept, level, origins)[:, :, ::2, ::2], once[:, :, ::2, ::2])
    assert (once[:, 0] != fields[:, 0]).mean() > 0.3  # both rules did something here
    np.testing.assert_array_equal(once[:, 1:], fields[:, 1:])  # colour untouched


@pytest.mark.parametrize("lat, lon", [(-17.76, 177.40), (59.90, 10.70)])  # Fiji, the Oslofjord
def test_coasts_are_ramps_not_cliffs(earth, lat, lon):
    """The coast cap: across the land/water line, neighbouring 4.8 m samples differ by the 1 m
    land/water offset plus a ~28 deg ramp, not by the 20-36 m cliffs the bare clamp left."""
    from generator.anchors.landwater import COAST_RAMP_M, coast_cap

    level, n = 14, 512
    d = spacing_deg(level)
    r0, c0 = int((90 - lat) / d) - n // 2, int((lon + 180) / d) - n // 2
    z = earth.region(level, r0, c0, n, n)[0]
    la, lo = 90 - (r0 + np.arange(n)) * d, -180 + (c0 + np.arange(n)) * d
    land = earth.anchor.landwater.masks_grid(la, lo)[1]
    cross = np.concatenate([np.abs(np.diff(z, axis=1))[land[:, 1:] != land[:, :-1]],
                            np.abs(np.diff(z, axis=0))[land[1:] != land[:-1]]])
    assert cross.size > 50
    step_m = 111_320.0 * d  # north-south sample step; east-west is shorter
    assert cross.max() <= 1.0 + 2 * (2 * COAST_RAMP_M / 926.0) * step_m  # 6.2 m here
    # the cap itself: 0 m on the coastline, 250 m a quarter cell inland, unbounded inland
    np.testing.assert_allclose(coast_cap(np.array([0.5, 0.75, 1.0], np.float32)), [0.0, COAST_RAMP_M, np.inf])
