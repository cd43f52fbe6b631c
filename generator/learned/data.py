"""Training pairs for the learned refiner, cut from real data (DESIGN.md 2.5).

A *corpus* is a list of co-registered grids (height + optional rgb / nir) at their
native spacing, loaded once from ``../shared/data`` and saved as one compressed npz
(small enough to carry to a GPU machine). Pairs are made by even-sample decimation:
a child crop at spacing ``native * 2**k`` is ``grid[y0::2**k, x0::2**k]`` and its
parent is ``child[::2, ::2]`` -- exactly the nesting contract F_{L+1}[2i, 2j] = F_L[i, j].

Validation: in every grid the columns ``>= val_col0`` (the eastern quarter) are a
validation region that no training crop touches. Two DEMs (``UNSEEN``) are left out of
the corpus altogether and serve as never-seen terrain in the evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from generator.learned.located import context_at, dem_latlon, geo_nodes
from runtime.grids import bilinear
from runtime.tiles import METRES_PER_DEGREE

CHANNELS = ("height_m", "red", "green", "blue", "nir")
"""Channel order of every array here and of the network (height in metres, then [0, 1] bands)."""

UNSEEN = ("st_helens", "spain_gredos_25m")
"""DEMs never put in the corpus: the 'terrain you have never seen' of the evaluation."""

VAL_FRACTION = 0.25
"""Eastern fraction of each grid's columns kept for validation."""

# Per paired file: band indices for (red, green, blue, nir) (None = absent) and the finest
# child spacing at which its height is real detail. zion's DEM is 3" SRTM put on the 30 m
# Landsat grid (its decimation residuals match zion_srtm only from ~120 m); sentinel2's is
# 90 m blown up by nearest neighbour and swellendam's 90 m SRTM interpolated to 2.8 m:
# their colour is a target at every spacing, their height only where it is real.
_PAIRED = {
    "zion": ((2, 1, 0, 3), 110.0),
    "rstoolbox_landsat5": ((2, 1, 0, 3), 0.0),
    "rstoolbox_sentinel2": ((3, 2, 1, 7), float("inf")),
    "swellendam_3320D": ((0, 1, 2, None), 170.0),
}
_GLOBAL_LAT_RANGE = (66.0, -56.0)  # ETOPO5 rows kept for the global grid (north, south)


@dataclass(frozen=True)
class Grid:
    """One co-registered source grid.

    height_m: (H, W) float32 metres, NaN = no data. bands: (H, W, 4) float32 red, green,
    blue, nir in [0, 1], NaN where absent. height_min_spacing_m: the height is a target
    only at child spacings >= this (an interpolated stand-in below it, used as input only).
    """

    name: str
    spacing_m: float
    height_m: np.ndarray
    bands: np.ndarray
    height_min_spacing_m: float = 0.0
    geo: np.ndarray | None = None  # (2, nr, nc) float64 lat, lon (deg) at rows, cols 0, GEO_STEP, 2 GEO_STEP, ..
    context: np.ndarray | None = None  # (5, h, w) uint8 packed context (inputs.pack_context) every ctx_stride samples
    ctx_stride: int = 1

    @cached_property
    def has_bands(self) -> tuple[bool, bool]:
        """(rgb present, nir present) anywhere in the grid."""
        return bool(np.isfinite(self.bands[..., 0]).any()), bool(np.isfinite(self.bands[..., 3]).any())

    def present(self, spacing_m: float) -> np.ndarray:
        """(3,) bool at child spacing ``spacing_m``: height target valid, rgb, nir present."""
        return np.array([spacing_m >= self.height_min_spacing_m, *self.has_bands])

    @property
    def val_col0(self) -> int:
        """First column of the validation region."""
        return int(self.height_m.shape[1] * (1.0 - VAL_FRACTION))


def _no_bands(shape: tuple[int, int]) -> np.ndarray:
    return np.full(shape + (4,), np.nan, np.float32)


def load_dem(path: Path) -> Grid:
    d = np.load(path)
    elev = d["elev"].astype(np.float32)
    geo = geo_nodes(elev.shape, dem_latlon(d, elev.shape))
    return Grid(path.stem, float(d["pixel_m"]), elev, _no_bands(elev.shape), geo=geo)


