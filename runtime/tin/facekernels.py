"""Compiled integer loops of the decoder's faces (``runtime.tin.faces``: ``tin_faces``,
``number_vertices``; the client decodes every tile through them, the simplifier uses them
too). Each gives the rows of the numpy form it replaced in the same order
(tests/runtime/test_tin_faces_kernels.py). ``warm()`` compiles or loads them for the
callers' dtypes (``runtime.tin.kernels.warm`` calls it)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def leaf_faces(ids: np.ndarray, blocked: np.ndarray, table: np.ndarray, child_tri: np.ndarray) -> np.ndarray:
    """The drawn children of the apexes ``ids`` (ascending grid ids), slot order within:
    (m, 3) int32 rows of ``child_tri`` ((4 N, 3)) for apex a and slot s where
    ``blocked[table[a, s]]`` is False; ``tin_faces``'s flatnonzero / take passes in one."""
    out = np.empty((4 * len(ids), 3), np.int32)
    i = 0
    for a in ids:
        for s in range(4):
            if not blocked[table[a, s]]:
                row = 4 * a + s
                out[i, 0], out[i, 1], out[i, 2] = child_tri[row, 0], child_tri[row, 1], child_tri[row, 2]
                i += 1
    return out[:i]


@numba.njit(cache=True, nogil=True)
def fan_faces(present: np.ndarray, blocked: np.ndarray, fan_apex: np.ndarray, fan_kid: np.ndarray,
              fan_tri: np.ndarray, t: int) -> np.ndarray:
    """``faces.fan_out`` of the drawn border triangles (``fan_tri`` rows i with
    ``present[fan_apex[i]]`` and not ``blocked[fan_kid[i]]``): (m, 3) int32, the faces
    without a border edge longer than one sample in order, then each long edge's fan
    (from its first such edge, vertex k -> k + 1, through every border sample of it)."""
    n1 = t + 1
    k_of = np.full(len(fan_tri), -1, np.int64)  # -1: not drawn; 3: drawn, no long border edge
    length = np.zeros(len(fan_tri), np.int64)
    kept = 0
    extra = 0
    for i in range(len(fan_tri)):
        if not present[fan_apex[i]] or blocked[fan_kid[i]]:
            continue
        k_of[i] = 3
        for k in range(3):
            u, v = fan_tri[i, k], fan_tri[i, (k + 1) % 3]
            ur, uc, vr, vc = u // n1, u % n1, v // n1, v % n1
            ln = 0
            if ur == vr and (ur == 0 or ur == t):
                ln = abs(vc - uc)
            elif uc == vc and (uc == 0 or uc == t):
                ln = abs(vr - ur)
            if ln > 1:
                k_of[i], length[i] = k, ln
                break
        if k_of[i] == 3:
            kept += 1
        else:
            extra += length[i]
    out = np.empty((kept + extra, 3), np.int32)
    j = 0
    for i in range(len(fan_tri)):
        if k_of[i] == 3:
            out[j, 0], out[j, 1], out[j, 2] = fan_tri[i, 0], fan_tri[i, 1], fan_tri[i, 2]
            j += 1
    for i in range(len(fan_tri)):
        k = k_of[i]
        if k < 0 or k == 3:
            continue
        u, v, w = fan_tri[i, k], fan_tri[i, (k + 1) % 3], fan_tri[i, (k + 2) % 3]
        ur, uc, vr, vc = u // n1, u % n1, v // n1, v % n1
        dr = (vr > ur) - (vr < ur)
        dc = (vc > uc) - (vc < uc)
        for s in range(length[i]):
            s0 = (ur + s * dr) * n1 + uc + s * dc
            out[j, 0], out[j, 1], out[j, 2] = s0, s0 + dr * n1 + dc, w
            j += 1
    return out


