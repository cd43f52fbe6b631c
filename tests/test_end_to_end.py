"""The whole path, all real: fractal refiner over the plane -> trimesh TIN with skirts ->
msgpack over a websocket server on loopback -> client -> moderngl render through EGL."""

import math

import numpy as np
import pytest

from runtime.geometry import geometry_for
from runtime.lod.camera import Camera
from runtime.tiles import TileKey, World
from streaming.cli import build_server
from streaming.client import SyncTileClient
from viewer.context import headless_context
from viewer.flight import client_tile, start_in_process, stop_in_process
from viewer.paths import highest_point
from viewer.renderer import TerrainRenderer

SIZE = (192, 128)


@pytest.fixture(scope="module")
def server_url():
    server = build_server(World.PLANE, seed=3)
    url, thread, loop = start_in_process(server)
    yield url, server
    stop_in_process(server, thread, loop)


def _fetch(url, keys):
    client = SyncTileClient(url)
    try:
        return client.hello, client.fetch(keys, timeout_s=60)
    finally:
        client.close()


def _render(tiles, eye, target):
    ctx = headless_context()
    r = TerrainRenderer(ctx, SIZE)
    for key, t in tiles.items():
        drawn = client_tile(World.PLANE, key, t)  # what the viewer uploads (no parents: no morph)
        r.upload(drawn.surface, drawn.image)
    cam = Camera.look_at(eye, target, [0, 0, 1], fov_y_rad=math.radians(60), viewport_px=SIZE)
    r.render(cam, list(tiles), np.array([0.0, 0.0, 1.0]))
    img, depth = r.read_rgb(), r.read_depth_m()
    r.close()
    ctx.release()
    return img, depth


def test_fly_path_renders_terrain_below_and_sky_above(server_url):
    url, server = server_url
    # Find the highest land of the anchor tiles around the origin, then fly there.
    _, coarse = _fetch(url, [TileKey(3, x, y) for y in (-1, 0) for x in (-1, 0)])
    px, py, _ = highest_point(World.PLANE, coarse)
    k = geometry_for("plane").key_at(9, np.array([px, py, 0.0]))
    keys = [TileKey(9, k.x + dx, k.y + dy) for dy in (-2, -1, 0, 1) for dx in (-2, -1, 0, 1)]
    hello, tiles = _fetch(url, keys)
    assert hello.world == "plane" and hello.seed == 3 and hello.model.startswith("fractal")
    assert all(t.model == hello.model for t in tiles.values())
    # Stand 600 m above the highest point near the middle, look north and a little down.
    top = max(float(t.height_max_m) for t in tiles.values())
    eye = np.array([px, py - 20000.0, top + 600.0])
    img, depth = _render(tiles, eye, eye + [0.0, 1.0, -0.08])
    sky, ground = depth[:8], depth[-8:]
    assert np.isinf(sky).all(), "top rows should be sky"
    assert np.isfinite(ground).all(), "bottom rows should be terrain"
    assert (ground > 100).all() and (ground < 60000).all()
    sky_rgb = img[:8].reshape(-1, 3).mean(0)
    assert sky_rgb[2] > sky_rgb[0] + 20, sky_rgb  # blue sky
    terrain = img[-40:].reshape(-1, 3).astype(float)
    assert terrain.std(0).max() > 3.0, "terrain should not be a blank colour"
    assert np.abs(terrain.mean(0) - sky_rgb).max() > 15
    # The same camera renders the same pixels again (fresh context, tiles fetched again).
    _, tiles2 = _fetch(url, keys)
    img2, _ = _render(tiles2, eye, eye + [0.0, 1.0, -0.08])
    assert np.array_equal(img, img2)
    assert server.service.stats().lru_hits >= len(keys)  # the second fetch came from the tile LRU
