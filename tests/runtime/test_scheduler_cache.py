"""Scheduler (bounded, re-prioritised, cancelling, upload budget) and cache (byte budget,
LRU deepest first, protected keys, evicted keys returned)."""

import pytest

from runtime.lod.cache import TileCache
from runtime.lod.scheduler import Scheduler, SchedulerOptions
from runtime.tiles import TileKey


def k(level, x=0, y=0):
    return TileKey(level, x, y)


def test_in_flight_is_bounded_and_most_urgent_first():
    s = Scheduler(SchedulerOptions(max_in_flight=3))
    plan = s.plan([(k(1, i), float(10 - i)) for i in range(6)])
    assert [key for key, _ in plan.start] == [k(1, 5), k(1, 4), k(1, 3)]
    assert len(s.in_flight) == 3
    # Next frame, same wants: nothing new starts until something comes back.
    assert s.plan([(k(1, i), float(10 - i)) for i in range(6)]).start == ()
    s.arrived(k(1, 5), 100)
    assert [key for key, _ in s.plan([(k(1, i), float(10 - i)) for i in range(6)]).start] == [k(1, 2)]


def test_priorities_are_re_evaluated_every_frame():
    s = Scheduler(SchedulerOptions(max_in_flight=2))
    s.plan([(k(1, 0), 1.0), (k(1, 1), 2.0), (k(1, 2), 3.0)])
    # The camera turned: k(1, 2) is now the most urgent; k(1, 1) changes priority.
    plan = s.plan([(k(1, 0), 5.0), (k(1, 1), 0.5), (k(1, 2), 0.1)])
    assert dict(plan.reprioritise) == {k(1, 0): 5.0, k(1, 1): 0.5}
    assert plan.start == ()  # still full
    s.arrived(k(1, 0), 10)
    assert s.plan([(k(1, 1), 0.5), (k(1, 2), 0.1)]).start == ((k(1, 2), 0.1),)


def test_unwanted_requests_are_cancelled():
    s = Scheduler(SchedulerOptions(max_in_flight=4))
    s.plan([(k(2, i), float(i)) for i in range(4)])
    plan = s.plan([(k(2, 1), 0.0), (k(3, 9), 1.0)])  # teleport: most of it is moot
    assert sorted(plan.cancel) == [k(2, 0), k(2, 2), k(2, 3)]
    assert [key for key, _ in plan.start] == [k(3, 9)]
    assert set(s.in_flight) == {k(2, 1), k(3, 9)}
    # A cancelled tile that arrives anyway is reported as unexpected but still uploadable.
    assert s.arrived(k(2, 0), 5) is False
    assert s.arrived(k(2, 1), 5) is True


def test_upload_budget_per_frame_by_count_and_bytes():
    s = Scheduler(SchedulerOptions(max_in_flight=10, max_uploads_per_frame=2, max_upload_bytes_per_frame=250))
    s.plan([(k(1, i), float(i)) for i in range(5)])
    for i in range(5):
        s.arrived(k(1, i), 100, payload=f"p{i}")
    assert s.uploads() == [(k(1, 0), "p0"), (k(1, 1), "p1")]       # count budget
    s.plan([(k(1, 4), 0.0), (k(1, 3), 1.0), (k(1, 2), 2.0)])           # re-prioritised
    assert [key for key, _ in s.uploads()] == [k(1, 4), k(1, 3)]
    big = Scheduler(SchedulerOptions(max_uploads_per_frame=5, max_upload_bytes_per_frame=250))
    for i in range(3):
        big.arrived(k(1, i), 200)
    assert len(big.uploads()) == 1  # bytes budget, but always at least one per frame
    assert big.waiting_upload == 2


def test_upload_count_of_this_frame_overrides_the_option_but_not_the_bytes():
    s = Scheduler(SchedulerOptions(max_uploads_per_frame=2, max_upload_bytes_per_frame=250))
    for i in range(6):
        s.arrived(k(1, i), 50, payload=i)
    assert [p for _, p in s.uploads(max_count=4)] == [0, 1, 2, 3]  # more than the option's 2
    assert [p for _, p in s.uploads(max_count=0)] == [4]  # at least one
    s.arrived(k(1, 9), 201)
    assert len(s.uploads(max_count=10)) == 1  # bytes still bound it (50 + 201 > 250)


def test_scheduler_options_are_validated():
    with pytest.raises(ValueError, match="max_in_flight must be >= 1"):
        SchedulerOptions(max_in_flight=0)


