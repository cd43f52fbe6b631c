"""Priority end to end: the real server over real websockets (TileServer, TileService, the
mesh encoder), with stream_fixtures' synthetic source held by its gate so that the order
in which the generator takes keys is observable.

What is checked: a root asked for behind a queue of deep tiles is generated (and sent)
first; a key re-prioritised by its client moves in the generator queue (the protocol's
"a key already pending is re-prioritised" reaches the generator, not only the send
queue); cancelled keys are dropped before generation; re-prioritising by another client
never reorders a lane that is not its own.
"""

import asyncio

import msgpack
from stream_fixtures import SyntheticSource, loopback_server, run
from websockets.asyncio.client import connect

from runtime.tiles import TileKey
from streaming import protocol as P
from streaming.fairqueue import FairQueue
from streaming.tileservice import ServiceConfig


async def _raw(url, credits=64):
    ws = await connect(url, compression=None, max_size=16 << 20)
    await ws.send(P.pack({"type": "hello", "protocol": 1, "credits": credits}))
    assert msgpack.unpackb(await ws.recv(), raw=False)["type"] == "hello"
    return ws


async def _next(ws, kind, timeout_s=20.0):
    async with asyncio.timeout(timeout_s):
        while True:
            msg = msgpack.unpackb(await ws.recv(), raw=False)
            if msg["type"] == kind:
                return msg


async def _request(ws, keys, prios):
    await ws.send(P.pack({"type": "request", "keys": [P.key_to_wire(k) for k in keys],
                          "priorities": [float(p) for p in prios]}))


async def _handled(ws):
    """Every message sent before this one has been handled by the server."""
    await ws.send(P.pack({"type": "stats"}))
    await _next(ws, "stats")


# One key per generator call, no batch wait: the call order is the queue's order. One mesh
# thread: tiles are meshed in the order they were made, so the send order is observable too
# (with two, a tile meshed beside another may finish first: the CI's 2 busy cores once sent
# the root 4th behind deep tiles meshed on the other thread).
ONE_BY_ONE = ServiceConfig(max_batch=1, batch_wait_s=0.0, workers=1)
BLOCKER = TileKey(14, 5000, 5000)
DEEP = [TileKey(16, 40_000 + i, 20_000) for i in range(12)]
ROOT = TileKey(0, 0, 0)


def test_a_root_asked_behind_a_queue_of_deep_tiles_is_generated_and_sent_first():
    src = SyntheticSource()

    async def main():
        async with loopback_server(src, service_config=ONE_BY_ONE) as (srv, url):
            ws = await _raw(url)
            src.gate.clear()
            src.entered.clear()
            await _request(ws, [BLOCKER], [0.0])
            await asyncio.to_thread(src.entered.wait, 10)  # the generator is busy
            # The viewer's priorities (protocol: higher first): deep prefetch tiles ...
            await _request(ws, DEEP, [-2000.0 - i for i in range(len(DEEP))])
            # ... then the root the camera needs (band HOLE: the most urgent).
            await _request(ws, [ROOT], [-5.0])
            await _handled(ws)
            src.gate.set()
            order = [TileKey(*(await _next(ws, "tile"))["key"]) for _ in range(2 + len(DEEP))]
            await ws.close()
            return order

    order = run(main())
    assert src.calls[0] == [BLOCKER]
    assert src.calls[1] == [ROOT]  # before every deep tile queued ahead of it
    assert src.keys_generated[2:] == DEEP  # then the deep tiles, most urgent (highest) first
    # Sent as it is meshed, right behind the tile that was generating when it was asked for.
    assert order[:2] == [BLOCKER, ROOT] and sorted(order) == sorted([BLOCKER, ROOT, *DEEP])


def test_a_re_prioritised_key_moves_in_the_generator_queue():
    src = SyntheticSource()
    late = DEEP[-1]

    async def main():
        async with loopback_server(src, service_config=ONE_BY_ONE) as (srv, url):
            ws = await _raw(url)
            src.gate.clear()
            src.entered.clear()
            await _request(ws, [BLOCKER], [0.0])
            await asyncio.to_thread(src.entered.wait, 10)
            await _request(ws, DEEP, [-2000.0 - i for i in range(len(DEEP))])
            # The camera turned: the least urgent deep tile is now a hole under it.
            await _request(ws, [late], [-1.0])
            await _handled(ws)
            src.gate.set()
            for _ in range(1 + len(DEEP)):
                await _next(ws, "tile")
            await ws.close()

    run(main())
    generated = src.keys_generated
    assert generated[:2] == [BLOCKER, late]
    assert generated[2:] == DEEP[:-1]
    assert len(generated) == 1 + len(DEEP)  # re-prioritising never generates a key twice


