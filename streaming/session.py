"""Per-client protocol state, sans I/O (python-websockets style: bytes in, events out).

The asyncio server feeds each received frame to ``ServerSession.receive`` and acts on
the returned events; it hands finished tiles back with ``tile_ready`` and asks
``next_frames`` for what may be sent now (credit-based flow control).

Output is bounded in bytes: tiles by ``limits.max_queued_bytes`` (the rest parked as
keys), control messages (answers, errors, stats) are counted in ``outbox_bytes`` and
the server stops reading a client whose unsent answers exceed its budget, so a client
that asks and never reads stalls itself, not the server's memory.
"""

from __future__ import annotations

import heapq
import hmac
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.tiles import T, TileKey, World
from streaming import protocol as P
from streaming.protocol import ErrorCode, Limits, ProtocolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerInfo:
    """What the server announces in its hello."""

    world: str
    seed: int
    model: str
    tile_size: int = T
    limits: Limits = field(default_factory=Limits)
    token: str | None = None  # optional shared secret a client must present in its hello
    layers: tuple[str, ...] = ()  # optional payload layers served to clients that ask ("features")

    def __post_init__(self):
        World.parse(self.world)  # raises saying which worlds exist


@dataclass(frozen=True)
class Want:
    """The client wants these keys generated; ``priorities`` higher first."""

    keys: tuple[TileKey, ...]
    priorities: tuple[float, ...]


@dataclass(frozen=True)
class Reprioritise:
    """Keys already pending got new priorities (higher first): reorder queued work."""

    keys: tuple[TileKey, ...]
    priorities: tuple[float, ...]


@dataclass(frozen=True)
class Cancel:
    keys: tuple[TileKey, ...]


@dataclass(frozen=True)
class HeightQuery:
    """Heights at points: ``points`` (n, 2) float64 in world horizontal coordinates
    (plane: east, north metres; earth: lon, lat degrees)."""

    request_id: int
    points: np.ndarray
    mode: str  # "best" (level or 16, clamped to max_level) or "detailed" (level or max_level)
    level: int | None
    surface: str = "bare"  # "bare" earth, or "buildings" (roofs inside footprints: collision)


@dataclass(frozen=True)
class StatsQuery:
    """The client asked for ``stats``; answer with ``ServerSession.send_stats``."""


@dataclass(frozen=True)
class Close:
    """Close the connection with this websocket close code (after sending the outbox)."""

    code: int
    reason: str


Event = Want | Reprioritise | Cancel | HeightQuery | StatsQuery | Close


