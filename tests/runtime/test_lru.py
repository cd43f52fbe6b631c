"""The generic LRU: byte and count budgets, recency, eviction order passed in, protection."""

import numpy as np
import pytest

from runtime.lru import LRU, nbytes


def test_byte_budget_evicts_least_recent_and_skips_values_larger_than_the_budget():
    c = LRU(3000, size=nbytes)
    a, b, d = (np.zeros(250, np.float32) for _ in range(3))  # 1000 B each
    c.put("a", a)
    c.put("b", b)
    c.put("d", d)
    assert c.total == 3000 and len(c) == 3
    assert c.get("a") is a  # a is now most recent
    assert c.put("e", np.zeros(250, np.float32)) == ["b"]
    assert "b" not in c and "a" in c and c.total == 3000
    assert c.put("huge", np.zeros(1000, np.float32)) == []  # 4000 B > budget: not kept, nothing flushed
    assert "huge" not in c and c.total == 3000 and list(c.keys()) == ["d", "a", "e"]
    assert c.get("zzz") is None and c.misses == 1 and c.hits == 1


def test_bytes_objects_weigh_their_length_and_replacing_updates_the_total():
    c = LRU(10, size=nbytes)
    c.put("x", b"123456")
    c.put("x", b"12")  # replaced: 2 bytes now, and most recent
    c.put("y", b"1234")
    assert c.total == 6 and c.peek("x") == b"12"
    c.put("z", b"12345")  # 11 > 10: x (least recent) goes
    assert list(c.keys()) == ["y", "z"] and c.total == 9
    assert c.pop("y") == b"1234" and c.total == 5 and c.pop("y", "gone") == "gone"


def test_count_budget_by_default_and_peek_does_not_count_as_use():
    c = LRU(2)
    c.put(1, "one")
    c.put(2, "two")
    assert c.peek(1) == "one" and c.hits == 0  # peek: no use, no counters
    c.put(3, "three")
    assert 1 not in c and list(c.keys()) == [2, 3]
    assert c.touch(2) and not c.touch(1)
    c.put(4, "four")
    assert list(c.keys()) == [2, 4]


def test_size_given_at_put_and_eviction_left_to_the_owner():
    c = LRU(100, evict_on_put=False)
    assert c.put("a", object(), size=80) == [] and c.put("b", object(), size=80) == []
    assert c.total == 160  # over budget until the owner evicts
    assert c.evict() == ["a"] and c.total == 80
    c.put("c", None, size=500)  # heavier than the budget: kept until evicted
    assert c.evict(protected={"c"}) == ["b"] and c.total == 500  # protected stays, over budget


def test_eviction_order_passed_in_with_recency_breaking_ties():
    depth = {"p": 1, "q": 3, "r": 3, "s": 2}
    c = LRU(0, evict_on_put=False)
    for k in "pqrs":
        c.put(k, k, size=1)
    c.budget = 2
    assert c.evict(order=lambda k: -depth[k]) == ["q", "r"]  # deepest first; q older than r
    assert sorted(c.keys()) == ["p", "s"]


def test_clear_and_bad_input():
    c = LRU(10, size=nbytes)
    c.put("a", b"xyz")
    c.clear()
    assert len(c) == 0 and c.total == 0
    with pytest.raises(ValueError, match="budget must be >= 0"):
        LRU(-1)
    with pytest.raises(ValueError, match="size of 'k' must be >= 0"):
        c.put("k", b"", size=-3)