def load_paired(path: Path) -> Grid:
    idx, min_spacing_m = _PAIRED[path.stem]
    d = np.load(path)
    elev, b = d["elev"].astype(np.float32), d["bands"].astype(np.float32)
    bands = _no_bands(elev.shape)
    for out, i in enumerate(idx):
        if i is not None:
            bands[..., out] = np.clip(b[..., i], 0.0, 1.0)
    geo = geo_nodes(elev.shape, dem_latlon(d, elev.shape))
    return Grid(path.stem, float(d["pixel_m"]), elev, bands, min_spacing_m, geo=geo)


def load_global(data_dir: Path) -> Grid:
    """ETOPO5 heights with Blue Marble colour resampled bilinearly onto its 5' nodes.

    The grid is geographic (plate carree), like the earth world's coarse levels, so its
    spacing is the equatorial metres of 5 arc-minutes -- the same convention as
    ``runtime.tiles.spacing_m``.
    """
    from PIL import Image

    g = np.load(data_dir / "global" / "etopo5.npz")
    lat = float(g["lat0"]) + float(g["dlat"]) * np.arange(g["elev"].shape[0])
    rows = (lat <= _GLOBAL_LAT_RANGE[0]) & (lat >= _GLOBAL_LAT_RANGE[1])
    elev = g["elev"][rows].astype(np.float32)
    lat = lat[rows]
    lon = float(g["lon0"]) + float(g["dlon"]) * np.arange(elev.shape[1])
    img = np.asarray(Image.open(data_dir / "global" / "bluemarble.jpg"), np.float32) / 255.0
    # Blue Marble pixel centres: lon = -180 + (j + 0.5)/15, lat = 90 - (i + 0.5)/15.
    ii = (90.0 - lat)[:, None] * 15.0 - 0.5 + 0.0 * lon[None, :]
    jj = (lon + 180.0)[None, :] * 15.0 - 0.5 + 0.0 * lat[:, None]
    bands = _no_bands(elev.shape)
    for c in range(3):
        bands[..., c] = bilinear(img[..., c], ii, jj)  # edges: nearest, as Blue Marble ends at -0.5 px
    lat0, dlat, lon0, dlon = lat[0], float(g["dlat"]), float(g["lon0"]), float(g["dlon"])
    geo = geo_nodes(elev.shape, lambda y, x: (lat0 + y * dlat, lon0 + x * dlon))
    return Grid("etopo5_bluemarble", float(g["dlon"]) * METRES_PER_DEGREE, elev, bands, geo=geo)


GLOBE_FILE = "globe30s_g10g_west.npz"
GLOBE_VAL_LON = 50.0
"""GLOBE 30" columns east of this longitude (Iran, Arabia) are never trained on: the coarse
range of the deep-cascade evaluation (generator.eval.cascade)."""


def globe_crops(
    data_dir: str | Path, n: int, size: int = 1024, split: str = "train", seed: int = 0
) -> list[Grid]:
    """``n`` square-pixel crops (size x size) of GLOBE 30" (~0.93 km), the real 1 km data of
    the coarse cascade range (9.8 km -> 1 km).

    Rows keep the 30" spacing (METRES_PER_DEGREE / 120 = 926.6 m); each row's columns are
    resampled bilinearly by 1 / cos(latitude) so pixels are square in metres. Crops are
    mostly land (the packager set sea to 0 m: at most 30 % zeros) and half of them rugged
    (p95 - p5 > 800 m) so mountains are not swamped by the Sahara. ``split='train'`` keeps
    every crop west of GLOBE_VAL_LON, ``'val'`` east of it.
    """
    from scipy.ndimage import map_coordinates

    d = np.load(Path(data_dir) / "global" / GLOBE_FILE)
    elev = d["elev"]
    lat_top, step = float(d["lat_top"]), float(d["step_deg"])
    val_c0 = int(round((GLOBE_VAL_LON - float(d["lon_left"])) / step))
    rng = np.random.default_rng([seed, split == "val"])
    spacing = METRES_PER_DEGREE * step
    out, tries = [], 0
    while len(out) < n and tries < 20_000:
        tries += 1
        r0 = int(rng.integers(0, elev.shape[0] - size))
        lat = lat_top - (r0 + 0.5 + np.arange(size)) * step  # (size,) row centre latitudes
        stretch = 1.0 / np.cos(np.radians(lat))  # source columns per output column
        span = int(np.ceil(size * stretch.max())) + 2
        lo, hi = (0, val_c0 - span) if split == "train" else (val_c0, elev.shape[1] - span)
        if hi <= lo:
            continue
        c0 = int(rng.integers(lo, hi))
        block = elev[r0 : r0 + size, c0 : c0 + span].astype(np.float32)
        rows = np.repeat(np.arange(size, dtype=np.float64)[:, None], size, 1)
        cols = np.arange(size, dtype=np.float64)[None, :] * stretch[:, None]
        z = map_coordinates(block, [rows, cols], order=1, mode="nearest").astype(np.float32)
        if (z <= 0).mean() > 0.3:
            continue
        rugged = np.percentile(z, 95) - np.percentile(z, 5) > 800
        if rugged != (len(out) % 2 == 0):
            continue
        name = f"globe_{split}_{len(out)}_{lat[size // 2]:.1f}N_{(c0 + span / 2) * step:.1f}E"

        def latlon(y, x, r0=r0, c0=c0, lon_left=float(d["lon_left"])):  # pixel centres, columns x 1 / cos(lat)
            la = lat_top - (r0 + 0.5 + y) * step
            return la, lon_left + (c0 + 0.5 + x / np.cos(np.radians(la))) * step

        out.append(Grid(name, spacing, z, _no_bands(z.shape), geo=geo_nodes(z.shape, latlon)))
    if len(out) < n:
        raise ValueError(f"found only {len(out)} of {n} GLOBE crops of {size} samples ({split})")
    return out


