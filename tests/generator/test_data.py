"""Training pairs: decimation nesting, validation split, dihedral maps, amplitude fit, corpus I/O."""

import numpy as np
import pytest

from generator.learned.data import (
    Grid,
    PairSampler,
    cubic_refine,
    decimation_residual_std,
    fit_amplitude,
    load_corpus,
    save_corpus,
)


def _fbm(n, hurst, seed, spacing_m=30.0):
    """Isotropic fractional Brownian surface by spectral synthesis (metres)."""
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    k[0, 0] = 1.0
    spec = k ** -(hurst + 1.0) * np.exp(2j * np.pi * rng.uniform(size=(n, n)))
    spec[0, 0] = 0.0
    z = np.real(np.fft.ifft2(spec))
    return (z / z.std() * 200.0 * (n * spacing_m / 1e4) ** hurst).astype(np.float32)


def _grid(name="g", n=300, spacing=30.0, bands=False, seed=0):
    h = _fbm(n, 0.7, seed, spacing) + 500.0
    b = np.full((n, n, 4), np.nan, np.float32)
    if bands:
        b[..., :3] = np.clip(0.2 + (h - h.mean())[..., None] / 2000.0, 0, 1)
    return Grid(name, spacing, h, b)


def test_cubic_refine_keeps_even_samples_and_reproduces_cubics():
    x = np.arange(9.0)
    z = 0.5 * x[None] ** 3 - x[:, None] ** 2 + 4.0
    fine = cubic_refine(z)
    assert fine.shape == (17, 17)
    assert np.array_equal(fine[::2, ::2], z)
    xs = np.arange(17) / 2
    expect = 0.5 * xs[None] ** 3 - xs[:, None] ** 2 + 4.0
    assert np.allclose(fine[2:-2, 2:-2], expect[2:-2, 2:-2], atol=1e-9)  # interior stencils


def test_pairs_are_even_sample_decimations():
    g = _grid(bands=True)
    s = PairSampler([g], cells=8, margin=5, split="train")
    b = s.sample(np.random.default_rng(0), 16)
    m = 5
    assert b.parents.shape == (16, 5, 18, 18) and b.targets.shape == (16, 5, 15, 15)
    # the target's even samples are the parent window: F_{L+1}[2i, 2j] == F_L[i, j]
    assert np.array_equal(b.targets[:, :, ::2, ::2], b.parents[:, :, m : m + 8, m : m + 8])
    assert set(np.round(b.spacing_m / 30.0).astype(int)) <= {1, 2, 4, 8}
    assert np.all(b.present[:, :2] == 1) and np.all(b.present[:, 2] == 0)  # no NIR in this grid


def test_training_crops_never_touch_the_validation_strip():
    g = _grid()
    h = g.height_m.copy()
    h[:, g.val_col0 :] = np.nan  # any training crop touching the strip would be rejected forever
    poisoned = Grid("p", g.spacing_m, h, g.bands)
    b = PairSampler([poisoned], cells=8, margin=5, split="train").sample(np.random.default_rng(1), 64)
    assert np.isfinite(b.parents).all() and np.isfinite(b.targets).all()
    h2 = g.height_m.copy()
    h2[:, : g.val_col0] = np.nan  # and validation crops stay inside the strip
    v = PairSampler([Grid("q", 30.0, h2, g.bands)], cells=8, margin=5, split="val")
    assert np.isfinite(v.sample(np.random.default_rng(2), 16).targets).all()


def test_height_target_masked_below_its_real_resolution():
    g = Grid("blown_up", 10.0, _fbm(300, 0.7, 3, 10.0), np.full((300, 300, 4), np.nan, np.float32), 35.0)
    b = PairSampler([g], cells=8, margin=5).sample(np.random.default_rng(3), 64)
    assert np.array_equal(b.present[:, 0] == 1, b.spacing_m >= 35.0)


def test_amplitude_fit_recovers_the_roughness_exponent():
    grids = [_grid(f"g{i}", 512, sp, seed=i) for i, sp in enumerate((10.0, 30.0, 90.0))]
    a_1km, hurst = fit_amplitude(grids, max_step_log2=4)
    assert 0.5 < hurst < 0.9  # the surfaces are fBm with H = 0.7
    assert a_1km > 0
    assert decimation_residual_std(grids[0], 2) > decimation_residual_std(grids[0], 1)


def test_corpus_roundtrip(tmp_path):
    g = _grid(bands=True)
    g.height_m[3, 4] = np.nan
    save_corpus([g], tmp_path / "c.npz")
    (back,) = load_corpus(tmp_path / "c.npz")
    assert back.name == "g" and back.spacing_m == 30.0
    assert np.isnan(back.height_m[3, 4])
    assert np.nanmax(np.abs(back.height_m - g.height_m)) <= 0.05 + 1e-4  # decimetre storage
    assert np.nanmax(np.abs(back.bands[..., :3] - g.bands[..., :3])) <= 0.5 / 254 + 1e-6
    assert np.isnan(back.bands[..., 3]).all()


@pytest.mark.parametrize("t", range(8))
def test_dihedral_maps_preserve_the_decimation(t):
    from generator.learned.data import _dihedral

    a = np.arange(2 * 9 * 9, dtype=np.float32).reshape(2, 9, 9)
    d = _dihedral(a, t)
    assert np.array_equal(np.sort(d[:, ::2, ::2].ravel()), np.sort(a[:, ::2, ::2].ravel()))
