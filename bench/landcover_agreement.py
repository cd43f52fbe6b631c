"""Land-cover agreement with MODIS (IGBP 2019, 0.05 deg) on earth, and the class field's cost.

For every MODIS land cell (IGBP 1..16) whose 0.05 deg square lies inside one of the
given tiles, the majority class group of the tile's samples in the square
(:data:`generator.landcover.CLASS_TO_GROUP`; water counts as its own group) is
compared with the cell's group (:data:`generator.anchors.context.IGBP_TO_GROUP`).

    python -m bench.landcover_agreement [--level 7] [--block 1] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from runtime.tiles import T, TileKey, spacing_deg

# level-7 tiles (1.41 deg) over Paris, the Amazon, the Sahel, Siberia, the US Midwest, India,
# central Australia, the Alps, Tokyo, the Nile delta
TILES_L7 = [(7, 129, 29), (7, 85, 66), (7, 142, 56), (7, 199, 21), (7, 64, 35), (7, 183, 48),
            (7, 224, 81), (7, 133, 31), (7, 227, 38), (7, 150, 42)]


def tile_agreement(pyramid, key: TileKey, modis: np.ndarray) -> tuple[int, int, float]:
    """(agreeing cells, MODIS land cells, seconds for the class field) of one earth tile."""
    from generator.anchors.context import IGBP_TO_GROUP
    from generator.landcover import CLASS_TO_GROUP, tile_landcover

    f = pyramid.tile(key)
    t0 = time.perf_counter()
    lc = tile_landcover(pyramid, key, f.height)
    dt = time.perf_counter() - t0
    d = spacing_deg(key.level)
    lat = 90.0 - (key.y * T + np.arange(T + 1)) * d
    lon = -180.0 + (key.x * T + np.arange(T + 1)) * d
    ci = np.floor((90.0 - lat) / 0.05).astype(np.int64)  # MODIS row of each sample row
    cj = np.floor((lon + 180.0) / 0.05).astype(np.int64)
    grp = CLASS_TO_GROUP[lc].astype(np.int64) + 1  # 0 water, 1.. groups
    agree = total = 0
    for i in np.unique(ci)[1:-1]:  # skip the partly covered border cells
        rs = ci == i
        for j in np.unique(cj)[1:-1]:
            want = int(IGBP_TO_GROUP[modis[i, j % modis.shape[1]]])
            if want < 0:
                continue
            votes = np.bincount(grp[rs][:, cj == j].ravel(), minlength=8)
            total += 1
            agree += int(votes.argmax() == want + 1)
    return agree, total, dt


def agreement(tiles=TILES_L7, seed: int = 0, verbose: bool = False) -> tuple[float, int]:
    """(share of MODIS land cells whose majority group agrees, number of cells) over ``tiles``."""
    from generator.anchors.context import EarthContext
    from generator.pyramid import open_world

    pyr = open_world("earth", seed)
    modis = EarthContext.shared().modis
    agree = total = 0
    for lvl, x, y in tiles:
        a, n, dt = tile_agreement(pyr, TileKey(lvl, x, y), modis)
        agree, total = agree + a, total + n
        if verbose:
            print(f"tile {lvl}/{x}/{y}: {a}/{n} = {a / max(n, 1):.3f}, class field {dt * 1e3:.0f} ms")
    return agree / max(total, 1), total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", type=int, default=7, help="tile level (7: 1.41 deg tiles, 9 samples per cell)")
    ap.add_argument("--quick", action="store_true", help="first three tiles only")
    ap.add_argument("--block", type=int, default=1, help="block x block tiles per place (deeper levels)")
    a = ap.parse_args(argv)
    shift = a.level - 7
    if shift < 0:
        raise SystemExit("--level must be >= 7")
    tiles = [(a.level, (x << shift) + i, (y << shift) + j) for _, x, y in TILES_L7
             for i in range(a.block) for j in range(a.block)]
    if a.quick:
        tiles = tiles[: 3 * a.block * a.block]
    share, n = agreement(tiles, verbose=True)
    print(f"agreement with MODIS: {share:.3f} of {n} land cells at level {a.level}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
