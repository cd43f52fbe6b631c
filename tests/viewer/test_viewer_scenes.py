"""Known scenes through the full renderer (EGL/llvmpipe): water, geomorph, sensors, HUD, GL errors."""

import math

import numpy as np
import pytest
from conftest import full_grid_tin

from runtime.lod.camera import Camera
from runtime.geometry import geometry_for
from runtime.tin import tin_surface, tin_to_grid, with_morph
from runtime.tiles import T, TileKey, spacing_m
from viewer.hud import Hud, HudStats, hud_lines
from viewer.renderer import Lighting, MorphOptions, TerrainRenderer
from viewer.sensors import SensorRig, SensorSpec

KEY = TileKey(10, 0, 0)  # plane: 0..19.6 km east, 0..-19.6 km north
SIZE = (128, 96)
UP = np.array([0.0, 0.0, 1.0])


def _surface(fn, key=KEY, step=4, skirt=50.0):
    grid_rc, faces, edges = full_grid_tin(step)
    return tin_surface("plane", key, grid_rc, fn(grid_rc[:, 0], grid_rc[:, 1]), faces, edges, skirt)


def _down_camera(key, height_m, size=SIZE, fov_deg=40.0, dx=0.0, dy=0.0):
    c = geometry_for("plane").tile_center(key)
    eye = np.array([c[0] + dx, c[1] + dy, height_m])
    return Camera.look_at(eye, eye - [0, 0, 1], [0, 1, 0], fov_y_rad=math.radians(fov_deg), viewport_px=size)


def test_sea_floor_is_drawn_as_water_at_sea_level(gl_ctx):
    r = TerrainRenderer(gl_ctx, SIZE)
    r.upload(_surface(lambda rows, cols: np.full_like(rows, -200.0)), None)
    r.render(_down_camera(KEY, 1000.0), [KEY], UP)
    depth, rgb = r.read_depth_m(), r.read_rgb().astype(int)
    assert np.allclose(depth, 1000.0, rtol=1e-3), (depth.min(), depth.max())  # the sea surface, not -200 m
    assert gl_ctx.error == "GL_NO_ERROR"
    mean = rgb.reshape(-1, 3).mean(0)
    assert mean[2] > mean[0] + 15  # water is blue
    r.close()
    dry = TerrainRenderer(gl_ctx, SIZE, Lighting(water=False))
    dry.upload(_surface(lambda rows, cols: np.full_like(rows, -200.0)), None)
    dry.render(_down_camera(KEY, 1000.0), [KEY], UP)
    assert np.allclose(dry.read_depth_m(), 1200.0, rtol=1e-3)  # without water: the sea floor
    dry.close()


