"""Renderable tile surfaces from decoded TIN tiles (numpy only; the viewer uploads them).

A decoded tile is placed by ``runtime.tin.placement.tile_mesh``, the same path every
export takes: float32 positions relative to a float64 tile centre, skirts, normals with
the shared-edge rule, UVs into the tile's colour image (u east, v south).

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
from runtime.tiles import T, TileKey, World
from runtime.tin.placement import SIDES, facing_side, is_edge_indices, joined_normals, tile_mesh
from runtime.tin.raster import tin_window


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
    the tile's half of the joined normals (k, 3): ``placement.inward_normals``)} for
    ``stitch_edge_normals``.
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
    edges: Sequence[np.ndarray] | Mapping[str, np.ndarray] | None,
    skirt_depth_m: float,
) -> Surface:
    """Build a Surface from a TIN in tile grid coordinates (placed by ``tile_mesh``, the
    path every export takes too).

    grid_rc: (n, 2) [row, col] in [0, T]; height_m: (n,) metres; faces: (m, 3) vertex
    indices; edges: the decoded edge vertex lists (west, south, east, north; a mapping or
    a sequence) or None; they must be the vertices on the tile border, which is what the
    skirts and the shared-edge normals follow. skirt_depth_m: how far skirts hang below.
    """
    geo = geometry_for(world)
    listed = None
    if edges is not None:
        listed = [edges[s] for s in SIDES] if isinstance(edges, Mapping) and set(edges) == set(SIDES) else (
            list(edges.values()) if isinstance(edges, Mapping) else list(edges))
    # The decoder's edges are tile_mesh's own (edge_indices): passed on, not made again.
    # (Checked on integer rows / columns, the compiled check; a grid that is not integer
    # valued, or beyond the tile, is refused by tile_mesh whatever the edges.)
    rc = np.asarray(grid_rc)
    known = listed is not None and is_edge_indices(listed, rc if rc.dtype.kind in "iu" else rc.astype(np.int64), T)
    mesh = tile_mesh(world, key, grid_rc, height_m, faces, skirt_depth_m, tuple(listed) if known else None)
    if listed is not None and not known:
        given = np.unique(np.concatenate([np.asarray(e, np.int64).ravel() for e in listed]))
        if not np.array_equal(given, mesh.skirt_src):
            raise ValueError(f"edges must list the {len(mesh.skirt_src)} vertices on the tile border, "
                             f"got {len(given)} others")
    n = mesh.n
    src = mesh.skirt_src
    h = mesh.height_m
    all_h = np.concatenate([h, h[src]])
    sides = {}
    for side in SIDES:
        e = mesh.edge(side).astype(np.int64)
        if len(e) >= 2:
            sides[side] = (e, n + np.searchsorted(src, e), mesh.inward_normals[e].copy())
    all_rc = np.concatenate([mesh.grid_rc, mesh.grid_rc[src]]).astype(np.float64)
    r0, c0 = key.sample_origin()
    tables = geo.lattice_tables(key.level, r0, c0, 1.0, 0, T, 0, T)
    from runtime.tin.kernels import lattice_up  # numba loads here, on first use

    up = lattice_up(*tables, all_rc[:, 0].astype(np.int64), all_rc[:, 1].astype(np.int64), geo.is_earth)
    return Surface(
        key=key, center_m=mesh.center_m, vertices=mesh.vertices_m, normals=mesh.normals, uv=mesh.uv,
        faces=mesh.all_faces.astype(np.uint32), min_height_m=float(h.min()) - float(skirt_depth_m),
        max_height_m=float(h.max()), skirt_start=n, height_m=all_h.astype(np.float32),
        up=up, grid_rc=all_rc,
        edges=sides,
    )


def stitch_edge_normals(world: World | str, a: Surface, b: Surface) -> tuple[Surface, Surface] | None:
    """Exact shared-edge normals for two same-level neighbours: each edge vertex gets the
    joined normal (``runtime.tin.placement.joined_normals`` of both tiles'
    ``inward_normals``, the rule static exports use), so the two tiles shade their common edge
    alike. Corners keep theirs. Returns the updated (a, b), or None when they do not share
    an edge (different levels, not adjacent, vertices differ)."""
    if not a.edges or not b.edges:
        return None
    sides = facing_side(world, a.key, b.key)
    if sides is None or sides[0] not in a.edges or sides[1] not in b.edges:
        return None
    ea, sa, na = a.edges[sides[0]]
    eb, sb, nb = b.edges[sides[1]]
    if len(ea) != len(eb) or len(ea) < 3:
        return None
    axis = 0 if sides[0] in ("east", "west") else 1
    if not np.array_equal(a.grid_rc[ea, axis], b.grid_rc[eb, axis]):
        return None
    m = joined_normals(na, nb)[1:-1]
    out = []
    for surf, e, sk in ((a, ea, sa), (b, eb, sb)):
        normals = surf.normals.copy()
        normals[e[1:-1]] = m
        normals[sk[1:-1]] = m
        out.append(replace(surf, normals=normals))
    return out[0], out[1]


def tin_grid(grid_rc: np.ndarray, height_m: np.ndarray, faces: np.ndarray, t: int = T) -> np.ndarray:
    """A TIN's heights at every grid node: (t+1, t+1) float64 metres.

    grid_rc (n, 2) [row, col] integer-valued in [0, t]; height_m (n,) metres; faces (m, 3)
    int. Scanline rasterisation, vectorised over (triangle, row) pairs: each node takes the
    height of the plane of a triangle holding it, so the work is the nodes covered plus one
    span per triangle row, never a triangle's bounding box (a fan border's long thin
    triangles have bounding boxes the size of the tile). ValueError where a node is uncovered.
    """
    rc = np.asarray(grid_rc, np.float64)
    f = np.asarray(faces, np.int64)
    # Each triangle's vertices sorted by row: top (0), middle (1), bottom (2).
    f = np.take_along_axis(f, np.argsort(rc[f, 0], axis=1, kind="stable"), axis=1)
    tri, hv = rc[f], np.asarray(height_m, np.float64)[f]  # (m, 3, 2), (m, 3)
    v0, v1 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    det = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    keep = det != 0.0  # degenerate triangles cover no area
    tri, hv, v0, v1, det = tri[keep], hv[keep], v0[keep], v1[keep], det[keep]
    dh0, dh1 = hv[:, 1] - hv[:, 0], hv[:, 2] - hv[:, 0]
    g_row = (dh0 * v1[:, 1] - dh1 * v0[:, 1]) / det  # the triangle's plane: metres per row
    g_col = (v0[:, 0] * dh1 - v1[:, 0] * dh0) / det  # metres per column
    h00 = hv[:, 0] - g_row * tri[:, 0, 0] - g_col * tri[:, 0, 1]  # the plane at (row 0, col 0)
    (ar, ac), (br, bc), (cr, cc) = tri[:, 0].T, tri[:, 1].T, tri[:, 2].T
    with np.errstate(divide="ignore", invalid="ignore"):  # cr > ar: a triangle with area spans rows
        s_ac = (cc - ac) / (cr - ar)
        s_ab = np.where(br > ar, (bc - ac) / (br - ar), 0.0)
        s_bc = np.where(cr > br, (cc - bc) / (cr - br), 0.0)
    r_lo = np.ceil(ar - 1e-9).astype(np.int64)
    n_rows = np.maximum(np.floor(cr + 1e-9).astype(np.int64) - r_lo + 1, 0)
    tid = np.repeat(np.arange(len(tri)), n_rows)
    row = r_lo[tid] + np.arange(int(n_rows.sum())) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    rowf = row.astype(np.float64)
    long_c = ac[tid] + (rowf - ar[tid]) * s_ac[tid]  # the edge top -> bottom
    upper = rowf <= br[tid]  # the other side: top -> middle, then middle -> bottom
    short_c = np.where(upper, np.where(br[tid] > ar[tid], ac[tid] + (rowf - ar[tid]) * s_ab[tid], bc[tid]),
                       bc[tid] + (rowf - br[tid]) * s_bc[tid])
    c0 = np.ceil(np.minimum(long_c, short_c) - 1e-9).astype(np.int64)
    n_cols = np.maximum(np.floor(np.maximum(long_c, short_c) + 1e-9).astype(np.int64) - c0 + 1, 0)
    base = h00[tid] + g_row[tid] * rowf  # the plane along this row at col 0
    pair = np.repeat(np.arange(len(row)), n_cols)
    col = c0[pair] + np.arange(int(n_cols.sum())) - np.repeat(np.cumsum(n_cols) - n_cols, n_cols)
    r = row[pair]
    h = base[pair] + g_col[tid[pair]] * col
    ok = (r >= 0) & (r <= t) & (col >= 0) & (col <= t)
    out = np.full((t + 1, t + 1), np.nan)
    out[r[ok], col[ok]] = h[ok]
    if np.isnan(out).any():
        raise ValueError(f"the TIN leaves {int(np.isnan(out).sum())} grid nodes uncovered; expected it to "
                         f"cover [0, {t}]^2")
    return out


def tin_to_grid(grid_rc: np.ndarray, height_m: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Rasterise a TIN covering [0, T]^2 onto its sample grid: (T+1, T+1) float32 metres
    (``tin_window`` over the whole tile: ``tin_grid``'s planes, each node filled once)."""
    return tin_window(grid_rc, height_m, faces).astype(np.float32)