@numba.njit(cache=True, nogil=True)
def drawn_diamonds(ids: np.ndarray, present: np.ndarray, flipped: np.ndarray, ring: np.ndarray,
                   drawings: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``diamonds._diamond_faces``: per dropped diamond (``ids``, ascending grid ids) the
    valid rows of its drawing (``drawings[code]``, code = its present edge midpoints (bits
    1, 2, 4, 8) + 16 if flipped) over its ring of 8 ids: (m, 3) int32."""
    out = np.empty((valid.shape[1] * len(ids), 3), np.int32)
    i = 0
    for d in ids:
        code = 16 if flipped[d] else 0
        for q in range(4):
            if present[ring[d, 4 + q]]:
                code += 1 << q
        for s in range(valid.shape[1]):
            if valid[code, s]:
                for c in range(3):
                    out[i, c] = ring[d, drawings[code, s, c]]
                i += 1
    return out[:i]

@numba.njit(cache=True, nogil=True)
def number_faces(ids: np.ndarray, flat: np.ndarray, n1: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``faces.number_vertices``' canonical numbering: vertices ``ids`` (ascending grid ids
    of an n1 x n1 grid, ``size`` = n1 * n1) numbered in that order; returns grid_rc (n, 2)
    int32 [row, col] and the faces ``flat`` (3 m,) grid ids as vertex numbers (m, 3) int32."""
    lut = np.zeros(size, np.int32)
    rc = np.empty((len(ids), 2), np.int32)
    for i in range(len(ids)):
        lut[ids[i]] = i
        rc[i, 0], rc[i, 1] = ids[i] // n1, ids[i] % n1
    out = np.empty((len(flat) // 3, 3), np.int32)
    for j in range(len(flat) // 3):
        out[j, 0], out[j, 1], out[j, 2] = lut[flat[3 * j]], lut[flat[3 * j + 1]], lut[flat[3 * j + 2]]
    return rc, out


@numba.njit(cache=True, nogil=True)
def dropped_outer(ids: np.ndarray, present: np.ndarray, apexes: np.ndarray, blocked: np.ndarray, table: np.ndarray,
                  diamond_kid: np.ndarray, kid_other: np.ndarray, child_tri: np.ndarray) -> np.ndarray:
    """The dropped diamonds' (``ids``, ascending) edge midpoints that are vertices keep only
    their two children outside the diamond: each such midpoint is cleared in ``apexes``
    (written in place) and its outer children (``kid_other``, not ``blocked``) returned,
    (m, 3) int32 rows of ``child_tri`` in diamond, midpoint, child order (``tin_faces``)."""
    flat = table.ravel()
    out = np.empty((8 * len(ids), 3), np.int32)
    i = 0
    for d in ids:
        for q in range(4):
            kid = diamond_kid[d, q]
            if not present[kid]:
                continue
            apexes[kid] = False
            for s in range(2):
                o = kid_other[d, q, s]
                if not blocked[flat[o]]:
                    out[i, 0], out[i, 1], out[i, 2] = child_tri[o, 0], child_tri[o, 1], child_tri[o, 2]
                    i += 1
    return out[:i]


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def warm() -> None:
    """Compile or load every loop for the decoder's dtypes: the hierarchy's tables are
    read-only (``runtime.tin.hierarchy``; numba types them apart), the drawing templates
    and the per-tile arrays writable."""
    i32 = lambda *shape: _frozen(np.zeros(shape, np.int32))  # noqa: E731
    present, blocked, none = np.zeros(10, np.bool_), np.ones(11, np.bool_), np.zeros(0, np.int64)
    table, tri = i32(3, 4), i32(12, 3)
    leaf_faces(none, blocked, table, tri)
    fan_faces(present, blocked, _frozen(np.zeros(1, np.int64)), i32(1), i32(1, 3), 2)
    drawn_diamonds(none, present, present, i32(3, 8), np.zeros((32, 6, 3), np.int64), np.zeros((32, 6), np.bool_))
    number_faces(none, np.zeros(3, np.int32), 2, 4)  # the decoder's int32 faces
    dropped_outer(none, present, present.copy(), blocked, table, i32(3, 4), _frozen(np.zeros((3, 4, 2), np.int64)),
                  tri)
