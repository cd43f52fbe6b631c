"""``worldstream bake`` (a region into the tile store, on Ray) and ``worldstream export``
(a store as static quantized-mesh or 3D Tiles files)."""

from __future__ import annotations

import json
from pathlib import Path

import streaming.cli.args as A
from runtime.tiles import World
from streaming.bake import BBox, bake, export_store, open_store, parse_levels, plan_keys
from streaming.cli.compose import pyramid_opener


def cmd_bake(args) -> int:
    bbox = BBox.parse(args.bbox)
    levels = parse_levels(args.levels)
    keys = plan_keys(args.world, bbox, levels, ancestors=not args.no_ancestors)
    print(f"baking {len(keys)} tiles of {args.world.value} seed {args.seed}, levels {levels[0]}..{levels[1]} "
          f"into {args.store}", flush=True)
    report = bake(args.world, args.seed, keys, args.store, open_pyramid=pyramid_opener(args.refiner, args.features),
                  ray_address=args.ray_address, workers=args.workers, tiles_per_task=args.tiles_per_task,
                  verify=args.verify, use_ray=not args.no_ray)
    print(report.line(), flush=True)
    print(json.dumps({"planned": report.planned, "tiles": report.tiles, "skipped": report.skipped,
                      "bytes": report.bytes, "seconds": round(report.seconds, 3),
                      "tiles_per_s": round(report.tiles_per_s, 2), "startup_s": round(report.startup_s, 3),
                      "steady_tiles_per_s": round(report.steady_tiles_per_s, 2), "workers": report.workers,
                      "gpus": report.gpus}),
          flush=True)
    return 0


def cmd_export(args) -> int:
    store = open_store(args.store, args.world.value if args.world else None, args.seed)
    water = None
    if store.world == "earth":
        from generator.water import earth_water_mask

        water = earth_water_mask
    features = None
    if args.format == "3dtiles" and not args.terrain_only:
        from streaming.cli.compose import feature_source, open_world

        pyr = open_world(store.world, store.seed, args.refiner)
        from generator.layer import layered_model_id

        if store.model not in (pyr.model_id, layered_model_id(pyr.model_id)):
            raise ValueError(f"the store's tiles come from model {store.model!r}, but --refiner "
                             f"{args.refiner or 'auto'} opens {pyr.model_id!r}: pass the store's --refiner, "
                             f"or --terrain-only")
        features = feature_source(pyr)
    report = export_store(store, args.out, args.format, water=water, features=features)
    print(report.line(Path(args.out)), flush=True)
    return 0


def register(sub) -> None:
    sp = sub.add_parser("bake", help="pre-generate a region into the tile store on Ray")
    A.world_args(sp, World.EARTH)
    sp.add_argument("--bbox", type=A.checked(BBox.parse), required=True,
                    help="WEST,SOUTH,EAST,NORTH (earth: degrees; plane: metres east/north)")
    sp.add_argument("--levels", type=A.checked(parse_levels), required=True, help="A..B, inclusive")
    sp.add_argument("--store", required=True, help="tile store folder (shared with serve --store)")
    sp.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local Ray)")
    sp.add_argument("--workers", type=A.int_in(1, 4096, "workers"), default=None,
                    help="CPU workers (default: every CPU Ray has)")
    sp.add_argument("--tiles-per-task", type=A.int_in(1, 4096, "tiles per task"), default=8)
    sp.add_argument("--verify", action="store_true", help="check stored tiles' checksums before skipping them")
    sp.add_argument("--no-ancestors", action="store_true", help="bake only the given levels")
    sp.add_argument("--no-ray", action="store_true", help="bake in this process (no Ray)")
    sp.add_argument("--features", action="store_true",
                    help="bake frames with the feature layer, the store a serve --features server reads")
    sp.set_defaults(func=cmd_bake)

    sp = sub.add_parser("export", help="write a tile store as static quantized-mesh or 3D Tiles files")
    sp.add_argument("--store", required=True)
    sp.add_argument("--format", choices=("quantized-mesh", "3dtiles"), required=True)
    sp.add_argument("--out", required=True, help="output folder (terrain/ + imagery/, or 3dtiles/)")
    sp.add_argument("--world", type=A.world, default=None, help="pick a namespace when the store holds several")
    sp.add_argument("--seed", type=A.int_in(0, A.SEED_MAX, "seed"), default=None)
    sp.add_argument("--refiner", default=None,
                    help="3dtiles: the refiner the store was baked with, to generate its buildings and trees "
                         "(default: best available)")
    sp.add_argument("--terrain-only", action="store_true", help="3dtiles: terrain only (no buildings, no trees)")
    sp.set_defaults(func=cmd_export)
