"""Sub-grid summits: GLOBE-calibrated peaks on the coarse anchor where no 1 km data exists.

ETOPO5 at 5' (~9.8 km) smooths mountains: inside the GLOBE tile the highest
30" (~1 km) sample within a 5' cell stands a median 0.3-0.7 km (p99 1.3-1.7 km)
above the registered ETOPO5 value at the cell's node when that node is a local
maximum of the coarse field, while the cascade's interpolation of the nodes
adds almost nothing there. Outside GLOBE this module puts that missing relief
back, learned from GLOBE and applied from the coarse field alone:

1. **Predictors** on the level-3 nodes of the registered ETOPO5 field ``E``
   (:func:`predictors`): local relief ``rel`` = RMS of ``E - G_2(E)`` under a
   Gaussian of 2 nodes (G_s: Gaussian of s nodes), height above the
   surroundings ``u2 = E - G_2.5(E)``, and whether the node is a local maximum
   of its 3 x 3 neighbourhood.
2. **Target** (GLOBE, :func:`cell_excess`): the highest level-6 GLOBE node
   within the node's cell (9 x 9 level-6 nodes about it) minus ``E`` there.
3. **Model** (:func:`fit`, :func:`amplitude`): for local maxima, per relief
   bin, quantile mapping from ``u2`` to the excess: the node at the q-quantile of
   ``u2`` in its bin gets the q-quantile of GLOBE's excess in that bin. So the
   *distribution* of the added peak heights matches GLOBE's conditional on the
   coarse predictors, and the most prominent coarse peaks get the largest ones
   (a conditional-mean regression would give every peak the median, and at the
   nodes themselves it explains nothing: ETOPO5's node values are unbiased).
4. **Shape and use** (:class:`SubgridPeaks`): only where ``rel >= MIN_REL_M`` (100 m:
   below it GLOBE's excess is a median 10-40 m, and thousands of small domes only fed the
   refiner's roughness). A peak of amplitude ``a`` at node n is ``a * cos^2(pi t / 2)``,
   ``t`` = distance from n in level-3 node units (zero from the next node on: no other node
   moves; neighbouring peaks add). The level-3 node is lifted by ``a`` in the height asset
   (build time); at every refined level the peaks are a layer the refiner does not see
   (:meth:`SubgridPeaks.refine`, called by the pyramid around ``refine``): it refines the
   parents minus the peaks and the peaks are added to its output, so its detail (and its
   curvature-driven roughness) is what it was without them, and a peak is a smooth dome with
   the ordinary detail on it; even samples are set to the parents' own values (exact nesting).
   The regional detail factor (:mod:`generator.relief`) reads the heights without the lifts
   (:meth:`generator.anchors.earth.EarthAnchor.relief_height`): it was fitted on ETOPO5 relief.
   Everything is a pure function of location (seamless, deterministic).

Measured alternative (docs/DECISIONS.md 30): adding the peak's shape to the new samples of
levels 4-6 only (``A - I(A)``, I the four-point interpolation), so the refiner refines it
like GLOBE's relief: the fractal's roughness feedback answers every dome with up to 2 km more
noise (Kilimanjaro +30 %, median RMSE at ~550 m +2.4 m against the located DEMs).

Amplitudes are multiplied by ``(1 - GLOBE coverage weight)`` x land x not a depression at
build time (and peaks the land/water rule would undo, e.g. coast caps, are dropped), so
inside GLOBE real data alone fills these levels and the two merge over GLOBE's 1 deg ramp.
Asset: ``assets/earth_subgrid_peaks.npz`` (flat node indices and int16 amplitudes, plus the
fitted table); built, validated and baked by :mod:`generator.anchors.subgrid_build`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from generator.paths import read_asset

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SUBGRID_FILE = "earth_subgrid_peaks.npz"
ANCHOR_ROWS, ANCHOR_COLS = 2049, 4096  # the level-3 grid (generator.anchors.earth)
RADIUS_NODES = 1.0
REL_BINS = np.array([0.0, 25.0, 50.0, 100.0, 200.0, np.inf])
N_QUANT = 41
MIN_REL_M = 100.0  # peaks only where the coarse relief is at least this (see the module doc)
SUBGRID_VERSION = f"subgrid-2:r{RADIUS_NODES}:cos2:hidden-from-refiner:relief-unlifted"  # in the anchor digest


# ---------------------------------------------------------------- the model

def predictors(e: np.ndarray, wrap: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """e (H, W) metres on level-3 nodes -> (rel, u2, is_max), each (H, W): local relief (m),
    height above the surroundings (m), local maximum of the 3 x 3 neighbourhood (bool).
    ``wrap``: columns wrap around the globe (the full grid), else edges are extended."""
    from scipy import ndimage

    mode = ("nearest", "wrap") if wrap else "nearest"
    e = np.asarray(e, dtype=np.float64)
    hp = e - ndimage.gaussian_filter(e, 2.0, mode=mode)
    rel = np.sqrt(ndimage.gaussian_filter(hp * hp, 2.0, mode=mode))
    u2 = e - ndimage.gaussian_filter(e, 2.5, mode=mode)
    is_max = e >= ndimage.maximum_filter(e, size=3, mode=mode)
    return rel, u2, is_max


def cell_excess(g6: np.ndarray, rows6: np.ndarray, cols6: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Highest level-6 GLOBE node within each level-3 cell minus the coarse value: g6 (R, C) metres,
    rows6 (H,), cols6 (W,) index of each level-3 node in g6 (in range), e (H, W) -> (H, W) metres."""
    from scipy import ndimage

    mx = ndimage.maximum_filter(np.asarray(g6, dtype=np.float64), size=9, mode="nearest")
    return mx[np.ix_(rows6, cols6)] - e


