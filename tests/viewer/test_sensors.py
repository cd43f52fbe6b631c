"""Sensors: a rig's read-back against analytic geometry (planar and range depth, roll,
nadir, frame ids), spec validation, and a sensor session streaming two cameras from a
real in-process server (AGL cameras made before the first capture)."""

import math

import numpy as np
import pytest
from conftest import plane_surface

from runtime.geometry import geometry_for
from runtime.tiles import TileKey, spacing_m
from viewer.renderer import TerrainRenderer
from viewer.sensors import SensorRig, SensorSession, SensorSpec, oriented, range_from_planar

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


def _pattern_rig(gl_ctx, size, channels=frozenset({"rgb", "depth_m", "range_m"}), fov=50.0):
    r = TerrainRenderer(gl_ctx, SIZE)
    r.upload(plane_surface(lambda rows, cols: 60.0 * np.sin(rows / 9.0) * np.cos(cols / 17.0) + 0.3 * cols), None)
    return r, SensorRig(r, [SensorSpec("cam", size, fov, channels)])


def test_roll_turns_the_image_counter_clockwise(gl_ctx):
    """Roll +90 deg (right side down) = the unrolled image turned 90 deg counter-clockwise
    (np.rot90); -90 deg: clockwise. Nadir (pitch -90), square pixels, so the pixel
    centres map onto each other and only rasterisation ties may differ."""
    r, rig = _pattern_rig(gl_ctx, (64, 64))
    eye = geometry_for("plane").tile_center(KEY) + np.array([0.0, 0.0, 2500.0])
    e, n, u = np.eye(3)

    def shot(heading, pitch, roll):
        fwd, up = oriented(e, n, u, heading, pitch, roll)
        return rig.capture({"cam": rig.camera("cam", eye, fwd, up)}, [KEY], lambda p: UP)["cam"]

    for pitch in (-90.0, -60.0):
        base = shot(30.0, pitch, 0.0)
        for roll, k in ((90.0, 1), (-90.0, -1)):
            rolled = shot(30.0, pitch, roll)
            want_d = np.rot90(base.depth_m, k)
            rel = np.abs(rolled.depth_m / want_d - 1.0)
            assert np.median(rel) < 1e-5 and (rel < 1e-3).mean() > 0.99, (pitch, roll, rel.max())
            diff = np.abs(rolled.rgb.astype(int) - np.rot90(base.rgb, k).astype(int))
            assert diff.mean() < 1.0 and (diff.max(axis=2) <= 3).mean() > 0.98, (pitch, roll, diff.mean())
    rig.release()
    r.close()


def test_range_depth_is_planar_over_cos_of_the_angle_off_axis(gl_ctx):
    """Flat ground at 0 m, eye 1200 m up, oblique camera: each pixel's ray d (unit) meets
    the ground at range 1200 / -d_z; planar depth is range * (d . forward)."""
    r = TerrainRenderer(gl_ctx, SIZE)
    r.upload(plane_surface(lambda rows, cols: np.zeros_like(rows)), None)
    rig = SensorRig(r, [SensorSpec("cam", (80, 60), 50.0, frozenset({"depth_m", "range_m"}))])
    eye = geometry_for("plane").tile_center(KEY) + np.array([0.0, 0.0, 1200.0])
    fwd, up = oriented(*np.eye(3), 20.0, -55.0, 10.0)
    f = rig.capture({"cam": rig.camera("cam", eye, fwd, up)}, [KEY], lambda p: UP)["cam"]
    cam = f.camera
    h, w = f.range_m.shape
    fpx = h / 2 / math.tan(math.radians(50.0) / 2)
    x = (np.arange(w) + 0.5 - w / 2) / fpx
    y = (h / 2 - np.arange(h) - 0.5) / fpx
    rays = cam.forward + x[None, :, None] * cam.right + y[:, None, None] * cam.up
    rays /= np.linalg.norm(rays, axis=2, keepdims=True)
    want_range = 1200.0 / -rays[..., 2]
    assert (rays[..., 2] < 0).all() and np.isfinite(f.range_m).all()
    assert np.allclose(f.range_m, want_range, rtol=2e-3), np.abs(f.range_m / want_range - 1).max()
    cos_off = rays @ cam.forward
    assert np.allclose(f.depth_m, want_range * cos_off, rtol=2e-3)
    assert np.allclose(f.range_m, f.depth_m / cos_off, rtol=1e-6)
    assert f.range_m.max() > 1.2 * f.depth_m.max()  # corners: clearly longer than planar
    rig.release()
    r.close()


