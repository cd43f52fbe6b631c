"""Fractal refiner v5: the real-parent knee and the raised roughness ceiling do what they say,
and the refiner stays pure, local and bit-identical across backends."""

import numpy as np
import pytest

from generator.dem import refine_dem
from generator.fractal import V4, FractalConfig, FractalRefiner
from generator.relief import ConstantRelief
from runtime.tiles import World


def _field(b, h, w, step_m, seed=0):
    """(b, 4, h, w) parents: a random walk surface with steps of ``step_m`` metres."""
    rng = np.random.default_rng(seed)
    p = np.full((b, 4, h, w), 0.4, np.float32)
    p[:, 0] = np.cumsum(np.cumsum(rng.normal(0, step_m, (b, h, w)), 1), 2)
    return p


def _new_sample_detail(ref, p, level, seed=3):
    """std (m) of the new samples minus bicubic's (the added detail only)."""
    from generator.fractal import BicubicRefiner

    o = np.zeros((p.shape[0], 2), np.int64)
    cub = BicubicRefiner(ref.world).refine(p, level, o, seed)[:, 0]
    d = ref.refine(p, level, o, seed)[:, 0] - cub
    return float(np.sqrt(np.mean(d[:, 1::2, :] ** 2)))


def test_version_5_and_real_parents_enter_the_model_config():
    cfg = FractalRefiner(World.EARTH).config()
    assert cfg["version"] == "5" and cfg["real_parents"] is False
    assert cfg["roughness_max_real"] == cfg["roughness_max"] == 4.67 and cfg["plain_knee_real"] == 0.5
    assert FractalRefiner(World.PLANE, real_parents=True).config()["real_parents"] is True


def test_real_parents_keep_smooth_ground_smooth_at_coarse_spacings():
    # level 5: parent spacing 4.9 km, above plain_max_m, where the anchor mode has no knee
    p = _field(2, 40, 40, 0.5)  # a smooth plain: normalised roughness far under the knee
    anchor = FractalRefiner(World.PLANE)
    real = FractalRefiner(World.PLANE, real_parents=True)
    for r in (anchor, real):
        r.relief = ConstantRelief(1.0)
    d_anchor, d_real = _new_sample_detail(anchor, p, 5), _new_sample_detail(real, p, 5)
    assert d_real < 0.5 * d_anchor  # knee 0.5, exponent 1.5: much less detail on a plain
    # rough parents (far above the knee) get the same detail in both modes
    rough = _field(2, 40, 40, 400.0, seed=1)
    np.testing.assert_allclose(_new_sample_detail(real, rough, 5), _new_sample_detail(anchor, rough, 5),
                               rtol=0.02)
    # version 4 has no real-parent mode: the flag changes nothing there
    v4a, v4r = FractalRefiner(World.PLANE, V4), FractalRefiner(World.PLANE, V4, real_parents=True)
    for r in (v4a, v4r):
        r.relief = ConstantRelief(1.0)
    o = np.zeros((2, 2), np.int64)
    np.testing.assert_array_equal(v4a.refine(p, 5, o, 3), v4r.refine(p, 5, o, 3))


def test_a_raised_ceiling_acts_over_real_parents_only():
    p = _field(2, 40, 40, 3000.0, seed=2)  # far rougher than the law at 150 m spacing
    cfg = FractalConfig(roughness_max_real=10.0)
    real, anchor = FractalRefiner(World.PLANE, cfg, real_parents=True), FractalRefiner(World.PLANE, cfg)
    for r in (real, anchor):
        r.relief = ConstantRelief(1.0)
    ratio = _new_sample_detail(real, p, 10) / _new_sample_detail(anchor, p, 10)
    # both at their ceilings: (10 / 4.67) ** 0.733 = 1.75 (the gully mix and curvature rules
    # act alike in both)
    np.testing.assert_allclose(ratio, (10.0 / 4.67) ** 0.733, rtol=0.05)


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_over_the_anchor_version_5_makes_version_4_bits(world):
    p = _field(3, 24, 21, 40.0, seed=5)
    o = np.array([[2, 8], [2**13, 2**19 - 20], [2**16 - 40, 3]], dtype=np.int64)
    for level in (4, 9, 14):
        np.testing.assert_array_equal(FractalRefiner(world).refine(p, level, o, 2),
                                      FractalRefiner(world, V4).refine(p, level, o, 2))


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_real_parent_mode_is_crop_independent_and_torch_exact(world):
    ref = FractalRefiner(world, real_parents=True)
    ref.relief = ConstantRelief(0.7)
    p = _field(1, 30, 30, 2.0, seed=4)
    origin = np.array([[2**12, -40]], dtype=np.int64)
    big = ref.refine(p, 5, origin, seed=9)[0]
    sub = ref.refine(p[:, :, 5:20, 7:25].copy(), 5, origin + np.array([[10, 14]]), seed=9)[0]
    np.testing.assert_array_equal(sub, big[:, 10 : 10 + sub.shape[1], 14 : 14 + sub.shape[2]])
    np.testing.assert_array_equal(big[:, ::2, ::2], p[0, :, 1:-1, 1:-1])
    pytest.importorskip("torch")
    t = FractalRefiner(world, device="cpu", real_parents=True)
    t.relief = ConstantRelief(0.7)
    np.testing.assert_array_equal(t.refine(p, 5, origin, seed=9)[0], big)


def test_refine_dem_runs_the_real_parent_mode():
    ref = FractalRefiner(World.PLANE)
    z = _field(1, 17, 17, 3.0)[0, 0]
    out, px = refine_dem(z, 1000.0, 2, seed=1, refiner=ref)
    assert ref.real_parents and ref.config()["real_parents"] is True
    assert out.shape == (65, 65) and px == 250.0
    np.testing.assert_array_equal(out[::4, ::4], z)
