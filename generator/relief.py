"""Regional roughness: how much detail a region gets, from the anchor's own relief.

Real relief is not one roughness everywhere: fitting the refiner's law on the located
DEMs with one intercept per DEM (``generator.eval.lawfit``), the intercepts spread by a
factor of 30 (Texas plains 0.10, the Ecuadorian Andes 3.4), and 50 % of that spread (in
log) is explained by the relief of the anchor around the DEM (the standard deviation of
ETOPO5 heights within +-3 samples, about 60 km):

    log10 factor = -1.57 + 0.63 log10(relief_m)        (18 DEMs, correlation 0.71)

A refiner that takes its roughness only from its parents forgets within a few levels
whether it is over a plain or a range (its local modulation has exponent < 1); scaling
the law by this factor keeps plains plain and ranges rough at every level. The factor
is a pure function of (world, seed, global sample): the anchor is, and the window and
the interpolation below use global coordinates only, so the pyramid stays nested and
seamless. Levels finer than the anchor interpolate the anchor-level factor bilinearly.
"""

from __future__ import annotations

import math

import numpy as np

from generator import fractal_kernels
from runtime import jit
from runtime.tiles import ANCHOR_LEVEL, World

WINDOW = 3  # anchor samples each side of the relief window
LOG_A, LOG_B = -1.57, 0.63  # fitted, see module doc
FACTOR_MIN, FACTOR_MAX = 0.1, 3.0
CHUNK = 64  # anchor nodes a side of a cached chunk (the window costs 1.2x the nodes)
"""64, not 32: a chunk's anchor window is one ``sample`` call whose numpy overhead per octave
dominates small windows (a 38 x 38 window cost ~16 ms, ~11 us a node); a level-4 plane tile
in a new region (128 anchor nodes a side) went 79-86 -> 60-61 ms of generator CPU, earth
25-30 -> 24 (128: 64 and 28, the per-node libm factor grows with the area). A node's value
does not depend on its chunk (``at_anchor``), so the bits do not move."""
MAX_CHUNKS = 512  # about 16 MB of cached factors


def factor_of_relief(relief_m: float) -> float:
    """The fitted detail factor of a region whose relief (height std) is ``relief_m``,
    clipped to [FACTOR_MIN, FACTOR_MAX]; libm, so every caller gets the same bits."""
    f = 10.0 ** (LOG_A + LOG_B * math.log10(max(relief_m, 1.0)))
    return min(max(f, FACTOR_MIN), FACTOR_MAX)


def _window_factor(h: np.ndarray, H: int, W: int, n: int) -> np.ndarray:
    """(H + n - 1, W + n - 1) float64 heights -> (H, W) float64 factor of every n x n window.

    Sums over the window offsets in one fixed order (dr, then dc) per node: a node's value must
    not depend on which block asked (blocks share edge samples and must agree bit for bit; a
    vectorised reduction may change its order with the array's shape or alignment). sqrt is
    exactly rounded; ``log10`` and ``**`` are the C library's, as in :func:`factor_of_relief`
    (numpy's vectorised log / pow may round the SIMD body and the tail apart)."""
    out = np.empty((H, W))
    nn = n * n
    for i in range(H):
        for j in range(W):
            acc = 0.0
            for dr in range(n):
                for dc in range(n):
                    acc = acc + h[i + dr, j + dc]
            mean = acc / nn
            acc = 0.0
            for dr in range(n):
                for dc in range(n):
                    d = h[i + dr, j + dc] - mean
                    acc = acc + d * d
            relief = max(math.sqrt(acc / nn), 1.0)
            f = 10.0 ** (LOG_A + LOG_B * math.log10(relief))
            out[i, j] = min(max(f, FACTOR_MIN), FACTOR_MAX)
    return out


def _window_factor_numpy(h: np.ndarray, H: int, W: int, n: int) -> np.ndarray:
    """:func:`_window_factor` in numpy, elementwise sums in the same order (the reference)."""
    acc = np.zeros((H, W))
    for dr in range(n):
        for dc in range(n):
            acc = acc + h[dr : dr + H, dc : dc + W]
    mean = acc / (n * n)
    acc = np.zeros((H, W))
    for dr in range(n):
        for dc in range(n):
            d = h[dr : dr + H, dc : dc + W] - mean
            acc = acc + d * d
    relief = np.maximum(np.sqrt(acc / (n * n)), 1.0)  # sqrt is exactly rounded everywhere
    return np.array([factor_of_relief(x) for x in relief.ravel().tolist()], dtype=np.float64).reshape(H, W)


# no numba (or WORLDSTREAM_NO_JIT=1): the numpy reference (the same bits, slower)
_window_factor = jit.njit(_window_factor) if jit.ENABLED else _window_factor_numpy


@jit.warmer
def _warm() -> None:
    _window_factor(np.zeros((8, 8)), 2, 2, 7)


