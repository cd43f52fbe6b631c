"""The sans-I/O session, byte by byte: queue bound and parking, credits cap, stats,
world checks, height validation, duplicate keys."""

import msgpack
import numpy as np
import pytest

from runtime.tiles import TileKey
from streaming import protocol as P
from streaming.protocol import Limits
from streaming.session import (
    Cancel,
    Close,
    HeightQuery,
    ServerInfo,
    ServerSession,
    StatsQuery,
    Want,
    tile_frame,
)


def _session(world="plane", **kw):
    return ServerSession(ServerInfo(world=world, seed=7, model="m1", limits=Limits(**kw)))


def _out(s, **kw):
    return [msgpack.unpackb(f, raw=False) for f in s.next_frames(**kw)]


def _ready(s, credits=64):
    s.receive(P.pack({"type": "hello", "protocol": 1, "credits": credits}))
    assert _out(s)[0]["type"] == "hello"


def test_hello_round_trip_bytes_are_exact():
    s = _session(max_keys_per_request=8)
    s.receive(b"\x82\xa4type\xa5hello\xa8protocol\x01")  # {"type": "hello", "protocol": 1}
    (frame,) = s.next_frames()
    msg = msgpack.unpackb(frame, raw=False)
    assert frame == P.pack(msg) and list(msg) == [
        "type",
        "protocol",
        "world",
        "seed",
        "model",
        "tile_size",
        "limits",
    ]
    assert msg["limits"] == Limits(max_keys_per_request=8).as_dict()


def test_queue_is_bounded_in_bytes_and_parked_keys_come_back():
    s = _session(max_queued_bytes=10_000)
    _ready(s, credits=0)
    keys = [TileKey(3, i, 0) for i in range(5)]
    s.receive(
        P.pack(
            {
                "type": "request",
                "keys": [P.key_to_wire(k) for k in keys],
                "priorities": [5.0, 4.0, 3.0, 2.0, 1.0],
            }
        )
    )
    frames = {k: tile_frame(k, {"blob": bytes(4000)}) for k in keys}
    for k in keys:
        s.tile_ready(k, frames[k])
    assert s.queued_bytes == 2 * len(frames[keys[0]]) and s.parked == set(keys[2:])
    assert s.unpark() == []  # still above half the bound
    s.receive(P.pack({"type": "credits", "n": 2}))
    assert [m["key"] for m in _out(s, max_tiles=1)] == [[3, 0, 0]]
    assert [m["key"] for m in _out(s, max_tiles=1)] == [[3, 1, 0]]
    assert s.queued_bytes == 0
    back = s.unpark()
    assert [k for k, _ in back] == keys[2:] and [p for _, p in back] == [3.0, 2.0, 1.0]
    assert s.parked == set() and all(k in s.wanted for k in keys[2:])


def test_cancel_forgets_parked_keys_and_queued_bytes():
    s = _session(max_queued_bytes=5000)
    _ready(s, credits=0)
    a, b = TileKey(2, 0, 0), TileKey(2, 1, 0)
    s.receive(P.pack({"type": "request", "keys": [[2, 0, 0], [2, 1, 0]]}))
    s.tile_ready(a, tile_frame(a, {"blob": bytes(4000)}))
    s.tile_ready(b, tile_frame(b, {"blob": bytes(4000)}))
    assert s.parked == {b}
    (c,) = s.receive(P.pack({"type": "cancel", "keys": [[2, 0, 0], [2, 1, 0], [2, 0, 0]]}))
    assert isinstance(c, Cancel) and c.keys == (a, b)
    assert s.queued_bytes == 0 and s.parked == set() and s.unpark() == []


def test_credits_are_capped():
    s = _session(max_credits=100)
    s.receive(P.pack({"type": "hello", "protocol": 1, "credits": 101}))
    assert _out(s)[0]["code"] == "malformed" and not s.ready
    _ready(s, credits=90)
    s.receive(P.pack({"type": "credits", "n": 50}))
    assert s.credits == 100
    s.receive(P.pack({"type": "credits", "n": True}))
    assert _out(s)[0]["code"] == "malformed"


def test_stats_is_an_event_answered_with_server_counters():
    s = _session()
    _ready(s)
    assert s.receive(P.pack({"type": "stats"})) == [StatsQuery()]
    s.send_stats({"generated": 12})
    (msg,) = _out(s)
    assert msg["type"] == "stats" and msg["server"] == {"generated": 12} and msg["pending"] == 0


def test_keys_outside_the_world_and_repeated_keys():
    s = _session(world="earth", max_level=10)
    _ready(s)
    s.receive(P.pack({"type": "request", "keys": [[1, 4, 0]]}))  # earth level 1 has x in [0, 3]
    err = _out(s)[0]
    assert err["code"] == "bad_key" and "[0, 3]" in err["message"]
    (w,) = s.receive(P.pack({"type": "request", "keys": [[1, 3, 1], [1, 3, 1]], "priorities": [1.0, 2.0]}))
    assert isinstance(w, Want) and w.keys == (TileKey(1, 3, 1),) and w.priorities == (2.0,)


def test_wrong_world_seed_or_model_closes():
    for field, value in (("world", "earth"), ("seed", 8), ("model", "m2")):
        s = _session()
        (ev,) = s.receive(P.pack({"type": "hello", "protocol": 1, field: value}))
        assert isinstance(ev, Close) and ev.code == 1008
        assert _out(s)[0]["code"] == "wrong_world"
        assert s.receive(P.pack({"type": "hello", "protocol": 1})) == []  # closed: ignored
    s = _session()
    assert (
        s.receive(P.pack({"type": "hello", "protocol": 1, "world": "plane", "seed": 7, "model": "m1"})) == []
    )


def test_height_queries_limits_and_earth_latitudes():
    s = _session(world="earth", max_height_queries=2, max_height_points=3)
    _ready(s)
    pts = P.encode_array(np.array([[10.0, 45.0]]))
    evs = [s.receive(P.pack({"type": "height", "id": i, "points": pts})) for i in range(3)]
    assert isinstance(evs[0][0], HeightQuery) and isinstance(evs[1][0], HeightQuery) and evs[2] == []
    err = _out(s)[0]
    assert err["code"] == "limit" and err["id"] == 2
    s.height_answer(0, {"height_m": np.array([1.5])})
    ans = _out(s)[0]
    assert ans["type"] == "height" and ans["id"] == 0
    assert P.decode_array(ans["height_m"], "h").tolist() == [1.5]
    s.receive(P.pack({"type": "height", "id": 9, "points": P.encode_array(np.array([[0.0, 91.0]]))}))
    assert _out(s)[0]["code"] == "malformed"
    s.receive(P.pack({"type": "height", "id": 10, "points": P.encode_array(np.zeros((4, 2)))}))
    err = _out(s)[0]
    assert err["code"] == "too_large" and err["id"] == 10


@pytest.mark.parametrize("field, value", [("max_level", -1), ("min_level", 30), ("max_credits", 1.5)])
def test_limits_are_validated(field, value):
    with pytest.raises(ValueError):
        Limits(**{field: value})


def test_close_reasons_fit_a_close_frame_and_booleans_are_not_versions():
    s = _session()
    (ev,) = s.receive(P.pack({"type": "hello", "protocol": 1, "world": "ü" * 200}))
    assert isinstance(ev, Close) and len(ev.reason.encode()) <= 123
    s = _session()
    (ev,) = s.receive(P.pack({"type": "hello", "protocol": True}))
    assert isinstance(ev, Close) and _out(s)[0]["code"] == "unsupported_version"
