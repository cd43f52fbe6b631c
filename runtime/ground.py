"""Ground truth for simulators: the fixed query level, the water rule and the frames.

Pure (numpy only), shared by ``worldstream height`` (streaming/cli/height.py), the
simulator client (streaming/sim.py) and their tests, so they state one rule each:

- ``DEFAULT_LEVEL``: the level a simulator query uses when none is given. A fixed number,
  never "whatever is loaded": the answer then depends only on (world, seed, model, point,
  level) (docs/SIMULATOR.md).
- ``water_at``: which points are under water and where its surface is. The ONE place of
  the rule; the real land/water context (generator/anchors) replaces its inside.
- ``enu_to_ecef``: height-query normals are east-north-up; sensor normals are world
  (ECEF on the earth); this converts the first into the second.
"""

from __future__ import annotations

import numpy as np

from runtime.tiles import ANCHOR_LEVEL, World

DEFAULT_LEVEL = 16
"""Default query level: the finest whose sample spacing is at least 1 m (1.19 m; 0.60 m at 17)."""

SEA_LEVEL_M = 0.0
"""Height of the sea surface (m above the datum; earth: the ellipsoid, as every height here)."""

WATER_CONTEXT_LEVEL = ANCHOR_LEVEL
"""Level whose heights say where the world is ocean (anchor data on earth, the continent
generator on the plane: their sea is < 0 m, their land > 0 m; generator/anchors)."""


def water_at(world: World | str, ground_m, context_m, lake_m=None) -> tuple[np.ndarray, np.ndarray]:
    """Water surface and water flag of points.

    world: ``plane`` or ``earth``; ground_m: (n,) float64 bare-earth height at the query
    level; context_m: (n,) float64 height of the ``WATER_CONTEXT_LEVEL`` field at the same
    points (bilinear on its grid); lake_m: None or (n,) float64 surface of the inland water
    at the points, NaN where there is none (earth: ``generator.water.earth_lake_surface``,
    handed in by the composition root; the generator makes the ground there that surface).

    Rule: a point in a lake is water at the lake's surface (which may be below sea level:
    the Caspian, the Dead Sea). Elsewhere a point is sea where the anchor field is at or
    below sea level (``context_m <= 0``) and the ground there lies below the sea surface;
    its water surface is ``SEA_LEVEL_M``. Land below sea level (the anchor says land) is
    dry; an islet finer than the anchor (ground above 0 m at sea) is dry. Rivers are not
    water yet.

    Returns water_m (n,) float64 (NaN where dry) and is_water (n,) bool.
    """
    World.parse(world)  # validates; the rule is the same on both worlds for now
    g = np.asarray(ground_m, np.float64).reshape(-1)
    ctx = np.asarray(context_m, np.float64).reshape(-1)
    if g.shape != ctx.shape:
        raise ValueError(f"ground_m and context_m must have the same length, got {g.shape} and {ctx.shape}")
    is_water = (ctx <= SEA_LEVEL_M) & (g < SEA_LEVEL_M)
    water_m = np.where(is_water, SEA_LEVEL_M, np.nan)
    if lake_m is not None:
        lake = np.asarray(lake_m, np.float64).reshape(-1)
        if lake.shape != g.shape:
            raise ValueError(f"lake_m must have one value per point ({g.shape}), got {lake.shape}")
        in_lake = np.isfinite(lake)
        is_water = is_water | in_lake
        water_m = np.where(in_lake, lake, water_m)
    return water_m, is_water


def enu_to_ecef(world: World | str, points, vectors_enu) -> np.ndarray:
    """East-north-up vectors at points -> world-frame vectors, (n, 3) float64.

    points (n, 2): earth (lon, lat) degrees, plane (east, north) metres; vectors_enu (n, 3).
    Earth: v_ecef = e * E + n * N + u * U with, at geodetic lon lambda, lat phi,
    E = (-sin lambda, cos lambda, 0), N = (-sin phi cos lambda, -sin phi sin lambda, cos phi),
    U = (cos phi cos lambda, cos phi sin lambda, sin phi). Plane: the world frame is
    already x east, y north, z up (identity).
    """
    w = World.parse(world)
    p = np.asarray(points, np.float64).reshape(-1, 2)
    v = np.asarray(vectors_enu, np.float64).reshape(-1, 3)
    if len(p) != len(v):
        raise ValueError(f"need one vector per point, got {len(p)} points and {len(v)} vectors")
    if w is World.PLANE:
        return v.copy()
    lam, phi = np.radians(p[:, 0]), np.radians(p[:, 1])
    sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
    e = np.stack([-sl, cl, np.zeros_like(sl)], 1)
    n = np.stack([-sp * cl, -sp * sl, cp], 1)
    u = np.stack([cp * cl, cp * sl, sp], 1)
    return v[:, :1] * e + v[:, 1:2] * n + v[:, 2:3] * u

