"""The procedural refiner where users meet it: v5 (shipped) against v4 and bicubic.

    PYTHONPATH=. python bench/fractal.py [--data ../shared/data] [--quick]

Three measures, the baselines in the same run (docs/GENERATOR.md, "The fractal refiner"):

1. median ground slope of generated earth tiles at levels 6..16 over Paris, the Alps,
   Manaus, the Colorado Front Range and the Po plain under the Alps (seed 7): plains must
   stay plains down to metres;
2. the earth world against located DEMs: slope-distribution W1 between each DEM and the
   tile at the level whose spacing is nearest 2 DEM pixels at the DEM's centre;
3. deep refinement: central 257-sample crops of 11 DEMs decimated 16x and refined back
   (plane world, the DEM as its own region): |PSD-slope error|, slope and curvature W1,
   median power ratio per octave (finest first) and the share of octave ratios in 0.5-2x;
4. deep cascade K = 3..6 (``generator.eval.cascade``: the same crops decimated 2^K and refined
   back K levels): share of (crop, K, metric) cells that beat bicubic, share of (crop, K,
   octave) power ratios in 0.5-2x; and terrain-shape measures against the real crops: share of
   plain (slope < 3 deg), Laplacian-curvature skewness (crests sharper than floors: < 0);
5. CPU time of one refine call on a batch of pyramid blocks (16 x 35^2 parents, level 8, where
   all of v4's shaping runs) and CPU per earth tile over the Alps (fresh pyramid, medians of 3
   rounds, v4 and v5 interleaved): cold tiles at levels 9 and 13 (every ancestor block made)
   and warm tiles at level 12 (a 4 x 4 patch, some parents cached).

Prints tables and ends with one JSON line. Needs the data folder for 2-4.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.dem import refine_dem  # noqa: E402
from generator.eval import cascade as C  # noqa: E402
from generator.eval import metrics as M  # noqa: E402
from generator.eval.vehicle import extrema_per_1000  # noqa: E402
from generator.fractal import V4, V6, V6_CARVE, V7, BicubicRefiner, FractalConfig, FractalRefiner  # noqa: E402
from generator.paths import default_data_dir  # noqa: E402
from generator.pyramid import Pyramid, open_world  # noqa: E402
from generator.relief import ConstantRelief  # noqa: E402
from runtime.tiles import TileKey, World, spacing_m  # noqa: E402

CONFIGS = {"v4": V4, "v5": FractalConfig(), "v6": V6, "v6carve": V6_CARVE, "v7": V7}
"""Version 4 (one roughness ceiling, no real-parent knee), the shipped one (v5) and v6's two
presets (the erosion step, generator.erosion; off by default)."""
PLACES = {"paris": (2.35, 48.85), "alps": (7.0, 46.0), "manaus": (-60.0, -3.1), "colorado": (-105.6, 40.1),
          "po_plain": (7.6, 45.1)}
LOCATED = ("colorado_front_range", "bigtujunga", "zion_srtm", "jacksboro", "texas_plains", "st_helens",
           "gabon_N00E010", "spain_gredos_25m", "oregon", "swellendam_srtm", "ecuador_andes_10m")
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
                         _octaves(real, gen, px), extrema_per_1000(gen), extrema_per_1000(real)))
        octs = np.array([r[3] for r in rows])
        out[name] = {"psd_slope_err": float(np.mean([r[0] for r in rows])),
                     "slope_w1_deg": float(np.mean([r[1] for r in rows])),
                     "curvature_w1_per_m": float(np.mean([r[2] for r in rows])),
                     "octave_power_median": [float(v) for v in np.median(octs, axis=0)],
                     "octaves_in_band": float(np.mean((octs > 0.5) & (octs < 2.0))),
                     "extrema_per_1000_median": float(np.median([r[4] for r in rows])),
                     "extrema_per_1000_real_median": float(np.median([r[5] for r in rows]))}
    return out


def _shape(z: np.ndarray, px: float) -> tuple[float, float]:
    """(share of slope < 3 deg, skewness of the Laplacian curvature) of a grid."""
    b = C.BORDER
    z = z[b:-b, b:-b]
    c = M.curvature_per_m(z, px).ravel()
    c = c - c.mean()
    return float(np.mean(M.slope_deg(z, px) < 3.0)), float(np.mean(c**3) / max(np.mean(c**2), 1e-30) ** 1.5)


def deep_cascade(data: Path, levels=(3, 4, 5, 6)) -> dict:
    """generator.eval.cascade on the DEEP crops (each its own region): wins against bicubic,
    octave power in band, and the shape measures of ``_shape`` against the real crop."""
    tables, shapes = {}, {n: [] for n in ("real", *CONFIGS, "bicubic")}
    for dem in DEEP:
        real, px = _crop(data, dem)
        refs = {"bicubic": None}
        for name, cfg in CONFIGS.items():
            refs[name] = FractalRefiner(World.PLANE, cfg, real_parents=True)  # as ``refine`` runs it
            refs[name].relief = ConstantRelief.from_heights(real)
        tables.update(C.run({dem: (real, px)}, refs, levels, log=lambda *_: None))
        shapes["real"].append(_shape(real, px))
        k = max(levels)
        for name, ref in refs.items():
            shapes[name].append(_shape(C.cascade(ref, real[:: 2**k, :: 2**k], px, k, 0), px))
    out = {name: C.wins(tables, name, ("bicubic",)) for name in CONFIGS}
    real = np.array(shapes["real"])
    for name in (*CONFIGS, "bicubic"):
        g = np.array(shapes[name])
        out.setdefault(name, {}).update({
            f"plain_share_err_K{max(levels)}": float(np.mean(np.abs(g[:, 0] - real[:, 0]))),
            f"curv_skew_K{max(levels)}": float(np.median(g[:, 1]))})
    out["real"] = {"plain_share": float(np.mean(real[:, 0])), "curv_skew": float(np.median(real[:, 1]))}
    return out


def timing(reps: int = 5, level: int = 8) -> dict:
    """CPU seconds per refine call on 16 pyramid-sized blocks (33^2 parents plus the refiner's
    margin -> 65^2) at ``level`` (v6's erosion acts from level 10, 76 m, down)."""
    rng = np.random.default_rng(0)
    p = (rng.standard_normal((16, 4, 49, 49)).cumsum(2).cumsum(3) * 20.0).astype(np.float32)
    p[:, 1:] = 0.3
    origins = np.stack([np.arange(16) * 64 + 2**20, np.full(16, 3 * 2**19)], 1).astype(np.int64) << max(0, level - 8)
    out = {}
    for name, cfg in CONFIGS.items():
        ref = FractalRefiner(World.EARTH, cfg)
        off = 8 - ref.margin
        q = np.ascontiguousarray(p[:, :, off : off + 33 + 2 * ref.margin, off : off + 33 + 2 * ref.margin])
        ref.refine(q, level, origins, 7)
        t = time.process_time()
        for _ in range(reps):
            ref.refine(q, level, origins, 7)
        out[name] = (time.process_time() - t) / reps
    return out


def tile_cpu(rounds: int = 3) -> dict:
    """CPU seconds per earth tile over the Alps (see the module doc, measure 5), by config."""
    res = {n: {"cold9": [], "cold13": [], "warm12": []} for n in CONFIGS}
    for rep in range(rounds):
        for n, c in CONFIGS.items():
            pyr = Pyramid(World.EARTH, 7, FractalRefiner(World.EARTH, c))
            pyr.tile(_key(20.0, 10.0, 6))  # anchor data loaded outside the timing
            for level in (9, 13):
                t = time.process_time()
                for i in range(3):
                    pyr.tile(_key(6.5 + 0.4 * i + 0.1 * rep, 45.8 + 0.1 * rep, level))
                res[n][f"cold{level}"].append((time.process_time() - t) / 3)
            k0 = _key(7.3 + 0.05 * rep, 46.2, 12)
            t = time.process_time()
            for dx in range(4):
                for dy in range(4):
                    pyr.tile(TileKey(12, k0.x + dx, k0.y + dy))
            res[n]["warm12"].append((time.process_time() - t) / 16)
    return {n: {k: float(np.median(v)) for k, v in r.items()} for n, r in res.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/fractal.py", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--quick", action="store_true", help="slopes at levels 9 and 16 only")
    ap.add_argument("--v5", default="", metavar="K=V,...", help="override v5 config fields (a sweep)")
    ap.add_argument("--v7", default="", metavar="K=V,...", help="override v7 config fields (a sweep)")
    ap.add_argument("--configs", default="", metavar="NAME,...", help=f"only these of {', '.join(CONFIGS)}")
    a = ap.parse_args(argv)
    for name in [n for n in CONFIGS if a.configs and n not in a.configs.split(",")]:
        del CONFIGS[name]
    if a.v5:
        over = {k: type(getattr(CONFIGS["v5"], k))(v) for k, v in (kv.split("=") for kv in a.v5.split(","))}
        CONFIGS["v5"] = FractalConfig(**over)
    if a.v7 and "v7" in CONFIGS:
        over = {k: type(getattr(V7, k))(v) for k, v in (kv.split("=") for kv in a.v7.split(","))}
        CONFIGS["v7"] = replace(V7, **over)
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
              "octave power (fine->coarse)  in 0.5-2x  extrema/1000 (median; real)")
        for n, r in res["deep_x16"].items():
            print(f"  {n:8s} {r['psd_slope_err']:9.2f} {r['slope_w1_deg']:9.2f} {r['curvature_w1_per_m']:8.4f}  "
                  f"{np.round(r['octave_power_median'], 2)}  {r['octaves_in_band']:.2f}  "
                  f"{r['extrema_per_1000_median']:.1f} ({r['extrema_per_1000_real_median']:.1f})")
        res["deep_cascade"] = dc = deep_cascade(a.data, (3, 6) if a.quick else (3, 4, 5, 6))
        print(f"deep cascade: real plain share {dc['real']['plain_share']:.3f}, curvature skew "
              f"{dc['real']['curv_skew']:.2f}")
        for n in CONFIGS:
            r = dc[n]
            print(f"  {n}: beats bicubic {r['beats_bicubic']:.2f} of {r['cells']} cells, octaves in 0.5-2x "
                  f"{r['octaves_within_0.5_2x']:.2f}; " + ", ".join(
                      f"{k} {v:.3f}" for k, v in r.items() if k.startswith(("plain", "curv"))))
        print("  bicubic: " + ", ".join(f"{k} {v:.3f}" for k, v in dc["bicubic"].items()))
    else:
        print(f"no DEMs under {a.data / 'dem'}: located and deep measures skipped")
    res["refine_cpu_s"] = timing()
    print("CPU per refine call (16 blocks, level 8):", "  ".join(
        f"{n} {v * 1000:.1f} ms" for n, v in res["refine_cpu_s"].items()))
    res["refine_cpu_s_l12"] = timing(level=12)
    print("CPU per refine call (16 blocks, level 12):", "  ".join(
        f"{n} {v * 1000:.1f} ms" for n, v in res["refine_cpu_s_l12"].items()))
    res["tile_cpu_s"] = tile_cpu()
    print("CPU per earth tile, Alps (cold 9 / cold 13 / warm 12):", "  ".join(
        f"{n} " + " / ".join(f"{v * 1000:.0f}" for v in r.values()) + " ms" for n, r in res["tile_cpu_s"].items()))
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
