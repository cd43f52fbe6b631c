"""What sharding keys over generator processes costs in pyramid blocks (issue 15).

``serve --gen-procs N`` deals keys to N worker processes (``streaming.genprocs.shard_of``),
each with its own pyramid and cache. A worker that makes a tile also makes the parent blocks
under it that it does not hold, though another worker may hold them: the same blocks are
made in several caches. This counts the blocks a pyramid makes (``Pyramid.blocks_computed``:
the tiles' own and every parent block its cache lacked, refined or, at the anchor's levels,
sampled) when each worker's share of a key set goes through a fresh pyramid of its own,
against one pyramid for all (the baseline, in the same run), and each worker's share of the
blocks (max / mean: 1.0 is an even load).

Key sets (real refiner, no network, one thread, in-process; keys in order, 16 a call as a
batching worker takes them):

- ``teleport``: the tiles bench/teleport.py fetches for the complete 2 px view after
  bench/realtime.py's teleport (plane 10,000 km east; earth New Zealand's Southern Alps),
  dealt to 2 workers (``--gen-procs auto`` on a 2-core machine);
- ``throughput``: bench/throughput.py's keys (``--block`` x ``--block`` tiles at each level
  8-16 around its site), dealt to 2 and 12 workers (12: ``auto`` on a 16-core GPU box).

Deals: ``lattice`` (the server's, ``shard_of`` with ``SHARD_UP``), ``up K`` (the same
lattice over groups K levels up: larger groups share more parents, fewer workers share a
flight's few deep groups) and ``lattice, shared table`` (the lattice, every worker's pyramid
behind one ``generator.sharedblocks.SharedBlocks`` of 256 MiB, the workers taking turns a batch
of 16 at a time: the table's best case; in the server, workers that start the same block
together both make it). Stealing (an idle worker taking a busy one's batch) is not
simulated: it only adds blocks.

    PYTHONPATH=. python bench/shard_blocks.py                   # both key sets, both worlds
    PYTHONPATH=. python bench/shard_blocks.py --keys teleport --world earth
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after the packages: bench/generator.py is not the package

from runtime.tiles import World  # noqa: E402
from streaming.genprocs import SHARD_UP, shard_of  # noqa: E402

BATCH = 16


def made_blocks(world: World, keys, refiner: str) -> tuple[int, float]:
    """(blocks the pyramid made, ``Pyramid.blocks_computed``; process CPU s) making ``keys`` in
    a fresh pyramid."""
    from generator.pyramid import Pyramid

    pyr = Pyramid(world, 0, refiner)
    t = time.process_time()
    for i in range(0, len(keys), BATCH):
        pyr.tiles(keys[i:i + BATCH])
    return pyr.blocks_computed, time.process_time() - t


def made_blocks_shared(world: World, shares: list[list], refiner: str,
                       budget_bytes: int = 256 << 20) -> tuple[list[int], float, dict]:
    """Per worker the blocks it made, total CPU s and the table's counters when every worker's
    pyramid looks up and puts blocks in one ``generator.sharedblocks.SharedBlocks`` (as ``serve
    --gen-procs N`` with ``--gen-shared-mb``), the workers taking turns a batch at a time (in
    the server they run at once: a block two of them start together is made twice there)."""
    from generator.pyramid import Pyramid
    from generator.sharedblocks import SharedBlocks

    pyrs = [Pyramid(world, 0, refiner) for _ in shares]
    table = SharedBlocks.create(budget_bytes, pyrs[0].channels, pyrs[0].block, pyrs[0].model_id)
    try:
        for p in pyrs:
            p.share(table)
        t = time.process_time()
        for i in range(0, max(map(len, shares), default=0), BATCH):
            for p, keys in zip(pyrs, shares, strict=True):
                if keys[i:i + BATCH]:
                    p.tiles(keys[i:i + BATCH])
        cpu = time.process_time() - t
        return [p.blocks_computed for p in pyrs], cpu, {"hits": table.hits, "misses": table.misses,
                                                         "puts": table.puts, "slots": table.slots}
    finally:
        table.close()


def teleport_keys(world: World) -> list:
    import teleport as tp

    from generator.pyramid import Pyramid
    from viewer.paths import camera_for

    _, dest = tp.SITES[world]
    ground = tp.ground_m(world, Pyramid(world, 0, "fractal"), dest)
    cam = camera_for(world, tp.pose_at(world, dest, tp.HEADING_RAD + math.pi, tp.PITCH_RAD, tp.AGL_M), ground,
                     math.radians(60.0), (1920, 1080))
    records, _, _, final = tp.complete_view(world, Pyramid(world, 0, "fractal"), cam, 2.0, False,
                                            log=lambda *a: None)
    if not final.complete:
        raise RuntimeError(f"{world.value}: the teleport's view did not complete")
    return [r["key"] for r in records]


def measure(world: World, keys, workers: list[int], ups: list[int], refiner: str, log=print) -> dict:
    made_blocks(world, keys, refiner)  # warm: lazy tables and compiled kernels, not counted
    base, cpu = made_blocks(world, keys, refiner)
    log(f"  {'deal':<22s} {'workers':>7s} {'blocks':>7s} {'a tile':>6s} {'x one':>6s} {'max/mean':>8s} {'CPU s':>6s}")
    log(f"  {'one pyramid':<22s} {1:7d} {base:7d} {base / len(keys):6.1f} {1.0:6.2f} {1.0:8.2f} {cpu:6.2f}")
    out = {"keys": len(keys), "one_pyramid_blocks": base, "deals": {}}
    for n in workers:
        for up in ups:
            name = "lattice" if up == SHARD_UP else f"up {up}"
            per, tot_cpu = [], 0.0
            for s in range(n):
                b, c = made_blocks(world, [k for k in keys if shard_of(k, n, up) == s], refiner)
                per.append(b)
                tot_cpu += c
            tot = sum(per)
            imbalance = max(per) / (tot / n) if tot else 1.0
            log(f"  {name:<22s} {n:7d} {tot:7d} {tot / len(keys):6.1f} {tot / base:6.2f} {imbalance:8.2f} "
                f"{tot_cpu:6.2f}")
            out["deals"][f"{n} workers, {name}"] = {"blocks": tot, "x_one": round(tot / base, 3),
                                                   "max_over_mean": round(imbalance, 3), "cpu_s": round(tot_cpu, 2)}
        # the server's deal with the shared block table (generator.sharedblocks)
        per, tot_cpu, counters = made_blocks_shared(world, [[k for k in keys if shard_of(k, n) == s]
                                                            for s in range(n)], refiner)
        tot = sum(per)
        imbalance = max(per) / (tot / n) if tot else 1.0
        log(f"  {'lattice, shared table':<22s} {n:7d} {tot:7d} {tot / len(keys):6.1f} {tot / base:6.2f} "
            f"{imbalance:8.2f} {tot_cpu:6.2f}")
        out["deals"][f"{n} workers, lattice, shared table"] = {
            "blocks": tot, "x_one": round(tot / base, 3), "max_over_mean": round(imbalance, 3),
            "cpu_s": round(tot_cpu, 2), "table": counters}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", choices=["plane", "earth", "both"], default="both")
    ap.add_argument("--keys", choices=["teleport", "throughput", "both"], default="both")
    ap.add_argument("--block", type=int, default=8, help="throughput keys: tiles per side per level")
    ap.add_argument("--refiner", default="fractal")
    ap.add_argument("--ups", default=f"{SHARD_UP},3,4", help="group levels to try (the first: the server's)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    worlds = [World.PLANE, World.EARTH] if args.world == "both" else [World.parse(args.world)]
    ups = [int(u) for u in args.ups.split(",")]
    summary: dict = {}
    for world in worlds:
        if args.keys in ("teleport", "both"):
            keys = teleport_keys(world)
            print(f"\n== {world.value}, teleport: {len(keys)} keys, {args.refiner}", flush=True)
            summary.setdefault(world.value, {})["teleport"] = measure(world, keys, [2], ups, args.refiner)
        if args.keys in ("throughput", "both"):
            from throughput import block_keys

            keys = block_keys(world, args.block)
            print(f"\n== {world.value}, throughput ({args.block} x {args.block} a level, 8-16): {len(keys)} keys, "
                  f"{args.refiner}", flush=True)
            summary.setdefault(world.value, {})["throughput"] = measure(world, keys, [2, 12], ups, args.refiner)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
