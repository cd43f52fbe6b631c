"""How many mesh vertices the earth world's terrain needs against real terrain at the same
place, level and error bound (issues 14 and 15: a tile's mesher, wire and client costs grow
with its vertices, and rough generated detail costs vertices real ground would not).

For every located DEM in ``DATA/dem`` and levels 7-13 (spacing ~550 m to ~10 m), the real grid
(``generator.eval.earth.dem_grid``: the DEM smoothed to the level's spacing) and the earth world
at the same points and level (``sample_field``, each ``--refiner``), both cropped to N x N
(N = 2^k + 1: 129 where the grid allows, else 65), are meshed by the server's mesher
(``runtime.tin.simplify.rtin_vertex_set``, up component) at the level's geometric error
(``runtime.tiles.level_error_m``). Prints vertices per sample for real (the baseline, same run)
and each refiner, the ratio, the level's own detail (each odd sample minus the linear midpoint
of its even neighbours: its std against the bound, and its kurtosis, 3 for Gaussian grain), the
medians per level, and one JSON line.

    PYTHONPATH=. python bench/mesh_density.py --data ../shared/data [--refiner fractal learned]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.eval import earth as E  # noqa: E402
from generator.pyramid import Pyramid  # noqa: E402
from runtime.tiles import World, level_error_m, spacing_m  # noqa: E402
from runtime.tin.simplify import rtin_vertex_set  # noqa: E402

LEVELS = (7, 8, 9, 10, 11, 12, 13)


def vertex_fraction(z: np.ndarray, bound_m: float) -> float:
    """Vertices per sample of the server's RTIN mesh of (n, n) heights at ``bound_m``."""
    present, _, _ = rtin_vertex_set(np.ascontiguousarray(z, np.float64), bound_m)
    return float(present[:-1].sum()) / z.size


def detail_stats(z: np.ndarray, bound_m: float) -> tuple[float, float]:
    """The level's own detail: every sample on an odd row or column minus the linear midpoint
    of its even neighbours (what a level adds to its parent), as (std / bound, kurtosis).
    Gaussian grain has kurtosis 3; terrain whose detail sits on ridges and channels, more."""
    e = np.asarray(z, np.float64)
    d = np.concatenate([
        (e[0::2, 1::2] - 0.5 * (e[0::2, 0:-1:2] + e[0::2, 2::2])).ravel(),  # even rows, odd cols
        (e[1::2, 0::2] - 0.5 * (e[0:-1:2, 0::2] + e[2::2, 0::2])).ravel(),  # odd rows, even cols
        (e[1::2, 1::2] - 0.25 * (e[0:-1:2, 0:-1:2] + e[0:-1:2, 2::2] + e[2::2, 0:-1:2] + e[2::2, 2::2])).ravel(),
    ])
    d = d - d.mean()
    sd = float(d.std())
    kurt = float(np.mean(d**4) / sd**4) if sd > 0 else float("nan")
    return sd / bound_m, kurt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the data folder (dem/ inside)")
    ap.add_argument("--refiner", nargs="+", default=["fractal"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    dems = sorted(p for p in (Path(args.data) / "dem").glob("*.npz") if p.stem != "bedmap_antarctica")
    if not dems:
        raise SystemExit(f"no DEMs in {Path(args.data) / 'dem'} (expected the shared data folder)")
    pyramids = {r: Pyramid(World.EARTH, args.seed, r) for r in args.refiner}
    print(f"{'DEM':22s} level spacing_m     n   real " + " ".join(f"{r:>9s} ratio" for r in args.refiner))
    rows = []
    for path in dems:
        with np.load(path) as d:
            for level in LEVELS:
                grid = E.dem_grid(d, spacing_m(level))
                if grid is None:
                    continue
                real, lat, lon = grid
                n = 129 if real.shape[0] >= 129 else 65
                if real.shape[0] < n or not np.isfinite(real[:n, :n]).all():
                    continue
                bound = level_error_m(level)
                row = {"dem": path.stem, "level": level, "n": n, "real": vertex_fraction(real[:n, :n], bound),
                       "real_detail": detail_stats(real[:n, :n], bound)}
                for r, p in pyramids.items():
                    gen = E.sample_field(p, level, lat[:n, :n], lon[:n, :n])
                    row[r] = vertex_fraction(gen, bound)
                    row[f"{r}_detail"] = detail_stats(gen, bound)
                rows.append(row)
                print(f"{path.stem:22s} {level:5d} {spacing_m(level):9.1f} {n:5d} {row['real']:6.3f} "
                      + " ".join(f"{row[r]:9.3f} {row[r] / max(row['real'], 1e-9):5.2f}" for r in args.refiner)
                      + "   detail sd/bound, kurtosis: real {:.2f} {:.1f} ".format(*row["real_detail"])
                      + " ".join("{} {:.2f} {:.1f}".format(r, *row[f"{r}_detail"]) for r in args.refiner),
                      flush=True)
    summary: dict = {"levels": {}, "refiners": args.refiner, "dems": len({r["dem"] for r in rows})}
    print("\nmedians per level (vertices per sample; ratio = refiner / real, median over DEMs)")
    for level in LEVELS:
        sel = [r for r in rows if r["level"] == level]
        if not sel:
            continue
        med = {"n": len(sel), "real": round(statistics.median(r["real"] for r in sel), 4),
               "real_kurtosis": round(statistics.median(r["real_detail"][1] for r in sel), 2)}
        for ref in args.refiner:
            med[ref] = round(statistics.median(r[ref] for r in sel), 4)
            med[f"{ref}_ratio"] = round(statistics.median(r[ref] / max(r["real"], 1e-9) for r in sel), 3)
            med[f"{ref}_kurtosis"] = round(statistics.median(r[f"{ref}_detail"][1] for r in sel), 2)
            med[f"{ref}_sd_ratio"] = round(statistics.median(r[f"{ref}_detail"][0] / max(r["real_detail"][0], 1e-9)
                                                             for r in sel), 3)
        summary["levels"][level] = med
        print(f"level {level:2d} ({len(sel)} DEMs): real {med['real']:.3f} "
              f"(detail kurtosis {med['real_kurtosis']:.1f})  "
              + "  ".join(f"{ref} {med[ref]:.3f} (x{med[f'{ref}_ratio']:.2f}; detail sd x{med[f'{ref}_sd_ratio']:.2f}, "
                          f"kurtosis {med[f'{ref}_kurtosis']:.1f})" for ref in args.refiner))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
