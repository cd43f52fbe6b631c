"""Deep-cascade evaluation: real terrain refined back over K = 3..6 levels (issue 14, item 4).

The product refines its own output 8-15 times from a 9.8 km anchor; x4 tests of real DEMs do
not show what that does. Here a real crop z (n x n, n - 1 divisible by 64) at spacing s is
decimated to z[::2^K, ::2^K] and refined back K levels by each refiner, every level from the
previous level's output (the learned and fractal refiners through the ``Refiner`` protocol,
mirror context at the crop edge, exactly as ``generator.eval.learned`` does for one level).
Measured on the result against z (the outer ``BORDER`` samples left out), all with
``generator.eval.metrics`` (the one yardstick):

- per-octave PSD ratio: mean radial power generated / real in each of the K octaves the
  cascade made (f_nyq / 2^(o+1) .. f_nyq / 2^o, o = 0 finest); cell metric ``psd`` = mean
  |log2 ratio| over the octaves (0 = real power in every octave);
- slope W1 (degrees) and Laplacian-curvature W1 (1/m) of the distributions;
- relief ratio (p95 - p5) generated / real; cell metric ``relief`` = |log2 ratio|.

Crops never used in training: the two UNSEEN DEMs (generator.learned.data) and GLOBE 30"
crops east of GLOBE_VAL_LON (the coarse range, 7.4 km -> 0.93 km at K = 3). The crops are
cut once into a small npz (``--prepare``) so the run needs no ../shared/data (GPU machine).

    python -m generator.eval.cascade --prepare out/cascade_eval.npz      # needs ../shared/data
    python -m generator.eval.cascade --crops out/cascade_eval.npz --new assets/learned_refiner.pt \
        --old OLD.pt [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from generator.eval.learned import refine_grid, trim_box
from generator.eval.metrics import curvature_per_m, hillshade, radial_psd, slope_deg, wasserstein1
from generator.learned.data import UNSEEN, cubic_refine, globe_crops, load_dem
from generator.learned.located import geo_nodes, latlon_at
from runtime.tiles import spacing_m

LEVELS = (3, 4, 5, 6)
BORDER = 8  # fine samples left out at each edge (mirror context)
METRICS = ("psd", "slope_w1_deg", "curv_w1", "relief")
"""Per-cell metrics, all lower-is-better."""


def prepare(data_dir: str | Path, path: str | Path, globe: int = 3) -> None:
    """Cut the evaluation crops (float32 metres, edges 64 q + 1) into ``path``, each with its
    georeference ``NAME.geo`` (generator.learned.data.geo_nodes: context nets need it)."""
    data_dir = Path(data_dir)
    crops, spacing, geos = {}, {}, {}
    for stem in UNSEEN:
        g = load_dem(data_dir / "dem" / f"{stem}.npz")
        r0, r1, c0, c1 = trim_box(g.height_m)
        z = g.height_m[r0:r1, c0:c1]
        z = np.where(np.isfinite(z), z, np.nanmedian(z))
        crops[stem], spacing[stem] = z, g.spacing_m
        geos[stem] = geo_nodes(z.shape, lambda y, x, g=g, r0=r0, c0=c0: latlon_at(
            g.geo, *np.broadcast_arrays(y + r0, x + c0)))
    for g in globe_crops(data_dir, globe, size=513, split="val", seed=1):
        crops[g.name], spacing[g.name], geos[g.name] = g.height_m, g.spacing_m, g.geo
    arrays = {}
    for name, z in crops.items():
        n0, n1 = ((z.shape[0] - 1) // 64) * 64 + 1, ((z.shape[1] - 1) // 64) * 64 + 1
        arrays[name] = np.asarray(z[:n0, :n1], np.float32)
        arrays[f"{name}.geo"] = geos[name]  # the crop keeps the grid's origin: same nodes
    arrays["spacing_m"] = np.array(json.dumps(spacing))
    np.savez_compressed(path, **arrays)


def load_crops(path: str | Path) -> dict[str, tuple[np.ndarray, float]]:
    d = np.load(path)
    spacing = json.loads(str(d["spacing_m"]))
    return {k: (d[k].astype(np.float32), float(spacing[k])) for k in spacing}


def load_geo(path: str | Path) -> dict[str, np.ndarray]:
    """The crops' georeference (an npz prepared before it existed has none: {})."""
    d = np.load(path)
    return {k[: -len(".geo")]: d[k] for k in d.files if k.endswith(".geo")}