def test_cache_evicts_lru_then_deepest_and_returns_keys():
    c = TileCache(budget_bytes=300)
    c.put(k(1), "a", 100)          # frame 0
    c.put(k(5), "b", 100)          # frame 0
    c.next_frame(used=[k(1), k(5)])  # frame 1: both used
    c.put(k(3), "c", 100)          # frame 1
    c.next_frame(used=[k(3)])      # frame 2: k(3) used; k(1), k(5) last used at frame 1
    c.put(k(2), "d", 100)          # 400 bytes > 300
    assert c.evict() == [k(5)]     # oldest use (frame 1), deepest of those first
    assert c.bytes == 300 and k(5) not in c and c.get(k(1)) == "a"
    c.budget_bytes = 100
    assert c.evict() == [k(1), k(3)]  # k(1) frame 1, then k(3) frame 2; k(2) is newest
    assert len(c) == 1 and c.bytes == 100


def test_cache_never_evicts_protected_keys():
    c = TileCache(budget_bytes=100)
    for i in range(4):
        c.put(k(10, i), i, 100)
    drawn_last = {k(10, 0), k(10, 1)}
    evicted = c.evict(protected=drawn_last)
    assert sorted(evicted) == [k(10, 2), k(10, 3)]
    assert c.bytes == 200  # over budget rather than dropping what was drawn
    assert c.evict(protected=drawn_last) == []


def test_cache_replace_updates_bytes():
    c = TileCache(budget_bytes=1000)
    c.put(k(1), "x", 400)
    c.put(k(1), "y", 100)
    assert c.bytes == 100 and c.get(k(1)) == "y"
    assert c.remove(k(1)) and c.bytes == 0 and not c.remove(k(1))


def test_failed_requests_back_off():
    s = Scheduler(SchedulerOptions(max_in_flight=4, retry_after_frames=3))
    s.plan([(k(4, 1), 0.0)])
    s.failed(k(4, 1))
    assert s.in_flight == {}
    starts = [s.plan([(k(4, 1), 0.0)]).start for _ in range(4)]
    assert starts[:2] == [(), ()] and starts[2] == ((k(4, 1), 0.0),)


def test_a_hole_behind_a_full_pipe_displaces_the_least_urgent_requests():
    s = Scheduler(SchedulerOptions(max_in_flight=4, max_preempt_per_frame=2))
    prefetch = [(k(12, i), 2000.0 + i) for i in range(4)]  # band PREFETCH fills every slot
    assert len(s.plan(prefetch).start) == 4
    holes = [(k(0, 0), 5.0), (k(0, 1), 6.0), (k(0, 2), 7.0)]  # band HOLE: a teleport's roots
    plan = s.plan(prefetch + holes)
    assert plan.start == ((k(0, 0), 5.0), (k(0, 1), 6.0))  # at most 2 a frame, most urgent first
    assert plan.cancel == (k(12, 3), k(12, 2))  # the least urgent make way (still wanted)
    assert set(s.in_flight) == {k(12, 0), k(12, 1), k(0, 0), k(0, 1)}
    plan = s.plan(prefetch + holes)
    assert plan.start == ((k(0, 2), 7.0),) and plan.cancel == (k(12, 1),)
    # Nearly as urgent (within the margin): no churn, it waits for a free slot.
    s2 = Scheduler(SchedulerOptions(max_in_flight=2))
    s2.plan([(k(5, 0), 1010.0), (k(5, 1), 1011.0)])
    plan = s2.plan([(k(5, 0), 1010.0), (k(5, 1), 1011.0), (k(5, 2), 1005.0)])
    assert plan.start == () and plan.cancel == ()
    # A displaced request that changed priority is cancelled, never also re-prioritised.
    s3 = Scheduler(SchedulerOptions(max_in_flight=1))
    s3.plan([(k(7, 0), 3000.0)])
    plan = s3.plan([(k(7, 0), 2500.0), (k(0, 0), 1.0)])
    assert plan.cancel == (k(7, 0),) and plan.reprioritise == () and plan.start == ((k(0, 0), 1.0),)


def test_small_priority_drift_is_not_re_sent():
    s = Scheduler(SchedulerOptions(max_in_flight=2))
    s.plan([(k(3, 0), 1010.0), (k(3, 1), 1020.0)])
    plan = s.plan([(k(3, 0), 1010.4), (k(3, 1), 1018.9)])  # the view angle drifted; k(3, 1) moved
    assert plan.reprioritise == ((k(3, 1), 1018.9),)
    assert s.in_flight[k(3, 0)] == 1010.0  # kept: its last sent priority
    assert s.wanted_priority(k(3, 0)) == 1010.4  # what the frame wants now
    exact = Scheduler(SchedulerOptions(max_in_flight=1, reprioritise_delta=0.0))
    exact.plan([(k(3, 0), 1.0)])
    assert exact.plan([(k(3, 0), 1.25)]).reprioritise == ((k(3, 0), 1.25),)
