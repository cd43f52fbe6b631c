"""Height and normal under a point, for simulators (DESIGN.md 3: "tiles under each camera
are always wanted (height queries)").

Consistent with the drawn mesh: when a tile carries its TIN (the triangles runtime/tin
made and the viewer draws), the height is interpolated on the triangle under the point
(barycentric, like Cesium's ``sampleHeight`` on quantized-mesh terrain); otherwise on the
(T+1) x (T+1) height grid (bilinear). Two queries:

- ``height_at``: now, from the best tile available (a drawn tile when given, else the
  deepest known one);
- ``MostDetailed`` / ``HeightQueries``: waits (a concurrent.futures.Future) until the
  tiles of the finest level under every point have arrived (Cesium's
  ``sampleTerrainMostDetailed``); its keys are passed to TileStreamer.frame(urgent=...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from runtime.geometry import WorldGeometry
from runtime.tiles import T, TileKey

# --- a tile's surface ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TileSurface:
    """What a height query needs from one tile (either or both representations).

    heights: (T+1, T+1) float32 metres, the sample grid; grid_rc: (n, 2) float64 TIN vertex
    [row, col] in [0, T] (tile grid coordinates); height_m: (n,) metres; faces: (m, 3) int.
    """

    key: TileKey
    heights: np.ndarray | None = None
    grid_rc: np.ndarray | None = None
    height_m: np.ndarray | None = None
    faces: np.ndarray | None = None
    _index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.heights is None and self.faces is None:
            raise ValueError(f"tile {self.key}: need a height grid or a TIN (grid_rc, height_m, faces)")
        if self.heights is not None and np.shape(self.heights) != (T + 1, T + 1):
            raise ValueError(f"heights must be ({T + 1}, {T + 1}), got {np.shape(self.heights)}")
        if self.faces is not None:
            if self.grid_rc is None or self.height_m is None:
                raise ValueError("a TIN needs grid_rc, height_m and faces together")
            if np.shape(self.grid_rc)[1:] != (2,) or len(self.height_m) != len(self.grid_rc):
                raise ValueError(f"grid_rc must be (n, 2) and height_m (n,), got {np.shape(self.grid_rc)} "
                                 f"and {np.shape(self.height_m)}")

    @property
    def has_tin(self) -> bool:
        return self.faces is not None


_CELLS = 16  # face-binning grid per tile edge (point location in the TIN)


def _face_boxes(surface: TileSurface):
    """(lo (m, 2), hi (m, 2)): the first and last of the _CELLS x _CELLS cells (row, col)
    each face's bounding box spans."""
    idx = surface._index.get("boxes")
    if idx is not None:
        return idx
    rc = np.asarray(surface.grid_rc, np.float64)
    f = np.asarray(surface.faces, np.int64)
    cell = T / _CELLS
    lo, hi = np.empty((len(f), 2), np.int64), np.empty((len(f), 2), np.int64)
    for axis in (0, 1):
        v = rc[:, axis][f]  # (m, 3)
        a, b, c = v[:, 0], v[:, 1], v[:, 2]
        lo[:, axis] = np.floor(np.minimum(np.minimum(a, b), c) / cell)
        hi[:, axis] = np.floor(np.maximum(np.maximum(a, b), c) / cell)
    np.clip(lo, 0, _CELLS - 1, out=lo)
    np.clip(hi, 0, _CELLS - 1, out=hi)
    idx = (lo, hi)
    surface._index["boxes"] = idx
    return idx


def _tin_index(surface: TileSurface):
    """Faces binned by bounding box on a _CELLS x _CELLS grid: (starts, face ids) CSR, face
    ids ascending within a cell."""
    idx = surface._index.get("tin")
    if idx is not None:
        return idx
    lo, hi = _face_boxes(surface)
    counts_r, counts_c = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    n = counts_r * counts_c  # cells per face
    faces = np.repeat(np.arange(len(lo)), n)
    offs = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)  # 0..n-1 per face
    rep_cc = np.repeat(counts_c, n)
    cr = np.repeat(lo[:, 0], n) + offs // rep_cc
    cc = np.repeat(lo[:, 1], n) + offs % rep_cc
    cells = cr * _CELLS + cc
    order = np.argsort(cells, kind="stable")
    starts = np.searchsorted(cells[order], np.arange(_CELLS * _CELLS + 1))
    idx = (starts, faces[order])
    surface._index["tin"] = idx
    return idx


_FEW_POINTS = 4
"""At most this many points on a tile without its CSR index: each point's candidate faces
come from a test of every face's box (the same faces in the same order as the index's
cell, so the same triangle and values) instead of building the index (~12 ms for an
earth tile's ~42k faces, on the viewer's frame thread for the ground under the camera)."""


