"""The procedural refiner where users meet it: v3 (shipped) against v2 (the previous law) and bicubic.

    PYTHONPATH=. python bench/fractal.py [--data ../shared/data] [--quick]

Three measures, the baselines in the same run (docs/GENERATOR.md, "The fractal refiner"):

1. median ground slope of generated earth tiles at levels 6..16 over Paris, the Alps,
   Manaus and the Colorado Front Range (seed 7): plains must stay plains down to metres;
2. the earth world against located DEMs: slope-distribution W1 between each DEM and the
   tile at the level whose spacing is nearest 2 DEM pixels at the DEM's centre;
3. deep refinement: central 257-sample crops of 11 DEMs decimated 16x and refined back
   (plane world, the DEM as its own region): |PSD-slope error|, slope and curvature W1,
   median power ratio per octave (finest first) and the share of octave ratios in 0.5-2x.

Prints tables and ends with one JSON line. Needs the data folder for 2 and 3.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.dem import refine_dem  # noqa: E402
from generator.eval import metrics as M  # noqa: E402
from generator.fractal import BicubicRefiner, FractalConfig, FractalRefiner  # noqa: E402
from generator.paths import default_data_dir  # noqa: E402
from generator.pyramid import open_world  # noqa: E402
from runtime.tiles import TileKey, World, spacing_m  # noqa: E402

V2 = FractalConfig(amp_at_1km_m=32.5, hurst=0.912, hurst_fine=None, hurst_coarse=None, regional=False,
                   roughness_measure="slope", relief_ratio=1.86, roughness_exp=0.602, roughness_min=0.048,
                   roughness_max=5.62, ew_corr_samples=1.5)
"""The previous refiner's law and modulation (version 2), as a baseline."""
CONFIGS = {"v2": V2, "v3": FractalConfig()}
PLACES = {"paris": (2.35, 48.85), "alps": (7.0, 46.0), "manaus": (-60.0, -3.1), "colorado": (-105.6, 40.1)}
LOCATED = ("colorado_front_range", "bigtujunga", "zion_srtm", "jacksboro", "texas_plains", "st_helens",
           "gabon_N00E010", "spain_gredos_25m", "oregon", "swellendam_srtm")
DEEP = ("ecuador_andes_10m", "spain_gredos_25m", "bigtujunga", "st_helens", "colorado_front_range",
        "zion_srtm", "gabon_N00E010", "jacksboro", "texas_plains", "oregon", "gmt_tut_relief")


def _key(lon: float, lat: float, level: int) -> TileKey:
    span = 180.0 / 2**level
    return TileKey(level, int((lon + 180) / span), int((90 - lat) / span))


def _slopes(h: np.ndarray, spacing: float, lat: float) -> np.ndarray:
    """Slope (deg) of a tile's grid; east-west spacing shrinks with cos(latitude)."""
    dy = np.diff(h, axis=0)[:, :-1] / spacing
    dx = np.diff(h, axis=1)[:-1] / (spacing * math.cos(math.radians(lat)))
    return np.degrees(np.arctan(np.hypot(dx, dy)))


def slope_by_level(levels: tuple[int, ...]) -> dict:
    out = {}
    for name, cfg in CONFIGS.items():
        pyr = open_world("earth", 7, refiner=FractalRefiner(World.EARTH, cfg))
        out[name] = {p: {L: float(np.median(_slopes(pyr.tile(_key(lon, lat, L)).height.astype(np.float64),
                                                    spacing_m(L), lat))) for L in levels}
                     for p, (lon, lat) in PLACES.items()}
    return out


def against_dems(data: Path) -> dict:
    out = {}
    for name, cfg in CONFIGS.items():
        pyr = open_world("earth", 7, refiner=FractalRefiner(World.EARTH, cfg))
        rows = {}
        for dem in LOCATED:
            d = np.load(data / "dem" / f"{dem}.npz")
            z, px = d["elev"].astype(np.float64), float(d["pixel_m"])
            lon, lat = (float(v) for v in d["center_lonlat"])
            level = int(round(math.log2(spacing_m(0) / (2 * px))))
            s = spacing_m(level)
            step = max(1, int(round(s / px)))
            real = M.slope_deg(z[::step, ::step], px * step)
            gen = M.slope_deg(pyr.tile(_key(lon, lat, level)).height.astype(np.float64), s)
            rows[dem] = {"level": level, "real_median": float(np.nanmedian(real)),
                         "gen_median": float(np.median(gen)),
                         "w1": M.wasserstein1(real[np.isfinite(real)], gen)}
        out[name] = rows
    return out