def fit(rel: np.ndarray, u2: np.ndarray, excess: np.ndarray) -> dict:
    """Quantile table from training peaks (1-D arrays of equal length: local maxima on land):
    {"rel_bins" (B + 1,), "u2_q" (B, N_QUANT), "excess_q" (B, N_QUANT), "count" (B,)} (metres)."""
    q = np.linspace(0.0, 1.0, N_QUANT)
    nb = len(REL_BINS) - 1
    b = np.clip(np.digitize(rel, REL_BINS) - 1, 0, nb - 1)
    u2_q, ex_q, count = np.zeros((nb, N_QUANT)), np.zeros((nb, N_QUANT)), np.zeros(nb, dtype=np.int64)
    for k in range(nb):
        m = b == k
        if m.sum() < N_QUANT:
            raise ValueError(f"relief bin {REL_BINS[k]}..{REL_BINS[k + 1]} m has {m.sum()} training peaks, "
                             f"expected at least {N_QUANT}")
        u2_q[k], ex_q[k], count[k] = np.quantile(u2[m], q), np.quantile(excess[m], q), m.sum()
    return {"rel_bins": REL_BINS.copy(), "u2_q": u2_q, "excess_q": ex_q, "count": count}


def amplitude(table: dict, rel: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Peak amplitude (m, >= 0) for peaks with relief rel and height above surroundings u2
    (same shape): u2's quantile in its relief bin mapped to GLOBE's excess at that quantile
    (linear between the table's knots, clamped to its ends)."""
    bins = np.asarray(table["rel_bins"], dtype=np.float64)
    u2_q, ex_q = np.asarray(table["u2_q"]), np.asarray(table["excess_q"])
    b = np.clip(np.digitize(rel, bins) - 1, 0, len(bins) - 2)
    out = np.zeros(np.shape(rel), dtype=np.float64)
    for k in range(len(bins) - 1):
        m = b == k
        if m.any():
            uq = np.maximum.accumulate(u2_q[k] + np.arange(N_QUANT) * 1e-9)  # strictly increasing knots
            out[m] = np.interp(u2[m], uq, ex_q[k])
    return np.maximum(out, 0.0)


def peaks_near(a_grid: np.ndarray, level: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The level-3 nodes (n, 2) int64 (row, unwrapped col; row-major order) holding a peak that
    may reach level-``level`` samples rows (H,), cols (W,) (increasing)."""
    s = 1 << (level - 3)
    r0, r1 = max(int(rows[0]) // s, 0), min(int(rows[-1]) // s + 1, a_grid.shape[0] - 1)
    c0, c1 = int(cols[0]) // s, int(cols[-1]) // s + 1
    if r1 < r0:
        return np.zeros((0, 2), dtype=np.int64)
    n = a_grid.shape[1]
    if c0 // n == c1 // n:  # no wrap: a plain slice (the common case, a few microseconds)
        sub = a_grid[r0 : r1 + 1, c0 % n : c1 % n + 1]
    else:
        sub = a_grid[r0 : r1 + 1][:, np.mod(np.arange(c0, c1 + 1), n)]
    if not sub.any():  # no peak near (most blocks): no index arrays to build
        return np.zeros((0, 2), dtype=np.int64)
    i, j = np.nonzero(sub)
    return np.stack([r0 + i, c0 + j], axis=1).astype(np.int64)


def peak_field(a_grid: np.ndarray, level: int, rows: np.ndarray, cols: np.ndarray,
               nodes: np.ndarray | None = None) -> np.ndarray:
    """The peaks' height A (H, W) float64 m at level-``level`` global samples rows (H,), cols (W,)
    (increasing), a_grid (ANCHOR_ROWS, ANCHOR_COLS) the amplitude per level-3 node (columns wrap,
    rows beyond the poles read 0); ``nodes`` from :func:`peaks_near` if already known. A sample
    is reached only by the (at most four) nodes of its cell (RADIUS_NODES <= 1); they add up in
    row-major order, so its value does not depend on the block that asks."""
    s = float(1 << (level - 3))
    fr, fc = np.asarray(rows, dtype=np.int64) / s, np.asarray(cols, dtype=np.int64) / s
    out = np.zeros((len(fr), len(fc)))
    if nodes is None:
        nodes = peaks_near(a_grid, level, rows, cols)
    for nr, nc in nodes:
        ty, tx = (fr - nr) / RADIUS_NODES, (fc - nc) / RADIUS_NODES
        ri, ci = np.flatnonzero(np.abs(ty) < 1.0), np.flatnonzero(np.abs(tx) < 1.0)
        if ri.size == 0 or ci.size == 0:
            continue
        rs, cs = slice(ri[0], ri[-1] + 1), slice(ci[0], ci[-1] + 1)  # contiguous: rows, cols increase
        t = np.sqrt((ty[rs] ** 2)[:, None] + (tx[cs] ** 2)[None, :])
        inside = t < 1.0
        k = np.cos((0.5 * np.pi) * np.where(inside, t, 1.0))
        amp = float(a_grid[nr, nc % a_grid.shape[1]])
        out[rs, cs] += np.where(inside, amp * (k * k), 0.0)
    return out


def _midpoints(x: np.ndarray, axis: int) -> np.ndarray:
    """Four-point midpoints (9(b + c) - (a + d)) / 16 between samples 1..n-2 along ``axis``."""
    x = np.moveaxis(x, axis, 0)
    m = (9.0 * (x[1:-2] + x[2:-1]) - (x[:-3] + x[3:])) / 16.0
    return np.moveaxis(m, 0, axis)


class SubgridPeaks:
    """The shipped peaks: amplitude (ANCHOR_ROWS, ANCHOR_COLS) int16 m per level-3 node (0: none)."""

    def __init__(self, a_grid: np.ndarray, table: dict):
        if a_grid.shape != (ANCHOR_ROWS, ANCHOR_COLS):
            raise ValueError(f"peak amplitudes must be ({ANCHOR_ROWS}, {ANCHOR_COLS}), got {a_grid.shape}")
        self.a_grid = np.ascontiguousarray(a_grid, dtype=np.int16)
        self.a_grid.setflags(write=False)
        self.table = table

    @classmethod
    def load(cls, path: Path = ASSETS / SUBGRID_FILE) -> "SubgridPeaks":
        return cls.load_bytes(read_asset(path, "sub-grid peaks", "python -m generator.anchors.subgrid_build --bake"))

    @classmethod
    def load_bytes(cls, data: bytes) -> "SubgridPeaks":
        """npz: ``index`` (n,) int32 flat node indices, ``amp`` (n,) int16 m, the fit table's arrays."""
        d = np.load(io.BytesIO(data))
        a = np.zeros(ANCHOR_ROWS * ANCHOR_COLS, dtype=np.int16)
        a[d["index"]] = d["amp"]
        table = {k: d[k] for k in ("rel_bins", "u2_q", "excess_q", "count")}
        return cls(a.reshape(ANCHOR_ROWS, ANCHOR_COLS), table)

    def heights(self, level: int, origins: np.ndarray, h: int, w: int) -> np.ndarray | None:
        """The peaks (B, h, w) float32 m over level-``level`` blocks at global origins (B, 2) (row, col);
        None where no peak reaches any of them."""
        origins = np.asarray(origins, dtype=np.int64)
        if len(origins) > 1:  # no peak under the blocks' bounding box (most calls): none in any block
            lo, hi = origins.min(axis=0), origins.max(axis=0)
            if not len(peaks_near(self.a_grid, level, np.array([lo[0], hi[0] + h - 1]),
                                  np.array([lo[1], hi[1] + w - 1]))):
                return None
        out = None
        for b, (r0, c0) in enumerate(origins):
            rows, cols = r0 + np.arange(h), c0 + np.arange(w)
            nodes = peaks_near(self.a_grid, level, rows, cols)
            if len(nodes):
                if out is None:
                    out = np.zeros((len(origins), h, w), dtype=np.float32)
                out[b] = peak_field(self.a_grid, level, rows, cols, nodes)
        return out

    def refine(self, refiner, crops: np.ndarray, level: int, origins: np.ndarray, seed: int, margin: int):
        """``refiner.refine`` with the peaks kept out of its sight: crops (B, C, hp, hp) of level - 1 at
        global (origins // 2 - margin), origins (B, 2) of the level-``level`` children -> children
        (B, C, 2 (hp - 2 margin) - 1, same). The refiner gets the parents' heights minus the peaks and
        the peaks of ``level`` are added to its output (so its detail and roughness feedback are the
        same as without them, and a peak is a smooth dome at every level); even samples are then set
        to the parents' own values, so nesting is exact whatever the float rounding of the two steps."""
        crops = np.asarray(crops, dtype=np.float32)
        n, _, hp, _ = crops.shape
        size = 2 * (hp - 2 * margin) - 1
        par = self.heights(level - 1, np.asarray(origins, dtype=np.int64) // 2 - margin, hp, hp)
        kid = self.heights(level, origins, size, size)
        if par is None and kid is None:
            return refiner.refine(crops, level, origins, seed)
        inp = crops.copy()
        if par is not None:
            inp[:, 0] -= par
        kids = np.array(refiner.refine(inp, level, origins, seed), dtype=np.float32, copy=True)
        if kid is not None:
            kids[:, 0] += kid
        kids[:, :, ::2, ::2] = crops[:, :, margin : hp - margin, margin : hp - margin]
        return kids


def to_bytes(a_grid: np.ndarray, table: dict) -> bytes:
    flat = np.asarray(a_grid, dtype=np.int16).reshape(-1)
    idx = np.flatnonzero(flat)
    buf = io.BytesIO()
    np.savez_compressed(buf, index=idx.astype(np.int32), amp=flat[idx],
                        **{k: np.asarray(v) for k, v in table.items()})
    return buf.getvalue()
