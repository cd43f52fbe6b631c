"""Known scenes give known pixels (EGL, llvmpipe on CPU)."""

import math

import numpy as np
from conftest import full_grid_tin

from runtime.lod.camera import Camera
from runtime.geometry import geometry_for
from runtime.tin import tin_surface
from runtime.tiles import TileKey
from viewer.renderer import Lighting, TerrainRenderer

KEY = TileKey(10, 0, 0)  # plane, 76.4 m samples: the tile spans 0..19.6 km east, 0..-19.6 km north
SIZE = (160, 120)


def _surface(height_fn, key=KEY):
    grid_rc, faces, edges = full_grid_tin(4)
    h = height_fn(grid_rc[:, 0], grid_rc[:, 1])
    return tin_surface("plane", key, grid_rc, h, faces, edges, skirt_depth_m=50.0)


def _renderer(ctx, lighting=Lighting()):
    return TerrainRenderer(ctx, SIZE, lighting)


def test_flat_tile_seen_from_above_has_flat_depth_and_uniform_colour(gl_ctx):
    r = _renderer(gl_ctx)
    s = _surface(lambda rows, cols: np.full_like(rows, 100.0))
    r.upload(s, None)
    c = geometry_for("plane").tile_center(KEY)
    eye = np.array([c[0], c[1], 1000.0])
    cam = Camera.look_at(eye, eye - [0, 0, 1], [0, 1, 0], fov_y_rad=math.radians(40), viewport_px=SIZE)
    r.render(cam, [KEY], np.array([0.0, 0.0, 1.0]))
    depth = r.read_depth_m()
    assert np.isfinite(depth).all(), "the tile should fill the view"
    assert np.allclose(depth, 900.0, rtol=2e-3), (depth.min(), depth.max())
    rgb = r.read_rgb().astype(int)
    assert np.ptp(rgb.reshape(-1, 3), axis=0).max() <= 3  # flat + uniform lighting -> one colour
    r.close()


def test_ridge_lit_from_the_east_is_brighter_on_its_east_face(gl_ctx):
    lighting = Lighting(sun_azimuth_deg=90.0, sun_elevation_deg=20.0, haze_m=1e9)
    r = _renderer(gl_ctx, lighting)
    # A north-south ridge through the tile's middle column, 2 km high.
    s = _surface(lambda rows, cols: 2000.0 * np.maximum(0.0, 1.0 - np.abs(cols - 128) / 64.0))
    r.upload(s, None)
    c = geometry_for("plane").tile_center(KEY)
    eye = np.array([c[0], c[1], 30000.0])
    cam = Camera.look_at(eye, eye - [0, 0, 1], [0, 1, 0], fov_y_rad=math.radians(30), viewport_px=SIZE)
    r.render(cam, [KEY], np.array([0.0, 0.0, 1.0]))
    lum = r.read_rgb().astype(float).sum(axis=2)
    mid_row = lum[SIZE[1] // 2]
    west_face = mid_row[SIZE[0] // 2 - 12: SIZE[0] // 2 - 4].mean()
    east_face = mid_row[SIZE[0] // 2 + 4: SIZE[0] // 2 + 12].mean()
    assert east_face > west_face + 40, (east_face, west_face)
    r.close()


def test_horizon_view_has_sky_above_terrain_below_and_is_repeatable(gl_ctx):
    r = _renderer(gl_ctx)
    s = _surface(lambda rows, cols: 50.0 * np.sin(rows / 9.0) * np.cos(cols / 7.0))
    r.upload(s, None)
    c = geometry_for("plane").tile_center(KEY)
    eye = np.array([c[0], c[1] + 9000.0, 400.0])
    cam = Camera.look_at(eye, eye + [0, -1, -0.02], [0, 0, 1], viewport_px=SIZE)
    r.render(cam, [KEY], np.array([0.0, 0.0, 1.0]))
    img1, depth = r.read_rgb(), r.read_depth_m()
    r.render(cam, [KEY], np.array([0.0, 0.0, 1.0]))
    img2 = r.read_rgb()
    assert np.array_equal(img1, img2)
    assert np.isinf(depth[:10]).all()  # top rows: sky
    assert np.isfinite(depth[-10:]).all()  # bottom rows: terrain
    top = img1[:10].reshape(-1, 3).mean(0)
    assert top[2] > top[0] + 20  # sky is blue
    assert np.abs(img1[-10:].astype(int).mean((0, 1)) - top).max() > 20  # terrain differs from sky
    r.close()


def test_camera_relative_rendering_is_steady_10000_km_out(gl_ctx):
    """The same scene 10,000 km from the origin renders the same pixels."""
    far_key = TileKey(10, 511, -511)  # ~10,000 km east and north
    imgs = []
    for key in (KEY, far_key):
        r = _renderer(gl_ctx)
        s = _surface(lambda rows, cols: 30.0 * np.sin(rows / 5.0) + 20.0 * np.cos(cols / 3.0), key)
        r.upload(s, None)
        c = geometry_for("plane").tile_center(key)
        eye = np.array([c[0] + 123.25, c[1] - 456.5, 300.0])
        cam = Camera.look_at(eye, eye + [0.3, 1, -0.25], [0, 0, 1], viewport_px=SIZE)
        r.render(cam, [key], np.array([0.0, 0.0, 1.0]))
        imgs.append(r.read_rgb().astype(int))
        r.close()
    assert np.abs(imgs[0] - imgs[1]).max() <= 2
