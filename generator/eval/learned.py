"""Realism of refiners against real DEMs (DESIGN.md section 6).

A refiner is judged by refining a decimated real DEM back to its own spacing and comparing
with the real one: the coarse grid is ``real[::4, ::4]`` refined two levels (so 15 of every
16 samples are generated). The measures are ``generator.eval.metrics.realism`` (the one
yardstick of every evaluation: PSD slope over the finest two octaves, slope and curvature
Wasserstein-1, hypsometric integral, axis / diagonal power), reported as errors against the
real DEM, plus the RMSE.

Baselines side by side: bicubic (the 4-point interpolating cubic, no detail) and the
procedural fractal refiner. Refiners run through the ``Refiner`` protocol at the pyramid
level nearest (in log2) to the DEM's spacing, with ``spacing_scale`` set to the exact pixel
size; colour is a flat 0.25 albedo (DEMs carry none). Context outside a region is its mirror
image (no sample from outside the validation region is used). Stochastic refiners are
scored as the mean over several seeds.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.eval import metrics
from generator.learned.data import VAL_FRACTION, Grid, cubic_refine, load_dem
from generator.paths import default_data_dir
from runtime.tiles import spacing_m


@dataclass(frozen=True)
class Region:
    """A real DEM window: ``name``, file stem under dem/, and whether only its validation
    strip (the eastern VAL_FRACTION, never touched by training crops) is used."""

    name: str
    stem: str
    val_only: bool


REGIONS = (
    Region("bigtujunga (30 m, validation strip)", "bigtujunga", True),
    Region("st_helens (30 m, never seen)", "st_helens", False),
    Region("spain_gredos (25 m, never seen)", "spain_gredos_25m", False),
    Region("ecuador_andes (10 m, validation strip)", "ecuador_andes_10m", True),
)


def measures(real: np.ndarray, z: np.ndarray, spacing: float) -> dict:
    """``metrics.realism`` of ``z`` against ``real`` (same shape, ``spacing`` metres per
    sample) plus the absolute errors the tables report and the RMSE (metres)."""
    m = metrics.realism(real, z, spacing)
    m["psd_slope_abs_err"] = abs(m["psd_slope"] - m["psd_slope_real"])
    m["hypsometric_abs_err"] = abs(m["hypsometric"] - m["hypsometric_real"])
    m["rmse_m"] = float(np.sqrt(np.mean((np.asarray(z, np.float64) - real) ** 2)))
    return m


def nearest_level(spacing: float) -> int:
    return int(round(math.log2(spacing_m(0) / spacing)))


def _set_scale(refiner, level: int, spacing: float) -> None:
    """Tell a refiner its exact metres per sample (generator.refiner's spacing_scale)."""
    if refiner is not None and hasattr(refiner, "spacing_scale"):
        refiner.spacing_scale = spacing / spacing_m(level)


def refine_grid(refiner, coarse: np.ndarray, level: int, seed: int, locate=None) -> np.ndarray:
    """(H, W) heights at level-1 -> (2H-1, 2W-1) at ``level`` through ``refiner.refine``,
    mirror padding the margin. ``locate`` = (geo, y0, x0, step): coarse[i, j] is sample
    (y0 + i step, x0 + j step) of a grid georeferenced by ``geo`` (generator.learned.data.geo_nodes);
    a refiner that takes context (``takes_context``) needs it and gets the context there (mirrored
    in the margin like the heights)."""
    m = refiner.margin
    h = np.pad(coarse, m, mode="reflect")
    if getattr(refiner, "takes_context", False):
        if locate is None:
            raise ValueError("a context refiner needs the grid's location: locate=(geo, y0, x0, step)")
        refiner.context_fn = located_context(locate, coarse.shape, m)
    parents = np.empty((1, refiner.channels) + h.shape, np.float32)
    parents[:, 0] = h
    parents[:, 1:] = 0.25
    return refiner.refine(parents, level, np.zeros((1, 2), np.int64), seed)[0, 0]


def located_context(locate, shape: tuple[int, int], margin: int):
    """A LearnedRefiner ``context_fn`` for one mirror-padded grid (refine_grid): the earth context
    (generator.anchors.context.EarthContext) at the grid's samples, (1, 15, H + 2m, W + 2m)."""
    from generator.anchors.context import EarthContext
    from generator.learned.located import latlon_at

    geo, y0, x0, step = locate
    ri = np.pad(np.arange(shape[0]), margin, mode="reflect")
    ci = np.pad(np.arange(shape[1]), margin, mode="reflect")
    yy, xx = np.meshgrid(y0 + ri * float(step), x0 + ci * float(step), indexing="ij")
    ctx = EarthContext.shared().at(*latlon_at(geo, yy, xx))[None]
    return lambda level, rows, cols: ctx


def trim_box(z: np.ndarray) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1) of trim_voids: the rows and columns it keeps."""
    r0, r1, c0, c1 = 0, z.shape[0], 0, z.shape[1]
    bad = ~np.isfinite(z)
    while r1 - r0 > 8 and c1 - c0 > 8:
        sides = [
            bad[r0, c0:c1].mean(),
            bad[r1 - 1, c0:c1].mean(),
            bad[r0:r1, c0].mean(),
            bad[r0:r1, c1 - 1].mean(),
        ]
        worst = int(np.argmax(sides))
        if sides[worst] == 0:
            break
        r0, r1, c0, c1 = r0 + (worst == 0), r1 - (worst == 1), c0 + (worst == 2), c1 - (worst == 3)
    return r0, r1, c0, c1


def trim_voids(z: np.ndarray) -> np.ndarray:
    """Drop the border row or column with the most voids until the border has none."""
    r0, r1, c0, c1 = trim_box(z)
    return z[r0:r1, c0:c1]


def _bicubic(coarse, level, seed):
    return cubic_refine(coarse).astype(np.float32)


def evaluate_region(real: np.ndarray, spacing: float, refiners: dict, seeds=(0,), locate=None) -> dict:
    """real (H, W) metres at ``spacing`` -> {refiner: metrics (mean over seeds), field of the
    first seed}. ``locate`` = (geo, y0, x0): real[0, 0] is sample (y0, x0) of the grid ``geo``
    georeferences (context refiners need it)."""
    n0, n1 = ((real.shape[0] - 1) // 4) * 4 + 1, ((real.shape[1] - 1) // 4) * 4 + 1
    real = real[:n0, :n1]
    coarse = real[::4, ::4]
    level = nearest_level(spacing)
    b = 4  # leave out the outermost samples (mirror seams)
    out = {}
    for name, ref in refiners.items():
        runs = []
        for seed in seeds if ref is not None else seeds[:1]:
            if ref is None:
                z = _bicubic(_bicubic(coarse, 0, 0), 0, 0)
            else:
                _set_scale(ref, level, spacing)
                loc = lambda step: None if locate is None else (*locate, step)
                z = refine_grid(ref, refine_grid(ref, coarse, level - 1, seed, loc(4)), level, seed, loc(2))
            runs.append((measures(real[b:-b, b:-b], z[b:-b, b:-b], spacing), z))
        out[name] = {k: float(np.mean([r[0][k] for r in runs])) for k in runs[0][0]}
        out[name]["field"] = runs[0][1]
    out["_real"] = real
    out["_level"] = level
    return out


def figure(result: dict, spacing: float, title: str, path: Path, size: int = 256) -> None:
    """Real | bicubic | fractal | learned hillshades side by side (PNG)."""
    from PIL import Image, ImageDraw

    names = ["real"] + [k for k in result if not k.startswith("_")]
    fields = [result["_real"]] + [result[k]["field"] for k in names[1:]]
    n = min(size, *fields[0].shape)
    tiles = [Image.fromarray((metrics.hillshade(f[:n, :n], spacing) * 255).astype(np.uint8)) for f in fields]
    img = Image.new("L", (len(tiles) * (n + 4), n + 34), 255)
    d = ImageDraw.Draw(img)
    d.text((4, 2), title, fill=0)
    for i, (t, name) in enumerate(zip(tiles, names, strict=True)):
        img.paste(t, (i * (n + 4), 30))
        d.text((i * (n + 4) + 4, 16), name, fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def run(data_dir: str, checkpoint: str | None, figures: str | None, seeds=(0, 1, 2)) -> dict:
    from generator.fractal import FractalRefiner
    from generator.learned.refiner import ASSET_PATH, LearnedRefiner

    refiners = {
        "bicubic": None,
        "fractal": FractalRefiner(),
        "learned": LearnedRefiner(checkpoint=checkpoint or ASSET_PATH),
    }
    table = {}
    for region in REGIONS:
        g: Grid = load_dem(Path(data_dir) / "dem" / f"{region.stem}.npz")
        z = g.height_m
        x_val = int(z.shape[1] * (1 - VAL_FRACTION)) if region.val_only else 0
        z = z[:, x_val:]
        r0, r1, c0, c1 = trim_box(z)
        z = z[r0:r1, c0:c1]
        z = np.where(np.isfinite(z), z, np.nanmedian(z)).astype(np.float32)
        res = evaluate_region(z, g.spacing_m, refiners, tuple(seeds), (g.geo, r0, x_val + c0))
        if figures:
            figure(
                res,
                g.spacing_m,
                f"{region.name}: refined x4 from {4 * g.spacing_m:.0f} m",
                Path(figures) / f"learned_eval_{region.stem}.png",
            )
        table[region.name] = {
            k: {m: float(f"{v:.4g}") for m, v in r.items() if m != "field"}
            for k, r in res.items()
            if not k.startswith("_")
        }
        table[region.name]["_level"] = res["_level"]
    return table


def print_table(table: dict) -> None:
    print(
        f"{'region':<42}{'refiner':<10}{'|dPSD slope|':>13}{'slope W1 deg':>14}{'curv W1 1/m':>13}"
        f"{'|dHI|':>8}{'RMSE m':>9}{'PSD slope':>10}{'real':>7}"
    )
    for region, rows in table.items():
        for name, r in rows.items():
            if name.startswith("_"):
                continue
            print(
                f"{region:<42}{name:<10}{r['psd_slope_abs_err']:>13.3f}{r['slope_w1_deg']:>14.3f}"
                f"{r['curvature_w1_per_m']:>13.5f}{r['hypsometric_abs_err']:>8.4f}{r['rmse_m']:>9.2f}"
                f"{r['psd_slope']:>10.2f}{r['psd_slope_real']:>7.2f}"
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="realism of refiners against real DEMs")
    ap.add_argument("--data", default=str(default_data_dir()))
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--seeds", type=int, default=3, help="stochastic refiners: mean over this many seeds")
    args = ap.parse_args(argv)
    table = run(args.data, args.checkpoint, args.figures, tuple(range(args.seeds)))
    print_table(table)
    print(json.dumps({"eval": "learned", "table": table}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
