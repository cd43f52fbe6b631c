"""Counter-based noise: numpy and torch agree bit for bit, any coordinates."""

import numpy as np
import pytest
import torch

from generator import noise

HUGE = 2**40


def _coords():
    rows = np.array([[-HUGE - 3, -HUGE, -1, 0, 1, 255, 256, HUGE - 1, HUGE + 5]], dtype=np.int64)
    cols = np.array([[-HUGE + 2, -7, 0, 3, HUGE, 2**62]], dtype=np.int64)
    return rows, cols


def test_numpy_and_torch_hash_identical_bits():
    rows, cols = _coords()
    for key in (0, 1, 2**63 + 5, noise.stream_key(123456789, 18, 2)):
        h_np = noise.hash_grid(key, rows, cols)
        h_t = noise.hash_grid_torch(key, torch.from_numpy(rows), torch.from_numpy(cols))
        h_t = h_t.numpy().view(np.uint64)
        np.testing.assert_array_equal(h_np, h_t)


def test_numpy_and_torch_gauss_identical_float32():
    rng = np.random.default_rng(0)
    rows = rng.integers(-HUGE, HUGE, size=(3, 40), dtype=np.int64)
    cols = rng.integers(-HUGE, HUGE, size=(3, 50), dtype=np.int64)
    g_np = noise.gauss(42, 12, 0, rows, cols)
    g_t = noise.gauss_torch(42, 12, 0, torch.from_numpy(rows), torch.from_numpy(cols)).numpy()
    assert g_np.dtype == np.float32 and g_np.shape == (3, 40, 50)
    assert np.array_equal(g_np, g_t)


def test_gauss_is_unit_normal_and_uncorrelated():
    r = np.arange(-300, 300, dtype=np.int64)[None]
    g = noise.gauss(7, 5, 0, r, r)[0]
    assert abs(float(g.mean())) < 0.01
    assert abs(float(g.std()) - 1.0) < 0.01
    assert np.abs(g).max() <= np.sqrt(12.0) / 1.0 + 1e-6  # Irwin-Hall(4) bound: 2*sqrt(3)
    assert abs(np.corrcoef(g[:, 1:].ravel(), g[:, :-1].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(g[1:].ravel(), g[:-1].ravel())[0, 1]) < 0.01


def test_value_depends_only_on_own_coordinates():
    big_r = np.arange(-50, 50, dtype=np.int64)[None]
    big = noise.gauss(3, 9, 1, big_r, big_r)[0]
    sub_r = np.arange(-10, 7, dtype=np.int64)[None]
    sub = noise.gauss(3, 9, 1, sub_r, sub_r + 20)[0]
    np.testing.assert_array_equal(sub, big[40:57, 60:77])


@pytest.mark.parametrize("change", ["seed", "level", "stream"])
def test_streams_are_distinct(change):
    r = np.arange(64, dtype=np.int64)[None]
    base = dict(seed=1, level=4, stream=0)
    other = dict(base, **{change: base[change] + 1})
    a = noise.gauss(base["seed"], base["level"], base["stream"], r, r)
    b = noise.gauss(other["seed"], other["level"], other["stream"], r, r)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05
