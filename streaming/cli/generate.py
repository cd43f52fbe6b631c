"""The generator's commands: ``refine`` (your own DEM), ``eval`` (the pyramid's contracts
and realism) and ``train`` (the learned refiner). They need the ``generator`` extra (torch
for ``train`` and the learned refiner)."""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import streaming.cli.args as A

REFINE_MAX_SAMPLES = 2**31  # output samples of one refine (float32: 8 GiB)


def _fail(command: str, msg: str) -> int:
    print(f"worldstream {command}: error: {msg}", file=sys.stderr)
    return 2


def cmd_refine(args) -> int:
    """IN.npz (``elev`` (H, W) float32 metres, ``pixel_m``) -> OUT.npz at pixel_m / 2^K."""
    import numpy as np

    from generator.dem import refine_dem

    if not args.input.exists():
        return _fail("refine", f"input file {args.input} does not exist")
    try:
        with np.load(args.input) as d:
            missing = [k for k in ("elev", "pixel_m") if k not in d.files]
            if missing:
                return _fail("refine", f"{args.input} must hold 'elev' and 'pixel_m'; missing {missing}")
            elev, pixel_m = d["elev"], d["pixel_m"]
        if elev.ndim == 2 and elev.size * 4**args.levels > REFINE_MAX_SAMPLES:
            return _fail("refine", f"output would have {elev.size * 4**args.levels} samples; crop the input or "
                                   "use fewer levels")
        out, px = refine_dem(elev, pixel_m, args.levels, args.seed, args.refiner)
    except (ValueError, OSError) as exc:
        return _fail("refine", str(exc).splitlines()[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, elev=out, pixel_m=np.float64(px))
    print(f"wrote {args.out}: elev {out.shape[0]} x {out.shape[1]} at {px:.4g} m")
    return 0


def cmd_eval(args) -> int:
    from generator.eval.evaluate import run

    run(args.data, args.out_dir, levels=args.levels, seed=args.seed, as_json=args.json, earth=args.earth)
    return 0


def train_parser() -> A.Parser:
    """The options of ``worldstream train``: one per ``TrainConfig`` field, plus the run's
    switches. Built only when ``train`` runs: ``TrainConfig`` lives beside the torch code."""
    from generator.learned.train import TrainConfig

    p = A.Parser(prog="worldstream train", description="Train the learned refiner on real terrain; runs are "
                 "bounded by --minutes and resume from <out>/last.pt.")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)),
                       default=getattr(defaults, f.name))
    p.add_argument("--fresh", action="store_true", help="ignore <out>/last.pt and start over")
    p.add_argument("--prepare-only", action="store_true", help="only build the corpus npz")
    p.add_argument("--globe", type=int, default=16, help="GLOBE 30\" crops in a built corpus")
    p.add_argument("--ship", metavar="ASSET", help="after training, write fp16 weights to ASSET")
    p.add_argument("--plot", action="store_true", help="write <out>/loss.png")
    return p


def cmd_train(args) -> int:
    """Train (resumable, bounded in wall time), then optionally plot the log and ship fp16 weights."""
    try:
        opts = train_parser().parse_args(args.options)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        return _fail("train", "training needs torch: pip install 'worldstream[generator]'")
    import torch

    from generator.learned.data import build_corpus, save_corpus
    from generator.learned.train import TrainConfig, plot_history, ship, train

    cfg = TrainConfig(**{f.name: getattr(opts, f.name) for f in fields(TrainConfig)})
    if opts.prepare_only:
        Path(cfg.corpus).parent.mkdir(parents=True, exist_ok=True)
        save_corpus(build_corpus(cfg.data_dir, opts.globe), cfg.corpus)
        print(f"wrote {cfg.corpus}")
        return 0
    last = train(cfg, resume=not opts.fresh) if cfg.minutes > 0 else Path(cfg.out) / "last.pt"
    if opts.plot:
        state = torch.load(last, map_location="cpu", weights_only=True)
        hist = json.loads(state["history"])
        keys = ("l1", "lowpass", "adv", "d", "height_std_ratio")
        if any("c_lowpass" in r for r in hist):  # a self-cascade run: its terms too
            keys = ("lowpass", "spectral", "adv", "d", "c_lowpass", "c_spectral", "c_power_ratio")
        plot_history(hist, Path(cfg.out) / "loss.png", keys)
    if opts.ship:
        print(f"shipped {opts.ship} version {ship(last, opts.ship)}")
    return 0


def register(sub) -> None:
    from generator.paths import default_data_dir

    p = sub.add_parser(
        "refine", help="add generated detail to your own DEM",
        description="Refine IN.npz (elev float32 metres, north-up; pixel_m) by K levels: OUT.elev has "
                    "pixel_m / 2^K spacing and OUT.elev[::2^K, ::2^K] == IN.elev.")
    p.add_argument("--input", required=True, type=Path, help="IN.npz with 'elev' (H, W) and 'pixel_m'")
    p.add_argument("--levels", required=True, type=A.int_in(0, 12, "levels"),
                   help="K: number of halvings of the pixel size")
    p.add_argument("--seed", type=A.int_in(0, A.SEED_MAX, "seed"), default=0)
    p.add_argument("--refiner", default="auto-offline",
                   help="fractal, bicubic, learned, or auto-offline (the best available, default)")
    p.add_argument("--out", required=True, type=Path, help="OUT.npz")
    p.set_defaults(func=cmd_refine)

    e = sub.add_parser(
        "eval", help="seams, nesting, determinism and realism of the generator",
        description="Check the pyramid's contracts and compare refiners with real DEMs.")
    e.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    e.add_argument("--data", type=Path, default=default_data_dir(),
                   help="data folder with dem/ (default: ../shared/data next to the repository)")
    e.add_argument("--out-dir", type=Path, default=Path("eval_out"), help="where the PNG figure goes")
    e.add_argument("--levels", type=A.int_in(1, 4, "levels"), default=2,
                   help="decimate by 2^levels and refine back")
    e.add_argument("--seed", type=A.int_in(0, A.SEED_MAX, "seed"), default=0)
    e.add_argument("--earth", action="store_true",
                   help="also the earth world against located DEMs, GLOBE, summits and inland cities")
    e.set_defaults(func=cmd_eval)

    # Every argument goes to train_parser() when train runs (no option is an option
    # here: prefix_chars="+"), so the parser above never imports torch.
    t = sub.add_parser("train", help="train the learned refiner on real terrain (resumable; train --help)",
                       prefix_chars="+", add_help=False)
    t.add_argument("options", nargs="*")
    t.set_defaults(func=cmd_train)

