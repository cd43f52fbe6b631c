"""The on-disk tile store: round trips, restarts, kill -9 mid-write, corrupted bytes."""

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.tiles import TileKey
from streaming.store import HEADER_BYTES, TileStore

ROOT = Path(__file__).resolve().parents[2]


def _payload(key: TileKey, n: int) -> bytes:
    seed = hashlib.sha256(str(key).encode()).digest()
    return (seed * (n // len(seed) + 1))[:n]


def test_round_trip_and_namespaces(tmp_path):
    s = TileStore(tmp_path, model="fractal-1+abc", world="plane", seed=3)
    k = TileKey(5, -3, 7)
    assert s.get(k) is None
    s.put(k, b"tile bytes")
    assert s.get(k) == b"tile bytes"
    assert s.path(k).stat().st_size == HEADER_BYTES + len(b"tile bytes")
    # Another model, seed or world never sees it.
    assert TileStore(tmp_path, model="fractal-1+abd", world="plane", seed=3).get(k) is None
    assert TileStore(tmp_path, model="fractal-1+abc", world="plane", seed=4).get(k) is None
    assert TileStore(tmp_path, model="fractal-1+abc", world="earth", seed=3).get(k) is None
    # A restart (new instance, same root) does.
    assert TileStore(tmp_path, model="fractal-1+abc", world="plane", seed=3).get(k) == b"tile bytes"


@pytest.mark.parametrize("damage", ["flip_payload", "flip_header", "truncate", "extend", "empty"])
def test_corrupt_bytes_are_never_served(tmp_path, damage):
    s = TileStore(tmp_path, model="m", world="plane", seed=0)
    k = TileKey(2, 1, 1)
    good = _payload(k, 5000)
    s.put(k, good)
    p = s.path(k)
    blob = bytearray(p.read_bytes())
    if damage == "flip_payload":
        blob[HEADER_BYTES + 1234] ^= 0x01
    elif damage == "flip_header":
        blob[9] ^= 0x80
    elif damage == "truncate":
        blob = blob[:-1]
    elif damage == "extend":
        blob += b"\0"
    else:
        blob = bytearray()
    p.write_bytes(bytes(blob))
    assert s.get(k) is None
    assert not p.exists()  # deleted so that it is made again
    assert s.stats().corrupt == 1
    s.put(k, good)
    assert s.get(k) == good


def test_a_file_copied_to_another_key_does_not_validate(tmp_path):
    s = TileStore(tmp_path, model="m", world="plane", seed=0)
    a, b = TileKey(3, 0, 0), TileKey(3, 0, 1)
    s.put(a, b"AAAA")
    s.path(b).parent.mkdir(parents=True, exist_ok=True)
    s.path(b).write_bytes(s.path(a).read_bytes())
    assert s.get(b) is None and s.get(a) == b"AAAA"


_WRITER = r"""
import hashlib, sys
from runtime.tiles import TileKey
from streaming.store import TileStore
s = TileStore(sys.argv[1], model="m", world="plane", seed=0)
n = int(sys.argv[2])
i = 0
while True:
    k = TileKey(9, i, 0)
    seed = hashlib.sha256(str(k).encode()).digest()
    s.put(k, (seed * (n // 32 + 1))[:n])
    print(i, flush=True)
    i += 1
"""


def test_survives_kill_9_mid_write(tmp_path):
    n = 3 << 20  # 3 MiB per tile: the kill lands inside a write most of the time
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), str(n)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    try:
        for _ in range(4):  # four tiles complete, the fifth is being written
            proc.stdout.readline()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    s = TileStore(tmp_path, model="m", world="plane", seed=0)
    files = sorted(s.root.rglob("*.tile"))
    assert len(files) >= 4
    intact = 0
    for i in range(len(files) + 2):
        k = TileKey(9, i, 0)
        got = s.get(k)
        assert got is None or got == _payload(k, n)  # whole tile or nothing
        intact += got is not None
    assert intact >= 4 and s.stats().corrupt == 0
    # A torn write leaves only a temporary file, which the sweep removes.
    s.sweep(older_than_s=0.0)
    assert list(s.root.rglob("*.tmp")) == []


def test_sweep_keeps_fresh_temporary_files(tmp_path):
    s = TileStore(tmp_path, model="m", world="plane", seed=0)
    tmp = s.root / "4" / ".1_1.tile.999.1.tmp"
    tmp.parent.mkdir(parents=True)
    tmp.write_bytes(b"half a tile")
    assert s.sweep(older_than_s=60.0) == 0 and tmp.exists()
    assert s.get(TileKey(4, 1, 1)) is None
    assert s.sweep(older_than_s=60.0, now_s=tmp.stat().st_mtime + 61) == 1 and not tmp.exists()
