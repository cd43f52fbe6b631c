"""Pyramid blocks shared by the generator processes of one server (issue 15).

``serve --gen-procs N`` deals keys to N worker processes, each with its own pyramid and block
cache, so a parent block two workers need is made twice: 1.27x the blocks of one pyramid for
a 2-worker teleport, 1.64-1.68x for 12 workers on the throughput keys (bench/shard_blocks.py).
A block is a pure function of (world, seed, refiner, level, block index) (generator/pyramid.py),
so any worker may use any other worker's copy: ``SharedBlocks`` is a fixed table of blocks in one
file under ``/dev/shm`` that every worker maps. A pyramid that lacks a block in its own cache
looks here before computing it, and puts every block it computes here.

The table: ``slots`` slots of one block each, in sets of ``WAYS``; a key's set is a hash of
(level, bi, bj); within a set the slot used least recently is replaced. A set is locked
while a slot's key and data are read or written, so no reader sees half a block: a POSIX
record lock on the set's byte of the file (``fcntl.lockf``), which the kernel releases when
its process dies, so a worker killed inside a lookup blocks no other. A worker keeps what it
read in its own cache, so each lookup copies a block once (64 x 64 blocks of 4 channels: 68 KB,
~10 us).

Only the model id the table was made for is accepted (``Pyramid.share`` checks it, with the
block size and channels). The file is made by the server (``create``), mapped by each worker
when it unpickles the handle, and removed by ``close`` (and, for a server that died, by the
next ``create`` on the same machine: files of pids that no longer run).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import re
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
PREFIX = "worldstream-blocks-"
WAYS = 4
_HEADER_COLS = 4  # level, bi, bj, last use (level -1: empty)
_counter = 0


def _set_of(level: int, bi: int, bj: int, sets: int) -> int:
    """The set of a block: a fixed integer hash (the same in every process; no PYTHONHASHSEED)."""
    h = (level * 0x9E3779B1) ^ (bi * 0x85EBCA77) ^ (bj * 0xC2B2AE3D)
    h ^= h >> 15
    return (h * 0x2C1B3C6D) % sets


class SharedBlocks:
    """A table of pyramid blocks in shared memory (see the module doc). Picklable: a worker
    gets the handle through its spawn arguments and maps the same file."""

    def __init__(self, path: str, slots: int, channels: int, block: int, model_id: str, owner: bool = False):
        self.path, self.slots, self.channels, self.block = path, slots, channels, block
        self.model_id, self.owner = model_id, owner
        self.sets = slots // WAYS
        self.hits = self.misses = self.puts = 0
        self._map()

    @classmethod
    def create(cls, budget_bytes: int, channels: int, block: int, model_id: str) -> "SharedBlocks":
        """A new table of at most ``budget_bytes`` for blocks of ``channels`` x (``block`` + 1)^2
        float32 of model ``model_id``. OSError where /dev/shm cannot hold it."""
        global _counter
        if not SHM_DIR.is_dir():
            raise OSError(f"{SHM_DIR} is not here: no shared blocks")
        _remove_stale()
        slot_bytes = channels * (block + 1) ** 2 * 4 + _HEADER_COLS * 8
        slots = (budget_bytes // slot_bytes) // WAYS * WAYS
        if slots < WAYS:
            raise ValueError(f"a shared block table of {budget_bytes} bytes holds no set of {WAYS} "
                             f"blocks of {slot_bytes} bytes")
        _counter += 1
        path = str(SHM_DIR / f"{PREFIX}{os.getpid()}-{_counter}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:  # the pages now, not as faults in every worker's first puts
            os.posix_fallocate(fd, 0, slots * slot_bytes)
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        table = cls(path, slots, channels, block, model_id, owner=True)
        table._keys[:, 0] = -1
        return table

    def _map(self) -> None:
        # kept open: closing any descriptor of the file would drop this process's record locks
        self._fd = os.open(self.path, os.O_RDWR)
        # every page mapped now: a fault per 4 KiB page cost a worker's first puts ~30 us a block
        self._mm = mmap.mmap(self._fd, 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        n = self.slots * _HEADER_COLS
        self._keys = np.frombuffer(self._mm, np.int64, n).reshape(self.slots, _HEADER_COLS)
        shape = (self.slots, self.channels, self.block + 1, self.block + 1)
        self._data = np.frombuffer(self._mm, np.float32, int(np.prod(shape)), n * 8).reshape(shape)

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("path", "slots", "channels", "block", "model_id")}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state, owner=False)

    @contextlib.contextmanager
    def _set(self, key: tuple[int, int, int]):
        """Hold the lock of ``key``'s set; yields (its first slot, its rows of keys, those rows as
        lists, the slot holding ``key`` or None)."""
        s = _set_of(*key, self.sets)
        first = s * WAYS
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, s)
        try:
            rows = self._keys[first : first + WAYS]
            ways = rows.tolist()  # one call instead of a numpy scalar per comparison
            at = next((w for w, r in enumerate(ways) if (r[0], r[1], r[2]) == key), None)
            yield first, rows, ways, at
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, s)

    def get(self, key: tuple[int, int, int]) -> np.ndarray | None:
        """A copy of block ``key`` = (level, bi, bj), or None."""
        first = _set_of(*key, self.sets) * WAYS
        if key not in map(tuple, self._keys[first : first + WAYS, :3].tolist()):
            # A miss needs no lock: a key being written now may be missed, and then the block is
            # computed again (the same bytes). A hit is read again under the lock.
            self.misses += 1
            return None
        with self._set(key) as (first, rows, ways, at):
            if at is not None:
                rows[at, 3] = max(r[3] for r in ways) + 1  # the set's newest use
                self.hits += 1
                return self._data[first + at].copy()
        self.misses += 1
        return None

    def put(self, key: tuple[int, int, int], block: np.ndarray) -> None:
        """Keep ``block`` (channels, B + 1, B + 1) as ``key``, replacing the set's least recently
        used slot (nothing if the key is there: every copy of a block is the same)."""
        with self._set(key) as (first, rows, ways, at):
            if at is not None:
                return
            w = min(range(WAYS), key=lambda k: -1 if ways[k][0] < 0 else ways[k][3])  # empty first, else oldest
            rows[w, 0] = -1  # not a valid key while its data is written (a crash here leaves it empty)
            self._data[first + w] = block
            rows[w] = (*key, max(r[3] for r in ways) + 1)
            self.puts += 1

    def held(self) -> int:
        """How many blocks the table holds now (every process's puts)."""
        return int((self._keys[:, 0] >= 0).sum())

    def close(self) -> None:
        """Unmap; the owner (the server) also removes the file."""
        self._keys = self._data = None
        try:
            self._mm.close()
        except BufferError:  # a caller still holds a view: the mapping goes with it
            pass
        os.close(self._fd)
        if self.owner:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _remove_stale() -> None:
    """Remove tables of servers that died without closing (their pid no longer runs)."""
    for p in SHM_DIR.glob(PREFIX + "*"):
        m = re.fullmatch(re.escape(PREFIX) + r"(\d+)-\d+", p.name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            try:
                p.unlink()
                log.info("removed %s, left by a server that is gone", p)
            except OSError:
                pass
        except PermissionError:  # another user's live process
            pass
