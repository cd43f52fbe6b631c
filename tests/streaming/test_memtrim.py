"""streaming/memtrim.py: malloc_trim at most once per interval, and really called on glibc."""

import sys

import pytest

from streaming.memtrim import Trimmer


def test_trims_at_most_once_per_interval():
    now = [100.0]
    t = Trimmer(2.0, clock=lambda: now[0])
    if not t.available:
        pytest.skip("not glibc: malloc_trim is absent")
    assert t.due() and t.maybe() and t.trims == 1
    now[0] += 1.9
    assert not t.due() and not t.maybe() and t.trims == 1
    now[0] += 0.2
    assert t.due() and t.maybe() and t.trims == 2 and t.seconds >= 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_trim_returns_freed_heap_pages_to_the_os():
    def rss_kb() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/self/status")

    t = Trimmer(0.0)
    if not t.available:
        pytest.skip("not glibc: malloc_trim is absent")
    # Many small buffers come from the heap (below the mmap threshold); a few survivors at
    # the top keep free() from shrinking the heap by itself.
    chunks = [bytearray(100_000) for _ in range(1500)]  # ~150 MB
    keep = chunks[-1::-100]
    del chunks
    before = rss_kb()
    assert t.maybe()
    assert rss_kb() < before - 50_000, (before, rss_kb())
    del keep
