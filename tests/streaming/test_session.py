"""The sans-I/O session driven byte by byte: frames in, events and frames out."""

import msgpack
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.tiles import TileKey
from streaming import protocol as P
from streaming.protocol import Limits
from streaming.session import (
    Cancel,
    Close,
    HeightQuery,
    Reprioritise,
    ServerInfo,
    ServerSession,
    Want,
    tile_frame,
)


def _session(**kw):
    return ServerSession(ServerInfo(world="plane", seed=7, model="m1", limits=Limits(**kw)))


def _out(s):
    return [msgpack.unpackb(f, raw=False) for f in s.next_frames()]


def _hello(s, **extra):
    s.receive(P.pack({"type": "hello", "protocol": 1, **extra}))
    return _out(s)


def test_hello_announces_world_seed_model_and_limits():
    s = _session(max_keys_per_request=8)
    (msg,) = _hello(s)
    assert msg["type"] == "hello" and msg["world"] == "plane" and msg["seed"] == 7 and msg["model"] == "m1"
    assert msg["tile_size"] == 256 and msg["limits"]["max_keys_per_request"] == 8


def test_request_before_hello_is_an_error_and_session_survives():
    s = _session()
    assert s.receive(P.pack({"type": "request", "keys": [[1, 0, 0]]})) == []
    (err,) = _out(s)
    assert err["type"] == "error" and err["code"] == "hello_required"
    assert _hello(s)[0]["type"] == "hello"


def test_wrong_version_closes():
    s = _session()
    events = s.receive(P.pack({"type": "hello", "protocol": 99}))
    assert isinstance(events[0], Close)
    assert _out(s)[0]["code"] == "unsupported_version"


def test_token_required_when_configured():
    s = ServerSession(ServerInfo(world="plane", seed=0, model="m", token="s3cret"))
    assert isinstance(s.receive(P.pack({"type": "hello", "protocol": 1, "token": "nope"}))[0], Close)
    s2 = ServerSession(ServerInfo(world="plane", seed=0, model="m", token="s3cret"))
    assert s2.receive(P.pack({"type": "hello", "protocol": 1, "token": "s3cret"})) == []
    assert _out(s2)[0]["type"] == "hello"


def test_request_dedup_priorities_and_credit_flow():
    s = _session()
    _hello(s, credits=2)
    (want,) = s.receive(P.pack({"type": "request", "keys": [[2, 0, 0], [2, 1, 0], [2, 2, 0]],
                                "priorities": [1.0, 3.0, 2.0]}))
    assert isinstance(want, Want) and want.keys == (TileKey(2, 0, 0), TileKey(2, 1, 0), TileKey(2, 2, 0))
    # Already pending: the same priority changes nothing; a new one re-prioritises it.
    assert s.receive(P.pack({"type": "request", "keys": [[2, 0, 0]], "priorities": [1.0]})) == []
    (moved,) = s.receive(P.pack({"type": "request", "keys": [[2, 0, 0]]}))
    assert isinstance(moved, Reprioritise) and moved.keys == (TileKey(2, 0, 0),) and moved.priorities == (0.0,)
    for k in want.keys:
        s.tile_ready(k, tile_frame(k, {"x": k.x}))
    sent = _out(s)
    assert [m["key"] for m in sent] == [[2, 1, 0], [2, 2, 0]]  # highest priority first, 2 credits
    assert _out(s) == []
    s.receive(P.pack({"type": "credits", "n": 5}))
    assert [m["key"] for m in _out(s)] == [[2, 0, 0]]


def test_a_pending_only_request_never_asks_for_a_tile_again():
    """``pending_only``: a key still pending is re-prioritised, one already sent (or never
    asked) is ignored; before, a new priority that crossed its tile on the wire asked for it
    again and the tile came twice."""
    s = _session()
    _hello(s)
    s.receive(P.pack({"type": "request", "keys": [[2, 0, 0], [2, 1, 0]]}))
    s.tile_ready(TileKey(2, 0, 0), tile_frame(TileKey(2, 0, 0), {"x": 0}))
    assert [m["key"] for m in _out(s)] == [[2, 0, 0]]  # sent: no longer pending
    (moved,) = s.receive(P.pack({"type": "request", "keys": [[2, 0, 0], [2, 1, 0], [2, 3, 0]],
                                 "priorities": [5.0, 4.0, 3.0], "pending_only": True}))
    assert isinstance(moved, Reprioritise) and moved.keys == (TileKey(2, 1, 0),) and moved.priorities == (4.0,)
    # The same message without the flag asks again for the key already sent (and the new one).
    (want,) = s.receive(P.pack({"type": "request", "keys": [[2, 0, 0], [2, 3, 0]], "priorities": [5.0, 3.0]}))
    assert isinstance(want, Want) and want.keys == (TileKey(2, 0, 0), TileKey(2, 3, 0))
    assert s.receive(P.pack({"type": "request", "keys": [[2, 0, 0]], "pending_only": 1})) == []
    (err,) = _out(s)
    assert err["type"] == "error" and err["code"] == "malformed" and "pending_only" in err["message"]


