"""Does the 30" Koppen-Geiger map say where the relief is inside an ETOPO5 cell? (hold-out fit)

    PYTHONPATH=. python bench/koppen_fit.py --data ../shared/data [--split 30]

Outside GLOBE the earth's relief below ETOPO5's 9.8 km comes from the refiner alone. The
Koppen-Geiger main groups at 30" (~0.9 km; Beck et al. 2018 derived them from climatologies
downscaled with elevation) are real data at that resolution, and in mountains their
boundaries follow elevation bands. This measures how much of GLOBE's level-6 height that the
anchor's interpolation misses they explain:

- base: the registered ETOPO5 level-3 nodes interpolated to level 6 (~1.2 km) by the cascade's
  four-point scheme (``generator.anchors.subgrid_build.upsample8``), inside the GLOBE tile away
  from its ramp; truth: GLOBE at the same level-6 nodes; residual = truth - base;
- features: for the classes B, C, D and E, the class indicator (nearest 30" pixel) smoothed
  over 1 and 3 level-6 nodes minus the same over 8 (the part of the class pattern the coarse
  cell does not hold), and the same times the local relief (std of base over 8 nodes / 500 m);
- least squares on land west of ``--split`` degrees E, scored east of it, and the reverse:
  R^2 of the residual, RMSE and correlation of base and base + prediction against GLOBE, over
  all land and over mountains (relief > 200 m), and the medians over 32 x 32-node windows
  (~39 km, >= 90 % land, GLOBE p95 - p5 >= 300 m) as the earth eval's per-DEM numbers are.

Prints a table and one JSON line (docs/BENCHMARKS.md, "Context-conditioned regional factor").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.anchors import subgrid_build as sb  # noqa: E402
from generator.anchors.earth import SPACING_DEG  # noqa: E402
from generator.anchors.globe import GlobeField  # noqa: E402
from generator.paths import default_data_dir  # noqa: E402

CLASSES = (2, 3, 4, 5)  # B arid, C temperate, D cold, E polar/alpine (A is the reference)
WINDOW = 32


def frame(data: Path):
    """base, truth (level-6 nodes, float64 m), Koppen class per node, longitude per column."""
    e = sb.registered_etopo5(data / "global")
    rows3, cols3, g6, rows6, cols6 = sb.globe_box(e)
    base = sb.upsample8(e[np.ix_(rows3, cols3)])  # node (i, j) lands at (8 i - 14, 8 j - 14)
    r_top, c_left = rows6[0] + 14, cols6[0] + 14
    truth = g6[r_top:r_top + base.shape[0], c_left:c_left + base.shape[1]].astype(np.float64)
    gf = GlobeField.load()
    d6 = SPACING_DEG / 8
    lat = 90.0 - (gf.row0 + r_top + np.arange(base.shape[0])) * d6
    lon = -180.0 + (gf.col0 + c_left + np.arange(base.shape[1])) * d6
    k = np.load(data / "global" / "koppen_geiger_30s.npz")["cls"]
    kr = np.clip(((90.0 - lat) * 120).astype(int), 0, k.shape[0] - 1)
    kc = np.clip(((lon + 180.0) * 120).astype(int), 0, k.shape[1] - 1)
    return base, truth, k[np.ix_(kr, kc)], lon


def features(base: np.ndarray, kk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    cols = []
    for c in CLASSES:
        ind = (kk == c).astype(np.float64)
        coarse = ndimage.gaussian_filter(ind, 8.0)
        cols += [ndimage.gaussian_filter(ind, s) - coarse for s in (1.0, 3.0)]
    x = np.stack(cols, -1)
    rel = np.sqrt(np.maximum(ndimage.gaussian_filter(base**2, 8) - ndimage.gaussian_filter(base, 8) ** 2, 0))
    return np.concatenate([x, x * (rel[..., None] / 500.0)], -1), rel


def fit_predict(x: np.ndarray, res: np.ndarray, train: np.ndarray) -> np.ndarray:
    a = np.c_[x[train], np.ones(int(train.sum()))]
    beta, *_ = np.linalg.lstsq(a, res[train], rcond=None)
    return x @ beta[:-1] + beta[-1]


def scores(base, truth, pred, mask) -> dict:
    b, t, p = base[mask], truth[mask], pred[mask]
    res = t - b
    return {"r2": float(1 - np.mean((res - p) ** 2) / np.var(res)),
            "rmse_m": [float(np.sqrt(np.mean((b - t) ** 2))), float(np.sqrt(np.mean((b + p - t) ** 2)))],
            "corr": [float(np.corrcoef(b, t)[0, 1]), float(np.corrcoef(b + p, t)[0, 1])]}


def windows(base, truth, pred, mask) -> dict:
    c0, c1, r0, r1 = [], [], [], []
    for i in range(0, base.shape[0] - WINDOW, WINDOW):
        for j in range(0, base.shape[1] - WINDOW, WINDOW):
            m = mask[i:i + WINDOW, j:j + WINDOW]
            if m.mean() < 0.9:
                continue
            t = truth[i:i + WINDOW, j:j + WINDOW][m]
            if np.subtract(*np.percentile(t, [95, 5])) < 300:
                continue
            b, p = base[i:i + WINDOW, j:j + WINDOW][m], pred[i:i + WINDOW, j:j + WINDOW][m]
            c0.append(np.corrcoef(b, t)[0, 1])
            c1.append(np.corrcoef(b + p, t)[0, 1])
            r0.append(np.sqrt(np.mean((b - t) ** 2)))
            r1.append(np.sqrt(np.mean((b + p - t) ** 2)))
    c0, c1, r0, r1 = map(np.asarray, (c0, c1, r0, r1))
    return {"n": len(c0), "corr_median": [float(np.median(c0)), float(np.median(c1))],
            "rmse_median_m": [float(np.median(r0)), float(np.median(r1))],
            "share_corr_better": float(np.mean(c1 > c0)), "share_rmse_better": float(np.mean(r1 < r0))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--split", type=float, default=30.0, help="fit on one side of this longitude, score on the other")
    args = ap.parse_args(argv)
    t0 = time.time()
    base, truth, kk, lon = frame(args.data)
    x, rel = features(base, kk)
    res = truth - base
    land = (truth > 0) & (kk > 0)
    west = (lon < args.split)[None, :] & land
    east = (lon >= args.split)[None, :] & land
    out = {}
    print(f"{'fit -> test':14s} {'where':10s} {'R2 res':>7s} {'RMSE base -> +Koppen m':>24s} "
          f"{'corr base -> +Koppen':>22s}")
    for name, train, test in (("west -> east", west, east), ("east -> west", east, west)):
        pred = fit_predict(x, res, train)
        row = {"land": scores(base, truth, pred, test), "mountains": scores(base, truth, pred, test & (rel > 200)),
               "windows": windows(base, truth, pred, test)}
        out[name] = row
        for where in ("land", "mountains"):
            s = row[where]
            print(f"{name:14s} {where:10s} {s['r2']:7.3f} {s['rmse_m'][0]:11.1f} -> {s['rmse_m'][1]:8.1f}"
                  f" {s['corr'][0]:9.4f} -> {s['corr'][1]:8.4f}")
        w = row["windows"]
        print(f"{name:14s} {'windows':10s} {'':7s} {w['rmse_median_m'][0]:11.0f} -> {w['rmse_median_m'][1]:8.0f}"
              f" {w['corr_median'][0]:9.3f} -> {w['corr_median'][1]:8.3f}   ({w['n']} windows; better corr in "
              f"{w['share_corr_better']:.2f}, better RMSE in {w['share_rmse_better']:.2f})")
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
