"""Cities on earth and on the plane: class shares, buildings (built-up share, heights), trees, and
the CPU cost of the land-cover field and of the features (buildings, trees, streets) per tile.

    python -m bench.cities [--level 15] [--block 2] [--quick]

For each place, ``block`` x ``block`` tiles of ``level`` starting at the tile that holds the
point; times are ``time.process_time`` per tile (the tile's heights already computed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from runtime.tiles import T, TileKey, spacing_deg, spacing_m

PLACES = {"Paris": (48.857, 2.352), "Tokyo": (35.690, 139.692), "New York": (40.758, -73.985),
          "Cairo": (30.044, 31.236), "Sao Paulo": (-23.550, -46.633)}
PLANE_CITY_L13 = (-1520, 64)  # tile (x, y) of a plane-world (seed 0) city core at level 13


def earth_key(lat: float, lon: float, level: int) -> TileKey:
    span = T * spacing_deg(level)
    return TileKey(level, int((lon + 180.0) // span), int((90.0 - lat) // span))


def measure(pyramid, keys: list[TileKey]) -> dict:
    from generator.features import buildings, roads, trees
    from generator.landcover import CLASS_NAMES, URBAN, WATER, tile_landcover

    area = built = 0.0
    heights, n_trees, t_lc, t_feat, water_hits, n_roads = [], 0, [], [], 0, 0
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
        # water under a footprint centre (nearest sample)
        if len(b):
            e_m = s * np.cos(np.radians(lat)) if pyramid.world.value == "earth" else s
            r = np.clip(np.round(-b[:, 1] / s).astype(int), 0, T)
            c = np.clip(np.round(b[:, 0] / e_m).astype(int), 0, T)
            water_hits += int((lc[r, c] == WATER).sum())
    hs = np.concatenate(heights) if heights else np.zeros(0)
    return {"tiles": len(keys), "urban_share": urban / len(keys), "built_share": built / area,
            "buildings": int(hs.size), "height_p10_p50_p90": np.percentile(hs, [10, 50, 90]).round(1).tolist()
            if hs.size else [], "trees": n_trees, "roads": n_roads, "water_under_buildings": water_hits,
            "landcover_ms": 1e3 * float(np.median(t_lc)), "features_ms": 1e3 * float(np.median(t_feat)),
            "features_ms_max": 1e3 * float(np.max(t_feat)), "classes": CLASS_NAMES}


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
    earth = open_world("earth", 0)
    for name, (lat, lon) in list(PLACES.items())[: 1 if a.quick else None]:
        k0 = earth_key(lat, lon, a.level)
        rows.append((name, measure(earth, [TileKey(a.level, k0.x + i, k0.y + j)
                                           for i in range(a.block) for j in range(a.block)])))
    print(f"level {a.level} ({T * spacing_m(a.level):.0f} m tiles at the equator), {a.block}x{a.block} tiles per place")
    print("| place | urban share | built-up share | buildings | height p10/p50/p90 m | trees | street segments | "
          "buildings on water | land cover ms | features ms (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {m['urban_share']:.2f} | {m['built_share']:.2f} | {m['buildings']} | "
              f"{'/'.join(str(v) for v in m['height_p10_p50_p90'])} | {m['trees']} | {m['roads']} | "
              f"{m['water_under_buildings']} | "
              f"{m['landcover_ms']:.0f} | {m['features_ms']:.1f} ({m['features_ms_max']:.1f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
