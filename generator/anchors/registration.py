"""ETOPO5 registration: the measured offset field and how it was measured.

ETOPO5 does not line up with modern data (``../shared/data/README.md``): it
matches best when sampled some arc-minutes north and west of the requested
point, by an amount that changes from region to region. This module measures
that offset against real relief and blends the measurements into a smooth field:

1. **GLOBE boxes**: in every 5 deg box of the GLOBE 30" tile (0-50 N, 0-60 E)
   with enough land and relief, GLOBE 5' block means are compared with ETOPO5
   (bilinear, node-registered) sampled at shifted points: a 2' search over
   +-16', then 0.5' steps around the best; the offset is the centroid of the
   shifts within 2 % of the best RMSE (:func:`_best_shift`).
2. **Located DEMs**: each DEM of ``../shared/data/dem`` smoothed to ETOPO5's
   scale and read every 2 km at its pixels' lon/lat, same search.
3. **Coasts** (diagnostic, weight 0): in 15 deg boxes, the share of coastal 2'
   cells where ``ETOPO5 > 0`` agrees with the 30" land mask over a 1' grid of
   +-10'. Coasts consistently want about half the relief's shift, so they are
   kept out of the field; the anchor's coasts come from the mask anyway.
4. The field at any point is the weighted mean of the relief offsets under a
   spherical Gaussian kernel of 12 deg (weight = RMSE gain x size), plus a weak
   prior at their weighted median where no reference is near, tabulated on a
   5 deg grid (37 x 73 nodes, pole to pole, 180 W .. 180 E), read bilinearly.

The table lives in ``assets/etopo5_offset.json`` (a few kB); the anchor build
(:mod:`generator.anchors.earth`) samples ETOPO5 at ``(lat + dlat, lon + dlon)``.
Rebuild with ``python -m generator.anchors.registration measure``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.grids import bilinear

ASSETS = Path(__file__).resolve().parents[2] / "assets"
OFFSET_FILE = "etopo5_offset.json"
BOX_DEG = 15.0
SEARCH_ARCMIN = 10
KERNEL_DEG = 12.0
TABLE_STEP_DEG = 5.0


# ---------------------------------------------------------------- the field at run time

def load_offset_table(assets: Path = ASSETS) -> dict:
    """The stored table: {"step_deg", "dlat_arcmin" (37, 73), "dlon_arcmin" (37, 73), ...}."""
    path = Path(assets) / OFFSET_FILE
    if not path.exists():
        raise FileNotFoundError(f"ETOPO5 offset table missing: expected {path}; "
                                "measure it with `python -m generator.anchors.registration measure`")
    return json.loads(path.read_text())


def offset_arcmin(table: dict, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dlat, dlon) in arc-minutes at points lat, lon (degrees, broadcastable): bilinear in the table."""
    step = float(table["step_deg"])
    dlat = np.asarray(table["dlat_arcmin"], dtype=np.float64)
    dlon = np.asarray(table["dlon_arcmin"], dtype=np.float64)
    fi = np.clip((90.0 - np.asarray(lat, dtype=np.float64)) / step, 0, dlat.shape[0] - 1)
    fj = np.clip((np.mod(np.asarray(lon, dtype=np.float64) + 180.0, 360.0)) / step, 0, dlat.shape[1] - 1)
    i0 = np.minimum(np.floor(fi).astype(np.int64), dlat.shape[0] - 2)
    j0 = np.minimum(np.floor(fj).astype(np.int64), dlat.shape[1] - 2)
    ti, tj = fi - i0, fj - j0

    def bl(a):
        return ((a[i0, j0] * (1 - tj) + a[i0, j0 + 1] * tj) * (1 - ti)
                + (a[i0 + 1, j0] * (1 - tj) + a[i0 + 1, j0 + 1] * tj) * ti)

    return bl(dlat), bl(dlon)


