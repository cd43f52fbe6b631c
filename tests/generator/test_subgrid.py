"""Sub-grid peaks (generator.anchors.subgrid): shape, cascade arithmetic, purity, the fit, the asset."""

import numpy as np
import pytest

from generator.anchors import subgrid
from generator.anchors.subgrid import ANCHOR_COLS, ANCHOR_ROWS, SubgridPeaks, peak_field


def _grid(*peaks):
    a = np.zeros((ANCHOR_ROWS, ANCHOR_COLS), dtype=np.int16)
    for r, c, amp in peaks:
        a[r, c] = amp
    return a


def test_peak_is_its_amplitude_at_its_node_and_zero_at_every_other_node():
    a = _grid((1000, 2000, 1500), (1000, 2002, 400))
    rows, cols = np.arange(996, 1005), np.arange(1996, 2007)
    at3 = peak_field(a, 3, rows, cols)
    np.testing.assert_array_equal(at3, a[996:1005, 1996:2007].astype(np.float64))
    at6 = peak_field(a, 6, rows * 8, cols * 8)  # the same points at level 6
    np.testing.assert_array_equal(at6, at3)
    fine = peak_field(a, 6, np.arange(1000 * 8 - 12, 1000 * 8 + 13), np.arange(2000 * 8 - 12, 2000 * 8 + 13))
    assert fine.max() == 1500.0 and fine[12, 12] == 1500.0
    assert fine[12, 16] == pytest.approx(750.0)  # half-way: cos^2(pi / 4)
    assert fine[12 + 8, 12] == 0.0 and fine[12, 12 + 8] == 0.0  # the next nodes
    mid = peak_field(a, 6, np.array([8000]), np.array([2001 * 8]))  # between the two peaks: both reach it
    assert mid[0, 0] == 0.0  # ...but each is zero one node out


def test_peaks_wrap_around_the_globe_and_vanish_beyond_the_poles():
    a = _grid((500, 0, 800), (2, 10, 300))
    east = peak_field(a, 5, np.array([2000]), np.array([4 * ANCHOR_COLS - 2]))  # 0.5 node west of col 0
    west = peak_field(a, 5, np.array([2000]), np.array([-2]))
    np.testing.assert_array_equal(east, west)
    assert east[0, 0] == pytest.approx(400.0)
    assert peak_field(a, 4, np.array([-4, -2]), np.array([20]))[:, 0].tolist() == [0.0, 0.0]


class _Bicubic:
    """The four-point interpolation alone (the refiners' deterministic part), margin 1."""

    margin = 1

    def refine(self, p, level, origins, seed):
        b, c, h, w = p.shape
        out = np.empty((b, c, 2 * h - 5, 2 * w - 5), dtype=np.float32)
        out[:, :, ::2, ::2] = p[:, :, 1:-1, 1:-1]
        hx = subgrid._midpoints(p.astype(np.float64), 3)
        out[:, :, ::2, 1::2] = hx[:, :, 1:-1]
        out[:, :, 1::2, ::2] = subgrid._midpoints(p[:, :, :, 1:-1].astype(np.float64), 2)
        out[:, :, 1::2, 1::2] = subgrid._midpoints(hx, 2)
        return out


def _peaks(*peaks):
    table = {"rel_bins": subgrid.REL_BINS, "u2_q": np.zeros((5, 41)), "excess_q": np.zeros((5, 41)),
             "count": np.zeros(5, np.int64)}
    return SubgridPeaks(_grid(*peaks), table)


