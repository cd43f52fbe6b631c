"""What a client must be told about an earth tile's content to select and cull it right:
the geodetic height range that encloses every point of it, and Cesium's per-level
geometric error.

Height range: a tile's GLB / quantized-mesh content is flat triangles between vertices
(surface and skirts). On the curved earth a flat triangle dips below its vertices (the
chord sag, thousands of km for the level-0 tiles' big triangles), so the vertex heights
alone do not bound it. ``content_height_range_m`` finds each triangle's lowest point in
the ellipsoid-scaled frame (where the WGS84 ellipsoid is the unit sphere and height grows
with the distance from the centre along every ray): the triangle's point closest to the
centre, exactly (the unconstrained minimum of the convex |p|^2 over the triangle's plane
if it lies inside, else the closest point of its three edges). Its geodetic height, minus
SAG_PAD of its depth below the triangle's lowest vertex (the scaled and geodetic
minima differ by at most the ellipsoid's 0.34 % flattening of that depth), bounds the
triangle from below.

Geometric error: CesiumJS assumes the error of a quantized-mesh tile of level L is
``TerrainProvider.getEstimatedLevelZeroGeometricErrorForAHeightmap(ellipsoid, 65,
2) / 2^L`` (CesiumTerrainProvider: a 65-sample heightmap over the geographic scheme's two
level-0 tiles), i.e. a * 2 pi * 0.25 / 130 = 77,067 m at level 0. A 3D Tiles tile with the
same geometric error is refined at exactly the same screen-space error, so giving our
3D Tiles this error makes CesiumJS pick the same levels through both providers.
"""

from __future__ import annotations

import math

import numpy as np

from runtime.tiles import WGS84_A_M, WGS84_B_M

CESIUM_HEIGHTMAP_WIDTH = 65
"""Samples per tile edge CesiumTerrainProvider assumes for quantized-mesh error estimates."""

CESIUM_LEVEL0_ERROR_M = WGS84_A_M * 2.0 * math.pi * 0.25 / (CESIUM_HEIGHTMAP_WIDTH * 2)
"""CesiumJS's geometric error of a level-0 geographic terrain tile (77,067.34 m)."""

SAG_PAD = 0.01
"""Fraction of a triangle's sag added below its lowest point (flattening margin)."""

_RADII = np.array([WGS84_A_M, WGS84_A_M, WGS84_B_M])


def cesium_level_error_m(level: int) -> float:
    """CesiumJS's geometric error (m) of a terrain tile of ``level`` (geographic scheme):
    CESIUM_LEVEL0_ERROR_M / 2^level."""
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    return CESIUM_LEVEL0_ERROR_M / (1 << level)


def content_height_range_m(vertices_m: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    """Geodetic height range (m, WGS84) that holds every point of a triangle mesh in ECEF.

    vertices_m: (n, 3) absolute ECEF metres (surface and skirt vertices; float64 or the
    float32 tile-relative vertices plus the centre, as the content stores them).
    faces: (m, 3) vertex indices (surface and skirt triangles).
    Returns (lo, hi): lo is at most the lowest vertex height and at most every
    triangle's lowest vertex height minus a bound on its chord sag; hi is the highest
    vertex height plus 1 mm (a flat triangle never rises above its highest vertex in the
    scaled frame, where the norm is convex)."""
    from runtime.geometry import ecef_to_geodetic

    v = np.asarray(vertices_m, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(v) == 0 or len(f) == 0:
        raise ValueError(f"expected a mesh with vertices and faces, got {len(v)} vertices and {len(f)} faces")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"face indices must be in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    _, _, h = ecef_to_geodetic(v)
    q = v / _RADII
    low_q = _closest_to_centre(q, f)  # (m, 3) lowest point per triangle, scaled frame
    # Only triangles that sag by more than a millimetre (coarse levels) need their lowest
    # point's geodetic height; below that the vertices bound them.
    dip = np.linalg.norm(q, axis=1)[f].min(axis=1) - np.linalg.norm(low_q, axis=1)
    deep = dip * WGS84_A_M > 1e-3
    lo = float(h.min())
    if deep.any():
        _, _, h_low = ecef_to_geodetic(low_q[deep] * _RADII)
        sag = np.maximum(h[f[deep]].min(axis=1) - h_low, 0.0)
        lo = min(lo, float((h_low - SAG_PAD * sag).min()))
    lo -= 1e-3
    return lo, float(h.max()) + 1e-3


def _closest_to_centre(q: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per triangle of ``faces`` over points ``q`` (n, 3), its point closest to the origin. (m, 3)."""
    a, b, c = q[faces[:, 0]], q[faces[:, 1]], q[faces[:, 2]]
    e1, e2 = b - a, c - a
    # Minimum of |a + s e1 + t e2|^2 over the plane: the 2 x 2 normal equations.
    g11, g12, g22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    r1, r2 = -(a * e1).sum(1), -(a * e2).sum(1)
    det = g11 * g22 - g12 * g12
    ok = det > 1e-30 * np.maximum(g11 * g22, 1e-300)
    det = np.where(ok, det, 1.0)
    s = (r1 * g22 - r2 * g12) / det
    t = (r2 * g11 - r1 * g12) / det
    inside = ok & (s >= 0) & (t >= 0) & (s + t <= 1)
    best = a + s[:, None] * e1 + t[:, None] * e2
    # Else the closest point of the three edges (the function is convex).
    cands = []
    for p0, p1 in ((a, b), (b, c), (c, a)):
        d = p1 - p0
        dd = np.maximum((d * d).sum(1), 1e-300)
        u = np.clip(-(p0 * d).sum(1) / dd, 0.0, 1.0)
        cands.append(p0 + u[:, None] * d)
    cands = np.stack(cands, axis=1)  # (m, 3, 3)
    edge = cands[np.arange(len(a)), np.linalg.norm(cands, axis=2).argmin(axis=1)]
    return np.where(inside[:, None], best, edge)
