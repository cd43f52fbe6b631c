"""streaming.http: HTTP endpoints on the websocket server's port, answered from the same
tile service and store; CORS, tokens, bad paths; websocket clients unaffected."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from eco_fixtures import ServerThread, bit, get, read_subtree, tile_heights, walk_tileset

from generator.water import earth_water_mask
from runtime.tiles import TileKey
from streaming import ecosystem as E
from streaming import implicit as I
from streaming.cli import build_server
from streaming.http import HttpConfig


def neighbours(web, key):
    """The stored frames of a tile's edge neighbours (the server stitches with them)."""
    from runtime.tin import neighbour_keys

    return [web.server.service.store.get(k) for k in neighbour_keys("earth", key).values()]

KEY = TileKey(6, 94, 21)
ACCEPT = "application/vnd.quantized-mesh{},application/octet-stream;q=0.9,*/*;q=0.01"  # CesiumJS's
NORMALS = {"Accept": ACCEPT.format(";extensions=octvertexnormals")}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    server = build_server("earth", 0, store_dir=store, http=HttpConfig(max_level=10))
    t = ServerThread(server)
    yield t
    t.close()


def test_layer_json_advertises_every_tile_to_max_level(web):
    status, h, body = get(web.base + "/terrain/layer.json", headers={"Origin": "http://elsewhere.test"})
    assert status == 200 and h["Content-Type"] == "application/json"
    assert h["Access-Control-Allow-Origin"] == "*"
    layer = json.loads(body)
    assert layer["format"] == "quantized-mesh-1.0" and layer["scheme"] == "tms"
    assert layer["projection"] == "EPSG:4326" and layer["extensions"] == ["octvertexnormals", "watermask"]
    assert layer["maxzoom"] == 10 and len(layer["available"]) == 11
    assert layer["available"][10] == [{"startX": 0, "startY": 0, "endX": 2047, "endY": 1023}]


def test_terrain_tile_is_the_stored_frame_converted(web):
    tms_y = (1 << KEY.level) - 1 - KEY.y
    status, h, body = get(f"{web.base}/terrain/{KEY.level}/{KEY.x}/{tms_y}.terrain?v=1.0.0", headers=NORMALS)
    assert status == 200
    assert h["Content-Type"] == "application/vnd.quantized-mesh;extensions=octvertexnormals"
    assert int(h["Content-Length"]) == len(body) > 88
    # Same store as the websocket server: the frame is there now, and converts to these bytes.
    frame = web.server.service.store.get(KEY)
    # Its edge normals are joined with its neighbours' (which the server fetched too).
    nb = neighbours(web, KEY)
    assert frame is not None and None not in nb and len(nb) == 4
    assert body == E.terrain_bytes(frame, ("octvertexnormals",), neighbours=nb)
    assert body != E.terrain_bytes(frame, ("octvertexnormals",))  # not the along-edge rule
    # Asked with gzip (browsers do), the same bytes come compressed.
    status, h, gz = get(f"{web.base}/terrain/{KEY.level}/{KEY.x}/{tms_y}.terrain",
                        headers={"Accept-Encoding": "gzip", **NORMALS})
    assert status == 200 and h["Content-Encoding"] == "gzip" and "Accept-Encoding" in h["Vary"]
    assert gzip.decompress(gz) == body and len(gz) < len(body) / 2
    # Imagery and GLB of the same tile come from the same frame (no new generation).
    generated = web.server.service.stats().generated
    status, h, png = get(f"{web.base}/imagery/{KEY.level}/{KEY.x}/{KEY.y}.png")
    assert status == 200 and h["Content-Type"] == "image/png" and png == E.imagery_png(frame)
    c = I.implicit_coord(KEY)
    status, h, glb = get(f"{web.base}/3dtiles/tiles/{c.root}/{c.level}/{c.x}/{c.y}.glb")
    assert status == 200 and h["Content-Type"] == "model/gltf-binary" and glb[:4] == b"glTF"
    assert glb == E.glb_bytes(frame, neighbours=nb)
    assert web.server.service.stats().generated == generated


