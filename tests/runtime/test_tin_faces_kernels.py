"""runtime.tin.faces.tin_faces' compiled loops (kernels.leaf_faces, fan_faces, drawn_diamonds)
give the rows of the numpy forms they replaced, in the same order, on real and fractal tiles."""

import numpy as np
import pytest
from mesh_fixtures import fractal, real_crop

from runtime.tiles import T
from runtime.tin import faces, hierarchy, rtin, simplify
from runtime.tin.diamonds import _diamond_faces


def numpy_tin_faces(present, t, border, flipped, dropped):
    """``tin_faces`` as it was in numpy (flatnonzero / take passes, ``_diamond_faces``,
    ``fan_out``): the reference."""
    hier = hierarchy.hierarchy(t)
    blocked = faces._extend(present if dropped is None else present | dropped, True)
    table = hier.child_kid_fan if border == "fan" else hier.child_kid
    apexes, extra = present, []
    if dropped is not None and dropped[:-1].any():
        d = np.flatnonzero(dropped[:-1])
        kids = hier.diamond_kid.take(d, axis=0).ravel()
        on = np.flatnonzero(present[kids])
        apexes = present.copy()
        apexes[kids[on]] = False
        outer = hier.kid_other.reshape(-1, 2).take(4 * d[on >> 2] + (on & 3), axis=0).ravel()
        outer = outer[~blocked[table.ravel()[outer]]]
        extra = [hier.child_tri.take(outer, axis=0), _diamond_faces(present, dropped, flipped, t)]
    ids = np.flatnonzero(apexes[:-1])
    sel = np.flatnonzero(~blocked[table.take(ids, axis=0)].ravel())
    out = [hier.child_tri.take(ids[sel >> 2] * 4 + (sel & 3), axis=0)] + extra
    if border == "fan":
        fans = present[hier.fan_apex] & ~blocked[hier.fan_kid]
        out.append(faces.fan_out(hier.fan_tri.take(np.flatnonzero(fans), axis=0), t))
    return np.concatenate(out)


@pytest.mark.parametrize("border", rtin.BORDERS)
@pytest.mark.parametrize("source", ["real", "fractal"])
def test_compiled_tin_faces_equal_the_numpy_form(source, border):
    h = real_crop() if source == "real" else fractal(T + 1, seed=21, relief_m=600.0)
    n_dropped = 0
    for bound in (0.5, 3.0, 12.0):
        for flips in (False, True):
            present, flipped, dropped = simplify.rtin_vertex_set(h, bound, border, flips, None)
            want = numpy_tin_faces(present, T, border, flipped, dropped)
            got = faces.tin_faces(present, T, border, flipped, dropped)
            assert got.dtype == want.dtype == np.int32 and len(got) > 1000
            np.testing.assert_array_equal(got, want)
            if flipped is not None:  # the decoder's call: dropped diamonds derived from the flips
                np.testing.assert_array_equal(faces.tin_faces(present, T, border, flipped), want)
            n_dropped += 0 if dropped is None else int(dropped[:-1].sum())
    assert n_dropped > 100  # the dropped diamonds' drawings were compared too
    # the simplifier's canonical mesh is still what these faces number to
    rc, f = simplify.simplify_grid(h, 3.0, border)
    present, flipped, dropped = simplify.rtin_vertex_set(h, 3.0, border, True, None)
    grid_rc, ff = faces.number_vertices(faces.tin_faces(present, T, border, flipped, dropped), T + 1,
                                        faces.mesh_vertices(present, T, border))
    np.testing.assert_array_equal(grid_rc, rc)
    np.testing.assert_array_equal(ff, f)


def numpy_number_vertices(face_ids, n1, used):
    """``faces.number_vertices`` as it was in numpy: the reference."""
    flat = face_ids.ravel()
    ids = np.flatnonzero(used)
    lut = np.zeros(n1 * n1, dtype=np.int32)
    lut[ids] = np.arange(len(ids), dtype=np.int32)
    return np.stack([ids // n1, ids % n1], axis=1).astype(np.int32), lut[flat].reshape(-1, 3)


@pytest.mark.parametrize("border", rtin.BORDERS)
def test_compiled_numbering_equals_the_numpy_form(border):
    h = real_crop()
    for bound in (0.5, 6.0):
        present, flipped, dropped = simplify.rtin_vertex_set(h, bound, border, True, None)
        f = faces.tin_faces(present, T, border, flipped, dropped)
        used = faces.mesh_vertices(present, T, border)
        rc, ff = faces.number_vertices(f, T + 1, used)
        want_rc, want_f = numpy_number_vertices(f, T + 1, used)
        assert rc.dtype == ff.dtype == np.int32 and len(ff) == len(f) > 1000
        np.testing.assert_array_equal(rc, want_rc)
        np.testing.assert_array_equal(ff, want_f)
        # int64 ids (other callers) take the numpy path: the same arrays
        rc64, ff64 = faces.number_vertices(f.astype(np.int64), T + 1, used)
        np.testing.assert_array_equal(rc64, rc)
        np.testing.assert_array_equal(ff64, ff)
