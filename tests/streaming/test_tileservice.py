"""TileService without sockets: store across restarts, corrupt store files, LRU bound,
batch formation, priorities."""

import asyncio
import time

import msgpack
import pytest
from stream_fixtures import SyntheticSource, run

from runtime.tiles import TileKey
from streaming.fairqueue import FairQueue
from streaming.store import HEADER_BYTES, TileStore
from streaming.tileservice import ServiceConfig, TileService


async def _get_all(service, keys, prios=None):
    futs = [service.get(k, p) for k, p in zip(keys, prios or [0.0] * len(keys), strict=True)]
    return await asyncio.gather(*futs)


def _with_service(source, fn, store=None, config=None):
    async def main():
        s = TileService("plane", source, config or ServiceConfig(), store=store)
        await s.start()
        try:
            return await fn(s)
        finally:
            await s.close()

    return run(main())


def test_store_serves_tiles_after_a_restart_without_the_generator(tmp_path):
    keys = [TileKey(6, x, 1) for x in range(3)]
    first = SyntheticSource()
    frames = _with_service(first, lambda s: _get_all(s, keys), TileStore(tmp_path, "synthetic-1", "plane", 1))
    assert sorted(first.keys_generated) == keys
    again = SyntheticSource()
    store = TileStore(tmp_path, "synthetic-1", "plane", 1)  # a new process, the same folder

    async def fetch(s):
        out = await _get_all(s, keys)
        return out, s.stats()

    frames2, stats = _with_service(again, fetch, store)
    assert again.calls == [] and frames2 == frames and stats.store_hits == 3
    assert msgpack.unpackb(frames2[0], raw=False)["key"] == [6, 0, 1]


