"""Sensors: a rig's read-back against analytic geometry, spec validation, and a sensor
session streaming two cameras from a real in-process server."""

import math

import numpy as np
import pytest
from conftest import plane_surface

from runtime.geometry import geometry_for
from runtime.tiles import TileKey, spacing_m
from viewer.renderer import TerrainRenderer
from viewer.sensors import SensorRig, SensorSession, SensorSpec

KEY = TileKey(10, 0, 0)  # plane: 0..19.6 km east, 0..-19.6 km north
SIZE = (128, 96)
UP = np.array([0.0, 0.0, 1.0])


def test_sensors_read_back_rgb_depth_and_normals_matching_the_geometry(gl_ctx):
    # A plane tilted east-up: h = 0.25 * east metres; normal (-0.25, 0, 1) / |.|
    s = spacing_m(KEY.level)
    r = TerrainRenderer(gl_ctx, SIZE)
    r.upload(plane_surface(lambda rows, cols: 0.25 * cols * s), None)
    rig = SensorRig(r, [SensorSpec("down", (64, 48), 30.0), SensorSpec("oblique", (96, 64), 50.0,
                                                                       frozenset({"depth_m", "normal"}))])
    c = geometry_for("plane").tile_center(KEY)
    eye = np.array([c[0], c[1], 0.25 * c[0] + 3000.0])
    cams = {"down": rig.camera("down", eye, [0, 0, -1], [0, 1, 0]),
            "oblique": rig.camera("oblique", eye, [0, 1, -1], [0, 0, 1])}
    frames = rig.capture(cams, [KEY], lambda p: UP)
    down, obl = frames["down"], frames["oblique"]
    assert down.rgb.shape == (48, 64, 3) and down.rgb.dtype == np.uint8
    assert obl.rgb is None and obl.nir is None and obl.normal.shape == (64, 96, 3)
    expect_n = np.array([-0.25, 0.0, 1.0]) / math.hypot(0.25, 1.0)
    for f in (down, obl):
        hit = np.isfinite(f.depth_m)
        assert hit.mean() > 0.9
        assert np.abs(f.normal[hit] - expect_n).max() < 2e-3
    # Depth along the view axis of the down camera: each pixel's ray meets the plane.
    d = down.depth_m
    h, w = d.shape
    f_px = h / 2 / math.tan(math.radians(30) / 2)
    xs = (np.arange(w) + 0.5 - w / 2) / f_px  # ray east offset per metre of depth
    expected = 3000.0 / (1.0 + 0.25 * xs)  # eye 3000 m above the plane at the centre, plane rises east
    assert np.allclose(d, expected[None, :], rtol=2e-3), np.abs(d / expected[None, :] - 1).max()
    assert gl_ctx.error == "GL_NO_ERROR"
    rig.release()
    r.close()


def test_identical_inputs_give_identical_sensor_frames(gl_ctx):
    r = TerrainRenderer(gl_ctx, SIZE)
    r.upload(plane_surface(lambda rows, cols: 80.0 * np.sin(rows / 11.0) * np.cos(cols / 13.0)), None)
    rig = SensorRig(r, [SensorSpec("a", (80, 60))])
    cam = {"a": rig.camera("a", geometry_for("plane").tile_center(KEY) + [0, -3000, 900], [0, 1, -0.3], [0, 0, 1])}
    f1, f2 = rig.capture(cam, [KEY], lambda p: UP)["a"], rig.capture(cam, [KEY], lambda p: UP)["a"]
    for a, b in ((f1.rgb, f2.rgb), (f1.depth_m, f2.depth_m), (f1.normal, f2.normal)):
        assert np.array_equal(a, b)
    rig.release()
    r.close()


def test_sensor_spec_validates():
    with pytest.raises(ValueError, match="unknown channels"):
        SensorSpec("x", channels=frozenset({"thermal"}))
    with pytest.raises(ValueError, match="size_px"):
        SensorSpec("x", (0, 10))


@pytest.mark.slow
def test_sensor_session_renders_several_cameras_from_one_selection(plane_server_url):
    specs = [SensorSpec("front", (80, 60), 60.0), SensorSpec("down", (48, 48), 90.0)]
    with SensorSession(specs, url=plane_server_url, cache_bytes=256 << 20) as s:
        pos = (30_000.0, -20_000.0, 9000.0)  # above every peak of this seed
        cams = {"front": s.camera("front", pos, heading_deg=45.0, pitch_deg=-15.0),
                "down": s.camera("down", pos, heading_deg=0.0, pitch_deg=-89.0)}
        frames = s.capture(cams, timeout_s=120.0)
        assert s.flight.last.selection.complete
        front, down = frames["front"], frames["down"]
        assert front.rgb.shape == (60, 80, 3) and down.depth_m.shape == (48, 48)
        assert front.nir is None  # the plane world has no NIR band
        # Straight down from 9000 m: depth = 9000 m - the visible surface's height: the ground
        # from the height query, or sea level where water covers it.
        ground = s.flight.ground_m(pos[0], pos[1])
        assert ground is not None
        surface = max(ground, 0.0)
        centre = down.depth_m[23:25, 23:25].mean()
        assert abs(centre - (9000.0 - surface) * math.cos(math.radians(1.0))) < 25.0, (centre, ground)
        n = down.normal[np.isfinite(down.depth_m)]
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=2e-3) and (n[:, 2] > 0).all()
        # Sky in the top rows of the front view (15 deg down, 60 deg fov: horizon at 0.25 of the height).
        assert np.isinf(front.depth_m[:5]).all() and np.isfinite(front.depth_m[-20:]).all()
        # GPU memory stays within the streamer's budget.
        assert 0 < s.renderer.gpu_bytes <= 256 << 20