def morph_window(key: TileKey) -> tuple[tuple[int, int], tuple[int, int]]:
    """The parent's sample rows and columns (inclusive (first, last) each) that ``with_morph``
    reads for child ``key``: its quarter of the parent plus the one row and column beyond
    the parent's middle that the half-sample normals reach, (T/2 + 2)^2 of the (T+1)^2 nodes."""
    if key.level == 0:
        raise ValueError(f"tile {key} is a root: it has no parent to morph toward")
    h = T // 2
    rows = (h - 1, T) if key.y & 1 else (0, h + 1)
    cols = (h - 1, T) if key.x & 1 else (0, h + 1)
    return rows, cols


def morph_grid(grid_rc: np.ndarray, height_m: np.ndarray, faces: np.ndarray, child: TileKey) -> np.ndarray:
    """The parent's TIN (grid_rc, height_m, faces) rasterised on ``morph_window(child)`` only:
    (T/2 + 2, T/2 + 2) float32 metres, what ``with_morph`` needs for that child, a quarter
    of ``tin_to_grid``'s work and the same values."""
    rows, cols = morph_window(child)
    return tin_window(grid_rc, height_m, faces, rows, cols).astype(np.float32)


def _half_grid(grid: np.ndarray) -> np.ndarray:
    """``runtime.grids.bilinear`` of an (H, W) grid at every half node: (2H - 1, 2W - 1)
    float64, [2i, 2j] = grid[i, j], the same operations so the same bits."""
    g = np.asarray(grid, np.float64)
    out = np.empty((2 * g.shape[0] - 1, 2 * g.shape[1] - 1))
    out[::2, ::2] = g
    across = g[:, :-1] * 0.5 + g[:, 1:] * 0.5  # half a column over: (top row's, then the rows')
    out[::2, 1::2] = across
    out[1::2, ::2] = g[:-1] * 0.5 + g[1:] * 0.5
    out[1::2, 1::2] = across[:-1] * 0.5 + across[1:] * 0.5
    return out


