"""Faces of a TIN from its vertex set: RTIN leaves, dropped diamonds' drawings and border
fans, in a canonical order and numbering (what the wire codec rebuilds bit for bit)."""

from __future__ import annotations

import numpy as np

from runtime.tin.diamonds import _DRAWING_VALID, _DRAWINGS, dropped_diamonds
from runtime.tin.hierarchy import _border_edge_lengths, _border_lut, hierarchy, rtin_steps


def rtin_faces(present: np.ndarray, t: int) -> np.ndarray:
    """Leaf triangles of the RTIN whose vertex set is ``present`` ((t+1)^2 + 1,) bool,
    the last entry False (a sentinel for ids of -1). A triangle exists when its apex
    (its parent's midpoint) is present and is a leaf when its own midpoint is not.
    Returns (m, 3) int32 grid ids, counter-clockwise, in hierarchy order."""
    out = []
    for st in rtin_steps(t):
        leaf = ~present[st.mid]
        out.append(st.t1[leaf & present[st.a1]])
        out.append(st.t2[leaf & present[st.a2]])
    return np.concatenate(out)


def fan_out(face_ids: np.ndarray, t: int) -> np.ndarray:
    """Split every face with an edge of length > 1 on the tile border into a fan from its
    opposite vertex through each border sample of that edge. (m, 3) grid ids -> (m', 3):
    the untouched faces in order, then the fans face by face; windings are kept."""
    n1 = t + 1
    # Only faces with two vertices on the border can have a border edge.
    maybe = np.flatnonzero(_border_lut(t)[face_ids].sum(axis=1) >= 2)
    length = _border_edge_lengths(face_ids[maybe], t)
    long = length > 1
    has_sub = long.any(axis=1)
    k = np.argmax(long, axis=1)[has_sub]  # the (first) border edge of each fan face
    has = np.zeros(len(face_ids), dtype=bool)
    has[maybe[has_sub]] = True
    f = face_ids[has]
    rows = np.arange(len(f))
    u, v, w = f[rows, k], f[rows, (k + 1) % 3], f[rows, (k + 2) % 3]
    steps = length[has_sub][rows, k]
    fid = np.repeat(np.arange(len(f)), steps)
    j = np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps)
    ur, uc, vr, vc = u // n1, u % n1, v // n1, v % n1
    dr = np.sign(vr - ur)[fid]
    dc = np.sign(vc - uc)[fid]
    s0 = (ur[fid] + j * dr) * n1 + uc[fid] + j * dc
    s1 = s0 + dr * n1 + dc
    fans = np.stack([s0, s1, w[fid]], axis=1).astype(face_ids.dtype)
    return np.concatenate([face_ids[~has], fans])


def _extend(mask: np.ndarray, last: bool = False) -> np.ndarray:
    """((t+1)^2 + 2,) bool: ``mask`` ((t+1)^2 + 1,) with one more entry, ``last``."""
    out = np.empty(len(mask) + 1, dtype=bool)
    out[:-1] = mask
    out[-1] = last
    return out


