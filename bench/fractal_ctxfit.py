"""Does context (climate, land cover, NDVI) explain terrain detail beyond the anchor's relief? (hold-out fit)

    PYTHONPATH=. python bench/fractal_ctxfit.py --data ../shared/data [--split 30]

GLOBE 30" (0-50 N, 0-60 E) in windows of WINDOW x WINDOW samples (0.53 deg) that are at
least 98 % land (GLOBE's packager set the sea to 0). Per window:

- y = log10 rms of the odd-sample residual (real minus the refiner's 4-point cubic of the 2x
  decimated window, both directions: ``generator.eval.lawfit.cubic_residuals``), the detail
  the refiner adds at ~1.85 km parents;
- relief = the std of the anchor's relief heights (``EarthAnchor.relief_height``) in the
  7 x 7 anchor nodes around the window's centre node, as ``generator.relief`` computes it
  (the only relief the refiner sees); also the window's own coarse std, for comparison;
- context = the mean of the context channels (``generator.anchors.context`` at the anchor
  level) over the same 7 x 7 nodes: climate shares B..E (A is the reference), cover shares
  (shrub_grass is the reference), ndvi_max, ndvi_min.

Least squares on the windows west of ``--split`` degrees E, scored on those east of it (and
the reverse). Then the located DEMs (``shared/data/dem``): each DEM's fixed-effect intercept
of the law (one shared slope over all its decimations) against the relief-only factor and
relief + the GLOBE-fitted context term, both at the DEM's centre. Prints tables and one JSON
line (docs/BENCHMARKS.md, "Context-conditioned regional factor").
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
from generator.eval.lawfit import SKIP, cubic_residuals  # noqa: E402
from generator.paths import default_data_dir  # noqa: E402
from generator.pyramid import make_anchor  # noqa: E402
from runtime.tiles import ANCHOR_LEVEL, World, spacing_deg  # noqa: E402

WINDOW = 64
HALF = 3  # anchor nodes each side (generator.relief.WINDOW)
CLIMATE = ["climate_B", "climate_C", "climate_D", "climate_E"]  # against climate_A
COVER = ["forest", "wetland", "crop", "urban", "snow_ice", "barren"]  # against shrub_grass
NDVI = ["ndvi_max", "ndvi_min"]
FEATURES = CLIMATE + COVER + NDVI
SMOOTH_LOG10 = -1.8
"""Windows whose residual is below 10**SMOOTH_LOG10 of their own coarse std (the 2.5 % smoothest:
GLOBE's smoothed patches) are left out in the ``no_smooth`` robustness fit."""


def anchor_window(lat: float, lon: float) -> tuple[float, float, np.ndarray]:
    """(relief std m, mean height km, mean context channels (C,)) over the 7 x 7 anchor nodes
    around (lat, lon)."""
    d = spacing_deg(ANCHOR_LEVEL)
    r0, c0 = int((90.0 - lat) / d), int((lon + 180.0) / d)
    r = np.arange(r0 - HALF, r0 + HALF + 1, dtype=np.int64)
    c = np.arange(c0 - HALF, c0 + HALF + 1, dtype=np.int64)
    h = make_anchor(World.EARTH, 0).relief_height(r, c).astype(np.float64)
    ctx = context(World.EARTH, ANCHOR_LEVEL, r, c).reshape(len(CHANNELS), -1).mean(1)
    return max(float(h.std()), 1.0), float(h.mean()) / 1000.0, ctx


def features(ctx: np.ndarray) -> np.ndarray:
    """Mean context channels (..., C) -> the fit's context features (..., len(FEATURES))."""
    return np.stack([ctx[..., CHANNELS.index(n)] for n in FEATURES], axis=-1)


def globe_windows(data: Path) -> dict[str, np.ndarray]:
    """Per-window arrays: y (log10 rms residual m), log10 anchor relief, log10 own coarse std,
    lon, lat, context features."""
    g = np.load(data / "global" / "globe30s_g10g_west.npz")
    z = g["elev"]
    lat_top, lon_left, step = float(g["lat_top"]), float(g["lon_left"]), float(g["step_deg"])
    out: dict[str, list] = {k: [] for k in ("y", "relief", "height", "own", "lon", "lat", "x", "ctx")}
    for i0 in range(0, z.shape[0] - WINDOW + 1, WINDOW):
        for j0 in range(0, z.shape[1] - WINDOW + 1, WINDOW):
            blk = z[i0:i0 + WINDOW, j0:j0 + WINDOW].astype(np.float64)
            if (blk <= 0).mean() > 0.02:
                continue
            res, _ = cubic_residuals(blk)
            rms = float(np.sqrt(np.mean(res**2)))
            if rms <= 0:
                continue
            lat, lon = lat_top - (i0 + WINDOW / 2) * step, lon_left + (j0 + WINDOW / 2) * step
            relief, height, ctx = anchor_window(lat, lon)
            if ctx[0] < 0.9:  # the anchor window reaches the sea: its relief is the coast's
                continue
            out["y"].append(np.log10(rms))
            out["relief"].append(np.log10(relief))
            out["height"].append(height)
            out["own"].append(np.log10(max(float(blk[::2, ::2].std()), 1.0)))
            out["lon"].append(lon)
            out["lat"].append(lat)
            out["ctx"].append(ctx)
            out["x"].append(features(ctx))
    return {k: np.array(v) for k, v in out.items()}


SETS = {"ctx": FEATURES, "climate": CLIMATE, "cover": COVER + NDVI, "height": ["height"],
        "height_climate": ["height"] + CLIMATE}


def design(w: dict[str, np.ndarray], sel: np.ndarray, ctx: bool | str, rel: str = "relief") -> np.ndarray:
    """Columns 1, log10 relief (``rel``), and the context features of set ``ctx`` (True: all)."""
    cols = [np.ones(sel.sum()), w[rel][sel]]
    if ctx:
        names = SETS["ctx" if ctx is True else ctx]
        cols += [w["height"][sel] if n == "height" else w["x"][sel, FEATURES.index(n)] for n in names]
    return np.column_stack(cols)


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Share of y's variance about its own mean that ``pred`` explains (out of sample: may be < 0)."""
    return float(1.0 - np.mean((y - pred) ** 2) / np.var(y))


def split_scores(w: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray) -> dict:
    """Fit on ``train``, score on ``test``: relief only, relief + context (all features, climate
    only, cover + NDVI only), own std (+ context). ``r2_test`` keeps the training intercept;
    ``r2_test_shape`` lets the test region have its own mean (only the shape is scored)."""
    out = {"n_train": int(train.sum()), "n_test": int(test.sum())}
    y_tr, y_te = w["y"][train], w["y"][test]
    law = -1.57 + 0.63 * w["relief"][test]  # the shipped law's shape (its intercept is for another scale)
    out["shipped_law_r2_test"] = r2(y_te, law + np.mean(y_te - law))
    for name, rel, ctx in (("relief", "relief", False), ("relief_ctx", "relief", True),
                           ("relief_climate", "relief", "climate"), ("relief_cover", "relief", "cover"),
                           ("relief_height", "relief", "height"), ("relief_height_climate", "relief", "height_climate"),
                           ("own", "own", False), ("own_ctx", "own", True)):
        coef, *_ = np.linalg.lstsq(design(w, train, ctx, rel), y_tr, rcond=None)
        pred = design(w, test, ctx, rel) @ coef
        out[name] = {"r2_train": r2(y_tr, design(w, train, ctx, rel) @ coef), "r2_test": r2(y_te, pred),
                     "r2_test_shape": r2(y_te, pred + np.mean(y_te - pred)), "coef": [float(c) for c in coef]}
    return out


def dem_check(data: Path) -> list[dict]:
    """Per located DEM: law intercept (fixed effect, log10 m at 1 km parents), anchor relief,
    mean height and context features at its centre."""
    from generator.eval.lawfit import scale_residuals

    rows, samples = [], []
    for f in sorted((data / "dem").glob("*.npz")):
        if f.stem in SKIP:
            continue
        d = np.load(f)
        if "center_lonlat" not in d.files:
            continue
        lon, lat = (float(v) for v in d["center_lonlat"])
        px = float(d["pixel_m"])
        if px > 1500:  # ETOPO2-class grids: their finest residual is the anchor's own scale
            continue
        sc = scale_residuals(f.stem, d["elev"].astype(np.float32), px)
        if not sc:
            continue
        samples += sc
        relief, height, ctx = anchor_window(lat, lon)
        rows.append({"name": f.stem, "lat": lat, "lon": lon, "relief": np.log10(relief), "height": height,
                     "x": features(ctx), "land": float(ctx[0])})
    dm = np.array([s.d_m for s in samples])
    y = np.log10([np.sqrt(np.mean(s.residual_m**2)) for s in samples])
    names = [r["name"] for r in rows]
    onehot = np.array([[s.name == n for n in names] for s in samples], dtype=np.float64)
    c, *_ = np.linalg.lstsq(np.column_stack([onehot, np.log10(dm / 1000.0)]), y, rcond=None)
    for r, icpt in zip(rows, c[: len(names)], strict=True):
        r["intercept"] = float(icpt)
    return rows


def globe_vs_dem(data: Path) -> list[dict]:
    """GLOBE's own detail against a finer real DEM at the same 30" cells, for every located DEM
    inside the GLOBE tile with pixels < 1/4 of a cell: the DEM block-averaged onto GLOBE's cells
    (pixels whose centre falls in the cell; cells with < 80 % of the modal count dropped), then
    the rms of the same cubic residual on both over the DEM's full-cell rectangle."""
    from generator.anchors.geodesy import dem_to_lonlat

    g = np.load(data / "global" / "globe30s_g10g_west.npz")
    lat_top, lon_left, step = float(g["lat_top"]), float(g["lon_left"]), float(g["step_deg"])
    out = []
    for f in sorted((data / "dem").glob("*.npz")):
        d = np.load(f)
        px = float(d["pixel_m"])
        to_ll = dem_to_lonlat(str(d["crs"])) if "crs" in d.files else None
        if to_ll is None or px > 0.25 * step * 111_320.0:
            continue
        z = d["elev"].astype(np.float64)
        x0, dx, y0, dy = (float(v) for v in d["transform"])
        jj, ii = np.meshgrid(np.arange(z.shape[1]), np.arange(z.shape[0]))
        lat, lon = to_ll(x0 + (jj + 0.5) * dx, y0 + (ii + 0.5) * dy)
        gi = np.floor((lat_top - lat) / step).astype(np.int64)
        gj = np.floor((lon - lon_left) / step).astype(np.int64)
        inside = (gi >= 0) & (gj >= 0) & (gi < g["elev"].shape[0]) & (gj < g["elev"].shape[1])
        if inside.mean() < 0.5:
            continue
        ok = np.isfinite(z) & inside
        i0, j0 = gi[ok].min(), gj[ok].min()
        shape = (gi[ok].max() - i0 + 1, gj[ok].max() - j0 + 1)
        flat = ((gi - i0) * shape[1] + (gj - j0))[ok]
        n = np.bincount(flat, minlength=shape[0] * shape[1]).reshape(shape)
        acc = np.bincount(flat, weights=z[ok], minlength=n.size).reshape(shape)
        full = n >= 0.8 * np.median(n[n > 0])
        rows_ok = np.where(full.mean(1) > 0.9)[0]  # the DEM's edge rows / columns cover part of a cell
        cols_ok = np.where(full.mean(0) > 0.9)[0]
        if rows_ok.size < 24 or cols_ok.size < 24:
            continue
        sl = (slice(rows_ok[0], rows_ok[-1] + 1), slice(cols_ok[0], cols_ok[-1] + 1))
        if not full[sl].all():
            continue
        agg = (acc / np.maximum(n, 1))[sl]
        glob = g["elev"][i0:i0 + shape[0], j0:j0 + shape[1]].astype(np.float64)[sl]
        r_dem, _ = cubic_residuals(agg)
        r_glb, _ = cubic_residuals(glob)
        out.append({"name": f.stem, "cells": list(agg.shape), "rms_dem_m": float(np.sqrt(np.mean(r_dem**2))),
                    "rms_globe_m": float(np.sqrt(np.mean(r_glb**2))),
                    "corr": float(np.corrcoef(agg.ravel(), glob.ravel())[0, 1])})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/fractal_ctxfit.py", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--split", type=float, default=30.0, help="hold-out boundary, degrees E")
    a = ap.parse_args(argv)
    w = globe_windows(a.data)
    west = w["lon"] < a.split
    print(f"{len(w['y'])} GLOBE windows ({west.sum()} west of {a.split} E); log10 rms sd {w['y'].std():.3f}")
    res = {"west_to_east": split_scores(w, west, ~west), "east_to_west": split_scores(w, ~west, west)}
    for k, s in res.items():
        print(f"{k}: train {s['n_train']}, test {s['n_test']};"
              f" shipped law shape R2 test {s['shipped_law_r2_test']:.3f}")
        for m in ("relief", "relief_ctx", "relief_climate", "relief_cover", "relief_height",
                  "relief_height_climate", "own", "own_ctx"):
            print(f"  {m:22s} R2 train {s[m]['r2_train']:.3f}  test {s[m]['r2_test']:.3f}"
                  f"  test (own mean) {s[m]['r2_test_shape']:.3f}")
    robust = {}
    for label, keep in (("no_tropical", w["ctx"][:, CHANNELS.index("climate_A")] < 0.5),
                        ("no_smooth", w["y"] - w["own"] > SMOOTH_LOG10)):
        ws = {k: v[keep] for k, v in w.items()}
        wst = ws["lon"] < a.split
        robust[label] = {"windows": int(keep.sum()), "west_to_east": split_scores(ws, wst, ~wst),
                         "east_to_west": split_scores(ws, ~wst, wst)}
        print(f"{label} ({keep.sum()} windows), R2 test / test (own mean):")
        for k in ("west_to_east", "east_to_west"):
            s = robust[label][k]
            print(f"  {k}: " + ", ".join(f"{m} {s[m]['r2_test']:.3f} / {s[m]['r2_test_shape']:.3f}"
                                          for m in ("relief", "relief_climate", "relief_ctx")))
    full = split_scores(w, np.ones_like(west), np.ones_like(west))["relief_ctx"]["coef"]
    coef_w = np.array(res["west_to_east"]["relief_ctx"]["coef"])
    print("relief+context, west fit (log10): a %+.3f, b %+.3f;" % tuple(coef_w[:2]),
          ", ".join(f"{n} {c:+.3f}" for n, c in zip(FEATURES, coef_w[2:], strict=True)))
    print("relief+context, all windows  : a %+.3f, b %+.3f;" % tuple(full[:2]),
          ", ".join(f"{n} {c:+.3f}" for n, c in zip(FEATURES, full[2:], strict=True)))
    # majority classes: mean residual of the relief-only fit per class (all windows)
    coef_r, *_ = np.linalg.lstsq(design(w, np.ones_like(west), False), w["y"], rcond=None)
    e = w["y"] - design(w, np.ones_like(west), False) @ coef_r
    classes = {}
    for n in CHANNELS[1:13]:
        sel = w["ctx"][:, CHANNELS.index(n)] > 0.6
        if sel.sum() >= 10:
            classes[n] = {"n": int(sel.sum()), "log10_resid": float(e[sel].mean()),
                          "west": float(e[sel & west].mean()) if (sel & west).sum() >= 10 else None,
                          "east": float(e[sel & ~west].mean()) if (sel & ~west).sum() >= 10 else None}
            c = classes[n]
            print(f"  {n:12s} n={c['n']:5d}  relief-only residual {c['log10_resid']:+.3f} (x{10**c['log10_resid']:.2f})"
                  f"  west {c['west'] if c['west'] is None else round(c['west'], 3)}"
                  f"  east {c['east'] if c['east'] is None else round(c['east'], 3)}")
    dems = dem_check(a.data)
    yv = np.array([r["intercept"] for r in dems])
    base = -1.57 + 0.63 * np.array([r["relief"] for r in dems])
    e0 = yv - base - np.mean(yv - base)
    dem_out = {"n": len(dems), "resid_sd_relief": float(e0.std())}
    print(f"{len(dems)} located DEMs: sd of the law intercept about the relief law {e0.std():.3f}")
    terms = {}
    for m in ("relief_ctx", "relief_climate", "relief_height"):
        coef = np.array(res["west_to_east"][m]["coef"][2:])
        names = SETS[{"relief_ctx": "ctx", "relief_climate": "climate", "relief_height": "height"}[m]]
        t = np.array([sum(c * (r["height"] if n == "height" else r["x"][FEATURES.index(n)])
                          for c, n in zip(coef, names, strict=True)) for r in dems])
        e1 = yv - base - t - np.mean(yv - base - t)
        terms[m] = t
        dem_out[m] = {"resid_sd": float(e1.std()), "corr_with_resid": float(np.corrcoef(e0, t)[0, 1])}
        print(f"  + {m} term (west fit): sd {e1.std():.3f}, corr(term, relief-law residual) "
              f"{dem_out[m]['corr_with_resid']:+.2f}")
    # the climate term fitted without tropical windows, on the DEMs outside the tropics
    coef = np.array(robust["no_tropical"]["west_to_east"]["relief_climate"]["coef"][2:])
    sel = np.array([r["x"][:len(CLIMATE)].sum() > 0.5 for r in dems])  # mostly B-E climate
    t = np.array([r["x"][:len(CLIMATE)] @ coef for r in dems])[sel]
    e = e0[sel] - e0[sel].mean()
    t = t - t.mean()
    dem_out["non_tropical_climate"] = {
        "n": int(sel.sum()), "resid_sd_relief": float(e.std()), "resid_sd": float((e - t).std()),
        "corr_with_resid": float(np.corrcoef(e, t)[0, 1]), "best_scale": float(e @ t / (t @ t))}
    q = dem_out["non_tropical_climate"]
    print(f"  {q['n']} non-tropical DEMs, climate term fitted without tropical windows: sd {q['resid_sd_relief']:.3f}"
          f" -> {q['resid_sd']:.3f}, corr {q['corr_with_resid']:+.2f}, best scale {q['best_scale']:.2f}")
    for k, r in enumerate(dems):
        print(f"  {r['name']:22s} relief {10**r['relief']:6.0f} m  resid {e0[k]:+.2f}  terms "
              + " ".join(f"{terms[m][k] - terms[m].mean():+.2f}" for m in terms))
    same = globe_vs_dem(a.data)
    for r in same:
        print(f"  GLOBE vs {r['name']} at the same 30\" cells {r['cells']}:"
              f" residual rms GLOBE {r['rms_globe_m']:.2f} m,"
              f" DEM {r['rms_dem_m']:.2f} m (x{r['rms_globe_m'] / r['rms_dem_m']:.2f}), height corr {r['corr']:.2f}")
    print(json.dumps({"bench": "fractal_ctxfit", "windows": len(w["y"]), "split_lon": a.split, **res,
                      "features": FEATURES, "coef_all": full, "classes": classes,
                      "robust": robust, "dems": dem_out,
                      "globe_vs_dem": same}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
