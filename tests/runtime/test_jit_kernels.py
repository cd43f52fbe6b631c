"""The compiled kernels (runtime.jit) give numpy's bits: fractal noise, the regional factor, the
refiner's output and the RTIN error pyramid, each computed both ways in one process."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import jit

pytestmark = pytest.mark.skipif(not jit.ENABLED, reason="numba not installed or WORLDSTREAM_NO_JIT set")


@pytest.fixture
def numpy_path(monkeypatch):
    """A function that runs fn(*args) with every kernel switched off (the numpy reference)."""

    def run(fn, *args, **kw):
        from generator import fractal

        with monkeypatch.context() as m:
            m.setattr(jit, "ENABLED", False)
            m.setattr(fractal._NumpyOps, "compiled", False)
            return fn(*args, **kw)

    return run


def test_gauss_grid_same_bits_as_noise_gauss():
    from generator import fractal_kernels, noise

    rows = np.array([[-5, -4, 0, 3], [2**40, 2**40 + 1, 7, -(2**41)]], dtype=np.int64)
    cols = np.array([[0, 1, 2], [-1, 2**39, 5]], dtype=np.int64)
    got = fractal_kernels.gauss_grid(7, 12, 1, rows, cols)
    want = noise.gauss(7, 12, 1, rows, cols)
    assert got.dtype == np.float32 and got.shape == (2, 4, 3)
    np.testing.assert_array_equal(got, want)
    assert np.abs(got).max() > 0.5  # real noise, not zeros


@pytest.mark.parametrize("world", ["plane", "earth"])
def test_refiner_same_bits(world, numpy_path):
    from generator.fractal import FractalRefiner
    from runtime.tiles import World

    ref = FractalRefiner(World.parse(world))
    rng = np.random.default_rng(3)
    b, h = 3, 10
    parents = np.empty((b, 4, h, h), np.float32)
    parents[:, 0] = np.cumsum(rng.normal(size=(b, h, h)) * 40.0, axis=2) + 500.0
    parents[:, 1:] = rng.random((b, 3, h, h))
    for level in (9, 10, 14):  # gullies on even levels, the east-west lattice on the earth
        base = 1 << (level - 1)
        origins = np.array([[base // 2, base // 3], [base // 2 + 16, base // 3], [2, base - 18]], np.int64) * 2
        got = ref.refine(parents, level, origins, seed=4)
        want = numpy_path(ref.refine, parents, level, origins, seed=4)
        np.testing.assert_array_equal(got, want)
        assert np.ptp(got[:, 0]) > 1.0


@pytest.mark.parametrize("config", ["V5", "V6_CARVE"])
def test_refiner_same_bits_on_pyramid_crops(config, numpy_path):
    """The compiled height step (``fractal_kernels.height_detail``: region factor, detail gain,
    roughness) on real parents: crops of the plane pyramid's level 6 around a coast and
    mountains, refined to level 7 and 8 (gullies on one, off on the other), v5 and v6's carving
    (its detail gain)."""
    from generator import fractal
    from generator.pyramid import Pyramid
    from runtime.tiles import World

    ref = fractal.FractalRefiner(World.PLANE, getattr(fractal, config))
    pyr = Pyramid(World.PLANE, 0, "fractal")
    m = ref.margin
    for level in (7, 8):
        n = 33 + 2 * m  # parents of a 64-sample block and its margin
        parents = np.stack([pyr.region(level - 1, r - m, c - m, n, n) for r, c in ((40, -30), (72, 2))])
        origins = np.array([[80, -60], [144, 4]], np.int64)
        got = ref.refine(parents, level, origins, seed=0)
        want = numpy_path(ref.refine, parents, level, origins, seed=0)
        np.testing.assert_array_equal(got, want)
        assert np.ptp(got[:, 0]) > 10.0


def test_ew_smooth_same_bits_across_latitudes_and_the_date_line(numpy_path):
    """``fractal_kernels.ew_smooth`` reuses a lattice value between neighbouring columns: the
    numpy expression's bits at the equator (a cell a column), toward the poles (many columns a
    cell) and across the date line (canonical columns wrap to 0)."""
    from generator import fractal
    from generator.fractal import FractalRefiner
    from generator.worldmetric import cols_per_world
    from runtime.tiles import World

    ref = FractalRefiner(World.EARTH)
    level = 12
    period = cols_per_world(level)
    for r0 in (period // 4 - 40, period // 16, 3):  # equator, 67 deg, the pole row
        rows = np.arange(r0, r0 + 64, dtype=np.int64)[None] * np.ones((2, 1), np.int64)
        cols = np.stack([np.arange(100, 227, dtype=np.int64),
                         np.arange(period - 60, period + 67, dtype=np.int64) % period])
        plan = ref._plan(level, np.stack([rows[:, 0], cols[:, 0]], 1), 66, 66, 5, margin=1)
        od_r = plan["rows"][:, 1::2]
        args = (fractal._NumpyOps(), 5, level, od_r, plan["cols"], plan["lattice_n"], plan["lattice_scale"])
        got = fractal._ew_smooth_noise(*args)
        want = numpy_path(fractal._ew_smooth_noise, fractal._NumpyOps(), *args[1:])
        np.testing.assert_array_equal(got, want)
        assert np.abs(got).max() > 0.5


def test_gully_upsample_and_unit_mix_same_bits(numpy_path):
    """``shaping.upsample`` and ``shaping.unit_mix`` compiled (``fractal_kernels``): numpy's bits
    on slopes and shares like the gullies' (a strided share, zeros, odd sizes)."""
    from generator import fractal, shaping

    rng = np.random.default_rng(5)
    a = (rng.normal(size=(3, 33, 34)) * 30.0).astype(np.float32)
    a[0, :5] = 0.0
    ops = fractal._NumpyOps()
    got = shaping.upsample(ops, a)
    want = numpy_path(lambda: shaping.upsample(fractal._NumpyOps(), a))
    assert got.shape == (3, 65, 67)
    np.testing.assert_array_equal(got, want)
    share = np.clip(shaping.upsample(ops, rng.random((3, 33, 33)).astype(np.float32)) - 0.3, 0.0, None)
    for rs, cs in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
        q = share[:, rs, cs]
        white = rng.normal(size=q.shape).astype(np.float32)
        ridged = rng.normal(size=q.shape).astype(np.float32) * np.float32(12.5)
        got = shaping.unit_mix(white, ridged, q)
        np.testing.assert_array_equal(got, numpy_path(shaping.unit_mix, white, ridged, q))
        assert (got != white).any() and (got[q == 0.0] == white[q == 0.0]).all()


