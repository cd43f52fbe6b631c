"""Ecosystem benchmark: bake throughput (in-process vs Ray, 1 and 2 workers) and the cost
of serving a stored frame in each ecosystem format (the websocket frame is the baseline).

- bake: the same plan (earth, a box around Everest, levels 5..L with ancestors) into a
  fresh store each time; tiles/s over the whole run and after start-up (Ray, workers'
  generators), bytes stored;
- formats: per tile, ms to convert a stored frame and bytes of the result: the wire
  frame itself, quantized-mesh (raw and gzip), imagery PNG, 3D Tiles GLB.

Ends with one JSON line. Usage:
    python bench/eco.py [--levels 5..9] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.tiles import World  # noqa: E402
from streaming import ecosystem as E  # noqa: E402
from streaming.bake import BBox, bake, open_store, parse_levels, plan_keys, stored_keys  # noqa: E402
from streaming.cli import pyramid_opener  # noqa: E402

BOX = BBox(86.0, 27.0, 88.0, 29.0)


def bench_bake(keys, runs):
    rows = []
    for name, kw in runs:
        with tempfile.TemporaryDirectory() as root:
            r = bake(World.EARTH, 0, keys, root, progress_stream=io.StringIO(), open_pyramid=pyramid_opener(), **kw)
        rows.append({"run": name, "tiles": r.tiles, "seconds": round(r.seconds, 2), "startup_s": round(r.startup_s, 2),
                     "tiles_per_s": round(r.tiles_per_s, 2), "steady_tiles_per_s": round(r.steady_tiles_per_s, 2),
                     "mb": round(r.bytes / 1e6, 2)})
    return rows


def bench_formats(keys):
    with tempfile.TemporaryDirectory() as root:
        bake(World.EARTH, 0, keys, root, use_ray=False, progress_stream=io.StringIO(), open_pyramid=pyramid_opener())
        store = open_store(root)
        frames = [store.get(k) for k in stored_keys(store)]
    convert = {
        "wire frame (baseline)": lambda f: f,
        "quantized-mesh": E.terrain_bytes,
        "quantized-mesh gzip": lambda f: gzip.compress(E.terrain_bytes(f), 6),
        "imagery png": E.imagery_png,
        "3d tiles glb": E.glb_bytes,
    }
    E.glb_bytes(frames[0])  # import trimesh once, outside the timing
    rows = []
    for name, fn in convert.items():
        ms, sizes = [], []
        for f in frames:
            t = time.perf_counter()
            out = fn(f)
            ms.append(1e3 * (time.perf_counter() - t))
            sizes.append(len(out))
        rows.append({"format": name, "ms_per_tile": round(statistics.median(ms), 2),
                     "kb_per_tile": round(statistics.mean(sizes) / 1e3, 1)})
    return rows, len(frames)


def table(rows):
    cols = list(rows[0])
    w = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(x) for c, x in zip(cols, w)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(x) for c, x in zip(cols, w)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="5..9")
    ap.add_argument("--quick", action="store_true", help="levels 5..7, no 1-worker Ray run")
    args = ap.parse_args()
    levels = parse_levels("5..7" if args.quick else args.levels)
    keys = plan_keys(World.EARTH, BOX, levels)
    print(f"plan: earth seed 0, bbox 86,27,88,29, levels {levels[0]}..{levels[1]} + ancestors: {len(keys)} tiles")
    runs = [("in-process (no Ray)", {"use_ray": False})]
    if not args.quick:
        runs.append(("Ray, 1 worker", {"workers": 1}))
    runs.append(("Ray, 2 workers", {"workers": 2}))
    bake_rows = bench_bake(keys, runs)
    table(bake_rows)
    print()
    fmt_rows, n = bench_formats(plan_keys(World.EARTH, BOX, (5, 7)))
    print(f"formats: median over {n} stored tiles")
    table(fmt_rows)
    print(json.dumps({"bench": "eco", "tiles": len(keys), "bake": bake_rows, "formats": fmt_rows}))


if __name__ == "__main__":
    main()
