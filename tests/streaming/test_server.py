"""The real server over real websockets on 127.0.0.1, with the real mesh encoder.

The tile source is the deterministic synthetic one of stream_fixtures (it isolates
the server from the generator and lets tests count, fail and hold generator calls).
"""

import asyncio

import msgpack
import numpy as np
import pytest
from stream_fixtures import SyntheticSource, analytic_height, loopback_server, run
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runtime.tiles import TileKey, level_error_m
from streaming import protocol as P
from streaming.client import ServerError, SyncTileClient, TileClient
from streaming.protocol import Limits
from streaming.server import ServerConfig
from streaming.tileservice import ServiceConfig


async def _raw(url, credits=64, **kw):
    ws = await connect(url, compression=None, max_size=16 << 20, **kw)
    await ws.send(P.pack({"type": "hello", "protocol": 1, "credits": credits}))
    hello = msgpack.unpackb(await ws.recv(), raw=False)
    assert hello["type"] == "hello"
    return ws


async def _next(ws, kind=None, timeout_s=20.0):
    async with asyncio.timeout(timeout_s):
        while True:
            msg = msgpack.unpackb(await ws.recv(), raw=False)
            if kind is None or msg["type"] == kind:
                return msg


def test_tiles_arrive_decoded_with_the_source_heights():
    keys = [TileKey(6, 3, -2), TileKey(6, 4, -2)]

    async def main():
        async with loopback_server() as (server, url):
            c = TileClient()
            hello = await c.connect(url, expect={"world": "plane", "seed": 1})
            assert (hello.world, hello.seed, hello.model, hello.tile_size) == ("plane", 1, "synthetic-1", 256)
            tiles = await c.fetch(keys)
            await c.close()
            return tiles

    tiles = run(main())
    for k in keys:
        t = tiles[k]
        assert t.key == k and t.model == "synthetic-1" and t.image is not None
        r0, c0 = k.sample_origin()
        rc = t.grid_rc.astype(np.int64)
        truth = analytic_height(k.level, rc[:, 0] + r0, rc[:, 1] + c0).astype(np.float64)
        # Quantised on the wire to height_step_m; meshed within the level's error bound.
        assert np.abs(t.height_m - truth).max() <= t.height_step_m
        assert t.geometric_error_m == pytest.approx(level_error_m(6))
        assert len(t.grid_rc) >= 4 and len(t.faces) >= 2


def test_requests_from_many_clients_are_deduplicated_and_batched():
    src = SyntheticSource()
    keys = [TileKey(5, x, 0) for x in range(8)]

    async def main():
        async with loopback_server(src, service_config=ServiceConfig(max_batch=8, batch_wait_s=0.05)) as (
            srv,
            url,
        ):
            clients = [TileClient() for _ in range(5)]
            for c in clients:
                await c.connect(url)
            src.gate.clear()  # hold the generator until every client has asked
            results = asyncio.gather(*(c.fetch(keys) for c in clients))
            await asyncio.sleep(0.3)
            src.gate.set()
            got = await results
            for c in clients:
                await c.close()
            return got, srv.service.stats()

    got, stats = run(main())
    assert all(set(g) == set(keys) for g in got)
    assert sorted(src.keys_generated) == sorted(keys)  # each key generated once for 5 clients
    assert len(src.calls) <= 2 and stats.mean_batch >= 4.0  # batched, not one by one


def test_cancelled_requests_never_reach_the_generator():
    src = SyntheticSource()
    first, dropped, last = TileKey(7, 0, 0), [TileKey(7, i, 1) for i in range(6)], TileKey(7, 9, 9)

    async def main():
        async with loopback_server(src, service_config=ServiceConfig(batch_wait_s=0.0)) as (srv, url):
            ws = await _raw(url)
            src.gate.clear()
            src.entered.clear()
            await ws.send(P.pack({"type": "request", "keys": [P.key_to_wire(first)]}))
            await asyncio.to_thread(src.entered.wait, 10)  # the generator is busy with `first`
            await ws.send(P.pack({"type": "request", "keys": [P.key_to_wire(k) for k in dropped]}))
            await ws.send(P.pack({"type": "cancel", "keys": [P.key_to_wire(k) for k in dropped]}))
            await ws.send(P.pack({"type": "request", "keys": [P.key_to_wire(last)]}))
            await ws.send(P.pack({"type": "stats"}))
            await _next(ws, "stats")  # every message above was handled
            src.gate.set()
            got = {tuple((await _next(ws, "tile"))["key"]) for _ in range(2)}
            await ws.close()
            return got, srv.service.stats()

    got, stats = run(main())
    assert got == {(7, 0, 0), (7, 9, 9)}
    assert src.calls == [[first], [last]]  # the six cancelled keys cost no generator call
    assert stats.dropped_cancelled == 6