def test_relief_factor_same_bits(numpy_path):
    from generator.relief import RegionalRelief
    from runtime.tiles import World

    rel = RegionalRelief(World.PLANE)
    rows = np.arange(100, 140, dtype=np.int64)[None].repeat(2, 0) + np.array([[0], [37]])
    cols = np.arange(-60, -20, dtype=np.int64)[None].repeat(2, 0)
    for level in (7, 10, 15):
        got = rel.factor(3, level, rows, cols)
        rel._chunks.clear()
        want = numpy_path(rel.factor, 3, level, rows, cols)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("world", ["plane", "earth"])
def test_relief_factor_of_a_batch_is_each_blocks_own(world):
    """A compact batch reads the factor's nodes from one grid (each block a view of it): the same
    values as each block alone, at levels where a block spans a few nodes and where many."""
    from generator.relief import RegionalRelief
    from runtime.tiles import World

    rel = RegionalRelief(World.parse(world))
    for level, r, c in ((5, 600, 1280), (9, 9000, 20000), (13, 150000, 310000)):
        origins = np.array([(r + 64 * i, c + 64 * j) for i in range(3) for j in range(2)], np.int64)
        rows = origins[:, 0:1] + np.arange(65, dtype=np.int64)[None]
        cols = origins[:, 1:2] + np.arange(65, dtype=np.int64)[None]
        got = rel.factor(0, level, rows, cols)
        for b in range(len(origins)):
            np.testing.assert_array_equal(got[b], rel.factor(0, level, rows[b : b + 1], cols[b : b + 1])[0])
        assert np.ptp(got) > 0.0


