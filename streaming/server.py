"""The asyncio websocket server: a thin layer moving bytes between sockets and sessions.

Every decision about messages lives in ``streaming.session`` (sans I/O); this module
only reads frames, hands them to the session, runs what the session asks for
(tile fetches, height queries, stats) and writes what the session lets out.
Backpressure: ``ws.send`` waits while more than ``write_limit`` bytes are buffered
for a client, so a client that stops reading stalls only its own sender; what piles
up behind it is bounded by the session (``Limits.max_queued_bytes`` of tiles) and, for
answers, by ``ServerConfig.max_output_bytes``: above it the server stops reading that
client until its answers drain (TCP backpressure reaches the client).

Admission (``streaming.admission``): connections that have not sent ``hello`` have
their own small budget and a deadline, so they can never lock authenticated clients out;
new connections are accepted at a bounded rate (``ServerConfig.accept_rate``,
``streaming.listener``), the rest wait in the kernel's backlog.
"""

from __future__ import annotations

import asyncio
import gc
import http
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from runtime.tiles import TileKey
from streaming import protocol as P
from streaming.admission import AcceptRate, Admission
from streaming.heights import BadHeightQuery, HeightLimitError, HeightService
from streaming.listener import Listener, gated_connection
from streaming.probe import Probe
from streaming.session import (
    Cancel,
    Close,
    HeightQuery,
    Reprioritise,
    ServerInfo,
    ServerSession,
    StatsQuery,
    Want,
)
from streaming.tileservice import TileService

log = logging.getLogger(__name__)

MAX_TILE_FRAME_BYTES = 16 << 20
"""websockets' max_size on the client side: a tile frame must fit (default 1 MiB does not)."""


@dataclass(frozen=True)
class ServerConfig:
    max_connections: int = 1024  # authenticated clients; beyond it handshakes get HTTP 503
    max_unauthenticated: int = 256  # connections waiting for hello; a newcomer closes the oldest (1013)
    hello_timeout_s: float = 5.0  # websocket open to valid hello; later: closed 1008
    write_limit_bytes: int = 1 << 20  # per-client send buffer high-water mark
    max_output_bytes: int = 1 << 20  # unsent answers/errors/stats per client before reading pauses
    read_chunk_bytes: int = 16 << 10  # bytes read from a socket per turn: ~2,300 tiny frames parsed at most
    initial_credits: int = 64  # when the client's hello names none
    # Event-loop time per connection (its messages, height admissions): at most loop_share of
    # the loop's thread CPU sustained, loop_burst_s above it; beyond, its reading pauses.
    loop_share: float = 0.05
    loop_burst_s: float = 0.025
    # A connection paused on every message for this long (it sends faster than its share,
    # without a break) is closed 1008: its backlog in TCP would keep the server busy long after.
    loop_overuse_s: float = 3.0
    # New TCP connections accepted per second (token bucket; 0: no limit): beyond it the
    # listening socket is not read, and newcomers wait in the kernel's backlog (not refused).
    accept_rate: float = 200.0
    accept_burst: float = 100.0

    def __post_init__(self):
        if not (self.accept_rate == 0 or self.accept_rate >= 10) or self.accept_burst < 1:
            raise ValueError(f"accept_rate must be 0 (no limit) or >= 10 per s, and accept_burst >= 1, "
                             f"got {self.accept_rate} and {self.accept_burst}")
        if not 0.0 < self.loop_share <= 1.0 or not 0.0 < self.loop_burst_s <= 10.0 or self.loop_overuse_s <= 0:
            raise ValueError(f"loop_share must be in (0, 1], loop_burst_s in (0, 10] s and loop_overuse_s > 0, "
                             f"got {self.loop_share}, {self.loop_burst_s}, {self.loop_overuse_s}")
        if not 0.0 < self.hello_timeout_s <= 3600.0:
            raise ValueError(f"hello_timeout_s must be in (0, 3600] s, got {self.hello_timeout_s}")
        for name in ("max_connections", "max_unauthenticated", "write_limit_bytes", "max_output_bytes",
                     "read_chunk_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServerConfig.{name} must be >= 1, got {getattr(self, name)}")


class HttpHandler(Protocol):
    """Plain HTTP on the websocket port (``TileServer(http=...)``): every request that is
    not a websocket upgrade is answered by ``respond``; upgrades never reach it.
    ``streaming.http.HttpEndpoints`` is one (Cesium terrain, imagery, 3D Tiles)."""

    def respond(self, method: str, path: str, headers: Headers) -> Awaitable[Response]:
        """The whole response (websockets closes the connection after it)."""
        ...

    def urls(self, base_url: str) -> list[str]:
        """Entry points to print at start-up, e.g. ``http://host:port/terrain/layer.json``."""
        ...


