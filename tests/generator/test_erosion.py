"""Fractal refiner v6 (generator.erosion): the compiled step is the numpy reference bit for
bit, it is local (nesting and seams exact), and it cuts the grain on a real DEM."""

from pathlib import Path

import numpy as np
import pytest

from generator import erosion
from generator.eval import cascade as C
from generator.eval.vehicle import extrema_per_1000
from generator.fractal import V5, V6, V6_CARVE, FractalRefiner
from runtime import jit

DEM = Path(__file__).resolve().parents[2] / "tests" / "data" / "dem_crop_bigtujunga_257.npz"


def _rough(b: int = 3, n: int = 61, seed: int = 1) -> np.ndarray:
    """(b, n, n) float32: a tilted random walk plus white noise (pits, peaks, flats)."""
    rng = np.random.default_rng(seed)
    z = np.cumsum(rng.normal(size=(b, n, n)), axis=1) * 5.0 + rng.normal(size=(b, n, n)) * 20.0
    z[:, 10:16, 10:16] = 7.0  # a flat patch: ties everywhere
    return z.astype(np.float32)


@pytest.mark.skipif(not jit.ENABLED, reason="numba not installed or WORLDSTREAM_NO_JIT set")
@pytest.mark.parametrize("radius,creep,flow", [(2, 0.0, 0.0), (3, 0.4, 0.0), (8, 0.5, 0.7)])
def test_kernel_matches_numpy_reference(radius, creep, flow):
    z = _rough()
    inv = erosion.inverse_distances(np.linspace(0.3, 1.0, 3 * 61).reshape(3, 61))
    table = erosion.incision_table(radius, 0.25, 0.5, 0.6, 0.8)
    got = erosion.erode(z, inv, radius, table, creep, flow)
    ref = erosion._erode_numpy(z, inv, radius, table, np.float32(creep), np.float32(flow))
    assert np.array_equal(got, ref)
    assert 0.1 < float((got != z).mean()) < 0.9  # the step did something, and not everywhere


@pytest.mark.parametrize("flow", [0.0, 0.7])
def test_even_samples_kept_and_step_is_local(flow):
    z = _rough(1, 61)
    inv = erosion.inverse_distances(np.ones((1, 61)))
    table = erosion.incision_table(2, 0.25, 0.5, 0.6, 1.0)
    full = erosion.erode(z, inv, 2, table, 0.3, flow)
    assert np.array_equal(full[:, ::2, ::2], z[:, ::2, ::2])
    # a window starting at an even sample: its interior beyond the reach is the same
    r = erosion.reach(2, flow > 0)
    part = erosion.erode(z[:, 10:50, 12:58], inv[:, 10:50], 2, table, 0.3, flow)
    assert np.array_equal(part[:, r:-r, r:-r], full[:, 10 + r : 50 - r, 12 + r : 58 - r])


def test_incision_table_only_converging_flow():
    q = erosion.incision_table(2, 0.25, 0.5, 0.6, 1.0)
    assert q.shape == (26,) and q.dtype == np.float32
    assert np.all(q[:4] == 0.0)  # up to radius + 1 upstream samples: a plane's parallel flow
    assert q[9] == pytest.approx(0.25 * (3.0 - np.sqrt(3.0)), rel=1e-6)
    assert q[25] == pytest.approx(0.6)  # capped
    assert np.all(erosion.incision_table(2, 0.25, 0.5, 0.6, 0.0) == 0.0)


