"""LearnedRefiner with the shipped weights: protocol, nesting, seams, determinism."""

import numpy as np
import pytest

from generator.learned.checkpoint import ASSET_PATH
from generator.learned.refiner import LearnedRefiner
from generator.refiner import Refiner, make_refiner
from runtime.tiles import World

pytestmark = pytest.mark.skipif(not ASSET_PATH.exists(), reason="shipped weights missing")


@pytest.fixture(scope="module")
def ref():
    return LearnedRefiner(World.PLANE, backend="torch")


def _parents(b, h, w, seed=0):
    rng = np.random.default_rng(seed)
    z = np.cumsum(np.cumsum(rng.normal(0, 4, (b, h, w)), 1), 2).astype(np.float32) + 800
    rgb = rng.uniform(0.1, 0.4, (b, 3, h, w)).astype(np.float32)
    return np.concatenate([z[:, None], rgb], 1)


def test_is_a_refiner_and_in_the_table(ref):
    assert isinstance(ref, Refiner)
    assert ref.name == "learned" and ref.channels == 4 and ref.margin == 24
    assert make_refiner("learned", "plane").version == ref.version


def test_refine_nests_exactly_and_adds_detail(ref):
    m = ref.margin
    p = _parents(2, 2 * m + 20, 2 * m + 31)
    out = ref.refine(p, 12, np.array([[512, -1024], [0, 6]], np.int64), seed=5)
    assert out.shape == (2, 4, 39, 61) and out.dtype == np.float32
    assert np.array_equal(out[:, :, ::2, ::2], p[:, :, m:-m, m:-m])
    assert np.all((out[:, 1:] >= 0) & (out[:, 1:] <= 1))
    odd = out[:, 0, 1::2, 1::2]
    assert np.isfinite(odd).all()
    assert np.abs(odd - out[:, 0, 0:-1:2, 0:-1:2]).max() < 200.0  # metres, not garbage


def test_neighbouring_crops_agree_on_shared_samples(ref):
    """Two crops of one global parent grid give identical values where they overlap."""
    m = ref.margin
    big = _parents(1, 2 * m + 40, 2 * m + 40, seed=1)
    a = ref.refine(big[:, :, : 2 * m + 24, :], 9, np.array([[1000, 2000]]), seed=3)
    b = ref.refine(big[:, :, 16:, :], 9, np.array([[1000 + 32, 2000]]), seed=3)
    assert np.array_equal(a[:, :, 32:], b[:, :, : a.shape[2] - 32])


def test_pure_in_seed_level_origin_and_batch(ref):
    m = ref.margin
    p = _parents(3, 2 * m + 10, 2 * m + 10, seed=2)
    o = np.array([[0, 0], [64, 128], [-512, 256]], np.int64)
    full = ref.refine(p, 10, o, seed=1)
    assert np.array_equal(ref.refine(p[1:2], 10, o[1:2], seed=1), full[1:2])  # batch independent
    assert np.array_equal(ref.refine(p, 10, o, seed=1), full)  # deterministic
    assert not np.array_equal(ref.refine(p, 10, o, seed=2), full)  # seed matters
    assert not np.array_equal(ref.refine(p, 11, o, seed=1), full)  # level matters


def test_five_channel_mode_refines_nir(ref):
    r5 = LearnedRefiner(World.PLANE, backend="torch", channels=5)
    m = r5.margin
    p = np.concatenate(
        [_parents(1, 2 * m + 8, 2 * m + 8), np.full((1, 1, 2 * m + 8, 2 * m + 8), 0.3, np.float32)], 1
    )
    out = r5.refine(p, 15, np.zeros((1, 2), np.int64), 0)
    assert out.shape[1] == 5 and np.array_equal(out[:, 4, ::2, ::2], p[:, 4, m:-m, m:-m])


def test_earth_noise_wraps_in_longitude():
    r = LearnedRefiner(World.EARTH, backend="torch")
    m, level = r.margin, 3
    period = 2 * 256 << level
    p = _parents(1, 2 * m + 8, 2 * m + 8, seed=4)
    a = r.refine(p, level, np.array([[512, 0]]), 7)
    b = r.refine(p, level, np.array([[512, period]]), 7)
    assert np.array_equal(a, b)


def test_bad_input_says_what_was_expected(ref):
    with pytest.raises(ValueError, match=r"\(B, 4, h, w\)"):
        ref.refine(np.zeros((1, 3, 60, 60), np.float32), 5, np.zeros((1, 2)), 0)
    with pytest.raises(ValueError, match="margin"):
        ref.refine(np.zeros((1, 4, 40, 60), np.float32), 5, np.zeros((1, 2)), 0)
    with pytest.raises(ValueError, match="child level"):
        ref.refine(np.zeros((1, 4, 60, 60), np.float32), 0, np.zeros((1, 2)), 0)
    with pytest.raises(ValueError, match="channels must be 4"):
        LearnedRefiner(channels=3)