@pytest.mark.parametrize("asked, ids", [
    ("", []), (";extensions=octvertexnormals", [1]), (";extensions=watermask", [2]),
    (";extensions=octvertexnormals-watermask", [1, 2]), (";extensions=watermask-octvertexnormals-metadata", [1, 2]),
])
def test_terrain_sends_only_the_extensions_asked_for(web, asked, ids):
    from test_ecosystem import read_quantized_mesh

    key = TileKey(3, 1, 2)  # 157.5..135 W, 22.5..0 N: the Pacific around Hawaii (sea and a little land)
    tms_y = (1 << key.level) - 1 - key.y
    status, h, body = get(f"{web.base}/terrain/{key.level}/{key.x}/{tms_y}.terrain",
                          headers={"Accept": ACCEPT.format(asked)})
    assert status == 200 and "Accept" in h["Vary"]
    n, ext = read_quantized_mesh(body)
    assert sorted(ext) == ids
    names = [e for i, e in ((1, "octvertexnormals"), (2, "watermask")) if i in ids]
    assert h["Content-Type"] == "application/vnd.quantized-mesh" + (";extensions=" + "-".join(names) if names else "")
    if 1 in ext:
        assert len(ext[1]) == 2 * n
    if 2 in ext:
        assert ext[2] in (b"\x00", b"\xff") or len(ext[2]) == 65536
        assert ext[2] == E.terrain_bytes(web.server.service.store.get(key), ("watermask",),
                                         water=earth_water_mask)[-len(ext[2]):]


def test_tileset_and_subtrees(web):
    status, _, body = get(web.base + "/3dtiles/tileset.json")
    ts = json.loads(body)
    it = ts["root"]["children"][0]["implicitTiling"]
    assert status == 200 and it["availableLevels"] == 11 and it["subtreeLevels"] == 1
    status, h, blob = get(web.base + "/3dtiles/subtrees/1/4/3/5.subtree")
    assert status == 200 and blob[:4] == b"subt"
    js, body = read_subtree(blob)
    assert bit(js, body, js["tileAvailability"], 0) and js["childSubtreeAvailability"] == {"constant": 1}
    # The tile's box heights are its content's (from the frame the subtree request generated).
    key = I.tile_key(I.ImplicitCoord(1, 4, 3, 5))
    assert tile_heights(js, body) == [E.tile_height_range(web.server.service.store.get(key))]
    # The last level has no children.
    _, _, blob = get(web.base + "/3dtiles/subtrees/0/10/3/5.subtree")
    assert read_subtree(blob)[0]["childSubtreeAvailability"] == {"constant": 0}


def test_every_advertised_tile_of_the_served_tileset_exists(tmp_path):
    """Walk the live tileset as CesiumJS would, every subtree and tile to the last level."""
    server = build_server("earth", 0, store_dir=tmp_path / "store", http=HttpConfig(max_level=2))
    t = ServerThread(server)
    try:
        walk = walk_tileset(t.base + "/3dtiles")
        code, _, _ = get(t.base + "/3dtiles/subtrees/0/3/0/0.subtree")
    finally:
        t.close()
    assert walk["failed"] == []
    assert walk["last_level"] == 2 and len(walk["tiles"]) == 2 * (1 + 4 + 16) and walk["subtrees"] == 42
    assert code == 404  # one level past the last is not there, and nothing advertised it
    lo, hi = np.array(list(walk["tiles"].values())).T
    assert (lo < hi).all() and lo.min() < -1e4  # the level-0 skirts (and chord sag) are inside
    assert lo.min() > -2e5  # curved level-0 meshes: no 1,889 km sag below the surface any more


@pytest.mark.parametrize("path, status, says", [
    ("/terrain/11/0/0.terrain", 404, "level must be in [0, 10]"),
    ("/terrain/2/8/0.terrain", 404, "x at level 2 must be in [0, 7]"),
    ("/3dtiles/tiles/2/0/0/0.glb", 404, "root 0 or 1"),
    ("/3dtiles/subtrees/0/11/0/0.subtree", 404, "level must be in [0, 10]"),
    ("/index.html", 404, "expected /terrain/layer.json"),
])
def test_bad_paths_say_what_exists(web, path, status, says):
    code, h, body = get(web.base + path)
    assert code == status and says in body.decode()
    assert h["Access-Control-Allow-Origin"] == "*"


def test_preflight_head_and_methods(web):
    code, h, body = get(web.base + "/3dtiles/tileset.json", method="OPTIONS",
                        headers={"Origin": "http://a.test", "Access-Control-Request-Method": "GET"})
    assert code == 204 and body == b"" and "GET" in h["Access-Control-Allow-Methods"]
    code, h, body = get(web.base + "/terrain/layer.json", method="HEAD")
    assert code == 200 and body == b"" and int(h["Content-Length"]) > 100
    code, _, body = get(web.base + "/terrain/layer.json", method="DELETE")
    assert code == 405 and b"expected GET, HEAD or OPTIONS" in body


