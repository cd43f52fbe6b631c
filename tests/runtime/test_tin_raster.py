"""tin_window (the client's TIN raster) and the child's quarter morph_grid."""

import numpy as np
import pytest

from runtime.tiles import T, TileKey
from runtime.tin import morph_grid, morph_window, simplify_grid, tin_grid, tin_surface, tin_window, with_morph


def _rough_tin(seed: int = 3):
    """A simplified TIN (fan border, flips) of a rough synthetic height field, metres."""
    rng = np.random.default_rng(seed)
    rr, cc = np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij")
    h = (400.0 * np.sin(rr / 19.0) * np.cos(cc / 27.0) + 35.0 * np.sin(rr * cc / 900.0)
         + rng.normal(0.0, 2.0, rr.shape)).astype(np.float32)
    h[100:140, 30:90] = 12.5  # a flat lake: few long triangles
    grid_rc, faces = simplify_grid(h, 1.5)
    return grid_rc, h[grid_rc[:, 0], grid_rc[:, 1]].astype(np.float64), faces, h


def test_tin_window_reproduces_a_plane_in_any_window():
    grid_rc, faces = simplify_grid(np.zeros((T + 1, T + 1), np.float32), 0.5)  # two triangles + fan border
    h = 120.0 + 0.75 * grid_rc[:, 0] - 2.5 * grid_rc[:, 1]
    g = tin_window(grid_rc, h, faces, rows=(10, 200), cols=(127, 256))
    rr, cc = np.meshgrid(np.arange(10, 201), np.arange(127, 257), indexing="ij")
    assert g.shape == (191, 130)
    np.testing.assert_allclose(g, 120.0 + 0.75 * rr - 2.5 * cc, atol=1e-9)
    assert g[0, 0] == pytest.approx(120.0 + 7.5 - 317.5)  # node (10, 127): -190 m


def test_tin_window_equals_tin_grid_on_a_rough_tin():
    grid_rc, h, faces, heights = _rough_tin()
    full = tin_grid(grid_rc, h, faces)
    assert np.array_equal(tin_window(grid_rc, h, faces), full)
    assert np.array_equal(tin_window(grid_rc, h, faces, (127, 256), (0, 129)), full[127:, :130])
    # The vertices are reproduced (metres, to float64 rounding), every node is within the
    # simplification's 1.5 m of the heights and the lake's inside is flat.
    np.testing.assert_allclose(full[grid_rc[:, 0], grid_rc[:, 1]], h, atol=1e-9)
    assert 0.5 < np.abs(full - heights).max() <= 1.5 + 1e-6
    assert np.abs(full[105:135, 35:85] - 12.5).max() < 1e-9


def test_tin_window_rejects_holes_and_bad_windows():
    grid_rc, h, faces, _ = _rough_tin()
    with pytest.raises(ValueError, match="uncovered"):
        tin_window(grid_rc, h, faces[: len(faces) // 2])
    with pytest.raises(ValueError, match="within"):
        tin_window(grid_rc, h, faces, rows=(0, T + 1))


@pytest.mark.parametrize("child", [TileKey(9, 6, 10), TileKey(9, 7, 10), TileKey(9, 6, 11), TileKey(9, 7, 11)])
def test_morph_grid_gives_the_full_grids_morph_targets(child):
    grid_rc, h, faces, _ = _rough_tin()
    parent = tin_surface("plane", child.parent(), grid_rc, h, faces, None, 10.0)
    rows, cols = morph_window(child)
    assert rows[1] - rows[0] == cols[1] - cols[0] == T // 2 + 1
    q = morph_grid(grid_rc, h, faces, child)
    full = tin_grid(grid_rc, h, faces).astype(np.float32)
    assert np.array_equal(q, full[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1])
    flat = np.zeros((T + 1, T + 1), np.float32)
    c_rc, c_faces = simplify_grid(flat, 0.5)
    own = tin_surface("plane", child, c_rc, np.zeros(len(c_rc)), c_faces, None, 10.0)
    a = with_morph("plane", own, full, parent)
    b = with_morph("plane", own, q, parent)
    assert np.array_equal(a.morph_dh_m, b.morph_dh_m) and np.array_equal(a.morph_normals, b.morph_normals)
    # The child is flat at 0 m: its morph target is the parent's height at each vertex.
    pr = (own.grid_rc[:, 0] + T * (child.y & 1)) / 2
    pc = (own.grid_rc[:, 1] + T * (child.x & 1)) / 2
    at_nodes = (pr % 1 == 0) & (pc % 1 == 0)
    np.testing.assert_allclose(b.morph_dh_m[at_nodes], full[pr[at_nodes].astype(int), pc[at_nodes].astype(int)],
                               atol=1e-3)
    with pytest.raises(ValueError, match="morph_grid"):
        with_morph("plane", own, q[1:], parent)
