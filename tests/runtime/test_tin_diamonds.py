"""runtime.tin.diamonds: dropped diamonds remove vertices and keep the mesh conforming."""

import numpy as np
import pytest
from mesh_fixtures import fractal, real_crop, signed_area2

from runtime.tiles import T
from runtime.tin import faces, hierarchy, rtin, simplify


def edge_uses(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges and how many faces use each; directed edges must be unique."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), "a directed edge is used twice"
    return np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)


@pytest.mark.parametrize("border", rtin.BORDERS)
@pytest.mark.parametrize("source", ["real", "fractal"])
def test_dropped_diamonds_remove_vertices_and_keep_the_mesh_conforming(source, border):
    h = real_crop() if source == "real" else fractal(T + 1, seed=21, relief_m=600.0)
    hier = hierarchy.hierarchy(T)
    for bound in (0.5, 3.0, 12.0):
        rc0, f0 = simplify.simplify_grid(h, bound, border, flips=False)
        present, flipped, rc, f = simplify.simplify_rtin(h, bound, border)
        k = len(rc0) - len(rc)
        assert k > 0.05 * len(rc0)  # a real share of the vertices goes
        assert len(f) == len(f0) - 2 * k  # two triangles per vertex (Euler: the outline is kept)
        assert simplify.max_vertical_error(h, rc, f) <= bound + 1e-6
        assert signed_area2(rc, f).min() > 0 and signed_area2(rc, f).sum() == 2 * T * T
        # conforming: every edge inside the tile is shared by exactly two faces, every
        # edge on the border belongs to one, and the border keeps its samples
        edges, uses = edge_uses(f)
        a, b = rc[edges[:, 0]], rc[edges[:, 1]]
        same_row = (a[:, 0] == b[:, 0]) & np.isin(a[:, 0], [0, T])
        on_border = same_row | ((a[:, 1] == b[:, 1]) & np.isin(a[:, 1], [0, T]))
        assert (uses[on_border] == 1).all() and (uses[~on_border] == 2).all()
        # every flipped diamond is drawn on its a1-a2 diagonal
        grid_ids = rc[:, 0].astype(np.int64) * (T + 1) + rc[:, 1]
        drawn = {tuple(e) for e in np.sort(grid_ids[edges], axis=1).tolist()}
        ids = np.flatnonzero(flipped[:-1])
        diagonals = np.sort(np.stack([hier.diamond_a1[ids], hier.diamond_a2[ids]], 1), axis=1)
        assert len(ids) and all(tuple(d) in drawn for d in diagonals.tolist())
        # and the wire rebuilds exactly this mesh from the vertex set and the flip bits
        np.testing.assert_array_equal(faces.tin_faces(present, T, border, flipped), grid_ids[f])
