"""Client library for simulators and the viewer: fetch tiles and query heights.

``TileClient`` is asyncio; ``SyncTileClient`` runs one in a background thread for
frame loops and scripts that are not async. Tiles are decoded (runtime.wire) on
the client's thread, so a frame loop only uploads.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from runtime.tiles import TileKey
from streaming import protocol as P
from streaming.server import MAX_TILE_FRAME_BYTES

TRY_AGAIN = 3  # reconnects after a close 1013 (try again later) during the handshake
log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """An ``error`` message from the server."""

    def __init__(self, code: str, message: str, key: TileKey | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.key = code, message, key


@dataclass(frozen=True)
class ServerHello:
    world: str
    seed: int
    model: str
    tile_size: int
    limits: dict[str, int]
    layers: tuple[str, ...] = ()  # payload layers the server serves (docs/PROTOCOL.md)


class TileClient:
    """One websocket connection. Credits are granted as tiles are consumed."""

    def __init__(self, window: int = 64, decode: bool = True):
        self.window = window
        self.decode = decode  # False: tiles are the raw wire payload maps (benchmarks, proxies)
        # skip_decode(key) -> True: nobody wants this tile any more (cancelled, not asked
        # again): it is queued as (key, None), not decoded. Called on the network thread.
        self.skip_decode: Callable[[TileKey], bool] | None = None
        self.ws: ClientConnection | None = None
        self.hello: ServerHello | None = None
        self.tiles: asyncio.Queue[tuple[TileKey, Any]] = asyncio.Queue()
        self.errors: list[ServerError] = []
        self._height_futures: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._unacked = 0
        self._stats: asyncio.Future | None = None
        self._fetching: dict[TileKey, list[asyncio.Future]] = {}  # keys awaited by fetch()
        self._pending: set[TileKey] = set()  # requested, not yet received, failed or cancelled
        self._reader: asyncio.Task | None = None

    async def connect(
        self,
        url: str,
        token: str | None = None,
        origin: str | None = None,
        expect: dict[str, Any] | None = None,
    ) -> ServerHello:
        """Open the websocket and shake hands. ``expect`` may name the ``world``, ``seed``
        and ``model`` this client was built for (the server refuses a mismatch) and the
        ``layers`` it wants (e.g. ``["features"]``; ``hello.layers`` says what the server has).

        A close 1013 (try again later: evicted while unauthenticated, or the server was
        full at that moment) before the server's hello is retried, up to ``TRY_AGAIN``
        times with a growing pause."""
        hello: dict[str, Any] = {"type": "hello", "protocol": P.PROTOCOL_VERSION, "credits": self.window}
        if token is not None:
            hello["token"] = token
        hello.update(expect or {})
        for attempt in range(TRY_AGAIN + 1):
            self.ws = await connect(
                url, compression=None, max_size=MAX_TILE_FRAME_BYTES, open_timeout=30, origin=origin
            )
            try:
                await self.ws.send(P.pack(hello))
                data = await self.ws.recv()
                break
            except ConnectionClosed as exc:
                if exc.rcvd is None or exc.rcvd.code != 1013 or attempt == TRY_AGAIN:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        msg = P.unpack(data, MAX_TILE_FRAME_BYTES)
        if msg["type"] == "error":
            raise ServerError(msg.get("code", "?"), msg.get("message", ""))
        if msg["type"] != "hello":
            raise ServerError(P.ErrorCode.MALFORMED, f"expected hello from server, got {msg['type']!r}")
        self.hello = ServerHello(msg["world"], msg["seed"], msg["model"], msg["tile_size"], msg["limits"],
                                 tuple(msg.get("layers", ())))
        self._reader = asyncio.create_task(self._read())
        return self.hello

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def request(self, keys: Sequence[TileKey], priorities: Sequence[float] | None = None,
                      pending_only: bool = False) -> None:
        """Ask for ``keys`` (priorities higher first). ``pending_only``: only re-prioritise
        those the server still has pending; the others are not asked again."""
        assert self.ws is not None and self.hello is not None
        if not pending_only:
            self._pending.update(keys)
        step = self.hello.limits.get("max_keys_per_request", 256)
        prios = list(priorities) if priorities is not None else [0.0] * len(keys)
        extra = {"pending_only": True} if pending_only else {}
        for i in range(0, len(keys), step):
            await self.ws.send(
                P.pack(
                    {
                        "type": "request",
                        "keys": [P.key_to_wire(k) for k in keys[i : i + step]],
                        "priorities": [float(p) for p in prios[i : i + step]],
                        **extra,
                    }
                )
            )

    async def reprioritise(self, keys: Sequence[TileKey], priorities: Sequence[float]) -> None:
        """New priorities (higher first) for keys requested earlier whose tile has not
        arrived yet, sent as a ``pending_only`` request: a plain ``request`` for a key the
        server has already sent is a new request, and a tile still in transit when its new
        priority reached the server came twice (44-84 duplicate tiles in an earth flight of six
        teleports before, none after; docs/DECISIONS.md 54)."""
        still = [(k, p) for k, p in zip(keys, priorities, strict=True) if k in self._pending]
        if still:
            await self.request([k for k, _ in still], [p for _, p in still], pending_only=True)

    async def cancel(self, keys: Iterable[TileKey]) -> None:
        assert self.ws is not None
        keys = list(keys)
        self._pending.difference_update(keys)
        await self.ws.send(P.pack({"type": "cancel", "keys": [P.key_to_wire(k) for k in keys]}))

    async def fetch(self, keys: Sequence[TileKey], timeout_s: float = 120.0) -> dict[TileKey, Any]:
        """Request ``keys`` and wait for all of them (decoded); raises ServerError on failure.

        Tiles of a fetch go to its caller, not to ``tiles``; several fetches (and
        ``request`` + ``tiles``) may run at once on one connection."""
        loop = asyncio.get_running_loop()
        futs = {k: loop.create_future() for k in dict.fromkeys(keys)}
        for k, f in futs.items():
            self._fetching.setdefault(k, []).append(f)
        try:
            await self.request(list(futs))
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*futs.values())
            return {k: futs[k].result() for k in keys}
        finally:
            for k, f in futs.items():
                waiting = self._fetching.get(k)
                if waiting is not None and f in waiting:
                    waiting.remove(f)
                    if not waiting:
                        del self._fetching[k]
                if f.done() and not f.cancelled():
                    f.exception()  # retrieved: no "never retrieved" warning for the rest
                f.cancel()

    async def stats(self) -> dict[str, Any]:
        """This connection's and the server's counters (a ``stats`` message)."""
        assert self.ws is not None
        self._stats = asyncio.get_running_loop().create_future()
        await self.ws.send(P.pack({"type": "stats"}))
        return await self._stats

    async def heights(self, points_xy: np.ndarray, mode: str = "best", level: int | None = None,
                      surface: str = "bare") -> dict:
        """Heights at (n, 2) points (plane: east, north m; earth: lon, lat deg); returns
        ``height_m`` (n,) float64 bare earth (alias ``ground_m``), ``normal`` (n, 3) float64
        unit east-north-up (alias ``normal_enu``), ``level`` (n,) int32, and from servers
        that send them ``water_m`` (n,) float64 (NaN where dry) and ``is_water`` (n,) bool.
        ``mode``: ``best`` (level ``level`` or 16) or ``detailed`` (level ``level`` or the
        server's max); the answer depends only on the world, model, points, mode, level and
        surface. ``surface="buildings"``: ``height_m`` is the roof inside a building footprint
        (collision), ``ground_m`` the bare earth, ``on_building`` (n,) bool (docs/PROTOCOL.md)."""
        assert self.ws is not None
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._height_futures[rid] = fut
        msg = {
            "type": "height",
            "id": rid,
            "points": P.encode_array(np.asarray(points_xy, np.float64)),
            "mode": mode,
        }
        if level is not None:
            msg["level"] = level
        if surface != "bare":  # absent means bare: the request of a bare query is unchanged
            msg["surface"] = surface
        await self.ws.send(P.pack(msg))
        return await fut

    async def _read(self) -> None:
        assert self.ws is not None
        async for data in self.ws:
            msg = P.unpack(data, MAX_TILE_FRAME_BYTES)
            kind = msg["type"]
            if kind == "tile":
                key = TileKey(*msg["key"])
                self._pending.discard(key)  # before decoding: no re-request while it decodes
                skip = self.skip_decode
                if skip is not None and key not in self._fetching and skip(key):
                    tile = None  # given up on: its decode would be thrown away
                else:
                    tile = _decode_tile(msg["tile"]) if self.decode else msg["tile"]
                waiting = self._fetching.pop(key, None)
                if waiting:
                    for f in waiting:
                        if not f.done():
                            f.set_result(tile)
                else:
                    await self.tiles.put((key, tile))
                self._unacked += 1
                if self._unacked >= self.window // 2:
                    await self.ws.send(P.pack({"type": "credits", "n": self._unacked}))
                    self._unacked = 0
            elif kind == "height":
                fut = self._height_futures.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(_height_answer(msg))
            elif kind == "stats":
                if self._stats is not None and not self._stats.done():
                    self._stats.set_result({k: v for k, v in msg.items() if k != "type"})
            elif kind == "error":
                err = ServerError(
                    msg.get("code", "?"),
                    msg.get("message", ""),
                    TileKey(*msg["key"]) if "key" in msg else None,
                )
                self.errors.append(err)
                if err.key is not None:
                    self._pending.discard(err.key)
                fut = self._height_futures.pop(msg.get("id"), None) if "id" in msg else None
                waiting = self._fetching.pop(err.key, None) if err.key is not None else None
                if fut is not None and not fut.done():
                    fut.set_exception(err)
                elif waiting:
                    for f in waiting:
                        if not f.done():
                            f.set_exception(err)
                elif err.key is not None:
                    await self.tiles.put((err.key, err))


def _decode_tile(payload: dict[str, Any]) -> Any:
    from runtime.wire import decode_tile  # numpy only; imported on first use

    return decode_tile(payload)


class SyncTileClient:
    """A TileClient driven from a background thread, for frame loops."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        window: int = 64,
        origin: str | None = None,
        expect: dict[str, Any] | None = None,
    ):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tile-client", daemon=True)
        self._thread.start()
        self._client = TileClient(window)
        self.received: queue.Queue[tuple[TileKey, Any]] = queue.Queue()
        self.hello = self._call(self._client.connect(url, token, origin, expect))
        self._pump = asyncio.run_coroutine_threadsafe(self._forward(), self._loop)

    def _call(self, coro, timeout_s: float | None = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _forward(self) -> None:
        while True:
            self.received.put(await self._client.tiles.get())

    def request(self, keys: Sequence[TileKey], priorities: Sequence[float] | None = None) -> None:
        self._call(self._client.request(list(keys), priorities))

    def cancel(self, keys: Iterable[TileKey]) -> None:
        self._call(self._client.cancel(list(keys)))

    def request_nowait(self, keys: Sequence[TileKey], priorities: Sequence[float] | None = None) -> None:
        """``request`` without waiting for the network thread to send it (realtime frame
        loops: a frame must not wait behind tile decoding); messages keep their order."""
        self._send_nowait(self._client.request(list(keys), priorities))

    def reprioritise(self, keys: Sequence[TileKey], priorities: Sequence[float]) -> None:
        """New priorities for keys whose tiles have not arrived (``TileClient.reprioritise``)."""
        self._call(self._client.reprioritise(list(keys), list(priorities)))

    def reprioritise_nowait(self, keys: Sequence[TileKey], priorities: Sequence[float]) -> None:
        """``TileClient.reprioritise`` without waiting (see ``request_nowait``)."""
        self._send_nowait(self._client.reprioritise(list(keys), list(priorities)))

    def cancel_nowait(self, keys: Iterable[TileKey]) -> None:
        """``cancel`` without waiting for the network thread (see ``request_nowait``)."""
        self._send_nowait(self._client.cancel(list(keys)))

    def _send_nowait(self, coro) -> None:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception() is None
                              or log.warning("tile request not sent: %s", f.exception()))

    def set_decode(self, decode: bool) -> None:
        """False: tiles (``fetch``'s too) come as their raw wire payload maps, for a caller
        that decodes them elsewhere (``viewer.placepool``)."""
        self._client.decode = decode

    def set_skip_decode(self, skip: Callable[[TileKey], bool] | None) -> None:
        """``TileClient.skip_decode``: tiles for which ``skip(key)`` is True when they arrive
        come as (key, None), undecoded (``skip`` runs on the network thread)."""
        self._client.skip_decode = skip

    def poll(self, max_items: int = 1 << 30) -> list[tuple[TileKey, Any]]:
        """Tiles (or ServerError) received since the last poll, without blocking."""
        out = []
        while len(out) < max_items:
            try:
                out.append(self.received.get_nowait())
            except queue.Empty:
                break
        return out

    def wait(self, timeout_s: float) -> tuple[TileKey, Any] | None:
        try:
            return self.received.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def heights(self, points_xy: np.ndarray, mode: str = "best", level: int | None = None,
                surface: str = "bare") -> dict:
        return self._call(self._client.heights(points_xy, mode, level, surface))

    def fetch(self, keys: Sequence[TileKey], timeout_s: float = 120.0) -> dict[TileKey, Any]:
        """Request ``keys`` and block until all arrived (decoded); raises ServerError."""
        return self._call(self._client.fetch(list(keys), timeout_s), timeout_s + 5.0)

    def stats(self) -> dict[str, Any]:
        return self._call(self._client.stats())

    def close(self) -> None:
        self._pump.cancel()
        try:
            self._call(self._client.close(), 10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def _height_answer(msg: dict) -> dict:
    """A ``height`` message -> arrays (docs/PROTOCOL.md), plus the names ``worldstream
    height`` uses: ``ground_m`` (the same array as ``height_m``) and ``normal_enu``
    (``normal``); ``is_water`` as bool."""
    out = {k: P.decode_array(v, k) if isinstance(v, dict) else v for k, v in msg.items() if k not in ("type", "id")}
    if "height_m" in out and "ground_m" not in out:  # a bare answer: the height is the ground
        out["ground_m"] = out["height_m"]
    if "normal" in out:
        out["normal_enu"] = out["normal"]
    for flag in ("is_water", "on_building"):
        if flag in out:
            out[flag] = np.asarray(out[flag]).astype(bool)
    return out