def nearest_level(s: float) -> int:
    return max(1, int(round(math.log2(spacing_m(0) / s))))


def cascade(refiner, coarse: np.ndarray, fine_spacing: float, k: int, seed: int, geo=None) -> np.ndarray:
    """coarse (h, w) at fine_spacing * 2^k -> (2^k (h-1) + 1, ...) refined k times; None =
    bicubic. Each level runs at the pyramid level nearest its spacing with the exact metres
    per sample as spacing_scale. ``geo``: the fine crop's georeference (context refiners)."""
    z = np.asarray(coarse, np.float32)
    for j in range(1, k + 1):
        s = fine_spacing * 2 ** (k - j)
        if refiner is None:
            z = cubic_refine(z).astype(np.float32)
            continue
        # Crops coarser than the anchor (GLOBE at K = 5, 6) run a refiner that starts at the
        # anchor level at that level, with the true metres per sample as its spacing_scale.
        level = max(nearest_level(s), getattr(refiner, "min_level", 1))
        refiner.spacing_scale = s / spacing_m(level)
        locate = None if geo is None else (geo, 0, 0, 2 ** (k - j + 1))
        z = refine_grid(refiner, z, level, seed, locate)
    return z


def sig(x: float, digits: int = 5) -> float:
    """x to ``digits`` significant digits. Fixed decimals (the former round(x, 5)) turned the
    GLOBE crops' curvature W1 (1e-5 .. 1e-4 1/m) into ties, and a tie counts as a loss."""
    return float(f"{x:.{digits}g}")


def octave_psd_ratios(gen: np.ndarray, real: np.ndarray, pixel_m: float, octaves: int) -> list[float]:
    """Mean radial power generated / real in each octave below Nyquist, finest first."""
    f, pg = radial_psd(gen, pixel_m)
    _, pr = radial_psd(real, pixel_m)
    nyq = 0.5 / pixel_m
    out = []
    for o in range(octaves):
        sel = (f >= nyq / 2 ** (o + 1)) & (f < nyq / 2**o)
        out.append(float(pg[sel].mean() / pr[sel].mean()) if sel.any() else float("nan"))
    return out


def measure(gen: np.ndarray, real: np.ndarray, pixel_m: float, k: int) -> dict:
    b = BORDER
    g, r = gen[b:-b, b:-b].astype(np.float64), real[b:-b, b:-b].astype(np.float64)
    ratios = octave_psd_ratios(g, r, pixel_m, k)
    relief = float(np.subtract(*np.percentile(g, [95, 5])) / max(np.subtract(*np.percentile(r, [95, 5])), 1e-6))
    return {
        "psd_ratio": [sig(x) for x in ratios],
        "psd": float(np.nanmean(np.abs(np.log2(ratios)))),
        "slope_w1_deg": wasserstein1(slope_deg(g, pixel_m), slope_deg(r, pixel_m)),
        "curv_w1": wasserstein1(curvature_per_m(g, pixel_m), curvature_per_m(r, pixel_m)),
        "relief_ratio": relief,
        "relief": abs(math.log2(relief)),
        "mean_slope_ratio": float(slope_deg(g, pixel_m).mean() / max(slope_deg(r, pixel_m).mean(), 1e-9)),
    }


def run(crops: dict, refiners: dict, levels=LEVELS, seeds=(0,), log=print, geos=None) -> dict:
    """{crop: {K: {refiner: metrics (mean over seeds; psd_ratio per octave)}}}; ``geos`` {crop:
    georeference} (load_geo) for refiners that take context."""
    table, geos = {}, geos or {}
    for name, (z, s) in crops.items():
        table[name] = {}
        for k in levels:
            coarse = z[:: 2**k, :: 2**k]
            row = {}
            for rname, ref in refiners.items():
                runs = [measure(cascade(ref, coarse, s, k, sd, geos.get(name)), z, s, k)
                        for sd in (seeds if ref is not None else seeds[:1])]
                row[rname] = {
                    m: ([sig(x) for x in np.mean([r[m] for r in runs], 0)] if m == "psd_ratio"
                        else sig(float(np.mean([r[m] for r in runs]))))
                    for m in runs[0]
                }
            table[name][k] = row
            log(f"{name} K={k}: " + "  ".join(
                f"{r}: psd {v['psd']:.2f} slope {v['slope_w1_deg']:.2f} relief {v['relief_ratio']:.2f}"
                for r, v in row.items()))
    return table


