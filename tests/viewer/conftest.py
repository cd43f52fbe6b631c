import numpy as np
import pytest

from runtime.tiles import T


@pytest.fixture(scope="session")
def gl_ctx():
    from viewer.context import headless_context

    ctx = headless_context()
    yield ctx
    ctx.release()


def full_grid_tin(step: int = 8):
    """A regular TIN over the (T+1)^2 grid every ``step`` samples: grid_rc, faces, edges."""
    idx = np.arange(0, T + 1, step)
    rr, cc = np.meshgrid(idx, idx, indexing="ij")
    n = len(idx)
    grid_rc = np.stack([rr.ravel(), cc.ravel()], 1).astype(np.float64)
    v = np.arange(n * n).reshape(n, n)
    a, b, c, d = v[:-1, :-1].ravel(), v[:-1, 1:].ravel(), v[1:, :-1].ravel(), v[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    edges = {"west": v[:, 0], "south": v[-1, :], "east": v[:, -1], "north": v[0, :]}
    return grid_rc, faces, edges
