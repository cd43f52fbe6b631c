"""Pyramid throughput: tiles/s cold, warm and hot, levels 6 / 12 / 18, earth and plane.

    PYTHONPATH=. python bench/pyramid.py [--refiners fractal,fractal-torch,bicubic] [--levels 6,12,18]

- cold: a fresh pyramid (empty cache); tiles far apart, so every ancestor is computed;
- warm: a 4 x 4 block of new tiles whose parent-level tiles are already cached (a camera
  panning or zooming one level in);
- hot: the same 16 tiles again (every block cached: assembly only).
Baselines in the same run: the ``bicubic`` refiner (same machinery, no detail) and the
issue's target of 20 tiles/s warm at level 12 with the fractal refiner. Ends with one JSON
line; memory is the process's peak resident set (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.pyramid import Pyramid  # noqa: E402
from runtime.tiles import T, TileKey, World, spacing_deg  # noqa: E402

TARGET_WARM_L12 = 20.0
SITES = {  # (lat, lon) of the benchmark neighbourhoods; on the plane, the same sample positions
    "earth": [(46.5, 8.0), (27.9, 86.9), (-33.9, 18.4), (39.9, -105.6), (61.0, -149.0)],
    "plane": [(46.5, 8.0), (27.9, 86.9), (-33.9, 18.4), (39.9, -105.6), (61.0, -149.0)],
}


def _key(world: str, level: int, lat: float, lon: float) -> TileKey:
    d = spacing_deg(level)
    r, c = int((90.0 - lat) / d), int((lon + 180.0) / d)
    return TileKey(level, c // T, r // T)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_one(world: str, refiner: str, level: int, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    p = Pyramid(world, seed, refiner)  # earth: loads and decodes the anchor assets
    open_s = time.perf_counter() - t0
    cold_keys = [_key(world, level, lat, lon) for lat, lon in SITES[world]]
    t0 = time.perf_counter()
    for k in cold_keys:
        p.tile(k)
    cold = _rate(len(cold_keys), time.perf_counter() - t0)

    base = _key(world, level, *SITES[world][0])
    x0, y0 = (base.x // 4) * 4 + 4, (base.y // 4) * 4  # the next 4 x 4 block east, not yet computed
    if world == "earth":
        x0 %= 2 << level
    block = [TileKey(level, x0 + i, y0 + j) for j in range(4) for i in range(4)]
    parents = {TileKey(level - 1, (k.x >> 1) + dx, (k.y >> 1) + dy) for k in block
               for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    if world == "earth":
        parents = {TileKey(k.level, k.x % (2 << k.level), k.y) for k in parents if 0 <= k.y < 1 << k.level}
    p.tiles(sorted(parents))  # warm the ancestors
    before = p.blocks_computed
    t0 = time.perf_counter()
    for k in block:
        p.tile(k)
    warm = _rate(len(block), time.perf_counter() - t0)
    warm_blocks = p.blocks_computed - before
    t0 = time.perf_counter()
    for k in block:
        p.tile(k)
    hot = _rate(len(block), time.perf_counter() - t0)
    return {"world": world, "refiner": refiner, "level": level, "cold_tiles_s": cold, "warm_tiles_s": warm,
            "hot_tiles_s": hot, "warm_blocks_per_tile": warm_blocks / len(block), "open_s": open_s,
            "cache_mb": p.cache.total / 2**20, "model": p.model_id}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refiners", default="fractal,fractal-torch,bicubic")
    ap.add_argument("--levels", default="6,12,18")
    ap.add_argument("--worlds", default="plane,earth")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="intra-op threads for torch refiners (on a busy 2-core CPU more threads spin: "
                         "300 ms instead of 5 ms per batch)")
    a = ap.parse_args(argv)
    if "torch" in a.refiners:
        import torch

        torch.set_num_threads(a.torch_threads)
    rows = []
    for world in a.worlds.split(","):
        World.parse(world)
        for refiner in a.refiners.split(","):
            for level in (int(v) for v in a.levels.split(",")):
                rows.append(bench_one(world, refiner, level))
    print(f"{'world':6s} {'refiner':13s} {'level':>5s} {'open s':>7s} {'cold t/s':>9s} {'warm t/s':>9s} "
          f"{'hot t/s':>9s} {'blocks/tile':>11s} {'cache MB':>9s}")
    for r in rows:
        print(f"{r['world']:6s} {r['refiner']:13s} {r['level']:5d} {r['open_s']:7.2f} "
              f"{r['cold_tiles_s']:9.1f} {r['warm_tiles_s']:9.1f} {r['hot_tiles_s']:9.0f} "
              f"{r['warm_blocks_per_tile']:11.2f} "
              f"{r['cache_mb']:9.1f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    warm12 = [r["warm_tiles_s"] for r in rows if r["refiner"] == "fractal" and r["level"] == 12]
    verdict = f"target >= {TARGET_WARM_L12:.0f} tiles/s warm at level 12 (fractal): " + (
        "met" if warm12 and min(warm12) >= TARGET_WARM_L12 else "NOT met" if warm12 else "not measured")
    print(f"peak RSS {peak_mb:.0f} MB; {verdict}")
    print(json.dumps({"bench": "pyramid", "machine": platform.machine(), "python": platform.python_version(),
                      "peak_rss_mb": peak_mb, "target_warm_l12_tiles_s": TARGET_WARM_L12, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
