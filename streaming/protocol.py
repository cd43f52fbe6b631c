"""Message codec for the worldstream protocol (docs/PROTOCOL.md), sans I/O.

Every message is a msgpack map with a ``type``. Arrays travel as
``{"dtype": str, "shape": [..], "data": bytes}``; nothing is ever unpickled.
``decode_message`` is the boundary for untrusted bytes: it checks every field and
raises ``ProtocolError`` with a code and a message that says what was expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from runtime.tiles import TileKey, World, validate_key

PROTOCOL_VERSION = 1

CLIENT_TYPES = frozenset({"hello", "request", "cancel", "credits", "height", "stats"})
SERVER_TYPES = frozenset({"hello", "tile", "height", "error", "stats"})
HEIGHT_SURFACES = ("bare", "buildings")  # a height query's surface: bare earth, or with buildings

# Only plain little-endian numeric dtypes may cross the wire.
ALLOWED_DTYPES = frozenset({"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"})
MAX_ARRAY_DIMS = 8  # numpy allows 64; no message needs more than 2


class ErrorCode:
    """Error codes carried by ``error`` messages (stable strings, see PROTOCOL.md)."""

    MALFORMED = "malformed"  # not msgpack, not a map, wrong field types
    UNKNOWN_TYPE = "unknown_type"
    VERSION = "unsupported_version"
    NOT_READY = "hello_required"
    TOO_LARGE = "too_large"
    TOO_MANY_KEYS = "too_many_keys"
    BAD_KEY = "bad_key"
    LIMIT = "limit"  # in-flight requests or height queries per client exceeded
    UNAUTHORIZED = "unauthorized"
    WRONG_WORLD = "wrong_world"  # the client's hello expects another world, seed or model
    GENERATOR = "generator_failed"
    INTERNAL = "internal"


class ProtocolError(ValueError):
    """A message that cannot be accepted; ``code`` is one of ``ErrorCode``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Per-connection limits, announced in the server's hello."""

    max_message_bytes: int = 1 << 20  # largest client frame; websockets closes (1009) above it
    max_keys_per_request: int = 256
    max_in_flight: int = 512  # keys requested and not yet sent or cancelled
    min_level: int = 0
    max_level: int = 24
    max_height_points: int = 4096  # points per height query
    max_height_tiles: int = 16  # distinct tiles a "detailed" height query may need
    max_height_queries: int = 4  # height queries in flight per client
    max_credits: int = 1 << 16  # credits a client may hold
    max_queued_bytes: int = 32 << 20  # encoded tiles queued for one client (a slow reader parks the rest)

    def __post_init__(self):
        for name, v in self.__dict__.items():
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"Limits.{name} must be a non-negative integer, got {v!r}")
        if self.min_level > self.max_level:
            raise ValueError(f"min_level {self.min_level} exceeds max_level {self.max_level}")

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


def pack(msg: dict[str, Any]) -> bytes:
    """Encode one message map to bytes."""
    return msgpack.packb(msg, use_bin_type=True)


def unpack(data: bytes, max_bytes: int) -> dict[str, Any]:
    """Decode bytes into a message map with a ``type`` string, or raise ProtocolError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(ErrorCode.MALFORMED, "expected a binary frame holding a msgpack map, got text")
    if len(data) > max_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"message of {len(data)} bytes exceeds the limit of {max_bytes}"
        )
    try:
        msg = msgpack.unpackb(
            bytes(data),
            raw=False,
            strict_map_key=True,
            max_array_len=1 << 16,
            max_map_len=1 << 10,
        )
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(
            ErrorCode.MALFORMED, f"expected a msgpack map: {exc.__class__.__name__}: {exc}"
        ) from None
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.MALFORMED, f"expected a msgpack map, got {type(msg).__name__}")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.MALFORMED, "expected a string field 'type'")
    return msg


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """(any shape) numeric array -> {"dtype", "shape", "data"} with little-endian raw bytes."""
    a = np.ascontiguousarray(a)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def decode_array(obj: Any, what: str, ndim: int | None = None, max_items: int = 1 << 24) -> np.ndarray:
    """Inverse of ``encode_array`` for untrusted input; raises ProtocolError."""
    if not isinstance(obj, dict) or not {"dtype", "shape", "data"} <= obj.keys():
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected an array map with dtype, shape, data")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"{what}: dtype must be one of {sorted(ALLOWED_DTYPES)}, got {dtype!r}"[:300]
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_ARRAY_DIMS
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"{what}: shape must be a list of at most {MAX_ARRAY_DIMS} non-negative integers"
        )
    if ndim is not None and len(shape) != ndim:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected {ndim} dimensions, got {len(shape)}")
    # Each dimension on its own too: [2**62, 0] holds no items but numpy cannot shape it.
    big = max(shape, default=0)
    if big > max_items:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{what}: dimension of {big} exceeds the limit of {max_items} items"
        )
    n = math.prod(shape)
    if n > max_items:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{what}: {n} items exceed the limit of {max_items}")
    if not isinstance(data, bytes) or len(data) != n * np.dtype(dtype).itemsize:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: data must be {n * np.dtype(dtype).itemsize} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def key_to_wire(key: TileKey) -> list[int]:
    return [key.level, key.x, key.y]


def key_from_wire(obj: Any, limits: Limits, world: World | None = None) -> TileKey:
    """[level, x, y] -> TileKey, checking types, the level range and (given ``world``)
    that the tile exists there."""
    if (
        not isinstance(obj, (list, tuple))
        or len(obj) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in obj)
    ):
        raise ProtocolError(ErrorCode.BAD_KEY, f"a key must be [level, x, y] integers, got {obj!r}"[:200])
    level, x, y = obj
    if not limits.min_level <= level <= limits.max_level:
        raise ProtocolError(
            ErrorCode.BAD_KEY, f"level must be in [{limits.min_level}, {limits.max_level}], got {level}"
        )
    if abs(x) >= 1 << 62 or abs(y) >= 1 << 62:
        raise ProtocolError(ErrorCode.BAD_KEY, "tile x and y must fit in 62 bits")
    key = TileKey(level, x, y)
    if world is not None:
        try:
            validate_key(world, key, limits.max_level)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_KEY, str(exc)) from None
    return key


def error_message(code: str, message: str, **extra: Any) -> dict[str, Any]:
    msg = {"type": "error", "code": code, "message": message}
    msg.update(extra)
    return msg