class TileServer:
    """Serves one world to any number of clients; every client's bad input stays its own.

    ``http``: answers plain HTTP requests on the same port (default: none; websockets
    then answers them 426 Upgrade Required)."""

    def __init__(
        self,
        info: ServerInfo,
        service: TileService,
        heights: HeightService | None = None,
        allowed_origins: Iterable[str] | None = None,
        config: ServerConfig = ServerConfig(),
        http: HttpHandler | None = None,
        probe: Probe | None = None,
    ):
        self.info = info
        self.probe = probe  # latency counters in every stats answer (``serve --probe``)
        self.http = http
        self.service = service
        self.heights = heights
        self.allowed_origins = list(allowed_origins) if allowed_origins else None
        self.config = config
        self.sessions: dict[ServerSession, ServerConnection] = {}
        self.handlers: dict[ServerSession, _Connection] = {}  # each session's I/O (tests, stats)
        self.admission = Admission(config.max_connections, config.max_unauthenticated)
        self.connections_total = 0
        self.hello_timeouts = 0
        self.read_pauses = 0  # times a client's reading paused because it did not read its answers
        self.loop_pauses = 0  # times a client's reading paused because it used its share of the event loop
        self.height_pauses = 0  # times a client's reading paused after a height refusal, until its queries' tiles came
        self.overuse_closes = 0  # connections closed 1008 for using more than their share for loop_overuse_s
        self.closers: set[asyncio.Task] = set()  # closing handshakes started from outside a handler
        self.accept_rate = AcceptRate(config.accept_rate, config.accept_burst) if config.accept_rate > 0 else None
        self.listener: Listener | None = None  # the listening sockets, paused beyond accept_rate
        self.port: int | None = None
        self._server = None

    @property
    def connections(self) -> int:
        return len(self.sessions)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the bound port."""
        await self.service.start()
        if self.probe is not None:
            self.probe.start()
        self._server = await serve(
            self._handle,
            host,
            port,
            compression=None,  # per-message deflate makes MB payloads ~100x slower
            max_size=self.info.limits.max_message_bytes,  # larger client frames: close 1009
            max_queue=4,  # frames read ahead per client before TCP backpressure reaches it
            # the kernel's listen queue, and what asyncio accepts per wake-up: with an accept
            # rate, those beyond it wait in-process at most backlog / rate (<= 1.6 s) for their turn
            backlog=100 if self.accept_rate is None else int(min(100, max(16, self.config.accept_rate))),
            origins=self.allowed_origins,  # HTTP 403 for any other Origin header
            process_request=self._process_request,
            write_limit=self.config.write_limit_bytes,
            create_connection=gated_connection(lambda: self.listener),
            # the HTTP upgrade itself; plain HTTP answers are part of the handshake, so with
            # --http it must outlast their request timeout (else: a dropped, empty response)
            open_timeout=self.config.hello_timeout_s if self.http is None
            else max(self.config.hello_timeout_s, self.http.config.request_timeout_s + 5.0),
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        if self.accept_rate is not None:
            self.listener = Listener(asyncio.get_running_loop(), self._server.sockets, self.accept_rate)
        return self.port

    def set_accept_rate(self, rate: float) -> None:
        """Before ``start``: accept at most ``rate`` new connections per second (bursts of
        ``config.accept_burst``); 0: no limit."""
        if self._server is not None:
            raise RuntimeError("set_accept_rate must be called before start()")
        self.config = replace(self.config, accept_rate=rate)
        self.accept_rate = AcceptRate(rate, self.config.accept_burst) if rate > 0 else None

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.probe is not None:
            self.probe.stop()
        await self.service.close()

    def _admit(self, ws: ServerConnection, request):
        if self.admission.full():
            return ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        return None

    def _process_request(self, ws: ServerConnection, request):
        """websockets' hook: plain HTTP goes to the ``http`` handler, upgrades to admission."""
        if self.http is not None and request.headers.get("Upgrade", "").lower() != "websocket":
            if self.accept_rate is not None:  # HTTP clients make a connection per request: not counted
                self.accept_rate.refund()
            return self.http.respond(request.method, request.path, request.headers)
        return self._admit(ws, request)

    def held_bytes(self, session: ServerSession | None = None) -> int:
        """Bytes held for clients (one, or all): tile frames queued in their sessions plus
        what asyncio buffers on their sockets. Bounded per client by
        ``limits.max_queued_bytes + write_limit_bytes`` plus one frame."""
        items = [(session, self.sessions[session])] if session is not None else list(self.sessions.items())
        total = 0
        for s, ws in items:
            transport = ws.transport
            total += s.queued_bytes + (transport.get_write_buffer_size() if transport is not None else 0)
        return total

    def stats(self) -> dict:
        """Server-wide counters for ``stats`` messages and benchmarks."""
        out = {
            "connections": self.connections,
            "connections_total": self.connections_total,
            "authenticated": self.admission.authenticated,
            "unauthenticated": self.admission.unauthenticated,
            "evicted_unauthenticated": self.admission.evicted,
            "refused_full": self.admission.refused,
            "hello_timeouts": self.hello_timeouts,
            "read_pauses": self.read_pauses,
            "loop_pauses": self.loop_pauses,
            "overuse_closes": self.overuse_closes,
            "height_pauses": self.height_pauses,
            "accepted": self.accept_rate.accepted if self.accept_rate is not None else self.connections_total,
            "accept_pauses": self.accept_rate.pauses if self.accept_rate is not None else 0,
            "held_bytes": self.held_bytes(),
            **self.service.stats().as_dict(),
        }
        if self.service.store is not None:
            out.update({f"store_{k}": v for k, v in self.service.store.stats().__dict__.items()})
        if self.probe is not None:
            out["probe"] = self.probe.as_dict()
        return out

    async def _handle(self, ws: ServerConnection) -> None:
        session = ServerSession(self.info, self.config.initial_credits)
        self.sessions[session] = ws
        self.connections_total += 1
        conn = _Connection(self, ws, session)
        self.handlers[session] = conn
        if hasattr(ws.transport, "max_size"):
            # asyncio's selector transport reads up to 256 KiB per callback and websockets
            # parses all of it at once: 37,000 tiny frames of one flooder in one turn.
            ws.transport.max_size = self.config.read_chunk_bytes
        for old in self.admission.opened(conn):
            old.close_soon(1013, "too many connections waiting for hello; try again")
        try:
            await conn.run()
        except ConnectionClosed:
            pass
        except Exception:  # one connection's failure never reaches the server or other clients
            log.exception("connection handler failed")
            try:
                await ws.close(1011, "internal error")
            except Exception:  # the socket may be gone already
                pass
        finally:
            conn.cleanup()
            self.admission.closed(conn)
            self.sessions.pop(session, None)
            self.handlers.pop(session, None)