@pytest.mark.parametrize("border", ["fan", "graded", "free"])
def test_rtin_errors_same_bits(border, numpy_path):
    from runtime.tin.rtin import rtin_errors

    rng = np.random.default_rng(11)
    for t in (4, 16, 64):
        for rough in (0.05, 3.0):
            h = np.cumsum(np.cumsum(rng.normal(size=(t + 1, t + 1)) * rough, 0), 1)
            for thr in (0.02, 1.0, 30.0):
                got = rtin_errors(h, thr, border)
                want = numpy_path(rtin_errors, h, thr, border)
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("border", ["fan", "graded", "free"])
def test_rtin_errors_range_bound_keeps_every_comparison(border):
    """``rtin_errors(exact=False)``: entries above the bound are the exact ones' bits, entries
    within it lie between the exact error and the bound, so the vertex set is the same; and the
    block ranges did stand in for measured errors (some entries differ from the exact ones)."""
    from runtime.tin import meshkernels
    from runtime.tin.rtin import rtin_errors, rtin_vertices

    rng = np.random.default_rng(21)
    stood_in = 0
    for t in (16, 64, 256):
        for rough in (0.01, 0.3, 3.0):
            h = np.cumsum(np.cumsum(rng.normal(size=(t + 1, t + 1)) * rough, 0), 1)
            for thr in (0.05, 1.0, 30.0):
                exact = rtin_errors(h, thr, border)
                got = rtin_errors(h, thr, border, exact=False)
                above = exact > thr
                np.testing.assert_array_equal(got[above].view(np.uint64), exact[above].view(np.uint64))
                assert np.all(got[~above] <= thr) and np.all(got[~above] >= exact[~above])
                np.testing.assert_array_equal(rtin_vertices(got, thr, border), rtin_vertices(exact, thr, border))
                stood_in += int((got != exact).sum())
    assert stood_in > 1000

    # the ranges themselves: numpy's min and max of each block's samples, coarser from finer
    h = np.cumsum(rng.normal(size=(65, 65)), 0)
    flat = h.ravel()

    def blocks(b):
        return np.lib.stride_tricks.sliding_window_view(h, (b + 1, b + 1))[::b, ::b]

    thr4, thr8 = (float(np.median(np.ptp(blocks(b), axis=(2, 3)))) for b in (4, 8))  # half within
    lo, hi, r4 = np.empty((16, 16)), np.empty((16, 16)), np.empty((16, 16))
    meshkernels.block_ranges(flat, 65, 4, thr4, lo, hi, r4)
    lo8, hi8, r8 = np.empty((8, 8)), np.empty((8, 8)), np.empty((8, 8))
    k = meshkernels.coarser_ranges(lo, hi, thr8, lo8, hi8, r8)
    for b, lo_, hi_, r, thr in ((4, lo, hi, r4, thr4), (8, lo8, hi8, r8, thr8)):
        np.testing.assert_array_equal(lo_, blocks(b).min(axis=(2, 3)))
        np.testing.assert_array_equal(hi_, blocks(b).max(axis=(2, 3)))
        d = hi_ - lo_
        d = d + meshkernels.RANGE_MARGIN_M
        np.testing.assert_array_equal(r, np.where(d <= thr, d, np.inf))
    assert k == int(np.isfinite(r8).sum()) and 0 < k < 64

    # about a plane (the mean gradient of the block's corners), where the plain range is not within
    tilted = np.full((16, 16), np.inf)
    tilted[0, 0] = 0.5  # a finite entry is kept as it is
    b = 4
    v = blocks(b)
    gr = ((v[..., b, 0] - v[..., 0, 0]) + (v[..., b, b] - v[..., 0, b])) / (2.0 * b)
    gc = ((v[..., 0, b] - v[..., 0, 0]) + (v[..., b, b] - v[..., b, 0])) / (2.0 * b)
    rr, cc = np.meshgrid(np.arange(b + 1.0), np.arange(b + 1.0), indexing="ij")
    g = v - (gr[..., None, None] * rr + gc[..., None, None] * cc)
    d = np.ptp(g, axis=(2, 3)) + meshkernels.RANGE_MARGIN_M
    k = meshkernels.tilted_ranges(flat, 65, b, thr4, tilted)
    want = np.where(d <= thr4, d, np.inf)
    want[0, 0] = 0.5
    np.testing.assert_allclose(tilted, want, rtol=0, atol=1e-9)
    assert k == int(np.isfinite(want).sum()) and (d < np.ptp(v, axis=(2, 3))).mean() > 0.5


def test_rtin_ring_planes_same_bits(numpy_path, monkeypatch):
    """The fan border's plain halves measured in one compiled pass (``meshkernels.ring_planes``)
    and, where a half is needed at a single block, by numpy (dgemv): numpy's bits on 256-sample
    tiles, with both cases met."""
    import runtime.tin.meshkernels as mk

    seen = {"single": 0, "other": 0}
    kernel = mk.ring_planes

    def counting(*args):
        kernel(*args)
        single = args[-2]  # (E,) bool; the block ranges (rng) come last
        seen["single"] += int(single.sum())
        seen["other"] += int((~single).sum())

    monkeypatch.setattr(mk, "ring_planes", counting)
    _rough_tiles_match_numpy(numpy_path, seed=5)
    assert seen["single"] > 0 and seen["other"] > 0


