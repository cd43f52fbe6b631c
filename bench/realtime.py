"""Real time, end to end: a real `worldstream serve` process and the viewer's own client
path (``worldstream fly --headless --realtime``) flying bench/flight.py's path (issue 15).

The path: take-off, a 250 m/s run at 300 m above ground, a climb to 30 km, a 180-degree
turn, a teleport (a ``cut`` keyframe) and a hover, at 1080p, 60 degrees, 2 px, written as
a docs/VIEWER.md camera path (one keyframe per second of bench/flight.py's script, so the
same speeds, heights and headings) over land: the plane starts where ``pick_start`` puts
the default flight and teleports ~10,000 km east (again ``pick_start``); the earth flies
the Alps and teleports to New Zealand's Southern Alps (bench/flight.py's sites).

Per world, in the same run:
- ``realtime``: the server process + ``run_fly(realtime=True)`` (GL through EGL when
  available; ``--no-gl``: the GL-free renderer, same CPU packing, no pixels);
- ``sim 100/s`` and ``sim 5000/s``: bench/flight.py's simulated source (5 ms latency)
  on its analytic terrain, the same script (simulated time, not wall clock);
- ``lockstep``: the same path, each frame waiting for a complete view (few frames: the
  wall time per frame is the point);
- ``realtime cached`` (``--cached``): the realtime flight again against the same server,
  whose LRU now holds every tile it sent: generation, meshing and encoding drop out, so the
  teleport measures the client's own floor (decode, placement, morph targets, packing) and
  the network's, on this machine.

The realtime flight starts behind a loading screen (viewer/realtime.py): the first pose is
held until its view is complete at 2 px (at most 10 s; ``loading_s``, ``loading_complete``),
then the path's clock starts; loading frames are not flight frames (not in ``frames`` or
``frac_over_error_target``).

Both worlds share one 2-core machine with the server, so client and server compete for
the same cores (as in the issue). Last line: one JSON object, the stats per world.

    PYTHONPATH=. python bench/realtime.py --quick       # 0.3x path (39 s per world)
    PYTHONPATH=. python bench/realtime.py               # the whole path (130 s per world)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import flight as simflight  # noqa: E402  (bench/flight.py)
from serve import ServerProcess  # noqa: E402  (bench/serve.py)

from runtime import wire  # noqa: E402
from runtime.lod.selection import SPECULATIVE_LEVELS  # noqa: E402
from runtime.tiles import ANCHOR_LEVEL, METRES_PER_DEGREE, TileKey, World  # noqa: E402
from viewer.paths import pick_start  # noqa: E402

KEYS = ("frames", "hole_frames", "frames_over_error_target", "frac_over_error_target", "teleport_complete_s",
        "teleport_coarse_s",
        "stall_ms_max", "stall_ms_p99", "tile_ms_max", "frames_over_100ms", "tile_latency_ms_p50",
        "tile_latency_ms_p99", "late_tiles", "duplicate_tiles", "tiles_received", "uploads", "client_ms_per_tile",
        "boot_s", "loading_s", "loading_complete",
        "poses_skipped", "wall_s", "step_ms_max")


def land_sites(world: World, client) -> list[tuple[float, float]]:
    """(x, y) of the start and of the teleport's destination, both over land."""
    if world is World.EARTH:
        return [tuple(s) for s in simflight.SITES[World.EARTH]]
    sites = []
    for x0, y0 in ((0, 0), (4, 0)):  # anchor tiles (2,505 km) around the origin, then 10,000 km east
        keys = [TileKey(ANCHOR_LEVEL, x0 + dx, y0 + dy) for dy in (-1, 0) for dx in (-1, 0)]
        tiles = client.fetch(keys, timeout_s=600)
        images = {k: wire.decode_image(t.image) for k, t in tiles.items() if t.image is not None}
        x, y, _, _ = pick_start(World.PLANE, tiles, images)
        sites.append((x, y))
    return sites


