"""The generator is preemptible (issue 19): a deep fresh tile runs as short steps
(``Pyramid.prepare``) through the fair queue, so a light client's uncached tile is made
after one step of a hostile client's work, not after all of it. Real objects: the plane
pyramid with the fractal refiner, TileService, TileServer on 127.0.0.1 and websockets;
the assertions count generator calls, never wall time."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from stream_fixtures import loopback_server, run
from websockets.asyncio.client import connect

from generator.pyramid import open_world
from runtime.tiles import T, TileKey, World, spacing_m
from streaming import protocol as P
from streaming.fairqueue import FairQueue
from streaming.heights import HeightConfig, HeightService, heights_at
from streaming.protocol import Limits
from streaming.server import MAX_TILE_FRAME_BYTES
from streaming.tileservice import ServiceConfig, TileService

GOOD = TileKey(12, 5000, 3000)  # a neighbour of a tile already made: cheap (~36 blocks)
DEEP = [TileKey(14, 900_001 + 2 * i, 7000) for i in range(4)]  # fresh: the whole chain from level 3


class Recorder:
    """A pyramid's ``tiles`` and ``prepare``, logging every generator call in order; the
    first call waits for ``gate`` so the test can queue a request behind it."""

    def __init__(self, pyramid):
        self.pyramid = pyramid
        self.log: list[tuple[str, tuple[TileKey, ...], tuple[bool, ...]]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def _first_call_waits(self) -> None:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"

    def prepare(self, keys, budget_s):
        self._first_call_waits()
        out = self.pyramid.prepare(keys, budget_s, clock=self.block_clock)
        self.log.append(("step", tuple(keys), tuple(done for done, _ in out)))
        return out

    def block_clock(self) -> float:
        """Steps measured in blocks, not seconds (one block = 1 ms): the same steps on
        any machine at any load."""
        return self.pyramid.blocks_computed * 1e-3

    def tiles(self, keys):
        self._first_call_waits()
        out = self.pyramid.tiles(keys)
        self.log.append(("made", tuple(keys), ()))
        return out

    def made_before(self, key: TileKey) -> list[tuple]:
        """The generator calls logged before the one that made ``key``."""
        i = next(i for i, (what, keys, _) in enumerate(self.log) if what == "made" and key in keys)
        return self.log[:i]


def _pyramid():
    pyr = open_world("plane", 0, "fractal", cache_bytes=64 << 20)
    pyr.tiles([TileKey(12, GOOD.x - 1, GOOD.y)])  # GOOD's neighbour: its ancestors are held
    return pyr


def _centres(keys: list[TileKey]) -> np.ndarray:
    """(n, 2) plane points (east, north m) at the middle of each tile."""
    s = spacing_m(keys[0].level)
    return np.array([[(k.x + 0.5) * T * s, -(k.y + 0.5) * T * s] for k in keys])


async def _attack_and_fetch(rec: Recorder, step_s: float) -> tuple[dict, bytes]:
    """A hostile connection asks heights over 4 fresh level-14 tiles (~100 blocks each); while the first
    generator call of that work is held, a good connection asks for GOOD. Returns the
    height answer and GOOD's tile frame."""
    cfg = ServiceConfig(step_s=step_s, batch_wait_s=0)
    async with loopback_server(rec.tiles, heights=True, service_config=cfg, limits=Limits(max_level=16),
                               prepare=rec.prepare if step_s > 0 else None) as (srv, url):
        async def hello():
            ws = await connect(url, compression=None, max_size=MAX_TILE_FRAME_BYTES)
            await ws.send(P.pack({"type": "hello", "protocol": 1, "credits": 64}))
            assert P.unpack(await ws.recv(), 1 << 30)["type"] == "hello"
            return ws

        try:
            return await _race(srv, rec, await hello(), await hello())
        finally:
            rec.gate.set()  # never leave the generator thread waiting on a failed test


async def _race(srv, rec: Recorder, attacker, good) -> tuple[dict, bytes]:
    await attacker.send(P.pack({"type": "height", "id": 1, "points": P.encode_array(_centres(DEEP)),
                                "mode": "detailed", "level": 14}))
    await asyncio.get_running_loop().run_in_executor(None, rec.entered.wait, 30)
    await good.send(P.pack({"type": "request", "keys": [[GOOD.level, GOOD.x, GOOD.y]]}))
    async with asyncio.timeout(20):
        while srv.service.stats().queued < 1:  # GOOD waits behind the held call
            await asyncio.sleep(0.002)
    rec.gate.set()
    tile = await asyncio.wait_for(good.recv(), 60)
    answer = P.unpack(await asyncio.wait_for(attacker.recv(), 60), 1 << 30)
    for ws in (attacker, good):
        await ws.close()
    return answer, tile