def build_corpus(data_dir: str | Path, globe: int = 0) -> list[Grid]:
    """All training grids under ``data_dir`` (the layout of ../shared/data/README.md), plus
    ``globe`` GLOBE 30" crops (globe_crops) where that file is present."""
    data_dir = Path(data_dir)
    grids = [load_dem(p) for p in sorted((data_dir / "dem").glob("*.npz")) if p.stem not in UNSEEN]
    grids += [load_paired(data_dir / "paired" / f"{n}.npz") for n in _PAIRED]
    grids.append(load_global(data_dir))
    if globe and (data_dir / "global" / GLOBE_FILE).exists():
        grids += globe_crops(data_dir, globe)
    return grids


_NAN_DM = -(2**31)
COARSE_METRE_UNITS_M = 500.0
"""Grids at least this coarse store whole metres (their sources are integer metres), finer
ones decimetres: GLOBE and ETOPO5 then fit int16 and the corpus stays small enough to carry."""


def save_corpus(grids: list[Grid], path: str | Path) -> None:
    """Compressed npz: heights as int32 decimetres, whole metres for grids of spacing >=
    COARSE_METRE_UNITS_M (int16 where they fit; NaN = -2**31; 10 cm is far below the finest
    detail trained on), present bands as uint8
    (round(254 * value), 255 = NaN)."""
    arrays, meta = {}, []
    for g in grids:
        per_m = 1.0 if g.spacing_m >= COARSE_METRE_UNITS_M else 10.0
        dm = np.where(np.isfinite(g.height_m), np.round(np.nan_to_num(g.height_m) * per_m), _NAN_DM)
        small = np.all(np.isfinite(g.height_m)) and np.abs(dm).max() < 32767
        arrays[f"{g.name}.height"] = dm.astype(np.int16 if small else np.int32)
        have = [c for c in range(4) if np.isfinite(g.bands[..., c]).any()]
        if have:
            b = g.bands[..., have]
            arrays[f"{g.name}.bands"] = np.where(
                np.isfinite(b), np.round(np.nan_to_num(b) * 254), 255
            ).astype(np.uint8)
        if g.geo is not None:
            arrays[f"{g.name}.geo"] = g.geo
        meta.append(
            {
                "name": g.name,
                "spacing_m": g.spacing_m,
                "bands": have,
                "height_min_spacing_m": g.height_min_spacing_m,
                "height_units_per_m": per_m,
            }
        )
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)


def geo_sidecar(path: str | Path) -> Path:
    """Where the georeference of a corpus built before grids had one lives: ``X.npz`` -> ``X.geo.npz``."""
    path = Path(path)
    return path.with_name(path.name.split(".npz")[0] + ".geo.npz")


def write_geo_sidecar(corpus: str | Path, data_dir: str | Path, globe: int) -> Path:
    """Georeference an existing corpus (built with ``globe`` GLOBE crops) into geo_sidecar(corpus):
    rebuilds the grids' georeference from ``data_dir`` and checks every name is found."""
    d = np.load(corpus)
    names = [m["name"] for m in json.loads(str(d["meta"]))]
    geos = {g.name: g.geo for g in build_corpus(data_dir, globe)}
    missing = [n for n in names if n not in geos]
    if missing:
        raise ValueError(f"{corpus}: no georeference for {missing} (built with another --globe or data?)")
    out = geo_sidecar(corpus)
    np.savez_compressed(out, **{n: geos[n] for n in names})
    return out


