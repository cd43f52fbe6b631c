"""Fractal refiner v4 terrain shaping (generator.shaping): the rules do what they say and keep
the refiner pure, local and exact."""

import math

import numpy as np
import pytest

from generator import shaping
from generator.fractal import FractalConfig, FractalRefiner, _NumpyOps
from generator.relief import ConstantRelief
from runtime.tiles import World

V3 = FractalConfig(floor_damp=0.0, crest_gain=0.0, gully_mix=0.0, plain_knee=0.0)


def _ridge(b, h, w, seed=0):
    """A steep east-facing slope (500 m per parent sample) with random relief on it."""
    rng = np.random.default_rng(seed)
    z = np.cumsum(np.cumsum(rng.normal(0, 30, (b, h, w)), 1), 2) - 500.0 * np.arange(w)[None, None, :]
    p = np.full((b, 4, h, w), 0.4, np.float32)
    p[:, 0] = z
    return p


def test_version_4_shaping_is_in_the_model_config():
    cfg = FractalRefiner(World.EARTH).config()
    assert cfg["version"] == "5"  # version 5 keeps version 4's shaping
    assert cfg["gully_mix"] > 0 and cfg["plain_knee"] > 0


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_shaped_output_is_crop_independent_across_the_date_line(world):
    ref = FractalRefiner(world)
    ref.relief = ConstantRelief(2.0)
    p = _ridge(1, 30, 30, seed=3)
    level = 10  # parent spacing ~150 m, an even level: gullies and curvature rules on
    origin = np.array([[2**14, -40]], dtype=np.int64)  # earth: the crop straddles column 0
    big = ref.refine(p, level, origin, seed=9)[0]
    sub = ref.refine(p[:, :, 5:20, 7:25].copy(), level, origin + np.array([[10, 14]]), seed=9)[0]
    np.testing.assert_array_equal(sub, big[:, 10 : 10 + sub.shape[1], 14 : 14 + sub.shape[2]])
    # and the shaping changed the detail (v3 differs) while even samples stay the parents
    v3 = FractalRefiner(world, V3)
    v3.relief = ConstantRelief(2.0)
    assert not np.array_equal(v3.refine(p, level, origin, seed=9)[0], big)
    np.testing.assert_array_equal(big[:, ::2, ::2], p[0, :, 1:-1, 1:-1])


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_torch_is_bit_identical_with_the_shaping_on(world):
    pytest.importorskip("torch")
    p = _ridge(3, 24, 21, seed=4)
    origins = np.array([[2, 8], [2**13, 2**19 - 20], [2**16 - 40, -(2**40)]], dtype=np.int64)
    for level in (8, 9):  # gullies at even levels only
        ref = FractalRefiner(world).refine(p, level, origins, seed=11)
        got = FractalRefiner(world, device="cpu").refine(p, level, origins, seed=11)
        np.testing.assert_array_equal(got, ref)


def test_gully_wave_runs_downslope_with_unit_variance():
    ops, cfg = _NumpyOps(), FractalConfig()
    rows = np.arange(1000, 1256, dtype=np.int64)[None]
    cols = np.arange(-128, 128, dtype=np.int64)[None]
    gx = np.full((1, 256, 256), -1.0, np.float32)  # falls to the east: gullies run east-west
    gy = np.zeros_like(gx)
    ew = np.ones((1, 256, 1), np.float32)
    g = shaping.gully_field(ops, 5, 10, rows, cols, gx, gy, ew, cfg, None)[0]
    assert g.dtype == np.float32
    assert 0.85 < g.std() < 1.15 and abs(g.mean()) < 0.1
    along = np.abs(np.diff(g, axis=1)).mean()  # east: down the slope
    across = np.abs(np.diff(g, axis=0)).mean()  # south: across it
    assert along < 0.5 * across
    # the same field turned a quarter: slope to the south, gullies north-south
    g2 = shaping.gully_field(ops, 5, 10, rows, cols, gy, gx, ew, cfg, None)[0]
    assert np.abs(np.diff(g2, axis=0)).mean() < 0.5 * np.abs(np.diff(g2, axis=1)).mean()


def test_unit_mix_keeps_variance_and_zero_share_is_exact():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 200_000)).astype(np.float32)
    for s in (0.2, 0.45, 1.0):
        m = shaping.unit_mix(a, b, np.float32(s))
        assert abs(m.std() - 1.0) < 0.01
    np.testing.assert_array_equal(shaping.unit_mix(a, b, np.zeros_like(a)), a)


def test_curvature_sign_quiets_floors_and_roughens_crests():
    lap = np.array([1.0, -1.0, 0.0, 0.5], np.float32)
    size = np.array([1.0, 1.0, 1.0, 1.0], np.float32)
    f = shaping.curvature_factor(lap, size, 0.2, 0.3)
    np.testing.assert_allclose(f, [0.8, 1.3, 1.0, 0.9], rtol=1e-5)


def test_shaping_fades_out_below_hillslope_scales():
    cfg = FractalConfig()
    assert shaping.fade(cfg.shape_fine_m, cfg.shape_fine_m, cfg.shape_coarse_m) == 0.0
    assert shaping.fade(1e4, cfg.shape_fine_m, cfg.shape_coarse_m) == 1.0
    assert shaping.fade(math.sqrt(cfg.shape_fine_m * cfg.shape_coarse_m), cfg.shape_fine_m,
                        cfg.shape_coarse_m) == pytest.approx(0.5)


def _cascade(cfg, z, levels, first):
    ref = FractalRefiner(World.PLANE, cfg)
    ref.relief = ConstantRelief(1.0)
    for level in range(first, first + levels):
        p = np.full((1, 4, z.shape[0] + 2, z.shape[1] + 2), 0.4, np.float32)
        p[0, 0] = np.pad(z, 1, mode="reflect")
        z = ref.refine(p, level, np.zeros((1, 2), np.int64), seed=2)[0, 0]
    return z


def test_plains_stay_plains_and_ranges_stay_rough():
    """The knee makes the roughness feedback bistable: a nearly flat start gets flatter than under
    v3 (which drifts toward typical roughness), while a rough start keeps its roughness."""
    rng = np.random.default_rng(4)
    flat = rng.normal(0.0, 0.5, (9, 9)).astype(np.float32)
    rough = np.cumsum(np.cumsum(rng.normal(0.0, 150.0, (9, 9)), 0), 1).astype(np.float32)

    def fine_std(z):
        return float(np.std(z[1:-1, 1:-1] - 0.5 * (z[:-2, 1:-1] + z[2:, 1:-1])))

    v3_flat, v4_flat = (fine_std(_cascade(c, flat, 5, 8)) for c in (V3, FractalConfig()))
    assert v4_flat < 0.5 * v3_flat
    v3_rough, v4_rough = (fine_std(_cascade(c, rough, 5, 8)) for c in (V3, FractalConfig()))
    assert 0.6 < v4_rough / v3_rough < 1.5