def test_a_light_clients_tile_is_made_after_one_step_of_a_deep_height_query():
    rec = Recorder(_pyramid())
    answer, tile = run(_attack_and_fetch(rec, step_s=0.05))  # 50 blocks a step: GOOD needs 36
    others = [e for e in rec.made_before(GOOD) if GOOD not in e[1]]
    # Of the attacker's work only the held step and one more ran before GOOD (the good
    # connection is a lane never seen: it starts one step behind, FairQueue.new_debit);
    # none of the attacker's tiles was finished.
    assert len(others) == 2 and {e[0] for e in others} == {"step"}, others
    # The deep tiles really ran in several steps, each put back unfinished, and all got made.
    deep_calls = [keys for what, keys, _ in rec.log if what == "step" and set(keys) & set(DEEP)]
    assert len(deep_calls) > len(DEEP), rec.log
    assert {k for what, keys, _ in rec.log if what == "made" for k in keys} >= {GOOD, *DEEP}
    assert P.unpack(tile, 1 << 30)["key"] == [GOOD.level, GOOD.x, GOOD.y]
    # The answer is the pyramid's own heights at those points (steps change no value).
    fresh = open_world("plane", 0, "fractal")
    grids = {k: fresh.tile(k).height for k in DEEP}
    want, _ = heights_at(World.PLANE, 14, _centres(DEEP), grids)
    assert answer["type"] == "height" and answer["id"] == 1
    np.testing.assert_array_equal(P.decode_array(answer["height_m"], "height_m"), want)


def test_without_steps_the_same_attack_holds_the_generator_for_whole_tiles():
    """The control: with ``step_s = 0`` the first call makes every deep tile of the batch
    before GOOD (what the bench measured as seconds of uncached latency)."""
    rec = Recorder(_pyramid())
    run(_attack_and_fetch(rec, step_s=0.0))
    before = rec.made_before(GOOD)
    assert set(DEEP) <= {k for what, keys, _ in before for k in keys}


def test_a_key_cancelled_between_steps_is_never_worked_on_again():
    rec = Recorder(open_world("plane", 0, "fractal", cache_bytes=64 << 20))
    deep = DEEP[0]

    async def main():
        service = TileService("plane", rec.tiles, ServiceConfig(step_s=0.001, batch_wait_s=0), prepare=rec.prepare)
        await service.start()
        try:
            fut = service.get(deep, owner="hostile")
            await asyncio.get_running_loop().run_in_executor(None, rec.entered.wait, 30)
            service.release(deep, fut)  # cancelled while its first step runs
            rec.gate.set()
            async with asyncio.timeout(20):
                while service.stats().preempted < 1:  # the step came back unfinished
                    await asyncio.sleep(0.002)
            return service.stats()
        finally:
            await service.close()

    stats = run(main())
    assert [what for what, _, _ in rec.log] == ["step"] and rec.log[0][2] == (False,)
    assert stats.preempted == 1 and stats.dropped_cancelled == 1 and stats.generated == 0
    assert stats.queued == 0 and stats.waiting_keys == 0


def test_a_key_re_prioritised_while_its_step_runs_is_queued_again_at_the_new_priority():
    """A client re-prioritises a key once, when its view changes; if that happens while a
    step of the key runs, the key must go back to the queue at the new priority, not the
    one it was asked with. Four fresh deep keys of one lane, one step (20 blocks) a call:
    the first is asked at the lowest priority and raised to the highest during its held
    first step; every later step of it comes before any other key's."""
    rec = Recorder(open_world("plane", 0, "fractal", cache_bytes=64 << 20))
    first, others = DEEP[0], DEEP[1:]

    async def main():
        service = TileService("plane", rec.tiles, ServiceConfig(step_s=0.02, batch_wait_s=0, max_batch=1),
                              prepare=rec.prepare)
        await service.start()
        try:
            futs = [service.get(first, priority=1.0, owner="c")]
            await asyncio.get_running_loop().run_in_executor(None, rec.entered.wait, 30)
            futs += [service.get(k, priority=5.0, owner="c") for k in others]
            assert not service.reprioritise(first, 10.0, owner="c")  # in the generator: not queued
            assert not service.reprioritise(first, 99.0, owner="someone else")  # not its lane
            rec.gate.set()
            await asyncio.wait_for(asyncio.gather(*futs), 120)
        finally:
            rec.gate.set()
            await service.close()

    run(main())
    order = [keys[0] for what, keys, _ in rec.log]
    last_of_first = max(i for i, k in enumerate(order) if k == first)
    assert last_of_first > 1, rec.log  # it really ran in several steps
    assert set(order[: last_of_first + 1]) == {first}, order  # all of them before any other key
    assert set(order[last_of_first + 1 :]) == set(others)