def test_a_generator_exception_reaches_only_that_tiles_requesters():
    bad = TileKey(4, 2, 2)
    src = SyntheticSource(fail={bad})
    good = [TileKey(4, 1, 2), TileKey(4, 3, 2)]

    async def main():
        async with loopback_server(src, service_config=ServiceConfig(batch_wait_s=0.05)) as (srv, url):
            a, b = TileClient(), TileClient()
            await a.connect(url)
            await b.connect(url)
            await a.request([bad, *good])
            other = asyncio.create_task(b.fetch(good + [TileKey(4, 0, 0)]))
            seen = {}
            async with asyncio.timeout(20):
                while len(seen) < 3:
                    key, tile = await a.tiles.get()
                    seen[key] = tile
            got_b = await other
            # The failed tile can be asked for again (it is not cached as a failure).
            with pytest.raises(ServerError) as info:
                await a.fetch([bad])
            await a.close()
            await b.close()
            return seen, got_b, info.value

    seen, got_b, err = run(main())
    assert (
        isinstance(seen[bad], ServerError) and seen[bad].code == "generator_failed" and seen[bad].key == bad
    )
    assert "synthetic failure on 4/2/2" in seen[bad].message
    assert all(not isinstance(seen[k], ServerError) and seen[k].key == k for k in good)
    assert set(got_b) == set(good + [TileKey(4, 0, 0)])
    assert err.code == "generator_failed"


def test_hostile_client_never_disturbs_a_well_behaved_one():
    lim = Limits(max_message_bytes=4096, max_keys_per_request=8, max_in_flight=16, max_level=12)
    keys = [TileKey(3, x, y) for x in range(3) for y in range(2)]

    expected = ["hello_required"]

    async def hostile(url):
        codes = []
        ws = await connect(url, compression=None)
        # Before hello, then garbage of every kind; the connection stays open throughout.
        await ws.send(P.pack({"type": "request", "keys": [[1, 0, 0]]}))
        codes.append((await _next(ws))["code"])
        await ws.send(P.pack({"type": "hello", "protocol": 1, "credits": 4}))
        await _next(ws, "hello")
        bad_frames = [  # (frame, the error code it earns; None: accepted)
            (b"\xc1\xc1", "malformed"),
            (b"", "malformed"),
            ("text frame", "malformed"),
            (msgpack.packb([1, 2]), "malformed"),
            (msgpack.packb({"type": 5}), "malformed"),
            (P.pack({"type": "teleport"}), "unknown_type"),
            (P.pack({"type": "request", "keys": [[99, 0, 0]]}), "bad_key"),
            (P.pack({"type": "request", "keys": [[1, 0, 0]] * 9}), "too_many_keys"),
            (P.pack({"type": "request", "keys": [[2, i, 0] for i in range(8)]}), None),
            (P.pack({"type": "request", "keys": [[2, i, 1] for i in range(8)]}), None),
            (P.pack({"type": "request", "keys": [[2, 0, 2]]}), "limit"),  # over max_in_flight now
            (P.pack({"type": "request", "keys": [["a", "b", "c"]]}), "bad_key"),
            (P.pack({"type": "request", "keys": [[1, 0, 0]], "priorities": [float("nan")]}), "malformed"),
            (P.pack({"type": "credits", "n": "many"}), "malformed"),
            (P.pack({"type": "cancel", "keys": {"a": 1}}), "malformed"),
            (
                P.pack({"type": "height", "id": 1, "points": {"dtype": "|O", "shape": [1], "data": b"x"}}),
                "malformed",
            ),
            (
                P.pack({"type": "height", "id": 2, "points": P.encode_array(np.full((1, 2), np.nan))}),
                "malformed",
            ),
            (P.pack({"type": "hello", "protocol": 1}), "malformed"),
        ]
        for f, _ in bad_frames:
            await ws.send(f)
        for _, code in bad_frames:
            if code is not None:
                codes.append((await _next(ws, "error"))["code"])
                expected.append(code)
        # A frame over max_message_bytes: websockets closes with 1009, nothing else happens.
        await ws.send(b"\x80" * 5000)
        with pytest.raises(ConnectionClosed) as info:
            await _next(ws, "nothing")
        codes.append(info.value.rcvd.code)
        expected.append(1009)
        # Wrong protocol version: an error, then close 1008.
        ws2 = await connect(url, compression=None)
        await ws2.send(P.pack({"type": "hello", "protocol": 2}))
        codes.append((await _next(ws2))["code"])
        with pytest.raises(ConnectionClosed) as info2:
            await _next(ws2)
        codes.append(info2.value.rcvd.code)
        expected.extend(["unsupported_version", 1008])
        return codes

    async def main():
        async with loopback_server(limits=lim, service_config=ServiceConfig(batch_wait_s=0.0)) as (srv, url):
            good = TileClient()
            await good.connect(url)
            h_task = asyncio.create_task(hostile(url))
            got = await good.fetch(keys)
            codes = await h_task
            got2 = await good.fetch([TileKey(3, 5, 5)])  # still served after the storm
            late = TileClient()
            await late.connect(url)  # the server still accepts connections
            got3 = await late.fetch([TileKey(3, 0, 0)])
            stats = await good.stats()
            await good.close()
            await late.close()
            return got, got2, got3, codes, good.errors, stats

    got, got2, got3, codes, good_errors, stats = run(main())
    assert set(got) == set(keys) and TileKey(3, 5, 5) in got2 and TileKey(3, 0, 0) in got3
    assert good_errors == [] and stats["errors"] == 0
    assert codes == expected


