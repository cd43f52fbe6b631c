"""The terrain renderer against known scenes (EGL, llvmpipe on CPU): depth, lighting, water,
geomorph, culling paths, camera-relative precision, triangle order, shader sources."""

import math
from collections import deque

import numpy as np
from conftest import down_camera, full_grid_tin, plane_surface

from runtime.geometry import geometry_for
from runtime.lod.camera import Camera
from runtime.tiles import T, TileKey
from runtime.tin import tin_surface, with_morph
from viewer.renderer import Lighting, MorphOptions, TerrainRenderer, chunk_layout, shader_source

KEY = TileKey(10, 0, 0)  # plane, 76.4 m samples: the tile spans 0..19.6 km east, 0..-19.6 km north
SIZE = (160, 120)
SMALL = (128, 96)
UP = np.array([0.0, 0.0, 1.0])


def _renderer(ctx, lighting=Lighting()):
    return TerrainRenderer(ctx, SIZE, lighting)


def test_flat_tile_seen_from_above_has_flat_depth_and_uniform_colour(gl_ctx):
    r = _renderer(gl_ctx)
    s = plane_surface(lambda rows, cols: np.full_like(rows, 100.0))
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
    s = plane_surface(lambda rows, cols: 2000.0 * np.maximum(0.0, 1.0 - np.abs(cols - 128) / 64.0))
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
    s = plane_surface(lambda rows, cols: 50.0 * np.sin(rows / 9.0) * np.cos(cols / 7.0))
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
        s = plane_surface(lambda rows, cols: 30.0 * np.sin(rows / 5.0) + 20.0 * np.cos(cols / 3.0), key)
        r.upload(s, None)
        c = geometry_for("plane").tile_center(key)
        eye = np.array([c[0] + 123.25, c[1] - 456.5, 300.0])
        cam = Camera.look_at(eye, eye + [0.3, 1, -0.25], [0, 0, 1], viewport_px=SIZE)
        r.render(cam, [key], np.array([0.0, 0.0, 1.0]))
        imgs.append(r.read_rgb().astype(int))
        r.close()
    assert np.abs(imgs[0] - imgs[1]).max() <= 2


def _sea_floor(rows, cols):
    """-200 m, gently uneven like every generated sea floor (an exactly flat floor below -10 m
    is the lake rule's signature: a lake below sea level, ``viewer.renderer.water_level``)."""
    return -200.0 + 0.01 * rows + 0.003 * cols


def test_sea_floor_is_drawn_as_water_at_sea_level(gl_ctx):
    r = TerrainRenderer(gl_ctx, SMALL)
    r.upload(plane_surface(_sea_floor), None)
    r.render(down_camera(KEY, 1000.0, SMALL), [KEY], UP)
    depth, rgb = r.read_depth_m(), r.read_rgb().astype(int)
    assert np.allclose(depth, 1000.0, rtol=1e-3), (depth.min(), depth.max())  # the sea surface, not -200 m
    assert gl_ctx.error == "GL_NO_ERROR"
    mean = rgb.reshape(-1, 3).mean(0)
    assert mean[2] > mean[0] + 15  # water is blue
    r.close()
    dry = TerrainRenderer(gl_ctx, SMALL, Lighting(water=False))
    dry.upload(plane_surface(_sea_floor), None)
    dry.render(down_camera(KEY, 1000.0, SMALL), [KEY], UP)
    assert np.allclose(dry.read_depth_m(), 1200.0, rtol=3e-3)  # without water: the sea floor
    dry.close()


