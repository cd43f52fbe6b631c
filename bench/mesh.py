"""Meshing and wire-format benchmark: ours vs pydelatin vs pymartini, ours vs quantized-mesh vs GLB.

For real DEM tiles (257 x 257 crops of the files in a data folder, e.g. ../shared/data)
and synthetic fBm tiles, at the same max vertical error bound (a fraction of the pixel
size, as a level's geometric error would be):

- triangles, the max vertical error actually achieved (measured by rasterising every
  face over every sample, not assumed) and ms per tile for each mesher;
- bytes per vertex on the wire: our payload (msgpack) vs Cesium quantized-mesh-1.0
  gzipped (core, and with oct normals) vs GLB (trimesh, with normals and UVs);
- ms per tile of mesh + encode (the server path) and of decode (the client path);
- the server path per tile, old against new in the same run: old = simplify, place
  (skirts, normals: ``build_tile_mesh``) and ``encode_tile`` re-deriving the RTIN from the
  faces; new = ``streaming.tileservice.encode_fields`` (simplify once, RTIN handed to
  ``encode_heights``), with the factor. Both leave out the colour image (same on both).

``--curvature`` instead measures the earth's chord sag per level (seed 0, fractal): for
one tile per level, triangles, the max distance the flat faces lie below the samples
(height error + sag, ``runtime.tin.curvature.max_deviation_m``) and ms per tile, with
the height-only error (before) and with the curvature in the error (after).

Ends with one JSON line. Usage:
    python bench/mesh.py [--quick] [--data ../shared/data]
    python bench/mesh.py --curvature [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread: CPU time then measures our work alone

import msgpack  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataclasses import dataclass  # noqa: E402

from runtime import wire  # noqa: E402
from runtime.formats import export  # noqa: E402
from runtime.tiles import T, TileKey, World, level_error_m, skirt_depth_for, spacing_m  # noqa: E402
from runtime.tin import build_tile_mesh, max_vertical_error, simplify_grid  # noqa: E402
from streaming.tileservice import encode_fields  # noqa: E402

N = T + 1
REAL_FILES = [
    "bigtujunga",
    "zion_srtm",
    "st_helens",
    "spain_gredos_25m",
    "colorado_front_range",
    "jacksboro",
    "gabon_N00E010",
    "oregon",
    "texas_plains",
    "gmt_fr_it",
    "ecuador_andes_10m",
    "swellendam_srtm",
]
ERROR_FRACTIONS = (0.05, 0.1, 0.25)
"""Error bounds as fractions of the pixel size (1.5, 3 and 7.5 m for 30 m SRTM); 0.25 is
runtime.tiles.level_error_m, Cesium's default for heightmap terrain."""