@pytest.mark.parametrize("cfg", [V6, V6_CARVE], ids=["v6", "v6_carve"])
def test_refiner_v6_is_nested_and_seamless(cfg):
    ref = FractalRefiner("plane", cfg)
    assert ref.version == "6" and ref.margin == 1 + -(-erosion.reach(cfg.incise_radius) // 2)
    assert FractalRefiner("plane", V5).version == "5" and FractalRefiner("plane", V5).margin == 1
    rng = np.random.default_rng(3)
    m, n = ref.margin, 60
    p = np.zeros((1, 4, n, n), np.float32)
    p[0, 0] = np.cumsum(rng.normal(size=(n, n)), axis=0) * 30.0 + rng.normal(size=(n, n)) * 15.0
    p[0, 1:] = 0.3
    size = 17 + 2 * m  # 17 parents per block (block 32)
    a = ref.refine(np.ascontiguousarray(p[:, :, :size, :size]), 11, np.array([[64, 128]], np.int64), 5)
    b = ref.refine(np.ascontiguousarray(p[:, :, 8 : 8 + size, 4 : 4 + size]), 11, np.array([[80, 136]], np.int64), 5)
    assert a.shape == (1, 4, 33, 33)
    assert np.array_equal(a[:, :, ::2, ::2], p[:, :, m : m + 17, m : m + 17])
    assert np.array_equal(a[:, :, 16:, 8:], b[:, :, :17, :25])  # the overlap, bit for bit
    # a batch of two is the same as each alone
    pair = np.concatenate([p[:, :, :size, :size], p[:, :, 8 : 8 + size, 4 : 4 + size]])
    both = ref.refine(np.ascontiguousarray(pair), 11, np.array([[64, 128], [80, 136]], np.int64), 5)
    assert np.array_equal(both[0], a[0]) and np.array_equal(both[1], b[0])


def test_coarse_levels_are_version_5():
    """Above erode_off_m child spacing the erosion is off: v6 gives v5's children."""
    rng = np.random.default_rng(4)
    v6, v5 = FractalRefiner("plane", V6), FractalRefiner("plane", V5)
    m = v6.margin
    p = rng.normal(size=(1, 4, 17 + 2 * m, 17 + 2 * m)).astype(np.float32) * 100.0
    o = np.array([[32, 64]], np.int64)
    inner = np.ascontiguousarray(p[:, :, m - 1 : -(m - 1), m - 1 : -(m - 1)])
    assert np.array_equal(v6.refine(p, 6, o, 1), v5.refine(inner, 6, o, 1))  # 1.2 km children


def test_fewer_extrema_on_a_real_dem():
    """bigtujunga (SRTM 30 m, 2.2 strict extrema per 1000 samples) decimated 8x and refined
    back 3 levels: v5 about 14 per 1000, v6 about 3.9."""
    z = np.load(DEM)["elev"].astype(np.float32)
    real = extrema_per_1000(z)
    got = {}
    for name, cfg in (("v5", V5), ("v6", V6)):
        g = C.cascade(FractalRefiner(config=cfg, real_parents=True), z[::8, ::8], 30.0, 3, 0)
        got[name] = extrema_per_1000(g[8:-8, 8:-8])
    assert 1.5 < real < 3.0
    assert got["v5"] > 10.0
    assert got["v6"] < 5.0 and got["v6"] < got["v5"] / 3.0


def test_pyramid_v6_same_bytes_whatever_the_cache_and_order():
    """Blocks of level 10 (76 m: erosion on) through the pyramid: a window is the same from a
    warm pyramid, from one that evicts constantly, and from overlapping windows asked in
    reverse order; even samples are the level above's."""
    from generator.pyramid import Pyramid

    a = Pyramid("plane", 3, FractalRefiner("plane", V6), block=32)
    b = Pyramid("plane", 3, FractalRefiner("plane", V6), block=32, cache_bytes=300_000)
    r0, c0 = 2**9 * 3 + 5, 2**9 * 3 + 7  # land of plane seed 3 (33-148 m), odd start (not block-aligned)
    want = a.region(10, r0, c0, 50, 50)
    right = b.region(10, r0 + 20, c0 + 20, 30, 30)
    left = b.region(10, r0, c0, 30, 30)
    assert np.array_equal(want[:, 20:, 20:], right) and np.array_equal(want[:, :30, :30], left)
    parent = a.region(9, (r0 + 1) // 2, (c0 + 1) // 2, 25, 25)
    assert np.array_equal(want[:, 1::2, 1::2], parent)
    assert a.model_id.startswith("fractal-6+")