def sample_etopo5(z: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """ETOPO5 (2160, 4320) node grid, bilinear at points (degrees, same shape), longitude wrapped."""
    zp = np.concatenate([z, z[:, :1]], axis=1)  # the wrap column
    return bilinear(zp, (90.0 - lat) * 12.0, np.mod((lon + 180.0) * 12.0, z.shape[1]))


# ---------------------------------------------------------------- one-off measurement

def land_fraction_2min(mask_path: Path) -> np.ndarray:
    """(5400, 10800) float32 land fraction of 2' cells (4 x 4 blocks of the 30" mask); row 0 at 90 N."""
    from generator.anchors.landwater import land_share

    return land_share(np.load(mask_path)["mask"], 4)


def coastal_cells(frac: np.ndarray, reach: int = 2) -> np.ndarray:
    """Bool mask of cells within ``reach`` cells of a land/water transition."""
    from scipy import ndimage

    land = frac >= 0.5
    edge = land ^ ndimage.binary_erosion(land, iterations=1, border_value=1)
    edge |= ~land ^ ndimage.binary_erosion(~land, iterations=1, border_value=1)
    return ndimage.binary_dilation(edge, iterations=reach)


def measure_boxes(z: np.ndarray, frac: np.ndarray) -> list[dict]:
    """Best coastal-agreement shift per 15 deg box: [{lat, lon, dlat, dlon, n, score0, score}]."""
    coast = coastal_cells(frac)
    shifts = np.arange(-SEARCH_ARCMIN, SEARCH_ARCMIN + 1, dtype=np.float64)
    per = int(BOX_DEG * 30)
    rng = np.random.default_rng(0)
    out = []
    for bi in range(0, frac.shape[0], per):
        for bj in range(0, frac.shape[1], per):
            ii, jj = np.nonzero(coast[bi : bi + per, bj : bj + per])
            if ii.size < 400:
                continue
            if ii.size > 2500:  # enough for a sub-arc-minute estimate; keeps the search cheap
                pick = rng.choice(ii.size, 2500, replace=False)
                ii, jj = ii[pick], jj[pick]
            land = frac[bi + ii, bj + jj] >= 0.5
            lat = 90.0 - (bi + ii + 0.5) / 30.0
            lon = -180.0 + (bj + jj + 0.5) / 30.0
            if np.abs(lat).max() > 84.0:
                continue
            score = np.empty((shifts.size, shifts.size))
            for a, dy in enumerate(shifts):
                for b, dx in enumerate(shifts):
                    e = sample_etopo5(z, lat + dy / 60.0, lon + dx / 60.0)
                    score[a, b] = np.mean((e > 0) == land)
            s0 = score[SEARCH_ARCMIN, SEARCH_ARCMIN]
            best = score.max()
            a, b = np.unravel_index(np.argmax(score), score.shape)
            if a in (0, shifts.size - 1) or b in (0, shifts.size - 1):
                continue  # the optimum is outside the search: an estuary or ice shelf, not a shift
            w = np.clip(score - (best - 0.01), 0.0, None)
            dy = float((w.sum(axis=1) * shifts).sum() / w.sum())
            dx = float((w.sum(axis=0) * shifts).sum() / w.sum())
            out.append({"kind": "coast", "lat": float(90.0 - (bi + per / 2) / 30.0),
                        "lon": float(-180.0 + (bj + per / 2) / 30.0),
                        "dlat": dy, "dlon": dx, "n": int(ii.size), "score0": float(s0), "score": float(best)})
    return out


def measure_elevation_boxes(z: np.ndarray, globe_path: Path, mask_path: Path, box_deg: float = 5.0) -> list[dict]:
    """Best RMSE shift per ``box_deg`` box of GLOBE 30" (land, 5' block means) against ETOPO5.

    GLOBE covers 0..50 N, 0..60 E; its 5' block means are compared with ETOPO5
    sampled at the block centres shifted over the same search grid as the coasts.
    """
    g = np.load(globe_path)
    lat_top, lon_left = float(g["lat_top"]), float(g["lon_left"])
    elev = g["elev"].astype(np.float32)
    r0 = int(round((90.0 - lat_top) * 120))
    c0 = int(round((lon_left + 180.0) * 120))
    water = np.load(mask_path)["mask"][r0 : r0 + elev.shape[0], c0 : c0 + elev.shape[1]]
    nb_r, nb_c = elev.shape[0] // 10, elev.shape[1] // 10
    gb = elev.reshape(nb_r, 10, nb_c, 10).mean(axis=(1, 3))
    land = (~water).reshape(nb_r, 10, nb_c, 10).mean(axis=(1, 3)) > 0.99
    per = int(box_deg * 12)
    out = []
    for bi in range(0, nb_r, per):
        for bj in range(0, nb_c, per):
            ii, jj = np.nonzero(land[bi : bi + per, bj : bj + per])
            ref = gb[bi + ii, bj + jj]
            if ii.size < per * per // 4 or ref.std() < 50.0:
                continue  # too little land or too flat to register
            lat = lat_top - (bi + ii + 0.5) / 12.0
            lon = lon_left + (bj + jj + 0.5) / 12.0
            best = _best_shift(z, lat, lon, ref)
            if best.pop("edge"):
                continue
            out.append(best | {
                "lat": float(lat_top - (bi + per / 2) / 12.0), "lon": float(lon_left + (bj + per / 2) / 12.0),
                "n": int(ii.size), "kind": "globe"})
    return out


def measure_dem_points(z: np.ndarray, dem_dir: Path, step_m: float = 2000.0) -> list[dict]:
    """Best RMSE shift per located DEM (``../shared/data/dem``): the DEM smoothed to ETOPO5's
    scale (Gaussian of half its 9.26 km spacing), read every ``step_m`` at its pixel positions
    (lat/lon from :mod:`generator.anchors.geodesy`), land only; DEMs with < 250 points skipped."""
    from scipy import ndimage

    from generator.anchors.geodesy import dem_to_lonlat

    out = []
    for path in sorted(Path(dem_dir).glob("*.npz")):
        with np.load(path) as d:
            to_ll = dem_to_lonlat(str(d["crs"]))
            if to_ll is None:  # bedmap: polar stereographic bed under the ice
                continue
            px, e = float(d["pixel_m"]), d["elev"].astype(np.float64)
            x0, dx, y0, dy = (float(v) for v in d["transform"])
        ok = np.isfinite(e)
        sig = 0.5 * 9260.0 / px
        num = ndimage.gaussian_filter(np.where(ok, e, 0.0), sig)
        den = ndimage.gaussian_filter(ok.astype(np.float64), sig)
        step = max(1, int(step_m / px))
        ii, jj = np.mgrid[0 : e.shape[0] : step, 0 : e.shape[1] : step]
        ref = np.where(den[ii, jj] > 0.99, num[ii, jj] / np.maximum(den[ii, jj], 1e-9), np.nan)
        keep = np.isfinite(ref) & (ref > 0.0)
        if keep.sum() < 250:
            continue
        lat, lon = to_ll(x0 + (jj[keep] + 0.5) * dx, y0 + (ii[keep] + 0.5) * dy)
        best = _best_shift(z, lat, lon, ref[keep])
        if best.pop("edge"):
            continue
        out.append(best | {"lat": float(np.mean(lat)), "lon": float(np.mean(lon)), "n": int(keep.sum()),
                           "kind": "dem", "name": path.stem})
    return out


def _best_shift(z, lat, lon, ref, shifts=None) -> dict:
    """RMSE of ETOPO5 against ``ref`` at (lat, lon): a 2' search over +-16', then 0.5' steps
    within 2' of the best; the offset is the centroid of the fine shifts within 2 % of the best."""

    def rmse_at(dys, dxs):
        return np.array([[np.sqrt(np.mean((sample_etopo5(z, lat + dy / 60.0, lon + dx / 60.0) - ref) ** 2))
                          for dx in dxs] for dy in dys])

    coarse = np.arange(-16.0, 16.1, 2.0)
    rc = rmse_at(coarse, coarse)
    a, b = np.unravel_index(np.argmin(rc), rc.shape)
    fine = np.arange(-2.0, 2.01, 0.5)
    fy, fx = coarse[a] + fine, coarse[b] + fine
    rmse = rmse_at(fy, fx)
    best = rmse.min()
    w = np.clip(best * 1.02 - rmse, 0.0, None)
    r0 = float(rmse_at([0.0], [0.0])[0, 0])
    return {"dlat": float((w.sum(axis=1) * fy).sum() / w.sum()), "dlon": float((w.sum(axis=0) * fx).sum() / w.sum()),
            "rmse0": r0, "rmse": float(best), "gain": float(1.0 - best / r0),
            "edge": bool(a in (0, coarse.size - 1) or b in (0, coarse.size - 1))}


def blend(boxes: list[dict], lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-weighted (spherical Gaussian, KERNEL_DEG) box offsets at points, with a weak global prior."""
    boxes = [b for b in boxes if weight(b) > 0]
    b_lat = np.radians([b["lat"] for b in boxes])
    b_lon = np.radians([b["lon"] for b in boxes])
    wb = np.array([weight(b) for b in boxes]) + 1e-9
    dy = np.array([b["dlat"] for b in boxes])
    dx = np.array([b["dlon"] for b in boxes])
    prior_dy, prior_dx = _weighted_median(dy, wb), _weighted_median(dx, wb)
    la, lo = np.radians(lat)[..., None], np.radians(lon)[..., None]
    cosd = np.sin(la) * np.sin(b_lat) + np.cos(la) * np.cos(b_lat) * np.cos(lo - b_lon)
    ang = np.arccos(np.clip(cosd, -1.0, 1.0))
    k = wb * np.exp(-0.5 * (ang / np.radians(KERNEL_DEG)) ** 2)
    prior_w = 0.02 * wb.max()
    fy = ((k * dy).sum(-1) + prior_w * prior_dy) / (k.sum(-1) + prior_w)
    fx = ((k * dx).sum(-1) + prior_w * prior_dx) / (k.sum(-1) + prior_w)
    return fy, fx


def weight(box: dict) -> float:
    """Blending weight: how much the shift helped there, for relief references only (a GLOBE box
    or DEM of >= 3,600 points whose RMSE falls by 20 % weighs 1). Coastal boxes weigh 0: the
    coasts of a 9 km smoothed field want about half the relief's shift everywhere the two were
    compared (ETOPO5's coasts and land relief came from different sources), the anchor's coasts
    come from the 30" mask anyway, and what users see is the relief."""
    if box.get("kind") in ("globe", "dem"):
        return max(box["gain"], 0.0) / 0.2 * min(box["n"] / 3600.0, 1.0)
    return 0.0


def _weighted_median(v: np.ndarray, w: np.ndarray) -> float:
    o = np.argsort(v)
    c = np.cumsum(w[o])
    return float(v[o][np.searchsorted(c, 0.5 * c[-1])])


def measure(data_dir: Path) -> dict:
    """Measure the boxes and tabulate the blended field (the JSON document stored in assets/)."""
    z = np.load(Path(data_dir) / "etopo5.npz")["elev"].astype(np.float32)
    frac = land_fraction_2min(Path(data_dir) / "landmask_30s.npz")
    boxes = measure_boxes(z, frac) + measure_elevation_boxes(
        z, Path(data_dir) / "globe30s_g10g_west.npz", Path(data_dir) / "landmask_30s.npz") + measure_dem_points(
        z, Path(data_dir).parent / "dem")
    lat = 90.0 - TABLE_STEP_DEG * np.arange(int(180 / TABLE_STEP_DEG) + 1)
    lon = -180.0 + TABLE_STEP_DEG * np.arange(int(360 / TABLE_STEP_DEG) + 1)
    fy, fx = blend(boxes, lat[:, None] * np.ones_like(lon), np.ones_like(lat)[:, None] * lon)
    return {"step_deg": TABLE_STEP_DEG, "units": "arc-minutes; sample ETOPO5 at (lat + dlat/60, lon + dlon/60)",
            "method": "RMSE against GLOBE 5 deg boxes and the located DEMs, Gaussian-blended (12 deg); coastal "
                      "boxes measured as a diagnostic (weight 0)",
            "dlat_arcmin": np.round(fy, 2).tolist(), "dlon_arcmin": np.round(fx, 2).tolist(),
            "boxes": boxes}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from generator.paths import default_data_dir

    ap = argparse.ArgumentParser(prog="python -m generator.anchors.registration",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["measure"])
    ap.add_argument("--data", type=Path, default=default_data_dir() / "global")
    ap.add_argument("--out", type=Path, default=ASSETS / OFFSET_FILE)
    a = ap.parse_args(argv)
    doc = measure(a.data)
    a.out.write_text(json.dumps(doc, separators=(",", ":")))
    b = [x for x in doc["boxes"] if x["kind"] == "coast"]
    e = [x for x in doc["boxes"] if x["kind"] == "globe"]
    for x in doc["boxes"]:
        if x["kind"] == "dem":
            print(f"DEM {x['name']:22s} n {x['n']:6d}: ({x['dlat']:+.1f}', {x['dlon']:+.1f}') "
                  f"RMSE {x['rmse0']:.0f} -> {x['rmse']:.0f} m")
    w = np.array([x["n"] for x in b])
    print(f"{len(e)} GLOBE boxes: RMSE {np.mean([x['rmse0'] for x in e]):.1f} m at zero shift -> "
          f"{np.mean([x['rmse'] for x in e]):.1f} m at each box's best")
    print(f"{len(b)} coast boxes; coastal agreement {np.average([x['score0'] for x in b], weights=w):.4f} at zero "
          f"shift -> {np.average([x['score'] for x in b], weights=w):.4f} at each box's best; "
          f"{a.out}: {a.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
