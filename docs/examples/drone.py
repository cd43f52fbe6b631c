"""A drone flies a terrain-following line, queries the ground and renders its sensors
(docs/SIMULATOR.md).

Starts a plane-world server in this process (fractal refiner, seed 0), prefetches the
tiles along the flight at the query level, flies ``--steps`` steps of ``--dt`` seconds at
``--agl`` metres above the ground (height_at in the control loop: local, microseconds), then
captures one RGB + depth frame from a forward and a downward camera through
``viewer.sensors.SensorSession`` (headless EGL; ``--no-sensors`` skips it).

    python docs/examples/drone.py --steps 100 --out /tmp/drone
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from streaming.sim import GroundClient, LocalServer


def fly(g: GroundClient, start: tuple[float, float], heading_deg: float, speed_mps: float, agl_m: float,
        steps: int, dt_s: float) -> dict:
    """Terrain following on the plane world: a P controller on altitude above height_at."""
    x, y = start
    vx, vy = speed_mps * math.sin(math.radians(heading_deg)), speed_mps * math.cos(math.radians(heading_deg))
    alt = g.height_at(x, y) + agl_m
    vz, agls, query_s = 0.0, [], 0.0
    for _ in range(steps):
        nx, ny = x + vx * dt_s, y + vy * dt_s
        if not g.covers(nx, ny):  # rare: the flight left the prefetched disc
            g.prefetch((nx, ny), radius_m=max(200.0, 20 * speed_mps * dt_s))
        t0 = time.perf_counter()
        ground = g.height_at(nx, ny)
        query_s += time.perf_counter() - t0
        vz = max(-8.0, min(8.0, 1.5 * (ground + agl_m - alt)))  # climb rate limited to 8 m/s
        x, y, alt = nx, ny, alt + vz * dt_s
        agls.append(alt - g.height_at(x, y))
    return {"x": x, "y": y, "alt_m": alt, "min_agl_m": min(agls), "max_agl_m": max(agls),
            "height_at_us": 1e6 * query_s / max(steps, 1)}


def capture(url: str, x: float, y: float, alt_m: float, heading_deg: float, out: Path | None,
            error_target_px: float = 2.0) -> dict:
    """One frame of two cameras (RGB and planar depth); returns the down camera's centre depth."""
    from viewer.sensors import SensorSession, SensorSpec

    specs = [SensorSpec("front", (160, 120), 60.0, {"rgb", "depth_m"}),
             SensorSpec("down", (96, 96), 60.0, {"rgb", "depth_m"})]
    with SensorSession(specs, url=url, error_target_px=error_target_px) as s:
        cams = {"front": s.camera("front", (x, y, alt_m), heading_deg=heading_deg, pitch_deg=-15.0),
                "down": s.camera("down", (x, y, alt_m), heading_deg=heading_deg, pitch_deg=-90.0)}
        frames = s.capture(cams, timeout_s=300.0)
    if out is not None:
        from PIL import Image

        out.mkdir(parents=True, exist_ok=True)
        for name, f in frames.items():
            Image.fromarray(f.rgb).save(out / f"{name}_rgb.png")
            np.save(out / f"{name}_depth_m.npy", f.depth_m)
    d = frames["down"].depth_m
    return {"down_centre_depth_m": float(d[d.shape[0] // 2, d.shape[1] // 2]),
            "front_sky_fraction": float(np.isinf(frames["front"].depth_m).mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--dt", type=float, default=0.1, help="step (s)")
    p.add_argument("--speed", type=float, default=15.0, help="ground speed (m/s)")
    p.add_argument("--heading", type=float, default=90.0, help="degrees from north, clockwise")
    p.add_argument("--agl", type=float, default=40.0, help="height above ground to hold (m)")
    p.add_argument("--out", type=Path, default=None, help="folder for the sensor frames (png, npy)")
    p.add_argument("--no-sensors", action="store_true", help="skip the sensor capture (no GL)")
    p.add_argument("--error-target", type=float, default=2.0, help="sensor screen-space error target (px)")
    args = p.parse_args(argv)
    from streaming.cli.compose import build_server  # the generator: needs the `generator` extra

    start = (-3_000_000.0, 0.0)  # inland on seed 0
    with LocalServer(build_server("plane", 0, "fractal")) as srv, GroundClient(srv.url) as g:
        t0 = time.perf_counter()
        reach = args.speed * args.dt * args.steps
        end = (start[0] + reach * math.sin(math.radians(args.heading)),
               start[1] + reach * math.cos(math.radians(args.heading)))
        n = g.prefetch_path([start, end], radius_m=100.0)  # the corridor of the whole flight
        print(f"prefetched {n} tiles at level {g.level} in {time.perf_counter() - t0:.1f} s")
        r = fly(g, start, args.heading, args.speed, args.agl, args.steps, args.dt)
        ground = g.height_at(r["x"], r["y"])
        print(f"flew {args.steps} steps to ({r['x']:.1f}, {r['y']:.1f}) at {r['alt_m']:.1f} m, ground {ground:.1f} m; "
              f"AGL {r['min_agl_m']:.1f}..{r['max_agl_m']:.1f} m; height_at {r['height_at_us']:.1f} us/call")
        if not args.no_sensors:
            c = capture(srv.url, r["x"], r["y"], r["alt_m"], args.heading, args.out, args.error_target)
            print(f"down camera centre depth {c['down_centre_depth_m']:.2f} m (AGL by height_at "
                  f"{r['alt_m'] - ground:.2f} m); front sky fraction {c['front_sky_fraction']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
