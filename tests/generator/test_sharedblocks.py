"""The generator workers' shared block table (generator/sharedblocks.py).

A block put is got back equal, by this process and by another one; a full set gives up its
least recently used block; pyramids behind one table make the same tiles as a pyramid on its
own, and the second makes few blocks; a table of another model is refused; a process killed
while it holds a set's lock blocks no one; the owner's close removes the file, and a table
left by a process that is gone is removed by the next one made.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import numpy as np
import pytest

from generator import sharedblocks
from generator.pyramid import Pyramid
from generator.sharedblocks import WAYS, SharedBlocks, _set_of
from runtime.tiles import TileKey, World

C, B = 4, 16
SLOT = C * (B + 1) ** 2 * 4 + 32


def _block(v: float) -> np.ndarray:
    return np.full((C, B + 1, B + 1), v, np.float32) + np.arange((B + 1) ** 2, dtype=np.float32).reshape(B + 1, B + 1)


def _same_set(table: SharedBlocks, n: int) -> list[tuple[int, int, int]]:
    """n block keys of one set."""
    want = _set_of(9, 0, 0, table.sets)
    keys = [(9, i, j) for i in range(200) for j in range(200) if _set_of(9, i, j, table.sets) == want]
    return keys[:n]


@pytest.fixture
def table():
    t = SharedBlocks.create(8 * WAYS * SLOT, C, B, "test-model")
    yield t
    t.close()


def test_a_block_put_is_got_back_and_a_full_set_gives_up_its_least_recently_used(table):
    assert table.slots == 8 * WAYS and table.held() == 0
    assert table.get((5, 1, 2)) is None
    table.put((5, 1, 2), _block(3.0))
    got = table.get((5, 1, 2))
    assert np.array_equal(got, _block(3.0)) and got.flags.writeable  # a copy, not a view of the table
    got[:] = 0
    assert np.array_equal(table.get((5, 1, 2)), _block(3.0))
    keys = _same_set(table, WAYS + 1)
    for i, k in enumerate(keys[:WAYS]):
        table.put(k, _block(float(i)))
    assert table.get(keys[0]) is not None  # used again: keys[1] is now the least recently used
    table.put(keys[WAYS], _block(99.0))
    assert table.get(keys[1]) is None
    assert [np.array_equal(table.get(k), _block(v)) for k, v in
            ((keys[0], 0.0), (keys[2], 2.0), (keys[3], 3.0), (keys[WAYS], 99.0))] == [True] * 4
    table.put(keys[0], _block(7.0))  # a key already there keeps its block (every copy is the same)
    assert np.array_equal(table.get(keys[0]), _block(0.0))


def test_pyramids_behind_one_table_make_the_same_tiles_and_the_second_few_blocks():
    keys = [TileKey(9, 140, 150), TileKey(9, 141, 150), TileKey(10, 282, 301)]
    alone = Pyramid(World.PLANE, 3, "fractal")
    want = [alone.tile(k).height for k in keys]
    first, second = Pyramid(World.PLANE, 3, "fractal"), Pyramid(World.PLANE, 3, "fractal")
    table = SharedBlocks.create(64 << 20, first.channels, first.block, first.model_id)
    try:
        first.share(table)
        second.share(table)
        assert np.array_equal(first.tile(keys[0]).height, want[0])
        assert np.array_equal(second.tile(keys[0]).height, want[0]) and second.blocks_computed == 0
        got = [second.tile(k).height for k in keys[1:]]  # their parents: the first's
        assert all(np.array_equal(g, w) for g, w in zip(got, want[1:], strict=True))
        assert first.blocks_computed + second.blocks_computed == alone.blocks_computed and table.hits > 0
        assert table.held() == first.blocks_computed + second.blocks_computed
    finally:
        table.close()


def test_a_table_of_another_model_or_layout_is_refused():
    pyr = Pyramid(World.PLANE, 3, "fractal")
    for model, block in (("fractal-5+0000000000", pyr.block), (pyr.model_id, 32)):
        t = SharedBlocks.create(16 << 20, pyr.channels, block, model)
        try:
            with pytest.raises(ValueError, match="do not fit"):
                pyr.share(t)
        finally:
            t.close()


def _child_put_then_die_holding_a_lock(table: SharedBlocks, key, lock_set: int) -> None:
    import fcntl

    table.put(key, _block(42.0))
    fcntl.lockf(table._fd, fcntl.LOCK_EX, 1, lock_set)  # held when it dies
    os.kill(os.getpid(), signal.SIGKILL)


def test_another_process_sees_the_blocks_and_dying_with_a_lock_blocks_no_one(table):
    key = (12, 5, 6)
    s = _set_of(*key, table.sets)
    p = multiprocessing.get_context("spawn").Process(target=_child_put_then_die_holding_a_lock,
                                                     args=(table, key, s))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    got: list = []
    t = threading.Thread(target=lambda: got.append(table.get(key)), daemon=True)
    t.start()
    t.join(10)  # a lock the kernel did not release would hang here
    assert not t.is_alive() and np.array_equal(got[0], _block(42.0))


def test_close_removes_the_file_and_a_table_of_a_process_that_is_gone_is_removed():
    t = SharedBlocks.create(16 << 20, C, B, "m")
    path = t.path
    assert os.path.exists(path)
    t.close()
    assert not os.path.exists(path)
    p = multiprocessing.get_context("spawn").Process(target=int)
    p.start()
    p.join(60)
    stale = sharedblocks.SHM_DIR / f"{sharedblocks.PREFIX}{p.pid}-1"
    stale.write_bytes(b"x")
    live = sharedblocks.SHM_DIR / f"{sharedblocks.PREFIX}{os.getpid()}-999999"
    live.write_bytes(b"x")
    try:
        SharedBlocks.create(16 << 20, C, B, "m").close()
        assert not stale.exists() and live.exists()  # this process runs: its file stays
    finally:
        for f in (stale, live):
            f.unlink(missing_ok=True)