def sample_surface(surface: TileSurface, rows, cols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heights at tile-grid points: rows, cols (n,) in [0, T] -> height_m (n,), d_h/d_row (n,),
    d_h/d_col (n,) (metres per sample). TIN when present, else bilinear on the grid."""
    rows = np.clip(np.asarray(rows, np.float64).reshape(-1), 0.0, T)
    cols = np.clip(np.asarray(cols, np.float64).reshape(-1), 0.0, T)
    if surface.has_tin:
        return _sample_tin(surface, rows, cols)
    return _sample_grid(np.asarray(surface.heights, np.float64), rows, cols)


def _sample_grid(h: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    r0 = np.minimum(np.floor(rows).astype(np.int64), T - 1)
    c0 = np.minimum(np.floor(cols).astype(np.int64), T - 1)
    fr, fc = rows - r0, cols - c0
    h00, h01, h10, h11 = h[r0, c0], h[r0, c0 + 1], h[r0 + 1, c0], h[r0 + 1, c0 + 1]
    top = h00 + (h01 - h00) * fc
    bottom = h10 + (h11 - h10) * fc
    dh_dc = (h01 - h00) * (1 - fr) + (h11 - h10) * fr
    return top + (bottom - top) * fr, bottom - top, dh_dc


def _sample_tin(surface: TileSurface, rows: np.ndarray, cols: np.ndarray):
    indexed = len(rows) > _FEW_POINTS or "tin" in surface._index
    if indexed:
        starts, face_ids = _tin_index(surface)
    else:
        lo, hi = _face_boxes(surface)
    rc = np.asarray(surface.grid_rc, np.float64)
    heights = np.asarray(surface.height_m, np.float64)
    faces = np.asarray(surface.faces, np.int64)
    cell = T / _CELLS
    out_h, out_dr, out_dc = np.empty(len(rows)), np.empty(len(rows)), np.empty(len(rows))
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        cr, cc = min(int(r // cell), _CELLS - 1), min(int(c // cell), _CELLS - 1)
        if indexed:
            ci = cr * _CELLS + cc
            cand = face_ids[starts[ci]:starts[ci + 1]]
        else:
            cand = np.flatnonzero((lo[:, 0] <= cr) & (hi[:, 0] >= cr) & (lo[:, 1] <= cc) & (hi[:, 1] >= cc))
        if len(cand) == 0:
            raise ValueError(f"tile {surface.key}: no triangle near grid point ({r}, {c}); "
                             "the TIN must cover [0, T]^2")
        t = rc[faces[cand]]  # (k, 3, 2)
        a, b, cpt = t[:, 0], t[:, 1], t[:, 2]
        v0, v1 = b - a, cpt - a
        v2 = np.array([r, c]) - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
            l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        l0 = 1.0 - l1 - l2
        worst = np.minimum(np.minimum(l0, l1), l2)
        worst = np.where(np.isfinite(worst), worst, -np.inf)
        j = int(np.argmax(worst))  # containing triangle (or the nearest, at edges within rounding)
        if worst[j] < -1e-6:
            raise ValueError(f"tile {surface.key}: grid point ({r}, {c}) lies in no triangle")
        f = cand[j]
        h = heights[faces[f]]
        out_h[i] = l0[j] * h[0] + l1[j] * h[1] + l2[j] * h[2]
        # Plane through the triangle: h = h0 + g . (p - a), solve g from the two edges.
        m = np.array([v0[j], v1[j]])
        g = np.linalg.solve(m, np.array([h[1] - h[0], h[2] - h[0]]))
        out_dr[i], out_dc[i] = g
    return out_h, out_dr, out_dc


# --- queries -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HeightResult:
    """height_m (n,) above the datum (earth: ellipsoidal); normal (n, 3) world unit vectors;
    keys: the tile each point was read from."""

    height_m: np.ndarray
    normal: np.ndarray
    keys: tuple[TileKey, ...]


def _surface_normals(geo: WorldGeometry, level: int, grow, gcol, dh_dr, dh_dc, h) -> np.ndarray:
    """World normal of the local surface h(row, col): finite differences through the
    world mapping (exact for the plane; earth includes the ellipsoid's tilt)."""
    eps = 0.5  # central differences: the tangent of a curved (earth) surface without tilt
    p = geo.sample_to_world(level, grow, gcol, h)
    pr = geo.sample_to_world(level, grow + eps, gcol, h + eps * dh_dr) - geo.sample_to_world(
        level, grow - eps, gcol, h - eps * dh_dr)
    pc = geo.sample_to_world(level, grow, gcol + eps, h + eps * dh_dc) - geo.sample_to_world(
        level, grow, gcol - eps, h - eps * dh_dc)
    n = np.cross(pc, pr)  # east x south: down; oriented up below
    up = geo.up(p)
    n *= np.sign((n * up).sum(axis=1))[:, None]
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _keys_under(geo: WorldGeometry, pos: np.ndarray, max_level: int):
    """For one world point: [(key, local row, local col)] for levels max_level .. 0."""
    r, c, _ = geo.world_to_sample(max_level, pos[None])
    out = []
    for level in range(max_level, -1, -1):
        f = 2.0 ** (max_level - level)
        rr, cc = r[0] / f, c[0] / f
        x, y = int(np.floor(cc / T)), int(np.floor(rr / T))
        if geo.is_earth:  # the south pole / antimeridian edge belongs to the last tile
            x, y = min(max(x, 0), (2 << level) - 1), min(max(y, 0), (1 << level) - 1)
        out.append((TileKey(level, x, y), rr - y * T, cc - x * T))
    return out


def height_at(geo: WorldGeometry, positions_m, lookup: Callable[[TileKey], TileSurface | None],
              max_level: int = 20, prefer: Set[TileKey] = frozenset()) -> HeightResult:
    """Height and normal of the surface along the vertical through each world position
    (n, 3) (its own height is ignored), from the best tile: a ``prefer`` (drawn) tile
    holding the point when there is one, else the deepest tile ``lookup`` returns.
    Raises LookupError where no tile covers a point."""
    pos = np.asarray(positions_m, np.float64).reshape(-1, 3)
    heights, normals, keys = np.empty(len(pos)), np.empty((len(pos), 3)), []
    for i, p in enumerate(pos):
        chain = _keys_under(geo, p, max_level)
        found = None
        for key, lr, lc in chain:
            if key in prefer:
                surf = lookup(key)
                if surf is not None:
                    found = (key, surf, lr, lc)
                    break
        if found is None:
            for key, lr, lc in chain:
                surf = lookup(key)
                if surf is not None:
                    found = (key, surf, lr, lc)
                    break
        if found is None:
            raise LookupError(f"no tile covers point {p.tolist()} (are the roots loaded?)")
        key, surf, lr, lc = found
        h, dr, dc = sample_surface(surf, [lr], [lc])
        r0, c0 = key.sample_origin()
        normals[i] = _surface_normals(geo, key.level, np.array([r0 + lr]), np.array([c0 + lc]), dr, dc, h)[0]
        heights[i] = h[0]
        keys.append(key)
    return HeightResult(heights, normals, tuple(keys))


class MostDetailed:
    """A query that needs the tiles of ``level`` under every point; resolves once all of
    them are available. ``needed``: those keys."""

    def __init__(self, geo: WorldGeometry, positions_m, level: int):
        self.geo = geo
        self.level = level
        self.positions = np.asarray(positions_m, np.float64).reshape(-1, 3)
        self.needed = frozenset(geo.key_at(level, p) for p in self.positions)
        self.future: Future = Future()

    def missing(self, lookup: Callable[[TileKey], TileSurface | None]) -> list[TileKey]:
        return [k for k in self.needed if lookup(k) is None]

    def try_resolve(self, lookup: Callable[[TileKey], TileSurface | None]) -> bool:
        """Resolve the future if every needed tile is there; True when resolved."""
        if self.future.done():
            return True
        if self.missing(lookup):
            return False
        self.future.set_result(height_at(self.geo, self.positions, lookup, max_level=self.level,
                                         prefer=self.needed))
        return True


class HeightQueries:
    """Pending most-detailed queries of one client: their keys go to the streamer as
    urgent; each arrival may resolve some."""

    def __init__(self, geo: WorldGeometry, lookup: Callable[[TileKey], TileSurface | None], level: int = 20):
        self.geo, self.lookup, self.level = geo, lookup, level
        self._pending: list[MostDetailed] = []

    def most_detailed(self, positions_m, level: int | None = None) -> Future:
        """Future[HeightResult] for the points at ``level`` (default: the finest)."""
        q = MostDetailed(self.geo, positions_m, self.level if level is None else level)
        if not q.try_resolve(self.lookup):
            self._pending.append(q)
        return q.future

    def urgent(self) -> list[TileKey]:
        """Keys pending queries still miss (pass to TileStreamer.frame(urgent=...))."""
        out: set[TileKey] = set()
        for q in self._pending:
            out.update(q.missing(self.lookup))
        return sorted(out)

    def on_tiles(self, keys: Iterable[TileKey] = ()) -> int:
        """Call after tiles arrive; resolves what can be. Returns how many resolved."""
        del keys  # any arrival may complete any query; the check is cheap
        before = len(self._pending)
        self._pending = [q for q in self._pending if not q.try_resolve(self.lookup)]
        return before - len(self._pending)

    @property
    def pending(self) -> int:
        return len(self._pending)