def test_coast_splits_land_and_water_where_height_crosses_zero(gl_ctx):
    r = TerrainRenderer(gl_ctx, SMALL)
    # West half below sea level, east half land at +40 m (a cliff at column 128).
    r.upload(plane_surface(lambda rows, cols: np.where(cols < 128, _sea_floor(rows, cols) + 140.0, 40.0)), None)
    r.render(down_camera(KEY, 2000.0, SMALL, fov_deg=60.0), [KEY], UP)
    depth = r.read_depth_m()
    row = depth[SMALL[1] // 2]
    assert np.allclose(row[:20], 2000.0, rtol=1e-3) and np.allclose(row[-20:], 1960.0, rtol=1e-3)
    r.close()


def _morph_pair():
    """A child tile whose own surface is flat at 0 m and whose parent is flat at 100 m."""
    child = TileKey(11, 0, 0)
    parent_grid = np.full((T + 1, T + 1), 100.0, np.float32)
    s = with_morph("plane", plane_surface(lambda rows, cols: np.zeros_like(rows), key=child), parent_grid)
    return child, s


def test_geomorph_reaches_the_parent_surface_at_the_switch_distance(gl_ctx):
    child, s = _morph_pair()
    assert np.allclose(s.morph_dh_m, 100.0)
    target = 2.0
    r = TerrainRenderer(gl_ctx, SMALL, morph=MorphOptions(error_target_px=target, start_fraction=0.5))
    k = SMALL[1] / (2 * math.tan(math.radians(40) / 2))
    parent_ge = 20.0
    end = parent_ge * k / target  # selection draws the parent beyond this distance
    r.upload(s, None, parent_ge_m=parent_ge)
    # Far: every vertex beyond ``end`` -> fully on the parent surface (100 m).
    far = end * 1.3
    r.render(down_camera(child, far + 100.0, SMALL), [child], UP)
    assert np.allclose(r.read_depth_m()[SMALL[1] // 2, SMALL[0] // 2], far, rtol=2e-3)
    # Near: closer than the morph start -> the child's own surface (0 m).
    near = end * 0.3
    r.render(down_camera(child, near, SMALL), [child], UP)
    assert np.allclose(r.read_depth_m()[SMALL[1] // 2, SMALL[0] // 2], near, rtol=2e-3)
    # Off: own surface at any distance.
    off = TerrainRenderer(gl_ctx, SMALL, morph=MorphOptions(enabled=False))
    off.upload(s, None, parent_ge_m=parent_ge)
    off.render(down_camera(child, far + 100.0, SMALL), [child], UP)
    assert np.allclose(off.read_depth_m()[SMALL[1] // 2, SMALL[0] // 2], far + 100.0, rtol=2e-3)
    assert gl_ctx.error == "GL_NO_ERROR"
    r.close()
    off.close()


def test_vertex_log_depth_and_culling_paths_match_the_exact_path_on_a_flat_tile(gl_ctx):
    s = plane_surface(lambda rows, cols: np.full_like(rows, 100.0))
    cam = down_camera(KEY, 1000.0, SMALL)
    out = []
    for kw in ({}, {"fragment_depth": False}, {"fragment_depth": False, "cull_backfaces": True}):
        r = TerrainRenderer(gl_ctx, SMALL, **kw)
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
    s = tin_surface("earth", key, grid_rc, _sea_floor(grid_rc[:, 0], grid_rc[:, 1]) - 150.0, faces, edges, 20.0)
    geo = geometry_for("earth")
    lon, lat, _ = (float(v[0]) for v in ecef_to_geodetic(geo.tile_center(key)[None]))
    eye = geodetic_to_ecef(np.array([lon]), np.array([lat]), np.array([800.0]))[0]
    east, north, up = east_north_up(lon, lat)
    cam = Camera.look_at(eye, eye - up, north, fov_y_rad=math.radians(20), viewport_px=SMALL)
    r = TerrainRenderer(gl_ctx, SMALL)
    r.upload(s, None)
    r.render(cam, [key], up)
    depth = r.read_depth_m()
    assert np.isfinite(depth).all()
    assert abs(float(depth[SMALL[1] // 2, SMALL[0] // 2]) - 800.0) < 1.0  # the ellipsoid, not -350 m
    rgb = r.read_rgb().reshape(-1, 3).mean(0)
    assert rgb[2] > rgb[0] + 15
    r.close()


def test_chunk_culling_skips_blocks_outside_the_view_without_changing_pixels(gl_ctx):
    child, s = _morph_pair()
    c = geometry_for("plane").tile_center(child)
    eye = np.array([c[0] - 3000.0, c[1] - 2000.0, 600.0])
    cam = Camera.look_at(eye, eye + [1.0, 0.3, -0.2], [0, 0, 1], fov_y_rad=math.radians(50), viewport_px=SMALL)
    out = []
    for culling in (False, True):
        r = TerrainRenderer(gl_ctx, SMALL, chunk_culling=culling)
        r.upload(s, None, parent_ge_m=15.0)
        r.render(cam, [child], UP)
        out.append((r.read_rgb(), r.read_depth_m(), r.triangles_drawn))
        assert gl_ctx.error == "GL_NO_ERROR"
        r.close()
    (rgb0, d0, n0), (rgb1, d1, n1) = out
    assert n1 < 0.8 * n0  # blocks outside this corner view are skipped
    assert np.isfinite(d0).mean() > 0.2
    assert np.array_equal(rgb0, rgb1) and np.array_equal(d0, d1)


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


def test_chunk_layout_reuses_the_face_order_and_boxes_follow_the_morph_targets():
    from dataclasses import replace

    from viewer.renderer import CHUNKS

    grid_rc, faces, edges = full_grid_tin(8)
    h = 100.0 * np.sin(grid_rc[:, 0] / 17.0) * np.cos(grid_rc[:, 1] / 11.0)
    s = tin_surface("plane", TileKey(12, 3, -4), grid_rc, h, faces, edges, skirt_depth_m=5.0)
    out, starts, lo, hi = chunk_layout(s)
    # A re-upload (stitched normals, morph targets 40 m down): same faces array, same order;
    # the boxes' floors drop by the 40 m the morphed vertices can reach, their tops stay.
    dh = np.full(len(s.vertices), -40.0, np.float32)
    again = replace(s, normals=-s.normals, morph_dh_m=dh, morph_normals=s.normals)
    out2, starts2, lo2, hi2 = chunk_layout(again)
    assert np.array_equal(out2, out) and np.array_equal(starts2, starts)
    assert np.allclose(lo2[:, 2], lo[:, 2] - 40.0, atol=1e-3) and np.array_equal(hi2, hi)
    # Every face's vertices (own and morphed) lie in its block's box.
    for b in range(CHUNKS * CHUNKS):
        v = again.vertices[out2[starts2[b]:starts2[b + 1]].ravel()]
        assert (v >= lo2[b] - 1e-3).all() and (v <= hi2[b] + 1e-3).all()
        assert (v[:, 2] - 40.0 >= lo2[b, 2] - 1e-3).all()
    # Another faces array (another tile's TIN) gets its own order.
    rng = np.random.default_rng(1)
    other = replace(s, faces=s.faces[rng.permutation(len(s.faces))])
    assert sorted(map(tuple, chunk_layout(other)[0].tolist())) == sorted(map(tuple, out.tolist()))


def test_chunk_boxes_are_the_numpy_min_max_of_every_position_a_vertex_can_take():
    from dataclasses import replace

    from viewer.renderer import CHUNKS

    grid_rc, faces, edges = full_grid_tin(4)
    h = 60.0 * np.sin(grid_rc[:, 0] / 17.0) * np.cos(grid_rc[:, 1] / 11.0) - 20.0  # partly below sea level
    s = tin_surface("earth", TileKey(9, 270, 180), grid_rc, h, faces, edges, skirt_depth_m=5.0)
    dh = np.random.default_rng(2).normal(0.0, 30.0, len(s.vertices)).astype(np.float32)
    s = replace(s, morph_dh_m=dh, morph_normals=s.normals)
    out, starts, lo, hi = chunk_layout(s)
    pos, up, hh = s.vertices, s.up, s.height_m
    cands = [pos, pos + up * dh[:, None], pos + up * np.maximum(-hh, 0.0)[:, None],
             pos + up * (dh + np.maximum(-(hh + dh), 0.0))[:, None]]
    vlo, vhi = np.minimum.reduce(cands), np.maximum.reduce(cands)
    for b in range(CHUNKS * CHUNKS):
        v = out[starts[b]:starts[b + 1]].ravel()
        assert len(v)
        assert np.array_equal(lo[b], vlo[v].min(axis=0)) and np.array_equal(hi[b], vhi[v].max(axis=0))


def test_shader_sources_resolve_includes_and_put_defines_after_the_version():
    fs = shader_source("terrain.frag", ("VERTEX_LOGDEPTH",))
    assert fs.splitlines()[:2] == ["#version 330", "#define VERTEX_LOGDEPTH"]
    assert "#include" not in fs and fs.count("vec3 sky_colour(") == 1
    sky = shader_source("sky.frag")
    assert sky.splitlines()[0] == "#version 330" and "#define" not in sky and sky.count("vec3 sky_colour(") == 1


def _lake_layer(west_water: bool = True):
    """A feature layer whose classes are water (0) west of column 128, grassland (4) east."""
    from runtime.featurelayer import FeatureLayer

    cols = np.arange(T + 1)[None, :].repeat(T + 1, axis=0)
    classes = np.where(cols < 128, 0, 4).astype(np.uint8)
    return FeatureLayer(classes, np.zeros((0, 5), np.float32), np.zeros((0, 3), np.float32), None, None)


def test_lake_above_sea_level_is_drawn_as_water_where_the_classes_say_so(gl_ctx):
    """A flat lake at 372 m (Geneva): water-coloured, segmented as water, at its own height
    (not lifted or sunk); the same tile without the layer is ground (the wire has no other sign)."""
    from viewer.sensors import SensorRig, SensorSpec

    r = TerrainRenderer(gl_ctx, SMALL)
    s = plane_surface(lambda rows, cols: np.full_like(rows, 372.0))
    r.upload(s, None, layer=_lake_layer())
    rig = SensorRig(r, [SensorSpec("down", SMALL, 40.0, frozenset({"rgb", "depth_m", "segmentation"}))])
    c = geometry_for("plane").tile_center(KEY)
    f = rig.capture({"down": rig.camera("down", np.array([c[0], c[1], 2372.0]), [0, 0, -1], [0, 1, 0])},
                    [KEY], lambda p: UP)["down"]
    w = SMALL[0]
    assert np.allclose(f.depth_m, 2000.0, rtol=1e-3)  # the lake's surface, both halves
    west, east = f.rgb[:, : w // 2 - 4].reshape(-1, 3).mean(0), f.rgb[:, w // 2 + 4 :].reshape(-1, 3).mean(0)
    assert west[2] > west[0] + 15 and west[2] > east[2] + 10, (west, east)  # water is blue
    assert (f.segmentation[:, : w // 2 - 4] == 0).all() and (f.segmentation[:, w // 2 + 4 :] == 4).all()
    r.upload(s, None)  # without the layer: no water above sea level
    r.render(down_camera(KEY, 2372.0, SMALL), [KEY], UP)
    plain = r.read_rgb().astype(int)[:, : w // 2 - 4].reshape(-1, 3).mean(0)
    assert plain[2] < plain[0] + 5, plain
    rig.release()
    r.close()


def test_lake_below_sea_level_is_water_at_its_surface_not_at_zero(gl_ctx):
    """The Caspian (-32 m, flat): drawn as water at -32 m, not lifted to sea level; the water
    level comes from the flat surface (renderer.water_level), with or without the classes (a
    tile below the layer's levels has none); land east of it stays land; an uneven sea floor
    keeps the sea at 0 m."""
    from viewer.renderer import water_level

    s = plane_surface(lambda rows, cols: np.where(cols < 128, -32.0, 10.0 + 0.0 * cols))
    layer = _lake_layer()
    assert water_level(s, layer.classes) == -32.0 and water_level(s, None) == -32.0
    assert water_level(plane_surface(_sea_floor), None) == 0.0
    for lay in (layer, None):
        r = TerrainRenderer(gl_ctx, SMALL)
        r.upload(s, None, layer=lay)
        r.render(down_camera(KEY, 2000.0, SMALL, fov_deg=60.0), [KEY], UP)
        row = r.read_depth_m()[SMALL[1] // 2]
        assert np.allclose(row[:20], 2032.0, rtol=1e-3) and np.allclose(row[-20:], 1990.0, rtol=1e-3), row
        rgb = r.read_rgb().astype(int)
        west, east = rgb[:, :20].reshape(-1, 3).mean(0), rgb[:, -20:].reshape(-1, 3).mean(0)
        assert west[2] > west[0] + 15 and east[2] < east[0] + 5, (west, east)
        r.close()


def test_class_water_above_sea_level_is_drawn_only_where_it_is_flat(gl_ctx):
    """The plane's classes call some coastal land water at many heights: that stays ground
    (``class_lakes`` False); a lake's few exact heights are water."""
    from viewer.renderer import class_lakes

    layer = _lake_layer()
    assert class_lakes(plane_surface(lambda rows, cols: np.full_like(rows, 372.0)), layer.classes)
    slope = plane_surface(lambda rows, cols: 5.0 + 0.1 * rows + 0.01 * cols)
    assert not class_lakes(slope, layer.classes) and not class_lakes(slope, None)
    r = TerrainRenderer(gl_ctx, SMALL)
    r.upload(slope, None, layer=layer)
    r.render(down_camera(KEY, 2000.0, SMALL), [KEY], UP)
    west = r.read_rgb().astype(int)[:, : SMALL[0] // 2 - 4].reshape(-1, 3).mean(0)
    assert west[2] < west[0] + 5, west  # ground, not water
    r.close()
