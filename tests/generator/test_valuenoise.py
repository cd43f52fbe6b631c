"""The compiled value noise (generator.valuenoise) against the numpy reference
(generator.anchors.plane._value_noise / _fbm): the same bits, sign of zero included."""

import numpy as np

from generator import valuenoise
from generator.anchors.plane import PlaneAnchor, _fbm, _value_noise


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float64).view(np.int64)


def _points(seed: int, n: int = 41):
    rng = np.random.default_rng(seed)
    r = np.arange(-300_000, -300_000 + n, dtype=np.float64)[:, None] * np.ones((1, n))
    c = np.ones((n, 1)) * np.arange(2**40, 2**40 + n, dtype=np.float64)[None, :]
    return c + rng.normal(0.0, 40.0, c.shape), r + rng.normal(0.0, 40.0, r.shape)


def test_one_octave_has_the_reference_bits_at_every_wavelength():
    for s, wave in enumerate([6800.0, 700.0, 40.0, 12.0, 3.0, 0.7]):  # few points a cell .. many cells
        x, y = _points(s)
        for octave in (0, 7, 50, 2006):
            ref, got = _value_noise(3, octave, x, y, wave), valuenoise.value_noise(3, octave, x, y, wave)
            assert got.shape == ref.shape
            np.testing.assert_array_equal(_bits(got), _bits(ref))
            assert -1.0 <= got.min() and got.max() <= 1.0
            assert wave > 100.0 or got.std() > 0.05  # varies within a window of ~40 samples


def test_octave_sums_have_the_reference_bits():
    x, y = _points(9, 65)
    cases = [(10, 300.0, 3, 0.5), (30, 700.0, 7, 0.5), (60, 12.0, 3, 0.5), (80, 2500.0, 3, 0.7)]
    for base, wave, octaves, gain in cases:
        np.testing.assert_array_equal(_bits(valuenoise.fbm(1, base, x, y, wave, octaves, gain)),
                                      _bits(_fbm(1, base, x, y, wave, octaves, gain)))


def test_the_plane_anchor_is_the_reference_continent_generator():
    """The anchor's fields through the compiled noise equal the numpy reference's, so the
    plane world (and every pinned tile hash) is unchanged by the kernel."""
    import generator.anchors.plane as plane

    a = PlaneAnchor(5)
    rows = np.arange(-70, -5, dtype=np.int64) * 37
    cols = np.arange(1000, 1065, dtype=np.int64)
    got = a.sample(rows, cols)
    ctx = a.node_context(rows[:9], cols[:9])
    fbm, vn = valuenoise.fbm, valuenoise.value_noise
    try:
        valuenoise.fbm, valuenoise.value_noise = _fbm, _value_noise  # the numpy reference path
        ref, ref_ctx = a.sample(rows, cols), a.node_context(rows[:9], cols[:9])
    finally:
        valuenoise.fbm, valuenoise.value_noise = fbm, vn
    assert plane.valuenoise.fbm is fbm
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    np.testing.assert_array_equal(ctx, ref_ctx)
    assert got[0].max() - got[0].min() > 100.0  # real relief, not a constant


def test_the_plane_anchor_colour_kernel_has_the_reference_bits():
    """plane._albedo (compiled where numba is) against its numpy reference on random fields,
    thresholds included: every float64 bit of every channel."""
    from generator.anchors import plane

    rng = np.random.default_rng(3)
    h = rng.uniform(-5000.0, 6000.0, (33, 47))
    h.flat[:6] = [0.0, -0.0, -20.0, 2.0, 1400.0, -900.0]  # edges of the sea and lowland ramps
    m, j = rng.uniform(-0.1, 1.1, h.shape), rng.uniform(-1.0, 1.0, h.shape)
    for snowline in (3000.0, 2650.5):
        got, ref = plane._albedo(h, m, j, snowline), plane._albedo_numpy(h, m, j, snowline)
        assert got.shape == ref.shape == (3, 33, 47)
        np.testing.assert_array_equal(_bits(got), _bits(ref))
    assert 0.01 < got.min() < got.max() < 0.97  # sea and snow colours both present


def test_the_plane_relief_height_is_the_sampled_height():
    """``relief_height`` (no moisture, no colour) has ``sample``'s height bits, over land, sea and
    mountains (the regional relief reads it: generator.relief)."""
    anchor = PlaneAnchor(0)
    for r0, c0 in ((-40, -60), (300, 700), (-2000, 1500)):
        rows = np.arange(r0, r0 + 70, dtype=np.int64)
        cols = np.arange(c0, c0 + 70, dtype=np.int64)
        got = anchor.relief_height(rows, cols)
        want = anchor.sample(rows, cols)[0]
        assert got.dtype == np.float32 and got.shape == (70, 70)
        np.testing.assert_array_equal(got, want)
    assert np.ptp(got) > 50.0


def test_points_far_apart_at_a_short_wavelength_have_the_reference_bits():
    """The compiled loop hashes a lattice table only where the points span few cells; points
    ~2^52 samples apart (a lattice range whose area would overflow int64) take the per-point
    hashes, and a block spanning few cells the table: both the reference's bits."""
    x = np.array([0.0, 2.0**52, -(2.0**52), 3.5, 1e15])
    y = np.array([0.0, -(2.0**52), 2.0**52, -7.25, -1e15])
    for wave in (0.7, 3.0, 6800.0):
        np.testing.assert_array_equal(_bits(valuenoise.value_noise(5, 11, x, y, wave)),
                                      _bits(_value_noise(5, 11, x, y, wave)))
    bx, by = np.meshgrid(np.arange(65.0) + 1e6, np.arange(65.0) - 3e5)
    np.testing.assert_array_equal(_bits(valuenoise.value_noise(5, 11, bx, by, 40.0)),
                                  _bits(_value_noise(5, 11, bx, by, 40.0)))
