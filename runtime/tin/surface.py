"""Renderable tile surfaces from decoded TIN tiles (numpy only; the viewer uploads them).

A decoded tile gives vertices as fractional grid coordinates + heights, triangles and
the four edge vertex lists. Here they become float32 positions relative to a float64
tile centre (camera-relative rendering needs no float64 on the GPU), vertex normals,
UVs into the tile's colour image, and skirts hanging below each edge against cracks
between levels (Cesium's quantized-mesh convention).

Per vertex it also keeps the height above the datum (water is drawn where it is below 0)
and the local up vector (the GPU lifts sea floor to sea level, and geomorphs, along it).
``with_morph`` adds CDLOD-style morph targets (Strugar 2009, "Continuous Distance-Dependent
Level of Detail"): each vertex's height and normal on the parent tile's drawn surface, so a
child can blend into its parent with distance and level changes neither pop nor leave seams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from runtime.geometry import geometry_for
from runtime.grids import bilinear
from runtime.tin.mesh import vertex_normals
from runtime.tiles import T, TileKey, World


@dataclass(frozen=True)
class Surface:
    """Arrays ready for a vertex buffer.

    vertices: (n, 3) float32 metres relative to ``center_m`` (3,) float64 world position;
    normals: (n, 3) float32 unit; uv: (n, 2) float32 in [0, 1] (u east, v south);
    faces: (m, 3) uint32; heights within [min_height_m, max_height_m].
    height_m: (n,) float32 height above the datum (a skirt vertex carries its edge
    vertex's height, so water hides skirts too); grid_rc: (n, 2) float64 tile grid [row,
    col] of each vertex (skirts: their edge vertex's); up: (n, 3) float32 unit local up;
    morph_dh_m: (n,) float32 parent-surface height minus own height (0 without a parent);
    morph_normals: (n, 3) float32 unit parent-surface normals (own normals without one).
    edges: {side: (edge vertex indices ordered along the edge, their skirt vertex indices,
    one-sided normals (k, 3))} for ``stitch_edge_normals``.
    """

    key: TileKey
    center_m: np.ndarray
    vertices: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    faces: np.ndarray
    min_height_m: float
    max_height_m: float
    skirt_start: int
    grid_rc: np.ndarray | None = None
    height_m: np.ndarray | None = None
    up: np.ndarray | None = None
    morph_dh_m: np.ndarray | None = None
    morph_normals: np.ndarray | None = None
    edges: dict | None = None

    @property
    def has_morph(self) -> bool:
        return self.morph_dh_m is not None

    @property
    def nbytes(self) -> int:
        extra = (self.height_m, self.up, self.morph_dh_m, self.morph_normals)
        return int(self.vertices.nbytes + self.normals.nbytes + self.uv.nbytes + self.faces.nbytes
                   + sum(a.nbytes for a in extra if a is not None))


def tin_surface(
    world: World | str,
    key: TileKey,
    grid_rc: np.ndarray,
    height_m: np.ndarray,
    faces: np.ndarray,
    edges: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    skirt_depth_m: float,
) -> Surface:
    """Build a Surface from a TIN in tile grid coordinates.

    grid_rc: (n, 2) float64 [row, col] in [0, T]; height_m: (n,) metres; faces: (m, 3)
    vertex indices; edges: the vertex indices on the west, south, east and north edges
    (any order, a mapping or a sequence); skirt_depth_m: how far skirts hang below.
    """
    geo = geometry_for(world)
    grid_rc = np.asarray(grid_rc, np.float64)
    h = np.asarray(height_m, np.float64)
    faces = np.asarray(faces, np.int64)
    r0, c0 = key.sample_origin()
    center = geo.tile_center(key)
    pos = geo.sample_to_world(key.level, grid_rc[:, 0] + r0, grid_rc[:, 1] + c0, h)
    normals = vertex_normals(pos - center, faces)
    up_c = geo.up(center[None, :])[0]
    if float((normals.astype(np.float64) @ up_c).sum()) < 0:  # winding seen from below: flip
        faces = faces[:, ::-1]
        normals = -normals

    edge_lists = list(edges.values()) if isinstance(edges, Mapping) else list(edges)
    skirt_faces = []
    skirt_src = []
    sides = {}
    n = len(pos)
    for e in edge_lists:
        e = np.asarray(e, np.int64)
        if len(e) < 2:
            continue
        # Order the edge by position along it so consecutive vertices form segments.
        rc = grid_rc[e]
        along = rc[:, 1] if np.ptp(rc[:, 1]) >= np.ptp(rc[:, 0]) else rc[:, 0]
        e = e[np.argsort(along, kind="stable")]
        base = n + sum(len(s) for s in skirt_src)
        skirt_src.append(e)
        side = _side(grid_rc[e])
        if side is not None:
            sides[side] = (e, base + np.arange(len(e)), normals[e].copy())
        normals[e] = _edge_normals(geo, key.level, grid_rc[e] + (r0, c0), h[e])
        a, b = e[:-1], e[1:]
        sa, sb = base + np.arange(len(e) - 1), base + np.arange(1, len(e))
        skirt_faces.append(np.stack([a, sa, b], 1))
        skirt_faces.append(np.stack([b, sa, sb], 1))
    if skirt_src:
        src = np.concatenate(skirt_src)
        corners = np.unique(src)[np.bincount(src)[np.unique(src)] > 1]
        normals[corners] = geo.up(pos[corners])  # a corner's 4 tiles agree on flat
        skirt_pos = geo.sample_to_world(key.level, grid_rc[src, 0] + r0, grid_rc[src, 1] + c0,
                                        h[src] - skirt_depth_m)
        all_pos = np.concatenate([pos, skirt_pos])
        all_normals = np.concatenate([normals, normals[src]])
        all_rc = np.concatenate([grid_rc, grid_rc[src]])
        all_faces = np.concatenate([faces] + skirt_faces)
    else:
        all_pos, all_normals, all_rc, all_faces = pos, normals, grid_rc, faces
    uv = (all_rc[:, ::-1] / T).astype(np.float32)
    all_h = np.concatenate([h, h[src]]) if skirt_src else h
    return Surface(
        key=key, center_m=center, vertices=(all_pos - center).astype(np.float32), normals=all_normals,
        uv=uv, faces=all_faces.astype(np.uint32), min_height_m=float(h.min()) - skirt_depth_m,
        max_height_m=float(h.max()), skirt_start=n, height_m=all_h.astype(np.float32),
        up=geo.up(all_pos).astype(np.float32), grid_rc=all_rc, edges=sides,
    )


def _side(rc: np.ndarray) -> str | None:
    if np.all(rc[:, 1] == 0):
        return "west"
    if np.all(rc[:, 1] == T):
        return "east"
    if np.all(rc[:, 0] == 0):
        return "north"
    if np.all(rc[:, 0] == T):
        return "south"
    return None


_OPPOSITE = {"east": ("west", 1, 0), "west": ("east", -1, 0), "south": ("north", 0, 1), "north": ("south", 0, -1)}


def stitch_edge_normals(world: World | str, a: Surface, b: Surface) -> tuple[Surface, Surface] | None:
    """Exact shared-edge normals for two same-level neighbours: each edge vertex gets the
    normalised sum of both tiles' one-sided normals (the vertex normal of the joined mesh),
    so the two tiles shade their common edge alike and the band a zero cross-edge slope
    leaves (``_edge_normals``) goes. Corners keep theirs. Returns the updated (a, b), or None
    when they do not share an edge (different levels, not adjacent, vertices differ)."""
    from runtime.tiles import World as _World
    from runtime.tiles import neighbour

    if a.key.level != b.key.level or not a.edges or not b.edges:
        return None
    w = _World.parse(world)
    for side, (other, dx, dy) in _OPPOSITE.items():
        if neighbour(w, a.key, dx, dy) == b.key and side in a.edges and other in b.edges:
            ea, sa, na = a.edges[side]
            eb, sb, nb = b.edges[other]
            if len(ea) != len(eb) or len(ea) < 3:
                return None
            axis = 0 if side in ("east", "west") else 1
            if not np.array_equal(a.grid_rc[ea, axis], b.grid_rc[eb, axis]):
                return None
            m = na.astype(np.float64) + nb.astype(np.float64)
            m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
            m = m.astype(np.float32)[1:-1]
            out = []
            for surf, e, sk in ((a, ea, sa), (b, eb, sb)):
                normals = surf.normals.copy()
                normals[e[1:-1]] = m
                normals[sk[1:-1]] = m
                out.append(replace(surf, normals=normals))
            return out[0], out[1]
    return None


def _edge_normals(geo, level: int, grc: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Normals of one edge's vertices (ordered along it) that both tiles sharing the edge
    compute alike: the slope along the edge from its (shared) vertices, none across it.

    A vertex normal averaged over one tile's faces sees only one side of the edge, and the
    two tiles then shade their common edge differently: the faint lines along tile borders.
    Neither tile knows the other's slope across the edge, so that slope is taken as zero;
    exact normals need the server to send them (quantized-mesh's oct-encoded normals).
    grc: (k, 2) global [row, col]; h: (k,) metres -> (k, 3) float32."""
    along_cols = np.ptp(grc[:, 1]) >= np.ptp(grc[:, 0])
    pos = geo.sample_to_world(level, grc[:, 0], grc[:, 1], h)
    tangent = np.gradient(pos, axis=0) if len(pos) > 2 else np.repeat(pos[1:] - pos[:1], len(pos), 0)
    step = (1.0, 0.0) if along_cols else (0.0, 1.0)
    across = geo.sample_to_world(level, grc[:, 0] + step[0], grc[:, 1] + step[1], h) - pos
    nrm = np.cross(tangent, across)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    up = geo.up(pos)
    nrm *= np.sign((nrm * up).sum(axis=1, keepdims=True) + 1e-30)
    return nrm.astype(np.float32)


def tin_to_grid(grid_rc: np.ndarray, height_m: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Rasterise a TIN covering [0, T]^2 onto its sample grid: (T+1, T+1) float32 metres.

    Every grid point takes the linear interpolation of the triangle holding it (vectorised
    over triangles' bounding boxes; a point on a shared edge gets either side's equal value).
    """
    rc = np.asarray(grid_rc, np.float64)
    f = np.asarray(faces, np.int64)
    hv = np.asarray(height_m, np.float64)[f]  # (m, 3)
    tri = rc[f]  # (m, 3, 2)
    lo = np.ceil(tri.min(axis=1) - 1e-9).astype(np.int64)
    hi = np.floor(tri.max(axis=1) + 1e-9).astype(np.int64)
    nr, nc = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    count = np.maximum(nr, 0) * np.maximum(nc, 0)
    fid = np.repeat(np.arange(len(f)), count)
    start = np.cumsum(count) - count
    local = np.arange(int(count.sum())) - np.repeat(start, count)
    ncf = nc[fid]
    pr = lo[fid, 0] + local // ncf
    pc = lo[fid, 1] + local % ncf
    a, b, c = tri[fid, 0], tri[fid, 1], tri[fid, 2]
    v0, v1 = b - a, c - a
    v2 = np.stack([pr, pc], 1) - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = den != 0
    den = np.where(ok, den, 1.0)
    l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    l0 = 1.0 - l1 - l2
    inside = ok & (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
    h = hv[fid, 0] * l0 + hv[fid, 1] * l1 + hv[fid, 2] * l2
    grid = np.full((T + 1, T + 1), np.nan, np.float64)
    grid[pr[inside], pc[inside]] = h[inside]
    if np.isnan(grid).any():
        raise ValueError("the TIN does not cover the tile's [0, T]^2 grid")
    return grid.astype(np.float32)


def with_morph(world: World | str, surface: Surface, parent_grid: np.ndarray,
               parent: Surface | None = None) -> Surface:
    """Add morph targets from the parent tile's surface rasterised by ``tin_to_grid``
    ((T+1, T+1) metres). The child's sample (r, c) lies at the parent's
    ((r + T*(y&1)) / 2, (c + T*(x&1)) / 2); heights there are bilinear on the parent grid,
    normals come from central differences of that surface (half a parent sample apart)."""
    key = surface.key
    if key.level == 0:
        raise ValueError(f"tile {key} is a root: it has no parent to morph toward")
    if np.shape(parent_grid) != (T + 1, T + 1):
        raise ValueError(f"parent_grid must be ({T + 1}, {T + 1}), got {np.shape(parent_grid)}")
    geo = geometry_for(world)
    rc = surface.grid_rc
    pr = (rc[:, 0] + T * (key.y & 1)) / 2.0
    pc = (rc[:, 1] + T * (key.x & 1)) / 2.0
    ph = bilinear(parent_grid, pr, pc)
    n = surface.skirt_start
    dh = (ph - surface.height_m.astype(np.float64)).astype(np.float32)
    # Parent-surface normals by central differences in the parent's global sample grid.
    pk = key.parent()
    r0, c0 = pk.sample_origin()
    e = 0.5
    rr = np.clip(pr, e, T - e)
    cc = np.clip(pc, e, T - e)
    pts = [geo.sample_to_world(pk.level, r0 + rr + dr, c0 + cc + dc, bilinear(parent_grid, rr + dr, cc + dc))
           for dr, dc in ((0, -e), (0, e), (-e, 0), (e, 0))]
    along_c, along_r = pts[1] - pts[0], pts[3] - pts[2]
    nrm = np.cross(along_r, along_c)  # rows grow south, cols east: south x east = up
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    if float((nrm[:n].astype(np.float64) * surface.up[:n]).sum()) < 0:
        nrm = -nrm
    # On the parent's own border the morph target is the parent's edge normal (interpolated
    # along the edge): a fully morphed child then shades its border exactly as the parent,
    # hence as the parent's same-level neighbour, the coarser tile it meets at a level
    # change. Borders inside the parent use the parent grid's central differences, which
    # both children there share. Without the parent's surface: own (consistent) edge normals.
    if parent is not None and parent.edges:
        for side, (pe, _, _) in parent.edges.items():
            axis = 0 if side in ("west", "east") else 1  # coordinate along the edge
            fixed = {"west": (1, 0.0), "east": (1, T), "north": (0, 0.0), "south": (0, T)}[side]
            p_rc = pr if fixed[0] == 0 else pc
            on = np.abs(p_rc - fixed[1]) < 1e-9
            if not on.any():
                continue
            along_p = parent.grid_rc[pe, axis]
            along_c = (pr if axis == 0 else pc)[on]
            pn = parent.normals[pe].astype(np.float64)
            v = np.stack([np.interp(along_c, along_p, pn[:, i]) for i in range(3)], 1)
            nrm[on] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    else:
        border = (rc[:, 0] <= 0) | (rc[:, 0] >= T) | (rc[:, 1] <= 0) | (rc[:, 1] >= T)
        nrm[border] = surface.normals[border]
    return replace(surface, morph_dh_m=dh, morph_normals=nrm.astype(np.float32))
