"""CesiumJS (npm ``cesium``) in headless Chromium against worldstream's HTTP endpoints:
the quantized-mesh terrain provider (with our imagery) and the 3D Tiles tileset, each in
turn. Fails on any error CesiumJS or the browser reports; asserts on screenshot pixels and
on terrain heights CesiumJS samples from our tiles. No network: Ion is off, every URL is
127.0.0.1 (the page and CesiumJS from one port, the tiles from the server's, so CORS is
exercised)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from eco_browser import CESIUM_BUILD, Browser, StaticSite, chromium_path
from eco_fixtures import ServerThread
from PIL import Image

from generator.water import earth_water_mask
from runtime.tiles import T, TileKey, World, spacing_deg
from streaming import ecosystem as E
from streaming import implicit as I
from streaming.cli import build_server
from streaming.http import HttpConfig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None or not CESIUM_BUILD.is_dir(),
                       reason="chromium and .ci/node/node_modules/cesium needed (bash .ci/setup --dev)"),
]

# Looking north towards Everest from 14 km up, 12 degrees down: relief and snow in view.
CAMERA = "86.9,27.3,14000,0,-12"
SIZE = (640, 400)
PAGE = Path(__file__).with_name("eco_cesium_page.html")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    shutil.copy(PAGE, root / "index.html")
    (root / "cesium").symlink_to(CESIUM_BUILD, target_is_directory=True)
    s = StaticSite(root)
    yield s
    s.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    server = build_server("earth", 0, store_dir=tmp_path_factory.mktemp("store"), http=HttpConfig(max_level=10))
    t = ServerThread(server)
    yield t
    t.close()


def load(site, web, tmp_path, mode: str, sse: float, camera: str = CAMERA, extra_query: str = ""):
    base = web if isinstance(web, str) else web.base
    b = Browser(tmp_path / f"profile-{mode}", size=SIZE)
    try:
        b.call("Page.navigate", url=f"http://127.0.0.1:{site.port}/index.html?mode={mode}&base={base}"
                                    f"&camera={camera}&sse={sse}{extra_query}")
        state = b.wait_for("window.__state !== 'loading' && window.__state", timeout_s=150)
        errors = b.evaluate("window.__errors") + b.errors()
        assert state == "loaded" and errors == [], errors
        assert b.bad_responses() == []
        png = b.screenshot()
        extra = None
        if mode == "terrain" and not extra_query:
            extra = b.evaluate(SAMPLE_JS)
        return png, extra
    finally:
        b.close()


# A tile corner near Everest at the deepest level: always a TIN vertex, so CesiumJS's
# sampled height there is our vertex height up to quantized-mesh's 15-bit quantum.
PROBE = TileKey(10, 1518, 353)
_d = spacing_deg(PROBE.level)
PROBE_LON, PROBE_LAT = -180.0 + PROBE.x * T * _d, 90.0 - PROBE.y * T * _d
SAMPLE_JS = f"""
Cesium.sampleTerrainMostDetailed(window.__terrain, [Cesium.Cartographic.fromDegrees({PROBE_LON}, {PROBE_LAT})])
  .then(p => p[0].height)
