"""New connections are accepted at a bounded rate (``ServerConfig.accept_rate``): beyond
it the listening socket is not read and newcomers wait in the kernel's backlog, so a
handshake flood costs the event loop a bounded number of handshakes per second; nobody is
refused for it, and clients already connected are served throughout."""

from __future__ import annotations

import asyncio

import pytest
from stream_fixtures import loopback_server, run

from runtime.tiles import TileKey
from streaming.admission import AcceptRate
from streaming.client import TileClient
from streaming.server import ServerConfig


def test_accept_rate_passes_a_burst_then_spaces_connections_at_the_rate():
    r = AcceptRate(rate=10.0, burst=3)
    assert [r.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert r.take(0.0) == pytest.approx(0.1)  # then one token per 1/rate s, in arrival order
    assert r.take(0.0) == pytest.approx(0.2)
    assert r.wait_s(0.1) == pytest.approx(0.1)  # the debt is paid down at the rate
    assert r.wait_s(0.2) == 0.0
    assert r.take(10.0) == 0.0 and r.tokens == pytest.approx(2.0)  # refilled to the burst, no further
    assert r.accepted == 6
    r.refund()  # a plain HTTP request: its token comes back, the burst is the cap
    assert r.accepted == 5 and r.tokens == pytest.approx(3.0)


@pytest.mark.parametrize("rate, burst", [(0.0, 5), (-1.0, 5), (5.0, 0.5)])
def test_accept_rate_rejects_what_is_not_a_rate(rate, burst):
    with pytest.raises(ValueError, match="accept rate"):
        AcceptRate(rate, burst)


def test_server_config_says_what_an_accept_rate_must_be():
    for rate in (-1.0, 5.0):  # below 10 a burst would wait longer than the handshake's deadline
        with pytest.raises(ValueError, match="accept_rate"):
            ServerConfig(accept_rate=rate)
    with pytest.raises(ValueError, match="accept_burst"):
        ServerConfig(accept_burst=0.0)


def test_connections_beyond_the_rate_wait_their_turn_none_is_refused_and_the_connected_are_served():
    cfg = ServerConfig(accept_rate=10.0, accept_burst=1)  # every newcomer waits ~0.1 s for its turn

    async def main():
        async with loopback_server(server_config=cfg) as (srv, url):
            first = TileClient()
            await first.connect(url)  # takes the one token of the burst
            newcomers = [TileClient() for _ in range(8)]
            connecting = asyncio.gather(*(c.connect(url) for c in newcomers))
            await asyncio.sleep(0)
            # The listener pauses while the newcomers wait; the connected client is served meanwhile.
            got = await first.fetch([TileKey(5, 1, 1)])
            await connecting  # every newcomer gets in (no 503, no reset)
            for c in (first, *newcomers):
                await c.close()
            return srv.stats(), srv.listener.paused, got

    stats, paused, got = run(main())
    assert TileKey(5, 1, 1) in got
    assert stats["accepted"] == 9 and stats["accept_pauses"] >= 1 and stats["refused_full"] == 0
    assert not paused  # accepting again once the newcomers' turns came


def test_an_accept_rate_of_zero_is_no_limit():
    async def main():
        async with loopback_server(server_config=ServerConfig(accept_rate=0.0)) as (srv, url):
            clients = [TileClient() for _ in range(5)]
            await asyncio.gather(*(c.connect(url) for c in clients))
            for c in clients:
                await c.close()
            return srv.stats(), srv.listener

    stats, listener = run(main())
    assert listener is None and stats["accept_pauses"] == 0 and stats["accepted"] == 5
