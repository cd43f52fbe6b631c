"""Byte-budgeted LRU."""

import numpy as np

from generator.cache import ByteLRU


def test_lru_keeps_budget_and_evicts_least_recent():
    c = ByteLRU(3000)
    a, b, d = (np.zeros(250, np.float32) for _ in range(3))  # 1000 B each
    c.put("a", a)
    c.put("b", b)
    c.put("d", d)
    assert c.nbytes == 3000 and len(c) == 3
    assert c.get("a") is a  # a is now most recent
    c.put("e", np.zeros(250, np.float32))
    assert "b" not in c and "a" in c and c.nbytes == 3000
    c.put("huge", np.zeros(1000, np.float32))  # 4000 B > budget: not kept
    assert "huge" not in c and c.nbytes == 3000
    assert c.get("zzz") is None and c.misses == 1 and c.hits == 1
