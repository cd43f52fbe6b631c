"""Where samples and tiles are in each world, and their bounding volumes (DESIGN.md 1, 3).

World coordinates are float64 metres: ``plane`` = (east, north, up); ``earth`` = WGS84
ECEF. A tile's bounding volume is an oriented box (plus its sphere) that holds the tile's
surface for a height range; on the earth it also carries a horizon-culling point
(Cesium's ellipsoidal occluder, https://cesium.com/blog/2013/04/25/horizon-culling/).

Heights are ellipsoidal on the earth, so a point is p0(lon, lat) + h * n(lon, lat)
exactly: a box built from the surface at two heights holds every height in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from runtime.tiles import (
    LEVEL0_SPACING_DEG,
    METRES_PER_DEGREE,
    WGS84_A_M,
    WGS84_B_M,
    WGS84_E2,
    T,
    TileKey,
    World,
    spacing_deg,
    spacing_m,
)

DEFAULT_HEIGHT_RANGE_M = (-11_000.0, 9_000.0)
"""Height range of a tile nothing is known about: Challenger Deep to Everest, rounded out."""

OCCLUDER_DEPTH_M = 12_000.0
"""The horizon occluder is the ellipsoid shrunk by this (deeper than any terrain), so that
terrain below sea level never hides what is visible (Cesium does the same with its minimum
terrain height)."""

_BOX_GRID = 9  # samples per tile edge used to fit earth boxes (plus an exact curvature pad)


# --- WGS84 ------------------------------------------------------------------------------


def geodetic_to_ecef(lon_deg, lat_deg, h_m) -> np.ndarray:
    """WGS84 geodetic (deg, deg, m), broadcastable -> (n, 3) float64 ECEF metres."""
    lon = np.radians(np.asarray(lon_deg, np.float64))
    lat = np.radians(np.asarray(lat_deg, np.float64))
    h = np.asarray(h_m, np.float64)
    lon, lat, h = np.broadcast_arrays(lon, lat, h)
    sl, cl = np.sin(lat), np.cos(lat)
    n = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * sl * sl)
    out = np.empty(lon.shape + (3,), np.float64)
    out[..., 0] = (n + h) * cl * np.cos(lon)
    out[..., 1] = (n + h) * cl * np.sin(lon)
    out[..., 2] = (n * (1.0 - WGS84_E2) + h) * sl
    return out.reshape(-1, 3)


def ecef_to_geodetic(xyz) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 3) ECEF metres -> lon_deg, lat_deg, h_m, each (n,) float64.

    Bowring's parametric-latitude method, iterated twice (sub-millimetre from the
    centre of the earth to far beyond geostationary orbit).
    """
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    a, b, e2 = WGS84_A_M, WGS84_B_M, WGS84_E2
    ep2 = (a * a - b * b) / (b * b)
    p = np.hypot(x, y)
    lon = np.arctan2(y, x)
    beta = np.arctan2(a * z, b * p)
    for _ in range(3):
        sb, cb = np.sin(beta), np.cos(beta)
        lat = np.arctan2(z + ep2 * b * sb**3, p - e2 * a * cb**3)
        beta = np.arctan2((1.0 - WGS84_E2) ** 0.5 * np.sin(lat), np.cos(lat))
    sl, cl = np.sin(lat), np.cos(lat)
    h = p * cl + z * sl - a * np.sqrt(1.0 - e2 * sl * sl)
    return np.degrees(lon), np.degrees(lat), h


def geodetic_normal(lon_deg, lat_deg) -> np.ndarray:
    """Unit ellipsoid normal (the local 'up') at geodetic lon/lat -> (n, 3) float64."""
    lon = np.radians(np.asarray(lon_deg, np.float64)).reshape(-1)
    lat = np.radians(np.asarray(lat_deg, np.float64)).reshape(-1)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def east_north_up(lon_deg: float, lat_deg: float) -> np.ndarray:
    """(3, 3) float64 rows = local east, north, up unit vectors in ECEF."""
    lon = np.radians(lon_deg)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    up = geodetic_normal(lon_deg, lat_deg)[0]
    north = np.cross(up, east)
    return np.stack([east, north, up])


