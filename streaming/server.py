"""The asyncio websocket server: a thin layer moving bytes between sockets and sessions."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from runtime.tiles import TileKey
from streaming import protocol as P
from streaming.session import Cancel, Close, HeightQuery, ServerInfo, ServerSession, Want
from streaming.tileservice import TileService

log = logging.getLogger(__name__)

MAX_TILE_FRAME_BYTES = 16 << 20
"""websockets' max_size on the client side: a tile frame must fit (default 1 MiB does not)."""


class TileServer:
    """Serves one world to any number of clients; every client's bad input stays its own."""

    def __init__(self, info: ServerInfo, service: TileService, heights=None,
                 allowed_origins: Iterable[str] | None = None):
        self.info = info
        self.service = service
        self.heights = heights  # callable (points, mode, level) -> dict, or None
        self.allowed_origins = list(allowed_origins) if allowed_origins else None
        self.connections = 0
        self._server = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the bound port."""
        await self.service.start()
        self._server = await serve(
            self._handle, host, port,
            compression=None,  # per-message deflate makes MB payloads ~100x slower
            max_size=self.info.limits.max_message_bytes,
            origins=self.allowed_origins,
            write_limit=1 << 20,  # backpressure: send() waits above 1 MiB buffered
        )
        sock = next(iter(self._server.sockets))
        return sock.getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.service.close()

    async def _handle(self, ws: ServerConnection) -> None:
        session = ServerSession(self.info)
        self.connections += 1
        wake = asyncio.Event()
        pending: dict[TileKey, asyncio.Future] = {}

        def deliver(key: TileKey, fut: asyncio.Future) -> None:
            pending.pop(key, None)
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                session.tile_failed(key, P.ErrorCode.GENERATOR, f"tile {key} failed: {exc}"[:500])
            else:
                session.tile_ready(key, fut.result())
            wake.set()

        async def sender() -> None:
            while True:
                await wake.wait()
                wake.clear()
                for frame in session.next_frames():
                    await ws.send(frame)

        send_task = asyncio.create_task(sender())
        try:
            async for data in ws:
                for event in session.receive(data):
                    if isinstance(event, Want):
                        for key, prio in zip(event.keys, event.priorities):
                            fut = self.service.get(key, prio)
                            pending[key] = fut
                            fut.add_done_callback(lambda f, k=key: deliver(k, f))
                    elif isinstance(event, Cancel):
                        for key in event.keys:
                            fut = pending.pop(key, None)
                            if fut is not None:
                                fut.cancel()
                    elif isinstance(event, HeightQuery):
                        asyncio.create_task(self._answer_height(session, event, wake))
                    elif isinstance(event, Close):
                        wake.set()
                        await asyncio.sleep(0)
                        for frame in session.next_frames():
                            await ws.send(frame)
                        await ws.close(event.code, event.reason)
                        return
                wake.set()
                if send_task.done():
                    break
        except ConnectionClosed:
            pass
        finally:
            send_task.cancel()
            for fut in pending.values():
                fut.cancel()
            self.connections -= 1

    async def _answer_height(self, session: ServerSession, q: HeightQuery, wake: asyncio.Event) -> None:
        if self.heights is None:
            session._error(P.ErrorCode.UNKNOWN_TYPE, "height queries are not served here", id=q.request_id)
        else:
            try:
                loop = asyncio.get_running_loop()
                res = await loop.run_in_executor(None, self.heights, q.points, q.mode, q.level)
                session.outbox.append(P.pack({"type": "height", "id": q.request_id,
                                              **{k: P.encode_array(v) if hasattr(v, "dtype") else v
                                                 for k, v in res.items()}}))
            except Exception as exc:
                session._error(P.ErrorCode.INTERNAL, f"height query failed: {exc}"[:300], id=q.request_id)
        wake.set()


async def serve_forever(server: TileServer, host: str, port: int) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = await server.start(host, port)
    print(f"worldstream serving {server.info.world} seed={server.info.seed} model={server.info.model} "
          f"on ws://{host}:{bound}", flush=True)
    await stop.wait()
    await server.close()
    print("worldstream server stopped", flush=True)
