"""The earth's curvature in the simplification error (docs/MESHING.md, "Curvature").

A flat triangle between three vertices on the curved earth lies below the surface
between them (its chord sag: L^2 / 8R for an edge of length L, 3,452 km for the old
level-0 fan). A height-only error ignores that, so coarse earth tiles were polyhedra
whose real deviation was up to 180x their geometric error.

``curved_positions`` gives the mesher each sample's true position in the tile's local
east-north-up frame: (3, T+1, T+1) float64 metres, up first. A flat triangle interpolates
those positions linearly (it is flat in ECEF, and the frame is a rotation of ECEF), so
the residual of a sample against its triangle, component by component, is the vector
from where the mesh draws that sample to where it really is: its height error plus the
triangle's sag at it (plus the small along-surface shift of a lon/lat grid). The mesher
bounds sqrt(sum over components of each component's max |residual|^2), which is at
least the largest 3D distance, so the bound stays a bound. On the plane world positions
are linear in (row, col) except the height, so ``curved_positions`` returns None and the
mesher keeps its height-only error (bytes unchanged).
"""

from __future__ import annotations

import numpy as np

import runtime.tin.meshkernels as meshkernels
from runtime import jit
from runtime.geometry import east_north_up, ecef_to_geodetic, geometry_for
from runtime.tiles import WGS84_A_M, WGS84_E2, T, TileKey, World, spacing_deg

FULL_3D_BELOW_LEVEL = 6
"""Levels below this bound the full 3D distance; from it on only the up component (the
vertical error plus the sag along the tile centre's up). A level-6 tile spans 2.8 deg,
so the up turns by at most 2 deg across it and the horizontal residuals are below 0.1 %
of the vertical ones (measured: the same meshes), while the mesher costs ~1.07x the
height-only one instead of ~4x."""


def curved_positions(world: World | str, key: TileKey, height_m: np.ndarray) -> np.ndarray | None:
    """The samples' positions for ``simplify_grid(positions_m=...)``: (3, T+1, T+1)
    float64 metres relative to the tile centre in its east-north-up frame, ordered up,
    east, north, below ``FULL_3D_BELOW_LEVEL``; from it on the up component alone
    (1, T+1, T+1); None on a flat world (the height-only error).

    height_m: (T+1, T+1) metres (the tile's grid, the values the mesh keeps)."""
    if not geometry_for(world).is_earth:
        return None
    return enu_positions(world, key, height_m, up_only=key.level >= FULL_3D_BELOW_LEVEL)


def enu_positions(world: World | str, key: TileKey, height_m: np.ndarray, up_only: bool = False) -> np.ndarray:
    """(3, T+1, T+1) float64: every sample's position (m) relative to the tile centre in
    its east-north-up frame, components ordered up, east, north (earth only); (1, T+1,
    T+1), the up component, with ``up_only``.

    WGS84 as ``geometry.geodetic_to_ecef``, evaluated separably: latitude depends on the
    row and longitude on the column only, so the trigonometry runs on 2 (T+1) values."""
    geo = geometry_for(world)
    if not geo.is_earth:
        raise ValueError(f"enu_positions needs the earth world, got {geo.world.value}")
    h = np.asarray(height_m, np.float64)
    if h.shape != (T + 1, T + 1):
        raise ValueError(f"height_m must be ({T + 1}, {T + 1}) metres, got shape {h.shape}")
    r0, c0 = key.sample_origin()
    d = spacing_deg(key.level)
    lat = np.radians(90.0 - (np.arange(T + 1, dtype=np.float64) + r0) * d)[:, None]  # (T+1, 1)
    lon = np.radians(-180.0 + (np.arange(T + 1, dtype=np.float64) + c0) * d)[None, :]  # (1, T+1)
    sl, cl = np.sin(lat), np.cos(lat)
    n = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * sl * sl)
    ncl = n * cl  # (N + h) cos(lat) = ncl + cl h
    hcl = None if jit.ENABLED else cl * h
    centre = geo.tile_center(key)
    clon, lat_c, _ = ecef_to_geodetic(centre[None])
    enu = east_north_up(float(clon[0]), float(lat_c[0]))[[2, 0, 1]]  # rows u, e, n in ECEF
    out = np.empty((1 if up_only else 3, T + 1, T + 1))
    for i, (ax, ay, az) in enumerate(enu[: len(out)]):
        # a . (P - C) with P = ((N + h) cos(lat) cos(lon), (N + h) cos(lat) sin(lon), (N (1 - e2) + h) sin(lat))
        horiz = ax * np.cos(lon) + ay * np.sin(lon)  # (1, T+1)
        if jit.ENABLED:  # one pass, the same operations (runtime.tin.meshkernels)
            meshkernels.enu_component(h, ncl.ravel(), cl.ravel(), (n * (1.0 - WGS84_E2)).ravel(),
                                      (az * sl).ravel(), horiz.ravel(), float(enu[i] @ centre), out[i])
            continue
        out[i] = (ncl + hcl) * horiz + (n * (1.0 - WGS84_E2) + h) * (az * sl) - float(enu[i] @ centre)
    return out


