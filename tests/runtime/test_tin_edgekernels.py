"""runtime.tin.edgekernels: the compiled border lists and their check give the numpy
forms' answers (stable argsort per side; masks and diffs)."""

import numpy as np
import pytest

from runtime.tin.placement import edge_indices, is_edge_indices


def _numpy_edges(grid_rc, t):
    r, c = grid_rc[:, 0], grid_rc[:, 1]

    def along(mask, key):
        idx = np.flatnonzero(mask)
        return idx[np.argsort(key[idx], kind="stable")].astype(np.int32)

    return along(c == 0, r), along(r == t, c), along(c == t, r), along(r == 0, c)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_edge_indices_and_check_match_the_numpy_forms(dtype):
    rng = np.random.default_rng(7)
    for it in range(600):
        t = int(rng.integers(1, 9))
        rc = rng.integers(0, t + 1, size=(int(rng.integers(0, 40)), 2)).astype(dtype)
        if it % 2:  # a TIN's vertices: distinct grid points, any order
            rc = np.unique(rc, axis=0)
            rng.shuffle(rc)
        got, want = edge_indices(rc, t), _numpy_edges(rc, t)
        assert all(g.dtype == np.int32 and np.array_equal(g, w) for g, w in zip(got, want, strict=True))
        # The check: integer grids (compiled) answer as float grids (numpy) do.
        lists = list(want)
        k = int(rng.integers(0, 4))
        if it % 3 == 0 and len(lists[k]):
            lists[k] = lists[k][::-1].copy()  # out of order (or, for one vertex, the same)
        elif it % 3 == 1 and len(lists[k]):
            lists[k] = lists[k][:-1]  # one missing
        assert is_edge_indices(lists, rc, t) == is_edge_indices(lists, rc.astype(np.float64), t)
    square = np.array([[0, 0], [0, 4], [4, 0], [4, 4], [2, 2]], dtype)
    assert [e.tolist() for e in edge_indices(square, 4)] == [[0, 2], [2, 3], [1, 3], [0, 1]]
    assert is_edge_indices(edge_indices(square, 4), square, 4)
    assert not is_edge_indices([np.array([2, 0]), *edge_indices(square, 4)[1:]], square, 4)
    assert not is_edge_indices(list(edge_indices(square, 4))[:3], square, 4)


def test_edge_indices_beyond_the_tile_take_the_numpy_form():
    rc = np.array([[-3, 0], [2, 0], [0, 5]], np.int64)  # on the west side, above row 0
    assert all(np.array_equal(g, w) for g, w in zip(edge_indices(rc, 4), _numpy_edges(rc, 4), strict=True))


def test_skirt_faces_match_the_numpy_form():
    from runtime.tin.placement import _skirt_faces

    def numpy_form(edges, skirt_of):
        west, south, east, north = edges
        out = []
        for chain in (north[::-1], west, south, east[::-1]):
            a, b = chain[:-1], chain[1:]
            out.append(np.stack([a, skirt_of[a], skirt_of[b]], 1))
            out.append(np.stack([a, skirt_of[b], b], 1))
        return np.concatenate(out).astype(np.int32)

    rng = np.random.default_rng(3)
    for _ in range(200):
        t = int(rng.integers(1, 9))
        rc = np.unique(rng.integers(0, t + 1, size=(int(rng.integers(4, 60)), 2)), axis=0).astype(np.int32)
        rc = np.concatenate([rc, [[0, 0], [0, t], [t, 0], [t, t]]]).astype(np.int32)
        rc = np.unique(rc, axis=0)
        edges = edge_indices(rc, t)
        border = np.flatnonzero((rc[:, 0] == 0) | (rc[:, 0] == t) | (rc[:, 1] == 0) | (rc[:, 1] == t))
        skirt_of = np.full(len(rc), -1, np.int32)
        skirt_of[border] = len(rc) + np.arange(len(border), dtype=np.int32)
        got, want = _skirt_faces(edges, skirt_of), numpy_form(edges, skirt_of)
        assert got.dtype == np.int32 and np.array_equal(got, want)
