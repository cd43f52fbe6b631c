"""runtime.grids.bilinear: exact at nodes and on planes, edge rule, shapes, against scipy."""

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from runtime.grids import bilinear
from runtime.tiles import T


def test_bilinear_is_exact_on_planes_and_interpolates_cells():
    g = np.zeros((T + 1, T + 1))
    g[10, 20], g[10, 21], g[11, 20], g[11, 21] = 1.0, 3.0, 5.0, 7.0
    assert bilinear(g, np.array([10.5]), np.array([20.5]))[0] == pytest.approx(4.0)
    assert bilinear(g, np.array([10.0]), np.array([21.0]))[0] == pytest.approx(3.0)
    assert bilinear(g, np.array([T * 1.0]), np.array([T * 1.0]))[0] == 0.0  # the far corner is in range
    rows, cols = np.mgrid[0 : T + 1, 0 : T + 1]
    plane = 100.0 + 0.25 * rows - 0.5 * cols
    r, c = np.array([0.0, 3.3, T - 0.01, T]), np.array([T, 0.7, 128.5, 0.0])
    assert np.allclose(bilinear(plane, r, c), 100.0 + 0.25 * r - 0.5 * c, rtol=0, atol=1e-12)


def test_every_node_is_reproduced_exactly_including_the_last_row_and_column():
    g = np.random.default_rng(1).standard_normal((9, 7)).astype(np.float32)
    rows, cols = np.mgrid[0:9, 0:7]
    assert np.array_equal(bilinear(g, rows.astype(float), cols.astype(float)), g.astype(np.float64))


def test_outside_the_grid_the_edge_value_continues():
    g = np.array([[0.0, 10.0], [20.0, 30.0]])
    out = bilinear(g, np.array([-5.0, 0.5, 7.0, -1.0]), np.array([0.5, -3.0, 0.5, 9.0]))
    assert np.array_equal(out, [5.0, 10.0, 25.0, 10.0])  # rows/cols clamped to [0, 1]


def test_outer_grids_channels_and_scipy_nearest_agree():
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 1, (40, 60, 3)).astype(np.float32)
    ri, cj = np.linspace(-0.5, 39.5, 23), np.linspace(-0.5, 59.5, 31)
    out = bilinear(img, ri[:, None], cj[None, :])
    assert out.shape == (23, 31, 3) and out.dtype == np.float64
    ii, jj = np.meshgrid(ri, cj, indexing="ij")
    for k in range(3):
        want = map_coordinates(img[..., k], [ii, jj], order=1, mode="nearest")
        assert np.abs(out[..., k] - want).max() <= 1.2e-7  # scipy rounds its float32 output: 1 ulp at most


def test_bad_grid_says_what_was_expected():
    with pytest.raises(ValueError, match=r"grid must be \(H, W\) or \(H, W, k\) with H, W >= 2"):
        bilinear(np.zeros(5), np.zeros(1), np.zeros(1))
