"""Real land and water as a pure function of location, and the clamp that keeps heights honest.

The run-time asset ``assets/earth_landwater.npz`` holds the GLOBE-derived 30"
land/water mask (global-land-mask 1.0.0; True = ocean, most lakes count as
land) in 64 x 64-cell blocks (32' x 32'): a block is all water, all land, or
mixed, and only mixed blocks keep their 4,096 bits. Beside it, a 5' flag grid
of *depressions*: 5' ETOPO5 cells (registered, see
:mod:`generator.anchors.registration`) that are land in the mask and below
-1 m in ETOPO5, at least two cells (~18 km) from the sea (Dead Sea, the
Caspian, which the mask counts as land, with its shores, Qattara, Danakil,
Death Valley).

Land fraction at a point: the mask's cell centres (1 land, 0 water) read
bilinearly; the point is land where it is >= 0.5. The rule (:func:`clamp`),
applied to every sample of every level (the anchor at build time, each
refined level in the pyramid):

- land, not in a depression: ``h = min(max(h, 0), cap(f))`` (never below sea level, and no
  cliff at the coast: ``cap(f) = COAST_RAMP_M * (f - 0.5) / (1 - f)`` is 0 m on the coastline,
  rises at about ``2 * COAST_RAMP_M`` m per 30" cell (a ~28 deg ramp at 926 m cells) and is
  unbounded where ``f = 1``, i.e. further than about one cell from the water; it is a continuous
  function of location, so it leaves no crease, and only acts within ~1 km of the coast);
- land in a depression: unchanged (real data says it may be below 0 m);
- water: ``h = max(min(h, -1), -1 - cap(1 - f))`` (reads as water; the renderer draws the surface
  at 0 m; the same ramp keeps the sea floor from dropping away as a cliff at the shore).

Because the rule is a pure, idempotent function of (lon, lat, h), and an even
sample of level L+1 is the same point as its parent, the clamp never changes
an even sample: the pyramid stays exactly nested and seamless.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from generator.anchors import landwater_kernels
from generator.paths import read_asset
from runtime import jit

ASSETS = Path(__file__).resolve().parents[2] / "assets"
LANDWATER_FILE = "earth_landwater.npz"
CELLS_PER_DEG = 120  # the 30" mask
BLOCK = 64
N_ROWS, N_COLS = 180 * CELLS_PER_DEG, 360 * CELLS_PER_DEG
B_ROWS, B_COLS = -(-N_ROWS // BLOCK), N_COLS // BLOCK  # 338 x 675 blocks
WATER, LAND, MIXED = 0, 1, 2
DEPRESSION_PER_DEG = 12  # 5' flags
LAND_FLOOR_M, WATER_CEIL_M = 0.0, -1.0
COAST_RAMP_M = 250.0  # cap(f) = COAST_RAMP_M * (f - 0.5) / (1 - f): 250 m at f = 0.75 (~0.25 cell inland)
RULE_VERSION = "landwater-2"  # part of the earth model id: bump when the rule changes content


def box_range(lat0: float, lat1: float, lon0: float, lon1: float, per_deg: float, n_rows: int,
              margin: int = 0, block: int = 1) -> tuple[int, int, int, int]:
    """(i0, i1, j0, j1): the first and last row (clipped to 0 .. n_rows - 1) and column (not
    wrapped) of the ``block``-cell blocks holding the cells of the box lat0..lat1 x lon0..lon1
    (degrees) with ``margin`` cells around it, on a grid of ``per_deg`` cells a degree."""
    return (max(math.floor((90.0 - lat1) * per_deg) - margin, 0) // block,
            min(math.floor((90.0 - lat0) * per_deg) + margin, n_rows - 1) // block,
            (math.floor((lon0 + 180.0) * per_deg) - margin) // block,
            (math.floor((lon1 + 180.0) * per_deg) + margin) // block)


def land_share(water: np.ndarray, block: int, strip: int = 600) -> np.ndarray:
    """(R / block, C / block) float32 land share of each ``block`` x ``block`` group of cells of
    the 30" mask ``water`` (bool, True = water: ``landmask_30s.npz``'s ``mask``), in strips of
    ``strip`` output rows (bounded memory; the strips do not change a value)."""
    rows, cols = water.shape[0] // block, water.shape[1] // block
    out = np.empty((rows, cols), dtype=np.float32)
    for i in range(0, rows, strip):
        n = min(strip, rows - i)
        out[i : i + n] = (~water[i * block : (i + n) * block]).reshape(n, block, cols, block).mean(axis=(1, 3))
    return out


def block_box(table: np.ndarray, lat0: float, lat1: float, lon0: float, lon1: float,
              cells_per_deg: int, block: int, n_rows: int) -> np.ndarray:
    """The entries of a per-block ``table`` (block rows x block cols, columns wrapping in
    longitude) whose blocks hold the cells of the box lat0..lat1 x lon0..lon1 (degrees) with a
    two-cell margin, on a grid of ``cells_per_deg`` cells a degree, ``block`` cells a block and
    ``n_rows`` cell rows. A plain slice where the box does not wrap (the same entries)."""
    i0, i1, b0, b1 = box_range(lat0, lat1, lon0, lon1, cells_per_deg, n_rows, margin=2, block=block)
    if 0 <= b0 and b1 < table.shape[1]:
        return table[i0 : i1 + 1, b0 : b1 + 1]
    return table[i0 : i1 + 1][:, np.mod(np.arange(b0, b1 + 1), table.shape[1])]


def coast_cap(frac: np.ndarray) -> np.ndarray:
    """The height cap (m, float32, same shape) of land at land fraction ``frac`` >= 0.5; +inf where
    ``frac`` = 1. Before this cap (2026-12-05) the clamp alone left steps of 20-36 m between
    neighbouring 5 m samples across coastlines (Fiji, Oslofjord), 3-5x the inland p99.9."""
    f = np.asarray(frac, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.float32(COAST_RAMP_M) * (f - np.float32(0.5)) / (np.float32(1) - f)
    return np.where(f >= 1, np.float32(np.inf), np.maximum(cap, np.float32(0))).astype(np.float32)


class LandWater:
    """The block-coded 30" mask and the depression flags; queries are vectorised."""

    def __init__(self, state: np.ndarray, slot: np.ndarray, bits: np.ndarray, depression: np.ndarray):
        """state (B_ROWS, B_COLS) uint8 WATER/LAND/MIXED, slot (B_ROWS, B_COLS) int32 row of ``bits``
        for mixed blocks, bits (n_mixed, BLOCK*BLOCK/8) uint8 packed (1 = land, row-major),
        depression (2160, 4320) bool 5' flags (row 0 at 90 N, col 0 at 180 W)."""
        if state.shape != (B_ROWS, B_COLS) or depression.shape != (180 * 12, 360 * 12):
            raise ValueError(f"land/water grids must be ({B_ROWS}, {B_COLS}) blocks and (2160, 4320) "
                             f"depression flags, got {state.shape} and {depression.shape}")
        self.state, self.slot, self.depression = state, slot, depression
        self.bits = np.ascontiguousarray(bits, dtype=np.uint8)  # packed: 7.7 MB instead of 62 MB
        for a in (self.state, self.slot, self.bits, self.depression):
            a.setflags(write=False)

    @classmethod
    def load(cls, path: Path = ASSETS / LANDWATER_FILE) -> "LandWater":
        return cls.load_bytes(read_asset(path, "land/water", "python -m generator.anchors.earth build"))

    @classmethod
    def load_bytes(cls, data: bytes) -> "LandWater":
        d = np.load(io.BytesIO(data))
        return cls(d["state"], d["slot"], d["bits"], np.unpackbits(d["depression"], axis=1).astype(bool))

    def land_cells(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """1.0 where 30" cell (i, j) is land (i clipped to the globe, j wrapped), else 0.0; any shape."""
        shape = np.broadcast_shapes(np.shape(i), np.shape(j))
        i = np.clip(np.broadcast_to(np.asarray(i, dtype=np.int64), shape).ravel(), 0, N_ROWS - 1)
        j = np.mod(np.broadcast_to(np.asarray(j, dtype=np.int64), shape).ravel(), N_COLS)
        bi, bj = i // BLOCK, j // BLOCK
        st = self.state[bi, bj]
        out = (st == LAND).astype(np.float32)
        mixed = np.nonzero(st == MIXED)[0]
        if mixed.size:
            k = self.slot[bi[mixed], bj[mixed]]
            bit = (i[mixed] % BLOCK) * BLOCK + j[mixed] % BLOCK
            out[mixed] = (self.bits[k, bit >> 3] >> (7 - (bit & 7))) & 1
        return out.reshape(shape)

    def land_fraction(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Bilinear land fraction in [0, 1] at points (degrees, same shape) from the cell centres."""
        fi = (90.0 - lat) * CELLS_PER_DEG - 0.5
        fj = (lon + 180.0) * CELLS_PER_DEG - 0.5
        i0, j0 = np.floor(fi).astype(np.int64), np.floor(fj).astype(np.int64)
        ti, tj = (fi - i0).astype(np.float32), (fj - j0).astype(np.float32)
        a, b = self.land_cells(i0, j0), self.land_cells(i0, j0 + 1)
        c, d = self.land_cells(i0 + 1, j0), self.land_cells(i0 + 1, j0 + 1)
        return (a * (1 - tj) + b * tj) * (1 - ti) + (c * (1 - tj) + d * tj) * ti

    def land_fraction_grid(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """:meth:`land_fraction` on the grid lat (H,) x lon (W,) degrees -> (H, W) float32, bit for
        bit (the same float32 expressions per point), each 30" cell of the grid's box read once: a
        deep pyramid block (65 x 65 samples inside one or two cells) costs one small table instead
        of 4 x 4,225 per-point lookups (0.7 of the earth's 1.2 ms per level-16 block). A grid whose
        box holds more cells than points (coarse levels, or across the antimeridian) is read per point."""
        cells = self._grid_cells(lat, lon)
        if cells is None:
            return self.point_fraction_grid(lat, lon)
        return self.mix_cells(*cells)

    @staticmethod
    def grid_box(lat: np.ndarray, lon: np.ndarray) -> tuple:
        """The 30" cell box under the grid lat (H,) x lon (W,) degrees, as :meth:`land_fraction`
        reads it: (fi (H,), fj (W,) cell coordinates, i0, j0 their floors, ia, ja the box's first
        cell, ni, nj its size in cells)."""
        fi = (90.0 - lat) * CELLS_PER_DEG - 0.5
        fj = (lon + 180.0) * CELLS_PER_DEG - 0.5
        i0, j0 = np.floor(fi).astype(np.int64), np.floor(fj).astype(np.int64)
        ia, ja = int(i0.min()), int(j0.min())
        return fi, fj, i0, j0, ia, ja, int(i0.max()) - ia + 2, int(j0.max()) - ja + 2

    def _grid_cells(self, lat: np.ndarray, lon: np.ndarray) -> tuple | None:
        """The 30" cells under the grid lat (H,) x lon (W,): (cells (ni, nj) float32 from cell
        (ia, ja), fi (H,), fj (W,) cell coordinates, i0, j0 their floors, ia, ja), or None when the
        box holds more cells than the grid has points."""
        fi, fj, i0, j0, ia, ja, ni, nj = self.grid_box(lat, lon)
        if ni * nj > i0.size * j0.size:
            return None
        cells = self.cells_grid(np.arange(ia, ia + ni), np.arange(ja, ja + nj))
        return cells, fi, fj, i0, j0, ia, ja

    def cells_grid(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """:meth:`land_cells` on the grid of 30" cell rows i (n,) x columns j (m,) -> (n, m) float32
        (compiled where ``runtime.jit`` is: the same values)."""
        if not jit.ENABLED:
            return self.land_cells(np.asarray(i)[:, None], np.asarray(j)[None, :])
        i = np.clip(np.asarray(i, dtype=np.int64), 0, N_ROWS - 1)
        j = np.mod(np.asarray(j, dtype=np.int64), N_COLS)
        out = np.empty((i.size, j.size), np.float32)
        landwater_kernels.cells_grid(self.state, self.slot, self.bits, i, j, BLOCK, LAND, MIXED, out)
        return out

    def point_fraction_grid(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """:meth:`land_fraction` at every point of the grid lat (H,) x lon (W,) degrees -> (H, W)
        float32, bit for bit: the coarse blocks' path (more cells under the box than points), each
        point's four cells read once from a table of the rows and columns the points use
        (compiled where ``runtime.jit`` is; else the per-point lookups themselves)."""
        if not jit.ENABLED:
            la, lo = np.broadcast_arrays(lat[:, None], lon[None, :])
            return self.land_fraction(la, lo)
        fi, fj, i0, j0, _, _, _, _ = self.grid_box(lat, lon)
        rows = np.stack([i0, i0 + 1], axis=1).ravel()  # row 2k: i0[k], 2k + 1: i0[k] + 1
        cols = np.stack([j0, j0 + 1], axis=1).ravel()
        out = np.empty((i0.size, j0.size), np.float32)
        landwater_kernels.mix_grid(self.cells_grid(rows, cols), 2 * np.arange(i0.size), 2 * np.arange(j0.size),
                                   (fi - i0).astype(np.float32), (fj - j0).astype(np.float32), out)
        return out

    @staticmethod
    def mix_cells(cells, fi, fj, i0, j0, ia, ja) -> np.ndarray:
        """:meth:`land_fraction`'s bilinear expression on a grid: cells (ni, nj) float32 of the box
        from cell (ia, ja) and the rest of :meth:`grid_box` -> (H, W) float32."""
        if jit.ENABLED:  # the same float32 expression, compiled
            out = np.empty((i0.size, j0.size), np.float32)
            landwater_kernels.mix_grid(np.ascontiguousarray(cells, dtype=np.float32), i0 - ia, j0 - ja,
                                       (fi - i0).astype(np.float32), (fj - j0).astype(np.float32), out)
            return out
        ti, tj = (fi - i0).astype(np.float32)[:, None], (fj - j0).astype(np.float32)[None, :]
        top, bottom, jj = cells[i0 - ia], cells[i0 - ia + 1], j0 - ja
        return (top[:, jj] * (1 - tj) + top[:, jj + 1] * tj) * (1 - ti) + \
            (bottom[:, jj] * (1 - tj) + bottom[:, jj + 1] * tj) * ti

    def in_depression_grid(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """:meth:`in_depression` on the grid lat (H,) x lon (W,) degrees -> (H, W) bool."""
        if jit.ENABLED:
            i, j, flagged = self._depression_cells(lat, lon)
            return self.depression[np.ix_(i, j)] if flagged else np.zeros((i.size, j.size), bool)
        i = np.clip(np.floor((90.0 - lat) * DEPRESSION_PER_DEG).astype(np.int64), 0, self.depression.shape[0] - 1)
        j = np.mod(np.floor((lon + 180.0) * DEPRESSION_PER_DEG).astype(np.int64), self.depression.shape[1])
        # The rows i.min()..i.max() at the grid's columns hold every flag it reads (most boxes
        # hold none: one small read instead of the (H, W) one).
        if not self.depression[int(i.min()) : int(i.max()) + 1].take(j, axis=1).any():
            return np.zeros((i.size, j.size), bool)
        return self.depression[np.ix_(i, j)]

    def _depression_cells(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """The 5' depression rows (H,) and columns (W,) under the grid lat (H,) x lon (W,) as
        :meth:`in_depression_grid` reads them, and whether any of those cells is flagged
        (compiled: ``runtime.jit`` only)."""
        i, j = np.empty(np.size(lat), np.int64), np.empty(np.size(lon), np.int64)
        landwater_kernels.depression_rows_cols(np.asarray(lat, np.float64), np.asarray(lon, np.float64),
                                               float(DEPRESSION_PER_DEG), self.depression.shape[0],
                                               self.depression.shape[1], i, j)
        return i, j, bool(landwater_kernels.any_flag(self.depression, i, j))

    def in_depression(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """True inside a flagged 5' cell (real land below sea level)."""
        i = np.clip(np.floor((90.0 - lat) * DEPRESSION_PER_DEG).astype(np.int64), 0, self.depression.shape[0] - 1)
        j = np.mod(np.floor((lon + 180.0) * DEPRESSION_PER_DEG).astype(np.int64), self.depression.shape[1])
        return self.depression[i, j]

    def uniform_state(self, lat0: float, lat1: float, lon0: float, lon1: float) -> int | None:
        """WATER or LAND if the whole box (degrees, with a one-cell margin) is that and has no
        depression; None if it is mixed (then use :meth:`clamp`)."""
        dep = box_range(lat0, lat1, lon0, lon1, DEPRESSION_PER_DEG, self.depression.shape[0])
        if jit.ENABLED:  # the same test compiled: block_box's rows and columns, then the flags
            st = landwater_kernels.uniform_box(
                self.state, self.depression,
                *box_range(lat0, lat1, lon0, lon1, CELLS_PER_DEG, N_ROWS, margin=2, block=BLOCK), *dep, LAND, MIXED)
            return None if st < 0 else int(st)
        st = block_box(self.state, lat0, lat1, lon0, lon1, CELLS_PER_DEG, BLOCK, N_ROWS)
        if not (st == st.flat[0]).all() or st.flat[0] == MIXED:
            return None
        if st.flat[0] == LAND:
            di0, di1, dj0, dj1 = dep
            dj = np.mod(np.arange(dj0, dj1 + 1), self.depression.shape[1])
            if self.depression[di0 : di1 + 1][:, dj].any():
                return None
        return int(st.flat[0])

    def clamp(self, height_m: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """The land/water rule (module docstring) at points: (H, W) metres -> (H, W) float32."""
        h = np.asarray(height_m, dtype=np.float32)
        frac = self.land_fraction(lat, lon)
        land = frac >= 0.5
        low = land & ~self.in_depression(lat, lon)
        out = np.where(low, np.minimum(np.maximum(h, np.float32(LAND_FLOOR_M)), coast_cap(frac)), h)
        return np.where(land, out, _water(h, coast_cap(1 - frac))).astype(np.float32)

    def masks_grid(self, lat: np.ndarray, lon: np.ndarray, extent: tuple | None = None) -> tuple:
        """On a grid lat (H,), lon (W,): (uniform state or None, land (H, W) bool, land that must
        stay >= 0 m, i.e. not a depression, (H, W) bool, the land's coast cap and the water's depth
        cap (H, W) float32 m, or None for a uniform box). Uniform boxes skip the per-point lookup.
        ``extent``: (lat.min(), lat.max(), lon.min(), lon.max()) as floats when the caller has them."""
        st = self.uniform_state(*(extent if extent is not None else
                                  (float(lat.min()), float(lat.max()), float(lon.min()), float(lon.max()))))
        shape = (lat.size, lon.size)
        if st is not None:
            full = np.full(shape, st == LAND)
            return st, full, full, None, None
        cells = self._grid_cells(lat, lon)
        if jit.ENABLED:
            return self._masks_compiled(lat, lon, cells)
        if cells is None:
            frac = self.point_fraction_grid(lat, lon)
        else:
            st = _uniform_cells(cells[0])
            if st == WATER or (st == LAND and not self.in_depression_grid(lat, lon).any()):
                # One kind of 30" cell under a deep block (no coast in it): the rule's uniform
                # branch gives the same bits (all water: fraction 0, the depth cap +inf; all
                # land: the fraction is 1 within an ulp, the coast cap >= 2e9 m or +inf).
                full = np.full(shape, st == LAND)
                return st, full, full, None, None
            frac = self.mix_cells(*cells)
        land = frac >= 0.5
        return None, land, land & ~self.in_depression_grid(lat, lon), coast_cap(frac), coast_cap(1 - frac)

    def _masks_compiled(self, lat: np.ndarray, lon: np.ndarray, cells: tuple | None) -> tuple:
        """:meth:`masks_grid` past the block table's test, through ``landwater_kernels`` (the same
        branches and bits): the depression cells looked up once, the masks and caps in one pass."""
        shape = (lat.size, lon.size)
        i, j, flagged = self._depression_cells(lat, lon)
        if cells is None:
            frac = self.point_fraction_grid(lat, lon)
        else:
            st = _uniform_cells(cells[0])
            if st == WATER or (st == LAND and not flagged):  # see masks_grid
                full = np.full(shape, st == LAND)
                return st, full, full, None, None
            frac = self.mix_cells(*cells)
        dep = self.depression[np.ix_(i, j)] if flagged else np.zeros((1, 1), bool)
        land, free = np.empty(shape, bool), np.empty(shape, bool)
        cap, wcap = np.empty(shape, np.float32), np.empty(shape, np.float32)
        landwater_kernels.coast_masks(np.ascontiguousarray(frac, dtype=np.float32), dep, flagged,
                                      np.float32(COAST_RAMP_M), land, free, cap, wcap)
        return None, land, free, cap, wcap

    def clamp_grid(self, height_m: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                   masks: tuple | None = None, floor_m=LAND_FLOOR_M) -> np.ndarray:
        """:meth:`clamp` on a grid: height (H, W), lat (H,), lon (W,) degrees (bit-identical to it);
        ``masks`` = :meth:`masks_grid`'s result when the caller has it already; ``floor_m`` the
        land's floor, 0 m or (H, W) float32 m <= 0 (lower on the shores of lakes below sea level:
        :meth:`generator.anchors.lakes.Lakes.constrain_grid`)."""
        st, land, free, cap, wcap = masks if masks is not None else self.masks_grid(lat, lon)
        h = np.asarray(height_m, dtype=np.float32)
        floor = np.asarray(floor_m, dtype=np.float32)
        if st == LAND:
            return np.maximum(h, floor)
        if st == WATER:
            return np.minimum(h, np.float32(WATER_CEIL_M))
        out = np.where(free, np.minimum(np.maximum(h, floor), cap), h)
        return np.where(land, out, _water(h, wcap)).astype(np.float32)


def _uniform_cells(cells: np.ndarray) -> int | None:
    """LAND or WATER when every cell of ``cells`` (1.0 land, 0.0 water) is that, else None."""
    lo, hi = float(cells.min()), float(cells.max())
    return None if lo != hi else (LAND if lo == 1.0 else WATER)


def _water(h: np.ndarray, depth_cap_m: np.ndarray) -> np.ndarray:
    """The water side of the rule: at most -1 m, at least -1 m - ``depth_cap_m``
    (``coast_cap(1 - land fraction)``: the sea floor shelves at the shore)."""
    return np.maximum(np.minimum(h, np.float32(WATER_CEIL_M)), np.float32(WATER_CEIL_M) - depth_cap_m)


# ---------------------------------------------------------------- one-off build

def build(mask_path: Path, etopo5_registered: np.ndarray) -> bytes:
    """The asset's bytes: block-coded mask and depression flags.

    etopo5_registered: (2160, 4320) metres, ETOPO5 read at the centres of the 5'
    cells through the registration offset (row 0 = 89.958 N, col 0 = 179.958 W).
    """
    water = np.load(mask_path)["mask"]
    land = np.zeros((B_ROWS * BLOCK, N_COLS), dtype=bool)
    land[:N_ROWS] = ~water
    land[N_ROWS:] = land[N_ROWS - 1]  # pad the last block row with the southernmost row
    blocks = land.reshape(B_ROWS, BLOCK, B_COLS, BLOCK).transpose(0, 2, 1, 3)
    share = blocks.mean(axis=(2, 3))
    state = np.where(share == 1.0, LAND, np.where(share == 0.0, WATER, MIXED)).astype(np.uint8)
    slot = np.full(state.shape, -1, dtype=np.int32)
    mi, mj = np.nonzero(state == MIXED)
    slot[mi, mj] = np.arange(mi.size, dtype=np.int32)
    bits = np.packbits(blocks[mi, mj].reshape(mi.size, -1), axis=1)
    frac5 = (~water).reshape(2160, 10, 4320, 10).mean(axis=(1, 3))
    # inland only: all land and >= 2 cells (~18 km) from the sea, so ETOPO5's smoothed coasts
    # (slightly negative on the land side) do not let the refiner dig fake lakes along them
    from scipy import ndimage

    inland = ndimage.binary_erosion(frac5 == 1.0, iterations=2, border_value=1)
    depression = inland & (etopo5_registered < -1.0)
    buf = io.BytesIO()
    np.savez_compressed(buf, state=state, slot=slot, bits=bits, depression=np.packbits(depression, axis=1))
    return buf.getvalue()
