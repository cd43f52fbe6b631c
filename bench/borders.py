"""Tile-border shading as a Cesium user sees it, without a browser: for 3 x 3 blocks of
earth tiles (seed 0, fractal), the served path (pyramid -> ``encode_fields`` wire frame ->
``ecosystem.terrain_bytes`` stitched with the block's neighbours, oct normals) decoded
with the independent ``quantized-mesh-tile`` reader, then the page test's measures
(``tests/streaming/eco_shade.py``): max shared-edge normal angle and the low-sun
hillshade's border contrast against the in-tile lines (the page test wants <= 1.25).
Also the same block converted alone (the along-edge rule) and the data's own hillshade
(every sample a vertex, normals from the full grid) for reference.

``--errors``: per level, the error CesiumJS's terrain provider assumes
(``getLevelMaximumGeometricError``: a 65-sample heightmap per tile, 2 level-0 tiles:
2 pi a 0.25 / (65 x 2) / 2^L), our mesh bound (``level_error_m``: 0.25 x our 257-sample
spacing, exactly 65/256 of it) and the true error of the tile holding each place as the
Cesium formats carry it (``ecosystem.cesium_tile``: at some levels meshed to CesiumJS's
error): the 3D distance from the next level's samples to the served TIN, chord sag
included (``curvature.geometric_error_3d_m``, as the page test measures it).

Usage: PYTHONPATH=. python bench/borders.py [--views himalaya7,alps10,...] [--errors 0..16]
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "streaming"))

from eco_shade import border_contrast_ratio, decode_terrain, edge_normal_angles_deg, hillshade  # noqa: E402

from runtime.tiles import T, TileKey, World, spacing_deg  # noqa: E402

VIEWS = {
    # name: (level, lon, lat): the block is centred on the tile holding (lon, lat)
    "himalaya7": (7, 86.9, 27.95),
    "alps10": (10, 7.7, 45.9),  # tests/streaming/test_http.py's block
    "himalaya12": (12, 86.9, 27.95),
    "himalaya16": (16, 86.9, 27.95),
    "himalaya16b": (16, 86.9005, 27.9039),  # the page test's deepest Himalaya block
    "alps16": (16, 7.75, 45.85),
}


def centre_key(level: int, lon: float, lat: float) -> TileKey:
    d = spacing_deg(level) * T
    return TileKey(level, int((lon + 180.0) // d), int((90.0 - lat) // d))


def measure(pyr, level: int, lon: float, lat: float) -> dict:
    from streaming import ecosystem as E
    from streaming.tileservice import encode_fields, tile_frame

    c = centre_key(level, lon, lat)
    keys = [TileKey(level, c.x + dx, c.y + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    fields = dict(zip(keys, pyr.tiles(keys)))
    t0 = time.process_time()
    frames = {k: tile_frame(k, encode_fields(World.EARTH, k, f)) for k, f in fields.items()}
    encode_ms = (time.process_time() - t0) * 1000 / len(keys)
    served, alone, nbytes = {}, {}, []
    t0 = time.process_time()
    for k, fr in frames.items():
        body = E.terrain_bytes(fr, ("octvertexnormals",), neighbours=[frames[o] for o in frames if o != k])
        nbytes.append(len(body))
        served[k] = decode_terrain(body, k)
    convert_ms = (time.process_time() - t0) * 1000 / len(keys)
    for k, fr in frames.items():
        alone[k] = decode_terrain(E.terrain_bytes(fr, ("octvertexnormals",)), k)
    angles = edge_normal_angles_deg(served)
    b, i, ratio = border_contrast_ratio(hillshade(served)[0])
    ratio_alone = border_contrast_ratio(hillshade(alone)[0])[2]
    return {
        "centre": str(c), "edge_normal_max_deg": round(float(angles.max()), 3),
        "border_contrast": round(b, 5), "in_tile_contrast": round(i, 5), "ratio": round(ratio, 3),
        "ratio_alone": round(ratio_alone, 3), "vertices_mean": int(np.mean([len(v[0]) for v in served.values()])),
        "frame_bytes_mean": int(np.mean([len(f) for f in frames.values()])),
        "terrain_bytes_mean": int(np.mean(nbytes)), "encode_ms": round(encode_ms, 1),
        "stitched_terrain_ms": round(convert_ms, 1),
    }


PLACES = {"alps": (7.75, 45.85), "himalaya": (86.9, 27.9)}
"""The page test's border views (Mont Blanc massif, Everest)."""
CESIUM_LEVEL0_ERROR_M = 6378137.0 * 2 * np.pi * 0.25 / (65 * 2)
"""CesiumTerrainProvider's level-0 error for any layer.json (its heightmapWidth is 65)."""


def level_errors(pyr, levels: range) -> dict:
    """{level: {place: true error m, 'bound': m, 'cesium': m}} (see ``--errors``)."""
    from runtime.tiles import level_error_m
    from runtime.tin.curvature import geometric_error_3d_m
    from runtime.tin.simplify import children_grid
    from streaming import ecosystem as E
    from streaming.tileservice import encode_fields, tile_frame

    out = {}
    for level in levels:
        row = {"bound": round(level_error_m(level), 2), "cesium": round(CESIUM_LEVEL0_ERROR_M / 2**level, 2)}
        for name, (lon, lat) in PLACES.items():
            k = centre_key(level, lon, lat)
            tile = E.cesium_tile(E.frame_tile(tile_frame(k, encode_fields(World.EARTH, k, pyr.tile(k)))))
            kids = pyr.tiles([TileKey(level + 1, 2 * k.x + dx, 2 * k.y + dy) for dy in (0, 1) for dx in (0, 1)])
            row[name] = round(geometric_error_3d_m(World.EARTH, k, tile.grid_rc, tile.faces,
                                                   children_grid(*[f.height for f in kids]), tile.height_m), 2)
        out[level] = row
        print(level, row, {n: round(row["cesium"] / row[n], 2) for n in PLACES}, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", default=",".join(VIEWS))
    ap.add_argument("--errors", default=None, help="levels A..B: the per-level error table instead")
    args = ap.parse_args()
    from generator.pyramid import open_world

    pyr = open_world("earth", 0, refiner="fractal")
    if args.errors:
        a, b = (int(x) for x in args.errors.split(".."))
        print(json.dumps(level_errors(pyr, range(a, b + 1))))
        return
    out = {}
    for name in args.views.split(","):
        out[name] = measure(pyr, *VIEWS[name])
        print(name, out[name], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
