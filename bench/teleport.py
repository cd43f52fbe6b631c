"""What a complete view right after a teleport costs (issue 15): tiles per level, pyramid
blocks per level, generator and mesh CPU, in-process, no network, no client threads.

The pose is bench/realtime.py's first pose after its teleport (500 m above the ground,
pitch -0.2 rad, 1920x1080, 60 degrees, error target 2 px) at its destination (plane:
10,000 km east of the start, as ``pick_start`` chooses it in bench/realtime.py; earth:
New Zealand's Southern Alps). A fresh ``Pyramid`` (the server's generator) first makes the
start site's view (the server's caches before the jump), then the loop a lockstep client
runs: select, fetch what the selection asks for (holes and wanted tiles, most urgent
first, prefetch left out: a complete view does not need it), until the view is complete.
Every fetched tile goes through the server's path (``Pyramid.tiles`` one key a call, then
``tileservice.encode_fields``) and the client's decode, whose height range and geometric
error feed the next selection, as in the viewer.

Per level it prints the tiles fetched, the blocks computed (the tile's own plus parent
rings), generator CPU ms per block and per tile, and mesh+encode CPU per tile; per round
of selection how many tiles it asked for. CPU is ``time.process_time`` of this process
(one thread: torch is pinned to one).

    PYTHONPATH=. python bench/teleport.py                 # both worlds, what the walk asks for
    PYTHONPATH=. python bench/teleport.py --frontier      # only tiles whose parent is known
    PYTHONPATH=. python bench/teleport.py --world earth
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from runtime.geometry import geometry_for  # noqa: E402
from runtime.lod.selection import Band, SelectionOptions, TileInfo, View, select  # noqa: E402
from runtime.tiles import TileKey, World  # noqa: E402
from viewer.paths import Pose, camera_for  # noqa: E402

# bench/realtime.py's sites (plane: what pick_start chose there, 2026-12-05; earth: bench/flight.py's).
SITES = {
    World.PLANE: [(-2465552.7843666454, -1291480.029906338), (8805545.658452304, -2465552.7843666454)],
    World.EARTH: [(7.6, 46.0), (170.2, -43.5)],
}
HEADING_RAD, PITCH_RAD, AGL_M = 0.3, -0.2, 500.0  # bench/flight.py's teleport pose (after the turn: heading 0.3+pi)


def pose_at(world: World, site, heading_rad: float, pitch_rad: float, agl_m: float) -> Pose:
    x, y = site
    return Pose(x, y, agl_m, "agl", (90.0 - math.degrees(heading_rad)) % 360.0, math.degrees(pitch_rad))


class Timed:
    """Wraps the pyramid's refiner and anchor to count blocks and CPU per level."""

    def __init__(self, pyr):
        self.blocks = Counter()
        self.cpu = defaultdict(float)
        refine, sample = pyr.refiner.refine, pyr.anchor.sample
        constrain = getattr(pyr.anchor, "constrain", None)

        def timed_refine(crops, level, origins, seed):
            t = time.process_time()
            out = refine(crops, level, origins, seed)
            self.cpu[level] += time.process_time() - t
            self.blocks[level] += len(origins)
            return out

        def timed_constrain(kids, level, origins, **kw):
            t = time.process_time()
            out = constrain(kids, level, origins, **kw)
            self.cpu[level] += time.process_time() - t
            return out

        self.anchor_level = None

        def timed_sample(rows, cols):
            t = time.process_time()
            out = sample(rows, cols)
            self.cpu["anchor"] += time.process_time() - t
            self.blocks["anchor"] += 1
            return out

        pyr.refiner.refine = timed_refine
        pyr.anchor.sample = timed_sample
        if constrain is not None:
            pyr.anchor.constrain = timed_constrain
        self._restore = (pyr, refine, sample, constrain)

    def restore(self):
        pyr, refine, sample, constrain = self._restore
        pyr.refiner.refine = refine
        pyr.anchor.sample = sample
        if constrain is not None:
            pyr.anchor.constrain = constrain


