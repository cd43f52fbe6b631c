"""Camera matrices, frustum planes, screen-space error and far-from-origin precision."""

import math

import numpy as np
import pytest

from runtime.geometry import geodetic_to_ecef, geometry_for
from runtime.lod.camera import Camera
from runtime.tiles import T, TileKey


def test_look_at_projects_target_to_viewport_centre():
    cam = Camera.look_at([10.0, 20.0, 300.0], [500.0, 20.0, 0.0], [0, 0, 1])
    x, y, z = cam.project_px([[500.0, 20.0, 0.0]])[0]
    assert (x, y) == pytest.approx((640.0, 360.0), abs=1e-9)
    assert -1 < z < 1


def test_view_rotation_is_orthonormal_without_translation():
    cam = Camera.look_at([1e7, -3e6, 5e3], [1e7 + 1, -3e6 + 2, 4e3], [0, 0, 1])
    v = cam.view_rotation()
    assert np.allclose(v[:3, :3] @ v[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.all(v[:3, 3] == 0) and np.all(v[3] == [0, 0, 0, 1])
    assert np.allclose(v[:3, :3] @ cam.forward, [0, 0, -1])


def test_projection_maps_near_and_far_to_clip_limits():
    cam = Camera.look_at([0, 0, 0], [0, 1, 0], [0, 0, 1], near_m=2.0, far_m=5000.0)
    p = cam.projection()
    for dist, ndc in ((2.0, -1.0), (5000.0, 1.0)):
        c = p @ np.array([0, 0, -dist, 1.0])
        assert c[2] / c[3] == pytest.approx(ndc)


def test_frustum_planes_classify_points():
    cam = Camera.look_at([0, 0, 0], [0, 100, 0], [0, 0, 1], viewport_px=(1920, 1080), near_m=1, far_m=1000)
    planes = cam.frustum_planes()
    assert np.allclose(np.linalg.norm(planes[:, :3], axis=1), 1.0)

    def inside(p):
        return bool(np.all(planes[:, :3] @ np.asarray(p, float) + planes[:, 3] >= 0))

    half_v = math.tan(math.radians(30))
    half_h = half_v * 1920 / 1080
    assert inside([0, 100, 0])
    assert inside([0.99 * half_h * 100, 100, 0]) and not inside([1.01 * half_h * 100, 100, 0])
    assert inside([0, 100, 0.99 * half_v * 100]) and not inside([0, 100, 1.01 * half_v * 100])
    assert not inside([0, 0.5, 0]) and not inside([0, 1001, 0]) and not inside([0, -50, 0])


def test_sse_formula():
    cam = Camera.look_at([0, 0, 0], [0, 1, 0], [0, 0, 1], viewport_px=(1920, 1080))
    # 10 m error at 1 km, 1080 px, 60 deg: 10 * 1080 / (1000 * 2 tan 30 deg) = 9.353 px
    assert cam.sse_px(10.0, 1000.0) == pytest.approx(10 * 1080 / (1000 * 2 * math.tan(math.radians(30))))
    assert cam.sse_px(10.0, 1000.0) == pytest.approx(9.3531, rel=1e-4)
    assert np.allclose(cam.sse_px(np.array([1.0, 2.0]), 1000.0), [0.93531, 1.87061], rtol=1e-4)


def test_invalid_camera_says_what_was_expected():
    with pytest.raises(ValueError, match="forward must be a finite non-zero"):
        Camera([0, 0, 0], [0, 0, 0], [0, 0, 1])
    with pytest.raises(ValueError, match="up must not be parallel"):
        Camera([0, 0, 0], [0, 0, 1], [0, 0, 2])
    with pytest.raises(ValueError, match="near_m < far_m"):
        Camera([0, 0, 0], [0, 1, 0], [0, 0, 1], near_m=10, far_m=5)


@pytest.mark.parametrize("world", ["plane", "earth"])
def test_no_jitter_10000_km_from_the_origin(world):
    """A street-level vertex 10,000 km out, drawn the way the viewer draws it (float32
    offset from a float64 tile centre, camera-relative float64 matrix cast to float32),
    lands within 0.01 px of its exact float64 projection; naive float32 world coordinates
    miss by many pixels."""
    geo = geometry_for(world)
    level = 18  # ~0.3 m samples
    if world == "plane":
        ground = np.array([1.0e7, -1.0e6, 120.0])  # ~10,050 km from the origin
    else:
        ground = geodetic_to_ecef(89.9, 0.1, 120.0)[0]  # ECEF: ~6,378 km from the origin
    r, c, _ = geo.world_to_sample(level, ground[None])
    key = TileKey(level, int(c[0] // T), int(r[0] // T))
    center = geo.tile_center(key)
    rows = r[0] + np.array([0.0, 0.5, 1.0, 3.25])
    cols = c[0] + np.array([0.0, 1.5, -2.0, 0.75])
    verts = geo.sample_to_world(level, rows, cols, 120.0)
    up = geo.up(ground[None])[0]
    cam = Camera.look_at(ground + 2.0 * up + [0.5, 0.3, 0.0], verts[0], up)
    exact = cam.project_px(verts)

    # Viewer path: float32 vertices relative to the centre, float32 (centre - camera) offset,
    # float32 camera-relative view-projection.
    vp = (cam.projection() @ cam.view_rotation()).astype(np.float32)
    offset = (center - cam.position_m).astype(np.float32)
    rel = (verts - center).astype(np.float32) + offset
    clip = np.c_[rel, np.ones(len(rel), np.float32)] @ vp.T
    ndc = clip[:, :3] / clip[:, 3:4]
    w, h = cam.viewport_px
    px = np.stack([(ndc[:, 0] + 1) * 0.5 * w, (1 - ndc[:, 1]) * 0.5 * h], axis=1)
    assert np.abs(px - exact[:, :2]).max() < 0.05

    # Naive: float32 world positions and a float32 translation lose metres out here.
    naive_rel = verts.astype(np.float32) - cam.position_m.astype(np.float32)
    clip = np.c_[naive_rel, np.ones(len(rel), np.float32)] @ vp.T
    naive_px = (clip[:, 0] / clip[:, 3] + 1) * 0.5 * w
    assert np.abs(naive_px - exact[:, 0]).max() > 1.0