def test_coast_splits_land_and_water_where_height_crosses_zero(gl_ctx):
    r = TerrainRenderer(gl_ctx, SIZE)
    # West half below sea level, east half land at +40 m (a cliff at column 128).
    r.upload(_surface(lambda rows, cols: np.where(cols < 128, -60.0, 40.0)), None)
    r.render(_down_camera(KEY, 2000.0, fov_deg=60.0), [KEY], UP)
    depth = r.read_depth_m()
    row = depth[SIZE[1] // 2]
    assert np.allclose(row[:20], 2000.0, rtol=1e-3) and np.allclose(row[-20:], 1960.0, rtol=1e-3)
    r.close()


def _morph_pair():
    """A child tile whose own surface is flat at 0 m and whose parent is flat at 100 m."""
    child = TileKey(11, 0, 0)
    parent_grid = np.full((T + 1, T + 1), 100.0, np.float32)
    s = with_morph("plane", _surface(lambda rows, cols: np.zeros_like(rows), key=child), parent_grid)
    return child, s


def test_geomorph_reaches_the_parent_surface_at_the_switch_distance(gl_ctx):
    child, s = _morph_pair()
    assert np.allclose(s.morph_dh_m, 100.0)
    target = 2.0
    r = TerrainRenderer(gl_ctx, SIZE, morph=MorphOptions(error_target_px=target, start_fraction=0.5))
    k = SIZE[1] / (2 * math.tan(math.radians(40) / 2))
    parent_ge = 20.0
    end = parent_ge * k / target  # selection draws the parent beyond this distance
    r.upload(s, None, parent_ge_m=parent_ge)
    # Far: every vertex beyond ``end`` -> fully on the parent surface (100 m).
    far = end * 1.3
    r.render(_down_camera(child, far + 100.0), [child], UP)
    assert np.allclose(r.read_depth_m()[SIZE[1] // 2, SIZE[0] // 2], far, rtol=2e-3)
    # Near: closer than the morph start -> the child's own surface (0 m).
    near = end * 0.3
    r.render(_down_camera(child, near), [child], UP)
    assert np.allclose(r.read_depth_m()[SIZE[1] // 2, SIZE[0] // 2], near, rtol=2e-3)
    # Off: own surface at any distance.
    off = TerrainRenderer(gl_ctx, SIZE, morph=MorphOptions(enabled=False))
    off.upload(s, None, parent_ge_m=parent_ge)
    off.render(_down_camera(child, far + 100.0), [child], UP)
    assert np.allclose(off.read_depth_m()[SIZE[1] // 2, SIZE[0] // 2], far + 100.0, rtol=2e-3)
    assert gl_ctx.error == "GL_NO_ERROR"
    r.close()
    off.close()


def test_sensors_read_back_rgb_depth_and_normals_matching_the_geometry(gl_ctx):
    # A plane tilted east-up: h = 0.25 * east metres; normal (-0.25, 0, 1) / |.|
    s = spacing_m(KEY.level)
    r = TerrainRenderer(gl_ctx, SIZE)
    r.upload(_surface(lambda rows, cols: 0.25 * cols * s), None)
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
    r.upload(_surface(lambda rows, cols: 80.0 * np.sin(rows / 11.0) * np.cos(cols / 13.0)), None)
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


def test_neighbours_agree_on_their_shared_edge_normals():
    fn = lambda r, c, x0: 300.0 * np.sin((c + x0) / 17.0) * np.cos(r / 23.0)  # noqa: E731
    a = _surface(lambda r, c: fn(r, c, 0.0), key=TileKey(10, 0, 0), step=2)
    b = _surface(lambda r, c: fn(r, c, T), key=TileKey(10, 1, 0), step=2)
    ea = a.grid_rc[: a.skirt_start, 1] == T
    eb = b.grid_rc[: b.skirt_start, 1] == 0
    na, nb = a.normals[: a.skirt_start][ea], b.normals[: b.skirt_start][eb]
    ra, rb = a.grid_rc[: a.skirt_start][ea, 0], b.grid_rc[: b.skirt_start][eb, 0]
    na, nb = na[np.argsort(ra)], nb[np.argsort(rb)]
    assert len(na) == len(nb) == T // 2 + 1
    assert np.abs(na - nb).max() < 1e-5


def test_tin_to_grid_reproduces_a_planar_surface_exactly():
    grid_rc, faces, _ = full_grid_tin(32)
    h = 3.0 * grid_rc[:, 0] - 2.0 * grid_rc[:, 1] + 7.0
    g = tin_to_grid(grid_rc, h, faces)
    rr, cc = np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij")
    assert np.allclose(g, 3.0 * rr - 2.0 * cc + 7.0, atol=1e-3)


def test_hud_draws_text_over_a_panel(gl_ctx):
    r = TerrainRenderer(gl_ctx, (320, 120))
    r.render(_down_camera(KEY, 1000.0, size=(320, 120)), [], UP)
    sky = r.read_rgb().astype(int)
    lines = hud_lines(HudStats(fps=61.5, frame_ms=16.3, tiles_drawn=12, tiles_loading=3, triangles=123456,
                               level_under_camera=14, altitude_m=1234.0, agl_m=300.0, position="x 1.0 m  y 2.0 m"))
    assert "61.5 fps" in lines[0] and "3 loading" in lines[1] and "14" in lines[2] and "AGL 300 m" in lines[3]
    hud = Hud(gl_ctx)
    r.fbo.use()
    hud.draw(lines, (320, 120))
    img = r.read_rgb().astype(int)
    assert gl_ctx.error == "GL_NO_ERROR"
    panel = img[6:60, 6:150]
    assert (panel.sum(2) > 600).mean() > 0.03  # white glyphs
    assert (panel.sum(2) < sky[6:60, 6:150].sum(2) - 60).mean() > 0.3  # darkened panel
    bottom = int(hud.quads(lines)[0][:, 1].max()) + 1
    assert np.array_equal(img[bottom:], sky[bottom:])  # below the panel untouched
    hud.release()
    r.close()


def test_vertex_log_depth_and_culling_paths_match_the_exact_path_on_a_flat_tile(gl_ctx):
    s = _surface(lambda rows, cols: np.full_like(rows, 100.0))
    cam = _down_camera(KEY, 1000.0)
    out = []
    for kw in ({}, {"fragment_depth": False}, {"fragment_depth": False, "cull_backfaces": True}):
        r = TerrainRenderer(gl_ctx, SIZE, **kw)
        r.upload(s, None)
        r.render(cam, [KEY], UP)
        out.append((r.read_rgb().astype(int), r.read_depth_m()))
        assert gl_ctx.error == "GL_NO_ERROR"
        r.close()
    for rgb, depth in out[1:]:
        assert np.allclose(depth, 900.0, rtol=2e-3)
        assert np.abs(rgb - out[0][0]).max() <= 2


def test_earth_sea_is_drawn_on_the_ellipsoid(gl_ctx):
    from runtime.geometry import east_north_up, ecef_to_geodetic, geodetic_to_ecef

    key = TileKey(12, 4100, 1000)  # earth, ~0.04 deg tile in the northern hemisphere
    grid_rc, faces, edges = full_grid_tin(4)
    s = tin_surface("earth", key, grid_rc, np.full(len(grid_rc), -350.0), faces, edges, 20.0)
    geo = geometry_for("earth")
    lon, lat, _ = (float(v[0]) for v in ecef_to_geodetic(geo.tile_center(key)[None]))
    eye = geodetic_to_ecef(np.array([lon]), np.array([lat]), np.array([800.0]))[0]
    east, north, up = east_north_up(lon, lat)
    cam = Camera.look_at(eye, eye - up, north, fov_y_rad=math.radians(20), viewport_px=SIZE)
    r = TerrainRenderer(gl_ctx, SIZE)
    r.upload(s, None)
    r.render(cam, [key], up)
    depth = r.read_depth_m()
    assert np.isfinite(depth).all()
    assert abs(float(depth[SIZE[1] // 2, SIZE[0] // 2]) - 800.0) < 1.0  # the ellipsoid, not -350 m
    rgb = r.read_rgb().reshape(-1, 3).mean(0)
    assert rgb[2] > rgb[0] + 15
    r.close()


def test_chunk_culling_skips_blocks_outside_the_view_without_changing_pixels(gl_ctx):
    child, s = _morph_pair()
    c = geometry_for("plane").tile_center(child)
    eye = np.array([c[0] - 3000.0, c[1] - 2000.0, 600.0])
    cam = Camera.look_at(eye, eye + [1.0, 0.3, -0.2], [0, 0, 1], fov_y_rad=math.radians(50), viewport_px=SIZE)
    out = []
    for culling in (False, True):
        r = TerrainRenderer(gl_ctx, SIZE, chunk_culling=culling)
        r.upload(s, None, parent_ge_m=15.0)
        r.render(cam, [child], UP)
        out.append((r.read_rgb(), r.read_depth_m(), r.triangles_drawn))
        assert gl_ctx.error == "GL_NO_ERROR"
        r.close()
    (rgb0, d0, n0), (rgb1, d1, n1) = out
    assert n1 < 0.8 * n0  # blocks outside this corner view are skipped
    assert np.isfinite(d0).mean() > 0.2
    assert np.array_equal(rgb0, rgb1) and np.array_equal(d0, d1)


def test_stitched_edge_normals_are_shared_and_match_the_surface():
    from runtime.tin import stitch_edge_normals

    fn = lambda r, c, x0: 300.0 * np.sin((c + x0) / 17.0) * np.cos(r / 23.0)  # noqa: E731
    a = _surface(lambda r, c: fn(r, c, 0.0), key=TileKey(10, 0, 0), step=1)
    b = _surface(lambda r, c: fn(r, c, T), key=TileKey(10, 1, 0), step=1)
    assert stitch_edge_normals("plane", a, _surface(lambda r, c: fn(r, c, 0.0), key=TileKey(10, 5, 5))) is None
    a2, b2 = stitch_edge_normals("plane", a, b)
    ea, eb = a2.edges["east"][0][1:-1], b2.edges["west"][0][1:-1]
    assert np.abs(a2.normals[ea] - b2.normals[eb]).max() < 1e-6
    # Analytic normal of h(east, north) at the shared edge (column 256 of tile a).
    s = spacing_m(10)
    rows = a2.grid_rc[ea, 0]
    dh_dc = 300.0 / 17.0 * np.cos(T / 17.0) * np.cos(rows / 23.0)
    dh_dr = -300.0 / 23.0 * np.sin(T / 17.0) * np.sin(rows / 23.0)
    n = np.stack([-dh_dc / s, dh_dr / s, np.ones_like(rows)], 1)  # north = -row
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    err_stitched = np.degrees(np.arccos(np.clip((a2.normals[ea] * n).sum(1), -1, 1))).mean()
    err_zero_cross = np.degrees(np.arccos(np.clip((a.normals[ea] * n).sum(1), -1, 1))).mean()
    assert err_stitched < 1.0 and err_stitched < 0.2 * err_zero_cross, (err_stitched, err_zero_cross)


def test_morph_normals_on_the_parents_border_are_the_parents_edge_normals():
    fn = lambda r, c: 200.0 * np.sin(c / 13.0) * np.cos(r / 29.0)  # noqa: E731
    parent = _surface(fn, key=TileKey(10, 0, 0), step=1)
    grid = tin_to_grid(parent.grid_rc[: parent.skirt_start], parent.height_m[: parent.skirt_start],
                       parent.faces[: len(parent.faces) - 8 * T])
    child = with_morph("plane", _surface(lambda r, c: np.zeros_like(r), key=TileKey(11, 1, 0), step=2),
                       grid, parent)
    # Child (11, 1, 0) is the parent's NE quarter: its east edge (col T) lies on the parent's east edge.
    ce = np.nonzero(child.grid_rc[: child.skirt_start, 1] == T)[0]
    pe, _, _ = parent.edges["east"]
    rows_in_parent = child.grid_rc[ce, 0] / 2.0
    even = np.isclose(rows_in_parent % 1.0, 0.0)
    lookup = {float(r): i for r, i in zip(parent.grid_rc[pe, 0], pe, strict=True)}
    want = parent.normals[[lookup[float(r)] for r in rows_in_parent[even]]]
    assert np.abs(child.morph_normals[ce[even]] - want).max() < 1e-5