def figure(crops: dict, refiners: dict, k: int, path: str | Path, seed: int = 0, geos=None, size: int = 192) -> None:
    """One PNG: a row per crop (hillshades of the real crop, then each refiner's K-level cascade
    from it decimated by 2^K, seed ``seed``), the central ``size`` samples."""
    from PIL import Image, ImageDraw

    geos, rows = geos or {}, []
    for name, (z, s) in crops.items():
        fields = [z] + [cascade(ref, z[:: 2**k, :: 2**k], s, k, seed, geos.get(name)) for ref in refiners.values()]
        n = min(size, *z.shape)
        r0, c0 = (z.shape[0] - n) // 2, (z.shape[1] - n) // 2
        rows.append((f"{name} ({s:.0f} m), from {s * 2**k / 1000:.1f} km",
                     [Image.fromarray((hillshade(f[r0:r0 + n, c0:c0 + n], s) * 255).astype(np.uint8)) for f in fields]))
    n = rows[0][1][0].width
    names = ["real"] + list(refiners)
    img = Image.new("L", (len(names) * (n + 4), len(rows) * (n + 16) + 16), 255)
    d = ImageDraw.Draw(img)
    for j, nm in enumerate(names):
        d.text((j * (n + 4) + 4, 2), nm, fill=0)
    for i, (title, tiles) in enumerate(rows):
        y = 16 + i * (n + 16)
        d.text((4, y), title, fill=0)
        for j, t in enumerate(tiles):
            img.paste(t.resize((n, n)), (j * (n + 4), y + 14))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def wins(table: dict, who: str, against: tuple[str, ...]) -> dict:
    """Share of (crop, K, metric) cells where ``who`` is strictly better than each of
    ``against`` and than all of them; and the share of (crop, K, octave) within 0.5-2x."""
    n, beat_all, beat = 0, 0, {a: 0 for a in against}
    octs = []
    for rows in table.values():
        for row in rows.values():
            octs += row[who]["psd_ratio"]
            for m in METRICS:
                n += 1
                better = [row[who][m] < row[a][m] for a in against]
                beat_all += all(better)
                for a, b in zip(against, better, strict=True):
                    beat[a] += b
    octs = np.array(octs)
    return {
        "cells": n,
        "beats_all": beat_all / n,
        **{f"beats_{a}": v / n for a, v in beat.items()},
        "octaves_within_0.5_2x": float(np.mean((octs >= 0.5) & (octs <= 2.0))),
    }


