"""RTIN simplification, second half: dropped diamonds (greedy vertex removal that keeps
the RTIN's implied connectivity, so one flip bit per candidate still codes the mesh)."""

from __future__ import annotations

import functools

import numpy as np

import runtime.tin.meshkernels as meshkernels
from runtime import jit
from runtime.tin.hierarchy import HALF_CASES, hierarchy


def drop_diamonds(height_m: np.ndarray, present: np.ndarray, max_error_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy vertex removal that keeps the RTIN's implied connectivity.

    height_m: (T+1, T+1) metres, or (C, T+1, T+1) sample positions (``simplify_grid``'s
    ``positions_m``): then the error at a sample is the norm of its residual vector.

    A vertex m is dropped, together with every vertex strictly inside its diamond
    (``Hierarchy``), when the diamond drawn on either diagonal with fans to its edge
    midpoints that are vertices (``HALF_CASES``) stays within ``max_error_m`` over every
    sample inside it. The outline keeps its vertices (corners and edge midpoints; a
    diamond with a vertex at a quarter point of an edge is not a candidate), so the mesh
    stays conforming: each vertex removed saves two triangles. With no edge midpoint and
    nothing inside, this is the edge flip of a valence-4 vertex. Diamonds up to
    ``DROP_MAX_B`` samples across are tried.

    The centre lies on both diagonals, so every drawing interpolates it from that
    diagonal's ends: that one sample rejects most candidates at once and decides the
    smallest diamonds (the centre is their only inner sample); larger ones are measured
    through per-shape tables. Conflicts: larger diamonds first, coarse to fine (they
    remove whole subtrees), then the smallest fine to coarse (a centre would pin up to
    four edge midpoints, each worth a vertex); a dropped diamond pins its outline's
    vertices and covers its inside; of two sharing an edge midpoint the lower id is
    dropped (the midpoint keeps an apex, so the wire can still code it).

    Updates ``present`` in place. Returns ``dropped`` and ``flipped`` ((t+1)^2 + 1,)
    bool over grid ids (sentinel last): the diamonds drawn specially (``tin_faces``) and
    those drawn on the a1-a2 diagonal (the other one is the RTIN's own p-q)."""
    fields = np.asarray(height_m)
    fields = fields[None] if fields.ndim == 2 else fields
    t = fields.shape[1] - 1
    n1 = t + 1
    n = n1 * n1
    hier = hierarchy(t)
    dropped = np.zeros(n + 1, dtype=bool)
    flipped = np.zeros(n + 1, dtype=bool)
    if jit.ENABLED:  # the measuring half below, compiled (runtime.tin.meshkernels; same bits)
        ids, e_pq, e_aa, size = _measure_compiled(fields, present, hier, max_error_m)
    else:
        flats = [np.ascontiguousarray(f, dtype=np.float64).ravel() for f in fields]
        ids, e_pq, e_aa, size = _measure(flats, present, hier, max_error_m)
    ok_pq, ok_aa = e_pq <= max_error_m, e_aa <= max_error_m
    sel = np.flatnonzero(ok_pq | ok_aa)
    ids, size = ids[sel], size[sel]
    aa = (ok_aa & (~ok_pq | (e_aa < e_pq)))[sel]
    level = hier.diamond_level[ids]
    covered = np.zeros(n + 1, dtype=bool)
    pinned = np.zeros(n + 1, dtype=bool)
    live = np.zeros(n + 1, dtype=bool)
    if jit.ENABLED:  # the loop below, compiled (runtime.tin.meshkernels.resolve_drops; same sets)
        inter, inter_n = _packed_interiors(t)
        meshkernels.resolve_drops(ids, level, aa, present, np.asarray(hier.drop_order, np.int64), hier.diamond_kid,
                              hier.diamond_a1, hier.diamond_a2, hier.diamond_corner, hier.diamond_kind,
                              hier.diamond_base, inter, inter_n, dropped, flipped, covered)
    for lev in hier.drop_order if not jit.ENABLED else ():
        at = np.flatnonzero(level == lev)
        if not len(at):
            continue
        m = ids[at]
        free = np.flatnonzero(~(covered[m] | pinned[m]))
        at, m = at[free], m[free]
        kids = hier.diamond_kid.take(m, axis=0)
        kp = present[kids]
        with_kids = np.flatnonzero(kp.view(np.uint32).ravel() != 0)
        if len(with_kids):
            live[m] = True
            k2, m2 = kids[with_kids], m[with_kids, None]
            other = hier.diamond_a1[k2] + hier.diamond_a2[k2] - m2  # the midpoint's other apex
            shared = (kp[with_kids] & live[other] & (other < m2)).any(axis=1)
            live[m] = False
            if shared.any():
                keep = np.ones(len(m), dtype=bool)
                keep[with_kids[shared]] = False
                at, m, kids, kp = at[keep], m[keep], kids[keep], kp[keep]
        dropped[m] = True
        flipped[m[aa[at]]] = True
        pinned[kids[kp]] = True
        pinned[hier.diamond_corner.take(m, axis=0)] = True
        _mark_interiors(covered, m, hier)  # their insides, centres included

    present &= ~covered
    # a diamond left with no edge midpoint and drawn on p-q is a plain unsplit RTIN diamond
    d = np.flatnonzero(dropped[:-1] & ~flipped[:-1])
    plain = present[hier.diamond_kid.take(d, axis=0)].view(np.uint32).ravel() == 0
    dropped[d[plain]] = False
    return dropped, flipped


def _measure(flats: list, present: np.ndarray, hier, max_error_m: float) -> tuple[np.ndarray, ...]:
    """The candidates of ``drop_diamonds`` that pass its error filters: grid ids (k,) ascending,
    e_pq and e_aa (k,) float64 (inf for a drawing not allowed) and diamond sizes (k,)."""
    ids = np.flatnonzero(present[:-1] & hier.drop_ok[:-1])
    corner_h = [f[hier.diamond_corner.take(ids, axis=0)] for f in flats]  # C x (k, 4) counter-clockwise from p
    centre_h = [f[ids] for f in flats]
    e_pq = _norm([m - 0.5 * (c[:, 0] + c[:, 2]) for m, c in zip(centre_h, corner_h)])
    e_aa = _norm([m - 0.5 * (c[:, 1] + c[:, 3]) for m, c in zip(centre_h, corner_h)])
    sel = np.flatnonzero((e_pq <= max_error_m) | (e_aa <= max_error_m))
    ids, e_pq, e_aa = ids[sel], e_pq[sel], e_aa[sel]
    corner_h = [c.take(sel, axis=0) for c in corner_h]
    size = hier.diamond_b[ids]
    big = np.flatnonzero(size > 2)
    if len(big):
        # larger diamonds: no vertex at a quarter point of the outline, then every sample
        mb = ids[big]
        blocked = present[hier.diamond_quarter.take(mb, axis=0)].view(np.uint64).ravel() != 0
        kp = present[hier.diamond_kid.take(mb, axis=0)]
        cases = kp[:, [3, 0, 1, 2]].astype(np.int64) + 2 * kp  # (k, 4): case of half h
        half_err = np.zeros((len(big), 4))
        # the diagonals' own inner samples (midpoints of m-c_k) are interpolated along them
        # in every drawing: a second cheap filter before the tables
        inner_h = [f[hier.diamond_inner.take(mb, axis=0)] for f in flats]  # C x (k, 4)
        ch = [c.take(big, axis=0) for c in corner_h]
        e2_pq = np.maximum(_norm([i[:, 0] - 0.75 * c[:, 0] - 0.25 * c[:, 2] for i, c in zip(inner_h, ch)]),
                           _norm([i[:, 2] - 0.25 * c[:, 0] - 0.75 * c[:, 2] for i, c in zip(inner_h, ch)]))
        e2_aa = np.maximum(_norm([i[:, 1] - 0.75 * c[:, 1] - 0.25 * c[:, 3] for i, c in zip(inner_h, ch)]),
                           _norm([i[:, 3] - 0.25 * c[:, 1] - 0.75 * c[:, 3] for i, c in zip(inner_h, ch)]))
        ok_pq = (e_pq[big] <= max_error_m) & (e2_pq <= max_error_m)
        ok_aa = (e_aa[big] <= max_error_m) & (e2_aa <= max_error_m)
        want = np.stack([ok_aa, ok_pq, ok_aa, ok_pq], 1) & ~blocked[:, None]
        gi, hs = np.nonzero(want)
        off, w, v = hier.drop_table  # sample-major: (K, r), (K, 5, r), (5, r)
        code = hier.drop_code[mb[gi]] + 4 * hs + cases.ravel()[4 * gi + hs]  # (e,) drawings
        bb = hier.diamond_base[mb[gi]]
        sample_at, vert_at = off.take(code, axis=1), v.take(code, axis=1)
        sample_at += bb
        vert_at += bb
        # The weights of each vertex as its own (K, e) plane (a (K, 5, e) gather along the last
        # axis cost 4x as much); summed vertex by vertex in order, as sum(axis=1) adds them.
        wc = [w[:, j].take(code, axis=1) for j in range(w.shape[1])]
        parts = []
        for flat in flats:
            fv = flat[vert_at]  # (5, e)
            d = wc[0] * fv[0]  # (K, e) the drawing at each sample
            for j in range(1, len(wc)):
                d += wc[j] * fv[j]
            d -= flat[sample_at]
            parts.append(d)
        d = _norm(parts)
        half_err = np.zeros((len(big), 4))
        half_err[gi, hs] = d.max(axis=0)
        half_err[~want] = np.inf
        e_pq[big] = np.maximum(half_err[:, 1], half_err[:, 3])
        e_aa[big] = np.maximum(half_err[:, 0], half_err[:, 2])
    return ids, e_pq, e_aa, size


def _measure_compiled(fields: np.ndarray, present: np.ndarray, hier, max_error_m: float) -> tuple[np.ndarray, ...]:
    """:func:`_measure` through ``runtime.tin.meshkernels.drop_candidates`` (the same bits)."""
    c = fields.shape[0]
    flats = np.empty((fields[0].size, c))  # (n, C): a sample's components side by side (same values)
    for i in range(c):
        flats[:, i] = fields[i].ravel()
    n = flats.shape[0]
    ids, e_pq, e_aa = np.empty(n, np.int64), np.empty(n), np.empty(n)
    size = np.empty(n, hier.diamond_b.dtype)
    k = meshkernels.drop_candidates(flats, present, hier.drop_ok, hier.diamond_corner, hier.diamond_b,
                                hier.diamond_quarter, hier.diamond_kid, hier.diamond_inner, hier.drop_code,
                                hier.diamond_base, *_drop_rows(fields.shape[1] - 1), float(max_error_m),
                                ids, e_pq, e_aa, size)
    return ids[:k], e_pq[:k], e_aa[:k], size[:k]


@functools.lru_cache(maxsize=8)
def _drop_rows(t: int) -> tuple[np.ndarray, ...]:
    """``Hierarchy.drop_table`` drawing-major for the compiled measure: offsets (r, K), weights
    (r, K, 5), vertex offsets (r, 5) int64/float64 contiguous, and nk (r,) int64 the samples of
    each drawing before its padding (z with weight 1 and the others 0: its residual is exactly
    0, so leaving it out does not change the max of the non-negative errors)."""
    off, w, v = hierarchy(t).drop_table  # (K, r), (K, 5, r), (5, r)
    pad = (off == v[2][None]) & (w[:, 2] == 1.0) & (np.abs(w).sum(axis=1) == 1.0)  # (K, r)
    real = ~pad
    nk = np.where(real.any(axis=0), real.shape[0] - np.argmax(real[::-1], axis=0), 0).astype(np.int64)
    if (pad & (np.arange(len(off))[:, None] < nk[None])).any():
        raise ValueError("drop_table padding expected only after each drawing's samples")
    return (np.ascontiguousarray(off.T), np.ascontiguousarray(w.transpose(2, 0, 1)),
            np.ascontiguousarray(v.T), nk)


@functools.lru_cache(maxsize=8)
def _packed_interiors(t: int) -> tuple[np.ndarray, np.ndarray]:
    """``Hierarchy.interiors`` (one offset array per diamond kind) as a zero-padded
    (kinds, K) int64 array and the counts (kinds,), for the compiled conflict rules."""
    inter = hierarchy(t).interiors
    out = np.zeros((max(len(inter), 1), max([len(a) for a in inter] + [1])), np.int64)
    for k, a in enumerate(inter):
        out[k, : len(a)] = a
    return out, np.array([len(a) for a in inter] + [0] * (len(inter) == 0), np.int64)


def _norm(parts: list[np.ndarray]) -> np.ndarray:
    """|x| of one component (bit for bit the height-only error), else the Euclidean norm
    over the components, elementwise."""
    if len(parts) == 1:
        return np.abs(parts[0])
    return np.sqrt(sum(p * p for p in parts))


def diamond_candidates(present: np.ndarray, t: int) -> np.ndarray:
    """Grid ids (ascending) of the diamonds that a mesh with RTIN vertex set ``present``
    may draw specially: centre absent, both apexes present, interior. The wire sends
    one bit for each: drawn on the a1-a2 diagonal."""
    hier = hierarchy(t)
    if jit.ENABLED:  # one compiled pass, the same ids
        out = np.empty(len(present), np.int64)
        return out[: meshkernels.diamond_candidates(present, hier.diamond_ok, hier.diamond_a1, hier.diamond_a2, out)]
    ids = np.flatnonzero(hier.diamond_ok[:-1] & ~present[:-1])
    return ids[present[hier.diamond_a1[ids]] & present[hier.diamond_a2[ids]]]


def diamond_interiors(ids: np.ndarray, t: int) -> np.ndarray:
    """((t+1)^2 + 1,) bool: the samples strictly inside the diamonds of ``ids`` other
    than their centres."""
    hier = hierarchy(t)
    out = np.zeros((t + 1) ** 2 + 1, dtype=bool)
    ids = np.asarray(ids)
    kinds = hier.diamond_kind[ids]
    for kind in np.unique(kinds):
        sel = ids[kinds == kind]
        out[hier.diamond_base[sel][:, None] + hier.interiors[kind]] = True
    out[ids] = False
    return out


def _mark_interiors(out: np.ndarray, ids: np.ndarray, hier) -> None:
    """Set ``out`` True at every sample strictly inside the diamonds ``ids`` and at their
    centres (``diamond_interiors`` ORed in, then the centres: no temporary grid)."""
    kinds = hier.diamond_kind[ids]
    k0 = kinds[0] if len(kinds) else 0
    if len(kinds) and (kinds == k0).all():  # one shape per level: no grouping
        out[hier.diamond_base[ids][:, None] + hier.interiors[k0]] = True
    else:
        for kind in np.unique(kinds):
            sel = ids[kinds == kind]
            out[hier.diamond_base[sel][:, None] + hier.interiors[kind]] = True
    out[ids] = True


def dropped_diamonds(present: np.ndarray, flipped: np.ndarray, t: int) -> np.ndarray:
    """((t+1)^2 + 1,) bool: the dropped diamond centres implied by a vertex set and the
    flip bits: a candidate drawn on the a1-a2 diagonal, or one with a vertex at an edge
    midpoint (which a plain RTIN cannot have with its centre absent)."""
    ids = diamond_candidates(present, t)
    kp = present[hierarchy(t).diamond_kid[ids]].any(axis=1)
    out = np.zeros(len(present), dtype=bool)
    out[ids[flipped[ids] | kp]] = True
    return out


def _drawing_templates() -> tuple[np.ndarray, np.ndarray]:
    """Every drawing of a dropped diamond as triangles over its ring (corners c0..c3 =
    0..3, edge midpoints k0..k3 = 4..7): templates (32, 6, 3) int64 indexed by
    16 * flipped + (bit k: edge midpoint k is a vertex), padded by repeating the first
    triangle, and valid (32, 6) bool."""
    tris = np.zeros((32, 6, 3), np.int64)
    valid = np.zeros((32, 6), bool)
    for code in range(32):
        flipped, mask = code >> 4, code & 15
        out = []
        for h in ((0, 2) if flipped else (1, 3)):  # a1-a2 diagonal: halves at c0, c2; p-q: c1, c3
            labels = [(h - 1) % 4, (h + 1) % 4, h, 4 + (h - 1) % 4, 4 + h]  # x, y, z, kx, ky
            case = (mask >> ((h - 1) % 4) & 1) + 2 * (mask >> h & 1)
            out += [[labels[i] for i in tri] for tri in HALF_CASES[case]]
        tris[code, : len(out)] = out
        tris[code, len(out):] = out[0]
        valid[code, : len(out)] = True
    return tris, valid


_DRAWINGS, _DRAWING_VALID = _drawing_templates()


def _diamond_faces(present: np.ndarray, dropped: np.ndarray, flipped: np.ndarray, t: int) -> np.ndarray:
    """Faces (m, 3) grid ids, CCW, of the dropped diamonds (see ``drop_diamonds``): per
    diamond its two halves on the chosen diagonal, each drawn as ``HALF_CASES``
    (``_DRAWINGS``, counter-clockwise by construction)."""
    hier = hierarchy(t)
    ids = np.flatnonzero(dropped[:-1])
    if not len(ids):
        return np.zeros((0, 3), np.int32)
    ring = hier.diamond_ring.take(ids, axis=0)  # (k, 8) corners, then edge midpoints
    kp = present[ring[:, 4:]]
    code = kp @ np.array([1, 2, 4, 8]) + 16 * flipped[ids]
    tri = ring.ravel()[_DRAWINGS.take(code, axis=0) + 8 * np.arange(len(ids))[:, None, None]]  # (k, 6, 3)
    return tri.reshape(-1, 3).take(np.flatnonzero(_DRAWING_VALID.take(code, axis=0).ravel()), axis=0)