def test_websocket_clients_share_the_port_and_the_store(web):
    from streaming.client import SyncTileClient

    key = TileKey(5, 47, 10)
    c = SyncTileClient(f"ws://127.0.0.1:{web.port}")
    try:
        tile = c.fetch([key])[key]
    finally:
        c.close()
    assert tile.key == key
    # The websocket request stored the frame; HTTP now converts exactly that frame.
    frame = web.server.service.store.get(key)
    c_ = I.implicit_coord(key)
    _, _, glb = get(f"{web.base}/3dtiles/tiles/{c_.root}/{c_.level}/{c_.x}/{c_.y}.glb")
    assert glb == E.glb_bytes(frame, neighbours=neighbours(web, key))
    assert len(tile.faces) == len(E.frame_tile(frame).faces)


def test_origin_allow_list_and_token(tmp_path):
    server = build_server("earth", 0, store_dir=tmp_path, token="s3cret", origins=["http://ok.test"],
                          http=HttpConfig(max_level=4))
    t = ServerThread(server)
    try:
        code, _, body = get(t.base + "/terrain/layer.json", headers={"Origin": "http://ok.test"})
        assert code == 401 and b"token" in body
        code, h, _ = get(t.base + "/terrain/layer.json?token=s3cret", headers={"Origin": "http://ok.test"})
        assert code == 200 and h["Access-Control-Allow-Origin"] == "http://ok.test" and h["Vary"] == "Origin"
        code, h, body = get(t.base + "/terrain/layer.json?token=s3cret", headers={"Origin": "http://evil.test"})
        assert code == 403 and "Access-Control-Allow-Origin" not in h
    finally:
        t.close()


def test_slow_tiles_get_an_answer_not_a_dropped_connection(tmp_path):
    """A plain HTTP answer is part of websockets' opening handshake: with the websocket hello
    timeout (0.2 s here, 5 s by default) as its bound, a tile that took longer to make was
    dropped with no response (CesiumJS: "Request has failed", ERR_EMPTY_RESPONSE) once a
    burst of requests queued up. Now the bound is the HTTP request timeout, and past that the
    answer is a 503 with Retry-After while the tile goes on being made."""
    import dataclasses
    import time

    server = build_server("earth", 0, store_dir=tmp_path, http=HttpConfig(max_level=4, request_timeout_s=0.01))
    server.config = dataclasses.replace(server.config, hello_timeout_s=0.2)
    t = ServerThread(server)
    try:
        url = t.base + "/terrain/4/23/11.terrain"  # cold: about 0.5 s to generate, mesh and convert
        code, h, body = get(url)
        assert code == 503 and h["Retry-After"] == "1" and b"retry" in body
        deadline = time.monotonic() + 60
        while code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            code, h, body = get(url)
        assert code == 200 and len(body) > 88  # the work went on and was cached
        assert server.http.timed_out >= 1
        server.http.config = dataclasses.replace(server.http.config, request_timeout_s=30.0)
        code, _, body = get(t.base + "/3dtiles/tiles/0/2/1/1.glb")  # cold, longer than the 0.2 s hello bound
        assert code == 200 and body[:4] == b"glTF"
    finally:
        t.close()


def test_plane_world_is_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="need the earth world"):
        build_server("plane", 0, store_dir=tmp_path, http=HttpConfig())


@pytest.mark.slow
def test_served_borders_shade_like_the_inside(web):
    """A 3 x 3 block of served level-10 terrain in the Alps (normals asked for), decoded
    independently: shared-edge normals agree and a low-sun hillshade shows the tile
    borders no more than 1.25x the lines inside tiles (eco_shade); the same tiles
    converted alone (the along-edge rule) fail that check."""
    from eco_shade import border_contrast_ratio, decode_terrain, edge_normal_angles_deg, hillshade

    cx, cy = 1068, 250  # 7.7 E, 45.9 N
    served, alone = {}, {}
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            k = TileKey(10, cx + dx, cy + dy)
            status, _, body = get(f"{web.base}/terrain/10/{k.x}/{1023 - k.y}.terrain", headers=NORMALS)
            assert status == 200
            served[k] = decode_terrain(body, k)
            alone[k] = decode_terrain(E.terrain_bytes(web.server.service.store.get(k)), k)
    angles = edge_normal_angles_deg(served)
    assert len(angles) == 12 * 257 and angles.max() <= 1.0
    ratio = border_contrast_ratio(hillshade(served)[0])[2]
    ratio_alone = border_contrast_ratio(hillshade(alone)[0])[2]
    assert ratio <= 1.25 < ratio_alone, (ratio, ratio_alone)
