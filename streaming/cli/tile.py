"""``worldstream tile``: one tile's fields to an .npz."""

from __future__ import annotations

import sys
from pathlib import Path

import streaming.cli.args as A
from runtime.tiles import MAX_LEVEL, TileKey, World, validate_key
from streaming.cli.compose import open_world


def cmd_tile(args) -> int:
    """Write ``height`` ((T+1, T+1) float32 metres), ``rgb`` ((T+1, T+1, 3) float32 in [0, 1]),
    ``level``, ``x``, ``y`` and ``model`` of one tile, plus the land cover and features of
    ``generator.features.contract_fields`` (docs/LANDCOVER.md)."""
    import numpy as np

    key = TileKey(args.level, args.x, args.y)
    try:
        validate_key(args.world, key)
    except ValueError as exc:
        print(f"worldstream tile: error: {exc}", file=sys.stderr)
        return 2
    pyr = open_world(args.world, args.seed, args.refiner)
    f = pyr.tile(key)
    out = {"height": f.height, "level": np.int64(key.level), "x": np.int64(key.x), "y": np.int64(key.y),
           "model": np.array(f.model)}
    if f.rgb is not None:
        out["rgb"] = f.rgb
    from generator.features import contract_fields  # land cover, scene colour, NIR, features

    out.update(contract_fields(pyr, key, f.height, f.rgb))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    print(f"wrote {path}: tile {key} of {args.world.value} seed {args.seed}, model {f.model}, "
          f"height {float(f.height.min()):.1f}..{float(f.height.max()):.1f} m")
    return 0


def register(sub) -> None:
    sp = sub.add_parser("tile", help="write one tile's fields to an .npz")
    A.world_args(sp, World.PLANE)
    sp.add_argument("--level", type=A.int_in(0, MAX_LEVEL, "level"), required=True)
    sp.add_argument("--x", type=A.int_in(-(2**62), 2**62, "x"), required=True)
    sp.add_argument("--y", type=A.int_in(-(2**62), 2**62, "y"), required=True)
    sp.add_argument("--out", required=True, help="output .npz path")
    sp.set_defaults(func=cmd_tile)
