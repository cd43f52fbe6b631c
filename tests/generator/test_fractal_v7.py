"""Fractal refiner v7 (generator.gully): the erosion-filter field runs down the slope, the
compiled twin gives the numpy reference's bits, and the refiner stays pure, local, nested and
deterministic; version 5's config (so its model id) is untouched."""

import numpy as np
import pytest

from generator import fractal, gully
from generator.fractal import V5, V7, BicubicRefiner, FractalRefiner
from generator.pyramid import Pyramid
from generator.relief import ConstantRelief
from runtime import jit
from runtime.tiles import World

needs_jit = pytest.mark.skipif(not jit.ENABLED, reason="numba not installed or WORLDSTREAM_NO_JIT set")


def _tilted(b, h, w, drop_m, seed=0, noise_m=0.0):
    """(b, 4, h, w) parents: a plane falling ``drop_m`` per parent sample to the east (+ noise)."""
    rng = np.random.default_rng(seed)
    p = np.full((b, 4, h, w), 0.4, np.float32)
    p[:, 0] = 2000.0 - drop_m * np.arange(w, dtype=np.float32)[None, None] + rng.normal(0, noise_m, (b, h, w))
    return p


def _refiner(cfg, world=World.PLANE):
    ref = FractalRefiner(world, cfg)
    ref.relief = ConstantRelief(1.0)
    return ref


def _corr(a, axis, lag):
    a = a - a.mean()
    x, y = (np.take(a, np.arange(a.shape[axis] - lag), axis), np.take(a, np.arange(lag, a.shape[axis]), axis))
    return float((x * y).mean() / a.var())


@needs_jit
@pytest.mark.parametrize("period", [None, 2048])
def test_compiled_field_is_the_numpy_reference(period):
    rng = np.random.default_rng(0)
    gx, gy = rng.normal(size=(2, 2, 60, 70)).astype(np.float32)
    gx[0, :5] = 0.0  # flat: no direction
    gy[0, :5] = 0.0
    rows = np.stack([np.arange(-30, 30), np.arange(4001, 4061)]).astype(np.int64)
    cols = np.stack([np.arange(2000, 2070), np.arange(-35, 35)]).astype(np.int64)
    ew = rng.uniform(0.2, 1.0, (2, 60, 1)).astype(np.float32)
    ref = gully.field(5, 11, rows, cols, gx, gy, ew, V7, period)
    got = gully.field(5, 11, rows, cols, gx, gy, ew, V7, period, compiled=True)
    assert ref.dtype == got.dtype == np.float32 and np.isfinite(ref).all()
    assert np.array_equal(ref, got)
    assert 0.8 < float(ref.std()) < 1.25
    # where the mix gives the field no weight both skip it (0), elsewhere the same bits
    share = np.where(rng.random(gx.shape) < 0.4, 0.0, 0.7).astype(np.float32)
    ref_s = gully.field(5, 11, rows, cols, gx, gy, ew, V7, period, share=share)
    got_s = gully.field(5, 11, rows, cols, gx, gy, ew, V7, period, compiled=True, share=share)
    assert np.array_equal(ref_s, got_s)
    assert np.array_equal(ref_s, np.where(share > 0, ref, 0.0))


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_refiner_compiled_equals_numpy_reference(world, monkeypatch):
    p = _tilted(2, 24, 22, 40.0, noise_m=15.0)
    origins = np.array([[2**12, 2**13 - 8], [2**11 + 6, 30]], dtype=np.int64)
    got = _refiner(V7, world).refine(p, 11, origins, seed=4)
    monkeypatch.setattr(fractal._NumpyOps, "compiled", False)
    monkeypatch.setattr(jit, "ENABLED", False)
    ref = _refiner(V7, world).refine(p, 11, origins, seed=4)
    assert np.array_equal(got, ref)


def test_detail_runs_down_the_slope_on_a_tilted_plane():
    """East-falling plane: v7's detail is correlated along the rows (downslope) and not across
    them; v5's white detail is correlated along neither."""
    p = _tilted(1, 70, 70, 40.0)
    o = np.zeros((1, 2), np.int64)
    cub = BicubicRefiner().refine(p, 12, o, 3)[0, 0]
    for cfg, lo in ((V7, 0.5), (V5, None)):
        d = (_refiner(cfg).refine(p, 12, o, 3)[0, 0] - cub)[1::2, 1::2]  # cell centres: one kind of sample
        along, across = _corr(d, 1, 1), _corr(d, 0, 1)  # lag 2 child samples east / south
        if lo is None:
            assert abs(along) < 0.15 and abs(across) < 0.15
        else:
            assert along > lo and along > across + 0.5


def test_plains_stay_plains_and_even_samples_are_parents():
    o = np.array([[100, -60]], np.int64)
    flat = _tilted(1, 30, 30, 0.0, noise_m=0.05)  # far under the slope threshold: v7 is v5 exactly
    assert np.array_equal(_refiner(V7).refine(flat, 11, o, 2), _refiner(V5).refine(flat, 11, o, 2))
    steep = _tilted(1, 30, 30, 40.0, noise_m=5.0)
    out = _refiner(V7).refine(steep, 11, o, 2)
    assert np.array_equal(out[:, :, ::2, ::2], steep[:, :, 1:-1, 1:-1])
    assert not np.array_equal(out, _refiner(V5).refine(steep, 11, o, 2))


def test_output_is_crop_independent_and_deterministic():
    ref = _refiner(V7)
    p = _tilted(1, 34, 34, 30.0, seed=3, noise_m=10.0)
    big = ref.refine(p, 12, np.array([[1000, -2000]], dtype=np.int64), seed=9)[0]
    sub = ref.refine(p[:, :, 5:20, 7:25].copy(), 12, np.array([[1010, -1986]], dtype=np.int64), seed=9)[0]
    np.testing.assert_array_equal(sub, big[:, 10 : 10 + sub.shape[1], 14 : 14 + sub.shape[2]])
    again = _refiner(V7).refine(p, 12, np.array([[1000, -2000]], dtype=np.int64), seed=9)[0]
    np.testing.assert_array_equal(again, big)


def test_pyramid_windows_agree_across_blocks():
    pyr = Pyramid(World.PLANE, 3, FractalRefiner(World.PLANE, V7))
    a = pyr.region(10, 150, 200, 90, 90)
    b = Pyramid(World.PLANE, 3, FractalRefiner(World.PLANE, V7)).region(10, 190, 230, 40, 40)
    np.testing.assert_array_equal(b, a[:, 40:80, 30:70])


def test_version_7_config_and_version_5_model_config_unchanged():
    v5 = FractalRefiner(World.EARTH).config()
    assert v5["version"] == "5" and not any(k.startswith("gully7_") for k in v5)
    v7 = FractalRefiner(World.EARTH, V7).config()
    assert v7["version"] == "7" and v7["gully7_mix"] == 1.0 and v7["gully_mix"] == 0.0
    with pytest.raises(ValueError, match="numpy only"):
        FractalRefiner(World.PLANE, V7, device="cpu")
    with pytest.raises(ValueError, match="gully7_jitter"):
        FractalRefiner(World.PLANE, fractal.FractalConfig(gully7_mix=1.0, gully7_jitter=0.8))
