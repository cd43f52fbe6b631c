import math

import numpy as np
import pytest

from runtime.geometry import geometry_for
from runtime.lod.camera import Camera
from runtime.tiles import T, TileKey, World
from runtime.tin import tin_surface

SERVER_SEED = 5


@pytest.fixture(scope="session")
def gl_ctx():
    from viewer.context import headless_context

    ctx = headless_context()
    yield ctx
    ctx.release()


@pytest.fixture(scope="session")
def plane_server_url():
    """A fractal plane world (seed 5) served in-process on loopback."""
    from streaming.cli import build_server
    from viewer.flight import start_in_process, stop_in_process

    server = build_server(World.PLANE, SERVER_SEED)
    url, thread, loop = start_in_process(server)
    yield url
    stop_in_process(server, thread, loop)


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


def plane_surface(height_fn, key=TileKey(10, 0, 0), step: int = 4, skirt_m: float = 50.0):
    """A plane-world Surface of ``height_fn(rows, cols) -> metres`` on a regular TIN."""
    grid_rc, faces, edges = full_grid_tin(step)
    return tin_surface("plane", key, grid_rc, height_fn(grid_rc[:, 0], grid_rc[:, 1]), faces, edges, skirt_m)


def down_camera(key, height_m, size, fov_deg=40.0):
    """A plane-world camera over ``key``'s centre at ``height_m``, looking straight down (north up)."""
    c = geometry_for("plane").tile_center(key)
    eye = np.array([c[0], c[1], height_m])
    return Camera.look_at(eye, eye - [0, 0, 1], [0, 1, 0], fov_y_rad=math.radians(fov_deg), viewport_px=size)


def write_teleport_path(path) -> None:
    """A 3 s scripted path over the plane with one teleport (a ``cut`` keyframe) at 1 s."""
    import json

    path.write_text(json.dumps({"keyframes": [
        {"t": 0, "x": 0, "y": 0, "alt_m": 20000, "alt_mode": "msl", "heading_deg": 90, "pitch_deg": -30},
        {"t": 1, "x": 2000, "y": 0, "alt_m": 20000, "alt_mode": "msl", "heading_deg": 90, "pitch_deg": -30},
        {"t": 1, "x": 400000, "y": 0, "alt_m": 20000, "alt_mode": "msl", "heading_deg": 0, "pitch_deg": -30,
         "cut": True},
        {"t": 3, "x": 400000, "y": 0, "alt_m": 20000, "alt_mode": "msl", "heading_deg": 0, "pitch_deg": -30}]}))
