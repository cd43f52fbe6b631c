"""ProcessEncoder: the production encoder in worker processes gives the same frame bytes."""

from dataclasses import dataclass

import numpy as np
import pytest

from runtime.tiles import T, TileKey, World
from streaming.procencode import ProcessEncoder
from streaming.tileservice import mesh_encoder


@dataclass
class _Fields:
    height: np.ndarray
    rgb: np.ndarray | None
    model: str


def test_process_encoder_matches_the_thread_encoder_byte_for_byte():
    r, c = np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij")
    h = (300.0 * np.sin(r / 19.0) * np.cos(c / 23.0) + 0.5 * r).astype(np.float32)
    rgb = np.stack([r / T, c / T, np.full_like(r, 0.5, dtype=np.float64)], -1).astype(np.float32)
    key = TileKey(9, 3, 2)
    enc = ProcessEncoder(1)
    try:
        for fields in (_Fields(h, None, "test"), _Fields(h, rgb, "test")):
            got = enc(World.PLANE, key, fields)
            assert isinstance(got, bytes) and got == mesh_encoder()(World.PLANE, key, fields)
    finally:
        enc.close()
    with pytest.raises(ValueError, match="processes must be >= 1"):
        ProcessEncoder(0)


def test_fields_travel_through_reused_shared_slots_that_close_removes():
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    r, c = np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij")
    keys = [TileKey(10, 7 + i, 3) for i in range(6)]
    tiles = [(300.0 * np.sin((r + 9 * i) / 13.0) * np.cos(c / 31.0)).astype(np.float32) for i in range(6)]
    rgb = np.stack([r / T, c / T, np.full(r.shape, 0.25)], -1)  # float64: cast like the thread encoder
    want = [mesh_encoder()(World.EARTH, k, _Fields(h, rgb, "m")) for k, h in zip(keys, tiles)]
    enc = ProcessEncoder(2)
    try:
        with ThreadPoolExecutor(3) as pool:  # three callers at once, as the service's threads
            got = list(pool.map(lambda kh: enc(World.EARTH, kh[0], _Fields(kh[1], rgb, "m")), zip(keys, tiles)))
        assert got == want
        paths = list(enc._paths)
        assert 1 <= len(paths) <= 3 and all(Path(p).stat().st_size > 4 * (T + 1) ** 2 for p in paths)
        assert enc(World.EARTH, keys[0], _Fields(tiles[0], rgb, "m")) == want[0] and enc._paths == paths  # reused
    finally:
        enc.close()
    assert not any(Path(p).exists() for p in paths)


def test_slot_files_of_a_dead_server_are_swept_at_start():
    import subprocess
    import sys
    from pathlib import Path

    from streaming.procencode import _PREFIX

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    if folder is None:
        pytest.skip("no /dev/shm")
    stale, other = folder / f"{_PREFIX}{pid}-0-0", folder / "worldstream-enc-notapid"
    stale.write_bytes(b"x")
    other.write_bytes(b"y")
    try:
        ProcessEncoder(1, warm=False).close()
        assert not stale.exists() and other.exists()  # only slot names with a dead owner
    finally:
        stale.unlink(missing_ok=True)
        other.unlink(missing_ok=True)