# --- bounding volumes -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Bounds:
    """An oriented box (and its bounding sphere) around a tile's surface and height range.

    center_m: (3,) float64 world metres; half_axes_m: (3, 3) float64, rows are the box's
    half-extent vectors (mutually orthogonal); radius_m: sphere radius around center_m;
    horizon_point: (3,) float64 in the occluder's scaled space, or None when the tile can
    not be horizon culled (plane; tiles too large for the test).
    """

    center_m: np.ndarray
    half_axes_m: np.ndarray
    radius_m: float
    horizon_point: np.ndarray | None = None

    @property
    def packed(self) -> np.ndarray:
        """(32,) float64 for vectorised tests: center (3), half axes (9), unit axes (9),
        half lengths (3), horizon point (3; zeros when None), |horizon point|^2, 1.0 when
        there is a horizon point else 0.0, and the centre in the box frame (3). Computed once."""
        p = self.__dict__.get("_packed")
        if p is None:
            lengths = np.linalg.norm(self.half_axes_m, axis=1)
            units = self.half_axes_m / np.maximum(lengths, 1e-300)[:, None]
            hp = self.horizon_point if self.horizon_point is not None else np.zeros(3)
            p = np.concatenate([self.center_m, self.half_axes_m.ravel(), units.ravel(), lengths, hp,
                                [hp @ hp, float(self.horizon_point is not None)], units @ self.center_m])
            object.__setattr__(self, "_packed", p)
        return p

    def distance_m(self, point_m) -> float:
        """Distance from ``point_m`` (3,) to the box (0 inside)."""
        return float(box_distances_m(self.center_m[None], self.half_axes_m[None],
                                     np.asarray(point_m, np.float64))[0])

    def contains(self, points_m, tol_m: float = 1e-6) -> np.ndarray:
        """(n, 3) points -> (n,) bool: inside the box (with ``tol_m`` slack)."""
        p = np.asarray(points_m, np.float64).reshape(-1, 3) - self.center_m
        lengths = np.linalg.norm(self.half_axes_m, axis=1)
        units = self.half_axes_m / np.maximum(lengths, 1e-300)[:, None]
        return np.all(np.abs(p @ units.T) <= lengths + tol_m, axis=1)

    def corners_m(self) -> np.ndarray:
        """(8, 3) float64 box corners."""
        s = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
        return self.center_m + s @ self.half_axes_m

    def intersects_frustum(self, planes, origin_m) -> bool:
        """True unless the box lies wholly outside one of ``planes`` (6, 4), which are
        relative to ``origin_m`` (the camera position; Camera.frustum_planes)."""
        return bool(boxes_in_frustum(self.center_m[None] - np.asarray(origin_m, np.float64),
                                     self.half_axes_m[None], np.asarray(planes, np.float64))[0])


def box_distances_m(centers_m: np.ndarray, half_axes_m: np.ndarray, point_m: np.ndarray) -> np.ndarray:
    """Distances from one point (3,) to n boxes: centers (n, 3), half_axes (n, 3, 3) -> (n,)."""
    lengths = np.linalg.norm(half_axes_m, axis=2)  # (n, 3)
    units = half_axes_m / np.maximum(lengths, 1e-300)[:, :, None]
    d = np.einsum("nij,nj->ni", units, point_m - centers_m)  # point in box frame
    excess = np.maximum(np.abs(d) - lengths, 0.0)
    return np.sqrt((excess * excess).sum(axis=1))