def test_token_and_origin_allow_list():
    async def main():
        async with loopback_server(token="s3cret", origins=["https://sim.example"]) as (srv, url):
            with pytest.raises(InvalidStatus) as info:
                await connect(url, origin="https://evil.example")
            assert info.value.response.status_code == 403
            c = TileClient()
            with pytest.raises(ServerError) as e:
                await c.connect(url, token="wrong", origin="https://sim.example")
            assert e.value.code == "unauthorized"
            ok = TileClient()
            await ok.connect(url, token="s3cret", origin="https://sim.example")
            got = await ok.fetch([TileKey(2, 0, 0)])
            await ok.close()
            return got

    assert TileKey(2, 0, 0) in run(main())


def test_wrong_world_in_client_hello_is_refused():
    async def main():
        async with loopback_server() as (srv, url):
            c = TileClient()
            with pytest.raises(ServerError) as e:
                await c.connect(url, expect={"world": "earth"})
            return e.value

    err = run(main())
    assert err.code == "wrong_world" and "plane" in err.message


def test_connection_limit_answers_503():
    async def main():
        async with loopback_server(server_config=ServerConfig(max_connections=1)) as (srv, url):
            a = await _raw(url)
            with pytest.raises(InvalidStatus) as info:
                await connect(url)
            await a.close()
            return info.value.response.status_code

    assert run(main()) == 503


