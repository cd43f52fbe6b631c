"""Earth fidelity: the earth world against real elevation where users meet it.

Three tables, each with the anchor-alone baseline (the ``bicubic`` refiner:
the anchor interpolated, with the same land/water rule) beside the refiner:

- **located DEMs** (``../shared/data/dem``): at ~35 m, ~140 m and ~550 m (levels
  11, 9, 7: 38, 153, 611 m at the equator) on a square metric grid in the DEM's
  own projection (at most 192 x 192 points about its centre, only where the DEM
  is finer than the level). Real = the DEM smoothed by a Gaussian of half the
  level spacing and read bilinearly; generated = the pyramid's level read
  bilinearly at the grid points' lon/lat. RMSE, bias (generated - real), Pearson
  correlation, relief ratio (p95 - p5 generated over real), slope W1
  (:func:`generator.eval.metrics.wasserstein1` of :func:`~generator.eval.metrics.slope_deg`).
  ``bedmap_antarctica`` (bed under the ice) is left out. Datum shifts of the
  NAD27 / ED50 grids (~100-200 m) are ignored.
- **GLOBE at ~550 m**: windows of 0.5 deg in the GLOBE 30" tile (0-50 N, 0-60 E),
  same measures at level 7 on the level's own lon/lat grid.
- **landmarks**: the highest generated sample within 3 km of eight summits at
  level 12 (~19 m), against the real height; the share of land samples (land per
  the 30" mask) below 0 m within 5 km of five inland cities at level 11, and in
  the level-6 tile (2.8 deg) holding each city; the generated height and water
  flag at a point well inside ten lakes at level 11, against the real surface.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generator.anchors.geodesy import dem_to_lonlat
from generator.eval import metrics
from generator.pyramid import Pyramid
from runtime.tiles import T, TileKey, spacing_deg, spacing_m

DEM_LEVELS = {"35m": 11, "140m": 9, "550m": 7}
GRID_MAX = 192
SUMMITS = {  # name: (lat, lon, real height m)
    "Everest": (27.9881, 86.9250, 8849.0), "K2": (35.8825, 76.5133, 8611.0),
    "Mont Blanc": (45.8326, 6.8652, 4808.0), "Kilimanjaro": (-3.0674, 37.3556, 5895.0),
    "Denali": (63.0692, -151.0070, 6190.0), "Aconcagua": (-32.6532, -70.0109, 6961.0),
    "Fuji": (35.3606, 138.7274, 3776.0), "Elbrus": (43.3499, 42.4453, 5642.0),
}
CITIES = {"Paris": (48.8566, 2.3522), "Manaus": (-3.1190, -60.0217), "Beijing": (39.9042, 116.4074),
          "Chicago": (41.8781, -87.6298), "Moscow": (55.7558, 37.6173)}
LAKES = {  # name: (lat, lon, real surface m; lake levels vary by metres over the years)
    "Victoria": (-1.0, 33.0, 1134.0), "Superior": (47.7, -87.5, 183.0), "Michigan": (44.0, -87.0, 176.0),
    "Caspian": (42.0, 51.0, -28.0), "Baikal": (53.5, 108.0, 456.0), "Titicaca": (-15.8, -69.4, 3812.0),
    "Geneva": (46.43, 6.55, 372.0), "Constance": (47.6, 9.4, 395.0), "Tanganyika": (-6.0, 29.5, 773.0),
    "Dead Sea": (31.5, 35.5, -430.0),
}
GLOBE_WINDOWS = {"Alps": (46.3, 8.0), "Caucasus": (43.0, 43.0), "Zagros": (32.5, 49.5),
                 "Anatolia": (39.0, 35.0), "Ethiopia": (9.5, 39.0), "Tibesti": (20.8, 17.8),
                 "Atlas-Tunisia": (35.5, 9.0), "Yemen": (15.0, 44.0)}


# ---------------------------------------------------------------- sampling the earth field

def sample_field(p: Pyramid, level: int, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Height (m) of ``p`` at ``level``, bilinear at points lat, lon (degrees, same shape)."""
    d = spacing_deg(level)
    r, c = (90.0 - lat) / d, (lon + 180.0) / d
    r0, c0 = int(np.floor(r.min())), int(np.floor(c.min()))
    h, w = int(np.floor(r.max())) - r0 + 2, int(np.floor(c.max())) - c0 + 2
    z = p.region(level, r0, c0, h, w)[0].astype(np.float64)
    fr, fc = r - r0, c - c0
    i, j = np.minimum(np.floor(fr).astype(np.int64), h - 2), np.minimum(np.floor(fc).astype(np.int64), w - 2)
    tr, tc = fr - i, fc - j
    return ((z[i, j] * (1 - tc) + z[i, j + 1] * tc) * (1 - tr)
            + (z[i + 1, j] * (1 - tc) + z[i + 1, j + 1] * tc) * tr)