def _crop(data: Path, dem: str, n: int = 257) -> tuple[np.ndarray, float]:
    d = np.load(data / "dem" / f"{dem}.npz")
    z, px = d["elev"].astype(np.float32), float(d["pixel_m"])
    h, w = z.shape
    n = min(n, (min(h, w) - 1) // 16 * 16 + 1)
    z = z[(h - n) // 2:(h - n) // 2 + n, (w - n) // 2:(w - n) // 2 + n]
    return np.where(np.isfinite(z), z, np.nanmedian(z)), px


def _octaves(real: np.ndarray, gen: np.ndarray, px: float, n: int = 4) -> list[float]:
    f, p = M.radial_psd(real, px)
    _, q = M.radial_psd(gen, px)
    top = f.max()
    return [float(q[(f > top / 2 ** (o + 1)) & (f <= top / 2**o)].sum()
                  / p[(f > top / 2 ** (o + 1)) & (f <= top / 2**o)].sum()) for o in range(n)]


def deep(data: Path, k: int = 4) -> dict:
    out = {}
    for name in (*CONFIGS, "bicubic"):
        rows = []
        for dem in DEEP:
            real, px = _crop(data, dem)
            ref = BicubicRefiner() if name == "bicubic" else FractalRefiner(World.PLANE, CONFIGS[name])
            gen, _ = refine_dem(real[:: 2**k, :: 2**k], px * 2**k, k, seed=3, refiner=ref)
            r = M.realism(real, gen, px)
            rows.append((abs(r["psd_slope"] - r["psd_slope_real"]), r["slope_w1_deg"], r["curvature_w1_per_m"],
                         _octaves(real, gen, px)))
        octs = np.array([r[3] for r in rows])
        out[name] = {"psd_slope_err": float(np.mean([r[0] for r in rows])),
                     "slope_w1_deg": float(np.mean([r[1] for r in rows])),
                     "curvature_w1_per_m": float(np.mean([r[2] for r in rows])),
                     "octave_power_median": [float(v) for v in np.median(octs, axis=0)],
                     "octaves_in_band": float(np.mean((octs > 0.5) & (octs < 2.0)))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/fractal.py", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--quick", action="store_true", help="slopes at levels 9 and 16 only")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    levels = (9, 16) if a.quick else (6, 9, 12, 14, 16)
    res = {"bench": "fractal", "slope_by_level_deg": slope_by_level(levels)}
    print("median slope (deg) by level:", " ".join(f"L{L}" for L in levels))
    for name, places in res["slope_by_level_deg"].items():
        for p, by in places.items():
            print(f"  {name} {p:9s}", " ".join(f"{by[L]:5.1f}" for L in levels))
    if (a.data / "dem").is_dir():
        res["against_dems"] = against_dems(a.data)
        print("slope W1 (deg) vs located DEMs at ~2 DEM pixels:", "  ".join(
            f"{n} mean {np.mean([r['w1'] for r in rows.values()]):.2f}" for n, rows in res["against_dems"].items()))
        res["deep_x16"] = deep(a.data)
        print(f"{'refined back x16':10s} {'|PSD err|':>9s} {'slope W1':>9s} {'curv W1':>8s}  "
              "octave power (fine->coarse)  in 0.5-2x")
        for n, r in res["deep_x16"].items():
            print(f"  {n:8s} {r['psd_slope_err']:9.2f} {r['slope_w1_deg']:9.2f} {r['curvature_w1_per_m']:8.4f}  "
                  f"{np.round(r['octave_power_median'], 2)}  {r['octaves_in_band']:.2f}")
    else:
        print(f"no DEMs under {a.data / 'dem'}: located and deep measures skipped")
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