"""


def pixels(png: bytes, path):
    path.write_bytes(png)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    assert img.shape == (SIZE[1], SIZE[0], 3)
    return img


def assert_terrain_below_space_above(img):
    h = img.shape[0]
    sky, ground = img[: h // 8], img[h // 2 :]
    # Space is black (no sky box, no atmosphere); the ground is lit, coloured and textured.
    assert sky.max() < 10, "the top rows should see space"
    lum = ground.mean(axis=2)
    assert (lum > 5).mean() > 0.97, "generated terrain should fill the lower half"
    assert ground.std(axis=(0, 1)).max() > 8, "terrain should be textured, not a flat colour"
    # Our earth's colours here (Blue Marble anchored): browns/greens, not Cesium's blue globe.
    r, g, b = ground.reshape(-1, 3).mean(0)
    assert r > b and g > b


def test_cesium_terrain_provider(site, web, tmp_path):
    png, height = load(site, web, tmp_path, "terrain", sse=4)
    img = pixels(png, tmp_path / "cesium_terrain.png")
    assert_terrain_below_space_above(img)
    # CesiumJS asked the server for terrain and imagery tiles, several levels deep.
    stats = web.server.service.stats()
    assert stats.generated >= 20
    # The height CesiumJS sampled from our quantized-mesh equals our stored vertex height.
    # The corner is shared by four tiles (bit-identical edges); CesiumJS used one of them.
    store, checked = web.server.service.store, 0
    for dx, dy in ((0, 0), (-1, 0), (0, -1), (-1, -1)):
        frame = store.get(TileKey(PROBE.level, PROBE.x + dx, PROBE.y + dy))
        if frame is None:
            continue
        tile = E.frame_tile(frame)
        at = (tile.grid_rc[:, 0] == (T if dy else 0)) & (tile.grid_rc[:, 1] == (T if dx else 0))
        quantum = (tile.height_m.max() - tile.height_m.min()) / 32767
        assert height == pytest.approx(tile.height_m[at][0], abs=quantum + 0.01)
        checked += 1
    assert checked >= 1


def test_cesium_3d_tiles(site, web, tmp_path):
    served = web.server.http.served
    png, _ = load(site, web, tmp_path, "tiles", sse=8)
    img = pixels(png, tmp_path / "cesium_3dtiles.png")
    assert_terrain_below_space_above(img)
    assert web.server.http.served - served >= 10  # tileset, subtrees and GLBs


def test_cesium_opens_static_exports(site, tmp_path):
    """``worldstream bake`` + ``export`` output, hosted by a plain static web server."""
    from generator.pyramid import open_world
    from runtime.tiles import World
    from streaming.bake import BBox, bake, export_store, open_store, plan_keys

    store_root = tmp_path / "store"
    keys = plan_keys(World.EARTH, BBox(86.0, 27.0, 88.0, 29.0), (5, 7))
    bake(World.EARTH, 0, keys, store_root, use_ray=False, progress_stream=io.StringIO(), open_pyramid=open_world)
    out = site.root / "static"
    for fmt in ("quantized-mesh", "3dtiles"):
        export_store(open_store(store_root), out, fmt, progress_stream=io.StringIO(), water=earth_water_mask)
    base = f"http://127.0.0.1:{site.port}/static"
    down = "87.0,28.0,120000,0,-90"  # straight down on the baked box (about 1.2 deg of view)
    for mode in ("terrain", "tiles"):
        png, _ = load(site, base, tmp_path, mode, sse=2, camera=down, extra_query="&rect=86,27,88,29&maxlevel=7")
        img = pixels(png, tmp_path / f"static_{mode}.png")
        lum = img.mean(axis=2)
        assert (lum > 5).mean() > 0.97, f"{mode}: the baked region should fill the view"
        assert img.std(axis=(0, 1)).max() > 8


# ---------------------------------------------------------------- the same world through both providers

# (name, camera "lon,lat,height_m,heading_deg,pitch_deg"): the views.
VIEWS = [
    ("globe_20000km", "10,30,20000000,0,-90"),
    ("europe_300km", "10,47,300000,0,-75"),
    ("alps_5km", "7.75,45.85,5000,20,-30"),
    ("alps_500m_agl", "7.75,45.85,2706,20,-20"),  # the ground there is at 2,206 m (level 16)
]
VIEW_SIZE = (480, 300)
FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"


# Every loaded 3D Tiles tile with content: [root, level, x, y, region min height, max height].
TILE_BOXES_JS = """
(() => {
  const out = [], stack = [window.__tileset.root];
  while (stack.length) {
    const t = stack.pop();
    stack.push(...t.children);
    if (!t.implicitCoordinates || !t.hasRenderableContent || !t.contentReady) continue;
    const bv = t.boundingVolume, c = t.implicitCoordinates;
    out.push([bv.rectangle.west >= -1e-12 ? 1 : 0, c.level, c.x, c.y, bv.minimumHeight, bv.maximumHeight]);
  }
  return out;
})()
"""


# Did CesiumJS's terrain take our extensions? (rendered tiles with a water-mask texture)
WATER_JS = """
(() => {
  const t = window.__terrain, tiles = window.widget.scene.globe._surface._tilesToRender;
  return {hasWaterMask: t.hasWaterMask, hasVertexNormals: t.hasVertexNormals, rendered: tiles.length,
          withWater: tiles.filter(x => x.data && x.data.waterMaskTexture !== undefined).length};
})()
"""


@pytest.fixture(scope="module")
def web16(tmp_path_factory):
    server = build_server("earth", 0, store_dir=tmp_path_factory.mktemp("store16"), http=HttpConfig(max_level=16))
    t = ServerThread(server)
    yield t
    t.close()


@pytest.mark.parametrize("name, camera", VIEWS)
def test_served_world_views_have_no_errors_and_no_failed_requests(site, web16, tmp_path, name, camera):
    """Both providers at the same maximumScreenSpaceError, normals and water mask asked for:
    no console error, no 4xx/5xx, no failed request, a picture, and the same deepest level
    (3D Tiles carry CesiumJS's terrain error per level). WORLDSTREAM_FIGURES=1 keeps the
    screenshots in docs/figures (palette PNGs)."""
    import os
    import re

    deepest = {}
    for mode, tiles in (("terrain", r"/terrain/(\d+)/\d+/\d+\.terrain"), ("tiles", r"/3dtiles/tiles/\d+/(\d+)/")):
        b = Browser(tmp_path / f"profile-{name}-{mode}", size=VIEW_SIZE)
        try:
            b.call("Page.navigate", url=f"http://127.0.0.1:{site.port}/index.html?mode={mode}&base={web16.base}"
                                        f"&camera={camera}&sse=4&maxlevel=16")
            state = b.wait_for("window.__state !== 'loading' && window.__state", timeout_s=420)
            errors = b.evaluate("window.__errors") + b.errors()
            assert state == "loaded" and errors == [], (mode, errors)
            assert b.bad_responses() == [], mode
            png = b.screenshot()
            levels = [int(m.group(1)) for u in b.response_urls() if (m := re.search(tiles, u))]
            boxes = b.evaluate(TILE_BOXES_JS) if mode == "tiles" else []
            water = b.evaluate(WATER_JS) if mode == "terrain" else None
        finally:
            b.close()
        if water is not None:
            # CesiumJS took the water mask: the globe from space shows the Atlantic and the
            # Mediterranean, so some rendered tiles carry a water-mask texture.
            assert water["hasWaterMask"] and water["hasVertexNormals"], water
            if name.startswith("globe"):
                assert water["withWater"] >= 1, water
        # CesiumJS gave each loaded tile the height range of its content (subtree metadata).
        for root, level, x, y, lo, hi in boxes[:40]:
            key = I.tile_key(I.ImplicitCoord(root, level, x, y))
            frame = web16.server.service.store.get(key)
            feats = web16.server.http.features(key)  # buildings and trees count in the box
            assert (lo, hi) == pytest.approx(E.tile_height_range(frame, World.EARTH, feats), abs=1e-6)
        assert mode == "terrain" or len(boxes) >= 2
        assert len(levels) >= 2, f"{mode}: tiles should come from our server"
        deepest[mode] = max(levels)
        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
        lum = img.mean(axis=2)
        assert (lum > 5).mean() > (0.08 if name.startswith("globe") else 0.5), f"{mode}: the world should be in view"
        assert img.std(axis=(0, 1)).max() > 8, f"{mode}: a picture, not a flat colour"
        if os.environ.get("WORLDSTREAM_FIGURES"):
            FIGURES.mkdir(parents=True, exist_ok=True)
            small = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT)
            small.save(FIGURES / f"cesium_{name}_{'terrain' if mode == 'terrain' else '3dtiles'}.png", optimize=True)
    print(name, "deepest level loaded:", deepest)
    assert abs(deepest["terrain"] - deepest["tiles"]) <= 1, deepest


def test_served_3d_tiles_draw_paris_buildings_and_trees(site, web16, tmp_path):
    """Central Paris from 700 m through the served 3D Tiles: GLBs with extruded buildings and
    EXT_mesh_gpu_instancing trees load with no error and no failed request, and the boxes of
    the loaded city tiles (levels 13+) reach up to their roofs. WORLDSTREAM_FIGURES=1 keeps
    the screenshot as docs/figures/cesium_paris_700m_3dtiles.png."""
    import os

    b = Browser(tmp_path / "profile-paris", size=VIEW_SIZE)
    try:
        b.call("Page.navigate", url=f"http://127.0.0.1:{site.port}/index.html?mode=tiles&base={web16.base}"
                                    f"&camera=2.352,48.835,700,0,-30&sse=8&maxlevel=16")
        state = b.wait_for("window.__state !== 'loading' && window.__state", timeout_s=420)
        errors = b.evaluate("window.__errors") + b.errors()
        assert state == "loaded" and errors == [], errors
        assert b.bad_responses() == []
        png = b.screenshot()
        boxes = b.evaluate(TILE_BOXES_JS)
    finally:
        b.close()
    city = [(I.tile_key(I.ImplicitCoord(*c[:4])), c[5]) for c in boxes if c[1] >= 13]
    assert city, f"levels 13+ should load over Paris, got {sorted({c[1] for c in boxes})}"
    with_buildings = 0
    for key, hi in city:
        feats = web16.server.http.features(key)
        terrain_hi = E.tile_height_range(web16.server.service.store.get(key))[1]
        if len(feats["buildings"]):
            with_buildings += 1
            assert hi > terrain_hi + 3.0, (key, hi, terrain_hi)  # the box holds the roofs
    assert with_buildings >= 1
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    assert (img.mean(axis=2) > 5).mean() > 0.5 and img.std(axis=(0, 1)).max() > 8
    if os.environ.get("WORLDSTREAM_FIGURES"):
        small = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT)
        small.save(FIGURES / "cesium_paris_700m_3dtiles.png", optimize=True)


# ---------------------------------------------------------------- borders and errors a Cesium user sees

# The tiles CesiumJS selected for rendering ([level, x, y from the north]) and the
# geometric error it assumes for each (its own estimate for a quantized-mesh level).
SELECTED_JS = """
(() => {
  const t = window.__terrain, tiles = window.widget.scene.globe._surface._tilesToRender;
  return tiles.map(x => [x.level, x.x, x.y, t.getLevelMaximumGeometricError(x.level)]);
})()
"""
BORDER_VIEWS = [("alps_5km", "7.75,45.85,5000,20,-30"), ("himalaya_5km", "86.9,27.9,11000,0,-30")]
"""(name, lon,lat,height,heading,pitch). The Himalaya camera is 11 km above the ellipsoid, ~5 km
over the served ground there (~6,000 m): at 5,000 m it was under the terrain, and what CesiumJS
selected depended on when its collision lifted the camera (2 tiles at levels 5-10 in some
runs, 26 at levels 24-26 a metre above the ground in others)."""
MAX_EDGE_NORMAL_DEG = 1.0
MAX_BORDER_CONTRAST = 1.25
MAX_ERROR_FACTOR = 2.0
"""Both ways, at every level: CesiumJS assumes a 65-sample heightmap per terrain tile
whatever layer.json says (256/65 of our mesh bound); the Cesium formats carry tiles whose
true error is that within 2x (``streaming.ecosystem.CESIUM_OWN_ERROR``)."""


@pytest.mark.parametrize("name, camera", BORDER_VIEWS)
def test_served_borders_are_seamless_and_selected_errors_true(site, web16, tmp_path, name, camera):
    """CesiumJS on the served world (terrain provider, normals asked for, sse 4): the error
    CesiumJS assumes for every selected tile's level is the true error of the tile we
    served within 2x both ways, and around the deepest selected tile
    (a 3 x 3 block of served .terrain files, decoded independently) shared-edge normals
    agree within 1 deg and a low-sun hillshade shows its tile borders no more than 1.25x
    as much as lines inside tiles (``eco_shade``: computed offline from the served
    normals, not from the screenshot)."""
    from eco_fixtures import get
    from eco_shade import border_contrast_ratio, decode_terrain, edge_normal_angles_deg, hillshade

    from runtime.tiles import World
    from runtime.tin.curvature import geometric_error_3d_m
    from runtime.tin.simplify import children_grid

    b = Browser(tmp_path / f"profile-{name}", size=VIEW_SIZE)
    try:
        b.call("Page.navigate", url=f"http://127.0.0.1:{site.port}/index.html?mode=terrain&base={web16.base}"
                                    f"&camera={camera}&sse=4&maxlevel=16")
        state = b.wait_for("window.__state !== 'loading' && window.__state", timeout_s=420)
        errors = b.evaluate("window.__errors") + b.errors()
        assert state == "loaded" and errors == [], errors
        assert b.bad_responses() == []
        selected = b.evaluate(SELECTED_JS)
    finally:
        b.close()
    assert len(selected) >= 4
    service = web16.server.service
    # 1. The error CesiumJS assumes for each selected level against the true error of the
    # .terrain we served for the tile (decoded independently: at some levels not the wire
    # TIN, ``ecosystem.cesium_tile``): the 3D distance from the next level's samples to
    # where its flat faces draw them (chord sag included; DESIGN.md section 3). One tile
    # per level.
    accept = {"Accept": "application/vnd.quantized-mesh;extensions=octvertexnormals"}

    def served(k: TileKey, heights: bool = False):
        status, _, body = get(f"{web16.base}/terrain/{k.level}/{k.x}/{(1 << k.level) - 1 - k.y}.terrain",
                              headers=accept)
        assert status == 200, (k, status, body[:200])
        return decode_terrain(body, k, heights)

    first = {}
    for level, x, y, assumed in selected:  # one stored tile per level (a store write may lag)
        if level not in first and service.store.get(TileKey(level, x, y)) is not None:
            first[level] = (TileKey(level, x, y), assumed)
    assert len(first) >= 3, selected
    report = []
    for key, assumed in sorted(first.values()):
        grid_rc, _, faces, height = served(key, heights=True)
        kids = service.source([TileKey(key.level + 1, 2 * key.x + dx, 2 * key.y + dy)
                               for dy in (0, 1) for dx in (0, 1)])
        true = geometric_error_3d_m(World.EARTH, key, grid_rc, faces, children_grid(*[k.height for k in kids]), height)
        report.append((str(key), round(true, 1), round(assumed, 1)))
        assert true <= MAX_ERROR_FACTOR * assumed, (key, true, assumed)
        assert assumed <= MAX_ERROR_FACTOR * true, (key, true, assumed)
    print(name, "selected (key, true error m, CesiumJS error m):", report)
    # 2. Borders around the deepest selected tile, as served (stitched with neighbours).
    # (CesiumJS also selects tiles past layer.json's maxzoom, upsampled from level 16.)
    level, x, y, _ = max((s for s in selected if s[0] <= 16), key=lambda s: s[0])
    tiles = {TileKey(level, x + dx, y + dy): served(TileKey(level, x + dx, y + dy))
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    angles = edge_normal_angles_deg(tiles)
    border, inner, ratio = border_contrast_ratio(hillshade(tiles)[0])
    print(name, f"level {level}: edge normals max {angles.max():.2f} deg; border contrast {border:.4f}, "
                f"in-tile {inner:.4f}, ratio {ratio:.2f}")
    assert len(angles) >= 12 * 256 and angles.max() <= MAX_EDGE_NORMAL_DEG
    # Before the edge normals continued the shading across the edge (placement.inward_normals),
    # level 16 in the Himalaya gave 1.50 here: a border is a mesh edge along its whole length,
    # so Gouraud shading kinked along all of it.
    assert ratio <= MAX_BORDER_CONTRAST