def fetch(world: World, pyr, key: TileKey):
    """One tile through the server's path and the client's decode: (TileInfo, gen s, mesh s)."""
    from runtime.wire import decode_tile
    from streaming.tileservice import encode_fields

    t0 = time.process_time()
    f = pyr.tiles([key])[0]
    t1 = time.process_time()
    payload = encode_fields(world, key, f)
    t2 = time.process_time()
    d = decode_tile(payload)
    info = TileInfo(float(np.min(d.height_m)), float(np.max(d.height_m)), d.geometric_error_m)
    return info, t1 - t0, t2 - t1


def ground_m(world: World, pyr, site, level: int = 16) -> float:
    """The generated ground under ``site`` (x, y: plane metres or lon/lat degrees)."""
    geo = geometry_for(world)
    x, y = site
    if world is World.EARTH:
        from runtime.geometry import geodetic_to_ecef

        p = geodetic_to_ecef(np.array([x]), np.array([y]), np.array([0.0]))[0]
    else:
        p = np.array([x, y, 0.0])
    r, c, _ = geo.world_to_sample(level, p[None])
    key = geo.key_at(level, p)
    h = pyr.tiles([key])[0].height
    rr, cc = int(round(r[0])) - key.y * 256, int(round(c[0])) - key.x * 256
    return float(h[min(max(rr, 0), 256), min(max(cc, 0), 256)])


def complete_view(world: World, pyr, cam, target_px: float, prefetch: bool, log=print, max_rounds: int = 60,
                  frontier: bool = False):
    """The lockstep loop at one camera. Returns per-key records and the rounds. ``frontier``:
    each round fetches only what blocks a drawn tile's refinement now (``steps`` 0: the
    parent is known), not the tiles the walk reaches through unknown ones (bounded by their
    ancestors' height ranges): the fewest tiles, one round per level."""
    geo = geometry_for(world)
    opts = SelectionOptions(error_target_px=target_px)
    known: dict[TileKey, TileInfo] = {}
    drawn: frozenset = frozenset()
    expanded: frozenset = frozenset()
    records, rounds = [], []
    timed = Timed(pyr)
    try:
        for _ in range(max_rounds):
            sel = select(View(cam), geo, known, set(known), drawn, opts, expanded)
            drawn, expanded = frozenset(sel.draw), sel.expanded
            if sel.complete:
                break
            loads = [r for r in sel.load if (prefetch or r.band != Band.PREFETCH) and not (frontier and r.steps)]
            if not loads:
                break
            rounds.append({"asked": len(loads), "levels": dict(Counter(r.key.level for r in loads)),
                           "prefetch": sum(r.band == Band.PREFETCH for r in sel.load),
                           "max_sse_px": round(sel.max_sse_px, 1), "drawn": len(sel.draw)})
            for r in loads:
                b0 = dict(timed.blocks)
                info, gs, ms = fetch(world, pyr, r.key)
                known[r.key] = info
                nb = sum(timed.blocks.values()) - sum(b0.values())
                records.append({"key": r.key, "gen_s": gs, "mesh_s": ms, "blocks": nb, "band": r.band,
                                "ge_m": info.geometric_error_m, "range_m": info.max_height_m - info.min_height_m})
    finally:
        timed.restore()
    final = select(View(cam), geo, known, set(known), drawn, opts, expanded)
    return records, rounds, timed, final