def test_prepare_in_steps_then_tiles_gives_the_bytes_of_tiles_alone():
    stepped, whole = open_world("plane", 0, "fractal"), open_world("plane", 0, "fractal")
    key = TileKey(13, -123_457, 4321)
    chunks = sum(-(-len(ids) // stepped.step_blocks) for _, ids in stepped._plan([key]))
    calls = 0
    while True:
        calls += 1
        ((done, spent_s),) = stepped.prepare([key], budget_s=0.0)  # one chunk of blocks per call
        assert spent_s >= 0.0
        if done:
            break
    blocks = stepped.blocks_computed
    assert calls == chunks > 20  # a budget of 0 s: one chunk of blocks per call
    got = stepped.tile(key)
    assert stepped.blocks_computed == blocks  # tiles() only assembled
    want = whole.tile(key)
    assert got.height.tobytes() == want.height.tobytes() and got.rgb.tobytes() == want.rgb.tobytes()


def test_prepare_chunks_grow_to_the_budget_once_a_level_is_measured_and_bytes_stay():
    stepped, whole = open_world("plane", 0, "fractal"), open_world("plane", 0, "fractal")
    assert stepped._chunk_blocks(13, 0.03) == stepped.step_blocks  # nothing measured yet
    stepped._block_s[13] = 0.001
    assert stepped._chunk_blocks(13, 0.03) == 30  # 30 ms of budget at 1 ms a block
    assert stepped._chunk_blocks(13, 10.0) == 64  # at most _MAX_BATCH_BLOCKS
    assert stepped._chunk_blocks(13, -0.01) == stepped.step_blocks  # over budget: the smallest chunk
    key = TileKey(13, -123_457, 4321)
    ((done, _),) = stepped.prepare([key], budget_s=60.0)  # one call, chunks sized by the measured costs
    assert done and set(stepped._block_s) == set(range(3, 14))  # every level computed was measured
    got, want = stepped.tile(key), whole.tile(key)
    assert got.height.tobytes() == want.height.tobytes() and got.rgb.tobytes() == want.rgb.tobytes()


@pytest.mark.parametrize("budget_grids", [3, 10])
def test_height_grids_are_bounded_by_bytes(budget_grids):
    grid_bytes = (T + 1) * (T + 1) * 4
    hs = HeightService("plane", None, HeightConfig(cache_bytes=budget_grids * grid_bytes))

    class F:
        def __init__(self, k):
            self.height = np.full((T + 1, T + 1), float(k.x), np.float32)

    keys = [TileKey(10, x, 0) for x in range(budget_grids + 5)]
    for k in keys:
        hs.remember(k, F(k))
    assert [hs.held(k) for k in keys] == [False] * 5 + [True] * budget_grids
    assert hs.held_bytes() == budget_grids * grid_bytes


@pytest.mark.parametrize("credit, second_step_next", [(0.03, True), (0.0, False)])
def test_an_idle_lane_gets_two_steps_in_a_row_but_a_backlogged_one_does_not(credit, second_step_next):
    """Steps of 30 ms: three lanes backlogged with deep work, then a light client's key
    that needs two steps. With a one-step credit both steps go before the others' next
    turns; without it the second waits one turn of every lane. A lane never seen before
    gets no credit (test below)."""
    q = FairQueue(idle_credit=credit)
    q.push("good", ("good", -1), 0.0)  # the light client was served before (a known lane) ...
    assert q.pop(cost=0.03) == ("good", -1)
    for lane in "ABC":
        for i in range(3):
            q.push(lane, (lane, i), 0.0)
    for _ in range(12):  # ... then idle for four turns of every backlogged lane
        item = q.pop(cost=0.03)
        q.push(item[0], item, 0.0, first=True)  # unfinished: back to the front of its lane
    q.push("good", ("good", 0), 0.0)
    assert q.pop(cost=0.03) == ("good", 0)  # the idle lane is next either way
    q.push("good", ("good", 0), 0.0, first=True)  # its step ran out: resumed
    nxt = q.pop(cost=0.03)
    assert (nxt == ("good", 0)) is second_step_next, nxt
    # Lanes that stay backlogged get no credit: they keep taking turns, one step each.
    served = []
    while len(served) < 6:
        item = q.pop(cost=0.03)
        if item[0] != "good":
            q.push(item[0], item, 0.0, first=True)
            served.append(item[0])
    assert all(a != b for a, b in zip(served, served[1:])) and set(served) == {"A", "B", "C"}, served


def test_a_new_lane_gets_no_credit_and_waits_one_turn():
    """Opening connections buys nothing: a lane never seen starts one step behind the
    virtual time (new_debit, CFS's START_DEBIT), so it goes after the lanes' current turn."""
    q = FairQueue(idle_credit=0.09, new_debit=0.03)
    for lane in "AB":
        for i in range(4):
            q.push(lane, (lane, i), 0.0)
    for _ in range(8):
        item = q.pop(cost=0.03)
        q.push(item[0], item, 0.0, first=True)
    q.push("new", ("new", 0), 0.0)
    first_two = [q.pop(cost=0.03) for _ in range(2)]
    assert [lane for lane, _ in first_two] == ["A", "B"], first_two  # one turn of each known lane ...
    for item in first_two:
        q.push(item[0], item, 0.0, first=True)
    assert q.pop(cost=0.03) == ("new", 0)  # ... then the new lane
    q.push("new", ("new", 0), 0.0, first=True)
    assert q.pop(cost=0.03)[0] != "new"  # and no second step before the others' turns


def test_connection_churn_cannot_starve_a_lane_that_stays():
    """A client that connects, asks one key and leaves, over and over (connect_churn),
    opens a new lane each time. Each starts one step behind the virtual time, so the
    virtual time moves on as they are served and the client that stays gets a step after
    at most two new lanes (a third of the steps, against none). Without the debit (new lanes at the virtual
    time) every new lane would go first and the staying client would wait for all of them."""
    for debit, max_between in ((0.03, 2), (0.0, 0)):
        q = FairQueue(idle_credit=0.09, new_debit=debit)
        served_good, between, worst = 0, 0, 0
        for i in range(400):  # per step: a churned connection arrives with one key
            q.push(("churn", i), ("churn", i), 0.0)
            if ("good", served_good) not in q:
                q.push("good", ("good", served_good), 0.0)
            item = q.pop(cost=0.03)
            q.remove(("churn", i - 1))  # the previous churned connection left: its key goes
            if item[0] == "good":
                served_good += 1
                worst, between = max(worst, between), 0
            else:
                between += 1
        if debit:
            assert worst <= max_between and served_good >= 120, (worst, served_good)
        else:  # the starvation the debit prevents
            assert served_good <= 1, served_good


def _counting(pyr):
    """Count ``pyr``'s refiner calls (each a GPU round trip for a compiled learned refiner)."""
    calls = []
    refine = pyr.refiner.refine
    pyr.refiner.refine = lambda parents, *a: calls.append(len(parents)) or refine(parents, *a)
    return calls


def test_prepare_together_plans_a_batch_at_once_with_fewer_calls_and_the_same_bytes():
    """A 4 x 4 group of sibling tiles in a new region: planned together, each level's missing
    blocks go in chunks of up to 64 (one refiner call each) instead of key by key; every key is
    done, and the tiles are the bytes of tiles() alone. With a budget of 0 s it advances a
    chunk a call and says which keys are done."""
    keys = [TileKey(12, 5000 + i, -3000 + j) for i in range(4) for j in range(4)]
    apart, together, whole = (open_world("plane", 0, "fractal") for _ in range(3))
    assert not apart.prepare_together  # the CPU refiners: key by key, as before
    plan = together._plan(keys)
    n_apart, n_together = _counting(apart), _counting(together)
    assert all(done for done, _ in apart.prepare(keys, budget_s=60.0))
    res = together.prepare(keys, budget_s=60.0, together=True)
    assert all(done for done, _ in res) and len({s for _, s in res}) == 1  # the seconds shared evenly
    assert together.blocks_computed == apart.blocks_computed  # the same blocks
    # fewer, larger calls: per level a first chunk that measures it, then chunks of up to 64
    assert len(n_together) <= sum(1 + -(-len(ids) // 64) for _, ids in plan) and 3 * len(n_together) <= len(n_apart)
    want = whole.tiles(keys)
    for got in (together.tiles(keys), apart.tiles(keys)):
        assert all(g.height.tobytes() == w.height.tobytes() and g.rgb.tobytes() == w.rgb.tobytes()
                   for g, w in zip(got, want, strict=True))
    stepped = open_world("plane", 0, "fractal")
    steps = 0
    while True:
        steps += 1
        out = stepped.prepare(keys, budget_s=0.0, together=True)  # one chunk a call
        if all(done for done, _ in out):
            break
        assert not all(done for done, _ in out[:1]) or steps > 1
    assert steps > 3 and stepped.blocks_computed == apart.blocks_computed
