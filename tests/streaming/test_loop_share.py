"""Fair shares beside the generator (issue 19, measured with bench/abuse.py --probe): a
connection's event-loop time is bounded (its reading pauses beyond ``loop_share``), height
queries are admitted where that time is counted, every lane's generator work is counted
(``TileService.lane_stats``), and ``streaming.probe`` turns counters into percentiles.
Counts and states only: no assertion on how long anything took."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

import numpy as np
from stream_fixtures import SyntheticSource, loopback_server, run
from websockets.asyncio.client import connect

from runtime.tiles import T, TileKey, spacing_m
from streaming import protocol as P
from streaming.heights import HeightConfig, HeightService
from streaming.probe import EDGES_MS, Histogram, quantile_ms
from streaming.server import MAX_TILE_FRAME_BYTES, ServerConfig, _Connection
from streaming.tileservice import ServiceConfig, TileService

HELLO = P.pack({"type": "hello", "protocol": 1, "credits": 1024})


def _bare_connection(share: float, burst_s: float) -> _Connection:
    server = SimpleNamespace(config=ServerConfig(loop_share=share, loop_burst_s=burst_s), loop_pauses=0)
    conn = _Connection.__new__(_Connection)
    conn.server, conn.loop_debt_s, conn.loop_pauses, conn._debt_at = server, 0.0, 0, 0.0
    conn._over_since = None
    return conn


def test_loop_share_is_a_token_bucket_of_event_loop_cpu():
    async def main():
        conn = _bare_connection(share=0.05, burst_s=0.025)
        conn._debt_at = asyncio.get_running_loop().time()
        first = conn._charge_loop(0.02)  # within the burst: read on at once
        second = conn._charge_loop(0.02)  # 40 ms of debt, 15 beyond the burst: 15 / 0.05 = 0.3 s
        return first, second, conn

    first, second, conn = run(main())
    assert first == 0.0 and 0.2 < second <= 0.3, (first, second)
    assert conn.loop_pauses == 1 and conn.server.loop_pauses == 1
    # A client that spends little is never paused: 200 messages of 0.1 ms fit the burst.
    quiet = _bare_connection(share=0.05, burst_s=0.025)
    pauses = run(_charges(quiet, [1e-4] * 200))
    assert pauses == [0.0] * 200 and quiet.loop_pauses == 0


async def _charges(conn, costs):
    conn._debt_at = asyncio.get_running_loop().time()
    return [conn._charge_loop(c) for c in costs]


def test_a_request_cancel_flood_is_read_at_its_share_and_a_light_client_never_waits():
    """The churn attack: 256 fresh keys requested and cancelled as fast as the socket takes
    them. With a small share the flooding connection's reading pauses; a client that asks
    for a few tiles beside it is never paused and gets them."""

    async def main():
        cfg = ServerConfig(loop_share=0.01, loop_burst_s=0.002, loop_overuse_s=600.0)
        async with loopback_server(SyntheticSource(), server_config=cfg,
                                   service_config=ServiceConfig(batch_wait_s=0.0)) as (srv, url):
            flood = await connect(url, compression=None, max_size=MAX_TILE_FRAME_BYTES)
            good = await connect(url, compression=None, max_size=MAX_TILE_FRAME_BYTES)
            for ws in (flood, good):
                await ws.send(HELLO)
                await ws.recv()
            for r in range(40):
                keys = [[14, 100_000 * r + i, 7000] for i in range(256)]
                await flood.send(P.pack({"type": "request", "keys": keys}))
                await flood.send(P.pack({"type": "cancel", "keys": keys}))
            async with asyncio.timeout(30):
                while srv.loop_pauses == 0:
                    await asyncio.sleep(0.01)
            await good.send(P.pack({"type": "request", "keys": [[5, x, 3] for x in range(3)]}))
            got = [P.unpack(await asyncio.wait_for(good.recv(), 30), 1 << 30) for _ in range(3)]
            # Which connection is which by its address (the flood may have been sent a few tiles
            # before its cancels were read, so tile counts cannot tell them apart).
            name = {good.local_address: "good", flood.local_address: "flood"}
            pauses = {name[h.ws.remote_address]: h.loop_pauses for h in srv.handlers.values()}
            for ws in (flood, good):
                await ws.close()
            return got, pauses

    got, pauses = run(main())
    assert [m["type"] for m in got] == ["tile"] * 3
    assert pauses["flood"] >= 1 and pauses["good"] == 0, pauses


def test_a_connection_over_its_share_without_a_break_is_closed_1008_and_its_work_dropped():
    """A flood that never stops would leave a backlog in TCP that keeps the server busy long
    after (its requests read, its cancels still waiting): after loop_overuse_s of pauses on
    every message it is closed 1008, and its queued keys leave the generator queue."""

    async def main():
        src = SyntheticSource()
        src.gate.clear()  # the generator holds its first call: the flood's keys stay queued
        cfg = ServerConfig(loop_share=0.01, loop_burst_s=0.002, loop_overuse_s=0.2)
        async with loopback_server(src, server_config=cfg,
                                   service_config=ServiceConfig(batch_wait_s=0.0)) as (srv, url):
            flood = await connect(url, compression=None, max_size=MAX_TILE_FRAME_BYTES)
            await flood.send(HELLO)
            await flood.recv()

            async def never_stop():
                # Requests only, until the server closes the connection: the close is decided when
                # a message arrives, so a fixed count (60 once) could end before loop_overuse_s of
                # pauses had passed on a box where each message costs little (CI, 2026-12-07).
                try:
                    for r in itertools.count():  # bounded by the 30 s timeout below
                        keys = [[14, 1000 * r + i, 7000] for i in range(8)]
                        await flood.send(P.pack({"type": "request", "keys": keys}))
                except Exception:  # closed while sending: what this test waits for
                    pass

            async with asyncio.timeout(30):
                await never_stop()
                await flood.wait_closed()
            code = flood.close_code
            async with asyncio.timeout(30):
                while srv.connections:
                    await asyncio.sleep(0.01)
            st = srv.stats()
            src.gate.set()
            return code, st

    code, st = run(main())
    assert code == 1008 and st["overuse_closes"] == 1 and st["loop_pauses"] >= 2, (code, st)
    assert st["queued"] == 0 and st["waiting_keys"] <= 16, st  # at most the batch the held call took


def test_height_admission_holds_the_owners_tile_budget_until_released_once():
    async def fields(keys, owner=None):
        raise AssertionError("admission generates nothing")

    hs = HeightService("plane", fields, HeightConfig(max_level=16, max_tiles=16))
    s = spacing_m(12) * T
    pts = np.array([[(x + 0.5) * s, -0.5 * s] for x in range(3)])  # 3 fresh level-12 tiles
    plan = hs.admit(pts, "detailed", 12, owner="conn")
    assert plan.missing == 3 and hs._generating == {"conn": 3}
    second = hs.admit(pts, "detailed", 12, owner="conn")
    assert hs._generating == {"conn": 6}
    plan.release()
    plan.release()  # idempotent: the task's done callback and answer() may both call it
    assert hs._generating == {"conn": 3}
    second.release()
    assert hs._generating == {}


def test_lane_stats_count_each_lanes_generator_steps_and_waits():
    src = SyntheticSource()

    async def main():
        svc = TileService("plane", src, ServiceConfig(max_batch=1, batch_wait_s=0.0))
        await svc.start()
        try:
            await asyncio.gather(*(svc.get(TileKey(5, x, 0), owner="a") for x in range(3)),
                                 svc.get(TileKey(5, 9, 0), owner="b"))
            return svc.lane_stats("a"), svc.lane_stats("b"), svc.lane_stats("nobody"), svc.stats()
        finally:
            await svc.close()

    a, b, none, st = run(main())
    assert (a["key_steps"], a["keys_done"], b["key_steps"], b["keys_done"]) == (3, 3, 1, 1)
    # every finished key waited at least for its own generator call; all calls were counted
    assert a["calls_waited"] >= 3 and b["calls_waited"] >= 1
    assert a["calls_waited"] + b["calls_waited"] <= 4 * st.batches
    assert none == {"key_steps": 0, "generator_s": 0.0, "keys_done": 0, "calls_waited": 0, "wait_s": 0.0}


def test_probe_quantiles_come_from_the_difference_of_two_snapshots():
    h = Histogram()
    for ms in (0.1, 0.1, 0.1, 50.0):
        h.add(ms / 1000)
    before = list(h.counts)
    for ms in [1.0] * 98 + [100.0] * 2:
        h.add(ms / 1000)
    edge = lambda ms: next(e for e in EDGES_MS if e >= ms)  # noqa: E731 (the bucket's upper edge)
    assert quantile_ms(h.counts, before, 0.5) == edge(1.0)
    assert quantile_ms(h.counts, before, 0.99) == edge(100.0)
    assert quantile_ms(h.counts, None, 0.02) == edge(0.1)  # the earlier samples count without a snapshot
    assert np.isnan(quantile_ms(before, before, 0.5))