# ---------------------------------------------------------------- DEM grids

def _smooth_nan(z: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing that ignores NaN; cells with < 99 % valid weight become NaN."""
    from scipy import ndimage

    if sigma_px < 0.5:
        return z
    ok = np.isfinite(z)
    num = ndimage.gaussian_filter(np.where(ok, z, 0.0), sigma_px, mode="nearest")
    den = ndimage.gaussian_filter(ok.astype(np.float64), sigma_px, mode="nearest")
    return np.where(den > 0.99, num / np.maximum(den, 1e-9), np.nan)


def _bilinear_px(z: np.ndarray, fi: np.ndarray, fj: np.ndarray) -> np.ndarray:
    i = np.clip(np.floor(fi).astype(np.int64), 0, z.shape[0] - 2)
    j = np.clip(np.floor(fj).astype(np.int64), 0, z.shape[1] - 2)
    ti, tj = fi - i, fj - j
    return ((z[i, j] * (1 - tj) + z[i, j + 1] * tj) * (1 - ti) + (z[i + 1, j] * (1 - tj) + z[i + 1, j + 1] * tj) * ti)


def dem_grid(d, pixel_target_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Real heights on a square grid of ``pixel_target_m`` about the DEM's centre, and the
    grid's lat, lon: three (n, n) arrays, or None when the DEM is too small or coarse."""
    to_ll = dem_to_lonlat(str(d["crs"]))
    px = float(d["pixel_m"])
    if to_ll is None or px > pixel_target_m * 0.75:
        return None
    z = _smooth_nan(d["elev"].astype(np.float64), 0.5 * pixel_target_m / px)
    x0, dx, y0, dy = (float(v) for v in d["transform"])
    step = pixel_target_m / px  # DEM pixels per grid point
    n = min(GRID_MAX, int((min(z.shape) - 3) / step))
    if n < 24:
        return None
    ci, cj = (z.shape[0] - 1) / 2.0, (z.shape[1] - 1) / 2.0
    off = (np.arange(n) - (n - 1) / 2.0) * step
    fi, fj = np.meshgrid(ci + off, cj + off, indexing="ij")
    real = _bilinear_px(z, fi, fj)
    if not np.isfinite(real).all():
        keep = np.isfinite(real).mean()
        if keep < 0.6:
            return None
    lat, lon = to_ll(x0 + (fj + 0.5) * dx, y0 + (fi + 0.5) * dy)
    return real, lat, lon


def agreement(real: np.ndarray, gen: np.ndarray, pixel_m: float) -> dict:
    """RMSE, bias, correlation, relief ratio (p95-p5) and slope W1 of gen against real, (n, n) grids."""
    ok = np.isfinite(real)
    r, g = real[ok], gen[ok]
    rel_r = np.percentile(r, 95) - np.percentile(r, 5)
    rel_g = np.percentile(g, 95) - np.percentile(g, 5)
    corr = float(np.corrcoef(r, g)[0, 1]) if r.std() > 0 and g.std() > 0 else float("nan")
    return {"rmse_m": float(np.sqrt(np.mean((g - r) ** 2))), "bias_m": float(np.mean(g - r)), "corr": corr,
            "relief_ratio": float(rel_g / rel_r) if rel_r > 0 else float("nan"),
            "slope_w1_deg": metrics.wasserstein1(metrics.slope_deg(real, pixel_m), metrics.slope_deg(gen, pixel_m))}


# ---------------------------------------------------------------- the tables

def dem_table(pyramids: dict[str, Pyramid], data_dir: Path) -> list[dict]:
    """One row per (DEM, scale, refiner): {dem, scale, level, n, refiner, rmse_m, ...}."""
    rows = []
    for path in sorted((Path(data_dir) / "dem").glob("*.npz")):
        if path.stem == "bedmap_antarctica":
            continue
        with np.load(path) as d:
            for scale, level in DEM_LEVELS.items():
                grid = dem_grid(d, spacing_m(level))
                if grid is None:
                    continue
                real, lat, lon = grid
                for name, p in pyramids.items():
                    gen = sample_field(p, level, lat, lon)
                    rows.append({"dem": path.stem, "scale": scale, "level": level, "n": int(real.shape[0]),
                                 "refiner": name, **agreement(real, gen, spacing_m(level))})
    return rows


def globe_table(pyramids: dict[str, Pyramid], data_dir: Path, level: int = 7, half_deg: float = 0.25) -> list[dict]:
    """GLOBE 30" windows against the field at ``level`` on its own lon/lat grid (metric slope
    uses the north-south spacing; windows are <= 0.5 deg, so east-west shrink is ignored)."""
    path = Path(data_dir) / "global" / "globe30s_g10g_west.npz"
    if not path.exists():
        return []
    g = np.load(path)
    elev = g["elev"].astype(np.float64)
    lat_top, lon_left, step = float(g["lat_top"]), float(g["lon_left"]), float(g["step_deg"])
    d = spacing_deg(level)
    rows = []
    for name, (lat_c, lon_c) in GLOBE_WINDOWS.items():
        r0, c0 = int(round((90.0 - lat_c - half_deg) / d)), int(round((lon_c - half_deg + 180.0) / d))
        n = int(2 * half_deg / d)
        lat = 90.0 - (r0 + np.arange(n)) * d
        lon = -180.0 + (c0 + np.arange(n)) * d
        la, lo = np.meshgrid(lat, lon, indexing="ij")
        real = _bilinear_px(elev, (lat_top - la) / step - 0.5, (lo - lon_left) / step - 0.5)
        for rname, p in pyramids.items():
            gen = p.region(level, r0, c0, n, n)[0].astype(np.float64)
            gen_land = np.maximum(gen, 0.0)  # GLOBE reads 0 m at sea and below sea level
            rows.append({"window": name, "level": level, "refiner": rname,
                         **agreement(real, gen_land, spacing_m(level))})
    return rows


def _disc(p: Pyramid, level: int, lat: float, lon: float, radius_m: float):
    """Samples of ``level`` within ``radius_m`` of (lat, lon): heights, lat, lon (1-D)."""
    d = spacing_deg(level)
    dr = radius_m / spacing_m(level)
    dc = dr / max(np.cos(np.radians(lat)), 1e-3)
    rc, cc = (90.0 - lat) / d, (lon + 180.0) / d
    r0, c0 = int(np.floor(rc - dr)), int(np.floor(cc - dc))
    h, w = int(np.ceil(2 * dr)) + 2, int(np.ceil(2 * dc)) + 2
    z = p.region(level, r0, c0, h, w)[0]
    la = 90.0 - (r0 + np.arange(h)) * d
    lo = -180.0 + (c0 + np.arange(w)) * d
    LA, LO = np.meshgrid(la, lo, indexing="ij")
    dist = np.hypot((LA - lat) * 111_320.0, (LO - lon) * 111_320.0 * np.cos(np.radians(lat)))
    inside = dist <= radius_m
    return z[inside], LA[inside], LO[inside]


def landmark_table(pyramids: dict[str, Pyramid], summit_level: int = 12, city_level: int = 11) -> dict:
    """{"summits": rows, "cities": rows}: generated summit heights and below-0 land shares."""
    from generator.anchors.landwater import LandWater

    lw = LandWater.load()  # land per the 30" mask, whatever the pyramids' anchors do
    summits, cities = [], []
    for name, (lat, lon, real) in SUMMITS.items():
        row = {"summit": name, "real_m": real}
        for rname, p in pyramids.items():
            z, _, _ = _disc(p, summit_level, lat, lon, 3000.0)
            row[rname] = float(z.max())
        summits.append(row)
    for name, (lat, lon) in CITIES.items():
        row = {"city": name}
        for rname, p in pyramids.items():
            z, la, lo = _disc(p, city_level, lat, lon, 5000.0)
            land = lw.land_fraction(la, lo) >= 0.5
            row[rname] = float((z[land] < 0).mean()) if land.any() else float("nan")
            d6 = spacing_deg(6)
            key = TileKey(6, int((lon + 180.0) / d6) // T, int((90.0 - lat) / d6) // T)
            t6 = p.tile(key).height
            la6 = 90.0 - (key.y * T + np.arange(T + 1)) * d6
            lo6 = -180.0 + (key.x * T + np.arange(T + 1)) * d6
            land6 = lw.land_fraction(*np.meshgrid(la6, lo6, indexing="ij")) >= 0.5
            row[rname + "_tile6"] = float((t6[land6] < 0).mean())
        cities.append(row)
    lakes = []
    for name, (lat, lon, real) in LAKES.items():
        row = {"lake": name, "real_m": real}
        for rname, p in pyramids.items():
            z = sample_field(p, city_level, np.array([lat]), np.array([lon]))
            row[rname] = float(z[0])
            lk = getattr(p.anchor, "lakes", None)
            row[rname + "_water"] = bool(lk is not None and lk.water(np.array([lat]), np.array([lon]))[0][0])
        lakes.append(row)
    return {"summits": summits, "cities": cities, "lakes": lakes}


def run(data_dir: Path, seed: int = 0, refiner: str = "fractal", anchor=None, print_fn=print) -> dict:
    """All three tables for ``refiner`` and the anchor alone (``bicubic``); prints and returns them."""
    base = Pyramid("earth", seed, refiner, anchor=anchor)
    pyramids = {refiner: base, "anchor": Pyramid("earth", seed, "bicubic", anchor=base.anchor)}
    report = {"model": base.model_id, "dems": dem_table(pyramids, data_dir),
              "globe": globe_table(pyramids, data_dir), **landmark_table(pyramids)}
    print_report(report, refiner, print_fn)
    return report


def print_report(report: dict, refiner: str, print_fn=print) -> None:
    names = (refiner, "anchor")
    print_fn(f"earth fidelity ({report['model']}); generated - real")
    print_fn(f"{'dem':22s} {'scale':5s} {'n':>4s} {'refiner':8s} {'RMSE m':>7s} {'bias m':>7s} {'corr':>6s} "
             f"{'relief':>6s} {'slopeW1':>7s}")
    for r in report["dems"]:
        print_fn(f"{r['dem']:22s} {r['scale']:5s} {r['n']:4d} {r['refiner']:8s} {r['rmse_m']:7.1f} "
                 f"{r['bias_m']:7.1f} {r['corr']:6.3f} {r['relief_ratio']:6.2f} {r['slope_w1_deg']:7.2f}")
    for scale in DEM_LEVELS:
        for n in names:
            rs = [r for r in report["dems"] if r["scale"] == scale and r["refiner"] == n]
            if rs:
                print_fn(f"{'median':22s} {scale:5s} {len(rs):4d} {n:8s} {np.median([r['rmse_m'] for r in rs]):7.1f} "
                         f"{np.median([r['bias_m'] for r in rs]):7.1f} {np.median([r['corr'] for r in rs]):6.3f} "
                         f"{np.median([r['relief_ratio'] for r in rs]):6.2f} "
                         f"{np.median([r['slope_w1_deg'] for r in rs]):7.2f}")
    if report["globe"]:
        print_fn(f"\n{'GLOBE window':22s} {'level':5s} {'':4s} {'refiner':8s} {'RMSE m':>7s} {'bias m':>7s} "
                 f"{'corr':>6s} {'relief':>6s} {'slopeW1':>7s}")
        for r in report["globe"]:
            print_fn(f"{r['window']:22s} {r['level']:5d} {'':4s} {r['refiner']:8s} {r['rmse_m']:7.1f} "
                     f"{r['bias_m']:7.1f} {r['corr']:6.3f} {r['relief_ratio']:6.2f} {r['slope_w1_deg']:7.2f}")
    print_fn(f"\n{'summit (max within 3 km, ~19 m)':32s} {'real m':>7s} " + " ".join(f"{n:>9s}" for n in names)
             + " " + " ".join(f"{n + ' %':>10s}" for n in names))
    for r in report["summits"]:
        print_fn(f"{r['summit']:32s} {r['real_m']:7.0f} " + " ".join(f"{r[n]:9.0f}" for n in names) + " "
                 + " ".join(f"{100 * (r[n] / r['real_m'] - 1):+10.1f}" for n in names))
    print_fn(f"\n{'city: land < 0 m within 5 km':32s} " + " ".join(f"{n:>9s}" for n in names)
             + " " + " ".join(f"{n + ' L6':>11s}" for n in names))
    for r in report["cities"]:
        print_fn(f"{r['city']:32s} " + " ".join(f"{100 * r[n]:8.2f}%" for n in names) + " "
                 + " ".join(f"{100 * r[n + '_tile6']:10.2f}%" for n in names))
    print_fn(f"\n{'lake: height at level 11':32s} {'real m':>7s} " + " ".join(f"{n:>9s}" for n in names)
             + " " + " ".join(f"{n + ' water':>13s}" for n in names))
    for r in report.get("lakes", []):
        print_fn(f"{r['lake']:32s} {r['real_m']:7.0f} " + " ".join(f"{r[n]:9.0f}" for n in names) + " "
                 + " ".join(f"{str(r[n + '_water']):>13s}" for n in names))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from generator.paths import default_data_dir

    ap = argparse.ArgumentParser(prog="python -m generator.eval.earth", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refiner", default="fractal")
    ap.add_argument("--json", type=Path, help="also write the report here")
    a = ap.parse_args(argv)
    report = run(a.data, a.seed, a.refiner)
    if a.json:
        a.json.write_text(json.dumps(report, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
