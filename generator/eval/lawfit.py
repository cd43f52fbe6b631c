"""Fit the fractal refiner's roughness-vs-scale law on real DEMs (docs/GENERATOR.md).

Method (the refiner's own question, asked of real terrain): for every DEM and
every decimation 2^k that leaves at least 24 x 24 samples, take the even
samples as parents (spacing d = 2 * pixel * 2^k) and predict the odd samples
with the refiner's 4-point cubic. The residuals are the detail a refiner must
add. Then

1. the law: least squares of log10(rms residual) on log10(d / 1 km) over all
   (DEM, scale) pairs with one intercept per DEM (fixed effects) gives ``hurst``
   (the shared slope) and ``amp_at_1km_m`` (10**median intercept). With two knots
   (``knots_m``) the slope is piecewise: ``hurst_fine`` below the fine knot, ``hurst``
   between, ``hurst_coarse`` above the coarse knot (continuous in log-log): real relief
   is much smoother than one power law below a few hundred metres and relatively
   rougher above a few kilometres (docs/GENERATOR.md);
2. the local modulation: at each new sample, the parents' roughness ratio R
   (central differences divided by 2 sigma(d), as in the refiner) is binned by
   quantiles; log(rms residual / sigma(d)) against log R per bin gives the
   exponent ``roughness_exp`` (slope) and ``relief_ratio`` (the R where the
   modulation is 1); ``roughness_min/max`` are the 2nd / 98th percentiles of
   R / relief_ratio.

Pure functions of arrays; ``main`` reads the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.fractal import hinges, law_sigma_m
from generator.paths import default_data_dir

SKIP = {"bedmap_antarctica"}  # bed under ice, stereographic scale varies +-4 %


@dataclass(frozen=True)
class Residuals:
    """Detail a refiner must add at one scale: parent spacing ``d_m``, residuals and local R."""

    name: str
    d_m: float
    residual_m: np.ndarray  # (N,) float64
    slope_sum: np.ndarray  # (N,) float64: (|dz_ns| + |dz_ew|) / 2 of the adjacent parent, metres


def cubic_residuals(z: np.ndarray, measure: str = "slope") -> tuple[np.ndarray, np.ndarray]:
    """Residuals of the 4-point cubic at the odd samples of z (H, W) and the parents' mean
    |central difference| next to each; NaN-free pairs only. Returns ((N,), (N,)) float64."""
    p = z[::2, ::2].astype(np.float64)
    hp, wp = p.shape
    if hp < 5 or wp < 5:
        return np.empty(0), np.empty(0)

    def cub(a, b, c, d):
        return (9.0 * (b + c) - (a + d)) / 16.0

    res, rel = [], []
    if measure == "curvature":  # second differences: roughness apart from the tilt
        dns = np.abs(p[2:, 1:-1] - 2.0 * p[1:-1, 1:-1] + p[:-2, 1:-1])
        dew = np.abs(p[1:-1, 2:] - 2.0 * p[1:-1, 1:-1] + p[1:-1, :-2])
    elif measure == "slope":
        dns = np.abs(p[2:, 1:-1] - p[:-2, 1:-1])  # at parents 1..hp-2, 1..wp-2
        dew = np.abs(p[1:-1, 2:] - p[1:-1, :-2])
    else:
        raise ValueError(f"measure must be 'slope' or 'curvature', got {measure!r}")
    slope = 0.5 * (dns + dew)  # (hp-2, wp-2)
    # horizontal midpoints between parents (i, j), (i, j+1) for i in 1..hp-2, j in 1..wp-3
    hx = cub(p[1:-1, 0:-3], p[1:-1, 1:-2], p[1:-1, 2:-1], p[1:-1, 3:])
    true_h = z[2 : 2 * hp - 2 : 2, 3 : 2 * wp - 3 : 2][: hx.shape[0], : hx.shape[1]]
    res.append(true_h - hx[: true_h.shape[0], : true_h.shape[1]])
    rel.append(0.5 * (slope[:, :-1] + slope[:, 1:])[: true_h.shape[0], : true_h.shape[1]])
    vy = cub(p[0:-3, 1:-1], p[1:-2, 1:-1], p[2:-1, 1:-1], p[3:, 1:-1])
    true_v = z[3 : 2 * hp - 3 : 2, 2 : 2 * wp - 2 : 2][: vy.shape[0], : vy.shape[1]]
    res.append(true_v - vy[: true_v.shape[0], : true_v.shape[1]])
    rel.append(0.5 * (slope[:-1] + slope[1:])[: true_v.shape[0], : true_v.shape[1]])
    r = np.concatenate([a.ravel() for a in res])
    s = np.concatenate([a.ravel() for a in rel])
    ok = np.isfinite(r) & np.isfinite(s)
    return r[ok], s[ok]


def scale_residuals(name: str, z: np.ndarray, pixel_m: float, min_size: int = 24,
                    first_k: int = 0, measure: str = "slope") -> list[Residuals]:
    """Residuals of one DEM at every decimation 2^k, k >= first_k, leaving >= min_size samples a side.

    k = 0 (odd samples at the native pixel) is included by default: DEM production smooths
    the finest octave (SRTM 3" is smoother than its pixel), and that is the terrain a refiner
    is compared with; ``first_k=1`` fits the law without it (docs/GENERATOR.md gives both).
    """
    out, k = [], first_k
    while min(z.shape) // 2**k >= min_size:
        zk = z[:: 2**k, :: 2**k]
        r, s = cubic_residuals(zk, measure)
        if r.size > 200:
            out.append(Residuals(name, 2.0 * pixel_m * 2**k, r, s))
        k += 1
    return out


@dataclass(frozen=True)
class LawFit:
    amp_at_1km_m: float
    hurst: float
    relief_ratio: float
    roughness_exp: float
    roughness_min: float
    roughness_max: float
    r2: float
    points: list  # [(name, d_m, rms_m)]
    hurst_fine: float | None = None  # slope below fine_knot_m (None: one power law)
    hurst_coarse: float | None = None  # slope above coarse_knot_m
    fine_knot_m: float = 0.0
    coarse_knot_m: float = 0.0

    def sigma_m(self, d_m):
        return law_sigma_m(d_m, self.amp_at_1km_m, self.hurst, self.hurst_fine, self.hurst_coarse,
                           self.fine_knot_m, self.coarse_knot_m)


def fit_law(samples: list[Residuals], bins: int = 10, knots_m: tuple[float, float] | None = None) -> LawFit:
    """Fit law and modulation (module doc) to residuals from many DEMs and scales.

    knots_m: (fine, coarse) metres for the piecewise law, or None for one power law."""
    d = np.array([s.d_m for s in samples])
    rms = np.array([np.sqrt(np.mean(s.residual_m**2)) for s in samples])
    x, y = np.log10(d / 1000.0), np.log10(rms)
    # Fixed effects: one intercept per DEM (its terrain's roughness), one shared slope (how a
    # terrain's detail shrinks with scale, which is what the refiner cascade applies level by level).
    names = sorted({s.name for s in samples})
    onehot = np.array([[s.name == n for n in names] for s in samples], dtype=np.float64)
    cols = [onehot, x[:, None]]
    if knots_m is not None:
        lo, hi = hinges(x, *knots_m)
        cols += [lo[:, None], hi[:, None]]
    design = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    k = len(names)
    icpts, hurst = coef[:k], float(coef[k])
    shape = {}
    if knots_m is not None:
        shape = dict(hurst_fine=hurst + float(coef[k + 1]), hurst_coarse=hurst + float(coef[k + 2]),
                     fine_knot_m=float(knots_m[0]), coarse_knot_m=float(knots_m[1]))
    pred = design @ coef
    r2 = 1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    amp = 10.0 ** float(np.median(icpts))  # the median terrain; the modulation spreads around it
    lr, lm, ratios = [], [], []
    for s in samples:
        sig = law_sigma_m(s.d_m, amp, hurst, **shape)
        ratio = s.slope_sum / (2.0 * sig)
        ratios.append(ratio)
        edges = np.quantile(ratio, np.linspace(0, 1, bins + 1))
        idx = np.clip(np.searchsorted(edges, ratio, side="right") - 1, 0, bins - 1)
        for b in range(bins):
            sel = idx == b
            if sel.sum() >= 20 and np.median(ratio[sel]) > 0:
                lr.append(np.log10(np.median(ratio[sel])))
                lm.append(np.log10(np.sqrt(np.mean(s.residual_m[sel] ** 2)) / sig))
    gamma, c = np.polyfit(lr, lm, 1)
    kappa = 10.0 ** (-c / gamma)
    allr = np.concatenate(ratios) / kappa
    lo, hi = np.quantile(allr[allr > 0], [0.02, 0.98])
    pts = [(s.name, float(s.d_m), float(r)) for s, r in zip(samples, rms, strict=True)]
    return LawFit(float(amp), float(hurst), float(kappa), float(gamma), float(lo), float(hi), float(r2), pts, **shape)


def colour_points(name: str, rgb: np.ndarray, pixel_m: float, first_k: int = 1,
                  min_size: int = 40) -> list[tuple[str, float, float]]:
    """(name, d_m, relative rms residual) of the cubic on an (H, W, 3) image at 2^k block means.

    Relative = rms residual / mean value, averaged over the three channels (the refiner
    multiplies colour by 1 + detail).
    """
    out, k = [], first_k
    while min(rgb.shape[:2]) // 2**k >= min_size:
        # pixels are area means: decimate by 2^k x 2^k block means (subsampling would alias a
        # flat-spectrum image and inflate the residuals at coarse scales)
        n = 2**k
        h, w = (rgb.shape[0] // n) * n, (rgb.shape[1] // n) * n
        im = rgb[:h, :w].astype(np.float64).reshape(h // n, n, w // n, n, 3).mean(axis=(1, 3))
        rel = [np.sqrt(np.mean(cubic_residuals(im[..., c])[0] ** 2)) / np.nanmean(im[..., c])
               for c in range(3)]
        out.append((name, 2.0 * pixel_m * 2**k, float(np.mean(rel))))
        k += 1
    return out


def fit_colour_law(points: list[tuple[str, float, float]]) -> tuple[float, float]:
    """Fixed-effects fit of log relative colour detail on log d: (amp at 1 km, exponent)."""
    names = sorted({p[0] for p in points})
    onehot = np.array([[p[0] == n for n in names] for p in points], dtype=np.float64)
    x = np.log10(np.array([p[1] for p in points]) / 1000.0)
    y = np.log10(np.array([p[2] for p in points]))
    coef, *_ = np.linalg.lstsq(np.column_stack([onehot, x]), y, rcond=None)
    return float(10.0 ** np.median(coef[:-1])), float(coef[-1])


def load_images(data_dir: Path) -> list[tuple[str, np.ndarray, float]]:
    """(name, rgb (H, W, 3), pixel_m): paired true-colour images and Blue Marble's tropics."""
    from PIL import Image

    data_dir = Path(data_dir)
    out = []
    z = np.load(data_dir / "paired/zion.npz")
    out.append(("zion_landsat8", z["bands"][..., [2, 1, 0]], float(z["pixel_m"])))
    for n in ("swellendam_3320D", "swellendam_3420B"):
        d = np.load(data_dir / f"paired/{n}.npz")
        out.append((n, d["bands"][..., :3], float(d["pixel_m"])))
    bm = np.asarray(Image.open(data_dir / "global/bluemarble.jpg").convert("RGB"), np.float32) / 255.0
    out.append(("bluemarble_tropics", bm[900:1800], 111319.49 / 15.0))  # within 30 deg: <= 13 % E-W
    return out


def load_dems(data_dir: Path) -> list[tuple[str, np.ndarray, float]]:
    """(name, elev (H, W) float32 m, pixel_m) of every usable DEM under data_dir/dem."""
    out = []
    for f in sorted((Path(data_dir) / "dem").glob("*.npz")):
        if f.stem in SKIP:
            continue
        d = np.load(f)
        out.append((f.stem, d["elev"].astype(np.float32), float(d["pixel_m"])))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m generator.eval.lawfit", description="fit the roughness law")
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--first-k", type=int, default=0, help="skip decimations below 2^k (1: no native octave)")
    ap.add_argument("--measure", choices=("slope", "curvature"), default="slope",
                    help="local roughness from parents' central (slope) or second (curvature) differences")
    ap.add_argument("--knots", type=float, nargs=2, metavar=("FINE_M", "COARSE_M"), default=None,
                    help="fit a piecewise law with these knots (metres of parent spacing), e.g. 400 2000")
    a = ap.parse_args(argv)
    if not (a.data / "dem").is_dir():
        print(f"no DEMs under {a.data / 'dem'}; pass --data or set WORLDSTREAM_DATA")
        return 2
    samples = [r for name, z, px in load_dems(a.data)
               for r in scale_residuals(name, z, px, first_k=a.first_k, measure=a.measure)]
    fit = fit_law(samples, knots_m=None if a.knots is None else tuple(a.knots))
    cpts = [p for name, img, px in load_images(a.data) for p in colour_points(name, img, px)]
    rgb_amp, rgb_hurst = fit_colour_law(cpts)
    print(f"{'dem':24s} {'d (m)':>10s} {'rms (m)':>9s} {'law (m)':>9s}")
    for name, d, r in fit.points:
        print(f"{name:24s} {d:10.1f} {r:9.2f} {float(fit.sigma_m(d)):9.2f}")
    summary = {k: v for k, v in fit.__dict__.items() if k != "points"}
    summary["n_scales"] = len(fit.points)
    print(f"{'image':24s} {'d (m)':>10s} {'rel rms':>9s}")
    for name, d, r in cpts:
        print(f"{name:24s} {d:10.1f} {r:9.4f}")
    summary.update(rgb_amp_at_1km=rgb_amp, rgb_hurst=rgb_hurst, n_colour_scales=len(cpts))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
