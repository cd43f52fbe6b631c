"""The generator's subcommands for the ``worldstream`` console script.

``register(subparsers)`` adds ``refine`` and ``eval``; each sets ``func`` to a
handler ``func(args) -> int`` (the exit status). ``python -m generator.commands``
runs them stand-alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generator.paths import default_data_dir


def register(subparsers) -> None:
    """Add ``refine`` and ``eval`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "refine", help="add generated detail to your own DEM",
        description="Refine IN.npz (elev float32 metres, north-up; pixel_m) by K levels: OUT.elev has "
                    "pixel_m / 2^K spacing and OUT.elev[::2^K, ::2^K] == IN.elev.")
    p.add_argument("--input", required=True, type=Path, help="IN.npz with 'elev' (H, W) and 'pixel_m'")
    p.add_argument("--levels", required=True, type=int, help="K: number of halvings of the pixel size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refiner", default="auto-offline",
                   help="fractal, bicubic, learned, or auto-offline (the best available, default)")
    p.add_argument("--out", required=True, type=Path, help="OUT.npz")
    p.set_defaults(func=cmd_refine)

    e = subparsers.add_parser(
        "eval", help="seams, nesting, determinism and realism of the generator",
        description="Check the pyramid's contracts and compare refiners with real DEMs.")
    e.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    e.add_argument("--data", type=Path, default=default_data_dir(),
                   help="data folder with dem/ (default: ../shared/data next to the repository)")
    e.add_argument("--out-dir", type=Path, default=Path("eval_out"), help="where the PNG figure goes")
    e.add_argument("--levels", type=int, default=2, help="decimate by 2^levels and refine back")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--earth", action="store_true",
                   help="also the earth world against located DEMs, GLOBE, summits and inland cities")
    e.set_defaults(func=cmd_eval)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def cmd_refine(args) -> int:
    import numpy as np

    from generator.dem import refine_dem

    if not args.input.exists():
        return _fail(f"input file {args.input} does not exist")
    try:
        with np.load(args.input) as d:
            missing = [k for k in ("elev", "pixel_m") if k not in d.files]
            if missing:
                return _fail(f"{args.input} must hold 'elev' and 'pixel_m'; missing {missing}")
            elev, pixel_m = d["elev"], d["pixel_m"]
        if args.levels < 0 or args.levels > 12:
            return _fail(f"--levels must be in [0, 12], got {args.levels}")
        if elev.ndim == 2 and elev.size * 4**args.levels > 2**31:
            return _fail(f"output would have {elev.size * 4**args.levels} samples; crop the input or use "
                         "fewer levels")
        out, px = refine_dem(elev, pixel_m, args.levels, args.seed, args.refiner)
    except (ValueError, OSError) as exc:
        return _fail(str(exc).splitlines()[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, elev=out, pixel_m=np.float64(px))
    print(f"wrote {args.out}: elev {out.shape[0]} x {out.shape[1]} at {px:.4g} m")
    return 0


def cmd_eval(args) -> int:
    from generator.eval.evaluate import run

    if args.levels < 1 or args.levels > 4:
        return _fail(f"--levels must be in [1, 4], got {args.levels}")
    run(args.data, args.out_dir, levels=args.levels, seed=args.seed, as_json=args.json, earth=args.earth)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generator.commands")
    register(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
