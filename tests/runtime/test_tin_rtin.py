"""runtime.tin.rtin and runtime.tin.faces: the error pyramid, the vertex set, faces from it."""

import numpy as np
from mesh_fixtures import fractal, real_crop

from runtime.tiles import T
from runtime.tin import faces, rtin, simplify


def test_skipping_unneeded_error_measurements_changes_nothing():
    """rtin_errors only measures triangles that may stay unsplit; the fully measured
    pyramid must give the very same vertex set for every bound."""
    h = fractal(T + 1, seed=9, relief_m=1200.0)
    full = rtin.rtin_errors(h)  # every triangle measured
    for bound in (0.5, 3.0, 25.0, 150.0):
        fast = rtin.rtin_errors(h, bound)
        np.testing.assert_array_equal(fast > bound, full > bound)
        exact = fast <= bound
        np.testing.assert_array_equal(fast[exact], full[exact])


def test_vertex_set_is_every_sample_above_the_bound():
    h = real_crop()
    kept = np.zeros((T + 1, T + 1), dtype=bool)
    inner = (slice(1, -1), slice(1, -1))
    for border in rtin.BORDERS:
        err = rtin.rtin_errors(h, border=border)
        grid_rc, _ = simplify.simplify_grid(h, 7.0, border, flips=False)
        kept[:] = False
        kept[grid_rc[:, 0], grid_rc[:, 1]] = True
        np.testing.assert_array_equal(kept[inner], (err > 7.0)[inner])
        edge = np.concatenate([kept[0], kept[-1], kept[:, 0], kept[:, -1]])
        assert edge.all() == (border != "free")
        # dropping diamonds only takes vertices away from the plain RTIN
        present, flipped, rc2, _ = simplify.simplify_rtin(h, 7.0, border)
        kept2 = np.zeros_like(kept)
        kept2[rc2[:, 0], rc2[:, 1]] = True
        assert not (kept2 & ~kept).any() and (kept & ~kept2).sum() > 0.1 * kept.sum()
        assert not (flipped[:-1] & present[:-1]).any()  # a flipped diamond's centre is gone


def canonical_triangles(grid_ids: np.ndarray) -> np.ndarray:
    """Triangles rotated to start at their smallest id (winding kept), rows sorted."""
    f = np.asarray(grid_ids, dtype=np.int64)
    k = np.argmin(f, axis=1)
    rows = np.arange(len(f))[:, None]
    f = f[rows, (k[:, None] + np.arange(3)) % 3]
    return f[np.lexsort(f.T[::-1])]


def test_tin_faces_fast_path_equals_fanning_every_leaf():
    h = fractal(T + 1, seed=13, relief_m=900.0)
    for bound in (0.7, 9.0, 90.0):
        present = rtin.rtin_vertices(rtin.rtin_errors(h, bound), bound)
        # the level-by-level reference against the one-pass version (same triangles,
        # same windings; the order is each one's own)
        slow = faces.fan_out(faces.rtin_faces(present, T), T)
        fast = faces.tin_faces(present, T, "fan")
        np.testing.assert_array_equal(canonical_triangles(fast), canonical_triangles(slow))
        graded = rtin.rtin_vertices(rtin.rtin_errors(h, bound, "graded"), bound, "graded")
        np.testing.assert_array_equal(
            canonical_triangles(faces.tin_faces(graded, T, "graded")), canonical_triangles(faces.rtin_faces(graded, T))
        )
