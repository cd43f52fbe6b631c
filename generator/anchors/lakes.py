"""Inland water from real data: lakes as flat water at their real surface height.

The 30" land mask (:mod:`generator.anchors.landwater`) counts most lakes as land,
so until 2026-12-05 Lake Victoria was generated relief. Here a *lake* is a
connected group (8-neighbour) of MODIS IGBP 2019 water cells (0.05 deg, ~5.6 km)
that the 30" mask counts as land (>= half of the cell's 36 mask cells), at least
:data:`MIN_CELLS` cells, and not touching a cell that is mostly sea (that drops
the coastal slivers where MODIS and the mask disagree on the shore, estuaries,
and rivers that reach the sea), and not thin: a group whose bounding length is
at least :data:`THIN_RATIO` x sqrt(its cells) is a river reach, which no single
level fits (the Amazon at Santarem, the Lena, the Brahmaputra; the price: the
long narrow Lakes Hazen and Fagnano go too). 2,276 lakes: the Great Lakes, Victoria,
Tanganyika, Malawi, Baikal, the Caspian, Titicaca, Ladoga, Geneva, Constance,
the Dead Sea, Great Salt Lake... (none south of 60 S: MODIS's water class covers
the South Pole).

Each lake gets one surface height (:func:`surface_heights`, whole metres):

- GLOBE 30" where it covers the lake (0-50 N, 0-60 E): the most common value of
  its cells (GLOBE stores lakes at their surface): Geneva 370 m (real 372),
  Constance 394 (395), Nasser 163;
- elsewhere ETOPO5 (registered): the lower of the 5th percentile of the shore
  (land cells within two cells of the lake) and the most common in-lake value
  (4 m bins) if >= 10 % of the cells share it (ETOPO5 stores some lakes at their
  surface, others with bathymetry): Victoria 1128 (1134), Superior 192 (183),
  Baikal 456 (456), Caspian -32 (-28), Titicaca 3808 (3812);
- at least 0 m unless the lake lies in a flagged depression and a quarter of its
  shore is below :data:`DEPRESSED_SHORE_M` (Caspian -32 m, Dead Sea, Galilee, Salton
  Sea, Eyre, Afrera, Chott Melrhir; Lake Skadar's bed is below 0 m, its shore is not,
  and ETOPO5's low coastal cells make 37 Arctic and delta lakes look a few metres low).

The rule at a point (:meth:`Lakes.clip`), a pure function of location:
``f`` = lake fraction read bilinearly from the MODIS cell centres (any four
neighbouring cells hold at most one lake: two lakes' cells are never
8-neighbours), ``S`` that lake's surface, ``c = coast_cap(1 - f)`` (0 m from
``f`` = 0.5 on, growing to +inf at ``f`` = 0, the sea's shore ramp):
``h = min(max(h, S - c), S + c)``. So the lake (``f`` >= 0.5) is flat at ``S``;
its shore ramps into it over about a quarter cell (~1.4 km) from both sides, and
further away nothing changes. The anchor composes it with the sea rule as
``sea(lake(sea(h)))`` (:meth:`Lakes.constrain_grid`), the sea rule's land floor
lowered to ``min(0, S + c)`` near a lake below sea level (else the Caspian's
shore would be lifted to 0 m): all three are clips to intervals that depend on
location only, and such a composition of clips is idempotent, so like the sea
rule it can be applied to every level without moving an even sample (nesting
stays exact).

Colour: a lake's samples born below level 3 take its Blue Marble colour
(:meth:`Lakes.colour_grid`, :func:`lake_colours`).

Asset ``assets/earth_lakes.npz``: the lake ids in 32 x 32-cell blocks (empty
blocks not stored), the surface and the colour of each id.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np

from generator.anchors.landwater import block_box, coast_cap, land_share
from generator.paths import read_asset

ASSETS = Path(__file__).resolve().parents[2] / "assets"
LAKES_FILE = "earth_lakes.npz"
CELLS_PER_DEG = 20  # MODIS 0.05 deg
N_ROWS, N_COLS = 180 * CELLS_PER_DEG, 360 * CELLS_PER_DEG
BLOCK = 32
B_ROWS, B_COLS = -(-N_ROWS // BLOCK), -(-N_COLS // BLOCK)  # 113 x 225
MIN_CELLS = 4
SOUTH_LIMIT_DEG = -60.0  # no lakes south of it: MODIS's class 0 covers 105 k cells around the South Pole
MIN_INTERIOR = 4  # interior cells a lake needs for a colour of its own
_MAX_BOXES = 4096  # cell boxes Lakes.at_grid keeps (a few KB each at most)
THIN_RATIO = 5.0  # a group whose bounding length is >= THIN_RATIO * sqrt(cells) is a river reach
DEPRESSED_SHORE_M = -15.0  # a lake may lie below 0 m only if a quarter of its shore is below this


class Lakes:
    """Lake ids on the 0.05 deg grid (block-coded), their surface heights and colours."""

    def __init__(self, slot: np.ndarray, blocks: np.ndarray, surface_m: np.ndarray, rgb8: np.ndarray | None = None):
        """slot (B_ROWS, B_COLS) int32 index into ``blocks`` or -1 (no lake), blocks (n, BLOCK, BLOCK)
        uint16 lake ids (0 = none), surface_m (n_lakes + 1,) float32 metres (index 0 unused), rgb8
        (n_lakes + 1, 3) uint8 sRGB colour of each lake (Blue Marble) or None (colour untouched)."""
        if slot.shape != (B_ROWS, B_COLS) or blocks.shape[1:] != (BLOCK, BLOCK):
            raise ValueError(f"lakes must be ({B_ROWS}, {B_COLS}) slots and (n, {BLOCK}, {BLOCK}) blocks, "
                             f"got {slot.shape} and {blocks.shape}")
        self.slot, self.blocks = slot, np.ascontiguousarray(blocks, dtype=np.uint16)
        self.surface_m = np.asarray(surface_m, dtype=np.float32)
        self.rgb = None if rgb8 is None else (np.asarray(rgb8, np.float32) / np.float32(255.0)).astype(np.float32)
        for a in (self.slot, self.blocks, self.surface_m) + (() if self.rgb is None else (self.rgb,)):
            a.setflags(write=False)
        self._boxes: dict[tuple[int, int, int, int], np.ndarray] = {}  # at_grid's cell boxes (read-only)

    @classmethod
    def load(cls, path: Path = ASSETS / LAKES_FILE) -> "Lakes":
        return cls.load_bytes(read_asset(path, "lakes", "python -m generator.anchors.earth build"))

    @staticmethod
    @functools.lru_cache(maxsize=1)
    def shared() -> "Lakes":
        """The shipped lakes asset, loaded once per process (read-only), for the readers that
        have no anchor of their own: the water mask (:mod:`generator.water`) and the land
        cover (:mod:`generator.landcover_lakes`)."""
        return Lakes.load()

    @classmethod
    def load_bytes(cls, data: bytes) -> "Lakes":
        d = np.load(io.BytesIO(data))
        return cls(d["slot"], d["blocks"], d["surface_m"], d["rgb8"] if "rgb8" in d.files else None)

    def ids(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Lake id (0: none) of 0.05 deg cells (i, j): i clipped to the globe, j wrapped; any shape."""
        shape = np.broadcast_shapes(np.shape(i), np.shape(j))
        # clipped and wrapped before broadcasting (the same values; np.clip on a broadcast view
        # cost ~50 us a call, a quarter of a pyramid block's lake work)
        i = np.broadcast_to(np.minimum(np.maximum(np.asarray(i, dtype=np.int64), 0), N_ROWS - 1), shape)
        j = np.broadcast_to(np.mod(np.asarray(j, dtype=np.int64), N_COLS), shape)
        s = self.slot[i // BLOCK, j // BLOCK]
        if (s >= 0).all():  # every cell in a block of lake data: one gather
            return self.blocks[s, i % BLOCK, j % BLOCK]
        out = np.zeros(shape, dtype=np.uint16)
        has = s >= 0
        if has.any():
            out[has] = self.blocks[s[has], i[has] % BLOCK, j[has] % BLOCK]
        return out

    def near(self, lat0: float, lat1: float, lon0: float, lon1: float) -> bool:
        """Whether any lake cell lies within one cell of the box (degrees): else the rule is a no-op."""
        return bool((block_box(self.slot, lat0, lat1, lon0, lon1, CELLS_PER_DEG, BLOCK, N_ROWS) >= 0).any())

    def at(self, lat: np.ndarray, lon: np.ndarray, with_ids: bool = False) -> tuple[np.ndarray, ...]:
        """Lake fraction (float32 in [0, 1], bilinear from the cell centres) and surface (float32 m,
        NaN where the fraction is 0) at points (degrees, same shape). Water where fraction >= 0.5."""
        fi = (90.0 - np.asarray(lat, dtype=np.float64)) * CELLS_PER_DEG - 0.5
        fj = (np.asarray(lon, dtype=np.float64) + 180.0) * CELLS_PER_DEG - 0.5
        i0, j0 = np.floor(fi).astype(np.int64), np.floor(fj).astype(np.int64)
        ti, tj = (fi - i0).astype(np.float32), (fj - j0).astype(np.float32)
        a, b = self.ids(i0, j0), self.ids(i0, j0 + 1)
        c, d = self.ids(i0 + 1, j0), self.ids(i0 + 1, j0 + 1)
        one = np.float32(1)
        frac = (((a > 0) * (one - tj) + (b > 0) * tj) * (one - ti)
                + ((c > 0) * (one - tj) + (d > 0) * tj) * ti).astype(np.float32)
        lake = np.maximum(np.maximum(a, b), np.maximum(c, d))  # at most one lake among the four
        surface = np.where(lake > 0, self.surface_m[lake], np.float32(np.nan)).astype(np.float32)
        return (frac, surface, lake) if with_ids else (frac, surface)

    def at_grid(self, lat: np.ndarray, lon: np.ndarray, with_ids: bool = False,
                extent: tuple | None = None) -> tuple[np.ndarray, ...]:
        """:meth:`at` on a grid lat (H,) x lon (W,) degrees -> (H, W) each, bit-identical to it: the
        cells are read once for the grid's small box (a window across the antimeridian: per point).
        ``with_ids``: the lake id (H, W) uint16 (0: none) as a third array; ``extent``:
        (lat.min(), lat.max(), lon.min(), lon.max()) as floats when the caller has them."""
        lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
        if self.dry_grid(lat, lon, extent):
            shape = (lat.size, lon.size)
            none = (np.zeros(shape, np.float32), np.full(shape, np.nan, np.float32))
            return none + (np.zeros(shape, np.uint16),) if with_ids else none
        fi = (90.0 - np.asarray(lat, dtype=np.float64)) * CELLS_PER_DEG - 0.5
        fj = (np.asarray(lon, dtype=np.float64) + 180.0) * CELLS_PER_DEG - 0.5
        i0, j0 = np.floor(fi).astype(np.int64), np.floor(fj).astype(np.int64)
        ia, ja = int(i0.min()), int(j0.min())
        ni, nj = int(i0.max()) - ia + 2, int(j0.max()) - ja + 2
        if ni * nj > 4 * i0.size * j0.size:
            la, lo = np.broadcast_arrays(lat[:, None], lon[None, :])
            return self.at(la, lo, with_ids)
        box = self._box(ia, ja, ni, nj)
        if not box.any():
            shape = (i0.size, j0.size)
            none = (np.zeros(shape, np.float32), np.full(shape, np.nan, np.float32))
            return none + (np.zeros(shape, np.uint16),) if with_ids else none
        frac = _wet_fraction(box > 0, fi, fj, i0, j0, ia, ja)
        ii, jj = (i0 - ia)[:, None], (j0 - ja)[None, :]
        a, b, c, d = box[ii, jj], box[ii, jj + 1], box[ii + 1, jj], box[ii + 1, jj + 1]
        lake = np.maximum(np.maximum(a, b), np.maximum(c, d))
        surface = np.where(lake > 0, self.surface_m[lake], np.float32(np.nan)).astype(np.float32)
        return (frac, surface, lake) if with_ids else (frac, surface)

    def dry_grid(self, lat: np.ndarray, lon: np.ndarray, extent: tuple | None = None) -> bool:
        """True when the grid lat (H,) x lon (W,) degrees (non-empty; ``extent`` as for
        :meth:`at_grid`) reads no lake cell by the box of its extremes: then :meth:`at_grid` is
        fraction 0 everywhere (and the lake rule a no-op). False says nothing either way."""
        if not (np.size(lat) and np.size(lon)):
            return False
        la0, la1, lo0, lo1 = extent if extent is not None else (
            float(np.min(lat)), float(np.max(lat)), float(np.min(lon)), float(np.max(lon)))
        # The box from the extremes alone (each step of fi, fj is monotone in lat, lon, so
        # floor(fi).min() is floor of fi at lat.max(), ...: the same ints): most blocks lie
        # in a box with no lake cell and then need no per-sample work.
        ia = math.floor((90.0 - la1) * CELLS_PER_DEG - 0.5)
        ja = math.floor((lo0 + 180.0) * CELLS_PER_DEG - 0.5)
        ni = math.floor((90.0 - la0) * CELLS_PER_DEG - 0.5) - ia + 2
        nj = math.floor((lo1 + 180.0) * CELLS_PER_DEG - 0.5) - ja + 2
        return ni * nj <= 4 * np.size(lat) * np.size(lon) and not self._box(ia, ja, ni, nj).any()

    def _box(self, ia: int, ja: int, ni: int, nj: int) -> np.ndarray:
        """:meth:`ids` of the (ni, nj) cells from (ia, ja), kept (a pyramid's neighbouring blocks
        read the same few cells; the tables never change). Read-only (ni, nj) uint16."""
        key = (ia, ja, ni, nj)
        box = self._boxes.get(key)
        if box is None:
            if len(self._boxes) >= _MAX_BOXES:
                self._boxes.clear()
            box = self.ids(np.arange(ia, ia + ni)[:, None], np.arange(ja, ja + nj)[None, :])
            box.setflags(write=False)
            self._boxes[key] = box
        return box

    def fraction_grid(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """The first array of :meth:`at_grid` (the lake fraction, (H, W) float32, bit-identical)
        without the surface heights: what the land cover asks at every tile."""
        fi = (90.0 - np.asarray(lat, dtype=np.float64)) * CELLS_PER_DEG - 0.5
        fj = (np.asarray(lon, dtype=np.float64) + 180.0) * CELLS_PER_DEG - 0.5
        i0, j0 = np.floor(fi).astype(np.int64), np.floor(fj).astype(np.int64)
        ia, ja = int(i0.min()), int(j0.min())
        ni, nj = int(i0.max()) - ia + 2, int(j0.max()) - ja + 2
        if ni * nj > 4 * i0.size * j0.size:  # across the antimeridian: the per-point path
            return self.at_grid(lat, lon)[0]
        wet = self.ids(np.arange(ia, ia + ni)[:, None], np.arange(ja, ja + nj)[None, :]) > 0
        if wet.all() or not wet.any():
            return np.full((i0.size, j0.size), np.float32(wet.flat[0]))
        return _wet_fraction(wet, fi, fj, i0, j0, ia, ja)

    def bounds(self, lat: np.ndarray, lon: np.ndarray, grid: bool = False, read: tuple | None = None) -> tuple:
        """The lake rule's interval at points (degrees, same shape; ``grid``: lat (H,) x lon (W,);
        ``read``: :meth:`at_grid`'s result when the caller has it): (low, high) float32 m, -inf/+inf
        away from lakes, and the land's floor for the sea rule (0 m, lower on the shores of lakes
        below sea level: min(0, S + c), S where the lake is, so the Caspian is not lifted to 0 m)."""
        frac, s = (read[:2] if read is not None else self.at_grid(lat, lon) if grid else self.at(lat, lon))
        c = coast_cap(np.float32(1) - frac)
        has = frac > 0
        with np.errstate(invalid="ignore"):
            low = np.where(has, s - c, np.float32(-np.inf)).astype(np.float32)
            high = np.where(has, s + c, np.float32(np.inf)).astype(np.float32)
            floor = np.where(has, np.minimum(np.float32(0), high), np.float32(0)).astype(np.float32)
        return low, high, floor

    def clip(self, height_m: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """The lake rule alone (module docstring) at points: heights (any shape) m -> float32."""
        low, high, _ = self.bounds(lat, lon)
        return np.minimum(np.maximum(np.asarray(height_m, dtype=np.float32), low), high)

    def constrain_grid(self, lw, height_m: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                       masks: tuple | None = None, read: tuple | None = None) -> np.ndarray:
        """Sea and lake rules on a grid: height (H, W), lat (H,), lon (W,) degrees -> (H, W) float32,
        ``lw.clamp_grid(clip(lw.clamp_grid(h)))`` with the land's floor of :meth:`bounds` (``lw``:
        the :class:`~generator.anchors.landwater.LandWater`; ``masks`` its ``masks_grid``). Every
        step is a clip to an interval that depends on location only, so the result is idempotent.
        ``read``: :meth:`at_grid`'s result for this grid when the caller has it."""
        masks = lw.masks_grid(lat, lon) if masks is None else masks
        if read is None and not self.near(float(lat.min()), float(lat.max()), float(lon.min()), float(lon.max())):
            return lw.clamp_grid(height_m, lat, lon, masks)
        if read is not None and not (read[0] > 0).any():  # no lake fraction: bounds all infinite (below)
            return lw.clamp_grid(height_m, lat, lon, masks)
        low, high, floor = self.bounds(lat, lon, grid=True, read=read)
        if not np.isfinite(low).any():  # no lake cell next to the grid
            return lw.clamp_grid(height_m, lat, lon, masks)
        h = lw.clamp_grid(height_m, lat, lon, masks, floor)
        return lw.clamp_grid(np.minimum(np.maximum(h, low), high), lat, lon, masks, floor)

    def colour_grid(self, rgb: np.ndarray, rows: np.ndarray, cols: np.ndarray, read: tuple) -> np.ndarray:
        """Lake colour on a grid's *new* samples: rgb (3, H, W) float32 of level-L global samples rows
        (H,), cols (W,) int64 (odd row or column = born at this level), ``read`` = :meth:`at_grid`
        (..., with_ids=True) -> (3, H, W): each lake's Blue Marble colour where its fraction is >= 0.5.
        Even samples are the parent's and are left alone (like the GLOBE blend), so nesting stays
        exact; level 3 keeps the anchor's own colour, a few nodes 9.8 km apart."""
        frac, _, ids = read
        if self.rgb is None:
            return rgb
        wet = frac >= np.float32(0.5)
        if not wet.any():  # nothing to paint (tested first: most blocks)
            return rgb
        paint = wet & (((rows[:, None] & 1) == 1) | ((cols[None, :] & 1) == 1))
        if not paint.any():
            return rgb
        return np.where(paint[None], np.moveaxis(self.rgb[ids], -1, 0), rgb).astype(np.float32)

    def water(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(is_lake bool, surface float64 m, NaN where not a lake) at points (degrees, same shape)."""
        frac, s = self.at(lat, lon)
        wet = frac >= 0.5
        return wet, np.where(wet, s.astype(np.float64), np.nan)


# ---------------------------------------------------------------- one-off build

def _wet_fraction(wet: np.ndarray, fi, fj, i0, j0, ia: int, ja: int) -> np.ndarray:
    """Bilinear share of lake cells (``wet``: the (ni, nj) box of cells from (ia, ja)) at grid rows
    fi (H,) and columns fj (W,) (cell coordinates, floors i0, j0): (H, W) float32, each value in
    :meth:`Lakes.at`'s float32 order, the column mix done once per row of cells."""
    one = np.float32(1)
    ti, tj = (fi - i0).astype(np.float32)[:, None], (fj - j0).astype(np.float32)[None, :]
    jj, ii = j0 - ja, i0 - ia
    rows = wet[:, jj] * (one - tj) + wet[:, jj + 1] * tj  # (ni, W)
    return (rows[ii] * (one - ti) + rows[ii + 1] * ti).astype(np.float32)


def find_lakes(modis: np.ndarray, land_share: np.ndarray) -> np.ndarray:
    """Lake ids (3600, 7200) int32 (0: none) from MODIS IGBP classes (0 = water) and the 30" mask's
    land share of each 0.05 deg cell (both row 0 at 90 N, col 0 at 180 W); ids 1..n by size, largest
    first, so the numbering does not depend on the labelling's scan order."""
    from scipy import ndimage

    eight = np.ones((3, 3), dtype=bool)
    wet = (modis == 0) & (land_share >= 0.5)
    wet[int((90.0 - SOUTH_LIMIT_DEG) * CELLS_PER_DEG):] = False  # MODIS fills the South Pole with water
    lab, n = ndimage.label(wet, structure=eight)
    sea = land_share < 0.5
    touch = np.unique(lab[ndimage.binary_dilation(sea, structure=eight) & wet])
    size = np.bincount(lab.ravel(), minlength=n + 1)
    keep = size >= MIN_CELLS
    keep[0] = False
    for k, box in enumerate(ndimage.find_objects(lab), start=1):  # thin ribbons are rivers: no one level
        if box is not None and keep[k]:
            keep[k] = max(box[0].stop - box[0].start, box[1].stop - box[1].start) < THIN_RATIO * np.sqrt(size[k])
    keep[touch] = False
    kept = np.flatnonzero(keep)
    order = kept[np.lexsort((kept, -size[kept]))]  # by size, ties by label
    new_id = np.zeros(n + 1, dtype=np.int32)
    new_id[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return new_id[lab]


def _mode(v: np.ndarray, step: float) -> tuple[float, float]:
    """The most common value of v in bins of ``step`` (ties: the lowest) and its share."""
    b = np.round(v / step).astype(np.int64)
    u, c = np.unique(b, return_counts=True)
    k = int(c.argmax())
    return float(u[k] * step), float(c[k] / v.size)


def surface_heights(lakes: np.ndarray, land_share: np.ndarray, etopo: np.ndarray, globe: np.ndarray,
                    depression: np.ndarray) -> np.ndarray:
    """(n + 1,) float32 whole-metre surface of each lake id (module docstring). All inputs on the
    0.05 deg grid (3600, 7200): ids, mask land share, ETOPO5 registered at the cell centres (m),
    GLOBE median of the cell's 30" values (m, NaN outside its tile), depression flag (bool)."""
    from scipy import ndimage

    n = int(lakes.max())
    out = np.zeros(n + 1, dtype=np.float32)
    boxes = ndimage.find_objects(lakes)
    for k, box in enumerate(boxes, start=1):
        r0, r1 = max(box[0].start - 2, 0), min(box[0].stop + 2, lakes.shape[0])
        c0, c1 = max(box[1].start - 2, 0), min(box[1].stop + 2, lakes.shape[1])
        sub = lakes[r0:r1, c0:c1]
        m = sub == k
        ring = ndimage.binary_dilation(m, iterations=2) & (sub == 0) & (land_share[r0:r1, c0:c1] >= 0.5)
        e, g = etopo[r0:r1, c0:c1], globe[r0:r1, c0:c1]
        gl = g[m]
        gl = gl[np.isfinite(gl)]
        s = None
        if gl.size >= 0.5 * m.sum():
            gm, share = _mode(gl, 2.0)
            if share >= 0.3 and gm > 0:  # GLOBE reads 0 m on the sea and below sea level
                s = gm
        shore = np.percentile(e[ring], [5, 25]) if ring.any() else np.full(2, np.median(e[m]))
        if s is None:
            s = float(shore[0])
            em, share = _mode(e[m], 4.0)
            if share >= 0.1:
                s = min(s, em)
        if not (shore[1] < DEPRESSED_SHORE_M and depression[r0:r1, c0:c1][m].any()):
            s = max(s, 0.0)  # a bed below 0 m, or a few low shore cells (ETOPO5's coasts), are not enough
        out[k] = np.round(s)
    return out


def build(data_dir: Path, etopo_registered, depression_5min: np.ndarray) -> bytes:
    """The asset's bytes from ``../shared/data/global``. etopo_registered(lat, lon) -> ETOPO5 m through
    the offset field (degrees, any shape); depression_5min (2160, 4320) bool, the land/water flags."""
    data_dir = Path(data_dir)
    modis = np.load(data_dir / "modis_igbp_2019_005deg.npz")["cls"]
    water = np.load(data_dir / "landmask_30s.npz")["mask"]
    share = land_share(water, 6)  # 6 x 6 mask cells per MODIS cell
    del water
    lakes = find_lakes(modis, share)
    lat = 90.0 - (np.arange(N_ROWS) + 0.5) / CELLS_PER_DEG
    lon = -180.0 + (np.arange(N_COLS) + 0.5) / CELLS_PER_DEG
    etopo = np.empty((N_ROWS, N_COLS), dtype=np.float32)
    for i in range(0, N_ROWS, 600):
        la, lo = np.broadcast_arrays(lat[i : i + 600, None], lon[None, :])
        etopo[i : i + 600] = etopo_registered(la, lo)
    g = np.load(data_dir / "globe30s_g10g_west.npz")
    ge = g["elev"].astype(np.float32)
    ge[ge < -500] = np.nan  # GLOBE's no-data
    per = int(round(1.0 / CELLS_PER_DEG / float(g["step_deg"])))  # 6 GLOBE cells per MODIS cell
    gi0 = int(round((90.0 - float(g["lat_top"])) * CELLS_PER_DEG))
    gj0 = int(round((float(g["lon_left"]) + 180.0) * CELLS_PER_DEG))
    gr, gc = ge.shape[0] // per, ge.shape[1] // per
    globe = np.full((N_ROWS, N_COLS), np.nan, dtype=np.float32)
    globe[gi0 : gi0 + gr, gj0 : gj0 + gc] = np.nanmedian(
        ge[: gr * per, : gc * per].reshape(gr, per, gc, per).transpose(0, 2, 1, 3).reshape(gr, gc, -1), axis=2)
    dep = np.repeat(np.repeat(depression_5min, 5, axis=0), 5, axis=1)  # 1' cells
    dep = dep.reshape(N_ROWS, 3, N_COLS, 3).any(axis=(1, 3))  # on the 3' (0.05 deg) cells
    surface = surface_heights(lakes, share, etopo, globe, dep)
    return encode(lakes, surface, lake_colours(lakes, data_dir / "bluemarble.jpg"))


def lake_colours(lakes: np.ndarray, bluemarble_path: Path) -> np.ndarray:
    """(n + 1, 3) uint8: each lake's median Blue Marble colour (4' pixel at each cell centre) over
    its interior cells (all 8 neighbours the same lake); a lake with fewer than MIN_INTERIOR of them
    (its pixels mix in the shore: Geneva's median is olive) takes the median over every lake's
    interior cells."""
    from PIL import Image
    from scipy import ndimage

    img = np.asarray(Image.open(bluemarble_path).convert("RGB"))
    per = img.shape[0] / 180.0
    i = np.floor((np.arange(N_ROWS) + 0.5) / CELLS_PER_DEG * per).astype(np.int64)
    j = np.floor((np.arange(N_COLS) + 0.5) / CELLS_PER_DEG * per).astype(np.int64)
    interior = lakes.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            interior = np.where(np.roll(lakes, (di, dj), axis=(0, 1)) == lakes, interior, 0)
    n = int(lakes.max())
    index = np.arange(1, n + 1)
    has_inner = np.bincount(interior.ravel(), minlength=n + 1)[1:] >= MIN_INTERIOR
    out = np.zeros((n + 1, 3), dtype=np.uint8)
    for k in range(3):
        ch = img[i[:, None], j[None, :], k].astype(np.float64)
        inner = np.asarray(ndimage.median(ch, labels=interior, index=index))
        every = float(np.median(ch[interior > 0]))
        out[1:, k] = np.round(np.where(has_inner, inner, every)).astype(np.uint8)
    return out


def encode(lakes: np.ndarray, surface_m: np.ndarray, rgb8: np.ndarray) -> bytes:
    """Block-code the ids ((N_ROWS, N_COLS) int) and store them with the surfaces and colours."""
    if int(lakes.max()) > 65535:
        raise ValueError(f"at most 65535 lakes fit uint16 ids, got {int(lakes.max())}")
    pad = np.zeros((B_ROWS * BLOCK, B_COLS * BLOCK), dtype=np.uint16)
    pad[:N_ROWS, :N_COLS] = lakes
    blocks = pad.reshape(B_ROWS, BLOCK, B_COLS, BLOCK).transpose(0, 2, 1, 3)
    used = blocks.reshape(B_ROWS, B_COLS, -1).max(axis=2) > 0
    slot = np.full((B_ROWS, B_COLS), -1, dtype=np.int32)
    bi, bj = np.nonzero(used)
    slot[bi, bj] = np.arange(bi.size, dtype=np.int32)
    buf = io.BytesIO()
    np.savez_compressed(buf, slot=slot, blocks=np.ascontiguousarray(blocks[bi, bj]),
                        surface_m=np.asarray(surface_m, dtype=np.float32), rgb8=np.asarray(rgb8, np.uint8))
    return buf.getvalue()


def etopo_sampler(data_dir: Path):
    """ETOPO5 through the measured offset field: a function (lat, lon) degrees -> metres."""
    from generator.anchors.registration import load_offset_table, offset_arcmin, sample_etopo5

    z = np.load(Path(data_dir) / "etopo5.npz")["elev"].astype(np.float64)
    table = load_offset_table(ASSETS)

    def sample(lat, lon):
        dlat, dlon = offset_arcmin(table, lat, lon)
        return sample_etopo5(z, lat + dlat / 60.0, lon + dlon / 60.0)

    return sample


def main(argv: list[str] | None = None) -> int:
    import argparse

    from generator.anchors.landwater import LandWater
    from generator.paths import default_data_dir

    ap = argparse.ArgumentParser(prog="python -m generator.anchors.lakes", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build"], help="the lakes asset alone (`generator.anchors.earth build` "
                                                       "makes it with the rest)")
    ap.add_argument("--data", type=Path, default=default_data_dir() / "global")
    ap.add_argument("--out", type=Path, default=ASSETS / LAKES_FILE)
    a = ap.parse_args(argv)
    a.out.write_bytes(build(a.data, etopo_sampler(a.data), np.asarray(LandWater.load().depression)))
    print(f"{a.out}: {a.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
