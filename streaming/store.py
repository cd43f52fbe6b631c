"""On-disk store of encoded tile frames, keyed by (model hash, world, seed, key).

One file per tile, so one damaged file never costs another tile. Each file is a
fixed header (magic, format version, payload length, BLAKE2b-256 digest) then the
payload. The digest covers the tile's identity (model, world, seed, key) as well as
its bytes, so a file that is truncated, bit-flipped or copied to the wrong path
never validates: ``get`` returns None, deletes it and the tile is made again.

Writes are atomic: write a temporary file in the same folder, fsync it, then
``os.replace`` it over the final name (POSIX rename is atomic). A process killed
with SIGKILL mid-write leaves only a temporary file, which readers never look at
and ``sweep`` removes. Several servers may share one store (DESIGN.md section 7):
concurrent writers of one tile write identical bytes, and the last rename wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.tiles import TileKey

log = logging.getLogger(__name__)

MAGIC = b"WSTL"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sB3xQ32s")  # magic, version, pad, payload bytes, digest
HEADER_BYTES = _HEADER.size  # 48
MAX_PAYLOAD_BYTES = 1 << 30
_TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class StoreStats:
    hits: int
    misses: int
    writes: int
    corrupt: int


class TileStore:
    """Encoded tile frames on disk for one (model, world, seed).

    root: folder shared by every namespace; files go to
    ``root/<world>-<seed>-<sha256(model)[:16]>/<level>/<x>_<y>.tile``.
    durable: fsync file and folder on every write (survives power loss, not only a
    killed process; the page cache already survives ``kill -9``).
    Thread-safe: readers and writers only meet through atomic renames.
    """

    def __init__(self, root: str | os.PathLike, model: str, world: str, seed: int, durable: bool = True):
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        self.model, self.world, self.seed = model, str(world), int(seed)
        self.durable = durable
        digest = hashlib.sha256(model.encode()).hexdigest()[:16]
        self.root = Path(root) / f"{self.world}-{self.seed}-{digest}"
        self.root.mkdir(parents=True, exist_ok=True)
        meta = self.root / "namespace.json"
        if not meta.exists():
            self._write_atomic(
                meta,
                json.dumps(
                    {"model": model, "world": self.world, "seed": self.seed, "format": FORMAT_VERSION}
                ).encode(),
            )
        self._lock = threading.Lock()
        self._hits = self._misses = self._writes = self._corrupt = 0

    # -- paths and digests ---------------------------------------------------------------
    def path(self, key: TileKey) -> Path:
        return self.root / str(key.level) / f"{key.x}_{key.y}.tile"

    def _digest(self, key: TileKey, payload: bytes) -> bytes:
        h = hashlib.blake2b(digest_size=32)
        h.update(f"{self.model}\0{self.world}\0{self.seed}\0{key.level}/{key.x}/{key.y}\0".encode())
        h.update(payload)
        return h.digest()

    # -- read ----------------------------------------------------------------------------
    def get(self, key: TileKey) -> bytes | None:
        """The stored frame of ``key``, or None when absent or not intact (then deleted)."""
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                blob = f.read(MAX_PAYLOAD_BYTES + HEADER_BYTES + 1)
        except FileNotFoundError:
            self._count("_misses")
            return None
        except OSError as exc:
            log.warning("tile store: cannot read %s: %s", path, exc)
            self._count("_misses")
            return None
        payload = self._verify(key, blob)
        if payload is None:
            self._count("_corrupt")
            self._count("_misses")
            log.warning("tile store: %s failed its checksum; deleted, will be made again", path)
            try:
                path.unlink()
            except OSError:
                pass
            return None
        self._count("_hits")
        return payload

    def _verify(self, key: TileKey, blob: bytes) -> bytes | None:
        if len(blob) < HEADER_BYTES:
            return None
        magic, version, n, digest = _HEADER.unpack_from(blob)
        if magic != MAGIC or version != FORMAT_VERSION or n != len(blob) - HEADER_BYTES:
            return None
        payload = blob[HEADER_BYTES:]
        return payload if self._digest(key, payload) == digest else None

    def __contains__(self, key: TileKey) -> bool:
        return self.path(key).exists()

    # -- write ---------------------------------------------------------------------------
    def put(self, key: TileKey, payload: bytes) -> None:
        """Store ``payload`` for ``key`` atomically (readers see the old file or the new one)."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"payload of {len(payload)} bytes exceeds the store limit of {MAX_PAYLOAD_BYTES}"
            )
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), self._digest(key, payload))
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomic(path, header, payload)
        self._count("_writes")

    def _write_atomic(self, path: Path, *parts: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{_TMP_SUFFIX}")
        try:
            with open(tmp, "wb") as f:
                for part in parts:
                    f.write(part)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        if self.durable:
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)  # make the rename itself durable
            finally:
                os.close(fd)

    # -- maintenance ---------------------------------------------------------------------
    def sweep(self, older_than_s: float = 60.0, now_s: float | None = None) -> int:
        """Delete temporary files left by killed writers; returns how many.

        Only files older than ``older_than_s`` go: a live writer of another server
        sharing the store may own a fresh one.
        """
        now_s = time.time() if now_s is None else now_s
        removed = 0
        for tmp in self.root.rglob(f".*{_TMP_SUFFIX}"):
            try:
                if now_s - tmp.stat().st_mtime >= older_than_s:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def stats(self) -> StoreStats:
        return StoreStats(self._hits, self._misses, self._writes, self._corrupt)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
