"""Does the context (climate, land cover) predict terrain detail beyond the regional relief?

    PYTHONPATH=. python bench/fractal_context.py [--data ../shared/data]

On GLOBE 30" west of GLOBE_VAL_LON (the deep cascade's validation crops lie east of it), in
windows of 60 x 60 cells (0.5 deg) that are at least 98 % land: the rms of the north-south
cubic-midpoint residual at ~0.93 km from ~1.85 km parents, divided by what the fractal
refiner expects there (the law at 1.85 km times the regional factor of the earth anchor,
``generator.relief``). Its log is reported by majority climate group and land-cover group
(``generator.anchors.context`` at level 6, 5 x 5 points per window, a group counts where it
covers > 60 %), and a joint least-squares fit of the log ratio on the group shares (cover
groups, climate groups B-E against A). Prints a table and one JSON line (docs/BENCHMARKS.md,
"Procedural refiner v5": why the context is not in the law).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.anchors.channels import CHANNELS  # noqa: E402
from generator.anchors.context import context  # noqa: E402
from generator.fractal import FractalRefiner  # noqa: E402
from generator.learned.data import GLOBE_FILE, GLOBE_VAL_LON, METRES_PER_DEGREE  # noqa: E402
from generator.paths import default_data_dir  # noqa: E402
from generator.relief import RegionalRelief  # noqa: E402
from runtime.tiles import World, spacing_deg  # noqa: E402

WINDOW = 60
LEVEL = 6


def windows(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(log detail ratio (n,), mean context channels (n, C)) over the GLOBE training windows."""
    d = np.load(data / "global" / GLOBE_FILE)
    z = d["elev"].astype(np.float64)
    lat_top, lon_left, step = float(d["lat_top"]), float(d["lon_left"]), float(d["step_deg"])
    parent_m = 2 * METRES_PER_DEGREE * step
    sigma = float(FractalRefiner(World.EARTH).sigma_m(np.float64(parent_m)))
    relief = RegionalRelief(World.EARTH)
    c_val = int((GLOBE_VAL_LON - lon_left) / step)
    dd = spacing_deg(LEVEL)
    ys, xs = [], []
    for i0 in range(0, z.shape[0] - WINDOW, WINDOW):
        for j0 in range(0, c_val - WINDOW, WINDOW):
            blk = z[i0:i0 + WINDOW, j0:j0 + WINDOW]
            if (blk <= 0).mean() > 0.02:  # GLOBE's packager set the sea to 0
                continue
            p = blk[::2]
            mid = (9.0 * (p[1:-2] + p[2:-1]) - (p[:-3] + p[3:])) / 16.0
            rms = float(np.sqrt(np.mean((blk[3:-3:2][: mid.shape[0]] - mid) ** 2)))
            if rms <= 0:
                continue
            lat, lon = lat_top - (i0 + WINDOW / 2) * step, lon_left + (j0 + WINDOW / 2) * step
            r0, c0 = int((90.0 - lat) / dd), int((lon + 180.0) / dd)
            f = float(relief.factor(0, LEVEL, np.array([[r0]]), np.array([[c0]]))[0, 0, 0])
            off = np.arange(-20, 21, 10, dtype=np.int64)
            ctx = context(World.EARTH, LEVEL, r0 + off, c0 + off).reshape(len(CHANNELS), -1).mean(1)
            ys.append(np.log(rms / (sigma * f)))
            xs.append(ctx)
    return np.array(ys), np.array(xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/fractal_context.py", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    a = ap.parse_args(argv)
    y, x = windows(a.data)
    print(f"{len(y)} windows: log(detail / expected) mean {y.mean():+.2f}, sd {y.std():.2f}")
    groups = {}
    for k, name in enumerate(CHANNELS[1:13], start=1):
        sel = x[:, k] > 0.6
        if sel.sum() >= 10:
            groups[name] = {"n": int(sel.sum()), "factor_vs_all": float(np.exp(y[sel].mean() - y.mean()))}
            print(f"  {name:12s} n={sel.sum():5d}  x{groups[name]['factor_vs_all']:.2f} of all windows")
    cover, climate = x[:, 6:13], x[:, 1:6]
    ok = cover.sum(1) > 0.5
    design = np.c_[cover, climate[:, 1:]][ok]
    coef = np.linalg.lstsq(design, y[ok], rcond=None)[0]
    r2 = 1.0 - np.var(y[ok] - design @ coef) / np.var(y[ok])
    names = list(CHANNELS[6:13]) + [f"{c} vs climate_A" for c in CHANNELS[2:6]]
    print("joint fit (log units):", ", ".join(f"{n} {c:+.2f}" for n, c in zip(names, coef, strict=True)),
          f"R^2 {r2:.2f}")
    print(json.dumps({"bench": "fractal_context", "windows": len(y), "mean_log_ratio": float(y.mean()),
                      "groups": groups, "joint": dict(zip(names, map(float, coef), strict=True)), "r2": float(r2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
