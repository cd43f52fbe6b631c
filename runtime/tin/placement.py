"""Placing a TIN in the world: the one path from a simplified or decoded TIN to the mesh
that the viewer draws and every export writes (``tile_mesh``; ``build_tile_mesh`` from
heights).

- Positions: float32 metres relative to the tile centre (float64), so no float64 is
  needed on the GPU or in a glTF buffer (DESIGN.md section 3, precision).
- Skirts: one skirt vertex below each border vertex, ``skirt_depth_m`` down, two
  outward-facing triangles per border segment (Cesium's crack filler).
- UVs: ``(col / T, row / T)``: u east, v south, i.e. image rows top-down (glTF's
  convention, origin at the top-left texel). trimesh speaks OpenGL's (v up) and flips
  back on glTF export, so ``TileMesh.to_trimesh`` converts at that boundary.
- Normals (docs/DECISIONS.md, "shared-edge normals"): inside the tile, area-weighted
  normals of the tile's own faces. A vertex on the border sees only its own side, so two
  neighbours would shade their common edge differently (lines along tile borders). A
  tile placed alone therefore gives its border vertices ``shared_edge_normals``: the
  slope along the edge from the edge's own vertices (which both tiles hold bit for bit)
  and none across it; corners get the local up. When the neighbour is known (the viewer
  when both are loaded; static exports, which see every tile; the live HTTP server),
  ``stitch`` replaces an edge's normals with the joined ones: the normalised sum of both
  tiles' ``inward_normals``, so that Gouraud shading continues across the edge without a
  kink (a border is a mesh edge along its whole length: with the sum of each side's
  face normals it showed as a line, 1.5-2x the in-tile line contrast at level 16).
  Computed from values both sides exchange, so they agree exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from runtime.geometry import WorldGeometry, geometry_for
from runtime.tiles import T, TileKey, World, neighbour, skirt_depth_for
from runtime.tin.curvature import curved_positions
from runtime.tin.simplify import simplify_grid

SIDES = ("west", "south", "east", "north")
"""Tile edges in the order of ``TileMesh.edges``."""

_MIDDLE = np.array([T // 2], np.int64)  # the centre sample's lattice row and column
_ACROSS = {"east": ("west", 1, 0), "west": ("east", -1, 0), "south": ("north", 0, 1), "north": ("south", 0, -1)}
"""side -> (the neighbour's side, dx, dy of the neighbour)."""


@dataclass(frozen=True, eq=False)
class TileMesh:
    """A placed tile mesh. The first n vertices are the TIN, the last k the skirt.

    key: the tile. grid_rc: (n, 2) int32 [row, col] of the TIN vertices in the tile grid.
    height_m: (n,) float64 their heights (m).
    faces: (m, 3) int32 surface triangles, CCW seen from above.
    skirt_faces: (s, 3) int32 skirt triangles over all n + k vertices, facing outwards.
    skirt_depth_m: how far the skirt hangs below the edge (m).
    skirt_src: (k,) int32 the TIN vertex each skirt vertex hangs from.
    vertices_m: (n + k, 3) float32 world positions relative to center_m (m).
    center_m: (3,) float64 world position of the tile centre (m).
    normals: (n + k, 3) float32 unit vertex normals in world axes (a skirt vertex copies
      its edge vertex's); border vertices follow the shared-edge rule (module docstring).
    own_normals: (n, 3) float32 unit normals from the tile's own faces only.
    inward_normals: (n, 3) float32 on the border (corners aside) this tile's half of the
      joined edge normal, what ``stitch`` adds up (``inward_normals``); zero elsewhere.
    uv: (n + k, 2) float32, u east, v south (image rows top-down).
    west, south, east, north: int32 TIN vertex indices along each edge, ordered by
      increasing row (west, east) or increasing column (north, south).
    """

    key: TileKey
    grid_rc: np.ndarray
    height_m: np.ndarray
    faces: np.ndarray
    skirt_faces: np.ndarray
    skirt_depth_m: float
    skirt_src: np.ndarray
    vertices_m: np.ndarray
    center_m: np.ndarray
    normals: np.ndarray
    own_normals: np.ndarray
    inward_normals: np.ndarray
    uv: np.ndarray
    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray

    @property
    def n(self) -> int:
        """Number of TIN (non-skirt) vertices."""
        return len(self.grid_rc)

    @property
    def all_faces(self) -> np.ndarray:
        """(m + s, 3) int32 surface then skirt faces."""
        return np.concatenate([self.faces, self.skirt_faces])

    def edge(self, side: str) -> np.ndarray:
        """(k,) int32 TIN vertex indices of one side (``SIDES``), ordered along it."""
        return getattr(self, side)

    def to_trimesh(self, image=None, material=None):
        """A ``trimesh.Trimesh`` in world metres relative to ``center_m`` (float64 vertices),
        with vertex normals and UVs, textured with ``image`` (a PIL image) or ``material``."""
        import trimesh

        uv = self.uv.astype(np.float64)
        uv[:, 1] = 1.0 - uv[:, 1]  # trimesh holds OpenGL UVs (v up) and flips them for glTF
        if material is not None:
            visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
        else:
            visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
        return trimesh.Trimesh(vertices=self.vertices_m.astype(np.float64), faces=self.all_faces,
                               vertex_normals=self.normals.astype(np.float64), visual=visual, process=False)


def edge_indices(grid_rc: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertex indices on the west, south, east and north edges of a tile of size ``t``,
    ordered by increasing row (west, east) or column (south, north). int32 arrays.
    Integer grids in one compiled pass (``runtime.tin.edgekernels``, the same lists)."""
    rc = np.asarray(grid_rc)
    if rc.dtype.kind in "iu" and rc.ndim == 2 and rc.shape[1] == 2:
        from runtime.tin.edgekernels import edge_lists  # numba loads here, on first use

        ok, *lists = edge_lists(np.ascontiguousarray(rc), int(t))
        if ok:
            return tuple(lists)
    r, c = rc[:, 0], rc[:, 1]

    def along(mask: np.ndarray, key: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return idx[np.argsort(key[idx], kind="stable")].astype(np.int32)

    return along(c == 0, r), along(r == t, c), along(c == t, r), along(r == 0, c)


def is_edge_indices(edges, grid_rc: np.ndarray, t: int) -> bool:
    """Whether ``edges`` (four int arrays: west, south, east, north) are exactly
    ``edge_indices(grid_rc, t)``: each lists every vertex on its side, in strictly
    increasing order along it (a TIN's vertices are distinct grid points), without sorting.
    Integer grids in compiled passes (``runtime.tin.edgekernels``, the same answer)."""
    if len(edges) != 4:
        return False
    rc = np.asarray(grid_rc)
    if rc.dtype.kind in "iu" and rc.ndim == 2 and rc.shape[1] == 2:
        from runtime.tin.edgekernels import is_edge_list  # numba loads here, on first use

        rc = np.ascontiguousarray(rc)
        for side, e in enumerate(edges):
            e = np.asarray(e)
            if e.ndim != 1 or e.dtype.kind not in "iu" or not is_edge_list(np.ascontiguousarray(e), rc, int(t), side):
                return False
        return True
    r, c = rc[:, 0], rc[:, 1]
    for e, fixed, along in ((edges[0], c == 0, r), (edges[1], r == t, c), (edges[2], c == t, r),
                            (edges[3], r == 0, c)):
        e = np.asarray(e)
        if e.ndim != 1 or e.dtype.kind not in "iu" or len(e) != int(fixed.sum()):
            return False
        if len(e) and (e.min() < 0 or e.max() >= len(grid_rc) or not fixed[e].all()
                       or not (np.diff(along[e]) > 0).all()):
            return False
    return True


def vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(n, 3) float32`` of a mesh (float64 positions):
    the sum of the cross products of each vertex's faces, normalised (compiled,
    ``runtime.tin.kernels``)."""
    from runtime.tin.kernels import face_normal_sums, unit_rows_f32  # numba loads here, on first use

    pos = np.ascontiguousarray(positions, np.float64)
    return unit_rows_f32(face_normal_sums(pos, _index_array(faces)))


def _index_array(faces: np.ndarray) -> np.ndarray:
    """``faces`` as a C-contiguous int32 (a decoded tile's, as they are) or int64 array for
    the compiled loops (both compiled; indices only, the same sums)."""
    f = np.asarray(faces)
    return f if f.dtype == np.int32 and f.flags.c_contiguous else np.ascontiguousarray(f, np.int64)


def shared_edge_normals(geo: WorldGeometry, level: int, grc: np.ndarray, height_m: np.ndarray) -> np.ndarray:
    """Normals of one edge's vertices (ordered along it) from the edge alone: the slope
    along the edge, none across it. Both tiles sharing the edge hold its vertices bit for
    bit and step across it in the same global direction (+1 row or column), so they get
    the same bits. grc: (k, 2) global [row, col]; height_m: (k,) -> (k, 3) float32."""
    return shared_edges_normals(geo, level, [grc], [height_m])[0]


def shared_edges_normals(geo: WorldGeometry, level: int, grcs: Sequence[np.ndarray],
                         heights_m: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``shared_edge_normals`` of several edges (each (k_i, 2) global [row, col] ordered
    along it, k_i >= 2, and (k_i,) heights) in one pass over all their vertices: a list of
    (k_i, 3) float32, the same bits as one call per edge."""
    sizes = [len(g) for g in grcs]
    grc = np.concatenate([np.asarray(g) for g in grcs])
    h = np.concatenate([np.asarray(x, np.float64) for x in heights_m])
    pos = geo.sample_to_world(level, grc[:, 0], grc[:, 1], h)
    tangent = np.empty_like(pos)
    step = np.zeros((len(grc), 2))  # across the edge: +1 row under an edge along the columns, else +1 column
    at = 0
    for g, k in zip(grcs, sizes, strict=True):
        seg = pos[at:at + k]
        tangent[at:at + k] = np.gradient(seg, axis=0) if k > 2 else np.repeat(seg[1:] - seg[:1], k, 0)
        step[at:at + k, 0 if np.ptp(g[:, 1]) >= np.ptp(g[:, 0]) else 1] = 1.0
        at += k
    across = geo.sample_to_world(level, grc[:, 0] + step[:, 0], grc[:, 1] + step[:, 1], h) - pos
    nrm = np.cross(tangent, across)
    length = np.linalg.norm(nrm, axis=1, keepdims=True)
    # The local up orients the normals (its sign only: the samples' own up, no ECEF inverse)
    # and stands in for them where an edge collapses (a pole: the positions' up, as always).
    up = geo.sample_up(level, grc[:, 0], grc[:, 1])
    collapsed = length[:, 0] <= 1e-12
    if collapsed.any():
        up[collapsed] = geo.up(pos[collapsed])
    nrm = np.where(length > 1e-12, nrm / np.maximum(length, 1e-300), up)
    nrm *= np.sign((nrm * up).sum(axis=1, keepdims=True) + 1e-30)
    return np.split(nrm.astype(np.float32), np.cumsum(sizes)[:-1])


def inward_normals(grid_rc: np.ndarray, faces: np.ndarray, own: np.ndarray, t: int = T) -> np.ndarray:
    """Each border vertex's half of the joined edge normal (``stitch``): (n, 3) float32,
    zero off the border and at the corners, not unit.

    Gouraud shading interpolates vertex normals linearly over each face, so a tile border,
    a mesh edge along its whole length, shows as a line wherever the shading's slope across
    it jumps. The jump vanishes when the border vertex's normal continues the line through
    the normals one sample inward on both sides: if the sample one step inward from border
    vertex p lies in face f with weights w, its normal is w_p n_p + (the rest), and the rest
    R = sum of w_v n_v over f's vertices off the border (own face normals) is this tile's
    half: n_p = normalised(R_a + R_b) puts n_p halfway between the two inward normals (for
    a fan, the two apexes' normals interpolated at the border). Where a face touching the
    inward sample has only border vertices (R ~ 0) or none is found, the Gouraud normal of
    the own normals there. grid_rc: (n, 2) [row, col]; faces: (m, 3); own: (n, 3).
    Face by face in face order, compiled (``kernels.inward_normals``)."""
    from runtime.tin.kernels import inward_normals as compiled  # numba loads on first use

    return compiled(np.ascontiguousarray(grid_rc, np.int32), _index_array(faces),
                    np.ascontiguousarray(own, np.float32), t)


def _skirt_faces(edges: tuple[np.ndarray, ...], skirt_of: np.ndarray) -> np.ndarray:
    """Two triangles per edge segment, wound so that they face away from the tile: (a -> b)
    runs counter-clockwise around the tile seen from above (north edge east -> west, west
    edge north -> south, south edge west -> east, east edge south -> north) and the quad
    (a, b, sb, sa) is wound clockwise seen from above, counter-clockwise from outside:
    triangles [a, sa, sb] and [a, sb, b]. (m, 3) int32, compiled
    (``runtime.tin.edgekernels.skirt_faces``)."""
    from runtime.tin.edgekernels import skirt_faces  # numba loads here, on first use

    return skirt_faces(*(np.ascontiguousarray(e, np.int32) for e in edges), np.ascontiguousarray(skirt_of, np.int32))


def tile_mesh(
    world: World | str,
    key: TileKey,
    grid_rc: np.ndarray,
    height_m: np.ndarray,
    faces: np.ndarray,
    skirt_depth_m: float,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> TileMesh:
    """Place, skirt and shade a simplified tile: the one placement path (server exports,
    static exports and the viewer's ``tin_surface``).

    grid_rc: (n, 2) [row, col] on the tile's (T+1)^2 grid (integer values, any dtype);
    height_m: (n,) metres; faces: (m, 3) CCW seen from above (a TIN wound the other way
    is turned over). Skirts hang ``skirt_depth_m`` below every border vertex. A decoded
    payload: ``tile_mesh(world, d.key, d.grid_rc, d.height_m, d.faces, depth)``.
    edges: ``edge_indices(grid_rc, T)`` when the caller has it (the decoder made it; see
    ``is_edge_indices``), else made here."""
    if not (np.isfinite(skirt_depth_m) and skirt_depth_m >= 0):
        raise ValueError(f"skirt_depth_m must be a finite number >= 0, got {skirt_depth_m!r}")
    rc = np.asarray(grid_rc)
    if (rc.ndim != 2 or rc.shape[1] != 2 or rc.min() < 0 or rc.max() > T
            or (rc.dtype.kind not in "iu" and not np.array_equal(rc, np.round(rc)))):
        raise ValueError(f"grid_rc must be (n, 2) integer [row, col] in [0, {T}], got shape {rc.shape}")
    from runtime.tin.kernels import edge_normals, lattice_points  # numba loads here, on first use

    geo = geometry_for(world)
    grid_rc = rc.astype(np.int32)
    heights = np.asarray(height_m, dtype=np.float64)
    if heights.shape != (len(grid_rc),):
        raise ValueError(f"height_m must be ({len(grid_rc)},) metres, got shape {heights.shape}")
    faces = np.asarray(faces, dtype=np.int32)
    r0, c0 = key.sample_origin()
    edges = edge_indices(grid_rc, T) if edges is None else tuple(np.asarray(e, np.int32) for e in edges)
    r, c = grid_rc[:, 0], grid_rc[:, 1]
    border = np.flatnonzero((r == 0) | (r == T) | (c == 0) | (c == T))  # the edges' union, sorted
    n, k = len(grid_rc), len(border)
    skirt_of = np.full(n, -1, dtype=np.int32)
    skirt_of[border] = n + np.arange(k, dtype=np.int32)
    rows = np.concatenate([grid_rc[:, 0], grid_rc[border, 0]]).astype(np.float64)
    cols = np.concatenate([grid_rc[:, 1], grid_rc[border, 1]]).astype(np.float64)
    z = np.concatenate([heights, heights[border] - float(skirt_depth_m)])
    # per lattice row / column of the tile (one beyond: the edge normals step across)
    tables = geo.lattice_tables(key.level, r0, c0, 1.0, 0, T + 1, 0, T + 1)
    world_m = lattice_points(*tables, rows.astype(np.int64), cols.astype(np.int64), z, geo.is_earth)
    # geo.tile_center(key) from the same tables (the same bits: lattice_to_world)
    center = lattice_points(*tables, _MIDDLE, _MIDDLE, np.zeros(1), geo.is_earth)[0]
    cand = np.concatenate([edges[0], edges[2]])  # the corners are the west and east edges' ends
    corners = np.unique(cand[(grid_rc[cand, 0] == 0) | (grid_rc[cand, 0] == T)])
    # The centre's up and the corners' in one call (row by row: the same bits as two).
    ups = geo.up(np.concatenate([center[None, :], world_m[corners]]))
    up_c = ups[0]
    own = vertex_normals(world_m[:n] - center, faces)
    if float((own.astype(np.float64) @ up_c).sum()) < 0:  # wound clockwise from above: turn over
        faces = np.ascontiguousarray(faces[:, ::-1])
        own = -own
    inward = inward_normals(grid_rc, faces, own)
    normals = own.copy()
    long = [e for e in edges if len(e) >= 2]
    if long:
        at = np.concatenate([e for e in long])
        # np.ptp(cols) >= np.ptp(rows) of each edge, which lies on one side (its fixed
        # coordinate's ptp is 0) ordered along it (the other's ptp is last - first).
        along_cols = np.array([s % 2 == 1 or int(grid_rc[e[-1], 0]) == int(grid_rc[e[0], 0])
                               for s, e in enumerate(edges) if len(e) >= 2])
        nrm, collapsed = edge_normals(*tables, grid_rc[at, 0].astype(np.int64), grid_rc[at, 1].astype(np.int64),
                                              heights[at], np.cumsum([0] + [len(e) for e in long]), along_cols,
                                              geo.is_earth)
        if collapsed:  # an edge on a pole: the positions' own up there (shared_edges_normals)
            nrm = np.concatenate(shared_edges_normals(geo, key.level, [grid_rc[e] + (r0, c0) for e in long],
                                                      [heights[e] for e in long]))
        normals[at] = nrm
    normals[corners] = ups[1:]  # a corner's four tiles agree on the local up
    return TileMesh(
        key=key,
        grid_rc=grid_rc,
        height_m=heights,
        faces=faces,
        skirt_faces=_skirt_faces(edges, skirt_of),
        skirt_depth_m=float(skirt_depth_m),
        skirt_src=border.astype(np.int32),
        vertices_m=(world_m - center).astype(np.float32),
        center_m=center,
        normals=np.concatenate([normals, normals[border]]),
        own_normals=own,
        inward_normals=inward,
        uv=np.stack([cols / T, rows / T], axis=1).astype(np.float32),
        west=edges[0],
        south=edges[1],
        east=edges[2],
        north=edges[3],
    )


def build_tile_mesh(
    world: World | str,
    key: TileKey,
    height_m: np.ndarray,
    max_error_m: float,
    skirt_depth_m: float | None = None,
    border: str = "fan",
) -> TileMesh:
    """Simplify and place a tile from its heights: ``simplify_grid`` then ``tile_mesh``.

    height_m: (T+1, T+1) float32 metres; max_error_m: error bound (m), on the earth
    including the chord sag (``runtime.tin.curvature``);
    skirt_depth_m: default ``runtime.tiles.skirt_depth_for(max_error_m)``."""
    h = np.asarray(height_m, dtype=np.float32)
    grid_rc, faces = simplify_grid(h, max_error_m, border, positions_m=curved_positions(world, key, h))
    depth = skirt_depth_for(max_error_m) if skirt_depth_m is None else skirt_depth_m
    return tile_mesh(world, key, grid_rc, h[grid_rc[:, 0], grid_rc[:, 1]], faces, depth)


# ---------------------------------------------------------------- neighbours


EdgeData = tuple[np.ndarray, np.ndarray]
"""One tile edge as a neighbour needs it: (along (k,) grid coordinate along the edge,
the tile's ``inward_normals`` there (k, 3) float32), ordered along the edge."""


def edge_data(mesh: TileMesh) -> dict[str, EdgeData]:
    """{side: EdgeData} of a mesh's four edges (what ``stitch`` needs from a neighbour;
    about 12 KB a tile, so exporters can keep many)."""
    out = {}
    for side in SIDES:
        e = mesh.edge(side)
        axis = 0 if side in ("west", "east") else 1
        out[side] = (mesh.grid_rc[e, axis].copy(), mesh.inward_normals[e].copy())
    return out


def facing_side(world: World | str, a: TileKey, b: TileKey) -> tuple[str, str] | None:
    """(side of a, side of b) of the edge two same-level tiles share, or None."""
    if a.level != b.level:
        return None
    w = World.parse(world) if not isinstance(world, World) else world
    for side, (other, dx, dy) in _ACROSS.items():
        if neighbour(w, a, dx, dy) == b:
            return side, other
    return None


def joined_normals(na: np.ndarray, nb: np.ndarray, passes: int = 0) -> np.ndarray:
    """The joined vertex normals on a shared edge: normalised na + nb (k, 3) float32 of
    both tiles' halves (``inward_normals``); symmetric bit for bit (addition commutes).

    ``passes``: then that many (1, 2, 1) / 4 smoothing passes along the edge (the end
    entries, the corners, held) and normalised again; both tiles run the same, so the
    edge still agrees bit for bit. For a coarse interior behind an every-sample border:
    the joined normal changes in one sample where an apex's fan ends, while one sample
    inward the shading changes over several (streaming.ecosystem.cesium_stitch)."""
    m = na.astype(np.float64) + nb.astype(np.float64)
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    if passes:
        for _ in range(passes):
            m[1:-1] = 0.25 * m[:-2] + 0.5 * m[1:-1] + 0.25 * m[2:]
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return m.astype(np.float32)


def stitch(mesh: TileMesh, neighbours: Mapping[str, EdgeData], passes: int = 0) -> TileMesh:
    """Give the edges shared with known neighbours the joined normals (both tiles'
    ``inward_normals`` summed and normalised: the shading continues across the edge;
    ``passes``: smoothing along the edge, see ``joined_normals``; both tiles must use the same).

    neighbours: {side of ``mesh``: the neighbour's ``EdgeData`` of the facing side}. An
    edge whose vertices differ from the neighbour's (another level or mesh) keeps the
    shared-edge rule. Corners keep the local up. Returns a new TileMesh."""
    normals = None
    for side, (along, nb) in neighbours.items():
        e = mesh.edge(side)
        axis = 0 if side in ("west", "east") else 1
        if len(e) != len(along) or len(e) < 3 or not np.array_equal(mesh.grid_rc[e, axis], along):
            continue
        if normals is None:
            normals = mesh.normals.copy()
        joined = joined_normals(mesh.inward_normals[e], nb, passes)[1:-1]
        inner = e[1:-1]
        normals[inner] = joined
        skirt_index = mesh.n + np.searchsorted(mesh.skirt_src, inner)
        normals[skirt_index] = joined
    return mesh if normals is None else replace(mesh, normals=normals)


def stitch_tiles(world: World | str, meshes: Mapping[TileKey, TileMesh]) -> dict[TileKey, TileMesh]:
    """``stitch`` every mesh with its same-level neighbours present in ``meshes`` (static
    exports: every tile is known at once, so every shared edge gets the joined normal)."""
    edges = {k: edge_data(m) for k, m in meshes.items()}
    out = {}
    for key, mesh in meshes.items():
        known = {side: edges[nk][opposite(side)] for side, nk in neighbour_keys(world, key).items() if nk in edges}
        out[key] = stitch(mesh, known)
    return out


def neighbour_keys(world: World | str, key: TileKey) -> dict[str, TileKey]:
    """{side: the same-level tile across that side} (sides without one left out)."""
    w = World.parse(world) if not isinstance(world, World) else world
    out = {}
    for side, (_, dx, dy) in _ACROSS.items():
        nk = neighbour(w, key, dx, dy)
        if nk is not None:
            out[side] = nk
    return out


def opposite(side: str) -> str:
    """The neighbour's side facing ``side``."""
    return _ACROSS[side][0]


__all__ = [
    "SIDES", "EdgeData", "TileMesh", "build_tile_mesh", "edge_data", "edge_indices",
    "facing_side", "inward_normals", "joined_normals", "neighbour_keys", "opposite", "shared_edge_normals",
    "shared_edges_normals", "stitch",
    "stitch_tiles", "tile_mesh", "vertex_normals",
]