def test_a_client_that_never_reads_cannot_grow_server_memory():
    """Tiles of ~150 KB (noisy heights and colour); the stalled client asks for 24
    (3.7 MB), grants every credit and reads nothing. What the server holds for it
    stays within max_queued_bytes + write_limit + a frame; another client is served
    meanwhile; when the stalled client drops, everything held for it is freed. The
    kernel's socket buffers (the kernel's memory, not the server's) are made small on
    both ends so that a few MB show the bound."""
    lim = Limits(max_queued_bytes=512 << 10, max_in_flight=64)
    write_limit = 128 << 10
    src = SyntheticSource(noise_m=20.0, noisy_rgb=True)
    keys = [TileKey(14, x, 0) for x in range(24)]

    async def main():
        import socket

        cfg = ServiceConfig(max_batch=8, batch_wait_s=0.0)
        async with loopback_server(
            src, limits=lim, server_config=ServerConfig(write_limit_bytes=write_limit), service_config=cfg
        ) as (srv, url):
            sock = socket.create_connection(("127.0.0.1", srv.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ws = await connect(
                url, sock=sock, compression=None, max_size=16 << 20, max_queue=1, ping_interval=None
            )
            await ws.send(P.pack({"type": "hello", "protocol": 1, "credits": 1000}))
            assert msgpack.unpackb(await ws.recv(), raw=False)["type"] == "hello"  # the last frame it reads
            (session,) = srv.sessions
            server_sock = srv.sessions[session].transport.get_extra_info("socket")
            server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)  # no 4 MB autotuning
            await ws.send(P.pack({"type": "request", "keys": [P.key_to_wire(k) for k in keys]}))
            held_max = 0
            async with asyncio.timeout(60):
                while srv.service.stats().lru_tiles < len(keys):  # every tile made and encoded
                    await asyncio.sleep(0.02)
                    held_max = max(held_max, srv.held_bytes(session))
            good = TileClient()
            await good.connect(url)
            served = await good.fetch([TileKey(14, 0, 5)], timeout_s=20)
            for _ in range(20):
                await asyncio.sleep(0.02)
                held_max = max(held_max, srv.held_bytes(session))
            st = srv.service.stats()
            frame_bytes = st.lru_bytes / st.lru_tiles
            sent, parked = session.sent_tiles, len(session.parked)
            ws.transport.abort()
            async with asyncio.timeout(10):
                while session in srv.sessions:
                    await asyncio.sleep(0.01)
            await good.close()
            return held_max, frame_bytes, sent, parked, served, srv.held_bytes()

    held_max, frame_bytes, sent, parked, served, held_after = run(main(), 120)
    print(
        f"held at most {held_max} B for the stalled client; {frame_bytes:.0f} B/frame, {sent} sent, "
        f"{parked} parked"
    )
    assert frame_bytes > 120_000 and frame_bytes * len(keys) > 3 << 20
    assert held_max <= lim.max_queued_bytes + write_limit + 2 * frame_bytes
    assert sent < len(keys) and parked > 0  # the bound was reached: the rest waited as keys only
    assert TileKey(14, 0, 5) in served and held_after == 0


def test_a_client_that_disconnects_mid_stream_leaves_the_server_serving():
    src = SyntheticSource()
    keys = [TileKey(8, x, 3) for x in range(40)]

    async def main():
        cfg = ServiceConfig(max_batch=4, batch_wait_s=0.0, max_encoding=4)
        async with loopback_server(src, service_config=cfg) as (srv, url):
            quitter = await _raw(url, credits=100)
            await quitter.send(P.pack({"type": "request", "keys": [P.key_to_wire(k) for k in keys]}))
            await _next(quitter, "tile")  # streaming has begun
            src.gate.clear()  # the generator holds its next batch while the client vanishes
            quitter.transport.abort()  # gone without a close handshake
            async with asyncio.timeout(10):
                while srv.connections:
                    await asyncio.sleep(0.01)
            calls_at_drop = len(src.keys_generated)
            src.gate.set()
            good = TileClient()
            await good.connect(url)
            got = await good.fetch([TileKey(8, 99, 99)])
            await good.close()
            return got, calls_at_drop, srv.service.stats()

    got, calls_at_drop, stats = run(main())
    assert TileKey(8, 99, 99) in got
    # What the quitter still had queued was dropped, not generated for nobody.
    assert stats.generated < 41 and stats.dropped_cancelled > 0
    assert calls_at_drop <= stats.generated


def test_sync_client_fetches_and_reports_stats():
    import threading

    result = {}
    ready = threading.Event()
    stop = None

    async def serve():
        nonlocal stop
        stop = asyncio.Event()
        async with loopback_server() as (srv, url):
            result["url"] = url
            ready.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    th.start()
    assert ready.wait(20)
    try:
        c = SyncTileClient(result["url"])
        tiles = c.fetch([TileKey(1, 0, 0), TileKey(1, 1, 0)], timeout_s=30)
        stats = c.stats()
        c.close()
    finally:
        loop.call_soon_threadsafe(stop.set)
        th.join(20)
    assert set(tiles) == {TileKey(1, 0, 0), TileKey(1, 1, 0)}
    assert stats["sent_tiles"] == 2 and stats["server"]["generated"] == 2
