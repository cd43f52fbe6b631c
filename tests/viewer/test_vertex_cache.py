"""Triangle order for the GPU's post-transform vertex cache (a pure layout property)."""

from collections import deque

import numpy as np
from conftest import full_grid_tin

from runtime.tin import tin_surface
from runtime.tiles import TileKey
from viewer.renderer import chunk_layout


def _acmr(faces: np.ndarray, size: int = 32) -> float:
    """Average cache miss ratio (vertex-shader runs per triangle) of a FIFO cache."""
    cache, inside, miss = deque(), set(), 0
    for v in faces.ravel().tolist():
        if v not in inside:
            miss += 1
            if len(cache) == size:
                inside.discard(cache.popleft())
            cache.append(v)
            inside.add(v)
    return miss / len(faces)


def test_chunk_layout_keeps_every_face_and_orders_for_the_vertex_cache():
    grid_rc, faces, edges = full_grid_tin(2)
    rng = np.random.default_rng(0)
    shuffled = faces[rng.permutation(len(faces))]  # worst case: no locality at all
    h = 100.0 * np.sin(grid_rc[:, 0] / 17.0) * np.cos(grid_rc[:, 1] / 11.0)
    s = tin_surface("plane", TileKey(12, 3, -4), grid_rc, h, shuffled, edges, skirt_depth_m=5.0)
    out, starts, lo, hi = chunk_layout(s)
    assert sorted(map(tuple, out.tolist())) == sorted(map(tuple, s.faces.tolist()))
    assert starts[0] == 0 and starts[-1] == len(out)
    assert _acmr(s.faces) > 2.0  # shuffled input
    assert _acmr(out) < 1.0  # Z-ordered within blocks