def test_refiner_never_sees_the_peaks_and_children_keep_their_parents():
    p = _peaks((906, 1206, 1800), (908, 1207, 600))
    ref = _Bicubic()
    level, r0, c0 = 5, 4 * 906 - 8, 4 * 1206 - 8  # a level-5 block over both peaks
    hp = 9 + 2 * ref.margin
    rng = np.random.default_rng(0)
    smooth = (3000.0 + rng.normal(0.0, 200.0, (1, 1, hp, hp))).astype(np.float32)
    pr, pc = r0 // 2 - 1 + np.arange(hp), c0 // 2 - 1 + np.arange(hp)
    crops = smooth + peak_field(p.a_grid, level - 1, pr, pc).astype(np.float32)  # stored parents hold the peaks
    origins = np.array([[r0, c0]], dtype=np.int64)
    kids = p.refine(ref, crops, level, origins, 0, ref.margin)
    np.testing.assert_array_equal(kids[:, :, ::2, ::2], crops[:, :, 1:-1, 1:-1])  # exact nesting
    peaks = peak_field(p.a_grid, level, r0 + np.arange(17), c0 + np.arange(17))
    want = ref.refine(smooth, level, origins, 0)[0, 0] + peaks
    np.testing.assert_allclose(kids[0, 0], want, atol=2e-3)  # refined peak-free field + the peaks
    assert kids[0, 0].max() > smooth.max() + 1000.0
    far = np.array([[4 * 300, 4 * 300]], dtype=np.int64)  # no peak near: the refiner's own output, same bits
    np.testing.assert_array_equal(p.refine(ref, smooth, level, far, 0, 1), ref.refine(smooth, level, far, 0))


def test_peak_heights_are_a_pure_function_of_location():
    p = _peaks((906, 1206, 1800), (908, 1207, 600), (700, 0, 900))
    big = p.heights(6, np.array([[8 * 906 - 40, 8 * 1206 - 30]]), 65, 65)[0]
    part = p.heights(6, np.array([[8 * 906 - 30, 8 * 1206 - 23]]), 33, 33)[0]
    np.testing.assert_array_equal(part, big[10:43, 7:40])
    assert big.max() == 1800.0
    assert p.heights(6, np.array([[8 * 100, 8 * 100]]), 65, 65) is None  # nothing near
    wrap = p.heights(6, np.array([[8 * 700 - 20, -20], [8 * 700 - 20, 8 * ANCHOR_COLS - 20]]), 41, 41)
    np.testing.assert_array_equal(wrap[0], wrap[1])  # across the date line
    assert wrap[0, 20, 20] == 900.0


def test_quantile_map_reproduces_the_training_distribution_and_ranks_by_prominence():
    rng = np.random.default_rng(1)
    n = 4000
    rel = rng.uniform(0.0, 600.0, n)
    u2 = rel * rng.uniform(0.5, 3.0, n)
    excess = rel * rng.gamma(2.0, 0.6, n)
    table = subgrid.fit(rel, u2, excess)
    a = subgrid.amplitude(table, rel, u2)
    for k in range(len(subgrid.REL_BINS) - 1):
        m = (rel >= subgrid.REL_BINS[k]) & (rel < subgrid.REL_BINS[k + 1])
        for q in (50, 90):
            want = np.percentile(np.maximum(excess[m], 0), q)
            assert np.percentile(a[m], q) == pytest.approx(want, rel=0.05, abs=3.0)
    m = rel >= 200.0
    order = np.argsort(u2[m])
    assert np.all(np.diff(a[m][order]) >= -1e-9)  # more prominent, higher peak
    with pytest.raises(ValueError, match="training peaks"):
        subgrid.fit(rel[:30], u2[:30], excess[:30])