def test_range_from_planar_keeps_sky_and_the_centre():
    d = np.full((4, 6), 100.0, np.float32)
    d[0, 0] = np.inf
    rng = range_from_planar(d, 90.0)  # f = 2 px: corner pixel (2.5/2, 1.5/2)
    assert np.isinf(rng[0, 0]) and rng[2, 3] == pytest.approx(100.0 * math.sqrt(1 + 0.25**2 + 0.25**2))
    assert rng[3, 5] == pytest.approx(100.0 * math.sqrt(1 + 1.25**2 + 0.75**2), rel=1e-6)


def test_orientation_conventions_including_nadir_and_zenith():
    e, n, u = np.eye(3)
    fwd, up = oriented(e, n, u, 90.0, 0.0)
    assert np.allclose(fwd, e) and np.allclose(up, u)  # heading 90 = east
    fwd, up = oriented(e, n, u, 90.0, -90.0)
    assert np.allclose(fwd, -u) and np.allclose(up, e)  # nadir: image top toward the heading
    fwd, up = oriented(e, n, u, 0.0, 90.0)
    assert np.allclose(fwd, u) and np.allclose(up, -n)
    fwd, up = oriented(e, n, u, 0.0, 0.0, 30.0)  # roll right: camera up leans east (right)
    assert np.allclose(fwd, n) and np.allclose(up, [0.5, 0.0, math.sqrt(3) / 2])
    with pytest.raises(ValueError, match="pitch_deg"):
        oriented(e, n, u, 0.0, -90.5)


def test_frame_ids_increase_and_frames_are_stamped(gl_ctx):
    r, rig = _pattern_rig(gl_ctx, (16, 16))
    rig.specs["b"] = SensorSpec("b", (16, 16))
    rig.targets["b"] = type(rig.targets["cam"])(gl_ctx, (16, 16))
    eye = geometry_for("plane").tile_center(KEY) + np.array([0.0, 0.0, 2000.0])
    fwd, up = oriented(*np.eye(3), 0.0, -90.0)
    cams = {"cam": rig.camera("cam", eye, fwd, up), "b": rig.camera("b", eye, fwd, up)}
    got = [rig.capture(cams, [KEY], lambda p: UP, sim_time_s=0.5 * i) for i in range(3)]
    assert [[f.frame_id for f in g.values()] for g in got] == [[0, 0], [1, 1], [2, 2]]
    stamps = [g["cam"].timestamp_ns for g in got]
    assert stamps == sorted(stamps) and stamps[0] > 1.7e18  # wall clock, ns since 1970
    assert [g["b"].sim_time_s for g in got] == [0.0, 0.5, 1.0]
    rig.release()
    r.close()


def test_sensor_spec_validates():
    with pytest.raises(ValueError, match="unknown channels"):
        SensorSpec("x", channels=frozenset({"thermal"}))
    with pytest.raises(ValueError, match="size_px"):
        SensorSpec("x", (0, 10))


def test_agl_camera_before_the_first_capture_is_above_the_ground(plane_server_url):
    """Before any tile is loaded, alt_mode="agl" asks the server's ``best`` height (level
    16): the camera sits alt_m above that ground, never underground."""
    with SensorSession([SensorSpec("down", (32, 32), 60.0)], url=plane_server_url, cache_bytes=64 << 20) as s:
        assert s.flight.ground_m(30_000.0, -20_000.0) is None  # nothing loaded yet
        cam = s.camera("down", (30_000.0, -20_000.0, 40.0), heading_deg=0.0, pitch_deg=-90.0, alt_mode="agl")
        g = s.client.heights(np.array([[30_000.0, -20_000.0]]), mode="detailed", level=16)["height_m"][0]
        assert cam.position_m[2] == pytest.approx(g + 40.0, abs=1e-6)
        assert abs(g) > 100.0  # the old fallback (ground = 0) would have been far off here
        assert np.allclose(cam.forward, [0, 0, -1])


@pytest.mark.slow
def test_sensor_session_renders_several_cameras_from_one_selection(plane_server_url):
    specs = [SensorSpec("front", (80, 60), 60.0), SensorSpec("down", (48, 48), 90.0)]
    with SensorSession(specs, url=plane_server_url, cache_bytes=256 << 20) as s:
        pos = (30_000.0, -20_000.0, 9000.0)  # above every peak of this seed
        cams = {"front": s.camera("front", pos, heading_deg=45.0, pitch_deg=-15.0),
                "down": s.camera("down", pos, heading_deg=0.0, pitch_deg=-90.0)}
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
        assert abs(centre - (9000.0 - surface)) < 25.0, (centre, ground)
        n = down.normal[np.isfinite(down.depth_m)]
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=2e-3) and (n[:, 2] > 0).all()
        # Sky in the top rows of the front view (15 deg down, 60 deg fov: horizon at 0.25 of the height).
        assert np.isinf(front.depth_m[:5]).all() and np.isfinite(front.depth_m[-20:]).all()
        # GPU memory stays within the streamer's budget.
        assert 0 < s.renderer.gpu_bytes <= 256 << 20
