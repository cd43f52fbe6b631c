"""Many teleports in one real-time flight (issue 15): bench/realtime.py's teleport, repeated.

bench/realtime.py's flight has one teleport, and on the shared 2-core box its time is
bimodal (a view complete before the hover starts to yaw, 1.5 s after the jump, or a chase
of the tiles that the yaw brings in: 2 s against 4-6 s on earth), so one flight says little
about a change. This flight holds the first site for 3 s, then jumps ``--sites`` times, each
time to a new region over land, and does there what bench/realtime.py's path does after its
teleport (500 m above the ground, pitch -11.5 degrees, 1.5 s still, then a 90-degree yaw in
4.5 s: bench/flight.py's ``--quick`` script); ``teleport_complete_s`` has one entry per jump.
The same real ``worldstream serve`` process and viewer client path as bench/realtime.py
(``run_fly(realtime=True)``, GL-free), 1920x1080, 60 degrees, 2 px.

Sites: earth, mountains on six continents (none in a region an earlier site's view
touched); plane, ``pick_start`` in the anchor tiles around x = 0, 10,000, 20,000 ... km
east of the origin (as bench/realtime.py picks its two).

    PYTHONPATH=. python bench/realtime_teleports.py --world earth [--gen-procs 2] [--gen-shared-mb 0|N|auto]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import realtime as rt  # noqa: E402  (bench/realtime.py)
from serve import ServerProcess  # noqa: E402  (bench/serve.py)

from runtime import wire  # noqa: E402
from runtime.lod.selection import SPECULATIVE_LEVELS  # noqa: E402
from runtime.tiles import ANCHOR_LEVEL, TileKey, World  # noqa: E402
from viewer.paths import pick_start  # noqa: E402

EARTH_SITES = [(7.6, 46.0), (170.2, -43.5), (-105.6, 40.3), (86.9, 27.9), (-70.0, -33.0), (37.35, -3.07),
               (0.5, 42.7), (7.5, 61.5), (138.7, 35.4)]
"""Alps (bench/realtime.py's start), Southern Alps (its teleport), Rockies, Himalaya, Andes,
Kilimanjaro, Pyrenees, Norway, Fuji: lon, lat degrees."""

AGL_M, PITCH_DEG = 500.0, math.degrees(-0.2)
HOLD_S, SETTLE_S, YAW_S, YAW_DEG = 3.0, 1.5, 4.5, 90.0


def plane_sites(client, n: int) -> list[tuple[float, float]]:
    """n land sites ~10,000 km apart along the x axis (``pick_start`` in 4 anchor tiles each)."""
    sites = []
    for i in range(n):
        x0 = 4 * i
        keys = [TileKey(ANCHOR_LEVEL, x0 + dx, dy) for dy in (-1, 0) for dx in (-1, 0)]
        tiles = client.fetch(keys, timeout_s=600)
        images = {k: wire.decode_image(t.image) for k, t in tiles.items() if t.image is not None}
        x, y, _, _ = pick_start(World.PLANE, tiles, images)
        sites.append((x, y))
    return sites


def teleport_path(sites) -> dict:
    """The first site held for HOLD_S, then per further site: a cut, SETTLE_S still, a
    YAW_DEG yaw over YAW_S (keyframes every 0.5 s)."""
    heading0 = (90.0 - math.degrees(0.3 + math.pi)) % 360.0  # bench/flight.py's heading after its turn
    kf = []

    def key(t, site, heading, cut=False):
        x, y = site
        kf.append({"t": round(t, 4), "x": x, "y": y, "alt_m": AGL_M, "alt_mode": "agl",
                   "heading_deg": heading % 360.0, "pitch_deg": PITCH_DEG, "cut": cut})

    key(0.0, sites[0], heading0)
    key(HOLD_S - 0.01, sites[0], heading0)
    t = HOLD_S
    for site in sites[1:]:
        key(t, site, heading0, cut=True)
        key(t + SETTLE_S, site, heading0)
        steps = int(YAW_S / 0.5)
        for i in range(1, steps + 1):
            key(t + SETTLE_S + i * 0.5, site, heading0 - YAW_DEG * i / steps)
        t += SETTLE_S + YAW_S
    return {"keyframes": kf}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", choices=["plane", "earth"], default="earth")
    ap.add_argument("--sites", type=int, default=6, help="teleports in the flight")
    ap.add_argument("--gen-procs", default="0",
                    help="the server's generator processes (0: one thread; auto: serve's default)")
    ap.add_argument("--gen-shared-mb", default="auto",
                    help="the generator processes' shared block table (serve --gen-shared-mb: MiB, 0 or auto)")
    ap.add_argument("--guess-levels", type=int, default=SPECULATIVE_LEVELS,
                    help=f"the client's guesses below known tiles (fly --guess-levels; default {SPECULATIVE_LEVELS})")
    ap.add_argument("--fps", type=float, default=30.0)
    args = ap.parse_args(argv)
    world = World.parse(args.world)
    load0 = rt._loadavg()
    server = ServerProcess(None, world=world.value, refiner="fractal", gen_procs=args.gen_procs,
                           extra_args=("--gen-shared-mb", str(args.gen_shared_mb)))
    tmp = Path(tempfile.mkdtemp(prefix="teleports-"))
    try:
        if world is World.EARTH:
            if args.sites + 1 > len(EARTH_SITES):
                raise SystemExit(f"--sites must be <= {len(EARTH_SITES) - 1} on earth, got {args.sites}")
            sites = EARTH_SITES[: args.sites + 1]
        else:
            from streaming.client import SyncTileClient

            c = SyncTileClient(server.url)
            sites = plane_sites(c, args.sites + 1)
            c.close()
        doc = teleport_path(sites)
        path_file = tmp / "path.json"
        path_file.write_text(json.dumps(doc))
        duration = doc["keyframes"][-1]["t"]
        s = rt.fly(server.url, world, path_file, tmp / "rt", realtime=True, frames=int(duration * args.fps),
                   fps=args.fps, size=(1920, 1080), gl=False, guess_levels=args.guess_levels)
        s["server_cpu_s"] = round(server.cpu_s(), 1)
        s["server"] = rt.server_counters(server.url)
    finally:
        server.stop()
    tele = s.get("teleport_complete_s") or []
    done = [x for x in tele if x is not None]
    out = {"world": world.value, "gen_procs": args.gen_procs, "gen_shared_mb": args.gen_shared_mb,
           "guess_levels": args.guess_levels, "sites": sites,
           "loadavg": [load0, rt._loadavg()],
           "teleport_complete_s": tele, "teleport_coarse_s": s.get("teleport_coarse_s"),
           "median_s": round(statistics.median(done), 3) if done else None,
           "within_1s": sum(1 for x in done if x <= 1.0), "never": len(tele) - len(done),
           **{k: s.get(k) for k in ("frames", "hole_frames", "frac_over_error_target", "stall_ms_max",
                                    "frames_over_100ms", "tiles_received", "client_ms_per_tile", "server_cpu_s",
                                    "server", "loading_s")}}
    print(f"{world.value}: teleports {['never' if x is None else round(x, 2) for x in tele]} "
          f"(median {out['median_s']} s, {out['within_1s']} within 1.0 s), "
          f"{out['frac_over_error_target']:.1%} of frames over 2 px, load {out['loadavg']}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
