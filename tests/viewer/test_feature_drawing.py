"""The feature layer drawn and sensed (EGL): buildings, streets and trees of a plane-world city in
the segmentation with the right classes, sky as sky, depth that sees roofs, NIR brighter over
forest than water, identical frames across runs. Tiles go through the server's encoder, the
wire and the client pipeline (``client_tile``), without sockets."""

import math

import numpy as np
import pytest

from generator.layer import layered_source
from generator.pyramid import open_world
from runtime.featurelayer import BUILDING, NO_CLASS, ROAD, SKY, TREE, URBAN, WATER
from runtime.lod.camera import Camera
from runtime.tiles import T, TileKey, World, spacing_m
from runtime.wire import decode_tile
from streaming import protocol as P
from streaming.tileservice import mesh_encoder
from viewer.flight import client_tile
from viewer.renderer import TerrainRenderer
from viewer.sensors import oriented
from viewer.thermal import AIR_K, SKY_DEPRESSION_K

CITY = TileKey(15, -6079, 257)  # plane seed 0: a city core (tests/generator/test_layer.py)
COAST = TileKey(10, -118, 5)  # plane seed 0: 29 % sea, 68 % broadleaf and needleleaf forest
SIZE = (240, 160)
E, N, U = np.eye(3)


@pytest.fixture(scope="module")
def plane():
    return open_world("plane", 0, refiner="fractal")


def _client_tiles(pyr, keys, layer=True):
    src = layered_source(pyr) if layer else pyr.tiles
    out = {}
    for k, f in zip(keys, src(keys)):
        payload = P.unpack(mesh_encoder()(World.PLANE, k, f), 1 << 26)["tile"]
        out[k] = client_tile(World.PLANE, k, decode_tile(payload))
    return out


