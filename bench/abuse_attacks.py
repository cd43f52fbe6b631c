"""The hostile clients of ``bench/abuse.py``, one coroutine per attack.

Each ``attack(url, deadline, tally)`` runs on 127.0.0.1 until ``deadline``
(``time.monotonic``) and counts what it tried in ``tally``; ``attack_main`` runs one
in its own process so that its CPU is not the measured client's.
"""

from __future__ import annotations

import asyncio
import random
import time

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from runtime.tiles import T, spacing_m
from streaming import protocol as P
from streaming.server import MAX_TILE_FRAME_BYTES

HELLO = P.pack({"type": "hello", "protocol": P.PROTOCOL_VERSION, "credits": 1 << 16})
ATTACKS = (
    "never_hello",
    "churn",
    "stats_flood",
    "garbage_flood",
    "height_flood",
    "best_heights",
    "detailed_heights",
    "connect_churn",
    "absurd",
)


class Tally:
    def __init__(self):
        self.bad_inputs = 0  # hostile messages or connections tried
        self.closes: dict[int, int] = {}  # close codes the attacker saw
        self.refused = 0  # handshakes refused (HTTP 503)
        self.errors_read = 0  # error answers read back (absurd)
        self.non_error_answers = 0  # absurd input answered with something else than an error

    def closed(self, exc: BaseException) -> None:
        code = getattr(getattr(exc, "rcvd", None), "code", None)
        if code is None:
            code = getattr(exc, "code", -1)
        self.closes[code] = self.closes.get(code, 0) + 1


async def _send_until(ws, frames, deadline: float, tally: Tally) -> None:
    """Send ``frames()`` until the deadline; a send that blocks (the server stopped
    reading us) is retried until then."""
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(ws.send(frames()), max(0.01, deadline - time.monotonic()))
            tally.bad_inputs += 1
        except TimeoutError:
            return


async def _open(url: str, hello: bool = True, deadline: float | None = None, **kw):
    """A websocket to ``url`` (and its hello answered); the opening handshake gives up at
    ``deadline`` (``time.monotonic``; default 30 s): a server that accepts at its own pace
    keeps connects waiting in its backlog, and the attack must still end on time."""
    limit = 30.0 if deadline is None else max(0.05, deadline - time.monotonic())
    ws = await connect(url, compression=None, max_size=MAX_TILE_FRAME_BYTES, open_timeout=limit, **kw)
    if hello:
        await ws.send(HELLO)
        await ws.recv()
    return ws


async def never_hello(url, deadline, tally):
    live: set = set()

    async def hold():
        while time.monotonic() < deadline:
            try:
                ws = await _open(url, hello=False, deadline=deadline)
            except InvalidStatus:
                tally.refused += 1
                await asyncio.sleep(0.05)
                continue
            except (OSError, TimeoutError, InvalidHandshake):  # reset, or no handshake by the deadline
                await asyncio.sleep(0.05)
                continue
            tally.bad_inputs += 1
            live.add(ws)
            try:
                await asyncio.wait_for(ws.wait_closed(), max(0.01, deadline - time.monotonic()))
                tally.closed(ws.protocol.close_exc)
            except TimeoutError:
                pass
            live.discard(ws)
            await ws.close()

    await asyncio.gather(*(hold() for _ in range(1100)))


