"""``worldstream height``: ground truth at points, for scripts and checks.

Opens the pyramid locally (like ``tile``; no server) and prints, per point, the bare-earth
height, the water-surface height (or null), the water flag and the east-north-up normal at
one fixed level (default ``runtime.ground.DEFAULT_LEVEL``). Heights and normals come from
``streaming.heights.heights_at``, the function the server's height queries use, so this
command and a server of the same (world, seed, model) agree exactly. ``--surface
buildings`` adds the surface with buildings (``height_m``: a roof inside a footprint, the
bare earth elsewhere; ``on_building``), from ``streaming.heights.building_surface`` as the
server's ``surface: "buildings"`` queries; ``ground_m`` stays the bare earth.
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


def ground_query(world: World | str, tiles, points, level: int = DEFAULT_LEVEL, surface: str = "bare",
                 buildings=None, lakes=None) -> dict[str, np.ndarray]:
    """Ground truth at ``points`` from a tile source.

    tiles: list of TileKey -> list of fields with ``.height`` (T+1, T+1) metres (a pyramid's
    ``tiles``); points (n, 2) float64: plane (east, north) metres, earth (lon, lat) degrees.
    Returns ``ground_m`` (n,) float64, ``water_m`` (n,) float64 (NaN where dry),
    ``is_water`` (n,) bool, ``normal_enu`` (n, 3) float64 unit (east, north, up), ``level`` int.
    ``surface`` "buildings" (``buildings``: a ``streaming.heights.Buildings`` source) adds
    ``height_m`` (n,) float64 (the roof inside a footprint, else the ground) and
    ``on_building`` (n,) bool; the normal on a roof is straight up. ``lakes``: None or the
    world's inland water, points -> surface m or NaN (``runtime.ground.water_at``'s ``lake_m``).
    """
    from streaming.heights import building_surface, check_surface, heights_at, keys_at

    w = World.parse(world)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if check_surface(surface) == "buildings":
        if buildings is None:
            raise ValueError("surface 'buildings' needs a buildings source")
        if level not in buildings.levels:
            raise ValueError(f"--surface buildings answers at a level that carries buildings, "
                             f"{buildings.levels[0]}..{buildings.levels[-1]}, got --level {level}")

    def grids_at(lv: int):
        keys = sorted(set(keys_at(w, lv, pts)))
        return {k: np.asarray(f.height, np.float32) for k, f in zip(keys, tiles(keys), strict=True)}

    grids = grids_at(level)
    ground_m, normal = heights_at(w, level, pts, grids)
    context_m, _ = heights_at(w, WATER_CONTEXT_LEVEL, pts, grids_at(WATER_CONTEXT_LEVEL))
    water_m, is_water = water_at(w, ground_m, context_m, None if lakes is None else lakes(pts))
    out = {"ground_m": ground_m, "water_m": water_m, "is_water": is_water, "normal_enu": normal,
           "level": int(level)}
    if surface == "buildings":
        roof, on = building_surface(w, level, pts, grids, {k: buildings(k, g) for k, g in grids.items()})
        out["height_m"] = np.where(on, roof, ground_m)
        out["on_building"] = on
        out["normal_enu"] = np.where(on[:, None], np.array([0.0, 0.0, 1.0]), normal)
    return out


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
        row = {"at": [float(p[0]), float(p[1])], "ground_m": float(ans["ground_m"][i]),
               "water_m": None if math.isnan(wm) else wm, "is_water": bool(ans["is_water"][i]),
               "normal_enu": [float(v) for v in ans["normal_enu"][i]], "level": ans["level"]}
        if "height_m" in ans:  # surface buildings
            row["height_m"] = float(ans["height_m"][i])
            row["on_building"] = bool(ans["on_building"][i])
        rows.append(row)
    return rows


def cmd_height(args) -> int:
    check_points(args.world, args.at)
    pyr = open_world(args.world, args.seed, args.refiner)
    buildings = None
    if args.surface == "buildings":
        from streaming.cli.compose import building_source

        buildings = building_source(pyr)
    from streaming.cli.compose import lake_source

    ans = ground_query(args.world, pyr.tiles, args.at, args.level, args.surface, buildings, lake_source(args.world))
    for row in answer_rows(args.at, ans):
        if args.json:
            print(json.dumps(row))
            continue
        x, y = row["at"]
        water = "null" if row["water_m"] is None else f"{row['water_m']:.3f}"
        e, n, u = row["normal_enu"]
        extra = ""
        if "height_m" in row:
            extra = f"  height_m={row['height_m']:.3f}  on_building={'true' if row['on_building'] else 'false'}"
        print(f"{x:.9g},{y:.9g}  ground_m={row['ground_m']:.3f}  water_m={water}  "
              f"is_water={'true' if row['is_water'] else 'false'}  normal_enu=({e:.5f}, {n:.5f}, {u:.5f})  "
              f"level={row['level']}{extra}")
    return 0


def register(sub) -> None:
    sp = sub.add_parser(
        "height", help="ground height, water and normal at points (local pyramid, no server)",
        description="Per point: bare-earth height (m), water-surface height (m) or null, water flag and "
                    "the unit normal in east-north-up, at one fixed level; with --surface buildings also "
                    "the height with buildings (roofs). Earth heights are above the WGS84 ellipsoid. "
                    "See docs/SIMULATOR.md.")
    A.world_args(sp, World.PLANE)
    sp.add_argument("--at", type=parse_points, required=True,
                    help="X,Y[;X,Y...]: plane east,north metres; earth lon,lat degrees")
    sp.add_argument("--level", type=A.int_in(0, MAX_LEVEL, "level"), default=DEFAULT_LEVEL,
                    help=f"query level (default {DEFAULT_LEVEL}: the finest with spacing >= 1 m)")
    sp.add_argument("--surface", choices=("bare", "buildings"), default="bare",
                    help="bare: the bare earth (default); buildings: also height_m, the roof inside a building "
                         "footprint (collision) and the ground elsewhere, and on_building")
    sp.add_argument("--json", action="store_true",
                    help="one JSON object per line: at, ground_m, water_m, is_water, normal_enu, level")
    sp.set_defaults(func=cmd_height)