def bench_path(world: World, sites, quick: bool) -> dict:
    """bench/flight.py's script as a docs/VIEWER.md path: a keyframe per simulated second."""
    poses = simflight.script(quick)
    step = int(simflight.FPS)
    keyframes, prev_site = [], 0
    for i, p in enumerate(poses):
        cut = p.site != prev_site
        if not (cut or i % step == 0 or i == len(poses) - 1):
            continue
        prev_site = p.site
        sx, sy = sites[p.site]
        if world is World.EARTH:
            lat = sy + p.n_m / METRES_PER_DEGREE
            x, y = sx + p.e_m / (METRES_PER_DEGREE * math.cos(math.radians(lat))), lat
        else:
            x, y = sx + p.e_m, sy + p.n_m
        keyframes.append({"t": round(i / simflight.FPS, 4), "x": x, "y": y, "alt_m": p.agl_m, "alt_mode": "agl",
                          "heading_deg": (90.0 - math.degrees(p.heading_rad)) % 360.0,
                          "pitch_deg": math.degrees(p.pitch_rad), "cut": cut})
    return {"keyframes": keyframes}


def fly(url: str, world: World, path_file: Path, out: Path, *, realtime: bool, frames: int, fps: float,
        size, gl: bool, place_procs: int | None = None, guess_levels: int = SPECULATIVE_LEVELS) -> dict:
    from viewer.app import FlyOptions, run_fly

    opts = FlyOptions(world=world.value, frames=frames, fps=fps, out_dir=out, size=size, path_file=str(path_file),
                      realtime=realtime, lockstep=not realtime, gl=gl, write_png=False, write_mp4=False,
                      max_wait_s=120.0, place_procs=place_procs, guess_levels=guess_levels)
    t = time.perf_counter()
    run_fly(opts, url=url)
    stats = json.loads((out / "stats.json").read_text())
    stats["wall_s"] = round(time.perf_counter() - t, 2)
    return stats


def server_counters(url: str) -> dict:
    """The server's own counters after the realtime flight: tiles generated, dropped
    before generation because cancelled, still queued, mean generator batch, and the times a
    client's reading paused (its share of the event loop, or its unsent output, was used up)."""
    from streaming.client import SyncTileClient

    c = SyncTileClient(url)
    try:
        s = c.stats().get("server", {})
    finally:
        c.close()
    return {k: s.get(k) for k in ("generated", "dropped_cancelled", "queued", "mean_batch", "requests",
                                     "loop_pauses", "read_pauses")}


def sim(world: World, rate: float, quick: bool) -> dict:
    r = simflight.run_case(world, 0.005, rate, quick)
    return {"frames": r["frames"], "hole_frames": r["hole_frames"],
            "frames_over_error_target": r["frames_over_error_target"],
            "frac_over_error_target": round(r["frames_over_error_target"] / r["frames"], 4),
            "teleport_complete_s": [r["teleport_complete_s"]]}


def row(name: str, s: dict) -> str:
    def f(k, fmt="{:.0f}"):
        v = s.get(k)
        if v is None:
            return "-"
        if isinstance(v, list):
            return ",".join("never" if x is None else f"{x:.2f}" for x in v)
        return fmt.format(v)
    return (f"{name:12s} {f('frames'):>6s} {f('hole_frames'):>5s} {f('frac_over_error_target', '{:.1%}'):>6s} "
            f"{f('teleport_complete_s'):>9s} {f('teleport_coarse_s'):>7s} {f('stall_ms_max'):>8s} "
            f"{f('tile_ms_max'):>8s} "
            f"{f('tile_latency_ms_p50'):>7s} {f('tile_latency_ms_p99'):>7s} {f('late_tiles'):>5s} "
            f"{f('tiles_received'):>6s} {f('client_ms_per_tile', '{:.1f}'):>7s} {f('loading_s', '{:.2f}'):>7s}")


