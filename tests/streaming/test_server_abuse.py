"""A hostile client cannot lock out, starve or bloat the server (issue 19), over real
loopback sockets: hello deadline and unauthenticated budget, cancellation that removes
queued work, answers bounded per client, heights in the fair queue with a tile cost
limit, and absurd shapes answered with errors (never close 1011)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from stream_fixtures import SyntheticSource, loopback_server, run
from websockets.asyncio.client import connect

from runtime.tiles import T, TileKey, World, spacing_m
from streaming import protocol as P
from streaming.admission import Admission
from streaming.client import ServerError, TileClient
from streaming.heights import keys_at
from streaming.protocol import Limits
from streaming.server import MAX_TILE_FRAME_BYTES, ServerConfig
from streaming.tileservice import ServiceConfig

HELLO = P.pack({"type": "hello", "protocol": 1})


async def _raw(url: str, hello: bool = True, **kw):
    ws = await connect(url, compression=None, max_size=MAX_TILE_FRAME_BYTES, **kw)
    if hello:
        await ws.send(HELLO)
        assert P.unpack(await ws.recv(), 1 << 30)["type"] == "hello"
    return ws


async def _until(cond, what: str, timeout_s: float = 20.0) -> None:
    """Wait for a condition on server state that no message announces."""
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.002)


async def _roundtrip(ws) -> dict:
    """A ``stats`` round trip: every message sent before it has been handled."""
    await ws.send(P.pack({"type": "stats"}))
    while True:
        msg = P.unpack(await ws.recv(), 1 << 30)
        if msg["type"] == "stats":
            return msg


def test_admission_evicts_the_oldest_unauthenticated_and_counts_only_hellos_against_the_limit():
    a = Admission(max_authenticated=2, max_unauthenticated=3)
    assert [a.opened(i) for i in range(3)] == [[], [], []]
    assert a.opened(3) == [0] and a.opened(4) == [1]  # oldest first
    assert not a.authenticate(0)  # evicted before its hello came
    assert a.authenticate(2) and a.authenticate(3)
    assert a.unauthenticated == 1 and a.authenticated == 2
    assert a.full() and a.refused == 1  # now, and only now, handshakes get 503
    assert not a.authenticate(4)
    a.closed(2)
    assert not a.full()


def test_never_hello_connections_time_out_and_never_lock_out_a_client_that_says_hello():
    cfg = ServerConfig(max_connections=4, max_unauthenticated=3, hello_timeout_s=0.5)

    async def main():
        async with loopback_server(server_config=cfg) as (srv, url):
            silent = [await _raw(url, hello=False) for _ in range(8)]  # 5 evicted at once
            for ws in silent[:5]:
                await ws.wait_closed()
                assert ws.close_code == 1013
            assert srv.admission.unauthenticated == 3 and srv.admission.evicted == 5
            good = TileClient()
            await good.connect(url)  # the budget of 4 authenticated slots is untouched
            assert TileKey(3, 0, 0) in await good.fetch([TileKey(3, 0, 0)])
            await silent[5].wait_closed()  # the oldest silent one made room for the good client
            assert silent[5].close_code == 1013
            for ws in silent[6:]:  # the hello deadline
                await ws.wait_closed()
                assert ws.close_code == 1008 and "hello" in ws.close_reason
            stats = await good.stats()
            await good.close()
            return stats["server"]

    s = run(main())
    assert s["hello_timeouts"] == 2 and s["evicted_unauthenticated"] == 6
    assert s["authenticated"] == 1


def test_authenticated_clients_are_refused_only_at_max_connections():
    cfg = ServerConfig(max_connections=2, max_unauthenticated=2, hello_timeout_s=30)

    async def main():
        async with loopback_server(server_config=cfg) as (srv, url):
            a, b = TileClient(), TileClient()
            await a.connect(url)
            await b.connect(url)
            with pytest.raises(Exception) as info:
                await TileClient().connect(url)
            await b.close()
            await _until(lambda: srv.admission.authenticated == 1, "b's slot freed")
            c = TileClient()
            await c.connect(url)
            await a.close()
            await c.close()
            return info.value

    err = run(main())
    assert "503" in str(err)


def test_request_cancel_churn_leaves_nothing_queued():
    src = SyntheticSource()
    src.gate.clear()  # the generator holds its first batch: everything else waits in the queue

    async def main():
        # The queues are the subject here, not the event-loop share: with the default 5 % share a
        # loaded machine paused this churn long enough to close it 1008 (tests/streaming/test_loop_share.py).
        cfg = ServerConfig(loop_share=1.0, loop_burst_s=10.0)
        async with loopback_server(src, server_config=cfg, service_config=ServiceConfig(max_batch=1)) as (srv, url):
            ws = await _raw(url)
            await ws.send(P.pack({"type": "request", "keys": [[4, 0, 0]]}))
            await asyncio.get_running_loop().run_in_executor(None, src.entered.wait, 10)
            peak_entries = 0
            for r in range(40):
                keys = [[12, 1000 * r + i, 5] for i in range(256)]
                await ws.send(P.pack({"type": "request", "keys": keys}))
                await ws.send(P.pack({"type": "cancel", "keys": keys}))
                await _roundtrip(ws)
                st = srv.service.stats()
                peak_entries = max(peak_entries, st.queue_entries)
                assert st.queued == 0 and st.waiting_keys == 1  # only the key in the generator
            stats = srv.service.stats()
            src.gate.set()
            await ws.close()
            return stats, peak_entries

    stats, peak_entries = run(main())
    assert stats.dropped_cancelled == 40 * 256
    assert peak_entries == 0  # removed at once, not left behind as dead entries
    assert src.keys_generated == [TileKey(4, 0, 0)]


def test_a_tile_cancelled_while_generating_is_not_meshed():
    src = SyntheticSource()
    src.gate.clear()
    meshed = []

    async def main():
        async with loopback_server(src) as (srv, url):
            encode = srv.service.encode
            srv.service.encode = lambda world, key, fields: meshed.append(key) or encode(world, key, fields)
            ws = await _raw(url)
            await ws.send(P.pack({"type": "request", "keys": [[5, 1, 1]]}))
            await asyncio.get_running_loop().run_in_executor(None, src.entered.wait, 10)
            await ws.send(P.pack({"type": "cancel", "keys": [[5, 1, 1]]}))
            await _roundtrip(ws)
            src.gate.set()
            await _until(lambda: srv.service.stats().dropped_unmeshed == 1, "the batch came back")
            await ws.close()
            return srv.service.stats()

    stats = run(main())
    assert meshed == [] and stats.generated == 1 and stats.waiting_keys == 0 and stats.lru_tiles == 0


def test_a_client_that_floods_and_never_reads_pauses_itself_not_the_server():
    # (loop_overuse_s: the flood may be paused at its event-loop share, never closed 1008 for it here)
    cfg = ServerConfig(max_output_bytes=32 << 10, write_limit_bytes=32 << 10, loop_overuse_s=600.0)
    # ~600 B of answer per 7 B stats request: 40,000 of them outgrow any kernel socket buffer.
    attempts = 40_000

    async def main():
        async with loopback_server(server_config=cfg) as (srv, url):
            bad = await _raw(url, max_queue=1)  # reads one frame ahead, then TCP fills up
            (conn,) = srv.handlers.values()
            held = [0]

            async def flood():
                for _ in range(attempts):
                    await bad.send(P.pack({"type": "stats"}))
                    held[0] = max(held[0], conn.output_bytes())

            flooding = asyncio.create_task(flood())
            await _until(lambda: conn.reading_paused, "the server stopped reading the flooder")
            good = TileClient()
            await good.connect(url)
            got = await good.fetch([TileKey(6, 2, 2)])
            held[0] = max(held[0], conn.output_bytes())
            await good.close()
            flooding.cancel()
            bad.transport.abort()
            await _until(lambda: len(srv.sessions) == 0, "both sessions gone")
            return held[0], got, srv.read_pauses

    held, got, pauses = run(main())
    assert held <= (32 << 10) + 1024  # one stats answer over the budget at most
    assert TileKey(6, 2, 2) in got and pauses >= 1


class _EvenSource(SyntheticSource):
    """Every key costs the generator about the same (20 ms), so fair shares are turns."""

    def __call__(self, keys):
        out = super().__call__(keys)
        time.sleep(0.02 * len(keys))
        return out


def test_height_queries_take_turns_with_tiles_in_the_fair_queue():
    src = _EvenSource()
    src.gate.clear()
    lim = Limits(max_level=16, max_height_tiles=4)

    async def main():
        async with loopback_server(
            src, limits=lim, heights=True, service_config=ServiceConfig(max_batch=1, batch_wait_s=0)
        ) as (srv, url):
            blocker = await _raw(url)
            await blocker.send(P.pack({"type": "request", "keys": [[4, 9, 9]]}))  # holds the generator
            await asyncio.get_running_loop().run_in_executor(None, src.entered.wait, 10)
            tiles = await _raw(url)
            s10 = spacing_m(10) * T
            pts = np.array([[(i + 0.5) * s10, -0.5 * s10] for i in range(4)])  # 4 level-10 tiles
            heights = await _raw(url)
            await heights.send(
                P.pack({"type": "height", "id": 7, "points": P.encode_array(pts), "mode": "detailed", "level": 10})
            )
            await tiles.send(P.pack({"type": "request", "keys": [[11, i, 0] for i in range(4)]}))
            await _until(lambda: srv.service.stats().queued == 8, "both lanes queued")
            src.gate.set()
            answer = P.unpack(await heights.recv(), 1 << 30)
            for ws in (blocker, tiles, heights):
                await ws.close()
            return answer

    answer = run(main())
    order = [k.level for k in src.keys_generated[1:] if k.level != 3]  # the level-3 water context aside
    # Equal costs: the lanes take turns (timing noise may let one lane take two in a row),
    # where a height query outside the queue would have had its 4 tiles in one go.
    assert sorted(order[:8]) == [10] * 4 + [11] * 4 and {10, 11} <= set(order[:3])
    assert all(len(c) == 1 for c in src.calls) and len(src.calls) >= 9
    assert answer["type"] == "height" and answer["id"] == 7, answer


def test_best_height_queries_are_limited_in_tiles_before_anything_is_generated():
    src = SyntheticSource()
    lim = Limits(max_level=16, max_height_tiles=4)

    async def main():
        async with loopback_server(src, limits=lim, heights=True) as (srv, url):
            c = TileClient()
            await c.connect(url)
            s3 = spacing_m(3) * T
            spread = np.array([[(i + 0.5) * s3, -0.5 * s3] for i in range(9)])  # 9 tiles at any level
            with pytest.raises(ServerError) as info:
                await c.heights(spread, "best")
            ok = await c.heights(spread[:4], "best")
            await c.close()
            return info.value, ok, spread

    err, ok, spread = run(main())
    assert err.code == "limit" and "9 tiles" in err.message and "at most 4" in err.message
    assert ok["level"].tolist() == [16] * 4  # best answers at one fixed level (16), whatever is held
    made = sorted(src.keys_generated)
    assert sorted(k for k in made if k.level == 16) == sorted(set(keys_at(World.PLANE, 16, spread[:4])))
    assert {k.level for k in made} == {3, 16}  # plus the level-3 water context; nothing for the refused query


@pytest.mark.parametrize("shape", [[2**62, 0], [0, 2**63], [2**64 - 1, 0], [0] * 40, [1 << 40, 2]])
def test_absurd_height_shapes_get_an_error_and_the_connection_goes_on(shape):
    async def main():
        async with loopback_server(heights=True) as (srv, url):
            ws = await _raw(url)
            pts = {"dtype": "<f8", "shape": shape, "data": b""}
            await ws.send(P.pack({"type": "height", "id": 9, "points": pts}))
            err = P.unpack(await ws.recv(), 1 << 30)
            await ws.send(P.pack({"type": "request", "keys": [[2, 1, 1]]}))
            tile = P.unpack(await ws.recv(), 1 << 30)
            await ws.close()
            return err, tile, ws.close_code

    err, tile, code = run(main())
    assert err["type"] == "error" and err["id"] == 9 and err["code"] in ("too_large", "malformed")
    assert "shape" in err["message"] or "exceed" in err["message"]
    assert tile["type"] == "tile" and code == 1000


def test_the_client_library_tries_again_after_a_close_1013(monkeypatch):
    from websockets.exceptions import ConnectionClosed
    from websockets.frames import Close

    import streaming.client as C

    opened = []

    class FakeWS:
        def __init__(self, evicted: bool):
            self.evicted = evicted

        async def send(self, data):
            pass

        async def recv(self):
            if self.evicted:
                raise ConnectionClosed(Close(1013, "too many connections waiting for hello"), None)
            hello = {"type": "hello", "world": "plane", "seed": 1, "model": "m", "tile_size": T, "limits": {}}
            return P.pack(hello)

        def __aiter__(self):
            return self

        async def __anext__(self):
            raise StopAsyncIteration

    async def fake_connect(url, **kw):
        opened.append(url)
        return FakeWS(evicted=len(opened) <= 2)  # evicted twice, then let in

    monkeypatch.setattr(C, "connect", fake_connect)

    async def main():
        c = TileClient()
        hello = await c.connect("ws://127.0.0.1:1")
        c._reader.cancel()
        return hello

    assert run(main()).world == "plane" and len(opened) == 3


def _height_msg(rid: int, pts: np.ndarray) -> bytes:
    return P.pack({"type": "height", "id": rid, "points": P.encode_array(pts), "mode": "detailed", "level": 10})


def test_a_height_query_refused_while_earlier_ones_wait_for_tiles_pauses_reading_until_one_is_answered():
    src = SyntheticSource()
    src.gate.clear()  # the generator holds the first query's tiles
    lim = Limits(max_level=16, max_height_tiles=4)
    s10 = spacing_m(10) * T

    async def main():
        async with loopback_server(src, limits=lim, heights=True) as (srv, url):
            ws = await _raw(url)
            first = np.array([[(i + 0.5) * s10, -0.5 * s10] for i in range(4)])  # 4 new tiles: the budget
            again = first + [0.0, -s10]  # 4 more new tiles
            await ws.send(_height_msg(1, first))
            await ws.send(_height_msg(2, again))  # refused: the connection waits for 4 already
            await ws.send(P.pack({"type": "stats"}))
            refused = P.unpack(await ws.recv(), 1 << 30)
            await _until(lambda: srv.height_pauses == 1, "reading paused after the refusal")
            src.gate.set()
            after = [P.unpack(await ws.recv(), 1 << 30) for _ in range(2)]
            await ws.close()
            return refused, after

    refused, after = run(main())
    assert refused["type"] == "error" and refused["id"] == 2 and refused["code"] == "limit", refused
    # The stats request was read only after the first query was answered (without the pause it
    # would be answered at once, while the generator still held the query's tiles).
    assert [m["type"] for m in after] == ["height", "stats"] and after[0]["id"] == 1
    assert after[1]["server"]["height_pauses"] == 1


def test_a_client_that_leaves_while_paused_after_a_height_refusal_is_let_go():
    src = SyntheticSource()
    src.gate.clear()
    lim = Limits(max_level=16, max_height_tiles=4)
    s10 = spacing_m(10) * T

    async def main():
        async with loopback_server(src, limits=lim, heights=True) as (srv, url):
            ws = await _raw(url)
            first = np.array([[(i + 0.5) * s10, -0.5 * s10] for i in range(4)])
            await ws.send(_height_msg(1, first))
            await ws.send(_height_msg(2, first + [0.0, -s10]))
            await ws.recv()  # the refusal
            await _until(lambda: srv.height_pauses == 1, "reading paused")
            ws.transport.abort()  # (a clean close waits for the server to read its close frame)
            # The generator still holds the query's tiles: the handler ends anyway, and its
            # keys leave the queue (nobody else wants them).
            await _until(lambda: srv.connections == 0, "the handler ended")
            await _until(lambda: srv.service.stats().waiting_keys == 0, "its tiles given up")
            stats = srv.service.stats()
            src.gate.set()
            return stats

    stats = run(main())
    assert stats.queued == 0 and stats.generated == 0 and stats.dropped_cancelled >= 3
