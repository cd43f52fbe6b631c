"""streaming.http: HTTP endpoints on the websocket server's port, answered from the same
tile service and store; CORS, tokens, bad paths; websocket clients unaffected."""

from __future__ import annotations

import gzip
import json

import pytest
from eco_fixtures import ServerThread, get

from runtime.tiles import TileKey
from streaming import ecosystem as E
from streaming.cli import build_server
from streaming.http import HttpConfig

KEY = TileKey(6, 94, 21)


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
    assert layer["projection"] == "EPSG:4326" and layer["extensions"] == ["octvertexnormals"]
    assert layer["maxzoom"] == 10 and len(layer["available"]) == 11
    assert layer["available"][10] == [{"startX": 0, "startY": 0, "endX": 2047, "endY": 1023}]


def test_terrain_tile_is_the_stored_frame_converted(web):
    tms_y = (1 << KEY.level) - 1 - KEY.y
    status, h, body = get(f"{web.base}/terrain/{KEY.level}/{KEY.x}/{tms_y}.terrain?v=1.0.0")
    assert status == 200
    assert h["Content-Type"] == "application/vnd.quantized-mesh;extensions=octvertexnormals"
    assert int(h["Content-Length"]) == len(body) > 88
    # Same store as the websocket server: the frame is there now, and converts to these bytes.
    frame = web.server.service.store.get(KEY)
    assert frame is not None and body == E.terrain_bytes(frame)
    # Asked with gzip (browsers do), the same bytes come compressed.
    status, h, gz = get(f"{web.base}/terrain/{KEY.level}/{KEY.x}/{tms_y}.terrain", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and h["Content-Encoding"] == "gzip" and "Accept-Encoding" in h["Vary"]
    assert gzip.decompress(gz) == body and len(gz) < len(body) / 2
    # Imagery and GLB of the same tile come from the same frame (no new generation).
    generated = web.server.service.stats().generated
    status, h, png = get(f"{web.base}/imagery/{KEY.level}/{KEY.x}/{KEY.y}.png")
    assert status == 200 and h["Content-Type"] == "image/png" and png == E.imagery_png(frame)
    c = E.implicit_coord(KEY)
    status, h, glb = get(f"{web.base}/3dtiles/tiles/{c.root}/{c.level}/{c.x}/{c.y}.glb")
    assert status == 200 and h["Content-Type"] == "model/gltf-binary" and glb[:4] == b"glTF"
    assert glb == E.glb_bytes(frame)
    assert web.server.service.stats().generated == generated


def test_tileset_and_subtrees(web):
    status, _, body = get(web.base + "/3dtiles/tileset.json")
    ts = json.loads(body)
    assert status == 200 and ts["root"]["children"][0]["implicitTiling"]["availableLevels"] == 11
    status, h, blob = get(web.base + "/3dtiles/subtrees/1/4/3/5.subtree")
    assert status == 200 and blob[:4] == b"subt"
    js = json.loads(blob[24:].decode().strip())
    assert js["tileAvailability"] == {"constant": 1} and js["childSubtreeAvailability"] == {"constant": 1}
    # Levels 8..11 pass max_level 10: the last subtrees have no children.
    _, _, blob = get(web.base + "/3dtiles/subtrees/0/8/3/5.subtree")
    assert json.loads(blob[24:].decode().strip())["childSubtreeAvailability"] == {"constant": 0}


@pytest.mark.parametrize("path, status, says", [
    ("/terrain/11/0/0.terrain", 404, "level must be in [0, 10]"),
    ("/terrain/2/8/0.terrain", 404, "x at level 2 must be in [0, 7]"),
    ("/3dtiles/tiles/2/0/0/0.glb", 404, "root 0 or 1"),
    ("/3dtiles/subtrees/0/3/0/0.subtree", 404, "multiples of 4"),
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
    c_ = E.implicit_coord(key)
    _, _, glb = get(f"{web.base}/3dtiles/tiles/{c_.root}/{c_.level}/{c_.x}/{c_.y}.glb")
    assert glb == E.glb_bytes(frame)
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


def test_plane_world_is_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="need the earth world"):
        build_server("plane", 0, store_dir=tmp_path, http=HttpConfig())