class _Connection:
    """One client's I/O: a reader (this task) and a sender task around one session."""

    def __init__(self, server: TileServer, ws: ServerConnection, session: ServerSession):
        self.server, self.ws, self.session = server, ws, session
        self.service = server.service
        self.wake = asyncio.Event()
        self.pending: dict[TileKey, asyncio.Future] = {}
        self.tasks: set[asyncio.Task] = set()
        self.sending_bytes = 0  # answers taken from the session, not yet handed to the socket
        self.sent = asyncio.Event()  # set after every frame handed to the socket
        self.authenticated = False
        self.reading_paused = False  # True while this client's unsent answers exceed its budget
        self._closing = False
        self._received_at = 0.0  # loop time the message being handled was taken from the socket
        self.loop_debt_s = 0.0  # event-loop CPU used beyond this connection's share (_charge_loop)
        self.loop_pauses = 0  # times its reading paused for that
        self._over_since: float | None = None  # loop time since which every message needed a pause
        self._debt_at = 0.0  # loop time loop_debt_s was last brought up to date
        self._cached_at: dict[TileKey, float] = {}  # with a probe: LRU hits not yet sent -> receipt
        self._height_done = asyncio.Event()  # set whenever one of its height queries is answered
        self._height_wait = False  # a height query was refused while others wait for tiles: read on after one

    def close_soon(self, code: int, reason: str) -> None:
        """Close this connection from outside its reader (eviction, hello deadline)."""
        if not self._closing:
            self._closing = True
            task = asyncio.create_task(self.ws.close(code, reason))  # not cancelled by cleanup
            self.server.closers.add(task)
            task.add_done_callback(self.server.closers.discard)

    def _hello_deadline(self) -> None:
        if not self.authenticated and not self._closing:
            self.server.hello_timeouts += 1
            timeout = self.server.config.hello_timeout_s
            self.close_soon(1008, f"no valid hello within {timeout:g} s")

    def output_bytes(self) -> int:
        """Answers waiting for this client: in the session plus taken by the sender."""
        return self.session.outbox_bytes + self.sending_bytes

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(self.server.config.hello_timeout_s, self._hello_deadline)
        sender = None  # started by the first message: a silent connection costs no task
        try:
            async for data in self.ws:
                self._received_at = loop.time()
                cpu0 = time.thread_time()
                if sender is None:
                    sender = asyncio.create_task(self._send_loop())
                    self.tasks.add(sender)
                for event in self.session.receive(data):
                    if isinstance(event, Close):
                        await self._flush()
                        await self.ws.close(event.code, event.reason)
                        return
                    self._act(event)
                if self.session.ready and not self.authenticated:
                    self.authenticated = True
                    deadline.cancel()
                    if not self.server.admission.authenticate(self):
                        await self.ws.close(1013, "server full or connection evicted; try again")
                        return
                self.wake.set()
                pause = self._charge_loop(time.thread_time() - cpu0)
                if self._over_since is not None and loop.time() - self._over_since > self.server.config.loop_overuse_s:
                    self.server.overuse_closes += 1
                    await self.ws.close(1008, "sends faster than its share of the server, without a break")
                    return
                await asyncio.sleep(pause)  # 0: one message per turn, frames already read never hog the loop
                if self._height_wait:
                    await self._wait_height_answer()
                # A client that asks and does not read: stop reading it until its answers drain.
                while self.output_bytes() > self.server.config.max_output_bytes and not sender.done():
                    if not self.reading_paused:
                        self.reading_paused = True
                        self.server.read_pauses += 1
                    self.sent.clear()
                    await self.sent.wait()
                self.reading_paused = False
                if sender.done():  # the socket broke while sending
                    sender.result()
                    return
        finally:
            deadline.cancel()

    async def _wait_height_answer(self) -> None:
        """A height query of this client was refused (``limit``) while its earlier queries
        still wait for tiles: read nothing more until one of them is answered (or the
        connection is lost). Asking again at once cannot succeed; a client that does so in
        a loop would otherwise cost the event loop a refusal per message, at its full share."""
        self._height_wait = False
        self.server.height_pauses += 1
        answered = asyncio.ensure_future(self._height_done.wait())
        lost = getattr(self.ws, "connection_lost_waiter", None)
        try:
            await asyncio.wait([answered] if lost is None else [answered, lost],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered.cancel()

    def _charge_loop(self, cpu_s: float) -> float:
        """Charge ``cpu_s`` of the event loop's thread to this connection; the seconds its
        reading must pause (0 within its share). A token bucket: the debt drains at
        ``loop_share`` s per s, and may reach ``loop_burst_s``; a client above it (a flood of
        requests and cancels, of refused height queries) is read only as fast as its share,
        the rest waits in TCP, and the loop stays free for everyone else's messages."""
        cfg = self.server.config
        now = asyncio.get_running_loop().time()
        self.loop_debt_s = max(0.0, self.loop_debt_s - (now - self._debt_at) * cfg.loop_share) + cpu_s
        self._debt_at = now
        if self.loop_debt_s <= cfg.loop_burst_s:
            self._over_since = None
            return 0.0
        if self._over_since is None:
            self._over_since = now
        self.loop_pauses += 1
        self.server.loop_pauses += 1
        return (self.loop_debt_s - cfg.loop_burst_s) / cfg.loop_share

    def _act(self, event) -> None:
        if isinstance(event, Want):
            for key, prio in zip(event.keys, event.priorities, strict=True):
                self._fetch(key, prio)
        elif isinstance(event, Reprioritise):
            for key, prio in zip(event.keys, event.priorities, strict=True):
                if key in self.pending:
                    self.service.reprioritise(key, prio, owner=self)
        elif isinstance(event, Cancel):
            for key in event.keys:
                fut = self.pending.pop(key, None)
                if fut is not None:
                    self.service.release(key, fut)
        elif isinstance(event, HeightQuery):
            self._admit_height(event)
        elif isinstance(event, StatsQuery):
            lane = self.service.lane_stats(self)  # this connection's share of the generator
            self.session.send_stats(self.server.stats() | {"lane": lane})

    def _fetch(self, key: TileKey, prio: float) -> None:
        frame = self.service.get_now(key)
        if frame is not None:
            if self.server.probe is not None:
                if len(self._cached_at) >= 1024:  # hits never sent (cancelled): start over
                    self._cached_at.clear()
                self._cached_at[key] = self._received_at
            self.session.tile_ready(key, frame)
            self.wake.set()
            return
        fut = self.service.get(key, prio, owner=self)  # one fair-queue lane per connection
        self.pending[key] = fut
        fut.add_done_callback(lambda f, k=key: self._deliver(k, f))

    def _deliver(self, key: TileKey, fut: asyncio.Future) -> None:
        if self.pending.get(key) is fut:
            del self.pending[key]
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.session.tile_failed(key, P.ErrorCode.GENERATOR, f"tile {key} failed: {exc}"[:500])
        else:
            self.session.tile_ready(key, fut.result())
        self.wake.set()

    async def _send_loop(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                await self._flush()
                for key, prio in self.session.unpark():
                    self._fetch(key, prio)
        finally:
            self.sent.set()  # a reader paused on this client's output sees the sender is gone

    async def _flush(self) -> None:
        # One tile at a time: what waits behind a slow socket stays in the session's
        # bounded queue (ws.send waits while the buffer is above write_limit).
        while frames := self.session.next_frames(max_tiles=1):
            self.sending_bytes = sum(len(f) for f in frames)
            key = self.session.last_sent
            for frame in frames:
                await self.ws.send(frame)
                self.sending_bytes -= len(frame)
                self.sent.set()
                await asyncio.sleep(0)  # one frame per turn: a long outbox never hogs the loop
            t = self._cached_at.pop(key, None) if self._cached_at else None
            if t is not None:  # an LRU hit: receipt of its request to its frame handed over
                self.server.probe.cached_send.add(asyncio.get_running_loop().time() - t)

    def _admit_height(self, q: HeightQuery) -> None:
        """Check a height query now (its cost and any refusal counted to this connection's
        event-loop share); answer it in a task."""
        heights = self.server.heights
        if heights is None:
            self.session.height_failed(q.request_id, P.ErrorCode.UNKNOWN_TYPE, "height queries are not served here")
            return
        try:
            plan = heights.admit(q.points, q.mode, q.level, owner=self, surface=q.surface)
        except HeightLimitError as exc:
            self.session.height_failed(q.request_id, P.ErrorCode.LIMIT, str(exc))
            if heights.waiting_tiles(self):  # its earlier queries will free the budget: wait for one
                self._height_done.clear()
                self._height_wait = True
            return
        except BadHeightQuery as exc:
            self.session.height_failed(q.request_id, P.ErrorCode.MALFORMED, str(exc))
            return
        task = self._spawn(self._answer_height(q, plan))
        task.add_done_callback(lambda _t: plan.release())  # also when cancelled before it ran

    async def _answer_height(self, q: HeightQuery, plan) -> None:
        try:
            res = await self.server.heights.answer(plan)
        except Exception as exc:  # a generator failure under these points
            log.warning("height query failed: %s", exc)
            self.session.height_failed(
                q.request_id, P.ErrorCode.GENERATOR, f"height query failed: {exc}"[:300]
            )
        else:
            self.session.height_answer(q.request_id, res)
        self._height_done.set()
        self.wake.set()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def cleanup(self) -> None:
        """The client is gone: cancel its tasks and give up its share of every pending tile."""
        for task in list(self.tasks):
            task.cancel()
        for key, fut in list(self.pending.items()):
            self.service.release(key, fut)
        self.pending.clear()


def set_thread_nice(nice: int, what: str) -> bool:
    """Give the calling thread the scheduling priority ``nice`` (Linux: per thread; -20..19,
    lower first). A negative value needs CAP_SYS_NICE: without it a warning, and False."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        return True
    except (OSError, AttributeError) as exc:  # no permission, or no setpriority (not Unix)
        log.warning("cannot set the %s thread's nice to %d: %s", what, nice, exc)
        return False


async def serve_forever(server: TileServer, host: str, port: int, loop_nice: int = 0) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly. Prints the websocket URL as the
    first line (scripts read the port from it), then the HTTP entry points if any.
    ``loop_nice``: the event loop thread's nice (e.g. -5: it gets a CPU before the
    generator's and other processes' threads; see docs/DECISIONS.md)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = await server.start(host, port)
    # Everything built so far (generator, caches, modules) lives as long as the server:
    # out of the collector's way, so that a full collection under a flood of short-lived
    # objects costs ~10 ms, not ~100 ms of every client's latency.
    gc.freeze()
    if loop_nice:
        set_thread_nice(loop_nice, "event loop")
    print(
        f"worldstream serving {server.info.world} seed={server.info.seed} model={server.info.model} "
        f"on ws://{host}:{bound}",
        flush=True,
    )
    if server.http is not None:
        print("HTTP: " + "  ".join(server.http.urls(f"http://{host}:{bound}")), flush=True)
    await stop.wait()
    await server.close()
    try:
        print("worldstream server stopped", flush=True)
    except (BrokenPipeError, OSError):  # whoever read our stdout is gone (a killed bench): nothing to tell
        pass
