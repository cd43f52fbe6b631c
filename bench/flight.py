"""Flight harness: scripted flights against a simulated tile source, no rendering (issue 3).

Each case flies take-off, a 250 m/s run at 300 m above ground, a climb to 30 km, a
180-degree turn, a teleport across the world and a hover, at 60 frames per simulated
second with a 1080p camera, through runtime.lod.streamer.TileStreamer (selection, scheduler,
cache). The source serves one tile at a time at ``tiles_per_s``, most urgent first, and
adds ``latency_s`` (round trip) to each; heights come from an analytic terrain.

Per frame group it prints tiles drawn, grid triangles (2 T^2 per tile: an upper bound,
the TIN has fewer), hole frames, frames above the error target, requests in flight,
cache MiB and selection time (process CPU time, so other jobs on a shared machine do
not inflate it; the whole frame's wall time is reported beside it); per case the time
from the teleport to a complete view.
Baseline in the same run: "leaves-only" hole frames, the frames that would have holes
if only the ideal tiles that are ready were drawn (no ancestor fallback).

The clock starts once the roots are ready (a simulator's loading screen); hole frames
count from there. Last line: one JSON object.

    python bench/flight.py --quick          # plane + earth, 5,000 tiles/s, 5 ms (< 1 min)
    python bench/flight.py                  # full matrix: 5/50 ms x 100/5,000 tiles/s
    python bench/flight.py --quick --source 110:700 --guess-levels 2 4 8   # the client's guess depth
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.geometry import east_north_up, geodetic_to_ecef, geometry_for  # noqa: E402
from runtime.lod.camera import Camera  # noqa: E402
from runtime.lod.selection import SPECULATIVE_LEVELS, SelectionOptions, TileInfo, View  # noqa: E402
from runtime.lod.streamer import StreamerOptions, TileStreamer  # noqa: E402
from runtime.tiles import METRES_PER_DEGREE, T, TileKey, World, level_error_m, spacing_deg, spacing_m  # noqa: E402

FPS = 60.0
TILE_BYTES = 512 << 10  # GPU bytes of one tile (positions, normals, uv, indices, colour)


# --- terrain and source ---------------------------------------------------------------------


def terrain_m(e, n):
    """Analytic terrain (metres) of 'map metres' e, n: ridges at several scales, 0..~3 km."""
    e, n = np.asarray(e, np.float64), np.asarray(n, np.float64)
    return (1500.0 + 900.0 * np.sin(e / 37e3) * np.cos(n / 53e3) + 400.0 * np.sin(e / 11e3 + n / 17e3)
            + 120.0 * np.sin(e / 2.9e3) * np.sin(n / 3.7e3) + 25.0 * np.sin((e + 2 * n) / 610.0))


class Terrain:
    def __init__(self, world: World):
        self.world = world
        self.geo = geometry_for(world)

    def height_at_map(self, e, n):
        return terrain_m(e, n)

    def tile_info(self, key: TileKey) -> TileInfo:
        r0, c0 = key.sample_origin()
        g = np.linspace(0, T, 9)
        rr, cc = np.meshgrid(r0 + g, c0 + g)
        # Map coordinates: plane metres; earth degrees * METRES_PER_DEGREE.
        if self.world is World.EARTH:
            d = spacing_deg(key.level)
            e, n = (-180.0 + cc * d) * METRES_PER_DEGREE, (90.0 - rr * d) * METRES_PER_DEGREE
        else:
            d = spacing_m(key.level)
            e, n = cc * d, -rr * d
        h = terrain_m(e, n)
        ge = level_error_m(key.level)
        # 9 x 9 samples miss peaks between them: grow by the tile's error and the finest ridge.
        pad = ge + 30.0
        return TileInfo(float(h.min()) - pad, float(h.max()) + pad, ge)


class SimulatedSource:
    """One server, FIFO by priority, ``tiles_per_s`` service rate, ``latency_s`` round trip."""

    def __init__(self, terrain: Terrain, latency_s: float, tiles_per_s: float):
        self.terrain = terrain
        self.latency_s = latency_s
        self.service_s = 1.0 / tiles_per_s
        self.queue: dict[TileKey, tuple[float, float]] = {}  # key -> (priority, time at server)
        self.server_free_s = 0.0
        self.in_transit: list[tuple[float, TileKey]] = []
        self.served = 0

    def request(self, key, priority, now_s):
        self.queue[key] = (priority, now_s + self.latency_s / 2)

    def cancel(self, key):
        self.queue.pop(key, None)

    def reprioritise(self, key, priority):
        if key in self.queue:
            self.queue[key] = (priority, self.queue[key][1])

    def advance(self, now_s) -> list[TileKey]:
        """Serve what can start by ``now_s``; returns the keys whose responses arrived by then."""
        t = self.server_free_s
        while self.queue:
            start = max(t, min(at for _, at in self.queue.values()))
            if start > now_s:
                break
            key = min((k for k, (_, at) in self.queue.items() if at <= start), key=lambda k: self.queue[k][0])
            del self.queue[key]  # started: a later cancel can not stop it
            t = start + self.service_s
            heapq.heappush(self.in_transit, (t + self.latency_s / 2, key))
            self.served += 1
        self.server_free_s = t
        out = []
        while self.in_transit and self.in_transit[0][0] <= now_s:
            out.append(heapq.heappop(self.in_transit)[1])
        return out


# --- the flight script ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pose:
    phase: str
    e_m: float           # map east/north of the aircraft, metres from the site origin
    n_m: float
    agl_m: float         # above the terrain
    heading_rad: float   # 0 = east, pi/2 = north
    pitch_rad: float     # camera pitch (negative looks down)
    site: int            # 0 = start, 1 = teleport destination


def script(quick: bool) -> list[Pose]:
    k = 0.3 if quick else 1.0
    poses = []
    e = n = 0.0
    heading = 0.3

    def fly(phase, seconds, speed, agl0, agl1, turn_rad=0.0, pitch=-0.15, site=0):
        nonlocal e, n, heading
        frames = max(1, int(round(seconds * k * FPS)))
        for i in range(frames):
            f = (i + 1) / frames
            sp = speed(f) if callable(speed) else speed
            heading0 = heading
            h = heading0 + turn_rad / frames
            heading = h
            e += sp / FPS * math.cos(h)
            n += sp / FPS * math.sin(h)
            poses.append(Pose(phase, e, n, agl0 + (agl1 - agl0) * f, h, pitch, site))

    fly("take-off", 10, lambda f: 250.0 * f, 2.0, 300.0, pitch=-0.05)
    fly("run 250 m/s @300 m", 30, 250.0, 300.0, 300.0)
    fly("climb to 30 km", 60, 250.0, 300.0, 30_000.0, pitch=-0.3)
    fly("turn 180 deg", 10, 250.0, 30_000.0, 30_000.0, turn_rad=math.pi, pitch=-0.3)
    e = n = 0.0
    fly("teleport + settle", 5, 0.0, 500.0, 500.0, site=1, pitch=-0.2)
    fly("hover", 15, 0.0, 500.0, 500.0, turn_rad=math.pi / 2, site=1, pitch=-0.2)
    return poses


SITES = {
    World.PLANE: [(1_000.0, -2_000.0), (1.0e7, -2.0e6)],   # map metres: origin, ~10,200 km away
    World.EARTH: [(7.6, 46.0), (170.2, -43.5)],            # lon, lat: Alps -> New Zealand Alps
}


def pose_to_camera(world: World, pose: Pose) -> tuple[Camera, np.ndarray]:
    """Camera (1080p) and ground point (world metres) of a pose."""
    site = SITES[world][pose.site]
    fwd_local = np.array([math.cos(pose.heading_rad) * math.cos(pose.pitch_rad),
                          math.sin(pose.heading_rad) * math.cos(pose.pitch_rad), math.sin(pose.pitch_rad)])
    if world is World.PLANE:
        e, n = site[0] + pose.e_m, site[1] + pose.n_m
        ground = float(terrain_m(e, n))
        pos = np.array([e, n, ground + pose.agl_m])
        frame = np.eye(3)
    else:
        lat = site[1] + pose.n_m / METRES_PER_DEGREE
        lon = site[0] + pose.e_m / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
        ground = float(terrain_m(lon * METRES_PER_DEGREE, lat * METRES_PER_DEGREE))
        pos = geodetic_to_ecef(lon, lat, ground + pose.agl_m)[0]
        frame = east_north_up(lon, lat)
    forward = fwd_local @ frame
    up = frame[2]
    cam = Camera(pos, forward, up, viewport_px=(1920, 1080), near_m=1.0, far_m=2.0e7)
    return cam, pos


# --- one case -----------------------------------------------------------------------------------


def run_case(world: World, latency_s: float, tiles_per_s: float, quick: bool,
             guess_levels: int | None = SPECULATIVE_LEVELS) -> dict:
    terrain = Terrain(world)
    source = SimulatedSource(terrain, latency_s, tiles_per_s)
    options = StreamerOptions(selection=SelectionOptions(error_target_px=2.0, max_level=20,
                                                         speculative_levels=guess_levels))
    streamer = TileStreamer(world, options)
    poses = script(quick)
    cams = [pose_to_camera(world, p) for p in poses]

    now = 0.0
    frame_wall_ms: list[float] = []

    def step(view):
        nonlocal now
        now += 1.0 / FPS
        for key in source.advance(now):
            streamer.on_tile(key, terrain.tile_info(key), TILE_BYTES)
        # Selection timed in process CPU time: other jobs on a shared machine do not inflate it.
        t0 = time.perf_counter()
        res = streamer.frame(view, clock=time.process_time)
        frame_wall_ms.append((time.perf_counter() - t0) * 1e3)
        for key in res.plan.cancel:
            source.cancel(key)
        for key, pri in res.plan.reprioritise:
            source.reprioritise(key, pri)
        for key, pri in res.plan.start:
            source.request(key, pri, now)
        return res

    # Loading screen: until the roots are drawn without holes at the first pose.
    boot_frames = 0
    first = View(cams[0][0])
    while True:
        res = step(first)
        boot_frames += 1
        if not res.selection.holes and res.selection.draw:
            break
        if boot_frames > 60 * FPS:
            raise RuntimeError("roots never arrived")
    boot_s = boot_frames / FPS

    groups: dict[str, dict] = {}
    select_ms = []
    teleport_frame = None
    teleport_complete_s = None
    prev_pos = cams[0][1]
    hole_frames = over_frames = leaves_only_holes = 0
    for i, (pose, (cam, pos)) in enumerate(zip(poses, cams, strict=True)):
        jump = pose.site == 1 and teleport_frame is None
        velocity = np.zeros(3) if jump else (pos - prev_pos) * FPS
        prev_pos = pos
        res = step(View(cam, velocity))
        sel = res.selection
        if jump:
            teleport_frame = i
        if teleport_frame is not None and teleport_complete_s is None and sel.complete:
            teleport_complete_s = (i - teleport_frame + 1) / FPS
        g = groups.setdefault(pose.phase, dict(frames=0, drawn=[], holes=0, over=0, in_flight=[], cache=[],
                                               leaves_only_holes=0, select_ms=[]))
        g["frames"] += 1
        g["drawn"].append(len(sel.draw))
        g["holes"] += bool(sel.holes)
        g["over"] += bool(sel.over_error)
        g["in_flight"].append(len(streamer.scheduler.in_flight))
        g["cache"].append(streamer.cache.bytes / 2**20)
        g["select_ms"].append(res.select_s * 1e3)
        naive_hole = any(k not in streamer.ready for k in sel.ideal)
        g["leaves_only_holes"] += naive_hole
        hole_frames += bool(sel.holes)
        over_frames += bool(sel.over_error)
        leaves_only_holes += naive_hole
        select_ms.append(res.select_s * 1e3)

    return dict(world=world.value, latency_ms=latency_s * 1e3, tiles_per_s=tiles_per_s, guess_levels=guess_levels,
                frames=len(poses),
                boot_s=boot_s, hole_frames=hole_frames, frames_over_error_target=over_frames,
                leaves_only_hole_frames=leaves_only_holes, teleport_complete_s=teleport_complete_s,
                select_ms_p50=float(np.median(select_ms)), select_ms_p95=float(np.percentile(select_ms, 95)),
                frame_wall_ms_p50=float(np.median(frame_wall_ms)),
                tiles_served=source.served, groups=groups)


def print_case(r: dict) -> None:
    print(f"\n== {r['world']}  latency {r['latency_ms']:.0f} ms  {r['tiles_per_s']:.0f} tiles/s  "
          f"guesses {r['guess_levels']} levels deep  "
          f"(boot {r['boot_s']:.2f} s, {r['tiles_served']} tiles served)")
    hdr = (f"{'phase':22s} {'frames':>6s} {'drawn':>9s} {'grid Mtri':>9s} {'holes':>5s} {'leaves-only':>11s} "
           f"{'>2px':>5s} {'in flight':>9s} {'cache MiB':>9s} {'sel ms p50':>10s}")
    print(hdr)
    for phase, g in r["groups"].items():
        d = np.array(g["drawn"])
        print(f"{phase:22s} {g['frames']:6d} {d.mean():5.0f}/{d.max():3d} {d.mean() * 2 * T * T / 1e6:9.1f} "
              f"{g['holes']:5d} {g['leaves_only_holes']:11d} {g['over']:5d} "
              f"{np.mean(g['in_flight']):4.0f}/{max(g['in_flight']):3d} {max(g['cache']):9.0f} "
              f"{np.median(g['select_ms']):10.2f}")
    tc = r["teleport_complete_s"]
    print(f"teleport -> complete 2 px view: {'never' if tc is None else f'{tc:.3f} s'}   "
          f"select (CPU) p50 {r['select_ms_p50']:.2f} ms, p95 {r['select_ms_p95']:.2f} ms; "
          f"whole frame (wall) p50 {r['frame_wall_ms_p50']:.2f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short flights, 5,000 tiles/s, 5 ms only")
    ap.add_argument("--world", choices=["plane", "earth", "both"], default="both")
    ap.add_argument("--guess-levels", type=int, nargs="+", default=[SPECULATIVE_LEVELS],
                    help="the client's speculative levels (fly --guess-levels), one case each")
    ap.add_argument("--source", nargs="+", metavar="MS:TILES_PER_S",
                    help="source latencies and rates instead of the default matrix, e.g. 110:700")
    args = ap.parse_args(argv)
    worlds = [World.PLANE, World.EARTH] if args.world == "both" else [World.parse(args.world)]
    configs = [(0.005, 5000.0)]
    if not args.quick:
        configs += [(0.05, 5000.0), (0.005, 100.0), (0.05, 100.0)]
    if args.source:
        try:
            configs = [(float(ms) / 1e3, float(rate)) for ms, rate in (c.split(":") for c in args.source)]
        except ValueError:
            ap.error(f"--source wants MS:TILES_PER_S pairs (e.g. 110:700), got {args.source}")
    if any(g < 0 for g in args.guess_levels):
        ap.error(f"--guess-levels must be >= 0, got {args.guess_levels}")
    results = []
    for world in worlds:
        for latency_s, rate in configs:
            for g in args.guess_levels:
                r = run_case(world, latency_s, rate, args.quick, g)
                print_case(r)
                results.append(r)
    if len(args.guess_levels) > 1:
        print("\nteleport -> complete view (s) / tiles served over the flight, per guess depth")
        for world in worlds:
            for latency_s, rate in configs:
                cells = [f"{r['guess_levels']:>2}: {r['teleport_complete_s'] or float('nan'):.3f} / {r['tiles_served']}"
                         for r in results if r["world"] == world.value and r["latency_ms"] == latency_s * 1e3
                         and r["tiles_per_s"] == rate]
                print(f"{world.value:6s} {latency_s * 1e3:5.0f} ms {rate:6.0f}/s   " + "   ".join(cells))
    fast = [r for r in results if r["latency_ms"] == 5 and r["tiles_per_s"] == 5000]
    tele = [r["teleport_complete_s"] for r in fast]
    summary = dict(
        hole_frames=sum(r["hole_frames"] for r in results),
        frames_over_error_target=sum(r["frames_over_error_target"] for r in results),
        teleport_complete_s=max(tele) if tele and all(t is not None for t in tele) else None,
        select_ms_p50=max(r["select_ms_p50"] for r in results),
        leaves_only_hole_frames=sum(r["leaves_only_hole_frames"] for r in results),
        cases=[{k: v for k, v in r.items() if k != "groups"} for r in results],
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