def with_morph(world: World | str, surface: Surface, parent_grid: np.ndarray | None,
               parent: Surface | None = None, kept: tuple[np.ndarray, np.ndarray] | None = None) -> Surface:
    """Add morph targets from the parent tile's surface rasterised by ``tin_to_grid``
    ((T+1, T+1) metres) or by ``morph_grid`` for this child ((T/2 + 2, T/2 + 2) metres, the
    same values). The child's sample (r, c) lies at the parent's
    ((r + T*(y&1)) / 2, (c + T*(x&1)) / 2); heights there are bilinear on the parent grid,
    normals come from central differences of that surface (half a parent sample apart).
    Every position read is a half sample: the grid is interpolated once at all of them
    and the earth's trigonometry done per lattice row and column (same bits as per point).

    kept: (morph_dh_m, morph_normals) of an earlier call for this surface toward the same
    parent TIN with edges (the parent since restitched: only its edge normals changed);
    then ``parent_grid`` is not read and only the vertices on the parent's border get new
    normals, the same bits as a full call."""
    key = surface.key
    if key.level == 0:
        raise ValueError(f"tile {key} is a root: it has no parent to morph toward")
    rc = surface.grid_rc
    pr = (rc[:, 0] + T * (key.y & 1)) / 2.0
    pc = (rc[:, 1] + T * (key.x & 1)) / 2.0
    if kept is not None:
        if parent is None or not parent.edges:
            raise ValueError("kept morph targets need the parent's surface with its edges")
        nrm = kept[1].copy()
        _parent_border_normals(nrm, pr, pc, parent)
        return replace(surface, morph_dh_m=kept[0], morph_normals=nrm)
    (wr, _), (wc, _) = morph_window(key)
    if np.shape(parent_grid) == (T + 1, T + 1):
        wr = wc = 0  # the whole parent
    elif np.shape(parent_grid) != (T // 2 + 2, T // 2 + 2):
        raise ValueError(f"parent_grid must be ({T + 1}, {T + 1}) or this child's morph_grid "
                         f"({T // 2 + 2}, {T // 2 + 2}), got {np.shape(parent_grid)}")
    geo = geometry_for(world)
    if not (np.array_equal(rc, np.round(rc))):
        raise ValueError(f"the surface's grid_rc must be integer sample positions, got fractional ones for {key}")
    half = _half_grid(parent_grid)  # bilinear at every half sample: lookups below
    ph = half[np.rint(2.0 * (pr - wr)).astype(np.int64), np.rint(2.0 * (pc - wc)).astype(np.int64)]
    n = surface.skirt_start
    dh = (ph - surface.height_m.astype(np.float64)).astype(np.float32)
    # Parent-surface normals by central differences in the parent's global sample grid.
    pk = key.parent()
    r0, c0 = pk.sample_origin()
    e = 0.5
    rr = np.clip(pr, e, T - e)
    cc = np.clip(pc, e, T - e)
    ki, kj = np.rint(2.0 * rr).astype(np.int64), np.rint(2.0 * cc).astype(np.int64)  # half samples
    # The surface one half sample west / east and north / south of each vertex, crossed
    # (rows grow south, cols east: south x east = up), compiled (kernels.morph_normals).
    tables = geo.lattice_tables(pk.level, r0, c0, 0.5, int(ki.min()) - 1, int(ki.max()) + 1, int(kj.min()) - 1,
                                int(kj.max()) + 1)
    from runtime.tin.kernels import morph_normals

    nrm = morph_normals(half, 2 * wr, 2 * wc, *tables, ki, kj, geo.is_earth)
    if float((nrm[:n].astype(np.float64) * surface.up[:n]).sum()) < 0:
        nrm = -nrm
    nrm = nrm.astype(np.float32)
    if parent is not None and parent.edges:
        _parent_border_normals(nrm, pr, pc, parent)
    else:  # without the parent's surface: own (consistent) edge normals
        border = (rc[:, 0] <= 0) | (rc[:, 0] >= T) | (rc[:, 1] <= 0) | (rc[:, 1] >= T)
        nrm[border] = surface.normals[border]
    return replace(surface, morph_dh_m=dh, morph_normals=nrm)


_PARENT_SIDE = {"west": (1, 0.0), "east": (1, T), "north": (0, 0.0), "south": (0, T)}
"""side -> (0: rows, 1: cols; the coordinate that is fixed on it, its value)."""


def _parent_border_normals(nrm: np.ndarray, pr: np.ndarray, pc: np.ndarray, parent: Surface) -> None:
    """On the parent's own border the morph target is the parent's edge normal (interpolated
    along the edge): a fully morphed child then shades its border exactly as the parent,
    hence as the parent's same-level neighbour, the coarser tile it meets at a level
    change. Borders inside the parent keep the parent grid's central differences, which
    both children there share. nrm: (n, 3) float32, written in place; pr, pc: (n,) the
    child's vertices in the parent's sample grid."""
    # The vertices near any of the parent's sides (a superset of each side's test below,
    # in index order), found in one pass instead of one per side.
    cand = np.flatnonzero((pr < 1e-9) | (pr > T - 1e-9) | (pc < 1e-9) | (pc > T - 1e-9))
    for side, (pe, _, _) in parent.edges.items():
        axis = 0 if side in ("west", "east") else 1  # coordinate along the edge
        fixed = _PARENT_SIDE[side]
        p_rc = pr if fixed[0] == 0 else pc
        on = cand[np.abs(p_rc[cand] - fixed[1]) < 1e-9]
        if not len(on):
            continue
        along_p = parent.grid_rc[pe, axis]
        along_c = (pr if axis == 0 else pc)[on]
        pn = parent.normals[pe].astype(np.float64)
        v = np.stack([np.interp(along_c, along_p, pn[:, i]) for i in range(3)], 1)
        nrm[on] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