def boxes_in_frustum(rel_centers_m: np.ndarray, half_axes_m: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Boxes not wholly outside any plane: rel_centers (n, 3) relative to the planes'
    origin, half_axes (n, 3, 3), planes (6, 4) with unit normals pointing inside -> (n,) bool."""
    normals, offsets = planes[:, :3], planes[:, 3]
    dist = rel_centers_m @ normals.T + offsets  # (n, 6) signed distance of centre
    reach = np.abs(np.einsum("nij,pj->npi", half_axes_m, normals)).sum(axis=2)  # (n, 6)
    return np.all(dist >= -reach, axis=1)


def occluder_radii_m() -> np.ndarray:
    """(3,) radii of the horizon occluder ellipsoid (WGS84 shrunk by OCCLUDER_DEPTH_M)."""
    return np.array([WGS84_A_M, WGS84_A_M, WGS84_B_M]) - OCCLUDER_DEPTH_M


def horizon_visible(camera_m: np.ndarray, horizon_points: np.ndarray) -> np.ndarray:
    """Cesium's EllipsoidalOccluder.isScaledSpacePointVisible, vectorised.

    camera_m: (3,) ECEF; horizon_points: (n, 3) in occluder scaled space -> (n,) bool.
    """
    cv = camera_m / occluder_radii_m()
    vh2 = float(cv @ cv) - 1.0  # squared distance to the limb
    vt = horizon_points - cv
    vt_dot_vc = -(vt @ cv)
    if vh2 < 0.0:  # camera inside the occluder: only what is in front of it
        return vt_dot_vc <= 0.0
    occluded = (vt_dot_vc > vh2) & (vt_dot_vc * vt_dot_vc / np.maximum((vt * vt).sum(axis=1), 1e-300) > vh2)
    return ~occluded


# --- the worlds ---------------------------------------------------------------------------


class WorldGeometry:
    """Sample <-> world mapping and tile bounding volumes of one world (float64 metres).

    The maths are the module's pure functions; the instance only caches what they derive
    (packed tile bounds, children keys), bounded to ``memo_entries`` each, and the earth
    tiles' height-independent box frames (``FRAME_ENTRIES``).
    """

    FRAME_ENTRIES = 4096  # earth tiles whose EarthFrames are kept (~32 MB)

    def __init__(self, world: World, memo_entries: int = 50_000):
        self.world = world
        self.is_earth = world is World.EARTH
        self.memo_entries = memo_entries
        self._packed: dict[tuple, np.ndarray] = {}  # (level, x, y, hmin, hmax) -> (32,)
        self._frames: dict[TileKey, np.ndarray] = {}  # earth key -> its earth_tile_frames, flat
        self._children: dict[TileKey, tuple[TileKey, ...]] = {}

    def __repr__(self) -> str:
        return f"WorldGeometry({self.world.value})"

    # samples <-> world
    def sample_to_world(self, level: int, rows, cols, height_m) -> np.ndarray:
        """Global sample coordinates of ``level`` (fractional allowed) + heights -> (n, 3) float64."""
        rows = np.asarray(rows, np.float64).reshape(-1)
        cols = np.asarray(cols, np.float64).reshape(-1)
        h = np.broadcast_to(np.asarray(height_m, np.float64).reshape(-1), rows.shape)
        if rows.shape != cols.shape:
            raise ValueError(f"rows and cols must have the same shape, got {rows.shape} and {cols.shape}")
        if self.is_earth:
            d = spacing_deg(level)
            return geodetic_to_ecef(-180.0 + cols * d, 90.0 - rows * d, h)
        s = spacing_m(level)
        return np.stack([cols * s, -rows * s, h], axis=1)

    def lattice_tables(self, level: int, row0: float, col0: float, step: float, i_lo: int, i_hi: int, j_lo: int,
                       j_hi: int) -> tuple[np.ndarray, np.ndarray]:
        """What ``lattice_to_world`` needs per lattice row i_lo..i_hi and column j_lo..j_hi
        (rows row0 + i * step, columns col0 + j * step): ((I, 3), (J, 2)) float64. Earth:
        rows (prime vertical radius N, cos lat, sin lat), columns (cos lon, sin lon) as
        ``geodetic_to_ecef`` computes them; plane: rows (-row * spacing, 0, 0), columns
        (col * spacing, 0). Points from them: ``runtime.tin.kernels.lattice_points``."""
        rows = row0 + np.arange(i_lo, i_hi + 1) * step
        cols = col0 + np.arange(j_lo, j_hi + 1) * step
        rt, ct = np.zeros((len(rows), 3)), np.zeros((len(cols), 2))
        if not self.is_earth:
            s = spacing_m(level)
            rt[:, 0], ct[:, 0] = -rows * s, cols * s
            return rt, ct
        d = spacing_deg(level)
        lon = np.radians(-180.0 + cols * d)  # geodetic_to_ecef's operations, per row / column
        lat = np.radians(90.0 - rows * d)
        sl = np.sin(lat)
        rt[:, 0] = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * sl * sl)
        rt[:, 1], rt[:, 2] = np.cos(lat), sl
        ct[:, 0], ct[:, 1] = np.cos(lon), np.sin(lon)
        return rt, ct

    def lattice_to_world(self, level: int, row0: float, col0: float, step: float, ki, kj, height_m) -> np.ndarray:
        """``sample_to_world`` of the lattice samples (row0 + ki * step, col0 + kj * step),
        ki / kj (n,) integers: the same (n, 3) float64 bits (where row0 + k * step is exact,
        as for half-sample steps), with the earth's trigonometry done once per lattice row
        and column instead of once per point (latitude follows the row, longitude the column)."""
        from runtime.tin.kernels import lattice_points  # numba on first use; runtime.tin imports this module

        ki = np.asarray(ki, np.int64).reshape(-1)
        kj = np.asarray(kj, np.int64).reshape(-1)
        h = np.ascontiguousarray(np.broadcast_to(np.asarray(height_m, np.float64).reshape(-1), ki.shape))
        if ki.shape != kj.shape:
            raise ValueError(f"ki and kj must have the same shape, got {ki.shape} and {kj.shape}")
        if not len(ki):
            return np.zeros((0, 3))
        i_lo, j_lo = int(ki.min()), int(kj.min())
        rt, ct = self.lattice_tables(level, row0, col0, step, i_lo, int(ki.max()), j_lo, int(kj.max()))
        return lattice_points(rt, ct, ki - i_lo, kj - j_lo, h, self.is_earth)

    def world_to_sample(self, level: int, pos_m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, 3) world metres -> rows, cols, height_m, each (n,) float64 (global, fractional)."""
        pos = np.asarray(pos_m, np.float64).reshape(-1, 3)
        if self.is_earth:
            lon, lat, h = ecef_to_geodetic(pos)
            d = spacing_deg(level)
            return (90.0 - lat) / d, (lon + 180.0) / d, h
        s = spacing_m(level)
        return -pos[:, 1] / s, pos[:, 0] / s, pos[:, 2].copy()

    def up(self, pos_m) -> np.ndarray:
        """(n, 3) world positions -> (n, 3) unit local up (plane +z; earth geodetic normal)."""
        pos = np.asarray(pos_m, np.float64).reshape(-1, 3)
        if not self.is_earth:
            return np.tile(np.array([0.0, 0.0, 1.0]), (len(pos), 1))
        lon, lat, _ = ecef_to_geodetic(pos)
        return geodetic_normal(lon, lat)

    def sample_up(self, level: int, rows, cols) -> np.ndarray:
        """Global sample coordinates of ``level`` -> (n, 3) unit local up, float64: what
        ``up`` gives at those samples' positions (any height), straight from the sample's
        lon/lat instead of inverting ECEF (the earth's iterated inverse was ~5 ms a tile)."""
        rows = np.asarray(rows, np.float64).reshape(-1)
        cols = np.asarray(cols, np.float64).reshape(-1)
        if not self.is_earth:
            return np.tile(np.array([0.0, 0.0, 1.0]), (len(rows), 1))
        d = spacing_deg(level)
        r_lo, c_lo = (np.floor(rows.min()), np.floor(cols.min())) if len(rows) else (0.0, 0.0)
        ki, kj = rows - r_lo, cols - c_lo
        if len(rows) < 64 or not (np.array_equal(ki, np.floor(ki)) and np.array_equal(kj, np.floor(kj))):
            return geodetic_normal(-180.0 + cols * d, 90.0 - rows * d)
        # Whole samples (a tile's vertices): geodetic_normal's operations once per row / column.
        ki, kj = ki.astype(np.int64), kj.astype(np.int64)
        lon = np.radians(-180.0 + (c_lo + np.arange(int(kj.max()) + 1)) * d)
        lat = np.radians(90.0 - (r_lo + np.arange(int(ki.max()) + 1)) * d)
        cl = np.cos(lat)[ki]
        return np.stack([cl * np.cos(lon)[kj], cl * np.sin(lon)[kj], np.sin(lat)[ki]], axis=1)

    def height_above_ellipsoid_m(self, pos_m) -> np.ndarray:
        """(n, 3) world positions -> (n,) height above the datum (plane z; earth ellipsoidal h)."""
        pos = np.asarray(pos_m, np.float64).reshape(-1, 3)
        return ecef_to_geodetic(pos)[2] if self.is_earth else pos[:, 2].copy()

    def key_at(self, level: int, pos_m) -> TileKey:
        """The tile of ``level`` holding the point (3,) (earth: clamped to the valid range)."""
        r, c, _ = self.world_to_sample(level, np.asarray(pos_m, np.float64)[None])
        x, y = int(np.floor(c[0] / T)), int(np.floor(r[0] / T))
        if self.is_earth:
            x = min(max(x, 0), (2 << level) - 1)
            y = min(max(y, 0), (1 << level) - 1)
        return TileKey(level, x, y)

    # tiles
    def tile_to_world(self, key: TileKey):
        """The ``to_world(rows, cols, height_m) -> (n, 3) float64`` of one tile: rows and cols
        on the tile's own grid ([0, T], fractional allowed)."""
        r0, c0 = key.sample_origin()
        level = key.level

        def to_world(rows, cols, height_m) -> np.ndarray:
            return self.sample_to_world(level, np.asarray(rows, np.float64) + r0,
                                        np.asarray(cols, np.float64) + c0, height_m)

        return to_world

    def tile_center(self, key: TileKey) -> np.ndarray:
        """(3,) float64 world position of the tile's centre sample at height 0."""
        r0, c0 = key.sample_origin()
        return self.sample_to_world(key.level, [r0 + T / 2], [c0 + T / 2], [0.0])[0]

    def tile_bounds(self, key: TileKey, min_height_m: float, max_height_m: float) -> Bounds:
        """Bounds of the tile's surface between the two heights (metres)."""
        if not min_height_m <= max_height_m:
            raise ValueError(f"min_height_m must be <= max_height_m, got {min_height_m} > {max_height_m}")
        p = self.packed_tile_bounds([(key, float(min_height_m), float(max_height_m))])[0]
        hp = p[24:27].copy() if p[28] > 0 else None
        return Bounds(p[0:3].copy(), p[3:12].reshape(3, 3).copy(), float(np.linalg.norm(p[21:24])), hp)

    def packed_tile_bounds(self, tiles) -> np.ndarray:
        """[(key, min_height_m, max_height_m), ...] -> (n, 32) packed bounds (``Bounds.packed``
        layout), memoised; the ones not seen before are fitted in one vectorised call."""
        memo = self._packed
        ks = [(k.level, k.x, k.y, lo, hi) for k, lo, hi in tiles]  # plain tuples hash in C
        rows = [memo.get(k) for k in ks]
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            if len(memo) + len(missing) > self.memo_entries:
                memo.clear()
            sub = [tiles[i] for i in missing]
            keys = [t[0] for t in sub]
            fresh = packed_bounds(self.world, keys, np.array([t[1] for t in sub]), np.array([t[2] for t in sub]),
                                  self._earth_frames(keys) if self.is_earth else None)
            for j, i in enumerate(missing):
                rows[i] = memo[ks[i]] = fresh[j]
        return np.array(rows)

    def _earth_frames(self, keys: list) -> EarthFrames:
        """``earth_tile_frames(keys)``, kept per tile (a tile is fitted again whenever its
        height range changes: a guess re-bounded when its parent or an ancestor arrives,
        then when it arrives itself); at most ``FRAME_ENTRIES`` tiles (~8 KB each)."""
        memo = self._frames
        rows = [memo.get(k) for k in keys]
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            if len(memo) + len(missing) > self.FRAME_ENTRIES:
                memo.clear()
            fresh = earth_tile_frames([keys[i] for i in missing])
            flat = np.concatenate([a.reshape(len(missing), -1) for a in fresh], axis=1)  # one row per tile
            for j, i in enumerate(missing):
                rows[i] = memo[keys[i]] = flat[j]
        table = np.stack(rows)  # (n, 988): EarthFrames' arrays side by side
        m, out, at = _BOX_GRID * _BOX_GRID, [], 0
        for shape in ((m, 3), (m, 3), (3, 3), (3,), (m, 3), (m, 3), (), (3,)):
            size = int(np.prod(shape))
            out.append(np.ascontiguousarray(table[:, at:at + size]).reshape((len(keys),) + shape))  # as made
            at += size
        return tuple(out)

    def children(self, key: TileKey) -> tuple[TileKey, ...]:
        """key.children(), memoised (making frozen keys costs more than a dict lookup)."""
        c = self._children.get(key)
        if c is None:
            if len(self._children) >= self.memo_entries:
                self._children.clear()
            c = self._children[key] = key.children()
        return c

    def tile_extent_deg(self, key: TileKey) -> tuple[float, float, float, float]:
        """(west, south, east, north) degrees of an earth tile."""
        d = spacing_deg(key.level) * T
        west, north = -180.0 + key.x * d, 90.0 - key.y * d
        return west, north - d, west + d, north


@lru_cache(maxsize=None)
def _geometry(world: World) -> WorldGeometry:
    return WorldGeometry(world)


def geometry_for(world: World | str) -> WorldGeometry:
    """The (shared, stateless) geometry of ``world`` ('plane' | 'earth')."""
    return _geometry(World.parse(world) if not isinstance(world, World) else world)


def packed_bounds(world: World, keys, hmin_m: np.ndarray, hmax_m: np.ndarray,
                  frames: EarthFrames | None = None) -> np.ndarray:
    """Bounds of n tiles at once, packed as in ``Bounds.packed``: (n, 32) float64.

    keys: n TileKeys; hmin_m, hmax_m: (n,) height ranges. Vectorised (selection fits the
    boxes of every tile it meets for the first time in one call per level). frames: the
    earth tiles' ``earth_tile_frames(keys)`` when kept (same bits), else made here.
    """
    n = len(keys)
    levels = np.fromiter((k.level for k in keys), np.int64, n)
    xs = np.fromiter((k.x for k in keys), np.float64, n)
    ys = np.fromiter((k.y for k in keys), np.float64, n)
    hmin = np.asarray(hmin_m, np.float64).reshape(n)
    hmax = np.asarray(hmax_m, np.float64).reshape(n)
    out = np.zeros((n, 32))
    if world is World.PLANE:
        s = LEVEL0_SPACING_DEG * T * METRES_PER_DEGREE / np.exp2(levels)
        out[:, 0], out[:, 1], out[:, 2] = (xs + 0.5) * s, -(ys + 0.5) * s, 0.5 * (hmin + hmax)
        lengths = np.stack([0.5 * s, 0.5 * s, 0.5 * (hmax - hmin)], axis=1)
        frame = np.broadcast_to(np.eye(3), (n, 3, 3))
        out[:, 3:12] = (lengths[:, :, None] * frame).reshape(n, 9)
        out[:, 12:21] = frame.reshape(n, 9)
        out[:, 21:24] = lengths
        out[:, 29:32] = out[:, 0:3]
        return out
    return _earth_fit(levels, earth_tile_frames(keys) if frames is None else frames, hmin, hmax)


EarthFrames = tuple
"""Per earth tile, what its box fit needs besides the height range (``earth_tile_frames``):
surf0 (n, m, 3) the grid's ECEF points at height 0, normals (n, m, 3) their ellipsoid
normals, frame (n, 3, 3) rows east, north, up at the centre, center0 (n, 3), a0 and an
(n, m, 3) surf0 - center0 and normals in that frame, pad (n,) the curvature pad, dvec
(n, 3) the centre's unit direction in the occluder's scaled space (m = _BOX_GRID^2)."""


def earth_tile_frames(keys) -> EarthFrames:
    """``EarthFrames`` of n earth tiles: the height-independent part of ``packed_bounds``
    (most of its work), kept per tile by ``WorldGeometry.packed_tile_bounds`` so that a
    tile re-bounded (a guessed tile whose parent arrived) is only fitted again."""
    n = len(keys)
    levels = np.fromiter((k.level for k in keys), np.int64, n)
    xs = np.fromiter((k.x for k in keys), np.float64, n)
    ys = np.fromiter((k.y for k in keys), np.float64, n)
    # Earth: fit in the tile centre's east/north/up frame to a grid at both heights.
    d = LEVEL0_SPACING_DEG * T / np.exp2(levels)  # tile size, degrees
    west, north = -180.0 + xs * d, 90.0 - ys * d
    g = np.linspace(0.0, 1.0, _BOX_GRID)
    grid = (n, _BOX_GRID, _BOX_GRID)
    lons = np.broadcast_to(west[:, None, None] + d[:, None, None] * g[None, None, :], grid)
    lats = np.broadcast_to((north - d)[:, None, None] + d[:, None, None] * g[None, :, None], grid)
    m = _BOX_GRID * _BOX_GRID
    surf0 = geodetic_to_ecef(lons, lats, 0.0).reshape(n, m, 3)
    normals = geodetic_normal(lons, lats).reshape(n, m, 3)
    lon_c, lat_c = np.radians(west + d / 2), north - d / 2
    up = geodetic_normal(np.degrees(lon_c), lat_c)
    east = np.stack([-np.sin(lon_c), np.cos(lon_c), np.zeros(n)], axis=1)
    frame = np.stack([east, np.cross(up, east), up], axis=1)  # (n, 3, 3) rows e, n, u
    center0 = geodetic_to_ecef(np.degrees(lon_c), lat_c, 0.0)
    a0 = np.einsum("nmk,njk->nmj", surf0 - center0[:, None, :], frame)
    an = np.einsum("nmk,njk->nmj", normals, frame)
    # Between grid points the surface leaves the bilinear patch of the 4 corners by at most
    # the sagitta of the cell diagonal's arc: R (1 - cos(theta / 2)).
    theta = np.radians(d / (_BOX_GRID - 1)) * np.sqrt(2.0)
    pad = (WGS84_A_M + DEFAULT_HEIGHT_RANGE_M[1]) * (1.0 - np.cos(theta / 2.0))
    dvec = center0 / occluder_radii_m()
    dvec /= np.linalg.norm(dvec, axis=1, keepdims=True)
    return surf0, normals, frame, center0, a0, an, pad, dvec


def _earth_fit(levels: np.ndarray, frames: EarthFrames, hmin: np.ndarray, hmax: np.ndarray) -> np.ndarray:
    """``packed_bounds`` of n earth tiles from their ``EarthFrames`` and height ranges."""
    surf0, normals, frame, center0, a0, an, pad, dvec = frames
    n = len(levels)
    out = np.zeros((n, 32))
    low, high = a0 + hmin[:, None, None] * an, a0 + hmax[:, None, None] * an
    lo = np.minimum(low, high).min(axis=1) - pad[:, None]
    hi = np.maximum(low, high).max(axis=1) + pad[:, None]
    lengths = 0.5 * (hi - lo)
    out[:, 0:3] = center0 + np.einsum("nj,njk->nk", 0.5 * (lo + hi), frame)
    out[:, 3:12] = (lengths[:, :, None] * frame).reshape(n, 9)
    out[:, 12:21] = frame.reshape(n, 9)
    out[:, 21:24] = lengths
    # Horizon-culling point (Cesium computeHorizonCullingPoint) of the top surface.
    radii = occluder_radii_m()
    top = surf0 + (np.maximum(hmax, 0.0) + pad)[:, None, None] * normals
    sc = top / radii
    len2 = (sc * sc).sum(axis=2)
    mag2 = np.maximum(len2, 1.0)
    unit = sc / np.sqrt(len2)[:, :, None]
    cos_a = (unit * dvec[:, None, :]).sum(axis=2)
    sin_a = np.linalg.norm(np.cross(unit, dvec[:, None, :]), axis=2)
    cos_b = 1.0 / np.sqrt(mag2)
    sin_b = np.sqrt(mag2 - 1.0) * cos_b
    denom = cos_a * cos_b - sin_a * sin_b
    # No finite point when some point is a quarter turn away; level-0 tiles span half the globe.
    ok = np.all(denom > 1e-9, axis=1) & (levels >= 1)
    hp = dvec * (1.0 / np.where(ok[:, None], denom, 1.0)).max(axis=1)[:, None]
    hp[~ok] = 0.0
    out[:, 24:27] = hp
    out[:, 27] = (hp * hp).sum(axis=1)
    out[:, 28] = ok
    out[:, 29:32] = np.einsum("nij,nj->ni", frame, out[:, 0:3])
    return out