def tin_faces(
    present: np.ndarray,
    t: int,
    border: str = "fan",
    flipped: np.ndarray | None = None,
    dropped: np.ndarray | None = None,
) -> np.ndarray:
    """Faces (m, 3) grid ids of the tile mesh with RTIN vertex set ``present``
    (((t+1)^2 + 1,) bool, sentinel last) and the flip bits ``flipped`` (same shape; None:
    a plain RTIN). ``dropped``: the dropped diamond centres when known (``drop_diamonds``),
    else derived (``dropped_diamonds``).

    One vectorised pass over the vertices: every child of a vertex that is a leaf, less
    the triangles of dropped diamonds, which are drawn as ``HALF_CASES``. The order is
    canonical: leaves by apex id and child slot, then the outer children of dropped
    diamonds' edge midpoints, the dropped diamonds' triangles, and (fan border) the fans."""
    from runtime.tin.facekernels import drawn_diamonds, dropped_outer, fan_faces, leaf_faces  # numba: first use

    hier = hierarchy(t)
    if flipped is not None and dropped is None:
        dropped = dropped_diamonds(present, flipped, t)
    # a child is drawn when its kid is neither a vertex nor a dropped diamond's centre
    blocked = _extend(present if dropped is None else present | dropped, True)
    table = hier.child_kid_fan if border == "fan" else hier.child_kid
    apexes = present
    extra = []
    if dropped is not None and dropped[:-1].any():
        # An edge midpoint of a dropped diamond keeps only its two children outside it
        # (the dropped diamond's drawing covers the other two): those apexes are taken
        # out of the one-pass walk and their outer children added after it.
        d = np.flatnonzero(dropped[:-1])
        apexes = present.copy()
        extra = [dropped_outer(d, present, apexes, blocked, table, hier.diamond_kid, hier.kid_other, hier.child_tri),
                 drawn_diamonds(d, present, flipped, hier.diamond_ring, _DRAWINGS, _DRAWING_VALID)]
    # Compiled (the decoder runs this for every tile): the same rows as the numpy forms
    # (tests/runtime/test_tin_faces_kernels.py: the drawn children and the dropped diamonds'
    # outer children by flatnonzero / take, ``diamonds._diamond_faces``, ``fan_out`` of the
    # drawn border triangles), in the same order.
    out = [leaf_faces(np.flatnonzero(apexes[:-1]), blocked, table, hier.child_tri)] + extra
    if border == "fan":
        out.append(fan_faces(present, blocked, hier.fan_apex, hier.fan_kid, hier.fan_tri, t))
    return np.concatenate(out)


def fan_face_count(vertex_count: int, t: int) -> int:
    """Faces of a ``fan``-border tile mesh (``tin_faces(..., "fan")``) with ``vertex_count``
    vertices, without building them: the mesh is a conforming triangulation of the tile
    square using every vertex, with all 4t border samples on its outline, so Euler's
    formula (V - E + F = 1 and 3F = 2E - B) gives F = 2V - B - 2 with B = 4t."""
    return 2 * int(vertex_count) - 4 * t - 2


def mesh_vertices(present: np.ndarray, t: int, border: str = "fan") -> np.ndarray:
    """((t+1)^2,) bool: the tile mesh's vertices for RTIN vertex set ``present``
    (with the fan border, also every border sample)."""
    used = present[:-1].copy()
    if border == "fan":
        used |= _border_lut(t).astype(bool)
    return used


def number_vertices(
    face_ids: np.ndarray, n1: int, used: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical indexing of a TIN on an n1 x n1 grid: faces in the given order, vertices
    in row-major grid order. face_ids: (m, 3) int grid ids (row * n1 + col); used: the
    (n1 * n1,) bool vertex set when already known. Returns grid_rc (n, 2) int32 and
    faces (m, 3) int32."""
    flat = face_ids.ravel()
    if used is None:
        used = np.zeros(n1 * n1, dtype=bool)
        used[flat] = True
    ids = np.flatnonzero(used)
    if flat.dtype == np.int32 and flat.flags.c_contiguous and (not len(flat) or 0 <= flat.min() <= flat.max()
                                                                < n1 * n1):
        from runtime.tin.facekernels import number_faces  # numba loads here, on first use

        return number_faces(ids, flat, n1, n1 * n1)  # the same arrays, one compiled pass
    lut = np.zeros(n1 * n1, dtype=np.int32)
    lut[ids] = np.arange(len(ids), dtype=np.int32)
    grid_rc = np.stack([ids // n1, ids % n1], axis=1).astype(np.int32)
    return grid_rc, lut[flat].reshape(-1, 3)


def first_use_order(faces: np.ndarray, n: int) -> np.ndarray:
    """Permutation (n,) int64 listing vertices by first appearance in ``faces`` (what
    high-water-mark index coding needs): new index i is old vertex order[i]."""
    f = np.asarray(faces).reshape(-1)
    first = np.full(n, len(f), dtype=np.int64)
    np.minimum.at(first, f, np.arange(len(f)))
    if first.max(initial=0) >= len(f):
        raise ValueError("every vertex must be used by at least one face")
    return np.argsort(first, kind="stable")