def test_the_clients_reprioritise_asks_only_for_pending_tiles():
    """TileClient.reprioritise sends keys whose tile has not arrived, flagged ``pending_only``
    (the server then cannot send them twice); a plain request is not flagged."""
    import asyncio

    from streaming.client import ServerHello, TileClient

    class Socket:
        def __init__(self):
            self.sent = []

        async def send(self, frame):
            self.sent.append(msgpack.unpackb(frame, raw=False))

    async def run():
        c = TileClient()
        c.ws, c.hello = Socket(), ServerHello("plane", 7, "m1", 256, {"max_keys_per_request": 64})
        await c.request([TileKey(2, 0, 0), TileKey(2, 1, 0)], [1.0, 2.0])
        c._pending.discard(TileKey(2, 0, 0))  # its tile arrived
        await c.reprioritise([TileKey(2, 0, 0), TileKey(2, 1, 0)], [3.0, 4.0])
        return c.ws.sent

    plain, moved = asyncio.run(run())
    assert "pending_only" not in plain and plain["keys"] == [[2, 0, 0], [2, 1, 0]]
    assert moved["pending_only"] is True and moved["keys"] == [[2, 1, 0]] and moved["priorities"] == [4.0]


def test_cancel_drops_queued_and_pending():
    s = _session()
    _hello(s, credits=0)
    s.receive(P.pack({"type": "request", "keys": [[1, 0, 0], [1, 1, 0]]}))
    s.tile_ready(TileKey(1, 0, 0), b"frame")
    (c,) = s.receive(P.pack({"type": "cancel", "keys": [[1, 0, 0], [1, 1, 0], [1, 5, 5]]}))
    assert isinstance(c, Cancel) and set(c.keys) == {TileKey(1, 0, 0), TileKey(1, 1, 0)}
    s.receive(P.pack({"type": "credits", "n": 10}))
    s.tile_ready(TileKey(1, 1, 0), b"late")  # arrives after cancel: not sent
    assert _out(s) == []


def test_limits_keys_per_request_and_in_flight():
    s = _session(max_keys_per_request=4, max_in_flight=6)
    _hello(s)
    s.receive(P.pack({"type": "request", "keys": [[1, i, 0] for i in range(5)]}))
    assert _out(s)[0]["code"] == "too_many_keys"
    s.receive(P.pack({"type": "request", "keys": [[1, i, 0] for i in range(4)]}))
    s.receive(P.pack({"type": "request", "keys": [[1, i, 1] for i in range(4)]}))
    assert _out(s)[0]["code"] == "limit"
    assert len(s.wanted) == 4  # nothing of the refused request was taken


def test_generator_failure_reaches_the_requester_as_error():
    s = _session()
    _hello(s)
    s.receive(P.pack({"type": "request", "keys": [[1, 0, 0]]}))
    s.tile_failed(TileKey(1, 0, 0), "generator_failed", "boom")
    (err,) = _out(s)
    assert err["code"] == "generator_failed" and err["key"] == [1, 0, 0]


def test_height_query_is_validated():
    s = _session()
    _hello(s)
    pts = np.array([[1.0, 2.0], [3.0, 4.0]])
    (q,) = s.receive(P.pack({"type": "height", "id": 4, "points": P.encode_array(pts), "mode": "detailed"}))
    assert isinstance(q, HeightQuery) and q.request_id == 4 and np.array_equal(q.points, pts)
    s.receive(P.pack({"type": "height", "id": 5, "points": P.encode_array(np.ones((2, 3)))}))
    assert _out(s)[0]["code"] == "malformed"


def test_wrong_field_types_and_unknown_type():
    s = _session()
    _hello(s)
    bad = [{"type": "request", "keys": "all"}, {"type": "request", "keys": [[1, 0, 0]], "priorities": ["hi"]},
           {"type": "credits", "n": -1}, {"type": "teleport"}, {"type": "cancel", "keys": 3}]
    for msg in bad:
        assert s.receive(P.pack(msg)) == []
    codes = [m["code"] for m in _out(s)]
    assert codes == ["malformed", "malformed", "malformed", "unknown_type", "malformed"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64), st.dictionaries(
    st.sampled_from(["type", "keys", "n", "protocol", "priorities", "id", "points"]),
    st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=8),
              st.lists(st.integers(-2**63, 2**63 - 1), max_size=4), st.none()),
    max_size=4).map(P.pack)), max_size=12))
def test_session_survives_any_frames(frames):
    s = _session()
    _hello(s)
    for f in frames:
        s.receive(f)
    s.next_frames()
    # Still serving: a valid request is accepted afterwards.
    s.wanted.clear()
    (w,) = s.receive(P.pack({"type": "request", "keys": [[0, 0, 0]]}))
    assert w.keys == (TileKey(0, 0, 0),)