class ServerSession:
    """One client's state: handshake, wanted keys, credits and the send queue."""

    def __init__(self, info: ServerInfo, initial_credits: int = 64):
        self.info = info
        self.world = World.parse(info.world)
        self.ready = False
        self.closed = False
        self.credits = initial_credits
        self.wanted: dict[TileKey, float] = {}  # requested, not yet sent (value: priority)
        self._queue: list[tuple[float, int, TileKey, bytes]] = []  # (-priority, seq, key, frame)
        self._in_queue: set[TileKey] = set()
        self.queued_bytes = 0  # bytes of encoded frames in _queue
        self.parked: set[TileKey] = set()  # ready while the queue was full: fetched again later
        self._seq = 0
        self.outbox: list[bytes] = []  # control messages (hello, errors, heights): not credit-bound
        self.outbox_bytes = 0  # bytes in outbox
        self.heights_in_flight = 0
        self.sent_tiles = 0
        self.sent_bytes = 0
        self.last_sent: TileKey | None = None  # the tile next_frames handed out last
        self.errors_sent = 0
        self.layers: frozenset[str] = frozenset()  # payload layers this client asked for and gets

    # -- input -----------------------------------------------------------------------------
    def receive(self, data: bytes | str) -> list[Event]:
        """Handle one frame; returns what the server must do. Never raises on bad input:
        bad messages become ``error`` messages in ``outbox`` (and a ``Close`` where the
        connection cannot go on: wrong version, token or world)."""
        if self.closed:
            return []
        msg = None
        try:
            msg = P.unpack(data, self.info.limits.max_message_bytes)
            return self._dispatch(msg)
        except ProtocolError as exc:
            return self._refuse(exc, msg)
        except Exception as exc:  # a validation gap: still an answer, never a dropped connection
            log.exception("unexpected error reading a client message")
            kind = msg.get("type") if isinstance(msg, dict) else None
            return self._refuse(
                ProtocolError(
                    ErrorCode.MALFORMED,
                    f"could not read this {kind!r} message ({exc.__class__.__name__}); "
                    f"see docs/PROTOCOL.md for its fields"[:300],
                ),
                msg,
            )

    def _refuse(self, exc: ProtocolError, msg: dict[str, Any] | None) -> list[Event]:
        """Answer ``exc`` with an ``error`` (naming the height query it concerns);
        a ``Close`` where the connection cannot go on."""
        extra = {}
        rid = msg.get("id") if msg is not None else None
        if _is_int(rid) and 0 <= rid < 1 << 63:
            extra["id"] = rid  # so that the error names the query it answers
        self._error(exc.code, exc.message, **extra)
        if exc.code in (ErrorCode.VERSION, ErrorCode.UNAUTHORIZED, ErrorCode.WRONG_WORLD):
            self.closed = True
            # A close reason is at most 123 bytes of UTF-8 (RFC 6455 5.5).
            return [Close(1008, exc.message.encode()[:120].decode(errors="ignore"))]
        return []

    def _dispatch(self, msg: dict[str, Any]) -> list[Event]:
        kind = msg["type"]
        if kind not in P.CLIENT_TYPES:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE,
                f"unknown message type {kind!r}: expected one of {sorted(P.CLIENT_TYPES)}"[:300],
            )
        if kind == "hello":
            return self._hello(msg)
        if not self.ready:
            raise ProtocolError(ErrorCode.NOT_READY, f"send 'hello' before {kind!r}")
        return getattr(self, "_" + kind)(msg)

    def _hello(self, msg: dict[str, Any]) -> list:
        version = msg.get("protocol")
        if not _is_int(version) or version != P.PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.VERSION, f"protocol version {P.PROTOCOL_VERSION} expected, got {version!r}"
            )
        if self.info.token is not None:
            token = msg.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(
                token.encode(), self.info.token.encode()
            ):
                raise ProtocolError(ErrorCode.UNAUTHORIZED, "a valid 'token' is required in hello")
        if self.ready:
            raise ProtocolError(ErrorCode.MALFORMED, "'hello' was already received on this connection")
        credits = msg.get("credits", self.credits)
        if not _is_int(credits) or not 0 <= credits <= self.info.limits.max_credits:
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"hello 'credits' must be an integer in [0, {self.info.limits.max_credits}]",
            )
        for name, mine in (("world", self.info.world), ("seed", self.info.seed), ("model", self.info.model)):
            want = msg.get(name)
            if want is not None and want != mine:
                raise ProtocolError(
                    ErrorCode.WRONG_WORLD,
                    f"this server serves {name} {mine!r}, the client expects {want!r}"[:300],
                )
        asked = msg.get("layers", [])
        if not isinstance(asked, list) or not all(isinstance(a, str) for a in asked) or len(asked) > 16:
            raise ProtocolError(ErrorCode.MALFORMED, "hello 'layers' must be a list of layer names (str)")
        self.credits = credits
        self.ready = True
        self.layers = frozenset(asked) & frozenset(self.info.layers)
        hello = {
            "type": "hello",
            "protocol": P.PROTOCOL_VERSION,
            "world": self.info.world,
            "seed": self.info.seed,
            "model": self.info.model,
            "tile_size": self.info.tile_size,
            "limits": self.info.limits.as_dict(),
        }
        if self.info.layers:  # only servers with layers say so: other hellos stay byte-identical
            hello["layers"] = list(self.info.layers)
        self._out(P.pack(hello))
        return []

    def _request(self, msg: dict[str, Any]) -> list:
        keys_obj = msg.get("keys")
        if not isinstance(keys_obj, list):
            raise ProtocolError(ErrorCode.MALFORMED, "request 'keys' must be a list of [level, x, y]")
        lim = self.info.limits
        if len(keys_obj) > lim.max_keys_per_request:
            raise ProtocolError(
                ErrorCode.TOO_MANY_KEYS,
                f"at most {lim.max_keys_per_request} keys per request, got {len(keys_obj)}",
            )
        prios = msg.get("priorities", [0.0] * len(keys_obj))
        if (
            not isinstance(prios, list)
            or len(prios) != len(keys_obj)
            or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and math_finite(p) for p in prios
            )
        ):
            raise ProtocolError(
                ErrorCode.MALFORMED, "request 'priorities' must be finite numbers, one per key"
            )
        pending_only = msg.get("pending_only", False)
        if not isinstance(pending_only, bool):
            raise ProtocolError(ErrorCode.MALFORMED, "request 'pending_only' must be true or false")
        keys = [P.key_from_wire(k, lim, self.world) for k in keys_obj]
        fresh: dict[TileKey, float] = {}
        moved: dict[TileKey, float] = {}
        for k, p in zip(keys, prios, strict=True):
            if k in self.wanted:
                if self.wanted[k] != float(p):
                    self.wanted[k] = moved[k] = float(p)  # re-prioritised
            elif not pending_only:  # pending_only: a key already sent is not asked again
                fresh[k] = float(p)  # a key repeated in one request counts once
        new = list(fresh.items())
        if len(self.wanted) + len(new) > lim.max_in_flight:
            raise ProtocolError(
                ErrorCode.LIMIT,
                f"at most {lim.max_in_flight} requests in flight per client; "
                f"{len(self.wanted)} pending, {len(new)} more asked",
            )
        for k, p in new:
            self.wanted[k] = p
        events: list[Event] = []
        if moved:
            events.append(Reprioritise(tuple(moved), tuple(moved.values())))
        if new:
            events.append(Want(tuple(k for k, _ in new), tuple(p for _, p in new)))
        return events

    def _cancel(self, msg: dict[str, Any]) -> list:
        keys_obj = msg.get("keys")
        if not isinstance(keys_obj, list) or len(keys_obj) > self.info.limits.max_in_flight:
            raise ProtocolError(ErrorCode.MALFORMED, "cancel 'keys' must be a list of [level, x, y]")
        keys = [P.key_from_wire(k, self.info.limits) for k in keys_obj]
        gone = tuple(dict.fromkeys(k for k in keys if self.wanted.pop(k, None) is not None))
        if gone:
            gone_set = set(gone)
            self.parked -= gone_set
            self._queue = [item for item in self._queue if item[2] not in gone_set]
            self._in_queue -= gone_set
            heapq.heapify(self._queue)
            self.queued_bytes = sum(len(item[3]) for item in self._queue)
        return [Cancel(gone)] if gone else []

    def _credits(self, msg: dict[str, Any]) -> list:
        n = msg.get("n")
        cap = self.info.limits.max_credits
        if not _is_int(n) or not 0 <= n <= cap:
            raise ProtocolError(ErrorCode.MALFORMED, f"credits 'n' must be an integer in [0, {cap}]")
        self.credits = min(self.credits + n, cap)
        return []

    def _height(self, msg: dict[str, Any]) -> list:
        rid = msg.get("id")
        if not _is_int(rid) or not 0 <= rid < 1 << 63:
            raise ProtocolError(ErrorCode.MALFORMED, "height 'id' must be an integer in [0, 2**63)")
        lim = self.info.limits
        pts = P.decode_array(msg.get("points"), "height points", ndim=2, max_items=2 * lim.max_height_points)
        if pts.shape[1] != 2 or pts.dtype.kind != "f" or not np.isfinite(pts).all():
            raise ProtocolError(ErrorCode.MALFORMED, "height 'points' must be (n, 2) finite floats")
        if self.world is World.PLANE and len(pts) and np.abs(pts).max() > MAX_PLANE_M:
            raise ProtocolError(
                ErrorCode.MALFORMED, f"plane height 'points' are (east, north) metres within +-{MAX_PLANE_M:g}"
            )
        if self.world is World.EARTH and (np.abs(pts[:, 1]) > 90.0).any():
            raise ProtocolError(
                ErrorCode.MALFORMED, "earth height 'points' are (lon, lat) degrees; lat must be in [-90, 90]"
            )
        mode = msg.get("mode", "best")
        if mode not in ("best", "detailed"):
            raise ProtocolError(ErrorCode.MALFORMED, "height 'mode' must be 'best' or 'detailed'")
        level = msg.get("level")
        if level is not None and (not _is_int(level) or not lim.min_level <= level <= lim.max_level):
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"height 'level' must be an integer in [{lim.min_level}, {lim.max_level}] or absent",
            )
        surface = msg.get("surface", "bare")
        if surface not in P.HEIGHT_SURFACES:
            raise ProtocolError(ErrorCode.MALFORMED, f"height 'surface' must be one of {list(P.HEIGHT_SURFACES)} "
                                                     f"or absent (bare), got {str(surface)[:40]!r}")
        if self.heights_in_flight >= lim.max_height_queries:
            raise ProtocolError(ErrorCode.LIMIT, f"at most {lim.max_height_queries} height queries in flight")
        self.heights_in_flight += 1
        return [HeightQuery(rid, pts.astype(np.float64), mode, level, surface)]

    def _stats(self, msg: dict[str, Any]) -> list:
        return [StatsQuery()]

    def send_stats(self, server: dict[str, Any] | None = None) -> None:
        """Queue a ``stats`` message: this connection's counters plus ``server``'s."""
        self._out(
            P.pack(
                {
                    "type": "stats",
                    "sent_tiles": self.sent_tiles,
                    "sent_bytes": self.sent_bytes,
                    "pending": len(self.wanted),
                    "queued": len(self._queue),
                    "queued_bytes": self.queued_bytes,
                    "parked": len(self.parked),
                    "credits": self.credits,
                    "errors": self.errors_sent,
                    "server": server or {},
                }
            )
        )

    def height_answer(self, request_id: int, result: dict[str, np.ndarray]) -> None:
        """Queue the ``height`` answer to query ``request_id``."""
        self.heights_in_flight = max(0, self.heights_in_flight - 1)
        self._out(
            P.pack({"type": "height", "id": request_id, **{k: P.encode_array(v) for k, v in result.items()}})
        )

    def height_failed(self, request_id: int, code: str, message: str) -> None:
        self.heights_in_flight = max(0, self.heights_in_flight - 1)
        self._error(code, message, id=request_id)

    # -- output ----------------------------------------------------------------------------
    def tile_ready(self, key: TileKey, frame: bytes) -> None:
        """A tile's encoded ``tile`` frame is ready; queue it if this client still wants it.

        The queue holds at most ``limits.max_queued_bytes`` (one frame always fits):
        beyond that the key is parked without its bytes, so a client that stops reading
        costs the server a bounded amount of memory; ``unpark`` hands parked keys back
        to be fetched again (from the LRU or the store) once the queue drains."""
        prio = self.wanted.get(key)
        if prio is None or key in self._in_queue:
            return
        if self.info.layers and not self.layers:
            frame = strip_layers(frame, self.info.layers)
        if self._queue and self.queued_bytes + len(frame) > self.info.limits.max_queued_bytes:
            self.parked.add(key)
            return
        self.parked.discard(key)
        heapq.heappush(self._queue, (-prio, self._seq, key, frame))
        self._in_queue.add(key)
        self.queued_bytes += len(frame)
        self._seq += 1

    def unpark(self) -> list[tuple[TileKey, float]]:
        """Parked keys (with priorities) to fetch again now that the queue has room."""
        if not self.parked or self.queued_bytes > self.info.limits.max_queued_bytes // 2:
            return []
        out = sorted(((k, self.wanted[k]) for k in self.parked if k in self.wanted), key=lambda kp: -kp[1])
        self.parked.clear()
        return out

    def tile_failed(self, key: TileKey, code: str, message: str) -> None:
        if self.wanted.pop(key, None) is not None:
            self.parked.discard(key)
            self._error(code, message, key=P.key_to_wire(key))

    def next_frames(self, max_tiles: int | None = None) -> list[bytes]:
        """Frames that may be sent now: control messages, then tiles while credits last
        (at most ``max_tiles``: a sender that takes one at a time keeps the rest counted
        in ``queued_bytes``)."""
        out, self.outbox = self.outbox, []
        self.outbox_bytes = 0
        self.last_sent = None
        n = 0
        while self._queue and self.credits > 0 and (max_tiles is None or n < max_tiles):
            _, _, key, frame = heapq.heappop(self._queue)
            self._in_queue.discard(key)
            self.queued_bytes -= len(frame)
            if self.wanted.pop(key, None) is None:
                continue
            n += 1
            self.credits -= 1
            self.last_sent = key
            self.sent_tiles += 1
            self.sent_bytes += len(frame)
            out.append(frame)
        return out

    def _error(self, code: str, message: str, **extra: Any) -> None:
        self.errors_sent += 1
        self._out(P.pack(P.error_message(code, message, **extra)))

    def _out(self, frame: bytes) -> None:
        self.outbox.append(frame)
        self.outbox_bytes += len(frame)


MAX_PLANE_M = 2.0**50  # plane height points: tile indices stay far inside int64 at every level


def math_finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def tile_frame(key: TileKey, payload: dict[str, Any]) -> bytes:
    """Pack a ``tile`` message around an encoded tile payload (runtime.wire)."""
    return P.pack({"type": "tile", "key": P.key_to_wire(key), "tile": payload})


def strip_layers(frame: bytes, layers: tuple[str, ...]) -> bytes:
    """A ``tile`` frame without the payload entries ``layers`` (for clients that did not ask for
    them). msgpack packs a map in insertion order and each value one way, so the result is
    byte-identical to the frame encoded without the layer."""
    if not any(name.encode() in frame for name in layers):
        return frame
    msg = P.unpack(frame, len(frame) + 1)
    tile = msg.get("tile")
    if not isinstance(tile, dict) or not any(name in tile for name in layers):
        return frame
    for name in layers:
        tile.pop(name, None)
    return P.pack(msg)
