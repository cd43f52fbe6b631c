"""How many refiner calls a fresh tile costs the learned generator workers: key by key against a
batch planned together (generator/pyramid.py ``prepare``, decision 47).

With the learned refiner on a GPU every refiner call is a round trip to the one backend (the
shared backend's counters: 2.92 requests a tile on an H200, the GPU mostly idle between them).
This replays bench/throughput.py's uncached keys (16 x 16 tiles per level at levels 8-16
around the world's site) the way ``serve --gen-procs 12`` deals them: a worker per key's
ancestor two levels up (``streaming.genprocs.shard_of``), batches of up to 16 keys of one
4 x 4 sibling group in key order, each worker its own pyramid and block cache
(``--gen-cache-mb`` 512). The network is not run: its backend answers a zero child of the
right shape at once (what is counted is the pyramid's plan, which does not depend on the
values), so this runs on any CPU in a few minutes. Each worker first makes bench/throughput.py's
--warm 4 keys at another site, not counted. Baseline in the same run: key by key, the plan
before decision 47.

    PYTHONPATH=. python bench/prepare_calls.py [--world plane earth] [--block 16] [--workers 12]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import WARM_SITES, block_keys  # noqa: E402  (bench/throughput.py: the same keys)

from runtime.tiles import TileKey, World  # noqa: E402
from streaming.genprocs import SHARD_UP, shard_of  # noqa: E402


class ZeroBackend:
    """A backend that answers a zero child of the network's shape at once, counting calls and crops."""

    name = "torch-compiled"  # what the pyramid sees on a GPU (LearnedRefiner.prefers_batches)

    def __init__(self, margin: int):
        self.margin, self.calls, self.crops = margin, 0, 0

    def run_level(self, parents5, seed, level, rows, cols, spacing_m, present, context=None):
        self.calls += 1
        self.crops += parents5.shape[0]
        b, c, h, w = parents5.shape
        m = self.margin
        return np.zeros((b, c, 2 * (h - 2 * m) - 1, 2 * (w - 2 * m) - 1), np.float32)


def batches(world: World, keys: list[TileKey], workers: int, size: int = 16) -> dict[int, list[list[TileKey]]]:
    """Per worker, its batches in key order: up to ``size`` keys of one sibling group."""
    out: dict[int, dict] = {}
    for k in keys:
        d = min(SHARD_UP, k.level)
        group = (k.level, k.x >> d, k.y >> d)
        out.setdefault(shard_of(k, workers), {}).setdefault(group, []).append(k)
    return {w: [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)] for w, groups in out.items()}


def run(world: World, keys: list[TileKey], workers: int, together: bool, cache_mb: int,
        warm: list[TileKey]) -> dict:
    """``warm``: keys each worker makes first, not counted (bench/throughput.py --warm 4: the
    levels' seconds per block are measured, so chunks are budget-sized from the start)."""
    from generator.learned.refiner import LearnedRefiner
    from generator.pyramid import Pyramid

    calls = crops = blocks = 0
    t0 = time.process_time()
    margin = LearnedRefiner(world, backend="torch").margin  # the shipped net's
    warm_batches = batches(world, warm, workers)
    for w, bs in sorted(batches(world, keys, workers).items()):
        backend = ZeroBackend(margin)
        pyr = Pyramid(world, 0, LearnedRefiner(world, backend=backend), cache_bytes=cache_mb << 20)
        for batch in warm_batches.get(w, []):
            pyr.prepare(batch, budget_s=60.0, together=together)
        backend.calls = backend.crops = 0
        pyr.blocks_computed = 0
        for batch in bs:
            steps = pyr.prepare(batch, budget_s=60.0, together=together)
            assert all(done for done, _ in steps)
            pyr.tiles(batch)  # assembly only, as the worker's source call
        calls, crops, blocks = calls + backend.calls, crops + backend.crops, blocks + pyr.blocks_computed
    return {"mode": "together" if together else "key by key", "tiles": len(keys), "calls": calls,
            "calls_per_tile": round(calls / len(keys), 3), "crops_per_call": round(crops / max(calls, 1), 2),
            "blocks": blocks, "cpu_s": round(time.process_time() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", nargs="+", default=["plane", "earth"], choices=["plane", "earth"])
    ap.add_argument("--block", type=int, default=16, help="tiles per side per level (bench/throughput.py --block)")
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--cache-mb", type=int, default=512, help="each worker's block cache (serve --gen-cache-mb)")
    args = ap.parse_args(argv)
    print(f"{'world':6s} {'plan':11s} {'tiles':>6s} {'calls':>6s} {'calls/tile':>10s} {'crops/call':>10s} "
          f"{'blocks':>7s} {'CPU s':>6s}")
    rows = []
    for w in args.world:
        world = World.parse(w)
        keys = block_keys(world, args.block)
        warm = block_keys(world, 4, site=WARM_SITES[world])
        for together in (False, True):
            r = {"world": w, **run(world, keys, args.workers, together, args.cache_mb, warm)}
            rows.append(r)
            print(f"{w:6s} {r['mode']:11s} {r['tiles']:6d} {r['calls']:6d} {r['calls_per_tile']:10.3f} "
                  f"{r['crops_per_call']:10.2f} {r['blocks']:7d} {r['cpu_s']:6.1f}", flush=True)
    print(json.dumps({"bench": "prepare_calls", "machine": platform.node(), "block": args.block,
                      "workers": args.workers, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