def test_a_corrupt_store_file_is_made_again_never_served(tmp_path):
    key = TileKey(5, 2, 2)
    frame = _with_service(
        SyntheticSource(), lambda s: s.get(key), TileStore(tmp_path, "synthetic-1", "plane", 1)
    )
    store = TileStore(tmp_path, "synthetic-1", "plane", 1)
    p = store.path(key)
    blob = bytearray(p.read_bytes())
    blob[HEADER_BYTES + len(blob) // 3] ^= 0xFF
    p.write_bytes(bytes(blob))
    src = SyntheticSource()
    frame2 = _with_service(src, lambda s: s.get(key), store)
    assert frame2 == frame and src.keys_generated == [key]  # regenerated, identical bytes
    assert store.stats().corrupt == 1 and store.get(key) == frame  # and rewritten intact


def test_lru_is_bounded_by_bytes():
    keys = [TileKey(7, x, 0) for x in range(10)]

    async def fill(s):
        frames = await _get_all(s, keys)
        stats = s.stats()
        held = [k for k in keys if s.cached(k) is not None]
        return frames, stats, held

    frames, stats, held = _with_service(SyntheticSource(), fill, config=ServiceConfig(cache_bytes=3 * 6000))
    assert stats.lru_bytes <= 3 * 6000 and 0 < stats.lru_tiles < len(keys)
    # The frames held are whole frames of the keys asked for, and their bytes are the bound's
    # count. (Which keys stay depends on the order the generator finished them in: batches are
    # formed as requests arrive, so it is not always the order they were asked in.)
    assert len(held) == stats.lru_tiles
    assert stats.lru_bytes == sum(len(frames[keys.index(k)]) for k in held)


def test_batches_fill_up_to_max_batch_and_go_by_priority():
    src = SyntheticSource()
    keys = [TileKey(4, x, 0) for x in range(10)]

    async def main(s):
        src.gate.clear()
        blocker = s.get(TileKey(4, 99, 99))
        await asyncio.to_thread(src.entered.wait, 10)
        futs = [s.get(k, float(i)) for i, k in enumerate(keys)]  # queued while the generator is busy
        await asyncio.sleep(0.05)
        src.gate.set()
        await asyncio.gather(blocker, *futs)
        return s.stats()

    # A budget the held first batch cannot shrink below 4 keys (the budget has its own test).
    stats = _with_service(src, main, config=ServiceConfig(max_batch=4, batch_wait_s=0.0, batch_budget_s=60.0))
    assert src.calls[0] == [TileKey(4, 99, 99)]
    assert src.calls[1:] == [keys[9:5:-1], keys[5:1:-1], keys[1::-1]]  # highest priority first, 4 a batch
    assert stats.batches == 4 and stats.generated == 11


class _SlowSource(SyntheticSource):
    """At least ``key_s`` seconds of generator time per key."""

    def __init__(self, key_s: float):
        super().__init__()
        self.key_s = key_s

    def __call__(self, keys):
        time.sleep(self.key_s * len(keys))
        return super().__call__(keys)


def test_batches_shrink_to_the_time_budget_once_keys_are_measured():
    src = _SlowSource(0.06)
    keys = [TileKey(4, x, 0) for x in range(7)]

    async def main(s):
        await asyncio.gather(*(s.get(k) for k in keys))

    _with_service(src, main, config=ServiceConfig(max_batch=4, batch_wait_s=0.0, batch_budget_s=0.1))
    # The first batch is full (nothing measured yet); then 0.1 s / >= 0.06 s per key = 1 key.
    assert [len(c) for c in src.calls] == [4, 1, 1, 1]


def test_full_batches_keep_max_batch_keys_however_slow_a_key_is():
    """A source whose refiner calls are GPU round trips plans a batch's blocks together: every
    call takes up to max_batch keys, not as many as fit the time budget."""
    src = _SlowSource(0.06)
    keys = [TileKey(4, x, 0) for x in range(7)]

    async def main(s):
        await asyncio.gather(*(s.get(k) for k in keys))

    _with_service(src, main, config=ServiceConfig(max_batch=4, batch_wait_s=0.0, batch_budget_s=0.1,
                                                  full_batches=True))
    assert [len(c) for c in src.calls] == [4, 3]


def test_dynamic_batching_waits_a_few_ms_for_more_keys():
    src = SyntheticSource()

    async def main(s):
        a = s.get(TileKey(3, 0, 0))
        await asyncio.sleep(0.005)  # inside the 50 ms window: joins the first batch
        b = s.get(TileKey(3, 1, 0))
        await asyncio.gather(a, b)

    _with_service(src, main, config=ServiceConfig(max_batch=8, batch_wait_s=0.05))
    assert src.calls == [[TileKey(3, 0, 0), TileKey(3, 1, 0)]]


def test_config_is_validated():
    with pytest.raises(ValueError, match="batch_wait_s"):
        ServiceConfig(batch_wait_s=5.0)
    with pytest.raises(ValueError, match="max_batch"):
        ServiceConfig(max_batch=0)


def test_fair_queue_serves_lanes_round_robin_by_priority_within():
    q = FairQueue()
    for i in range(5):
        assert q.push("flood", ("f", i), 1e300)
    assert q.push("a", ("a", 0), 1.0) and q.push("a", ("a", 1), 2.0) and q.push("b", ("b", 0), 0.0)
    assert not q.push("b", ("a", 0), 9.0)  # queued once, in its first lane
    order = [q.pop() for _ in range(len(q))]
    assert order[:6] == [("f", 0), ("a", 1), ("b", 0), ("f", 1), ("a", 0), ("f", 2)]
    assert order[6:] == [("f", 3), ("f", 4)] and len(q) == 0 and q.lanes() == 0


def test_a_flooding_client_gets_its_share_of_the_generator_not_more():
    src = SyntheticSource()
    flood = [TileKey(6, x, 7) for x in range(40)]
    modest = [TileKey(6, 0, 50), TileKey(6, 1, 50)]

    async def main(s):
        src.gate.clear()
        first = s.get(TileKey(6, 99, 99), owner="flood")
        await asyncio.to_thread(src.entered.wait, 10)
        futs = [s.get(k, 1e300, owner="flood") for k in flood]
        mine = [s.get(k, 0.0, owner="modest") for k in modest]
        src.gate.set()
        await asyncio.gather(first, *futs, *mine)

    _with_service(src, main, config=ServiceConfig(max_batch=4, batch_wait_s=0.0))
    # The modest client's two keys are in the first batch after the one in progress.
    assert set(modest) <= set(src.calls[1])


def test_fair_queue_serves_an_occasional_lane_next_not_after_every_backlogged_lane():
    q = FairQueue()
    for lane in "abcd":  # four backlogged lanes
        for i in range(50):
            q.push(lane, (lane, i), 0.0)
    served = [q.pop() for _ in range(41)]  # ten rounds of one item per lane, and one more
    assert [k[0] for k in served[:8]] == list("abcdabcd") and served[40] == ("a", 10)
    q.push("good", ("good", 0), 0.0)  # a client that asks now and then
    assert q.pop() == ("good", 0)  # idle until now: next, not after b, c and d
    q.push("good", ("good", 1), 0.0)  # asks again at once: no longer idle, waits its turn
    assert [q.pop()[0] for _ in range(5)] == ["b", "c", "d", "a", "good"]


def test_fair_queue_remove_keeps_memory_to_what_is_wanted():
    q = FairQueue()
    q.push("busy", "x", 0.0)
    for r in range(1000):  # request/cancel churn while nothing is popped
        for i in range(64):
            q.push("churn", (r, i), 0.0)
        for i in range(64):
            assert q.remove((r, i))
        assert len(q) == 1 and q.lanes() == 1 and q.heap_entries() == 1
    assert len(q._ready) <= 2 * len(q._tag) + 16
    assert not q.remove("nope") and q.pop() == "x" and len(q) == 0


def test_fair_queue_shares_cost_not_item_count():
    q = FairQueue()
    for i in range(30):
        q.push("heavy", ("heavy", i), 0.0)
        q.push("light", ("light", i), 0.0)
    served = []
    for _ in range(22):
        item = q.pop(cost=1.0)
        if item[0] == "heavy":
            q.charge("heavy", 9.0)  # measured: a heavy item costs 10, a light one 1
        served.append(item[0])
    assert served.count("heavy") == 2 and served.count("light") == 20  # 20 units each
