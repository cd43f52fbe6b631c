"""``worldstream eval``: the pyramid's contracts and its realism against real DEMs.

Contracts (no data needed): seams and nesting on both worlds, determinism
across request orders, batch sizes, cache budgets and processes.
Realism (needs ../shared/data/dem): each DEM's central crop is decimated by
2^K, refined back K levels by each refiner (bicubic = interpolation only, the
fractal refiner, the learned one when present) and compared with the real crop
(:func:`generator.eval.metrics.realism`). A PNG figure shows hillshades side by side.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np

from generator.dem import refine_dem
from generator.eval import metrics
from generator.paths import REPO
from generator.pyramid import Pyramid
from generator.refiner import make_refiner
from runtime.tiles import TileKey, World

REALISM_DEMS = (
    "ecuador_andes_10m", "spain_gredos_25m", "bigtujunga", "st_helens", "colorado_front_range",
    "zion_srtm", "gabon_N00E010", "jacksboro", "texas_plains", "oregon", "gmt_tut_relief",
)
FIGURE_DEMS = ("bigtujunga", "colorado_front_range")


def _keys(world: World) -> list[TileKey]:
    if world is World.EARTH:  # the Alps at 9 and 14, the date line at 5, the north pole at 2
        return [TileKey(9, 543, 127), TileKey(14, 17389, 4071), TileKey(5, 63, 11), TileKey(2, 3, 0)]
    return [TileKey(9, -3, 7), TileKey(14, 2**20 + 5, -(2**21)), TileKey(5, 0, -1), TileKey(18, 2**32, 2**31)]


def _right(world: World, k: TileKey) -> TileKey:
    x = k.x + 1
    if world is World.EARTH:
        x %= 2 << k.level
    return TileKey(k.level, x, k.y)


def _digest(fields) -> str:
    h = hashlib.sha256()
    for f in fields:
        h.update(f.height.tobytes())
        h.update(f.rgb.tobytes() if f.rgb is not None else b"")
    return h.hexdigest()


def contracts(seed: int, refiner: str = "fractal") -> dict:
    """Seams (m), nesting (m) and determinism (bools) on both worlds."""
    out: dict = {}
    for world in (World.PLANE, World.EARTH):
        p = Pyramid(world, seed, refiner)
        seam = nest = 0.0
        for k in _keys(world):
            a, b = p.tile(k), p.tile(_right(world, k))
            has_below = world is World.PLANE or k.y + 1 < 2**k.level
            below = p.tile(TileKey(k.level, k.x, k.y + 1)).height if has_below else None
            seam = max(seam, metrics.seam_max_abs_m(a.height, b.height, below, a.height))
            if k.level > 0:
                parent = p.tile(k.parent()).height
                nest = max(nest, metrics.nesting_max_abs_m(a.height, parent, (k.y & 1, k.x & 1)))
        keys = _keys(world) + [_right(world, k) for k in _keys(world)]
        ref = _digest(p.tiles(keys))
        shuffled = keys[:]
        random.Random(seed).shuffle(shuffled)
        q = Pyramid(world, seed, refiner, anchor=p.anchor)  # the anchor is immutable: share its load
        by_key = dict(zip(shuffled, q.tiles(shuffled), strict=True))
        order_ok = _digest(by_key[k] for k in keys) == ref
        r = Pyramid(world, seed, refiner, cache_bytes=8_000_000, anchor=p.anchor)  # evicts while working
        batch_ok = all(_digest(f for i in range(0, len(keys), n) for f in r.tiles(keys[i : i + n])) == ref
                       for n in (1, 3))
        code = ("from generator.pyramid import Pyramid; from runtime.tiles import TileKey;"
                f"p = Pyramid({world.value!r}, {seed}, {refiner!r});"
                f"keys = [TileKey(*t) for t in {[(k.level, k.x, k.y) for k in keys]!r}];"
                "from generator.eval.evaluate import _digest; print(_digest(p.tiles(keys)))")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              timeout=600)
        process_ok = proc.returncode == 0 and proc.stdout.strip() == ref
        out[world.value] = {"seam_max_m": seam, "nesting_max_m": nest, "order_independent": order_ok,
                            "batch_and_cache_independent": batch_ok, "process_independent": process_ok,
                            "model": p.model_id}
    return out


def _crop(z: np.ndarray, levels: int, size: int = 257) -> np.ndarray | None:
    """Central finite crop of (n * 2^levels + 1) samples a side, or None."""
    step = 2**levels
    n = (min(size, *z.shape) - 1) // step * step + 1
    if n < 4 * step + 1:
        return None
    r0, c0 = (z.shape[0] - n) // 2, (z.shape[1] - n) // 2
    crop = z[r0 : r0 + n, c0 : c0 + n]
    return crop if np.isfinite(crop).all() else None


def refiners_to_compare() -> list[str]:
    """bicubic and fractal, and learned where it can be built here (torch and its weights)."""
    try:
        make_refiner("learned", World.PLANE)
    except (FileNotFoundError, ImportError):
        return ["bicubic", "fractal"]
    return ["bicubic", "fractal", "learned"]


def realism(data_dir: Path, levels: int, seed: int) -> tuple[dict, dict]:
    """Per-DEM realism of each refiner; returns (results, images for the figure)."""
    results: dict = {}
    images: dict = {}
    names = refiners_to_compare()
    for dem in REALISM_DEMS:
        path = Path(data_dir) / "dem" / f"{dem}.npz"
        if not path.exists():
            continue
        d = np.load(path)
        real = _crop(d["elev"].astype(np.float32), levels)
        if real is None:
            continue
        px = float(d["pixel_m"])
        coarse = real[:: 2**levels, :: 2**levels]
        row = {}
        for name in names:
            gen, _ = refine_dem(coarse, px * 2**levels, levels, seed, name)
            row[name] = metrics.realism(real, gen, px)
            if dem in FIGURE_DEMS:
                images.setdefault(dem, {"real": real, "pixel_m": px})[name] = gen
        results[dem] = {"pixel_m": px, "size": int(real.shape[0]), **row}
    return results, images


def summarise(results: dict) -> dict:
    """Mean over DEMs of |psd slope error|, slope W1, curvature W1, |hypsometric error| per refiner."""
    out: dict = {}
    names = {n for r in results.values() for n in r if isinstance(r[n], dict)}
    for n in sorted(names):
        rows = [r[n] for r in results.values() if n in r]
        out[n] = {
            "psd_slope_abs_err": float(np.mean([abs(m["psd_slope"] - m["psd_slope_real"]) for m in rows])),
            "slope_w1_deg": float(np.mean([m["slope_w1_deg"] for m in rows])),
            "curvature_w1_per_m": float(np.mean([m["curvature_w1_per_m"] for m in rows])),
            "hypsometric_abs_err": float(np.mean([abs(m["hypsometric"] - m["hypsometric_real"])
                                                  for m in rows])),
            "axis_diag_median": float(np.median([m["axis_diag"] for m in rows])),
            "axis_diag_real_median": float(np.median([m["axis_diag_real"] for m in rows])),
            "n_dems": len(rows),
        }
    return out


def figure(images: dict, path: Path) -> Path:
    """PNG: one row per DEM, columns real, bicubic, fractal (, learned) hillshades."""
    from PIL import Image, ImageDraw

    rows = []
    for dem, im in images.items():
        cols = [k for k in ("real", "bicubic", "fractal", "learned") if k in im]
        tiles = []
        for k in cols:
            shade = (metrics.hillshade(im[k], im["pixel_m"]) * 255).astype(np.uint8)
            tile = Image.fromarray(shade).convert("RGB")
            ImageDraw.Draw(tile).text((4, 4), f"{dem} {k}", fill=(255, 40, 40))
            tiles.append(np.asarray(tile))
        rows.append(np.hstack(tiles))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.vstack(rows)).save(path)
    return path


def run(data_dir: Path, out_dir: Path, levels: int = 2, seed: int = 0, as_json: bool = False,
        print_fn=print, earth: bool = False) -> dict:
    """The whole evaluation; prints a table (or one JSON document) and returns the report.
    ``earth``: also the earth-fidelity tables (:mod:`generator.eval.earth`: located DEMs,
    GLOBE, summits, inland cities), printed after the others."""
    report: dict = {"contracts": contracts(seed)}
    dem_dir = Path(data_dir) / "dem"
    if dem_dir.is_dir():
        results, images = realism(data_dir, levels, seed)
        report["realism"] = {"levels": levels, "per_dem": results, "mean": summarise(results)}
        if images:
            report["figure"] = str(figure(images, Path(out_dir) / "eval_hillshade.png"))
    else:
        report["realism"] = {"skipped": f"no DEMs under {dem_dir} (pass --data DIR or set WORLDSTREAM_DATA)"}
    lines: list[str] = []
    if earth and dem_dir.is_dir():
        from generator.eval import earth as earth_eval

        report["earth"] = earth_eval.run(Path(data_dir), seed, print_fn=lines.append)
    elif earth:
        lines.append(f"earth fidelity skipped: no DEMs under {dem_dir}")
    if as_json:
        print_fn(json.dumps(report, default=float))
        return report
    print_fn(f"{'world':6s} {'seam max m':>11s} {'nest max m':>11s} {'order':>6s} {'batch':>6s} "
             f"{'process':>8s}")
    for w, c in report["contracts"].items():
        print_fn(f"{w:6s} {c['seam_max_m']:11.3g} {c['nesting_max_m']:11.3g} "
                 f"{str(c['order_independent']):>6s} {str(c['batch_and_cache_independent']):>6s} "
                 f"{str(c['process_independent']):>8s}")
    real = report["realism"]
    if "skipped" in real:
        print_fn(f"realism skipped: {real['skipped']}")
        for line in lines:
            print_fn(line)
        return report
    print_fn(f"\nrealism: {len(real['per_dem'])} DEMs decimated by 2^{levels} and refined back")
    print_fn(f"{'dem':22s} {'refiner':8s} {'psd slope':>9s} {'real':>6s} {'slope W1':>8s} {'curv W1':>9s} "
             f"{'HI':>5s} {'real':>5s} {'axis/diag':>9s} {'real':>6s}")
    for dem, r in real["per_dem"].items():
        for n, m in r.items():
            if isinstance(m, dict):
                print_fn(f"{dem:22s} {n:8s} {m['psd_slope']:9.2f} {m['psd_slope_real']:6.2f} "
                         f"{m['slope_w1_deg']:8.2f} {m['curvature_w1_per_m']:9.2e} {m['hypsometric']:5.3f} "
                         f"{m['hypsometric_real']:5.3f} {m['axis_diag']:9.3g} {m['axis_diag_real']:6.2f}")
    print_fn(f"\n{'mean':22s} {'refiner':8s} {'|dslope|':>9s} {'slope W1':>9s} {'curv W1':>9s} {'|dHI|':>7s} "
             f"{'axis/diag (median; real)':>25s}")
    for n, m in real["mean"].items():
        print_fn(f"{'':22s} {n:8s} {m['psd_slope_abs_err']:9.2f} {m['slope_w1_deg']:9.2f} "
                 f"{m['curvature_w1_per_m']:9.2e} {m['hypsometric_abs_err']:7.4f} "
                 f"{m['axis_diag_median']:14.3g}; {m['axis_diag_real_median']:.2f}")
    if "figure" in report:
        print_fn(f"figure: {report['figure']}")
    for line in ([""] + lines if lines else []):
        print_fn(line)
    return report