def max_deviation_m(world: World | str, key: TileKey, height_m: np.ndarray, grid_rc: np.ndarray,
                    faces: np.ndarray) -> tuple[float, float]:
    """Measured deviation of a tile's TIN from its samples' true positions, metres:
    (max 3D distance, max distance a flat face lies below a sample along that sample's
    own up). On the earth the second is the height error plus the chord sag; on the plane
    both are the vertical error."""
    from runtime.tin.simplify import face_residuals

    if not geometry_for(world).is_earth:
        err = face_residuals(np.asarray(height_m, np.float64)[None], grid_rc, faces)[0][0]
        return float(np.abs(err).max()), float(err.max())
    res, r, c = face_residuals(enu_positions(world, key, height_m), grid_rc, faces)  # (3, k) up, east, north
    geo = geometry_for(world)
    r0, c0 = key.sample_origin()
    p = geo.sample_to_world(key.level, r + r0, c + c0, 0.0)
    centre = geo.tile_center(key)
    lon, lat, _ = ecef_to_geodetic(centre[None])
    up = geo.up(p) @ east_north_up(float(lon[0]), float(lat[0]))[[2, 0, 1]].T  # (k, 3) in the frame
    return float(np.sqrt((res * res).sum(axis=0)).max()), float((res.T * up).sum(axis=1).max())


def geometric_error_3d_m(world: World | str, key: TileKey, grid_rc: np.ndarray, faces: np.ndarray,
                         children_height_m: np.ndarray, height_m: np.ndarray | None = None) -> float:
    """The tile's geometric error from data (DESIGN.md section 3) measured in 3D: the max
    distance (m) from the next level's samples (``runtime.tin.simplify.children_grid``,
    (2T+1, 2T+1)) to where the tile's flat faces draw them; on the earth this includes
    the chord sag, on the plane it is ``geometric_error_m``'s vertical distance.

    height_m: None (the TIN's vertices lie at the samples' heights, as a wire TIN's do)
    or the TIN's own (n,) vertex heights, m (earth only; a re-meshed TIN whose vertices
    lie on another TIN: streaming.ecosystem.cesium_tile): the faces are then drawn
    through those, and the samples at the vertices count too."""
    from runtime.tin.simplify import face_residuals, geometric_error_m

    geo = geometry_for(world)
    ch = np.asarray(children_height_m, np.float64)
    if ch.shape != (2 * T + 1, 2 * T + 1):
        raise ValueError(f"children_height_m must be ({2 * T + 1}, {2 * T + 1}), got {ch.shape}")
    if not geo.is_earth:
        if height_m is not None:
            raise ValueError("height_m is for earth tiles; on the plane the vertices are the samples")
        return geometric_error_m(grid_rc, faces, ch)
    r0, c0 = key.sample_origin()
    rows, cols = np.meshgrid(np.arange(2 * T + 1, dtype=np.float64) + 2 * r0,
                             np.arange(2 * T + 1, dtype=np.float64) + 2 * c0, indexing="ij")
    pos = geo.sample_to_world(key.level + 1, rows.ravel(), cols.ravel(), ch.ravel())
    field = np.ascontiguousarray((pos - geo.tile_center(key)).T.reshape(3, 2 * T + 1, 2 * T + 1))
    rc2 = 2 * np.asarray(grid_rc, np.int64)
    at_vertices = 0.0
    if height_m is not None:
        h = np.asarray(height_m, np.float64)
        if h.shape != (len(rc2),):
            raise ValueError(f"height_m must be ({len(rc2)},) vertex heights, got shape {h.shape}")
        v = (geo.sample_to_world(key.level + 1, (rc2[:, 0] + 2 * r0).astype(np.float64),
                                 (rc2[:, 1] + 2 * c0).astype(np.float64), h) - geo.tile_center(key)).T
        at_vertices = float(np.sqrt(((v - field[:, rc2[:, 0], rc2[:, 1]]) ** 2).sum(axis=0)).max())
        field[:, rc2[:, 0], rc2[:, 1]] = v
    res, _, _ = face_residuals(field, rc2, faces)
    return max(float(np.sqrt((res * res).sum(axis=0)).max()), at_vertices)
