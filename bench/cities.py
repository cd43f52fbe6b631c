"""Cities on earth and on the plane: class shares, buildings (built-up share, heights), trees, and
the CPU cost of the land-cover field and of the features (buildings, trees, streets) per tile.

    python -m bench.cities [--level 15] [--block 2] [--quick]

For each place, ``block`` x ``block`` tiles of ``level`` starting at the tile that holds the
point (level 15, 2 x 2: the 1.2 km square under a camera 300 m above the ground); times are
``time.process_time`` per tile (the tile's heights already computed). Every footprint is checked
against the tile's samples under it: any water sample, and the slope of the least-squares plane
through its heights (the building's site) over 30 deg. ``REFERENCE`` holds approximate literature
values for the density class of each place (see docs/LANDCOVER.md), printed beside the result,
and the data behind the density at the block's corner (``generator.urban``: core depth, metro
factor m, density d).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from runtime.tiles import T, TileKey, World, spacing_deg, spacing_m

PLACES = {"Paris": (48.857, 2.352), "Tokyo": (35.690, 139.692), "New York": (40.758, -73.985),
          "Cairo": (30.044, 31.236), "Sao Paulo": (-23.550, -46.633)}
PLANE_CITY_L13 = (-1520, 64)
REFERENCE = {  # place -> (built-up share range, typical height range m, what the figures describe)
    "plane city": (None, None, "synthetic: no reference"),
    "Paris": ((0.45, 0.55), (18.0, 25.0), "Haussmann blocks: 6-7 storeys under a 20-25 m cornice limit"),
    "Tokyo": ((0.35, 0.50), (7.0, 15.0), "ward-area mix: mostly 2-4 storeys, towers in Shinjuku"),
    "New York": ((0.45, 0.60), (30.0, 80.0), "midtown Manhattan: lots nearly fully built, 10-25 storeys"),
    "Cairo": ((0.50, 0.70), (15.0, 35.0), "downtown and informal areas: 5-12 storeys, little open space"),
    "Sao Paulo": ((0.40, 0.55), (10.0, 40.0), "centro: mid- and high-rise blocks among 2-storey houses"),
}  # tile (x, y) of a plane-world (seed 0) city core at level 13


def earth_key(lat: float, lon: float, level: int) -> TileKey:
    span = T * spacing_deg(level)
    return TileKey(level, int((lon + 180.0) // span), int((90.0 - lat) // span))


def footprint_checks(world_value: str, key: TileKey, b: np.ndarray, h: np.ndarray, lc: np.ndarray) -> tuple:
    """(water (N,) bool: any sample under the footprint is water, site slope (N,) deg: the
    least-squares plane through the heights under it) for buildings b (N, 5) of a tile."""
    from generator.features import _metres_per_sample
    from generator.landcover import WATER

    water = np.zeros(len(b), bool)
    slope = np.zeros(len(b))
    e_m, n_m = _metres_per_sample(World.parse(world_value), key.level, key.y * T - b[:, 1] / spacing_m(key.level))
    for i, (e, n, w, d, _) in enumerate(b.astype(np.float64)):
        c0, c1 = int(np.ceil((e - w / 2) / e_m[i])), int(np.floor((e + w / 2) / e_m[i]))
        r0, r1 = int(np.ceil((-n - d / 2) / n_m)), int(np.floor((-n + d / 2) / n_m))
        c0, c1, r0, r1 = max(c0, 0), min(c1, T), max(r0, 0), min(r1, T)
        if c1 < c0 or r1 < r0:
            continue
        water[i] = (lc[r0 : r1 + 1, c0 : c1 + 1] == WATER).any()
        if c1 > c0 and r1 > r0:
            rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
            A = np.stack([cc.ravel() * e_m[i], -rr.ravel() * n_m, np.ones(rr.size)], axis=1)
            g = np.linalg.lstsq(A, h[r0 : r1 + 1, c0 : c1 + 1].ravel().astype(np.float64), rcond=None)[0]
            slope[i] = np.degrees(np.arctan(np.hypot(g[0], g[1])))
    return water, slope


def measure(pyramid, keys: list[TileKey]) -> dict:
    from generator.features import buildings, roads, trees
    from generator.landcover import CLASS_NAMES, URBAN, tile_landcover

    area = built = 0.0
    heights, n_trees, t_lc, t_feat, water_hits, n_roads, slopes = [], 0, [], [], 0, 0, []
    urban = 0.0
    for key in keys:
        h = pyramid.tile(key).height
        t0 = time.process_time()
        lc = tile_landcover(pyramid, key, h)
        t1 = time.process_time()
        b = buildings(pyramid.world, pyramid.seed, key, h, lc)
        tr = trees(pyramid.world, pyramid.seed, key, lc, h)
        n_roads += len(roads(pyramid.world, pyramid.seed, key, lc))
        t2 = time.process_time()
        t_lc.append(t1 - t0)
        t_feat.append(t2 - t1)
        lat = 90.0 - (key.y * T + T / 2) * spacing_deg(key.level) if pyramid.world.value == "earth" else 0.0
        s = spacing_m(key.level)
        area += (T * s) ** 2 * np.cos(np.radians(lat))
        built += float((b[:, 2] * b[:, 3]).sum())
        heights.append(b[:, 4])
        n_trees += len(tr)
        urban += float((lc == URBAN).mean())
        wet, slope = footprint_checks(pyramid.world.value, key, b, h, lc)
        water_hits += int(wet.sum())
        slopes.append(slope)
    hs = np.concatenate(heights) if heights else np.zeros(0)
    sl = np.concatenate(slopes) if slopes else np.zeros(0)
    return {"tiles": len(keys), "urban_share": urban / len(keys), "built_share": built / area,
            "buildings": int(hs.size), "height_p10_p50_p90": np.percentile(hs, [10, 50, 90]).round(1).tolist()
            if hs.size else [], "trees": n_trees, "roads": n_roads, "water_under_buildings": water_hits,
            "site_slope_max_deg": float(sl.max()) if sl.size else 0.0, "steep_sites": int((sl > 30.0).sum()),
            "landcover_ms": 1e3 * float(np.median(t_lc)), "features_ms": 1e3 * float(np.median(t_feat)),
            "features_ms_max": 1e3 * float(np.max(t_feat)), "classes": CLASS_NAMES, **_intensity(pyramid, keys)}


def _intensity(pyramid, keys: list[TileKey]) -> dict:
    """The data behind the density (``generator.features.urban_intensity``) at the block's
    north-west corner: core depth km, metro factor m and density d (earth; plane: d, m = 0)."""
    from generator.features import urban_intensity
    from generator.landcover import axis_locations

    k = keys[0]
    x, y = axis_locations(pyramid.world, k.level, np.array([k.y * T]), np.array([k.x * T]))
    d, m = urban_intensity(pyramid.world, pyramid.seed, x, y)
    out = {"density": round(float(d[0]), 3), "metro": round(float(m[0]), 3)}
    if pyramid.world is World.EARTH:
        from generator.urban import core_depth_km

        out["core_depth_km"] = round(float(core_depth_km(y, x)[0]), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    from generator.pyramid import open_world

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", type=int, default=15)
    ap.add_argument("--block", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="Paris and the plane city only")
    a = ap.parse_args(argv)
    rows = []
    plane = open_world("plane", 0, refiner="fractal")
    sh = a.level - 13
    k0 = TileKey(a.level, PLANE_CITY_L13[0] << sh, PLANE_CITY_L13[1] << sh)
    rows.append(("plane city", measure(plane, [TileKey(a.level, k0.x + i, k0.y + j)
                                               for i in range(a.block) for j in range(a.block)])))
    earth = open_world("earth", 0, refiner="fractal")
    for name, (lat, lon) in list(PLACES.items())[: 1 if a.quick else None]:
        k0 = earth_key(lat, lon, a.level)
        rows.append((name, measure(earth, [TileKey(a.level, k0.x + i, k0.y + j)
                                           for i in range(a.block) for j in range(a.block)])))
    print(f"level {a.level} ({T * spacing_m(a.level):.0f} m tiles at the equator), {a.block}x{a.block} tiles per place")
    print("| place | core depth km / m / d | urban share | built-up share (ref.) | buildings | "
          "height p10/p50/p90 m (ref. typical) | trees | street segments | buildings on water | "
          "sites > 30 deg (max deg) | land cover ms | features ms (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in rows:
        share_ref, h_ref, _ = REFERENCE[name]
        sr = f" ({share_ref[0]:.2f}-{share_ref[1]:.2f})" if share_ref else ""
        hr = f" ({h_ref[0]:.0f}-{h_ref[1]:.0f})" if h_ref else ""
        print(f"| {name} | {m.get('core_depth_km', '-')} / {m['metro']:.2f} / {m['density']:.2f} | "
              f"{m['urban_share']:.2f} | {m['built_share']:.2f}{sr} | {m['buildings']} | "
              f"{'/'.join(str(v) for v in m['height_p10_p50_p90'])}{hr} | {m['trees']} | {m['roads']} | "
              f"{m['water_under_buildings']} | {m['steep_sites']} ({m['site_slope_max_deg']:.1f}) | "
              f"{m['landcover_ms']:.1f} | {m['features_ms']:.1f} ({m['features_ms_max']:.1f}) |")
    print(json.dumps({"bench": "cities", "level": a.level, "block": a.block,
                      "rows": {name: {k: v for k, v in m.items() if k != "classes"} for name, m in rows}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
