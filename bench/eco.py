"""Ecosystem benchmark: bake throughput (in-process vs Ray, 1 and 2 workers) and the cost
of serving a stored frame in each ecosystem format (the websocket frame is the baseline).

- bake: the same plan (earth, a box around Everest, levels 5..L with ancestors) into a
  fresh store each time; tiles/s over the whole run and after start-up (Ray, workers'
  generators), bytes stored;
- formats: per tile, ms to convert a stored frame and bytes of the result: the wire
  frame itself, quantized-mesh with each extension set (none, oct normals, normals +
  water mask; raw and gzip), imagery PNG, 3D Tiles GLB and the live server's one-tile
  subtree (its content height range included); then the total per tile of what a client
  of each format fetches: terrain + imagery, or GLB + subtree. The live server stitches
  terrain and GLB normals with the neighbours' (``streaming.http``): two rows give that
  cost with the neighbours' edges already held (steady state) and with all four
  neighbours decoded and placed for it (worst case).

- features: on urban tiles (central Paris, levels 15 and 16, ``--block`` x ``--block`` tiles
  each), bytes of the 3D Tiles GLB without and with the tile's buildings and instanced trees
  (raw and gzip), the buildings and trees per tile, and the ms the features add to a GLB
  (generating them, land cover included, and drawing them).

``--bytes-by-level A..B``: per level instead, the 3 x 3 tiles around Everest (fewer
where the level has fewer), generated and encoded as the server does: mean vertices and
kB per tile of the wire frame, quantized-mesh + normals (raw; + water mask, gzip) and
the GLB, and ms to convert (the Cesium path re-meshes some levels: ``ecosystem.cesium_tile``).

Ends with one JSON line. Usage:
    python bench/eco.py [--levels 5..9] [--quick] [--formats-only] [--features-only] [--block 2]
                           [--bytes-by-level 0..5]
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
from streaming import implicit as I  # noqa: E402
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


def bench_formats(keys, repeat: int = 3):
    with tempfile.TemporaryDirectory() as root:
        bake(World.EARTH, 0, keys, root, use_ray=False, progress_stream=io.StringIO(), open_pyramid=pyramid_opener())
        store = open_store(root)
        frames = [store.get(k) for k in stored_keys(store)]
    both = E.TERRAIN_EXTENSIONS

    from generator.water import earth_water_mask
    from runtime.tin import edge_data, neighbour_keys, opposite

    by_key = {E.frame_tile(f).key: f for f in frames}
    held = {k: edge_data(E.tin_mesh(World.EARTH, E.frame_tile(f))) for k, f in by_key.items()}

    def stitched(f, place_neighbours: bool):
        mesh = E.tin_mesh(World.EARTH, E.frame_tile(f))
        known = {}
        for side, nk in neighbour_keys(World.EARTH, mesh.key).items():
            if nk in by_key:
                data = edge_data(E.tin_mesh(World.EARTH, E.frame_tile(by_key[nk]))) if place_neighbours else held[nk]
                known[side] = data[opposite(side)]
        return E.mesh_terrain_bytes(E.cesium_stitch(mesh, known), ("octvertexnormals",))

    def subtree(f):
        c = I.implicit_coord(E.frame_tile(f).key)
        return I.served_subtree_bytes(c, 16, E.tile_height_range(f))

    convert = {
        "wire frame (baseline)": lambda f: f,
        "quantized-mesh, no extensions": lambda f: E.terrain_bytes(f, ()),
        "quantized-mesh + normals": lambda f: E.terrain_bytes(f, ("octvertexnormals",)),
        "quantized-mesh + normals, stitched, edges held": lambda f: stitched(f, False),
        "quantized-mesh + normals, stitched, 4 neighbours placed": lambda f: stitched(f, True),
        "quantized-mesh + normals + water mask": lambda f: E.terrain_bytes(f, both, water=earth_water_mask),
        "quantized-mesh + normals + water mask, gzip":
            lambda f: gzip.compress(E.terrain_bytes(f, both, water=earth_water_mask), 6),
        "imagery png": E.imagery_png,
        "3d tiles glb": E.glb_bytes,
        "3d tiles subtree (served, height range)": subtree,
    }
    E.glb_bytes(frames[0])  # import trimesh and load the water-mask anchor once, outside the timing
    E.terrain_bytes(frames[0], both, water=earth_water_mask)
    rows, per = [], {}
    for name, fn in convert.items():
        ms, sizes = [], []
        for f in frames:
            best = float("inf")
            for _ in range(repeat):  # the fastest of a few: the machine may be shared
                t = time.perf_counter()
                out = fn(f)
                best = min(best, 1e3 * (time.perf_counter() - t))
            ms.append(best)
            sizes.append(len(out))
        per[name] = (ms, sizes)
        rows.append({"format": name, "ms_per_tile": round(statistics.median(ms), 2),
                     "ms_p90": round(sorted(ms)[int(0.9 * (len(ms) - 1))], 2),
                     "kb_per_tile": round(statistics.mean(sizes) / 1e3, 1)})
    # What a client of each format fetches per tile (median of the per-tile sums).
    for name, parts in (("total quantized-mesh (gzip terrain + imagery png)",
                         ("quantized-mesh + normals + water mask, gzip", "imagery png")),
                        ("total 3d tiles (glb + subtree)",
                         ("3d tiles glb", "3d tiles subtree (served, height range)"))):
        ms = [sum(per[p][0][i] for p in parts) for i in range(len(frames))]
        kb = [sum(per[p][1][i] for p in parts) for i in range(len(frames))]
        rows.append({"format": name, "ms_per_tile": round(statistics.median(ms), 2),
                     "ms_p90": round(sorted(ms)[int(0.9 * (len(ms) - 1))], 2),
                     "kb_per_tile": round(statistics.mean(kb) / 1e3, 1)})
    return rows, len(frames)


PARIS = (48.857, 2.352)


def bench_features(levels=(15, 16), block: int = 2, repeat: int = 3):
    """Per level: mean bytes of the GLB without / with features over ``block`` x ``block``
    tiles of central Paris, and the time the features cost (median per tile)."""
    from generator.pyramid import open_world
    from runtime.tiles import T, TileKey, spacing_deg
    from streaming.cli.compose import feature_source
    from streaming.tileservice import mesh_encoder

    pyr = open_world("earth", 0, refiner="fractal")
    features, enc = feature_source(pyr), mesh_encoder()
    rows = []
    for level in levels:
        span = T * spacing_deg(level)
        x0, y0 = int((PARIS[1] + 180.0) // span), int((90.0 - PARIS[0]) // span)
        keys = [TileKey(level, x0 + i, y0 + j) for j in range(block) for i in range(block)]
        frames = {k: enc(World.EARTH, k, f) for k, f in zip(keys, pyr.tiles(keys))}
        E.glb_bytes(frames[keys[0]], features=features(keys[0]))  # imports and context, outside the timing
        plain, full, gz0, gz1, n_b, n_t, t_gen, t_draw = [], [], [], [], [], [], [], []
        for k in keys:
            t = time.process_time()
            feats = features(k)
            t_gen.append(1e3 * (time.process_time() - t))
            best0 = best1 = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                g0 = E.glb_bytes(frames[k])
                best0 = min(best0, time.perf_counter() - t)
                t = time.perf_counter()
                g1 = E.glb_bytes(frames[k], features=feats)
                best1 = min(best1, time.perf_counter() - t)
            t_draw.append(1e3 * (best1 - best0))
            plain.append(len(g0))
            full.append(len(g1))
            gz0.append(len(gzip.compress(g0, 6)))
            gz1.append(len(gzip.compress(g1, 6)))
            n_b.append(len(feats["buildings"]))
            n_t.append(len(feats["trees"]))
        mean = statistics.mean
        rows.append({"level": level, "tiles": len(keys), "buildings": round(mean(n_b), 1), "trees": round(mean(n_t), 1),
                     "wire_kb": round(mean(len(frames[k]) for k in keys) / 1e3, 1),
                     "glb_kb": round(mean(plain) / 1e3, 1), "glb_features_kb": round(mean(full) / 1e3, 1),
                     "growth_pct": round(100.0 * (mean(full) / mean(plain) - 1.0), 1),
                     "gzip_kb": round(mean(gz0) / 1e3, 1), "gzip_features_kb": round(mean(gz1) / 1e3, 1),
                     "gzip_growth_pct": round(100.0 * (mean(gz1) / mean(gz0) - 1.0), 1),
                     "features_ms": round(statistics.median(t_gen), 1),
                     "draw_ms": round(statistics.median(t_draw), 1)})


EVEREST = (86.9, 27.95)


def bench_bytes_by_level(levels: range) -> list[dict]:
    """Per level: the 3 x 3 block of tiles around Everest (clipped to the level's tiles),
    generated (fractal refiner, seed 0) and encoded as the server does."""
    from generator.pyramid import open_world
    from generator.water import earth_water_mask
    from runtime.tiles import T, TileKey, spacing_deg, tiles_x, tiles_y
    from streaming.tileservice import encode_fields, tile_frame

    pyr = open_world("earth", 0, refiner="fractal")
    rows = []
    for level in levels:
        d = spacing_deg(level) * T
        cx, cy = int((EVEREST[0] + 180.0) // d), int((90.0 - EVEREST[1]) // d)
        keys = [TileKey(level, x, y) for y in range(cy - 1, cy + 2) for x in range(cx - 1, cx + 2)
                if 0 <= x < tiles_x(World.EARTH, level) and 0 <= y < tiles_y(World.EARTH, level)]
        frames = [tile_frame(k, encode_fields(World.EARTH, k, f)) for k, f in zip(keys, pyr.tiles(keys))]
        E.terrain_bytes(frames[0], E.TERRAIN_EXTENSIONS, water=earth_water_mask)  # warm: water mask, trimesh
        E.glb_bytes(frames[0])
        row = {"level": level, "tiles": len(keys),
               "wire_vertices": round(statistics.mean(len(E.frame_tile(f).grid_rc) for f in frames)),
               "cesium_vertices": round(statistics.mean(len(E.cesium_tile(E.frame_tile(f)).grid_rc) for f in frames)),
               "wire_kb": round(statistics.mean(len(f) for f in frames) / 1e3, 1)}
        for name, fn in (("terrain_normals_kb", lambda f: E.terrain_bytes(f, ("octvertexnormals",))),
                         ("terrain_all_gzip_kb", lambda f: gzip.compress(
                             E.terrain_bytes(f, E.TERRAIN_EXTENSIONS, water=earth_water_mask), 6)),
                         ("glb_kb", E.glb_bytes)):
            t = time.perf_counter()
            sizes = [len(fn(f)) for f in frames]
            row[name] = round(statistics.mean(sizes) / 1e3, 1)
            row[name.replace("_kb", "_ms")] = round(1e3 * (time.perf_counter() - t) / len(frames), 1)
        rows.append(row)
        print(row, flush=True)
    return rows


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
    ap.add_argument("--formats-only", action="store_true", help="skip the bake runs")
    ap.add_argument("--repeat", type=int, default=3, help="conversions per tile (the fastest counts)")
    ap.add_argument("--features-only", action="store_true", help="only the GLB with / without features (Paris)")
    ap.add_argument("--block", type=int, default=2, help="features: block x block Paris tiles per level")
    ap.add_argument("--bytes-by-level", default=None, help="levels A..B: bytes per tile per level instead")
    args = ap.parse_args()
    if args.features_only:
        rows = bench_features(block=args.block, repeat=args.repeat)
        print(f"3D Tiles GLB without / with buildings and trees: central Paris, "
              f"{args.block}x{args.block} tiles per level")
        table(rows)
        print(json.dumps({"bench": "eco", "features": rows}))
        return
    if args.bytes_by_level:
        lo, hi = parse_levels(args.bytes_by_level)
        rows = bench_bytes_by_level(range(lo, hi + 1))
        table(rows)
        print(json.dumps({"bench": "eco", "bytes_by_level": rows}))
        return
    levels = parse_levels("5..7" if args.quick else args.levels)
    keys = plan_keys(World.EARTH, BOX, levels)
    bake_rows = []
    if not args.formats_only:
        print(f"plan: earth seed 0, bbox 86,27,88,29, levels {levels[0]}..{levels[1]} + ancestors: {len(keys)} tiles")
        runs = [("in-process (no Ray)", {"use_ray": False})]
        if not args.quick:
            runs.append(("Ray, 1 worker", {"workers": 1}))
        runs.append(("Ray, 2 workers", {"workers": 2}))
        bake_rows = bench_bake(keys, runs)
        table(bake_rows)
        print()
    fmt_rows, n = bench_formats(plan_keys(World.EARTH, BOX, (5, 7)), args.repeat)
    print(f"formats: median over {n} stored tiles of the fastest of {args.repeat} conversions")
    table(fmt_rows)
    feat_rows = bench_features(block=1 if args.quick else args.block, repeat=args.repeat)
    print("\n3D Tiles GLB without / with buildings and trees (central Paris)")
    table(feat_rows)
    print(json.dumps({"bench": "eco", "tiles": len(keys), "bake": bake_rows, "formats": fmt_rows,
                      "features": feat_rows}))


if __name__ == "__main__":
    main()