def _loadavg() -> float | None:
    """The 1-minute load average (None where unknown): real-time numbers on a shared box
    mean little without it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="0.3x path (bench/flight.py --quick), lockstep 6 frames")
    ap.add_argument("--world", choices=["plane", "earth", "both"], default="both")
    ap.add_argument("--no-gl", action="store_true", help="GL-free renderer (CPU packing only)")
    ap.add_argument("--fps", type=float, default=30.0, help="realtime frame rate cap")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--no-sim", action="store_true", help="skip the simulated-source baselines")
    ap.add_argument("--mesh-procs", type=int, default=0, help="the server's mesh/encode processes (0: threads)")
    ap.add_argument("--gen-procs", default="auto",
                    help="the server's generator processes (serve's default auto; 0: one generator thread)")
    ap.add_argument("--gen-backends", default="auto",
                    help="serve --gen-backends: backend processes the learned generator processes share")
    ap.add_argument("--refiner", default="fractal", help="the server's refiner (fractal, learned, bicubic)")
    ap.add_argument("--place-procs", type=int, default=None,
                    help="the client's tile decode/place processes (fly --place-procs; default auto)")
    ap.add_argument("--guess-levels", type=int, default=SPECULATIVE_LEVELS,
                    help=f"the client's guesses below known tiles (fly --guess-levels; default {SPECULATIVE_LEVELS})")
    ap.add_argument("--cached", action="store_true",
                    help="also fly the realtime path again against the same server (its tiles cached): the "
                         "client's floor")
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    worlds = [World.PLANE, World.EARTH] if args.world == "both" else [World.parse(args.world)]
    gl = not args.no_gl
    if gl:
        try:
            from viewer.context import headless_context

            headless_context().release()
        except Exception as exc:  # no EGL here: say so and fly GL-free
            print(f"no EGL ({exc}); flying GL-free")
            gl = False
    from streaming.client import SyncTileClient
    from viewer.placepool import auto_procs

    place_procs = auto_procs() if args.place_procs is None else args.place_procs  # what the flights use
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="realtime-"))
    for world in worlds:
        load0 = _loadavg()
        server = ServerProcess(None, world=world.value, mesh_procs=args.mesh_procs, refiner=args.refiner,
                               gen_procs=args.gen_procs,
                               extra_args=("--gen-backends", str(args.gen_backends)))
        try:
            c = SyncTileClient(server.url)
            sites = land_sites(world, c)
            c.close()
            doc = bench_path(world, sites, args.quick)
            path_file = tmp / f"{world.value}.json"
            path_file.write_text(json.dumps(doc))
            duration = doc["keyframes"][-1]["t"]
            rt = fly(server.url, world, path_file, tmp / f"{world.value}-rt", realtime=True,
                     frames=int(duration * args.fps), fps=args.fps, size=size, gl=gl, place_procs=place_procs,
                     guess_levels=args.guess_levels)
            rt["server_cpu_s"] = round(server.cpu_s(), 1)
            rt["server"] = server_counters(server.url)
            cached = None
            if args.cached:  # the same flight, every tile now in the server's LRU
                cached = fly(server.url, world, path_file, tmp / f"{world.value}-rt-cached", realtime=True,
                             frames=int(duration * args.fps), fps=args.fps, size=size, gl=gl,
                             place_procs=place_procs, guess_levels=args.guess_levels)
            n_lock = 6 if args.quick else 20
            lock = fly(server.url, world, path_file, tmp / f"{world.value}-lock", realtime=False,
                       frames=n_lock, fps=n_lock / duration, size=size, gl=gl)
        finally:
            server.stop()
        runs = {"realtime": rt, **({"rt cached": cached} if cached else {}), "lockstep": lock}
        if not args.no_sim:
            runs["sim 100/s"] = sim(world, 100.0, args.quick)
            runs["sim 5000/s"] = sim(world, 5000.0, args.quick)
        load1 = _loadavg()
        results[world.value] = {"sites": sites, "gl": gl, "refiner": args.refiner, "path_s": duration,
                                "place_procs": place_procs, "guess_levels": args.guess_levels,
                                "loadavg": [load0, load1],
                                **{k: {kk: v.get(kk) for kk in KEYS + ("server_cpu_s", "server") if kk in v}
                                   for k, v in runs.items()}}
        print(f"\n== {world.value}  {args.refiner}  path {duration:.0f} s  sites {sites}  "
              f"{'GL (EGL)' if gl else 'GL-free'}  client place processes {place_procs}  "
              f"{size[0]}x{size[1]}  load average {load0} -> {load1} (1-minute; the box is shared)")
        print(f"{'run':12s} {'frames':>6s} {'holes':>5s} {'>2px':>6s} {'teleport':>9s} {'coarse':>7s} {'stall ms':>8s} "
              f"{'tile ms':>8s} {'lat p50':>7s} {'lat p99':>7s} {'late':>5s} {'tiles':>6s} {'ms/tile':>7s} "
              f"{'loading':>7s}")
        for name, s in runs.items():
            print(row(name, s))
        print(f"server during the realtime flight: {rt.get('server')}, CPU {rt.get('server_cpu_s')} s")
        print(f"realtime: loading screen {rt.get('loading_s')} s (roots {rt.get('boot_s')} s, view complete: "
              f"{rt.get('loading_complete')}) before the flight clock; its frames are not flight frames")
        if lock.get("frames"):
            print(f"lockstep: {lock['wall_s'] / lock['frames']:.1f} s wall per complete frame")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
