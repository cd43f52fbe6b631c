"""Fit, validate and ship the sub-grid peaks (:mod:`generator.anchors.subgrid`).

``python -m generator.anchors.subgrid_build [--data DIR] [--bake]``:

1. the registered ETOPO5 field on the level-3 nodes (as the anchor build samples it);
2. inside the GLOBE tile (away from its 1 deg ramp, land): predictors and GLOBE's cell excess at
   the coarse local maxima;
3. **hold-out**: fit on the part west of 30 E (Alps, Apennines, Atlas, Sahara, W Anatolia),
   apply to ETOPO5 east of it (Caucasus, Zagros, Arabia, Ethiopia, Iran) and compare with GLOBE
   there at level 6 (~1.2 km): RMSE, correlation, relief ratio, the excess distribution per
   relief bin, and the highest GLOBE summit of every 2 deg box above 2,500 m (max within +-2 level-6 nodes, ~2.4 km);
4. the shipped fit uses all of the tile; amplitudes on every land local maximum of the globe,
   times (1 - GLOBE coverage) x land x not a depression;
5. ``--bake``: writes ``assets/earth_subgrid_peaks.npz`` and lifts the peak nodes of the
   level-3 height asset by their amplitude (once: the asset records it).
"""

from __future__ import annotations

import argparse
import io
import lzma
from pathlib import Path

import numpy as np

from generator.anchors import subgrid
from generator.paths import default_data_dir
from runtime.tiles import spacing_deg

SPLIT_LON = 30.0
RAMP_MARGIN_NODES = 12  # level-3 nodes (~1.05 deg) kept clear of GLOBE's edge ramp


def registered_etopo5(data_dir: Path) -> np.ndarray:
    """(2049, 4096) float64 m: ETOPO5 at the level-3 nodes through the measured offset field
    (generator.anchors.earth.build_grid's sampling, before GLOBE and the land/water rule)."""
    from generator.anchors.earth import COLS, ROWS, SPACING_DEG
    from generator.anchors.registration import load_offset_table, offset_arcmin, sample_etopo5

    z = np.load(Path(data_dir) / "etopo5.npz")["elev"].astype(np.float64)
    lat = 90.0 - SPACING_DEG * np.arange(ROWS)
    lon = -180.0 + SPACING_DEG * np.arange(COLS)
    la, lo = np.broadcast_arrays(lat[:, None], lon[None, :])
    dlat, dlon = offset_arcmin(load_offset_table(), la, lo)
    e = sample_etopo5(z, la + dlat / 60.0, lo + dlon / 60.0)
    e[0], e[-1] = z[0].mean(), z[-1].mean()
    return e