@pytest.fixture(scope="module")
def city(plane):
    keys = [TileKey(15, CITY.x + dx, CITY.y + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return keys, _client_tiles(plane, keys)


def _render(ctx, tiles, cam, features=True):
    r = TerrainRenderer(ctx, cam.viewport_px)
    for t in tiles.values():
        r.upload(t.surface, t.image, layer=t.layer, placed=t.placed if features else None)
    r.render(cam, list(tiles), U)
    out = (r.read_rgb(), r.targets.read_segmentation(), r.read_depth_m(), r.targets.read_nir(),
           r.targets.read_thermal_k())
    r.close()
    return out


def _centre_m(key):
    s = spacing_m(key.level)
    return (key.x * T + T / 2) * s, -(key.y * T + T / 2) * s


def _oblique(tiles):
    cx, cy = _centre_m(CITY)
    g = float(tiles[CITY].grid()[T // 2, T // 2])
    fwd, up = oriented(E, N, U, 45.0, -35.0)
    return Camera(np.array([cx - 300.0, cy - 300.0, g + 300.0]), fwd, up, fov_y_rad=math.radians(60),
                  viewport_px=SIZE, near_m=0.5)


def test_city_frame_shows_buildings_streets_trees_and_sky_with_their_classes(gl_ctx, city):
    keys, tiles = city
    cam = _oblique(tiles)
    rgb, seg, depth, _, _ = _render(gl_ctx, tiles, cam)
    share = np.bincount(seg.ravel(), minlength=256) / seg.size
    assert share[BUILDING] > 0.25 and share[ROAD] > 0.02 and share[TREE] > 0.01 and share[URBAN] > 0.03
    assert share[NO_CLASS] == 0.0  # every ground pixel of a layer tile has a class
    assert (seg[0] == SKY).all() and np.isinf(depth[0]).all()
    assert np.isfinite(depth[seg != SKY]).all()
    # without the features the same pixels are ground further away: depth sees the buildings
    _, seg0, depth0, _, _ = _render(gl_ctx, tiles, cam, features=False)
    b = seg == BUILDING
    assert not (seg0 == BUILDING).any()
    assert np.mean(depth[b] < depth0[b] - 0.5) > 0.95


def test_nadir_pixel_over_the_tallest_building_is_its_roof(gl_ctx, city):
    keys, tiles = city
    placed = tiles[CITY].placed
    i = int(np.argmax(np.linalg.norm(placed.buildings[:, 9:12], axis=1)))
    base = tiles[CITY].surface.center_m + placed.buildings[i, :3].astype(np.float64)
    top = base[2] + float(placed.buildings[i, 11])
    fwd, up = oriented(E, N, U, 0.0, -90.0)
    cam = Camera(np.array([base[0], base[1], top + 200.0]), fwd, up, fov_y_rad=math.radians(30),
                 viewport_px=(64, 64), near_m=0.5)
    _, seg, depth, _, _ = _render(gl_ctx, tiles, cam)
    assert (seg[31:33, 31:33] == BUILDING).all()
    assert np.allclose(depth[31:33, 31:33], 200.0, atol=0.05)


def test_tiles_without_the_layer_leave_the_ground_unclassified_and_draw_nothing_extra(gl_ctx, plane, city):
    keys, _ = city
    tiles = _client_tiles(plane, keys[4:5], layer=False)
    assert tiles[CITY].layer is None and tiles[CITY].placed is None
    fwd, up = oriented(E, N, U, 0.0, -90.0)
    cx, cy = _centre_m(CITY)
    cam = Camera(np.array([cx, cy, 800.0]), fwd, up, fov_y_rad=math.radians(30), viewport_px=(32, 32))
    _, seg, _, nir, _ = _render(gl_ctx, tiles, cam)
    assert (seg == NO_CLASS).all() and not nir.any()


def test_nir_is_bright_over_forest_and_dark_over_water(gl_ctx, plane):
    tiles = _client_tiles(plane, [COAST])
    cx, cy = _centre_m(COAST)
    fwd, up = oriented(E, N, U, 0.0, -90.0)
    cam = Camera(np.array([cx, cy, 25_000.0]), fwd, up, fov_y_rad=math.radians(40), viewport_px=(96, 96))
    _, seg, _, nir, _ = _render(gl_ctx, tiles, cam)
    forest, water = np.isin(seg, (6, 7)), seg == WATER
    assert forest.mean() > 0.2 and water.mean() > 0.1
    nf, nw = nir[..., 0][forest].mean(), nir[..., 0][water].mean()
    assert nf > 80 and nw < 15, (nf, nw)  # palette NIR: broadleaf 0.5, needleleaf 0.38, water 0.03


def test_frames_are_identical_across_runs(gl_ctx, plane, city):
    keys, tiles = city
    cam = _oblique(tiles)
    a = _render(gl_ctx, tiles, cam)
    again = _client_tiles(open_world("plane", 0, refiner="fractal"), keys)
    b = _render(gl_ctx, again, cam)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()


@pytest.mark.slow  # ~20-50 s on 2 shared cores: the tiles down to level 14 with their layers
def test_a_sensor_session_on_a_features_server_sees_the_city():
    """End to end: ``build_server(features=True)``, the hello opt-in, websocket, client pipeline."""
    from streaming.cli import build_server
    from viewer.sensors import SensorSession, SensorSpec

    x, y = _centre_m(CITY)
    server = build_server(World.PLANE, 0, "fractal", features=True)
    with SensorSession([SensorSpec("down", (128, 128), 60.0)], server=server) as s:
        assert s.client.hello.layers == ("features",) and s.rig.has_nir
        cam = s.camera("down", (x, y, 150.0), heading_deg=0.0, pitch_deg=-90.0, alt_mode="agl")
        f = s.capture({"down": cam}, timeout_s=600.0)["down"]
    share = np.bincount(f.segmentation.ravel(), minlength=256) / f.segmentation.size
    assert share[BUILDING] > 0.1 and share[URBAN] + share[ROAD] > 0.1 and share[NO_CLASS] == 0.0
    assert f.nir is not None and f.nir[..., 0][f.segmentation == BUILDING].mean() > 30
    assert f.depth_m[f.segmentation == BUILDING].mean() < f.depth_m[f.segmentation == ROAD].mean() - 3.0


def test_segmentation_shares_match_the_class_grid_under_a_nadir_camera(gl_ctx, plane):
    tiles = _client_tiles(plane, [COAST])
    classes = tiles[COAST].layer.classes
    r0, c0 = 184, 128  # a window of the tile with 39 % sea and 50 % forest
    s = spacing_m(COAST.level)
    x, y = (COAST.x * T + c0) * s, -(COAST.y * T + r0) * s
    fwd, up = oriented(E, N, U, 0.0, -90.0)
    alt, half_fov = 8_000.0, math.radians(20.0)
    cam = Camera(np.array([x, y, alt]), fwd, up, fov_y_rad=2 * half_fov, viewport_px=(96, 96))
    _, seg, _, _, _ = _render(gl_ctx, tiles, cam)
    # the samples inside the footprint (the sea at 0 m, the land lower than 400 m: a margin)
    half = (alt - 200.0) * math.tan(half_fov) / s
    win = np.s_[int(math.ceil(r0 - half)) : int(r0 + half) + 1, int(math.ceil(c0 - half)) : int(c0 + half) + 1]
    grid = classes[win].copy()
    assert (grid == WATER).mean() > 0.3 and np.isin(grid, (6, 7)).mean() > 0.4
    # what the camera sees: the renderer draws the sea wherever the ground is below 0 m
    # (runtime's water rule), also on samples the land cover calls land (8 % of this window)
    grid[tiles[COAST].grid()[win] < 0.0] = WATER
    for c in (WATER, 6, 7):
        assert abs((seg == c).mean() - (grid == c).mean()) < 0.02, (c, (seg == c).mean(), (grid == c).mean())


def test_thermal_streets_and_roofs_are_warmer_than_trees_and_the_sky_is_cold(gl_ctx, plane, city):
    keys, tiles = city
    _, seg, _, _, tk = _render(gl_ctx, tiles, _oblique(tiles))
    assert np.allclose(tk[seg == SKY], AIR_K - SKY_DEPRESSION_K)
    ground = tk[seg != SKY]
    assert np.isfinite(ground).all() and 270.0 < ground.min() and ground.max() < 330.0
    road, tree = tk[seg == ROAD].mean(), tk[seg == TREE].mean()
    assert road > tree + 5.0, (road, tree)
    # a sunlit roof (nadir over the tallest building) is warmer than the trees; its walls in the
    # shade are not (emissivity 0.92: ~6 K below a black body at the air's temperature)
    placed = tiles[CITY].placed
    i = int(np.argmax(np.linalg.norm(placed.buildings[:, 9:12], axis=1)))
    base = tiles[CITY].surface.center_m + placed.buildings[i, :3].astype(np.float64)
    top = base[2] + float(placed.buildings[i, 11])
    fwd, up = oriented(E, N, U, 0.0, -90.0)
    cam = Camera(np.array([base[0], base[1], top + 200.0]), fwd, up, fov_y_rad=math.radians(30), viewport_px=(64, 64))
    _, seg_roof, _, _, tk_roof = _render(gl_ctx, tiles, cam)
    assert seg_roof[32, 32] == BUILDING and tk_roof[32, 32] > tree + 3.0, (tk_roof[32, 32], tree)
    coast = _client_tiles(plane, [COAST])
    s = spacing_m(COAST.level)
    fwd, up = oriented(E, N, U, 0.0, -90.0)
    cam = Camera(np.array([(COAST.x * T + 128) * s, -(COAST.y * T + 184) * s, 8_000.0]), fwd, up,
                 fov_y_rad=math.radians(40), viewport_px=(64, 64))
    _, seg, _, _, tk = _render(gl_ctx, coast, cam)
    assert tk[seg == WATER].mean() < tk[np.isin(seg, (6, 7))].mean() - 0.5


def test_earth_placement_inverts_the_generators_tile_metres():
    """A building at (east, north) tile metres lands at the sample the generator meant (east in
    metres at its latitude), standing on the ground, with axes of its width, depth and height."""
    from runtime.featurelayer import FeatureLayer
    from runtime.geometry import WorldGeometry
    from runtime.tiles import spacing_deg
    from viewer.features import place_features

    key = TileKey(15, 33196, 7489)  # Paris
    b = np.array([[300.0, -200.0, 20.0, 10.0, 30.0]], np.float32)
    layer = FeatureLayer(None, b, np.array([[50.0, -60.0, 12.0]], np.float32), None, None)
    ground = np.full((T + 1, T + 1), 35.0, np.float32)
    geo = WorldGeometry(World.EARTH)
    center = geo.tile_center(key)
    placed = place_features(World.EARTH, key, layer, ground, center)
    inst = placed.buildings[0].astype(np.float64)
    r, c, h = geo.world_to_sample(key.level, (center + inst[:3])[None])
    r0, c0 = key.sample_origin()
    s = spacing_m(key.level)
    lat = 90.0 - (r[0]) * spacing_deg(key.level)
    assert abs((r[0] - r0) * s - 200.0) < 0.01
    assert abs((c[0] - c0) * s * math.cos(math.radians(lat)) - 300.0) < 0.01
    assert abs(h[0] - (35.0 - 0.3)) < 0.01  # on the ground, sunk 0.3 m
    e, n, u = inst[3:6], inst[6:9], inst[9:12]
    assert np.allclose([np.linalg.norm(e), np.linalg.norm(n), np.linalg.norm(u)], [10.0, 5.0, 30.3], atol=1e-3)
    assert abs(e @ n) < 1e-3 and abs(e @ u) < 1e-3 and abs(n @ u) < 1e-3
    assert np.allclose(u / 30.3, geo.up(center + inst[:3])[0], atol=1e-6)
    t = placed.trees[0].astype(np.float64)
    assert np.isclose(np.linalg.norm(t[9:12]), 12.0, atol=1e-3) and np.isclose(np.linalg.norm(t[3:6]), 3.6, atol=1e-3)
