"""Fractal refiner: interpolating, local (crop independent), validated."""

import numpy as np
import pytest

from generator.fractal import FractalConfig, FractalRefiner
from runtime.tiles import World, spacing_m


def _parents(b, h, w, seed=0):
    rng = np.random.default_rng(seed)
    z = np.cumsum(np.cumsum(rng.normal(0, 50, (b, h, w)), 1), 2).astype(np.float32)
    rgb = rng.uniform(0.1, 0.9, (b, 3, h, w)).astype(np.float32)
    return np.concatenate([z[:, None], rgb], axis=1)


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_even_samples_are_exact_parent_copies(world):
    ref = FractalRefiner(world)
    p = _parents(2, 20, 17)
    origins = np.array([[-40, 10], [2**40, -(2**40)]], dtype=np.int64)
    out = ref.refine(p, 9, origins, seed=5)
    m = ref.margin
    assert out.shape == (2, 4, 2 * (20 - 2 * m) - 1, 2 * (17 - 2 * m) - 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, ::2, ::2], p[:, :, m:-m, m:-m])
    assert out[:, 1:].min() >= 0.0 and out[:, 1:].max() <= 1.0


def test_output_is_crop_independent():
    ref = FractalRefiner(World.PLANE)
    p = _parents(1, 30, 30, seed=3)
    big = ref.refine(p, 12, np.array([[1000, -2000]], dtype=np.int64), seed=9)[0]
    # a sub-crop starting 5 parents down and 7 right: child origin moves by (10, 14)
    sub = ref.refine(p[:, :, 5:20, 7:25].copy(), 12, np.array([[1010, -1986]], dtype=np.int64), seed=9)[0]
    np.testing.assert_array_equal(sub, big[:, 10 : 10 + sub.shape[1], 14 : 14 + sub.shape[2]])


def test_detail_amplitude_follows_scale_law():
    ref = FractalRefiner(World.PLANE, FractalConfig(regional=False, plain_knee=0.0))  # the law alone
    p = np.zeros((1, 4, 200, 200), dtype=np.float32)  # flat
    coarse = ref.refine(p, 6, np.zeros((1, 2), np.int64), 1)[0, 0, 1::2, 1::2].std()
    fine = ref.refine(p, 16, np.zeros((1, 2), np.int64), 1)[0, 0, 1::2, 1::2].std()
    # flat parents: roughness at its floor, so the ratio is the law's:
    # sigma(parent spacing at 6) / sigma(at 16), across both knots
    assert coarse > 0 and fine > 0
    law = ref.sigma_m(2 * spacing_m(6)) / ref.sigma_m(2 * spacing_m(16))
    np.testing.assert_allclose(coarse / fine, law, rtol=0.05)
    assert law > 2.0 ** (10 * ref.cfg.hurst)  # smoother at fine scales than one power law


def test_law_is_continuous_piecewise_power():
    ref = FractalRefiner(World.PLANE)
    c = ref.cfg
    for knot, lo_exp, hi_exp in ((c.fine_knot_m, c.hurst_fine, c.hurst), (c.coarse_knot_m, c.hurst, c.hurst_coarse)):
        below, at, above = ref.sigma_m(np.array([knot / 2, knot, knot * 2]))
        np.testing.assert_allclose(at / below, 2.0**lo_exp, rtol=1e-9)
        np.testing.assert_allclose(above / at, 2.0**hi_exp, rtol=1e-9)
    np.testing.assert_allclose(ref.sigma_m(1000.0), c.amp_at_1km_m, rtol=1e-12)


def test_earth_pole_row_stays_constant():
    ref = FractalRefiner(World.EARTH)
    p = _parents(1, 12, 12)
    p[:, :, 1, :] = p[:, :, 1, :1]  # parent row 1 is the north pole row 0 (origin row 0), constant
    out = ref.refine(p, 5, np.array([[0, 64]], dtype=np.int64), 2)
    assert np.all(out[0, :, 0, :] == out[0, :, 0, :1])


@pytest.mark.parametrize(
    "parents, origins, match",
    [
        (np.zeros((1, 4, 10, 10), np.float64), np.zeros((1, 2), np.int64), "float32"),
        (np.zeros((1, 3, 10, 10), np.float32), np.zeros((1, 2), np.int64), "channels"),
        (np.zeros((4, 10, 10), np.float32), np.zeros((1, 2), np.int64), r"\(B, C, h, w\)"),
        (np.zeros((1, 4, 2, 10), np.float32), np.zeros((1, 2), np.int64), "at least"),
        (np.zeros((2, 4, 10, 10), np.float32), np.zeros((1, 2), np.int64), "origins"),
    ],
)
def test_bad_input_says_what_was_expected(parents, origins, match):
    with pytest.raises(ValueError, match=match):
        FractalRefiner().refine(parents, 4, origins, 0)


@pytest.mark.parametrize("world", [World.PLANE, World.EARTH])
def test_torch_backend_is_bit_identical_to_numpy(world):
    p = _parents(3, 24, 21, seed=4)
    # rows near the north pole, at mid latitudes and across the date line (earth period 2^(L+9))
    origins = np.array([[2, 8], [2**13, 2**18 - 20], [2**16 - 40, -(2**40)]], dtype=np.int64)
    ref = FractalRefiner(world).refine(p, 9, origins, seed=11)
    got = FractalRefiner(world, device="cpu").refine(p, 9, origins, seed=11)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def test_backend_enters_the_model_config():
    assert FractalRefiner(World.PLANE).config()["backend"] == "numpy"
    assert FractalRefiner(World.PLANE, device="cpu").config()["backend"] == "torch-cpu"