def globe_box(e: np.ndarray):
    """The GLOBE tile's training frame: (rows3, cols3, g6, rows6, cols6) with rows3/cols3 the
    level-3 nodes whose cell lies in the level-6 GLOBE grid (away from the ramp), rows6/cols6
    their level-6 index in g6 (R, C) int16 m."""
    from generator.anchors.globe import GlobeField

    gf = GlobeField.load()
    g6 = gf.height_m
    r_a, r_b = -(-gf.row0 // 8) + RAMP_MARGIN_NODES, (gf.row0 + g6.shape[0] - 1) // 8 - RAMP_MARGIN_NODES
    c_a, c_b = -(-gf.col0 // 8) + RAMP_MARGIN_NODES, (gf.col0 + g6.shape[1] - 1) // 8 - RAMP_MARGIN_NODES
    rows3, cols3 = np.arange(r_a, r_b + 1), np.arange(c_a, c_b + 1)
    return rows3, cols3, g6, rows3 * 8 - gf.row0, cols3 * 8 - gf.col0


def upsample8(e: np.ndarray) -> np.ndarray:
    """Three rounds of the four-point scheme: (H, W) level-3 nodes -> level 6, where input node
    (i, j) lands at (8 i - 14, 8 j - 14) (two nodes of margin are used up on each side)."""
    for _ in range(3):
        h, w = e.shape
        out = np.empty((2 * (h - 2) - 1, 2 * (w - 2) - 1))
        out[::2, ::2] = e[1:-1, 1:-1]
        hx = subgrid._midpoints(e, 1)
        out[::2, 1::2] = hx[1:-1]
        out[1::2, ::2] = subgrid._midpoints(e[:, 1:-1], 0)
        out[1::2, 1::2] = subgrid._midpoints(hx, 0)
        e = out
    return e


def holdout(e: np.ndarray, split_lon: float = SPLIT_LON) -> dict:
    """Fit west of ``split_lon``, apply east of it; the level-6 comparison with GLOBE (see module doc)."""
    from scipy import ndimage

    rows3, cols3, g6, rows6, cols6 = globe_box(e)
    row0, col0 = int(8 * rows3[0] - rows6[0]), int(8 * cols3[0] - cols6[0])  # GLOBE grid's level-6 origin
    eb = e[np.ix_(rows3, cols3)]
    rel, u2, is_max = subgrid.predictors(eb)
    ex = subgrid.cell_excess(g6, rows6, cols6, eb)
    g3 = g6[np.ix_(rows6, cols6)].astype(np.float64)
    land = (g3 > 0) & (eb > 0)
    lon3 = -180.0 + cols3 * 180.0 / 2048
    west = np.broadcast_to(lon3[None, :] < split_lon, eb.shape)
    m = land & is_max & west
    table = subgrid.fit(rel[m], u2[m], ex[m])
    amp = np.where(land & is_max & ~west & (rel >= subgrid.MIN_REL_M), subgrid.amplitude(table, rel, u2), 0.0)
    # level 6 over the test part: the cascade's interpolation of E, with and without the peaks
    j0 = int(np.searchsorted(lon3, split_lon))
    sub_e, sub_a = eb[:, j0 - 4 :], amp[:, j0 - 4 :]
    base = upsample8(sub_e)
    a_grid = np.zeros((sub_a.shape[0] + 8, sub_a.shape[1] + 8))
    a_grid[4:-4, 4:-4] = sub_a  # peak_field's node index = level-6 index / 8
    # node (i, j) of sub_e is at (8 i - 14, 8 j - 14) of base, and at a_grid node (i + 4, j + 4)
    rows_l6 = np.arange(base.shape[0]) + 14 + 32
    cols_l6 = np.arange(base.shape[1]) + 14 + 32
    a6 = subgrid.peak_field(a_grid, 6, rows_l6, cols_l6)
    model = base + a6
    r_top, c_left = rows6[0] + 14, cols6[j0 - 4] + 14  # base (p, q) is g6 (r_top + p, c_left + q)
    truth = g6[r_top : r_top + base.shape[0], c_left : c_left + base.shape[1]].astype(np.float64)
    ok = truth > 0
    out = {"table": table, "n_train_peaks": int(m.sum()), "n_test_peaks": int((amp > 0).sum())}
    for name, f in (("interp", base), ("peaks", model)):
        d = f[ok] - truth[ok]
        out[name] = {"rmse_m": float(np.sqrt(np.mean(d * d))), "corr": float(np.corrcoef(f[ok], truth[ok])[0, 1]),
                     "relief_ratio": float(np.subtract(*np.percentile(f[ok], [95, 5]))
                                           / np.subtract(*np.percentile(truth[ok], [95, 5])))}
    # excess at test peaks: model's cell max vs GLOBE's, per relief bin (median, p90)
    mx_model = ndimage.maximum_filter(model, size=9, mode="nearest")
    test = land & is_max & ~west
    ti, tj = np.nonzero(test[:, j0 - 4 :][2:-2, 2:-2])
    ti, tj = ti + 2, tj + 2
    ex_model = mx_model[8 * ti - 14, 8 * tj - 14] - sub_e[ti, tj]
    ex_real = ex[:, j0 - 4 :][ti, tj]
    b = np.clip(np.digitize(rel[:, j0 - 4 :][ti, tj], subgrid.REL_BINS) - 1, 0, len(subgrid.REL_BINS) - 2)
    out["excess_by_bin"] = [
        {"rel_m": f"{subgrid.REL_BINS[k]:.0f}-{subgrid.REL_BINS[k + 1]:.0f}", "n": int((b == k).sum()),
         "globe_p50_p90": np.percentile(ex_real[b == k], [50, 90]).round().tolist() if (b == k).any() else None,
         "model_p50_p90": np.percentile(ex_model[b == k], [50, 90]).round().tolist() if (b == k).any() else None,
         "interp_p50_p90": np.percentile(ndimage.maximum_filter(base, size=9, mode="nearest")[
             8 * ti[b == k] - 14, 8 * tj[b == k] - 14] - sub_e[ti[b == k], tj[b == k]], [50, 90]).round().tolist()
             if (b == k).any() else None}
        for k in range(len(subgrid.REL_BINS) - 1)]
    out["summits"] = _box_summits(truth, base, model, r_top, c_left, row0, col0)
    return out


def _box_summits(truth, base, model, r_top, c_left, row0, col0, box_nodes: int = 182,
                 min_m: float = 2500.0) -> list[dict]:
    """The highest GLOBE node of every 2 deg box (182 level-6 nodes) above ``min_m``, and the
    highest interpolated / modelled level-6 value within +-2 nodes (~2.4 km) of it."""
    from scipy import ndimage

    mb, mm = (ndimage.maximum_filter(f, size=5, mode="nearest") for f in (base, model))
    out = []
    for i in range(0, truth.shape[0] - box_nodes + 1, box_nodes):
        for j in range(0, truth.shape[1] - box_nodes + 1, box_nodes):
            t = truth[i : i + box_nodes, j : j + box_nodes]
            k = np.unravel_index(np.argmax(t), t.shape)
            if t[k] < min_m:
                continue
            ii, jj = i + k[0], j + k[1]
            d = spacing_deg(6)
            out.append({"lat": round(90.0 - (row0 + r_top + ii) * d, 2),
                        "lon": round(-180.0 + (col0 + c_left + jj) * d, 2),
                        "globe_m": float(t[k]), "interp_m": float(mb[ii, jj]), "peaks_m": float(mm[ii, jj])})
    return out


def build_amplitudes(e: np.ndarray, table: dict) -> np.ndarray:
    """(2049, 4096) int16 m: the peak amplitude of every level-3 node (0 where none): land local
    maxima of ``e`` (columns wrap), times (1 - GLOBE coverage) x land x not a depression."""
    from generator.anchors.earth import COLS, ROWS, SPACING_DEG
    from generator.anchors.globe import GlobeField
    from generator.anchors.landwater import LandWater

    rel, u2, is_max = subgrid.predictors(e, wrap=True)
    lw, gf = LandWater.load(), GlobeField.load()
    lon = -180.0 + SPACING_DEG * np.arange(COLS)
    amp = np.zeros((ROWS, COLS), dtype=np.int16)
    for i in range(0, ROWS, 256):  # in strips: bounded memory
        s = slice(i, min(i + 256, ROWS))
        lat = 90.0 - SPACING_DEG * np.arange(s.start, s.stop)
        la, lo = np.broadcast_arrays(lat[:, None], lon[None, :])
        keep = ((lw.land_fraction(la, lo) >= 0.5) & ~lw.in_depression(la, lo) & is_max[s] & (e[s] > 0)
                & (rel[s] >= subgrid.MIN_REL_M))
        w = (1.0 - gf.coverage_weight(la, lo)) * keep
        amp[s] = np.round(w * subgrid.amplitude(table, rel[s], u2[s])).astype(np.int16)
    amp[0], amp[-1] = 0, 0
    return amp


def bake(amp: np.ndarray, table: dict, assets: Path = subgrid.ASSETS) -> tuple[Path, Path]:
    """Write the peaks asset and lift the level-3 height asset's peak nodes by their amplitude
    (codes re-made; the land/water and lake rules' exceptions re-made; refused if already lifted)."""
    from generator.anchors.codec import decode_height
    from generator.anchors.earth import HEIGHT_FILE, height_bytes, read_height
    from generator.anchors.lakes import LAKES_FILE, Lakes
    from generator.anchors.landwater import LANDWATER_FILE, LandWater

    hp, sp = Path(assets) / HEIGHT_FILE, Path(assets) / subgrid.SUBGRID_FILE
    d = np.load(io.BytesIO(lzma.decompress(hp.read_bytes())))
    if isinstance(d, np.ndarray) or "subgrid_lifted" in d:
        raise ValueError(f"{hp}: expected a ruled height asset without lifted peaks (rebuild it first)")
    codes = decode_height(d["codes"]).astype(np.int64)
    lw = LandWater.load_bytes((Path(assets) / LANDWATER_FILE).read_bytes())
    lakes = Lakes.load_bytes((Path(assets) / LAKES_FILE).read_bytes())
    old = read_height(hp.read_bytes())[0]
    for _ in range(2):  # peaks the land/water rule undoes (coast caps, lakes) are dropped, then again
        data = height_bytes(codes + amp.astype(np.int64), lw, lakes, lifted=True)
        undone = np.abs(read_height(data)[0] - old - amp) > 6.0  # > one codec step
        if not undone.any():
            break
        amp = np.where(undone, 0, amp).astype(np.int16)
    else:
        raise ValueError(f"{int(undone.sum())} peak lifts are still undone by the land/water rule")
    hp.write_bytes(data)
    sp.write_bytes(subgrid.to_bytes(amp, table))
    print(f"peaks kept: {int((amp > 0).sum())} (the rest undone by the land/water rule)")
    return hp, sp


def main(argv: list[str] | None = None) -> int:
    import json

    ap = argparse.ArgumentParser(prog="python -m generator.anchors.subgrid_build", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir() / "global", help="folder with etopo5.npz")
    ap.add_argument("--bake", action="store_true", help="write the asset and lift the level-3 height asset")
    a = ap.parse_args(argv)
    e = registered_etopo5(a.data)
    h = holdout(e)
    print(json.dumps({k: v for k, v in h.items() if k != "table"}, indent=1))
    rows3, cols3, g6, rows6, cols6 = globe_box(e)
    eb = e[np.ix_(rows3, cols3)]
    rel, u2, is_max = subgrid.predictors(eb)
    m = is_max & (g6[np.ix_(rows6, cols6)] > 0) & (eb > 0)
    table = subgrid.fit(rel[m], u2[m], subgrid.cell_excess(g6, rows6, cols6, eb)[m])
    print("table (all of GLOBE):", {k: np.round(v, 0).tolist() for k, v in table.items() if k != "rel_bins"})
    amp = build_amplitudes(e, table)
    nz = amp[amp > 0]
    print(f"peaks: {nz.size} nodes, amplitude median {np.median(nz):.0f} m, p99 {np.percentile(nz, 99):.0f} m, "
          f"max {nz.max()} m")
    if a.bake:
        for p in bake(amp, table):
            print(f"{p}: {p.stat().st_size / 1e6:.3f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