def markdown(table: dict, refiners: list[str]) -> str:
    lines = ["| crop | K | refiner | PSD ratio per octave (finest first) | slope W1 deg | curv W1 1/m | "
             "relief ratio | mean slope ratio |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in table.items():
        for k, row in rows.items():
            for r in refiners:
                v = row[r]
                psd = " ".join(f"{x:.2g}" for x in v["psd_ratio"])
                lines.append(f"| {name} | {k} | {r} | {psd} | {v['slope_w1_deg']:.2f} | {v['curv_w1']:.3g} | "
                             f"{v['relief_ratio']:.2f} | {v['mean_slope_ratio']:.2f} |")
    return "\n".join(lines)


def compact_markdown(table: dict, refiners: list[str]) -> str:
    """One row per (crop, K): for each refiner 'psd / finest-octave ratio / slope W1 / relief ratio'."""
    head = "| crop | K | " + " | ".join(refiners) + " |"
    lines = [head, "|---|---|" + "---|" * len(refiners)]
    for name, rows in table.items():
        for k, row in rows.items():
            cells = [f"{row[r]['psd']:.2f} / {row[r]['psd_ratio'][0]:.2g} / {row[r]['slope_w1_deg']:.2f} / "
                     f"{row[r]['relief_ratio']:.2f}" for r in refiners]
            lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="deep-cascade realism (K = 3..6 levels from decimated real terrain)")
    ap.add_argument("--prepare", metavar="NPZ", help="cut the evaluation crops from --data into NPZ and stop")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--crops", default="out/cascade_eval.npz")
    ap.add_argument("--new", default="assets/learned_refiner.pt",
                    help="weights under test: PATH, or NAME=PATH,... (reported as learned_NAME); '' for none "
                         "(fractal and bicubic only: a CPU run)")
    ap.add_argument("--old", default="", help="earlier weights, as a baseline")
    ap.add_argument("--device", default="cpu", help="torch device of the learned refiners (exact torch backend)")
    ap.add_argument("--levels", default="3,4,5,6")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--json", default="")
    ap.add_argument("--skip", default="", help="procedural baselines to leave out, e.g. fractal_v6,fractal_v6carve")
    ap.add_argument("--from-json", default="", help="only print the compact table of an earlier --json")
    ap.add_argument("--figure", default="", metavar="PNG",
                    help="only draw hillshades of every crop's cascade at the deepest --levels (bicubic, fractal, "
                         "--old, --new) into PNG")
    args = ap.parse_args(argv)
    if args.from_json:
        d = json.loads(Path(args.from_json).read_text())
        names = list(next(iter(next(iter(d["table"].values())).values())))
        print(compact_markdown(d["table"], names))
        print(json.dumps(d["summary"], indent=1))
        return 0
    if args.prepare:
        prepare(args.data, args.prepare)
        print(f"wrote {args.prepare}")
        return 0
    from generator.fractal import V4, V6, V6_CARVE, V7, FractalRefiner
    from generator.learned.refiner import LearnedRefiner

    # the parents are a real DEM decimated: the fractal refiner's real-parent mode (as in
    # ``refine``); version 4 as a baseline (it has no such mode: the same as over the anchor)
    refiners = {"bicubic": None, "fractal_v4": FractalRefiner(config=V4, real_parents=True),
                "fractal": FractalRefiner(real_parents=True),
                "fractal_v6": FractalRefiner(config=V6, real_parents=True),
                "fractal_v6carve": FractalRefiner(config=V6_CARVE, real_parents=True),
                "fractal_v7": FractalRefiner(config=V7, real_parents=True)}
    for name in filter(None, args.skip.split(",")):  # e.g. fractal_v6,fractal_v6carve: a shorter run
        if name in ("bicubic", "fractal") or name not in refiners:
            raise ValueError(f"--skip takes optional refiners of {sorted(refiners)[2:]}, got {name!r}")
        del refiners[name]
    if args.old:
        refiners["learned_old"] = LearnedRefiner(checkpoint=args.old, backend="torch", device=args.device)
    for item in filter(None, args.new.split(",")):  # PATH, or NAME=PATH,NAME=PATH,... (candidates side by side)
        name, _, path = item.rpartition("=")
        refiners[f"learned_{name or 'new'}"] = LearnedRefiner(checkpoint=path, backend="torch", device=args.device)
    if args.figure:
        keep = {r: v for r, v in refiners.items() if r in ("bicubic", "fractal") or r.startswith("learned")}
        k = max(int(x) for x in args.levels.split(","))
        figure(load_crops(args.crops), keep, k, args.figure, geos=load_geo(args.crops))
        print(f"wrote {args.figure}")
        return 0
    t0 = time.time()
    table = run(load_crops(args.crops), refiners, tuple(int(k) for k in args.levels.split(",")),
                tuple(range(args.seeds)), geos=load_geo(args.crops))
    summary = {r: wins(table, r, ("bicubic", "fractal")) for r in refiners if r.startswith("learned")}
    summary["fractal"] = wins(table, "fractal", ("bicubic", "fractal_v4") if "fractal_v4" in refiners else ("bicubic",))
    for name in ("fractal_v6", "fractal_v6carve", "fractal_v7"):
        if name in refiners:
            summary[name] = wins(table, name, ("bicubic", "fractal"))
    if "fractal_v4" in refiners:
        summary["fractal_v4"] = wins(table, "fractal_v4", ("bicubic",))
    print(markdown(table, list(refiners)))
    print(json.dumps(summary, indent=1))
    meta = {"machine": platform.node(), "device": args.device, "seconds": round(time.time() - t0, 1),
            "versions": {r: getattr(v, "version", None) for r, v in refiners.items()}}
    print(json.dumps(meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"table": table, "summary": summary, "meta": meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
