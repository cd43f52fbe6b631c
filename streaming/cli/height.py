"""``worldstream height``: ground truth at points, for scripts and checks.

Opens the pyramid locally (like ``tile``; no server) and prints, per point, the bare-earth
height, the water-surface height (or null), the water flag and the east-north-up normal at
one fixed level (default ``runtime.ground.DEFAULT_LEVEL``). Heights and normals come from
``streaming.heights.heights_at``, the function the server's height queries use, so this
command and a server of the same (world, seed, model) agree exactly.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

import streaming.cli.args as A
from runtime.ground import DEFAULT_LEVEL, WATER_CONTEXT_LEVEL, water_at
from runtime.tiles import MAX_LEVEL, World
from streaming.cli.compose import open_world


def ground_query(world: World | str, tiles, points, level: int = DEFAULT_LEVEL) -> dict[str, np.ndarray]:
    """Ground truth at ``points`` from a tile source.

    tiles: list of TileKey -> list of fields with ``.height`` (T+1, T+1) metres (a pyramid's
    ``tiles``); points (n, 2) float64: plane (east, north) metres, earth (lon, lat) degrees.
    Returns ``ground_m`` (n,) float64, ``water_m`` (n,) float64 (NaN where dry),
    ``is_water`` (n,) bool, ``normal_enu`` (n, 3) float64 unit (east, north, up), ``level`` int.
    """
    from streaming.heights import heights_at, keys_at

    w = World.parse(world)
    pts = np.asarray(points, np.float64).reshape(-1, 2)

    def field(lv: int):
        keys = sorted(set(keys_at(w, lv, pts)))
        grids = {k: np.asarray(f.height, np.float32) for k, f in zip(keys, tiles(keys), strict=True)}
        return heights_at(w, lv, pts, grids)

    ground_m, normal = field(level)
    context_m, _ = field(WATER_CONTEXT_LEVEL)
    water_m, is_water = water_at(w, ground_m, context_m)
    return {"ground_m": ground_m, "water_m": water_m, "is_water": is_water, "normal_enu": normal,
            "level": int(level)}


def parse_points(text: str) -> np.ndarray:
    """``X,Y[;X,Y...]`` -> (n, 2) float64 (finite numbers, at most 4096 points)."""
    try:
        pts = [tuple(float(v) for v in item.split(",")) for item in text.split(";") if item.strip()]
        if not pts or len(pts) > 4096 or any(len(p) != 2 or not all(math.isfinite(v) for v in p) for p in pts):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--at must be X,Y[;X,Y...] (1..4096 points of two finite numbers: plane east,north metres, "
            f"earth lon,lat degrees), got {text!r}") from None
    return np.array(pts, np.float64)


def check_points(world: World, pts: np.ndarray) -> None:
    """Earth points must be lon in [-180, 180], lat in [-90, 90] (ValueError otherwise)."""
    if world is World.EARTH:
        bad = (np.abs(pts[:, 0]) > 180.0) | (np.abs(pts[:, 1]) > 90.0)
        if bad.any():
            raise ValueError(f"earth points are LON,LAT with lon in [-180, 180] and lat in [-90, 90], "
                             f"got {pts[bad][0].tolist()}")
    elif (np.abs(pts) > 1e12).any():
        raise ValueError("plane points must be east,north metres below 1e12 in magnitude")


def answer_rows(points: np.ndarray, ans: dict) -> list[dict]:
    """One JSON-ready dict per point (``water_m`` None where dry)."""
    rows = []
    for i, p in enumerate(points):
        wm = float(ans["water_m"][i])
        rows.append({"at": [float(p[0]), float(p[1])], "ground_m": float(ans["ground_m"][i]),
                     "water_m": None if math.isnan(wm) else wm, "is_water": bool(ans["is_water"][i]),
                     "normal_enu": [float(v) for v in ans["normal_enu"][i]], "level": ans["level"]})
    return rows


def cmd_height(args) -> int:
    check_points(args.world, args.at)
    pyr = open_world(args.world, args.seed, args.refiner)
    ans = ground_query(args.world, pyr.tiles, args.at, args.level)
    for row in answer_rows(args.at, ans):
        if args.json:
            print(json.dumps(row))
            continue
        x, y = row["at"]
        water = "null" if row["water_m"] is None else f"{row['water_m']:.3f}"
        e, n, u = row["normal_enu"]
        print(f"{x:.9g},{y:.9g}  ground_m={row['ground_m']:.3f}  water_m={water}  "
              f"is_water={'true' if row['is_water'] else 'false'}  normal_enu=({e:.5f}, {n:.5f}, {u:.5f})  "
              f"level={row['level']}")
    return 0


def register(sub) -> None:
    sp = sub.add_parser(
        "height", help="ground height, water and normal at points (local pyramid, no server)",
        description="Per point: bare-earth height (m), water-surface height (m) or null, water flag and "
                    "the unit normal in east-north-up, at one fixed level. Earth heights are above the "
                    "WGS84 ellipsoid. See docs/SIMULATOR.md.")
    A.world_args(sp, World.PLANE)
    sp.add_argument("--at", type=parse_points, required=True,
                    help="X,Y[;X,Y...]: plane east,north metres; earth lon,lat degrees")
    sp.add_argument("--level", type=A.int_in(0, MAX_LEVEL, "level"), default=DEFAULT_LEVEL,
                    help=f"query level (default {DEFAULT_LEVEL}: the finest with spacing >= 1 m)")
    sp.add_argument("--json", action="store_true",
                    help="one JSON object per line: at, ground_m, water_m, is_water, normal_enu, level")
    sp.set_defaults(func=cmd_height)
