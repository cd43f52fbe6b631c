"""Optional payload layers in the session: announced in the server's hello, sent only to
clients that ask for them in theirs; everyone else gets the frame without the layer, byte
for byte as it is encoded without it."""

import msgpack
import numpy as np
import pytest

from runtime.featurelayer import LAYER, encode_layer
from runtime.tiles import T, TileKey
from runtime.wire import encode_heights
from streaming import protocol as P
from streaming.protocol import Limits
from streaming.session import ServerInfo, ServerSession, tile_frame

KEY = TileKey(13, 2, 3)


def _frames():
    h = np.add.outer(np.arange(T + 1), np.arange(T + 1)).astype(np.float32) * 0.05
    payload, _, _ = encode_heights(h, 1.0, key=KEY, model="m1")
    plain = tile_frame(KEY, dict(payload))
    payload[LAYER] = encode_layer(13, classes=np.full((T + 1, T + 1), 10, np.uint8),
                                  buildings=np.array([[100.0, -200.0, 20.0, 15.0, 30.0]]))
    return plain, tile_frame(KEY, payload)


def _session(layers=(LAYER,)):
    return ServerSession(ServerInfo(world="plane", seed=7, model="m1", limits=Limits(), layers=layers))


def _hello(s, **extra):
    s.receive(P.pack({"type": "hello", "protocol": 1, **extra}))
    return [msgpack.unpackb(f, raw=False) for f in s.next_frames()]


@pytest.mark.parametrize("asks", [True, False])
def test_layer_goes_only_to_clients_that_ask(asks):
    plain, full = _frames()
    s = _session()
    (hello,) = _hello(s, **({"layers": [LAYER]} if asks else {}))
    assert hello["layers"] == [LAYER]
    s.receive(P.pack({"type": "request", "keys": [[13, 2, 3]]}))
    s.tile_ready(KEY, full)
    (frame,) = s.next_frames()
    assert frame == (full if asks else plain)
    assert (LAYER in msgpack.unpackb(frame, raw=False)["tile"]) is asks


def test_servers_without_layers_keep_their_hello_and_ignore_the_ask():
    s = _session(layers=())
    (hello,) = _hello(s, layers=[LAYER])
    assert "layers" not in hello and s.layers == frozenset()


def test_malformed_layers_in_hello_is_an_error():
    s = _session()
    (err,) = _hello(s, layers="features")
    assert err["type"] == "error" and err["code"] == "malformed" and "layers" in err["message"]