def real_tiles(data: Path, per_file: int, files: list[str]) -> list[tuple[str, np.ndarray, float]]:
    """Deterministic NaN-free 257 x 257 crops: (name, heights float32, pixel_m)."""
    out = []
    for name in files:
        path = data / "dem" / f"{name}.npz"
        if not path.exists():
            continue
        d = np.load(path)
        z, px = d["elev"].astype(np.float32), float(d["pixel_m"])
        taken = 0
        for r in range(0, z.shape[0] - T, T // 2):
            for c in range(0, z.shape[1] - T, T // 2):
                crop = z[r : r + N, c : c + N]
                if crop.shape == (N, N) and np.isfinite(crop).all() and np.ptp(crop) > 10 * px * 0.05:
                    out.append((f"{name}[{r}:{c}]", np.ascontiguousarray(crop), px))
                    taken += 1
                if taken >= per_file:
                    break
            if taken >= per_file:
                break
    return out


def fractal_tile(seed: int, hurst: float, relief_m: float) -> np.ndarray:
    """fBm by spectral synthesis (power spectrum ~ k^-(2H+2)), (257, 257) float32 metres."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(2 * N)
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    kk[0, 0] = 1.0
    spec = kk ** -(hurst + 1.0) * np.exp(2j * np.pi * rng.random(kk.shape))
    spec[0, 0] = 0.0
    z = np.fft.ifft2(spec).real[:N, :N]
    return ((z - z.min()) / np.ptp(z) * relief_m).astype(np.float32)


class Clock:
    """Median wall and CPU seconds of the runs so far (CPU time is what the process got:
    on the shared 2-core machine the wall clock also counts other people's work)."""

    def __init__(self):
        self.wall, self.cpu = [], []

    @property
    def ms(self) -> float:
        return statistics.median(self.wall) * 1e3

    @property
    def ms_cpu(self) -> float:
        return statistics.median(self.cpu) * 1e3


def timed(fn, repeats: int):
    """(result, Clock) over ``repeats`` runs."""
    clock, out = Clock(), None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        clock.wall.append(time.perf_counter() - w0)
        clock.cpu.append(time.process_time() - c0)
    return out, clock


@dataclass(frozen=True)
class Fields:
    """What the tile service meshes (streaming.tileservice.Fields), without colour."""

    height: np.ndarray
    rgb: None = None
    model: str = "bench"


def level_for_pixel(pixel_m: float) -> int:
    """The pyramid level whose sample spacing is nearest the DEM's pixel size (it sets the
    wire's height quantum, so a 3.7 km ETOPO tile is not coded to 0.125 m)."""
    return max(0, round(math.log2(spacing_m(0) / pixel_m)))


def bench_tile(h: np.ndarray, max_error_m: float, repeats: int, pixel_m: float) -> dict:
    from pydelatin import Delatin
    from pymartini import Martini

    level = level_for_pixel(pixel_m)
    key = TileKey(level, 1 << level, (1 << level) // 2)  # an earth tile at 0 E, just north of 0 N
    row = {}
    (grid_rc, faces), t_mesh = timed(lambda: simplify_grid(h, max_error_m), repeats)
    heights = h[grid_rc[:, 0], grid_rc[:, 1]]

    def enc():
        return wire.encode_tile(
            grid_rc, heights, faces, key=key, geometric_error_m=max_error_m, model="bench"
        )

    payload, t_enc = timed(enc, repeats)
    _, t_server = timed(
        lambda: wire.encode_heights(h, max_error_m, key=key, model="bench"), repeats
    )  # mesh + encode in one call, the server path
    blob = msgpack.packb(payload)
    _, t_dec = timed(lambda: wire.decode_tile(msgpack.unpackb(blob)), repeats)
    row["ours"] = dict(
        tris=len(faces),
        verts=len(grid_rc),
        err=max_vertical_error(h, grid_rc, faces),
        ms=t_mesh.ms,
        ms_cpu=t_mesh.ms_cpu,
        ms_mesh_encode=t_server.ms,
        ms_mesh_encode_cpu=t_server.ms_cpu,
        ms_encode=t_enc.ms,
        ms_decode=t_dec.ms,
        ms_decode_cpu=t_dec.ms_cpu,
        bpv=len(blob) / len(grid_rc),
    )
    for border in ("graded", "free"):
        rc_b, f_b = simplify_grid(h, max_error_m, border)
        row[f"ours_{border}"] = dict(tris=len(f_b), err=max_vertical_error(h, rc_b, f_b))
    rc_p, f_p = simplify_grid(h, max_error_m, flips=False)  # the plain RTIN, no dropped diamonds
    row["ours_plain"] = dict(tris=len(f_p), err=max_vertical_error(h, rc_p, f_p))
    tin, t_del = timed(lambda: Delatin(h.astype(np.float64), max_error=max_error_m), repeats)
    dv, dt = tin.vertices, tin.triangles  # pydelatin vertices are (x = col, y = T - row, z)
    row["pydelatin"] = dict(
        tris=len(dt),
        verts=len(dv),
        err=max_vertical_error(h, np.round(np.stack([T - dv[:, 1], dv[:, 0]], 1)).astype(np.int32), dt),
        ms=t_del.ms,
        ms_cpu=t_del.ms_cpu,
    )
    martini = Martini(N)
    (mv, mt), t_mar = timed(lambda: martini.create_tile(h).get_mesh(max_error_m), repeats)
    row["pymartini"] = dict(
        tris=len(mt),
        verts=len(mv),
        err=max_vertical_error(h, mv[:, [1, 0]].astype(np.int32), mt),
        ms=t_mar.ms,
        ms_cpu=t_mar.ms_cpu,
    )
    # The server path, old and new, in the same run (the field's heights -> wire payload).
    scale = max_error_m / level_error_m(level)  # the service's error_scale for this bound
    bound = scale * level_error_m(level)  # what the service meshes to (equal up to rounding)

    def old_server():
        m = build_tile_mesh(World.EARTH, key, h, bound, 5 * bound)
        return wire.encode_tile(m.grid_rc, m.height_m, m.faces, key=key, geometric_error_m=bound, model="bench")

    fields = Fields(h)
    old_payload, t_old = timed(old_server, repeats)
    new_payload, t_new = timed(lambda: encode_fields(World.EARTH, key, fields, scale), repeats)
    if msgpack.packb(old_payload) != msgpack.packb(new_payload):
        raise AssertionError("old and new server paths must give the same payload bytes")
    row["server"] = dict(ms_old=t_old.ms, ms_new=t_new.ms, ms_old_cpu=t_old.ms_cpu, ms_new_cpu=t_new.ms_cpu)
    # Same mesh in Cesium quantized-mesh-1.0 (an earth tile) and GLB, placed as exports place it.
    ekey = key
    tm = build_tile_mesh(World.EARTH, ekey, h, max_error_m, skirt_depth_for(max_error_m))
    qm_core = export.quantized_mesh(tm, ekey, normals=False)
    qm_norm = export.quantized_mesh(tm, ekey, normals=True)
    glb = export.tile_glb(tm)
    n = len(tm.grid_rc)
    row["formats"] = dict(
        qm_gz=len(gzip.compress(qm_core, 6)) / n,
        qm_normals_gz=len(gzip.compress(qm_norm, 6)) / n,
        qm_raw=len(qm_core) / n,
        glb=len(glb) / n,
        glb_gz=len(gzip.compress(glb, 6)) / n,
    )
    return row


def summarise(rows: list[dict]) -> dict:
    mean = lambda xs: float(np.mean(xs))
    tris = lambda key: np.array([r[key]["tris"] for r in rows], dtype=np.float64)
    ours, dela, mart, graded, free, plain = (
        tris(k) for k in ("ours", "pydelatin", "pymartini", "ours_graded", "ours_free", "ours_plain")
    )
    return dict(
        tiles=len(rows),
        ours_tris=ours.mean(),
        delatin_tris=dela.mean(),
        martini_tris=mart.mean(),
        graded_tris=graded.mean(),
        free_tris=free.mean(),
        # all triangles of the set / pydelatin's (a triangle-weighted mean), then the plain
        # mean and the median of the per-tile ratios (flat tiles, where pydelatin needs a
        # handful of triangles and ours keeps 4 x 256 border samples, dominate the mean)
        tri_ratio_vs_pydelatin=ours.sum() / dela.sum(),
        tri_ratio_vs_pydelatin_mean=float(np.mean(ours / dela)),
        tri_ratio_vs_pydelatin_median=float(np.median(ours / dela)),
        tri_ratio_vs_pymartini=ours.sum() / mart.sum(),
        tri_ratio_graded=graded.sum() / dela.sum(),
        tri_ratio_free=free.sum() / dela.sum(),
        tri_ratio_free_median=float(np.median(free / dela)),
        tri_ratio_free_mean=float(np.mean(free / dela)),
        plain_tris=plain.mean(),
        tri_ratio_plain=plain.sum() / dela.sum(),
        err_ratio_plain=max(r["ours_plain"]["err"] / r["bound"] for r in rows),
        err_ratio_ours=max(r["ours"]["err"] / r["bound"] for r in rows),
        err_ratio_graded=max(r["ours_graded"]["err"] / r["bound"] for r in rows),
        err_ratio_free=max(r["ours_free"]["err"] / r["bound"] for r in rows),
        err_ratio_delatin=max(r["pydelatin"]["err"] / r["bound"] for r in rows),
        err_ratio_martini=max(r["pymartini"]["err"] / r["bound"] for r in rows),
        ms_ours=mean([r["ours"]["ms"] for r in rows]),
        ms_delatin=mean([r["pydelatin"]["ms"] for r in rows]),
        ms_martini=mean([r["pymartini"]["ms"] for r in rows]),
        ms_mesh_encode=mean([r["ours"]["ms_mesh_encode"] for r in rows]),
        ms_mesh_encode_median=float(np.median([r["ours"]["ms_mesh_encode"] for r in rows])),
        ms_mesh_encode_cpu=mean([r["ours"]["ms_mesh_encode_cpu"] for r in rows]),
        ms_decode_cpu=mean([r["ours"]["ms_decode_cpu"] for r in rows]),
        ms_ours_cpu=mean([r["ours"]["ms_cpu"] for r in rows]),
        ms_delatin_cpu=mean([r["pydelatin"]["ms_cpu"] for r in rows]),
        ms_martini_cpu=mean([r["pymartini"]["ms_cpu"] for r in rows]),
        ms_decode=mean([r["ours"]["ms_decode"] for r in rows]),
        bpv_ours=mean([r["ours"]["bpv"] for r in rows]),
        bpv_qm_gz=mean([r["formats"]["qm_gz"] for r in rows]),
        bpv_qm_normals_gz=mean([r["formats"]["qm_normals_gz"] for r in rows]),
        bpv_glb=mean([r["formats"]["glb"] for r in rows]),
        bpv_glb_gz=mean([r["formats"]["glb_gz"] for r in rows]),
        kb_ours=mean([r["ours"]["bpv"] * r["ours"]["verts"] / 1024 for r in rows]),
        kb_qm_gz=mean([r["formats"]["qm_gz"] * r["ours"]["verts"] / 1024 for r in rows]),
        ms_server_old=mean([r["server"]["ms_old"] for r in rows]),
        ms_server_new=mean([r["server"]["ms_new"] for r in rows]),
        ms_server_old_cpu=mean([r["server"]["ms_old_cpu"] for r in rows]),
        ms_server_new_cpu=mean([r["server"]["ms_new_cpu"] for r in rows]),
        # all old time / all new time (CPU), and the median of the per-tile factors
        server_factor=sum(r["server"]["ms_old_cpu"] for r in rows) / sum(r["server"]["ms_new_cpu"] for r in rows),
        server_factor_median=float(np.median([r["server"]["ms_old_cpu"] / r["server"]["ms_new_cpu"] for r in rows])),
    )


def print_table(title: str, s: dict, by_bound: dict[float, dict]) -> None:
    w = 26
    print(f"\n== {title}: {s['tiles']} tile x bound pairs (error = max measured / bound) ==")
    print(
        f"{'mesher':<{w}}{'mean tris':>11}{'/pydelatin':>11}{'median':>8}{'/pymartini':>11}"
        f"{'max err/bound':>15}{'ms/tile':>9}"
    )
    blank = lambda n: f"{'':>{n}}"
    print(
        f"{'ours (fan border)':<{w}}{s['ours_tris']:>11.0f}{s['tri_ratio_vs_pydelatin']:>11.3f}"
        f"{s['tri_ratio_vs_pydelatin_median']:>8.3f}{s['tri_ratio_vs_pymartini']:>11.3f}"
        f"{s['err_ratio_ours']:>15.3f}{s['ms_ours']:>9.2f}"
    )
    print(
        f"{'ours, plain RTIN (before)':<{w}}{s['plain_tris']:>11.0f}{s['tri_ratio_plain']:>11.3f}{blank(8)}"
        f"{blank(11)}{s['err_ratio_plain']:>15.3f}"
    )
    print(
        f"{'ours, graded border':<{w}}{s['graded_tris']:>11.0f}{s['tri_ratio_graded']:>11.3f}{blank(8)}"
        f"{blank(11)}{s['err_ratio_graded']:>15.3f}"
    )
    print(
        f"{'ours, free border (*)':<{w}}{s['free_tris']:>11.0f}{s['tri_ratio_free']:>11.3f}"
        f"{s['tri_ratio_free_median']:>8.3f}{blank(11)}{s['err_ratio_free']:>15.3f}"
    )
    print(
        f"{'pydelatin':<{w}}{s['delatin_tris']:>11.0f}{blank(30)}{s['err_ratio_delatin']:>15.3f}"
        f"{s['ms_delatin']:>9.2f}"
    )
    print(
        f"{'pymartini':<{w}}{s['martini_tris']:>11.0f}{blank(30)}{s['err_ratio_martini']:>15.3f}"
        f"{s['ms_martini']:>9.2f}"
    )
    print("/pydelatin = all our triangles / all of pydelatin's; median = of the per-tile ratios")
    print("(*) border simplified like the interior, as pydelatin/pymartini do: neighbours would not meet")
    print(
        f"{'bound / pixel':<16}{'ours':>9}{'pydelatin':>11}{'ratio':>8}{'free ratio':>12}{'ours B/vtx':>12}"
        f"{'mesh+enc ms CPU':>17}"
    )
    for frac, b in by_bound.items():
        print(
            f"{frac:<16}{b['ours_tris']:>9.0f}{b['delatin_tris']:>11.0f}{b['tri_ratio_vs_pydelatin']:>8.3f}"
            f"{b['tri_ratio_free']:>12.3f}{b['bpv_ours']:>12.3f}{b['ms_mesh_encode_cpu']:>17.2f}"
        )
    print(f"{'format':<34}{'bytes/vertex':>14}")
    for label, k in [
        ("ours (msgpack payload)", "bpv_ours"),
        ("quantized-mesh-1.0 gzip", "bpv_qm_gz"),
        ("quantized-mesh + oct normals gzip", "bpv_qm_normals_gz"),
        ("GLB (trimesh, normals+UV+skirt)", "bpv_glb"),
        ("GLB gzip", "bpv_glb_gz"),
    ]:
        print(f"{label:<34}{s[k]:>14.3f}")
    print(f"mean tile: ours {s['kb_ours']:.1f} KiB, quantized-mesh gzip {s['kb_qm_gz']:.1f} KiB (same mesh)")
    print(
        f"ours mesh+encode {s['ms_mesh_encode']:.2f} ms/tile wall (median {s['ms_mesh_encode_median']:.2f}),"
        f" {s['ms_mesh_encode_cpu']:.2f} ms CPU; decode {s['ms_decode']:.2f} ms wall,"
        f" {s['ms_decode_cpu']:.2f} ms CPU"
    )
    print(
        f"CPU ms/tile: ours mesh {s['ms_ours_cpu']:.2f}, pydelatin {s['ms_delatin_cpu']:.2f},"
        f" pymartini {s['ms_martini_cpu']:.2f}"
    )
    print(
        f"server path CPU ms/tile: old (build_tile_mesh + encode_tile) {s['ms_server_old_cpu']:.2f},"
        f" new (encode_fields) {s['ms_server_new_cpu']:.2f}: x{s['server_factor']:.2f}"
        f" (median per tile x{s['server_factor_median']:.2f})"
    )


def print_server_rows(rows: list[dict]) -> None:
    """The server path per tile: old vs new, same payload bytes (checked), same run."""
    print(f"{'server path per tile':<34}{'bound m':>8}{'old ms':>9}{'new ms':>9}{'old CPU':>9}{'new CPU':>9}"
          f"{'factor':>8}")
    for r in rows:
        sv = r["server"]
        print(f"{r['name']:<34}{r['bound']:>8.2f}{sv['ms_old']:>9.2f}{sv['ms_new']:>9.2f}{sv['ms_old_cpu']:>9.2f}"
              f"{sv['ms_new_cpu']:>9.2f}{sv['ms_old_cpu'] / sv['ms_new_cpu']:>8.2f}")


CURVATURE_KEYS = [TileKey(0, 0, 0), TileKey(1, 2, 0), TileKey(2, 5, 1), TileKey(3, 11, 2), TileKey(4, 22, 5),
                  TileKey(6, 90, 20), TileKey(8, 380, 90), TileKey(10, 1518, 353)]
"""One earth tile per level, from the Atlantic/Europe at level 0 to the Himalaya."""


def bench_curvature(repeats: int) -> list[dict]:
    """Per level: triangles, max sag below the samples (m) and CPU ms, before/after."""
    from generator.pyramid import open_world
    from runtime.tin.curvature import curved_positions, max_deviation_m

    pyr = open_world(World.EARTH, 0, refiner="fractal")
    rows = []
    print(f"{'tile':<14}{'bound m':>10}{'tris before':>12}{'sag before m':>14}{'ms':>7}"
          f"{'tris after':>11}{'sag after m':>13}{'ms':>7}")
    for key in CURVATURE_KEYS:
        h = pyr.tile(key).height.astype(np.float32)
        bound = level_error_m(key.level)
        (rc0, f0), ms0 = cpu_timed(lambda h=h, b=bound: simplify_grid(h, b), repeats)
        (rc1, f1), ms1 = cpu_timed(
            lambda h=h, b=bound, k=key: simplify_grid(h, b, positions_m=curved_positions(World.EARTH, k, h)), repeats)
        sag0 = max_deviation_m(World.EARTH, key, h, rc0, f0)[1]
        sag1 = max_deviation_m(World.EARTH, key, h, rc1, f1)[1]
        rows.append(dict(key=str(key), bound_m=bound, tris_before=len(f0), sag_before_m=sag0, ms_before=ms0,
                         tris_after=len(f1), sag_after_m=sag1, ms_after=ms1))
        print(f"{str(key):<14}{bound:>10.1f}{len(f0):>12}{sag0:>14.0f}{ms0:>7.1f}{len(f1):>11}{sag1:>13.1f}{ms1:>7.1f}")
    return rows


def cpu_timed(fn, repeats: int):
    """(result, fastest CPU ms of ``repeats`` calls)."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        best = min(best, 1e3 * (time.process_time() - t0))
    return out, best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    repo = Path(__file__).resolve().parents[1]
    default = next((p / "shared" / "data" for p in repo.parents if (p / "shared" / "data").is_dir()), None)
    ap.add_argument("--data", type=Path, default=default, help="folder with dem/*.npz (../shared/data)")
    ap.add_argument("--quick", action="store_true", help="fewer tiles and repeats (< 1 minute)")
    ap.add_argument("--curvature", action="store_true", help="only the earth's chord sag per level")
    args = ap.parse_args(argv)
    if args.curvature:
        print(f"bench/mesh.py --curvature  cpu={os.cpu_count()} load={os.getloadavg()[0]:.2f}  T={T}")
        print(json.dumps({"curvature": bench_curvature(1 if args.quick else 3)}))
        return
    if args.data is None or not (args.data / "dem").is_dir():
        raise SystemExit(f"no dem/ folder under {args.data}: pass --data path/to/shared/data")
    files = REAL_FILES[:4] if args.quick else REAL_FILES
    per_file, repeats = (1, 3) if args.quick else (2, 5)
    seeds = (
        [(1, 0.9, 800.0), (2, 0.6, 1500.0)]
        if args.quick
        else [(1, 0.9, 800.0), (2, 0.6, 1500.0), (3, 0.8, 300.0), (4, 0.5, 2500.0), (5, 1.0, 1200.0)]
    )
    print(
        f"bench/mesh.py  cpu={os.cpu_count()} load={os.getloadavg()[0]:.2f}  T={T}  "
        f"bounds={ERROR_FRACTIONS} x pixel"
    )
    t0 = time.perf_counter()
    sets = {
        "real DEM crops": real_tiles(args.data, per_file, files),
        "synthetic fBm": [(f"fbm{s}", fractal_tile(s, hst, rel), 30.0) for s, hst, rel in seeds],
    }
    summaries = {}
    all_rows = []
    for title, tiles in sets.items():
        rows = []
        for name, h, px in tiles:
            for frac in ERROR_FRACTIONS:
                bound = frac * px
                r = bench_tile(h, bound, repeats, px)
                r["bound"] = bound
                r["frac"] = frac
                r["name"] = name
                rows.append(r)
        summaries[title] = summarise(rows)
        by_bound = {f: summarise([r for r in rows if r["frac"] == f]) for f in ERROR_FRACTIONS}
        print_table(title, summaries[title], by_bound)
        print_server_rows(rows)
        all_rows += rows
    total = summarise(all_rows)
    print(f"\nall: {total['tiles']} pairs in {time.perf_counter() - t0:.1f} s")
    result = {
        "tri_ratio_vs_pydelatin": round(total["tri_ratio_vs_pydelatin"], 3),
        "tri_ratio_vs_pydelatin_mean": round(total["tri_ratio_vs_pydelatin_mean"], 3),
        "tri_ratio_vs_pydelatin_median": round(total["tri_ratio_vs_pydelatin_median"], 3),
        "tri_ratio_vs_pymartini": round(total["tri_ratio_vs_pymartini"], 3),
        "tri_ratio_graded_vs_pydelatin": round(total["tri_ratio_graded"], 3),
        "tri_ratio_free_border_vs_pydelatin": round(total["tri_ratio_free"], 3),
        "tri_ratio_free_border_vs_pydelatin_mean": round(total["tri_ratio_free_mean"], 3),
        "tri_ratio_plain_rtin_vs_pydelatin": round(total["tri_ratio_plain"], 3),
        "bytes_per_vertex": round(total["bpv_ours"], 3),
        "qm_gzip_bytes_per_vertex": round(total["bpv_qm_gz"], 3),
        "glb_bytes_per_vertex": round(total["bpv_glb"], 3),
        "ms_per_tile": round(total["ms_mesh_encode"], 2),
        "server_ms_old_cpu": round(total["ms_server_old_cpu"], 2),
        "server_ms_new_cpu": round(total["ms_server_new_cpu"], 2),
        "server_ms_old": round(total["ms_server_old"], 2),
        "server_ms_new": round(total["ms_server_new"], 2),
        "server_factor": round(total["server_factor"], 2),
        "server_factor_median": round(total["server_factor_median"], 2),
        "ms_per_tile_median": round(total["ms_mesh_encode_median"], 2),
        "ms_per_tile_cpu": round(total["ms_mesh_encode_cpu"], 2),
        "ms_decode_cpu": round(total["ms_decode_cpu"], 2),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "ms_mesh": round(total["ms_ours"], 2),
        "ms_decode": round(total["ms_decode"], 2),
        "ms_pydelatin": round(total["ms_delatin"], 2),
        "ms_pymartini": round(total["ms_martini"], 2),
        "max_err_over_bound": {
            "ours": round(total["err_ratio_ours"], 3),
            "pydelatin": round(total["err_ratio_delatin"], 3),
            "pymartini": round(total["err_ratio_martini"], 3),
        },
        "tiles": total["tiles"],
        "quick": bool(args.quick),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