@pytest.mark.parametrize("components", [1, 3])
def test_vertex_set_same_bits(components, numpy_path):
    """rtin_vertex_set (error pyramid, then drop_diamonds' measuring) on heights, and on
    three-component positions as the earth's error metric uses."""
    from runtime.tin.simplify import rtin_vertex_set

    rng = np.random.default_rng(2)
    dropped_any = 0
    for t in (16, 64):
        for rough in (0.02, 2.0):
            h = np.cumsum(np.cumsum(rng.normal(size=(t + 1, t + 1)) * rough, 0), 1)
            pos = None if components == 1 else np.stack([h * 0.3, h, -0.5 * h])
            for thr in (0.05, 1.0, 10.0):
                got = rtin_vertex_set(h, thr, positions_m=pos)
                want = numpy_path(rtin_vertex_set, h, thr, positions_m=pos)
                for g, w in zip(got, want, strict=True):
                    np.testing.assert_array_equal(g, w)
                dropped_any += int(got[2].sum())
    assert dropped_any > 0  # diamonds were dropped, so the measured path ran


@pytest.mark.parametrize("level, up_only", [(3, False), (12, True)])
def test_enu_positions_same_bits(level, up_only, numpy_path):
    from runtime.tiles import T, TileKey, World
    from runtime.tin.curvature import enu_positions

    rng = np.random.default_rng(5)
    h = (rng.standard_normal((T + 1, T + 1)) * 900.0).astype(np.float32)
    key = TileKey(level, 3 << (level - 3), 2 << (level - 3))
    got = enu_positions(World.EARTH, key, h, up_only)
    want = numpy_path(enu_positions, World.EARTH, key, h, up_only)
    assert got.shape == ((1 if up_only else 3), T + 1, T + 1)
    np.testing.assert_array_equal(got, want)
    assert np.abs(got[0]).max() > 100.0  # real heights and sag, not zeros


def test_unit_to_u8_same_bits(numpy_path):
    from runtime.wire import _unit_to_u8

    rng = np.random.default_rng(6)
    a = rng.uniform(-0.2, 1.2, (3, 40, 33)).astype(np.float32)
    a[0, :4, :4] = [np.nan, np.inf, -np.inf, 0.5 / 255]  # NaN -> 0, +-inf -> 255 / 0, a tie
    a[1, 0, :3] = [1.5 / 255, 2.5 / 255, 254.5 / 255]
    for view in (np.moveaxis(a, 0, -1), np.ascontiguousarray(np.moveaxis(a, 0, -1))):  # strided and contiguous
        got = _unit_to_u8(view)
        want = numpy_path(_unit_to_u8, view)
        assert got.dtype == np.uint8 and got.shape == (40, 33, 3) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
        assert got.min() == 0 and got.max() == 255


def test_rtin_level_fan_same_bits(numpy_path, monkeypatch):
    """A fan level in one compiled call (``levelkernels.level_fan``), complete (3) or handed
    back to numpy at a dgemv case (< 3): numpy's bits on 256-sample tiles, both cases met."""
    import runtime.tin.levelkernels as lk

    seen = {"done": 0, "handed_back": 0}
    kernel = lk.level_fan

    def counting(*args):
        stage = kernel(*args)
        seen["done" if stage == 3 else "handed_back"] += 1
        return stage

    monkeypatch.setattr(lk, "level_fan", counting)
    _rough_tiles_match_numpy(numpy_path, seed=9)
    assert seen["done"] > 0 and seen["handed_back"] > 0, seen


def _rough_tiles_match_numpy(numpy_path, seed: int) -> None:
    """``rtin_errors`` (fan border) on two rough 257 x 257 random-walk surfaces at three bounds:
    the same bits as its numpy path."""
    from runtime.tin.rtin import rtin_errors

    rng = np.random.default_rng(seed)
    for rough in (0.02, 0.5):
        h = np.cumsum(np.cumsum(rng.normal(size=(257, 257)) * rough, 0), 1)
        for thr in (0.05, 2.0, 40.0):
            got = rtin_errors(h, thr, "fan")
            want = numpy_path(rtin_errors, h, thr, "fan")
            np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