async def churn(url, deadline, tally):
    rng = random.Random(1)
    while time.monotonic() < deadline:  # closed by the server (1008: over its share): again
        ws = await _open(url)
        reader = asyncio.create_task(_drain(ws))
        try:
            while time.monotonic() < deadline:
                x0 = rng.randrange(-(1 << 20), 1 << 20)
                keys = [[14, x0 + i, 7000 + i // 16] for i in range(256)]
                await ws.send(P.pack({"type": "request", "keys": keys}))
                await ws.send(P.pack({"type": "cancel", "keys": keys}))
                tally.bad_inputs += 2
        except ConnectionClosed as exc:
            tally.closed(exc)
        reader.cancel()
        await ws.close()


async def _drain(ws):
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass


async def _flood(url, deadline, tally, frames, clients=1):
    async def one():
        ws = await _open(url, max_queue=1)  # read nothing beyond one frame: TCP fills up
        try:
            await _send_until(ws, frames, deadline, tally)
        except ConnectionClosed as exc:
            tally.closed(exc)
        ws.transport.abort()

    await asyncio.gather(*(one() for _ in range(clients)))


def _points(rng, n, spread_m):
    return P.encode_array(rng.uniform(-spread_m, spread_m, (n, 2)))


async def stats_flood(url, deadline, tally):
    await _flood(url, deadline, tally, lambda: P.pack({"type": "stats"}))


async def garbage_flood(url, deadline, tally):
    rng = random.Random(2)
    await _flood(url, deadline, tally, lambda: rng.randbytes(rng.randrange(1, 2000)))


async def height_flood(url, deadline, tally):
    rng = np.random.default_rng(3)
    ids = iter(range(1 << 62))
    # 4,096 points within one level-3 tile: accepted, answered (147 KB each), never read.
    await _flood(
        url,
        deadline,
        tally,
        lambda: P.pack({"type": "height", "id": next(ids), "points": _points(rng, 4096, 20_000.0), "mode": "best"}),
    )


async def _height_askers(url, deadline, tally, clients, mode, spread_m, level):
    rng = np.random.default_rng(4)

    async def one(i):
        ws = await _open(url)
        ids = iter(range(1 << 62))
        inflight = asyncio.Semaphore(4)  # the server's max_height_queries
        reader_done = asyncio.Event()

        async def read():
            try:
                async for data in ws:
                    if P.unpack(data, 1 << 30)["type"] in ("height", "error"):
                        inflight.release()
            except ConnectionClosed as exc:
                tally.closed(exc)
            reader_done.set()

        reader = asyncio.create_task(read())
        while time.monotonic() < deadline and not reader_done.is_set():
            try:
                await asyncio.wait_for(inflight.acquire(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            centre = rng.uniform(-1e8, 1e8, 2)
            pts = centre + rng.uniform(-spread_m, spread_m, (4096, 2))
            msg = {"type": "height", "id": next(ids), "points": P.encode_array(pts), "mode": mode}
            if level is not None:
                msg["level"] = level
            await ws.send(P.pack(msg))
            tally.bad_inputs += 1
        reader.cancel()
        await ws.close()

    await asyncio.gather(*(one(i) for i in range(clients)))


async def best_heights(url, deadline, tally):
    # Fresh areas: every point needs its level-3 fallback tile; spread over ~4 x 4 of them.
    s3 = spacing_m(3) * T
    await _height_askers(url, deadline, tally, 4, "best", 1.4 * s3, None)


async def detailed_heights(url, deadline, tally):
    s12 = spacing_m(12) * T
    await _height_askers(url, deadline, tally, 6, "detailed", 1.4 * s12, 12)


async def connect_churn(url, deadline, tally):
    rng = random.Random(5)

    async def one():
        while time.monotonic() < deadline:
            try:
                ws = await _open(url, deadline=deadline)
                x = rng.randrange(-(1 << 20), 1 << 20)
                await ws.send(P.pack({"type": "request", "keys": [[13, x + i, 99] for i in range(8)]}))
                tally.bad_inputs += 1
                await ws.close()
            except InvalidStatus:
                tally.refused += 1
            except (ConnectionClosed, OSError) as exc:
                tally.closed(exc)
            except (TimeoutError, InvalidHandshake):  # no handshake by the deadline
                pass

    await asyncio.gather(*(one() for _ in range(8)))


def absurd_messages():
    """Malformed messages, each of which must get an ``error`` answer."""
    arr = lambda shape, data=b"", dtype="<f8": {"dtype": dtype, "shape": shape, "data": data}
    shapes = [
        [2**62, 0],
        [0, 2**63],
        [2**64 - 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1 << 40, 2],
        [-1, 2],
        [True, 2],
        [4097, 2],
        [0, 2**31],
        ["a", 2],
    ]
    out = [{"type": "height", "id": 1, "points": arr(s)} for s in shapes]
    out += [
        {"type": "height", "id": 2, "points": arr([1, 2], b"\0" * 16, "|O")},
        {"type": "height", "id": 3, "points": arr([2, 2], b"\0" * 31)},
        {"type": "height", "id": 2**63, "points": arr([1, 2], b"\0" * 16)},
        {"type": "height", "id": 4, "points": arr([1, 2], b"\0" * 16), "level": 2**64 - 1},
        {"type": "height", "id": 5, "points": arr([1, 2], b"\xff" * 16)},  # NaN points
        {"type": "height", "id": 6, "points": arr([1, 2], b"\0" * 16), "mode": ["best"]},
        {"type": "request", "keys": [[2**63, 0, 0]]},
        {"type": "request", "keys": [[5, 2**64 - 1, -(2**63)]]},
        {"type": "request", "keys": [[5, 1, 1]], "priorities": [float("nan")]},
        {"type": "request", "keys": [[5, 1, 1]] * 257},
        {"type": "request", "keys": {"a": 1}},
        {"type": "cancel", "keys": [[1, 2]]},
        {"type": "credits", "n": 2**64 - 1},
        {"type": "credits", "n": -1},
        {"type": "hello", "protocol": 1},
        {"type": "nonsense"},
        {"type": 7},
        {"kind": "request"},
    ]
    return [P.pack(m) for m in out] + [b"\xc1", b"\x92\x01\x02", b"", b"\xdf\xff\xff\xff\xff"]


async def absurd(url, deadline, tally):
    ws = await _open(url)
    msgs = absurd_messages()
    try:
        while time.monotonic() < deadline:
            for m in msgs:
                await ws.send(m)
                tally.bad_inputs += 1
                ans = P.unpack(await ws.recv(), 1 << 30)
                if ans["type"] == "error":
                    tally.errors_read += 1
                else:
                    tally.non_error_answers += 1
    except ConnectionClosed as exc:
        tally.closed(exc)
    await ws.close()


def attack_main(name: str, url: str, duration_s: float, out) -> None:
    tally = Tally()
    deadline = time.monotonic() + duration_s

    async def go():
        try:
            await asyncio.wait_for(globals()[name](url, deadline, tally), duration_s + 30)
        except TimeoutError:
            pass

    asyncio.run(go())
    out.put(tally.__dict__ | {"cpu_s": time.process_time()})  # the attacker's CPU, all its threads