def test_heights_of_a_batch_are_each_blocks_own():
    """``heights`` skips a batch whose bounding box holds no peak: the same arrays (or None) as
    asking block by block, on the shipped peaks (Kilimanjaro's blocks, the Sahara's, both in
    one batch, and a batch across the date line)."""
    p = subgrid.SubgridPeaks.load()
    d = 180.0 / 2048
    r, c = int(round((90 + 3.07) / d)), int(round((180 + 37.36) / d))  # Kilimanjaro
    kili = [[8 * r - 64 + 64 * i, 8 * c - 64 + 64 * j] for i in range(2) for j in range(2)]
    sahara = [[8 * 780 + 64 * i, 8 * 2200 + 64 * j] for i in range(2) for j in range(2)]
    dateline = [[8 * 700, -64], [8 * 700, 8 * ANCHOR_COLS - 64], [8 * 700, 0]]
    for level in (6, 9):
        scale = 1 << (level - 6)
        for batch in (kili, sahara, kili + sahara, dateline):
            origins = np.array(batch, dtype=np.int64) * scale
            got = p.heights(level, origins, 65, 65)
            each = [p.heights(level, o[None], 65, 65) for o in origins]
            if all(e is None for e in each):
                assert got is None
                continue
            want = np.stack([np.zeros((65, 65), np.float32) if e is None else e[0] for e in each])
            np.testing.assert_array_equal(got, want)
    assert p.heights(6, np.array(kili, dtype=np.int64), 65, 65).max() > 1500.0
    assert p.heights(6, np.array(sahara, dtype=np.int64), 65, 65) is None


def test_shipped_peaks_are_outside_globe_and_on_known_volcanoes():
    p = subgrid.SubgridPeaks.load()
    d = 180.0 / 2048
    a = p.a_grid.astype(np.int64)
    alps = a[int((90 - 47.5) / d) : int((90 - 44.5) / d), int((180 + 5.5) / d) : int((180 + 15.0) / d)]
    assert alps.max() == 0  # inside GLOBE's tile real 1 km relief fills these levels
    r, c = int(round((90 + 3.07) / d)), int(round((180 + 37.36) / d))  # Kilimanjaro, an isolated cone
    assert a[r - 2 : r + 3, c - 2 : c + 3].max() > 1500
    assert a.min() >= 0 and 0.001 < (a > 0).mean() < 0.1
    assert p.heights(6, np.array([[8 * r - 10, 8 * c - 10]]), 20, 20).max() > 1500.0
    assert p.heights(6, np.array([[8 * 780, 8 * 2200]]), 65, 65) is None  # the Sahara's plains


def test_earth_pyramid_has_the_peak_and_stays_nested():
    from generator.pyramid import open_world
    from runtime.tiles import T, TileKey, spacing_deg

    earth = open_world("earth", 5, "fractal")
    assert earth.anchor.hidden is not None
    lat, lon = -3.07, 37.36  # Kilimanjaro (5,895 m; ETOPO5's node there: ~3,700 m)
    for level in (6, 7):
        d = spacing_deg(level)
        r, c = int(round((90 - lat) / d)), int(round((lon + 180) / d))
        key = TileKey(level, c // T, r // T)
        h = earth.tile(key).height
        if level == 7:
            par = earth.tile(TileKey(6, key.x // 2, key.y // 2)).height
            i, j = (key.y % 2) * T // 2, (key.x % 2) * T // 2
            np.testing.assert_array_equal(h[::2, ::2], par[i : i + T // 2 + 1, j : j + T // 2 + 1])
        rr, cc = r % T, c % T
        near = h[max(rr - 4, 0) : rr + 5, max(cc - 4, 0) : cc + 5]
        assert 5000.0 < near.max() < 7500.0, level
    fresh = open_world("earth", 5, "fractal")  # another request order and batching: same bits
    right = TileKey(7, key.x + 1, key.y)
    np.testing.assert_array_equal(fresh.tile(right).height[:, 0], h[:, -1])  # seamless
    np.testing.assert_array_equal(fresh.tile(key).height, h)


def test_height_asset_and_peaks_asset_must_agree(tmp_path):
    import shutil

    from generator.anchors.earth import ASSETS, EarthAnchor, read_height_lifted

    assert read_height_lifted((ASSETS / "earth_height_l3.xz").read_bytes())[2]  # the shipped nodes are lifted
    for f in ASSETS.iterdir():
        if f.name.startswith("earth_") and f.name != subgrid.SUBGRID_FILE:
            shutil.copy(f, tmp_path / f.name)
    with pytest.raises(ValueError, match="disagree"):  # lifted nodes without their peaks layer
        EarthAnchor.load(tmp_path)