class RegionalRelief:
    """Regional detail factor of one world (the anchor is built lazily per seed)."""

    def __init__(self, world: World):
        self.world = world
        self._anchors: dict[int, object] = {}
        self._chunks: dict[tuple[int, int, int], np.ndarray] = {}  # (seed, ci, cj) -> factor

    def use_anchor(self, seed: int, anchor) -> None:
        """Read relief from this anchor for ``seed`` (the pyramid hands over its own, so the
        earth data is loaded once and a custom anchor gets its own relief)."""
        key = 0 if self.world is World.EARTH else int(seed)
        if self._anchors.get(key) is not anchor:
            self._anchors[key] = anchor
            self._chunks = {k: v for k, v in self._chunks.items() if k[0] != key}

    def _anchor(self, seed: int):
        key = 0 if self.world is World.EARTH else int(seed)
        if key not in self._anchors:
            from generator.pyramid import make_anchor

            self._anchors[key] = make_anchor(self.world, int(seed))
        return self._anchors[key]

    def at_anchor(self, seed: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """rows (H,), cols (W,) int64 consecutive anchor-level samples -> (H, W) float64 factor."""
        w = WINDOW
        r = np.arange(rows[0] - w, rows[-1] + w + 1, dtype=np.int64)
        c = np.arange(cols[0] - w, cols[-1] + w + 1, dtype=np.int64)
        a = self._anchor(seed)  # the relief the factor was fitted on (earth: ETOPO5's, without the sub-grid peaks)
        h = (a.relief_height(r, c) if hasattr(a, "relief_height") else a.sample(r, c)[0]).astype(np.float64)
        return _window_factor(np.ascontiguousarray(h), len(rows), len(cols), 2 * w + 1)

    def _grid(self, seed: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Anchor-level factor at nodes r0..r1 x c0..c1 (inclusive), from cached CHUNK^2 chunks
        (a node's value does not depend on its chunk: see at_anchor)."""
        key0 = 0 if self.world is World.EARTH else int(seed)
        out = np.empty((r1 - r0 + 1, c1 - c0 + 1))
        for ci in range(r0 // CHUNK, r1 // CHUNK + 1):
            for cj in range(c0 // CHUNK, c1 // CHUNK + 1):
                chunk = self._chunks.get((key0, ci, cj))
                if chunk is None:
                    if len(self._chunks) >= MAX_CHUNKS:
                        self._chunks.clear()
                    base_r, base_c = ci * CHUNK, cj * CHUNK
                    chunk = self.at_anchor(seed, np.arange(base_r, base_r + CHUNK), np.arange(base_c, base_c + CHUNK))
                    self._chunks[(key0, ci, cj)] = chunk
                rr0, rr1 = max(r0, ci * CHUNK), min(r1, ci * CHUNK + CHUNK - 1)
                cc0, cc1 = max(c0, cj * CHUNK), min(c1, cj * CHUNK + CHUNK - 1)
                out[rr0 - r0 : rr1 - r0 + 1, cc0 - c0 : cc1 - c0 + 1] = chunk[
                    rr0 - ci * CHUNK : rr1 - ci * CHUNK + 1, cc0 - cj * CHUNK : cc1 - cj * CHUNK + 1]
        return out

    def factor(self, seed: int, level: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """rows (B, R), cols (B, C) int64 global samples of ``level`` -> (B, R, C) float32 factor."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        shift = level - ANCHOR_LEVEL
        if shift < 0:
            raise ValueError(f"level must be >= the anchor level {ANCHOR_LEVEL}, got {level}")
        out = np.empty((rows.shape[0], rows.shape[1], cols.shape[1]), dtype=np.float32)
        r0s, r1s = rows[:, 0] >> shift, (rows[:, -1] >> shift) + 1
        c0s, c1s = cols[:, 0] >> shift, (cols[:, -1] >> shift) + 1
        box = None  # a compact batch's nodes in one grid, each block's a view (a node's value
        if jit.ENABLED and rows.shape[0] > 1:  # does not depend on the grid that holds it)
            R0, R1, C0, C1 = int(r0s.min()), int(r1s.max()), int(c0s.min()), int(c1s.max())
            if (R1 - R0 + 1) * (C1 - C0 + 1) <= 2 * int(((r1s - r0s + 1) * (c1s - c0s + 1)).sum()):
                box = self._grid(seed, R0, R1, C0, C1)
        for b in range(rows.shape[0]):
            r0, r1, c0, c1 = int(r0s[b]), int(r1s[b]), int(c0s[b]), int(c1s[b])
            if box is not None:
                grid = box[r0 - R0 : r1 - R0 + 1, c0 - C0 : c1 - C0 + 1]
            else:
                grid = self._grid(seed, r0, r1, c0, c1)
            scale = float(1 << shift)
            if jit.ENABLED:  # the expression below, compiled (same bits)
                fractal_kernels.relief_bilinear(grid, rows[b], r0 << shift, cols[b], c0 << shift, scale, out[b])
                continue
            fr = (rows[b] - (r0 << shift)) / scale  # in [0, r1 - r0]
            fc = (cols[b] - (c0 << shift)) / scale
            i = np.minimum(np.floor(fr).astype(np.int64), grid.shape[0] - 2)
            j = np.minimum(np.floor(fc).astype(np.int64), grid.shape[1] - 2)
            tr, tc = (fr - i)[:, None], (fc - j)[None, :]
            g00, g01 = grid[i][:, j], grid[i][:, j + 1]
            g10, g11 = grid[i + 1][:, j], grid[i + 1][:, j + 1]
            top = g00 + (g01 - g00) * tc
            bot = g10 + (g11 - g10) * tc
            out[b] = top + (bot - top) * tr
        return out


class ConstantRelief:
    """One detail factor everywhere: for refining a given DEM (``generator.dem.refine_dem``),
    whose region is the DEM itself rather than the world's anchor."""

    def __init__(self, factor: float):
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f"factor must be a positive number, got {factor!r}")
        self.value = float(factor)

    @classmethod
    def from_heights(cls, height_m: np.ndarray) -> "ConstantRelief":
        """The factor of the fit for a region whose relief is the std of these heights (m)."""
        return cls(factor_of_relief(float(np.nanstd(np.asarray(height_m, dtype=np.float64)))))

    def factor(self, seed: int, level: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.full((rows.shape[0], rows.shape[1], cols.shape[1]), self.value, dtype=np.float32)