def load_corpus(path: str | Path) -> list[Grid]:
    """Grids of a corpus; each has its georeference (``geo``) when the corpus or its
    geo_sidecar holds one."""
    d = np.load(path)
    side = np.load(geo_sidecar(path)) if geo_sidecar(path).exists() else None
    grids = []
    for m in json.loads(str(d["meta"])):
        dm = d[f"{m['name']}.height"]
        per_m = float(m.get("height_units_per_m", 10.0))
        h = np.where(dm == _NAN_DM, np.nan, dm.astype(np.float64) / per_m).astype(np.float32)
        bands = _no_bands(h.shape)
        if m["bands"]:
            b = d[f"{m['name']}.bands"]
            bands[..., m["bands"]] = np.where(b == 255, np.nan, b.astype(np.float32) / 254.0)
        key = f"{m['name']}.geo"
        geo = d[key] if key in d.files else (side[m["name"]] if side is not None and m["name"] in side.files else None)
        grids.append(Grid(m["name"], float(m["spacing_m"]), h, bands, float(m["height_min_spacing_m"]), geo=geo))
    return grids


# ---------------------------------------------------------------------------------------
# Interpolating cubic refinement (the bicubic baseline and the network's base prediction).

CUBIC_TAPS = np.array([-1.0, 9.0, 9.0, -1.0]) / 16.0
"""4-point interpolating cubic (Catmull-Rom at the midpoint; Dyn-Levin-Gregory 4-point scheme)."""


def cubic_refine(parent: np.ndarray) -> np.ndarray:
    """Refine (..., h, w) to (..., 2h-1, 2w-1) keeping even samples, odd ones by the 4-point
    cubic; ends fall back to the mirrored stencil (clamped edge). float64 inside."""
    p = np.asarray(parent, np.float64)

    def along(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, -1)
        pad = np.concatenate([a[..., :1], a, a[..., -1:]], axis=-1)
        mid = sum(CUBIC_TAPS[t] * pad[..., t : t + a.shape[-1] - 1] for t in range(4))
        out = np.empty(a.shape[:-1] + (2 * a.shape[-1] - 1,))
        out[..., 0::2], out[..., 1::2] = a, mid
        return np.moveaxis(out, -1, axis)

    return along(along(p, -1), -2)


def decimation_residual_std(grid: Grid, step: int) -> float:
    """Robust std (1.4826 MAD) in metres of (real odd samples - cubic prediction) when the
    grid decimated by ``step`` is refined from its even samples; NaN when too small."""
    child = grid.height_m[::step, ::step]
    n_r, n_c = (child.shape[0] - 1) // 2 * 2 + 1, (child.shape[1] - 1) // 2 * 2 + 1
    if min(n_r, n_c) < 9:
        return float("nan")
    child = child[:n_r, :n_c]
    pred = cubic_refine(child[::2, ::2])
    r = (child - pred)[2:-2, 2:-2]
    r = r[np.isfinite(r)]
    if r.size < 64:
        return float("nan")
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def fit_amplitude(grids: list[Grid], max_step_log2: int = 5) -> tuple[float, float]:
    """Fit the scale-dependent detail amplitude A(s) = a_1km * (s / 1 km)**hurst (metres) to
    the decimation residuals of every valid grid at every step; returns (a_1km, hurst)."""
    xs, ys = [], []
    for g in grids:
        for k in range(max_step_log2 + 1):
            if g.spacing_m * (1 << k) < g.height_min_spacing_m:
                continue
            sd = decimation_residual_std(g, 1 << k)
            if np.isfinite(sd) and sd > 0:
                xs.append(np.log(g.spacing_m * (1 << k) / 1000.0))
                ys.append(np.log(sd))
    hurst, log_a = np.polyfit(np.array(xs), np.array(ys), 1)
    return float(np.exp(log_a)), float(hurst)


# ---------------------------------------------------------------------------------------
# Crop sampling.


@dataclass(frozen=True)
class PairBatch:
    """A batch of training pairs.

    parents: (B, 5, P, P) float32, P = cells + 2 * margin (missing modalities = 0).
    targets: (B, 5, 2*cells-1, 2*cells-1) float32, child samples of the output window.
    present: (B, 3) float32 masks (height target valid, rgb present, nir present).
    spacing_m: (B,) float32 child sample spacing.
    context: (B, 5, P, P) uint8 packed context at the parent samples (inputs.pack_context), or
    None (a sampler built with ``context=False``).
    """

    parents: np.ndarray
    targets: np.ndarray
    present: np.ndarray
    spacing_m: np.ndarray
    context: np.ndarray | None = None