def report(world: World, records, rounds, timed, final, log=print) -> dict:
    by_level = defaultdict(list)
    for r in records:
        by_level[r["key"].level].append(r)
    log(f"\n== {world.value}: {len(records)} tiles to a complete view in {len(rounds)} rounds "
        f"(complete: {final.complete}, drawn {len(final.draw)}, max sse {final.max_sse_px:.2f} px)")
    log(f"{'level':>5s} {'tiles':>5s} {'drawn':>5s} {'blocks':>6s} {'blk/tile':>8s} {'gen ms/blk':>10s} "
        f"{'gen ms/tile':>11s} {'mesh ms/tile':>12s}")
    drawn_levels = Counter(k.level for k in final.draw)
    out = {}
    levels = sorted(set(by_level) | {k for k in timed.blocks if k != "anchor"})
    for lv in levels:
        rs = by_level.get(lv, [])
        nb = timed.blocks.get(lv, 0) + (timed.blocks.get("anchor", 0) if lv == 3 else 0)
        cpu = timed.cpu.get(lv, 0.0) + (timed.cpu.get("anchor", 0.0) if lv == 3 else 0.0)
        gen = sum(r["gen_s"] for r in rs)
        mesh = sum(r["mesh_s"] for r in rs)
        n = len(rs)
        log(f"{lv:5d} {n:5d} {drawn_levels.get(lv, 0):5d} {nb:6d} {nb / n if n else float('nan'):8.1f} "
            f"{1e3 * cpu / nb if nb else float('nan'):10.2f} {1e3 * gen / n if n else float('nan'):11.1f} "
            f"{1e3 * mesh / n if n else float('nan'):12.1f}")
        out[lv] = {"tiles": n, "drawn": drawn_levels.get(lv, 0), "blocks": nb, "gen_cpu_s": round(gen, 4),
                   "mesh_cpu_s": round(mesh, 4), "block_cpu_s": round(cpu, 4)}
    gen = sum(r["gen_s"] for r in records)
    mesh = sum(r["mesh_s"] for r in records)
    nblk = sum(timed.blocks.values())
    # What the complete view draws and the ancestors that lead to it; the rest was asked for
    # while the walk bounded unknown tiles by their ancestors' height ranges.
    need = set(final.draw) | {k.ancestor(lv) for k in final.draw for lv in range(k.level)}
    used = [r for r in records if r["key"] in need]
    log(f"drawn {len(final.draw)} + ancestors = {len(need)} tiles; of the fetched, {len(used)} are those "
        f"({1e3 * sum(r['gen_s'] + r['mesh_s'] for r in used):.0f} ms server CPU), "
        f"{len(records) - len(used)} were not drawn and lead to nothing drawn")
    log(f"total: {len(records)} tiles, {nblk} blocks ({nblk / max(len(records), 1):.1f} a tile), generate "
        f"{gen:.2f} s, mesh+encode {mesh:.2f} s CPU ({1e3 * (gen + mesh) / max(len(records), 1):.1f} ms a tile)")
    for i, r in enumerate(rounds):
        log(f"  round {i}: asked {r['asked']} (prefetch left out {r['prefetch']}), levels {r['levels']}, "
            f"drawn {r['drawn']}, max sse {r['max_sse_px']} px")
    return {"tiles": len(records), "needed": len(used), "blocks": nblk, "gen_cpu_s": round(gen, 3),
            "mesh_cpu_s": round(mesh, 3), "rounds": len(rounds), "complete": final.complete, "levels": out}


def run_world(world: World, refiner: str, target_px: float, prefetch: bool, size=(1920, 1080),
              fov_deg: float = 60.0, log=print, frontier: bool = False) -> dict:
    from generator.pyramid import Pyramid

    start, dest = SITES[world]
    fov = math.radians(fov_deg)
    # The ground under the destination, from a throw-away pyramid (its blocks must not count).
    g_dest = ground_m(world, Pyramid(world, 0, refiner), dest)
    pyr = Pyramid(world, 0, refiner)
    g0 = ground_m(world, pyr, start)
    cam0 = camera_for(world, pose_at(world, start, HEADING_RAD, PITCH_RAD, 300.0), g0, fov, size)
    t = time.perf_counter()
    complete_view(world, pyr, cam0, target_px, prefetch=False, log=log)  # the caches before the jump
    log(f"{world.value}: start site's view made in {time.perf_counter() - t:.1f} s; teleport to {dest}, "
        f"ground {g_dest:.0f} m, camera {AGL_M:.0f} m above it")
    cam = camera_for(world, pose_at(world, dest, HEADING_RAD + math.pi, PITCH_RAD, AGL_M), g_dest, fov, size)
    records, rounds, timed, final = complete_view(world, pyr, cam, target_px, prefetch, log=log, frontier=frontier)
    return report(world, records, rounds, timed, final, log=log)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", choices=["plane", "earth", "both"], default="both")
    ap.add_argument("--refiner", default="fractal")
    ap.add_argument("--target-px", type=float, default=2.0)
    ap.add_argument("--prefetch", action="store_true", help="fetch prefetch-band tiles too")
    ap.add_argument("--frontier", action="store_true",
                    help="each round only the tiles whose parent is known (fewest tiles, a round per level)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    worlds = [World.PLANE, World.EARTH] if args.world == "both" else [World.parse(args.world)]
    out = {w.value: run_world(w, args.refiner, args.target_px, args.prefetch, frontier=args.frontier) for w in worlds}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