def test_stale_requests_are_dropped_before_generation_and_the_root_still_goes_first():
    src = SyntheticSource()

    async def main():
        async with loopback_server(src, service_config=ONE_BY_ONE) as (srv, url):
            ws = await _raw(url)
            src.gate.clear()
            src.entered.clear()
            await _request(ws, [BLOCKER], [0.0])
            await asyncio.to_thread(src.entered.wait, 10)
            await _request(ws, DEEP, [-2000.0] * len(DEEP))
            # A teleport: every deep tile is superseded by the new place's root.
            await ws.send(P.pack({"type": "cancel", "keys": [P.key_to_wire(k) for k in DEEP]}))
            await _request(ws, [ROOT], [-5.0])
            await _handled(ws)
            src.gate.set()
            got = {TileKey(*(await _next(ws, "tile"))["key"]) for _ in range(2)}
            await _handled(ws)
            stats = srv.service.stats()
            await ws.close()
            return got, stats

    got, stats = run(main())
    assert got == {BLOCKER, ROOT}
    assert src.calls == [[BLOCKER], [ROOT]]
    assert stats.dropped_cancelled == len(DEEP) and stats.queued == 0


def test_another_client_cannot_reorder_a_lane_that_is_not_its_own():
    src = SyntheticSource()
    shared = DEEP[-1]

    async def main():
        async with loopback_server(src, service_config=ONE_BY_ONE) as (srv, url):
            a, b = await _raw(url), await _raw(url)
            src.gate.clear()
            src.entered.clear()
            await _request(a, [BLOCKER], [0.0])
            await asyncio.to_thread(src.entered.wait, 10)
            await _request(a, DEEP, [-2000.0 - i for i in range(len(DEEP))])
            await _handled(a)
            await _request(b, [shared], [-3000.0])  # b waits too (deduplicated into a's lane) ...
            await _request(b, [shared], [1e6])  # ... and claims a huge priority for it
            await _handled(b)
            src.gate.set()
            for _ in range(1 + len(DEEP)):
                await _next(a, "tile")
            await _next(b, "tile")
            await a.close()
            await b.close()

    run(main())
    assert src.keys_generated == [BLOCKER, *DEEP]  # a's own order, untouched by b


def test_fair_queue_reprioritise_reorders_within_the_lane_only():
    q = FairQueue()
    for i, item in enumerate("abcd"):
        q.push("one", item, float(i))  # d is the most urgent
    q.push("two", "x", 0.0)
    assert q.reprioritise("a", 10.0) and not q.reprioritise("zz", 1.0)
    assert q.owner("a") == "one" and len(q) == 5
    assert [q.pop() for _ in range(5)] == ["a", "x", "d", "c", "b"]
    for _ in range(100):  # dead entries stay bounded however often a key moves
        q.push("one", "k", 0.0)
        for p in range(50):
            q.reprioritise("k", float(p))
        assert q.heap_entries() <= 2 * len(q) + 17
        assert q.pop() == "k"


def test_generated_tiles_are_meshed_most_urgent_first_and_cancelled_ones_not_at_all():
    import threading

    from streaming.tileservice import TileService, mesh_encoder

    src = SyntheticSource()
    real = mesh_encoder()
    gate, meshing, meshed = threading.Event(), threading.Event(), []

    def encode(world, key, fields):  # the real encoder, held on its first tile
        meshing.set()
        gate.wait(30)
        meshed.append(key)
        return real(world, key, fields)

    deep = DEEP[:5]

    async def main():
        s = TileService("plane", src, ServiceConfig(max_batch=8, batch_wait_s=0.0, workers=1), encode=encode)
        await s.start()
        try:
            futs = {k: s.get(k, -2000.0 - i) for i, k in enumerate(deep)}  # one batch of deep tiles
            await asyncio.to_thread(meshing.wait, 10)  # deep[0] is being meshed, the rest wait
            root = s.get(ROOT, -5.0)
            while len(src.keys_generated) < len(deep) + 1:  # the root generated behind them
                await asyncio.sleep(0.01)
            s.release(deep[3], futs.pop(deep[3]))  # cancelled while it waits for the mesh
            gate.set()
            await asyncio.gather(root, *futs.values())
            return s.stats()
        finally:
            await s.close()

    stats = run(main())
    assert meshed[0] == deep[0] and meshed[1] == ROOT  # the root before the deep tiles queued ahead
    assert meshed[2:] == [deep[1], deep[2], deep[4]]  # then by priority; deep[3] never meshed
    assert stats.dropped_unmeshed == 1


def test_client_reprioritise_skips_tiles_already_received_so_none_comes_twice():
    from streaming.client import TileClient

    src = SyntheticSource()
    a, b = TileKey(9, 1, 1), TileKey(9, 2, 1)

    async def main():
        async with loopback_server(src, service_config=ONE_BY_ONE) as (srv, url):
            c = TileClient()
            await c.connect(url)
            await c.request([a], [1.0])
            key, _ = await asyncio.wait_for(c.tiles.get(), 20)  # a is here (being placed, say)
            src.gate.clear()
            src.entered.clear()
            await c.request([b], [1.0])
            await asyncio.to_thread(src.entered.wait, 10)  # b is being generated
            await c.reprioritise([a, b], [5.0, 5.0])  # the next frame moves both
            stats = await c.stats()  # every message above was handled
            src.gate.set()
            key_b, _ = await asyncio.wait_for(c.tiles.get(), 20)
            final = await c.stats()
            await c.close()
            return key, key_b, stats, final

    key, key_b, stats, final = run(main())
    assert (key, key_b) == (a, b)
    assert stats["pending"] == 1  # only b: a was not asked for again
    assert final["sent_tiles"] == 2 and final["server"]["requests"] == 2