def _dihedral(a: np.ndarray, t: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes."""
    a = np.rot90(a, t % 4, axes=(-2, -1))
    return a[..., ::-1] if t >= 4 else a


class PairSampler:
    """Random training (or validation) pairs: grid, decimation step, offset, dihedral map.

    Training crops lie wholly west of each grid's ``val_col0``; validation crops wholly
    east of it (``split='val'``). The rng is passed in, so a sampler is reproducible.
    """

    def __init__(
        self,
        grids: list[Grid],
        cells: int,
        margin: int,
        split: str = "train",
        max_step_log2: int = 6,
        size: int | None = None,
        real_height_only: bool = False,
        context: bool = False,
    ):
        """``context``: also cut each crop's packed context (the grids need attach_context)."""
        if context and any(g.context is None for g in grids):
            raise ValueError("context=True needs grids with context rasters (data.attach_context)")
        self.context = context
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.cells, self.margin, self.split = cells, margin, split
        # child crop edge in samples (``size`` overrides it: the cascade sampler's real crops)
        self.size = 2 * (cells + 2 * margin) - 1 if size is None else int(size)
        self.options = []  # (grid index, step) with room for at least one crop
        for gi, g in enumerate(grids):
            c0, c1 = (0, g.val_col0) if split == "train" else (g.val_col0, g.height_m.shape[1])
            for k in range(max_step_log2 + 1):
                span = (self.size - 1) * (1 << k) + 1
                if real_height_only and g.spacing_m * (1 << k) < g.height_min_spacing_m:
                    continue
                if span <= g.height_m.shape[0] and span <= c1 - c0:
                    self.options.append((gi, 1 << k, c0, c1))
        if not self.options:
            raise ValueError(f"no grid is large enough for {self.size}-sample crops ({split})")
        self.grids = grids

    def _one(self, rng: np.random.Generator):
        for _ in range(50):
            gi, step, c0, c1 = self.options[rng.integers(len(self.options))]
            g = self.grids[gi]
            span = (self.size - 1) * step + 1
            y0 = rng.integers(0, g.height_m.shape[0] - span + 1)
            x0 = rng.integers(c0, c1 - span + 1)
            sl = (slice(y0, y0 + span, step), slice(x0, x0 + span, step))
            h = g.height_m[sl]
            if not np.all(np.isfinite(h)):
                continue
            present = g.present(g.spacing_m * step)
            bands = np.moveaxis(g.bands[sl], -1, 0)
            if (present[1] and not np.all(np.isfinite(bands[:3]))) or (
                present[2] and not np.all(np.isfinite(bands[3]))
            ):
                continue
            child = np.concatenate([h[None], np.nan_to_num(bands, nan=0.0)], 0)
            ctx = None
            if self.context:  # at the parent samples (child[::2, ::2])
                pos = np.arange(0, span, 2 * step)
                ctx = context_at(g, y0 + pos, x0 + pos)
            return child, present, g.spacing_m * step, ctx
        return None

    def sample(self, rng: np.random.Generator, batch: int) -> PairBatch:
        child, present, spacing, ctx = self.sample_crops(rng, batch, with_context=True)  # (B, 5, S, S)
        m2, n = 2 * self.margin, 2 * self.cells - 1
        return PairBatch(
            parents=np.ascontiguousarray(child[:, :, ::2, ::2]),
            targets=np.ascontiguousarray(child[:, :, m2 : m2 + n, m2 : m2 + n]),
            present=present,
            spacing_m=spacing,
            context=ctx,
        )

    def sample_crops(self, rng: np.random.Generator, batch: int, with_context: bool = False):
        """Real crops: (B, 5, size, size) float32, present (B, 3) float32, spacing (B,) float32
        [, packed context at the even samples (B, 5, (size+1)/2, ..) uint8 or None]."""
        children, present, spacing, ctxs = [], [], [], []
        while len(children) < batch:
            got = self._one(rng)
            if got is None:
                continue
            child, pres, s, ctx = got
            t = int(rng.integers(8))  # (size odd: the symmetry keeps even samples even)
            children.append(_dihedral(child, t))
            if ctx is not None:
                ctxs.append(_dihedral(ctx, t))
            present.append(pres)
            spacing.append(s)
        out = (
            np.stack(children).astype(np.float32),
            np.stack(present).astype(np.float32),
            np.array(spacing, np.float32),
        )
        return out + ((np.stack(ctxs) if ctxs else None),) if with_context else out


def cascade_sizes(margin: int, levels: int, cells: int) -> list[int]:
    """Parent crop edges of an unrolled cascade: [h_0, ..., h_levels] with h_0 = 2m + cells and
    h_{j+1} = 2 (h_j - 2m) - 1 (each refinement eats m samples per side and doubles)."""
    h = [2 * margin + cells]
    for _ in range(levels):
        h.append(2 * (h[-1] - 2 * margin) - 1)
    if h[-1] < 8:
        raise ValueError(f"cells={cells} leaves {h[-1]} samples after {levels} levels (margin {margin})")
    return h


@dataclass(frozen=True)
class CascadeBatch:
    """Real fields of every level of an unrolled cascade (data.CascadeSampler).

    levels: [(B, 5, h_0, h_0), ..., (B, 5, h_K, h_K)] float32, h_j = cascade_sizes(...)[j]:
    level 0 is the start parent, level j the real field under the child window of level j
    (its [0, 0] sample is level j-1's [m, m]). present (B, 3), spacing_m (B,) of level K.
    context: [(B, 5, h_j, h_j) uint8 packed context at the samples of level j, j = 0..K] or None.
    """

    levels: list
    present: np.ndarray
    spacing_m: np.ndarray
    context: list | None = None


class CascadeSampler(PairSampler):
    """Real crops for the self-cascade objective: a ``levels``-deep cascade from a real
    parent at 2^levels x the final spacing. Only the window each level's loss needs is cut
    (the crop a level-0 parent spans, S = (h_0 - 1) 2^levels + 1, is ~35x larger). Only
    spacings where the grid's height is real detail (height_min_spacing_m)."""

    def __init__(self, grids: list[Grid], cells: int, margin: int, levels: int, split: str = "train",
                 max_step_log2: int = 6, context: bool = False):
        self.levels = levels
        self.sizes = cascade_sizes(margin, levels, cells)
        self.offsets = [0]  # first sample of each level's window, in finest samples
        for j in range(1, levels + 1):
            self.offsets.append(self.offsets[-1] + margin * 2 ** (levels - j + 1))
        size = (self.sizes[0] - 1) * (1 << levels) + 1
        super().__init__(grids, cells, margin, split, max_step_log2, size=size, real_height_only=True,
                         context=context)

    def _windows(self, rng: np.random.Generator):
        gi, step, c0, c1 = self.options[rng.integers(len(self.options))]
        g = self.grids[gi]
        span = (self.size - 1) * step + 1
        y0 = rng.integers(0, g.height_m.shape[0] - span + 1)
        x0 = rng.integers(c0, c1 - span + 1)
        present = g.present(g.spacing_m * step)
        out, ctx = [], []
        for j, n in enumerate(self.sizes):
            st, off = step << (self.levels - j), self.offsets[j] * step
            sl = (slice(y0 + off, y0 + off + (n - 1) * st + 1, st), slice(x0 + off, x0 + off + (n - 1) * st + 1, st))
            h = g.height_m[sl]
            bands = np.moveaxis(g.bands[sl], -1, 0)
            if not np.all(np.isfinite(h)) or (present[1] and not np.all(np.isfinite(bands[:3]))) or (
                present[2] and not np.all(np.isfinite(bands[3]))
            ):
                return None
            out.append(np.concatenate([h[None], np.nan_to_num(bands, nan=0.0)], 0))
            if self.context:
                pos = np.arange(n) * st
                ctx.append(context_at(g, y0 + off + pos, x0 + off + pos))
        return out, present, g.spacing_m * step, ctx

    def sample(self, rng: np.random.Generator, batch: int) -> CascadeBatch:
        levels, present, spacing = [[] for _ in self.sizes], [], []
        ctxs = [[] for _ in self.sizes]
        while len(present) < batch:
            got = self._windows(rng)
            if got is None:
                continue
            t = int(rng.integers(8))  # the windows are concentric: one symmetry maps them all
            for j, w in enumerate(got[0]):
                levels[j].append(_dihedral(w, t))
            for j, c in enumerate(got[3]):
                ctxs[j].append(_dihedral(c, t))
            present.append(got[1])
            spacing.append(got[2])
        return CascadeBatch(
            [np.stack(lv).astype(np.float32) for lv in levels],
            np.stack(present).astype(np.float32),
            np.array(spacing, np.float32),
            [np.stack(c) for c in ctxs] if self.context else None,
        )
