"""A JSBSim-style ground callback on a worldstream world (docs/SIMULATOR.md).

JSBSim asks its ground callback, many times per integration step (once per landing-gear
contact), for the terrain under a location: the contact point, the surface normal, and the
ground's linear and angular velocity (zero: terrain does not move). ``WorldstreamGround``
answers that from ``streaming.sim.GroundClient``: a local, synchronous query on tiles
prefetched at one fixed level. Water counts as the contact surface (a float plane sits on
it; a wheel would sink, which is the flight model's business).

Runs as is: starts a plane-world server in this process (fractal refiner, seed 0) and drops
a three-wheeled point-mass "aircraft" onto the terrain, printing where it settles.

    python docs/examples/ground_callback.py --steps 400
    python docs/examples/ground_callback.py --url ws://127.0.0.1:8765 --at 6.8652,45.8326   # earth server
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from runtime.ground import enu_to_ecef
from streaming.sim import GroundClient, LocalServer


@dataclass(frozen=True)
class Contact:
    """What a ground callback returns. agl_m: height of the queried point above the surface;
    surface_m: surface height (m, the datum of the world: plane 0, earth WGS84 ellipsoid);
    normal_enu / normal_world: unit normal in east-north-up and in the world frame (ECEF on
    the earth; the plane world's frame is already east-north-up); velocity / angular
    velocity of the ground: zero."""

    agl_m: float
    surface_m: float
    is_water: bool
    normal_enu: tuple[float, float, float]
    normal_world: tuple[float, float, float]
    velocity_mps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    angular_velocity_rps: tuple[float, float, float] = (0.0, 0.0, 0.0)


class WorldstreamGround:
    """JSBSim's ``FGGroundCallback::GetAGLevel(t, location, contact, normal, v, w)``, in Python,
    over a GroundClient: the return value is ``agl_m``; ``contact`` is (x, y, surface_m);
    ``normal`` is ``normal_world`` (JSBSim works in ECEF); ``v`` and ``w`` are zero. A C++
    or pybind11 binding calls ``get_agl_level`` with the location's lon, lat and altitude."""

    def __init__(self, ground: GroundClient):
        self.ground = ground

    def get_agl_level(self, x: float, y: float, alt_m: float) -> Contact:
        """x, y: plane east/north metres or earth lon/lat degrees; alt_m above the datum."""
        p = self.ground.ground_at(x, y)  # raises NotPrefetched outside the prefetched region
        surface = p.water_m if p.is_water else p.ground_m
        world = tuple(float(v) for v in enu_to_ecef(self.ground.world, [[x, y]], [p.normal_enu])[0])
        return Contact(alt_m - surface, surface, p.is_water, p.normal_enu, world)


def drop_test(ground: WorldstreamGround, x: float, y: float, steps: int, dt_s: float = 0.01) -> dict:
    """A point mass on three springy wheels (1 m apart) falls from 5 m above the terrain;
    each step queries the callback once per wheel, as JSBSim does per gear contact."""
    metres = ground.ground.world.value == "plane"
    east_deg = 1.0 if metres else 1.0 / (111_320.0 * math.cos(math.radians(y)))
    north_deg = 1.0 if metres else 1.0 / 110_540.0
    wheels = [(0.0, 1.0), (-0.87, -0.5), (0.87, -0.5)]  # metres east, north of the centre
    alt = ground.get_agl_level(x, y, 0.0).surface_m + 5.0
    vz, k, c, calls = 0.0, 40.0, 12.0, 0  # spring (1/s^2) and damping (1/s) per unit mass
    for _ in range(steps):
        force = -9.81
        for de, dn in wheels:
            contact = ground.get_agl_level(x + de * east_deg, y + dn * north_deg, alt)
            calls += 1
            if contact.agl_m < 0.0:  # compressed: spring along the surface normal's up part
                force += (-k * contact.agl_m - c * vz) * contact.normal_enu[2] / len(wheels)
        vz += force * dt_s
        alt += vz * dt_s
    last = ground.get_agl_level(x, y, alt)
    return {"alt_m": alt, "agl_m": last.agl_m, "vz_mps": vz, "surface_m": last.surface_m,
            "is_water": last.is_water, "normal_enu": last.normal_enu, "normal_world": last.normal_world,
            "callback_calls": calls}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=None, help="a running server (default: start a plane-world one here)")
    p.add_argument("--at", default="-3000000,0", help="X,Y of the drop (plane m / earth deg)")
    p.add_argument("--steps", type=int, default=400)
    args = p.parse_args(argv)
    x, y = (float(v) for v in args.at.split(","))
    server = None
    if args.url is None:
        from streaming.cli.compose import build_server  # the generator: needs the `generator` extra

        server = LocalServer(build_server("plane", 0, "fractal"))
    try:
        with GroundClient(args.url or server.url) as g:
            g.prefetch((x, y), radius_m=50.0)  # before the step: the inner loop never waits
            out = drop_test(WorldstreamGround(g), x, y, args.steps)
    finally:
        if server is not None:
            server.close()
    print(f"settled at alt {out['alt_m']:.3f} m over {'water' if out['is_water'] else 'ground'} at "
          f"{out['surface_m']:.3f} m (agl {out['agl_m']:.3f} m, vz {out['vz_mps']:.3f} m/s) after "
          f"{out['callback_calls']} callback calls; normal enu {np.round(out['normal_enu'], 4).tolist()}, "
          f"world {np.round(out['normal_world'], 4).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
