"""Tile meshing: a (T+1)^2 height grid -> adaptive TIN with skirts, normals and UVs.

The simplification is a right-triangulated irregular network (RTIN), the 4-8 mesh of
Evans, Kirkpatrick & Townsend (2001) as used by Martini (mapbox, V. Agafonkin 2019):
a triangle is split at the midpoint of its hypotenuse while its own vertical error, or
that of any triangle below it, exceeds the bound. Unlike Martini the error is exact
(the max over every sample a triangle covers), so the bound holds. The hierarchy is a
fixed lattice per level (``rtin_steps``); the error pyramid, the vertex set and the
faces are computed level by level over whole grids, a few milliseconds in numpy.

Every border sample is a vertex, so tiles sharing an edge meet exactly; with the
default ``fan`` border the triangles along the border are fans through all their border
samples instead of a refinement of the whole RTIN towards the border (see BORDERS).
Skirts hide the cracks between tiles of different levels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ToWorld = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``to_world(rows, cols, height_m) -> (n, 3) float64`` world positions of tile samples."""

def _check_grid(height_m: np.ndarray) -> int:
    h = np.asarray(height_m)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"height_m must be a square (T+1, T+1) grid, got shape {h.shape}")
    t = h.shape[0] - 1
    if t < 2 or t & (t - 1):
        raise ValueError(f"height_m must be (2^k + 1) samples per side, got {h.shape[0]}")
    if not np.all(np.isfinite(h)):
        raise ValueError("height_m must be finite everywhere (fill NaN before meshing)")
    return t


@functools.lru_cache(maxsize=64)
def _pattern(b: int, verts: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Local samples of a triangle in a (b+1)^2 block: rows, cols (K,) and barycentric
    weights (3, K) float64 of its vertices ``verts`` ((i, j), ...)."""
    (r0, c0), (r1, c1), (r2, c2) = verts
    i, j = np.meshgrid(np.arange(b + 1), np.arange(b + 1), indexing="ij")
    i, j = i.ravel(), j.ravel()
    det = (r1 - r0) * (c2 - c0) - (r2 - r0) * (c1 - c0)
    w1 = ((i - r0) * (c2 - c0) - (r2 - r0) * (j - c0)) / det
    w2 = ((r1 - r0) * (j - c0) - (i - r0) * (c1 - c0)) / det
    w0 = 1.0 - w1 - w2
    inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
    w = np.stack([w0, w1, w2])[:, inside]
    vr = np.array([r0, r1, r2])
    vc = np.array([c0, c1, c2])
    return i[inside], j[inside], w, np.stack([vr, vc])


def _plane_error(blocks: np.ndarray, b: int, verts: tuple) -> np.ndarray:
    """Max |sample - triangle plane| over one triangle pattern in every block.

    blocks: (b+1, b+1, ...) float64 (block axes last); returns (...) float64. The sample
    axis goes first so the max is an elementwise reduction over large arrays."""
    i, j, w, v = _pattern(b, verts)
    corners = blocks[v[0], v[1]]  # (3, ...)
    plane = np.tensordot(w.T, corners, axes=1)  # (K, ...)
    d = blocks[i, j]
    d -= plane
    np.abs(d, out=d)
    return d.max(axis=0)


FULL_LEVEL_FRACTION = 0.3
"""Measure every block of a level when at least this fraction needs it (measured faster)."""


def _masked_plane_error(
    bt: np.ndarray, flat: np.ndarray, need: np.ndarray, b: int, verts: tuple, origin=(0, 0), stride=1
) -> np.ndarray:
    """_plane_error for the blocks where ``need`` is True, 0 elsewhere. ``bt`` and ``need``
    may be a strided sub-grid of the level's blocks: block [i, j] is the level's block
    [origin + stride * (i, j)].

    Partial levels gather only the pattern's samples of the needed blocks through flat
    indices (copying whole blocks would cost more than the maths)."""
    k = int(need.sum())
    if k >= FULL_LEVEL_FRACTION * need.size:
        # Measure every block (cheaper than indexing), report only the needed ones: the
        # others may not even have this triangle (the diagonal alternates by parity).
        return np.where(need, _plane_error(bt, b, verts), 0.0)
    out = np.zeros(need.shape)
    if k:
        i, j, w, v = _pattern(b, verts)
        n1 = int(np.sqrt(flat.size))
        bi, bj = np.nonzero(need)
        bi, bj = origin[0] + stride * bi, origin[1] + stride * bj
        base = (bi * b) * n1 + bj * b  # (k,) flat index of each block's [0, 0]
        corners = flat[(v[0] * n1 + v[1])[:, None] + base]  # (3, k)
        d = flat[(i * n1 + j)[:, None] + base]  # (K, k)
        d -= w.T @ corners
        np.abs(d, out=d)
        out[need] = d.max(axis=0)
    return out


@functools.lru_cache(maxsize=256)
def _fan_pattern(b: int, edge: tuple, apex: tuple) -> tuple[np.ndarray, ...]:
    """A triangle whose ``edge`` ((i, j), (i, j)) lies on the tile border, split into a fan
    from ``apex`` through every sample of that edge (how border triangles are drawn).

    Returns the local samples inside, rows and cols (K,), and for each sample the three
    vertices of its fan triangle, rows and cols (3, K), with barycentric weights (3, K)."""
    (pr, pc), (qr, qc) = edge
    ar, ac = apex
    i, j = np.meshgrid(np.arange(b + 1), np.arange(b + 1), indexing="ij")
    i, j = i.ravel().astype(np.float64), j.ravel().astype(np.float64)
    length = max(abs(qr - pr), abs(qc - pc))
    er, ec = (qr - pr) / length, (qc - pc) / length  # unit step along the edge
    nr, nc = -ec, er  # normal
    d_apex = (ar - pr) * nr + (ac - pc) * nc
    d = (i - pr) * nr + (j - pc) * nc
    wa = d / d_apex  # weight of the apex
    # Where the ray from the apex through the sample meets the edge, in edge steps.
    with np.errstate(divide="ignore", invalid="ignore"):
        hr = ar + (i - ar) * d_apex / (d_apex - d)
        hc = ac + (j - ac) * d_apex / (d_apex - d)
    u = np.where(wa >= 1 - 1e-12, 0.0, (hr - pr) * er + (hc - pc) * ec)
    # inside the triangle: on the apex side of the edge and within the two other edges
    at_apex = (i == ar) & (j == ac)
    inside = ((wa >= -1e-9) & (wa < 1 - 1e-12) & (u >= -1e-9) & (u <= length + 1e-9)) | at_apex
    i, j, wa, u = i[inside], j[inside], wa[inside], u[inside]
    k = np.clip(np.floor(u + 1e-9), 0, length - 1)
    frac = np.clip(u - k, 0.0, 1.0)
    w = np.stack([(1 - wa) * (1 - frac), (1 - wa) * frac, wa])
    vr = np.stack([pr + k * er, pr + (k + 1) * er, np.full_like(k, ar)]).round().astype(np.int64)
    vc = np.stack([pc + k * ec, pc + (k + 1) * ec, np.full_like(k, ac)]).round().astype(np.int64)
    return i.astype(np.int64), j.astype(np.int64), vr, vc, w


def _fan_error(flat: np.ndarray, n1: int, base: np.ndarray, b: int, edge: tuple, apex: tuple) -> np.ndarray:
    """Max |sample - fan| of one border-triangle pattern in the blocks at flat ``base`` (k,)."""
    i, j, vr, vc, w = _fan_pattern(b, edge, apex)
    d = flat[(i * n1 + j)[:, None] + base]  # (K, k)
    v = flat[(vr * n1 + vc)[:, :, None] + base]  # (3, K, k)
    d -= (w[:, :, None] * v).sum(axis=0)
    np.abs(d, out=d)
    return d.max(axis=0)


@functools.lru_cache(maxsize=64)
def _ring_halves(b: int, t: int) -> list[tuple[np.ndarray, tuple | None, tuple]]:
    """For the blocks touching the tile border at size b: (block mask (nb, nb), fan edge or
    None, triangle verts). A half with one leg on the border is measured as a fan over that
    leg; a half with both legs on the border (a tile corner) is always split (edge None)."""
    nb = t // b
    ii, jj = np.meshgrid(np.arange(nb), np.arange(nb), indexing="ij")
    ring = (ii == 0) | (jj == 0) | (ii == nb - 1) | (jj == nb - 1)
    even = (ii + jj) % 2 == 0
    out = []
    r0, c0 = ii * b, jj * b

    def on_border(p, q):
        (pr, pc), (qr, qc) = p, q
        rows = (pr == qr) & ((r0 + pr == 0) | (r0 + pr == t))
        cols = (pc == qc) & ((c0 + pc == 0) | (c0 + pc == t))
        return (rows | cols) & np.ones_like(ring)

    for parity, halves in ((even, _HALVES_EVEN), (~even, _HALVES_ODD)):
        for verts in halves:
            va, vb, vc = (tuple(int(x) * b for x in v) for v in verts)
            leg_a, leg_b = on_border(vc, va), on_border(vc, vb)
            sel = ring & parity
            out.append((sel & ~leg_a & ~leg_b, "plane", (va, vb, vc)))
            out.append((sel & leg_a & ~leg_b, "fan", ((vc, va), vb)))
            out.append((sel & ~leg_a & leg_b, "fan", ((vc, vb), va)))
            out.append((sel & leg_a & leg_b, "corner", None))
    return [(m, kind, geo) for m, kind, geo in out if m.any()]


_HALVES_EVEN = (((0, 0), (1, 1), (0, 1)), ((1, 1), (0, 0), (1, 0)))
_HALVES_ODD = (((0, 1), (1, 0), (0, 0)), ((1, 0), (0, 1), (1, 1)))
"""The two halves of a block (unit coordinates) by parity: (a, b, c), right angle at c."""


BORDERS = ("fan", "graded", "free")
"""How the tile border is meshed. ``fan``: every border sample is a vertex; border
triangles are fans from their apex over their border edge (measured as such), so the
interior stays as coarse as the terrain allows. ``graded``: every border sample is a
vertex of the RTIN itself (it refines towards the border). ``free``: the border is
simplified like the interior (neighbours do not match; for comparisons)."""


def rtin_errors(height_m: np.ndarray, max_error_m: float = np.inf, border: str = "fan") -> np.ndarray:
    """Error pyramid of the RTIN hierarchy: ``(T+1, T+1) float64``.

    Entry at a midpoint = the largest vertical error (m) of any triangle that would be
    left unsplit if that midpoint were dropped: the exact max |sample - surface| over the
    samples each triangle covers (Martini's midpoint-only estimate can under-estimate it
    by half), maxed with all its descendants so that the extracted mesh is conforming.
    Entries above ``max_error_m`` are only guaranteed to exceed it: a triangle whose
    descendants already force a split is not measured (that skips most coarse levels).
    ``border``: see BORDERS. In ``fan`` mode the border midpoints' own entries are not
    meaningful (their triangles are measured through their children); use
    ``rtin_vertices`` for the vertex set.
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    t = _check_grid(height_m)
    h = np.ascontiguousarray(height_m, dtype=np.float64)
    flat = h.ravel()
    n1 = t + 1
    thr = float(max_error_m)
    fan = border == "fan"
    err = np.zeros_like(h)
    inf = np.inf
    s = 1
    centres = np.zeros((t, t))  # errors of the previous level's square centres
    while s < t:
        b = 2 * s
        nb = t // b
        bt = sliding_window_view(h, (b + 1, b + 1))[::b, ::b].transpose(2, 3, 0, 1)  # (b+1, b+1, nb, nb)
        # Descendants of edge midpoints: the four s-square centres at (+-s/2, +-s/2).
        if s > 1:
            cp = np.zeros((2 * nb + 2, 2 * nb))
            cp[1:-1] = centres
            m = np.maximum(cp[0::2], cp[1::2])
            he = np.maximum(m[:, 0::2], m[:, 1::2])  # (nb+1, nb)
            cp = np.zeros((2 * nb, 2 * nb + 2))
            cp[:, 1:-1] = centres
            m = np.maximum(cp[:, 0::2], cp[:, 1::2])
            ve = np.maximum(m[0::2], m[1::2])  # (nb, nb+1)
        else:
            he = np.zeros((nb + 1, nb))
            ve = np.zeros((nb, nb + 1))
        if border == "graded":
            he[0, :] = inf
            he[-1, :] = inf
            ve[:, 0] = inf
            ve[:, -1] = inf
        # Fan mode: a quarter with its hypotenuse on the border is measured through its
        # children (halves with a leg on the border); its fan is the same surface.
        inner_h = np.ones((nb + 1, nb), bool)
        inner_v = np.ones((nb, nb + 1), bool)
        if fan:
            inner_h[[0, -1]] = False
            inner_v[:, [0, -1]] = False
        if b == 2:
            # Finest level: a triangle's only non-vertex samples are midpoints of its own
            # edges, so its exact error is Martini's midpoint error (plain slicing).
            own_h = np.abs(h[0::2, 1::2] - 0.5 * (h[0::2, 0:-1:2] + h[0::2, 2::2]))
            own_v = np.abs(h[1::2, 0::2] - 0.5 * (h[0:-1:2, 0::2] + h[2::2, 0::2]))
            he = np.maximum(he, np.where(inner_h, own_h, 0.0))
            ve = np.maximum(ve, np.where(inner_v, own_v, 0.0))
            err[0::2, 1::2] = he
            err[1::2, 0::2] = ve
            parity = (np.add.outer(np.arange(nb), np.arange(nb)) % 2) == 0
            main = 0.5 * (h[0:-1:2, 0:-1:2] + h[2::2, 2::2])
            anti = 0.5 * (h[0:-1:2, 2::2] + h[2::2, 0:-1:2])
            ce = np.abs(h[1::2, 1::2] - np.where(parity, main, anti))
            ce = np.maximum(ce, np.maximum(np.maximum(he[:-1], he[1:]), np.maximum(ve[:, :-1], ve[:, 1:])))
            if fan:
                # A half with both legs on the border (at a tile corner) is always split.
                ce[[0, 0, -1, -1], [0, -1, 0, -1]] = np.maximum(
                    ce[[0, 0, -1, -1], [0, -1, 0, -1]], np.where(_corner_halves(2, t), inf, 0.0)
                )
            err[1::2, 1::2] = ce
            centres = ce
            s = b
            continue
        # Quarter triangles of each b-block: hypotenuse on a block edge, apex at its centre.
        qn = _masked_plane_error(bt, flat, (he[:-1] <= thr) & inner_h[:-1], b, ((0, 0), (0, b), (s, s)))
        qs = _masked_plane_error(bt, flat, (he[1:] <= thr) & inner_h[1:], b, ((b, b), (b, 0), (s, s)))
        qw = _masked_plane_error(bt, flat, (ve[:, :-1] <= thr) & inner_v[:, :-1], b, ((b, 0), (0, 0), (s, s)))
        qe = _masked_plane_error(bt, flat, (ve[:, 1:] <= thr) & inner_v[:, 1:], b, ((0, b), (b, b), (s, s)))
        he[:-1] = np.maximum(he[:-1], qn)
        he[1:] = np.maximum(he[1:], qs)
        ve[:, :-1] = np.maximum(ve[:, :-1], qw)
        ve[:, 1:] = np.maximum(ve[:, 1:], qe)
        err[0::b, s::b] = he
        err[s::b, 0::b] = ve
        # Halves of each b-block along its diagonal, which alternates with block parity.
        ce = np.maximum(np.maximum(he[:-1], he[1:]), np.maximum(ve[:, :-1], ve[:, 1:]))
        need = ce <= thr
        plain = need & ~_ring(nb) if fan else need
        # Blocks of one parity are two strided sub-grids (views), so each diagonal is
        # measured only where it exists.
        for origins, d1, d2 in (
            (((0, 0), (1, 1)), ((0, 0), (b, b), (0, b)), ((b, b), (0, 0), (b, 0))),
            (((0, 1), (1, 0)), ((0, b), (b, 0), (0, 0)), ((b, 0), (0, b), (b, b))),
        ):
            for oi, oj in origins:
                sel = plain[oi::2, oj::2]
                if not sel.any():
                    continue
                sub = bt[:, :, oi::2, oj::2]
                e = np.maximum(
                    _masked_plane_error(sub, flat, sel, b, d1, (oi, oj), 2),
                    _masked_plane_error(sub, flat, sel, b, d2, (oi, oj), 2),
                )
                ce[oi::2, oj::2] = np.maximum(ce[oi::2, oj::2], e)
        if fan:
            for mask, kind, geo in _ring_halves(b, t):
                sel = mask & need
                if not sel.any():
                    continue
                bi, bj = np.nonzero(sel)
                if kind == "corner":
                    ce[bi, bj] = inf
                    continue
                base = (bi * b) * n1 + bj * b
                if kind == "plane":
                    e = _plane_error_at(flat, n1, base, b, geo)
                else:
                    e = _fan_error(flat, n1, base, b, *geo)
                ce[bi, bj] = np.maximum(ce[bi, bj], e)
        err[s::b, s::b] = ce
        centres = ce
        s = b
    for r in (0, t):
        for c in (0, t):
            err[r, c] = inf
    return err


@functools.lru_cache(maxsize=32)
def _ring(nb: int) -> np.ndarray:
    """(nb, nb) bool, read-only: the blocks on the outer ring of an nb x nb block grid."""
    ii, jj = np.meshgrid(np.arange(nb), np.arange(nb), indexing="ij")
    out = (ii == 0) | (jj == 0) | (ii == nb - 1) | (jj == nb - 1)
    out.setflags(write=False)
    return out


def _corner_halves(b: int, t: int) -> np.ndarray:
    """(4,) bool for the corner blocks [NW, NE, SW, SE]: does one of their halves have both
    legs on the tile border? (Only blocks whose diagonal avoids the tile corner do.)"""
    nb = t // b
    out = []
    for bi, bj in ((0, 0), (0, nb - 1), (nb - 1, 0), (nb - 1, nb - 1)):
        halves = _HALVES_EVEN if (bi + bj) % 2 == 0 else _HALVES_ODD
        hit = False
        for _, _, (cr, cc) in halves:
            gr, gc = (bi + cr) * b, (bj + cc) * b
            hit |= gr in (0, t) and gc in (0, t)  # right angle at a tile corner
        out.append(hit)
    return np.array(out)


def _plane_error_at(flat: np.ndarray, n1: int, base: np.ndarray, b: int, verts: tuple) -> np.ndarray:
    """Max |sample - plane| of one triangle pattern in the blocks at flat ``base`` (k,)."""
    i, j, w, v = _pattern(b, verts)
    corners = flat[(v[0] * n1 + v[1])[:, None] + base]  # (3, k)
    d = flat[(i * n1 + j)[:, None] + base]  # (K, k)
    d -= w.T @ corners
    np.abs(d, out=d)
    return d.max(axis=0)


@dataclass(frozen=True, eq=False)
class RtinStep:
    """One level of the RTIN hierarchy as flat grid ids (row * (t+1) + col), (k,) int32.

    mid: hypotenuse midpoints (-1 past the finest level, where cells are not split);
    p, q: hypotenuse ends; a1, a2: the apexes of the two triangles sharing the
    hypotenuse, each the midpoint of its parent (-1 where it falls outside the tile);
    t1, t2: the two triangles as (k, 3) vertex ids, counter-clockwise from above;
    border: (k,) bool, the midpoint lies on the tile border;
    fan1, fan2: indices of the triangles with an edge longer than 1 on the border (the
    ones drawn as fans with the fan border)."""

    mid: np.ndarray
    p: np.ndarray
    q: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    border: np.ndarray
    fan1: np.ndarray
    fan2: np.ndarray


def _ccw(p: np.ndarray, q: np.ndarray, a: np.ndarray, n1: int) -> np.ndarray:
    """(3, k) ids of triangles (p, q, a) wound counter-clockwise seen from above."""
    pr, pc, qr, qc, ar, ac = p // n1, p % n1, q // n1, q % n1, a // n1, a % n1
    # x = col, y = -row
    cross = (qc - pc) * (pr - ar) - (ac - pc) * (pr - qr)
    return np.where(cross > 0, np.stack([p, q, a]), np.stack([q, p, a])).astype(np.int32)


@functools.lru_cache(maxsize=8)
def rtin_steps(t: int) -> tuple[RtinStep, ...]:
    """The 4-8 hierarchy of a (t+1)^2 grid, coarse to fine (cached per t; read-only).

    For each size b = t, t/2, ..., 2: the centres of b-squares (hypotenuse = the square's
    diagonal, which alternates with block parity as in the 4-8 mesh), then the midpoints
    of edges of length b; last the unit cells' diagonals (leaves only). A midpoint is a
    candidate for splitting when an apex is present, i.e. its triangle exists."""
    n1 = t + 1
    steps = []

    def step(mr, mc, pr, pc, qr, qc, a1r, a1c, a2r, a2c, split=True):
        def ids(r, c):
            ok = (r >= 0) & (r <= t) & (c >= 0) & (c <= t)
            return np.where(ok, r * n1 + c, -1).astype(np.int32).ravel()

        p, q, a1, a2 = ids(pr, pc), ids(qr, qc), ids(a1r, a1c), ids(a2r, a2c)
        mid = ids(mr, mc) if split else np.full(p.shape, -1, np.int32)
        r, c = mid // n1, mid % n1
        border = (mid >= 0) & ((r == 0) | (r == t) | (c == 0) | (c == t))
        t1 = np.ascontiguousarray(_ccw(p, q, np.maximum(a1, 0), n1).T)
        t2 = np.ascontiguousarray(_ccw(p, q, np.maximum(a2, 0), n1).T)
        fan1 = np.flatnonzero(_long_border_edge(t1, t)).astype(np.int32)
        fan2 = np.flatnonzero(_long_border_edge(t2, t)).astype(np.int32)
        s = RtinStep(mid, p, q, a1, a2, t1, t2, border, fan1, fan2)
        for v in (s.mid, s.p, s.q, s.a1, s.a2, s.t1, s.t2, s.border, s.fan1, s.fan2):
            v.setflags(write=False)
        steps.append(s)

    b = t
    while b >= 2:
        s = b // 2
        i, j = np.meshgrid(np.arange(t // b), np.arange(t // b), indexing="ij")
        mr, mc = s + i * b, s + j * b
        even = (i + j) % 2 == 0
        sg = np.where(even, 1, -1)  # main diagonal on even blocks, anti on odd
        step(mr, mc, mr - s, mc - s * sg, mr + s, mc + s * sg, mr - s, mc + s * sg, mr + s, mc - s * sg)
        # Edge midpoints: horizontal edges (rows 0::b), then vertical edges (cols 0::b).
        i, j = np.meshgrid(np.arange(t // b + 1), np.arange(t // b), indexing="ij")
        hr, hc = i * b, s + j * b
        i, j = np.meshgrid(np.arange(t // b), np.arange(t // b + 1), indexing="ij")
        vr, vc = s + i * b, j * b
        cat = lambda x, y: np.concatenate([x.ravel(), y.ravel()])
        mr, mc = cat(hr, vr), cat(hc, vc)
        dr, dc = cat(np.zeros_like(hr), np.full_like(vr, s)), cat(np.full_like(hc, s), np.zeros_like(vc))
        # ends along the edge, apexes across it
        step(mr, mc, mr - dr, mc - dc, mr + dr, mc + dc, mr - dc, mc - dr, mr + dc, mc + dr)
        b = s
    i, j = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
    even = (i + j) % 2 == 0
    jp, jq = np.where(even, j, j + 1), np.where(even, j + 1, j)
    step(
        None,
        None,
        i,
        jp,
        i + 1,
        jq,
        i,
        np.where(even, j + 1, j),
        i + 1,
        np.where(even, j, j + 1),
        split=False,
    )
    return tuple(steps)


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """The RTIN hierarchy of a (t+1)^2 grid as tables over grid ids (row * (t+1) + col),
    with one sentinel row last (id -1 / "none" maps there). Cached per t; read-only.

    Children: a vertex v is the apex of up to four triangles one level below the one it
    splits (the corners are the apexes of the two root triangles). child_tri (4 n, 3)
    int32 those triangles, CCW, row 4 v + slot; child_kid (n, 4) int32 the midpoint of
    each one's hypotenuse (the sentinel n where it has none: unit triangles are never
    split; n + 1 where the slot is empty). A triangle exists when its apex is a vertex
    and is a leaf when its kid is not. child_kid_fan: the same with the slots of
    triangles that have an edge longer than 1 on the tile border emptied (they are drawn
    as fans with the fan border); fan_apex, fan_kid, fan_tri: those triangles.

    Diamonds (``drop_diamonds``): the two triangles that share the hypotenuse p-q through
    midpoint m form a square c0..c3 = p, a1, q, a2 around m; edge k joins c_k and
    c_k+1. diamond_a1, diamond_a2 (n,) int32 the apexes; diamond_ok (n,) bool m is
    inside the tile and no edge of its diamond lies on the tile border; diamond_corner
    (n, 4) int32 c0..c3; diamond_kid (n, 4) int32 the midpoint of each edge (sentinel n
    where it is not a grid point); diamond_inner (n, 4) int32 the midpoints of m-c_k
    (sentinel likewise); diamond_quarter (n, 8) int32 the quarter points of
    its edges (sentinel n likewise); diamond_b (n,) int16 its window size in samples and
    diamond_level (n,) int16 its step in ``rtin_steps`` (coarse to fine); drop_ok (n,)
    bool diamond_ok and diamond_b <= ``DROP_MAX_B``; diamond_ring (n, 8) corner then kid;
    kid_other (n, 4, 2) int64 the child_tri rows of each edge midpoint's two children
    outside the diamond (its other two have m as a vertex); diamond_base (n,) int64 the
    flat id of the (b+1)^2 window around the diamond and diamond_kind (n,) int16 its
    shape; interiors[kind] (S,) int64 window offsets of every sample strictly inside.
    drop_table: for the shapes with 2 < b <= ``DROP_MAX_B``, the drawing of half h (the
    triangle c_h-1, c_h+1, c_h) in case c (bit 0: a vertex at the midpoint of edge h-1,
    bit 1: of edge h), drawn as ``HALF_CASES`` over labels (x, y, z, kx, ky) = (c_h-1,
    c_h+1, c_h, kid h-1, kid h): its samples strictly inside the diamond and the weights
    that interpolate them from the five labels (padding: z with weight 1), padded to one
    K and stored sample-major for fast reductions: offsets (K, r), weights (K, 5, r),
    vertex offsets
    (5, r); drawing drop_code[m] + 4 h + c."""

    child_tri: np.ndarray
    child_kid: np.ndarray
    child_kid_fan: np.ndarray
    fan_apex: np.ndarray
    fan_kid: np.ndarray
    fan_tri: np.ndarray
    diamond_a1: np.ndarray
    diamond_a2: np.ndarray
    diamond_ok: np.ndarray
    diamond_corner: np.ndarray
    diamond_kid: np.ndarray
    diamond_inner: np.ndarray
    diamond_quarter: np.ndarray
    diamond_b: np.ndarray
    diamond_level: np.ndarray
    drop_ok: np.ndarray
    diamond_ring: np.ndarray
    kid_other: np.ndarray
    diamond_base: np.ndarray
    diamond_kind: np.ndarray
    interiors: tuple
    drop_table: tuple
    drop_code: np.ndarray
    drop_order: tuple


HALF_CASES = {
    0: ((0, 2, 1),),
    1: ((1, 3, 2), (1, 0, 3)),
    2: ((0, 4, 1), (0, 2, 4)),
    3: ((3, 1, 0), (3, 4, 1), (3, 2, 4)),
}
"""Triangles of a diamond half (x, y, z) = labels (0, 1, 2), right angle at z, by which
of its legs carry a vertex at their midpoint (kx = 3 on z-x, ky = 4 on z-y): none, a
split from the opposite corner, or a fan from kx (the half is then a convex pentagon).
With the diamond's corners counter-clockwise, (x, y, z) = (c_h-1, c_h+1, c_h) is
clockwise, so every triangle here is listed reversed: all come out counter-clockwise."""


def _bary(tri: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(k, 3) barycentric weights of points p (k, 2) [row, col] in triangle tri (3, 2)."""
    (r0, c0), (r1, c1), (r2, c2) = tri
    det = (r1 - r0) * (c2 - c0) - (r2 - r0) * (c1 - c0)
    w1 = ((p[:, 0] - r0) * (c2 - c0) - (r2 - r0) * (p[:, 1] - c0)) / det
    w2 = ((r1 - r0) * (p[:, 1] - c0) - (p[:, 0] - r0) * (c1 - c0)) / det
    return np.stack([1.0 - w1 - w2, w1, w2], 1)


def _diamond_inside(b: int, c: np.ndarray) -> np.ndarray:
    """(S, 2) float [row, col] of the samples strictly inside a diamond with corners c
    (4, 2) in a (b+1)^2 window: inside either diagonal half, or on the diagonal c0-c2
    between its ends, never on the outline."""
    i, j = np.meshgrid(np.arange(b + 1.0), np.arange(b + 1.0), indexing="ij")
    pts = np.stack([i.ravel(), j.ravel()], 1)
    sq = np.zeros(len(pts), bool)
    for tri in (c[[0, 1, 2]], c[[0, 3, 2]]):
        w = _bary(tri, pts)
        on_diagonal = (np.abs(w[:, 1]) < 1e-9) & (w[:, 0] > 1e-9) & (w[:, 2] > 1e-9)  # c0-c2, ends excluded
        sq |= (w > 1e-9).all(1) | on_diagonal
    return pts[sq]


def _half_drawings(c: np.ndarray, inside: np.ndarray) -> tuple[list, list, list]:
    """Samples, weights and vertex labels of the 16 (half, case) drawings of one diamond
    shape with corners c (4, 2) and inner samples ``inside`` (see ``Hierarchy``)."""
    out_off, out_w, out_v = [], [], []
    for h in range(4):
        x, y, z = c[(h - 1) % 4], c[(h + 1) % 4], c[h]
        kx, ky = (z + x) / 2, (z + y) / 2
        lab = np.stack([x, y, z, kx, ky])
        half = inside[(_bary(np.stack([x, y, z]), inside) > -1e-9).all(1)]
        for case in range(4):
            usable = (case & 1 == 0 or (kx == np.round(kx)).all()) and (case & 2 == 0 or (ky == np.round(ky)).all())
            samples, weights = [], []
            if usable:
                for p in half:
                    for tri in HALF_CASES[case]:
                        w = _bary(lab[list(tri)], p[None])[0]
                        if (w > -1e-9).all():
                            full = np.zeros(5)
                            full[list(tri)] = w
                            samples.append(p)
                            weights.append(full)
                            break
                    else:
                        raise AssertionError("a diamond sample lies in no triangle of its half")
            out_off.append(samples)
            out_w.append(weights)
            labels = np.where(np.isclose(lab, np.round(lab)).all(1)[:, None], lab, z)  # non-grid kids -> z
            out_v.append(labels)
    return out_off, out_w, out_v


@functools.lru_cache(maxsize=8)
def hierarchy(t: int) -> Hierarchy:
    """``Hierarchy`` tables of a (t+1)^2 grid (built from ``rtin_steps``; cached)."""
    n1 = t + 1
    n = n1 * n1
    none = n  # the sentinel row
    steps = rtin_steps(t)
    # children: every (step, side) triangle is a child of its apex
    apex, tri, kid = [], [], []
    for st in steps:
        for a, tr in ((st.a1, st.t1), (st.a2, st.t2)):
            keep = a >= 0
            apex.append(a[keep])
            tri.append(tr[keep])
            kid.append(np.where(st.mid >= 0, st.mid, none)[keep])
    apex, tri, kid = np.concatenate(apex), np.concatenate(tri), np.concatenate(kid)
    order = np.argsort(apex, kind="stable")
    apex, tri, kid = apex[order], tri[order], kid[order]
    start = np.searchsorted(apex, apex)  # first record of each apex
    slot = np.arange(len(apex)) - start
    if slot.max() >= 4:
        raise AssertionError("an RTIN vertex has more than four children")
    child_tri = np.zeros((n + 1, 4, 3), np.int32)
    child_kid = np.full((n + 1, 4), n + 1, np.int32)  # n + 1: no triangle in this slot
    child_tri[apex, slot] = tri
    child_kid[apex, slot] = kid
    fan = _long_border_edge(tri, t)
    child_kid_fan = child_kid.copy()
    child_kid_fan[apex[fan], slot[fan]] = n + 1
    fan_apex, fan_kid, fan_tri = apex[fan].astype(np.int64), kid[fan], tri[fan]
    # diamonds
    d_a1 = np.full(n + 1, none, np.int32)
    d_a2 = np.full(n + 1, none, np.int32)
    ok_all = np.zeros(n + 1, bool)
    corner = np.full((n + 1, 4), none, np.int32)
    dkid = np.full((n + 1, 4), none, np.int32)
    quarter = np.full((n + 1, 8), none, np.int32)
    dinner = np.full((n + 1, 4), none, np.int32)
    dsize = np.zeros(n + 1, np.int16)
    dlevel = np.zeros(n + 1, np.int16)
    base_all = np.zeros(n + 1, np.int64)
    kind_all = np.full(n + 1, -1, np.int16)
    shapes_of_kind = []  # (b, local corner coordinates p, a1, q, a2 flattened)

    def grid_mid(ur, uc, vr, vc):
        even = ((ur + vr) % 2 == 0) & ((uc + vc) % 2 == 0)
        return np.where(even, ((ur + vr) // 2) * n1 + (uc + vc) // 2, none)

    for level, st in enumerate(steps[:-1]):
        rc = lambda v: (v // n1, v % n1)
        (mr, mc), (pr, pc), (qr, qc) = rc(st.mid), rc(st.p), rc(st.q)
        (ar, ac), (br, bc) = rc(st.a1), rc(st.a2)
        # corners counter-clockwise from above (x = col, y = -row): swap the apexes where
        # p, a1, q is clockwise, i.e. p, q, a1 is counter-clockwise (as in ``_ccw``); the
        # a1-a2 diagonal is the same either way
        cw = (qc - pc) * (pr - ar) - (ac - pc) * (pr - qr) > 0
        (ar, br), (ac, bc) = (np.where(cw, br, ar), np.where(cw, ar, br)), (np.where(cw, bc, ac), np.where(cw, ac, bc))
        s = int(max(np.abs(pr - mr).max(), np.abs(pc - mc).max()))
        ok = (st.a1 >= 0) & (st.a2 >= 0) & ~st.border
        corners = ((pr, pc), (ar, ac), (qr, qc), (br, bc))
        for k in range(4):
            (ur, uc), (vr, vc) = corners[k], corners[(k + 1) % 4]
            ok &= ~(((ur == vr) & ((ur == 0) | (ur == t))) | ((uc == vc) & ((uc == 0) | (uc == t))))
        dlevel[st.mid] = level
        d_a1[st.mid] = np.where(st.a1 >= 0, st.a1, none)
        d_a2[st.mid] = np.where(st.a2 >= 0, st.a2, none)
        ok_all[st.mid] = ok
        m = st.mid[ok]
        for k in range(4):
            (ur, uc), (vr, vc) = (x[ok] for x in corners[k]), (x[ok] for x in corners[(k + 1) % 4])
            corner[m, k] = ur * n1 + uc
            dkid[m, k] = grid_mid(ur, uc, vr, vc)
            half = ((ur + vr) % 2 == 0) & ((uc + vc) % 2 == 0)
            kr, kc = (ur + vr) // 2, (uc + vc) // 2
            dinner[m, k] = grid_mid(mr[ok], mc[ok], ur, uc)
            quarter[m, 2 * k] = np.where(half, grid_mid(ur, uc, kr, kc), none)
            quarter[m, 2 * k + 1] = np.where(half, grid_mid(kr, kc, vr, vc), none)
        dsize[m] = 2 * s
        orr, oc = mr - s, mc - s
        base_all[st.mid] = np.where(ok, orr * n1 + oc, 0)
        if ok.any():
            local = np.stack([pr - orr, pc - oc, ar - orr, ac - oc, qr - orr, qc - oc, br - orr, bc - oc], 1)
            shapes, inv = np.unique(local[ok], axis=0, return_inverse=True)
            kind_all[m] = len(shapes_of_kind) + inv.ravel()
            shapes_of_kind += [(2 * s, shape) for shape in shapes.tolist()]
    drop_ok = ok_all & (dsize <= DROP_MAX_B)
    # kid_other: the children of each edge midpoint outside the diamond (the other two
    # have the diamond's centre as a vertex)
    kid_other = np.full((n + 1, 4, 2), 4 * none, np.int64)
    ids = np.flatnonzero(ok_all)
    for k in range(4):
        kk = dkid[ids, k]
        real = kk != none
        mm, kk = ids[real], kk[real]
        rows = 4 * kk[:, None].astype(np.int64) + np.arange(4)  # (k, 4)
        has = (child_tri.reshape(-1, 3)[rows] == mm[:, None, None]).any(2) & (child_kid[kk] != n + 1)
        if not (has.sum(1) == 2).all():
            raise AssertionError("an edge midpoint must have two children inside the diamond")
        kid_other[mm, k] = np.take_along_axis(rows, np.argsort(has, axis=1, kind="stable")[:, :2], 1)
    # per shape: the samples strictly inside; for the shapes drop_diamonds measures
    # (2 < b <= DROP_MAX_B) also their 16 half drawings, in one table padded to one K
    # (the drawings are built sample by sample, so only where they are used)
    interiors, drawings, drop_code = [], [], np.zeros(n + 1, np.int64)
    for kind, (b, shape) in enumerate(shapes_of_kind):
        c = np.array(shape, dtype=np.float64).reshape(4, 2)
        inside = _diamond_inside(b, c)
        interiors.append((inside[:, 0] * n1 + inside[:, 1]).astype(np.int64))
        if 2 < b <= DROP_MAX_B:
            drop_code[kind_all == kind] = 16 * len(drawings)
            drawings.append(_half_drawings(c, inside))
    kmax = max([len(o) for offs, _, _ in drawings for o in offs], default=1)
    drop_off = np.zeros((16 * len(drawings), kmax), np.int64)
    drop_w = np.zeros((16 * len(drawings), kmax, 5))
    drop_v = np.zeros((16 * len(drawings), 5), np.int64)
    for i, (offs, ws, vs) in enumerate(drawings):
        for e in range(16):
            r = 16 * i + e
            lab = vs[e].astype(np.int64)
            drop_v[r] = lab[:, 0] * n1 + lab[:, 1]
            drop_off[r] = drop_v[r, 2]
            drop_w[r, :, 2] = 1.0  # padding: the apex itself, error 0
            for q, (p, wt) in enumerate(zip(offs[e], ws[e], strict=True)):
                drop_off[r, q] = int(p[0]) * n1 + int(p[1])
                drop_w[r, q] = wt
    # conflicts (drop_diamonds): larger diamonds coarse to fine, then the b = 2 ones fine to coarse
    sizes = {lev: int(dsize[dlevel == lev].max()) for lev in range(len(steps) - 1) if ok_all[dlevel == lev].any()}
    big_levels = sorted(lev for lev, b in sizes.items() if 2 < b <= DROP_MAX_B)
    drop_order = tuple(big_levels + sorted((lev for lev, b in sizes.items() if b == 2), reverse=True))
    drop_off, drop_w, drop_v = (np.ascontiguousarray(np.moveaxis(x, 0, -1)) for x in (drop_off, drop_w, drop_v))
    hier = Hierarchy(child_tri.reshape(-1, 3), child_kid, child_kid_fan, fan_apex, fan_kid, fan_tri, d_a1, d_a2,
                     ok_all, corner, dkid, dinner, quarter, dsize, dlevel, drop_ok,
                     np.concatenate([corner, dkid], axis=1), kid_other, base_all, kind_all, tuple(interiors),
                     (drop_off, drop_w, drop_v), drop_code, drop_order)
    for v in (hier.child_tri, child_kid, child_kid_fan, fan_apex, fan_kid, fan_tri, d_a1, d_a2, ok_all, corner,
              dkid, dinner, quarter, dsize, dlevel, drop_ok, hier.diamond_ring, kid_other, base_all, kind_all,
              drop_off, drop_w, drop_v, drop_code, *interiors):
        v.setflags(write=False)
    return hier


DROP_MAX_B = 4
"""Largest diamond (window size in samples) that ``drop_diamonds`` tries: the two finest
levels of each kind hold nearly all the gain (measured: 1.171 vs 1.167 x pydelatin's
triangles with every size tried), and larger windows cost more to measure."""


def drop_diamonds(height_m: np.ndarray, present: np.ndarray, max_error_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy vertex removal that keeps the RTIN's implied connectivity.

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
    t = height_m.shape[0] - 1
    n1 = t + 1
    n = n1 * n1
    hier = hierarchy(t)
    flat = np.ascontiguousarray(height_m, dtype=np.float64).ravel()
    dropped = np.zeros(n + 1, dtype=bool)
    flipped = np.zeros(n + 1, dtype=bool)
    ids = np.flatnonzero(present[:-1] & hier.drop_ok[:-1])
    corner_h = flat[hier.diamond_corner.take(ids, axis=0)]  # (k, 4) counter-clockwise from p
    centre_h = flat[ids]
    e_pq = np.abs(centre_h - 0.5 * (corner_h[:, 0] + corner_h[:, 2]))
    e_aa = np.abs(centre_h - 0.5 * (corner_h[:, 1] + corner_h[:, 3]))
    sel = np.flatnonzero((e_pq <= max_error_m) | (e_aa <= max_error_m))
    ids, e_pq, e_aa, corner_h = ids[sel], e_pq[sel], e_aa[sel], corner_h.take(sel, axis=0)
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
        inner_h = flat[hier.diamond_inner.take(mb, axis=0)]  # (k, 4)
        ch = corner_h.take(big, axis=0)
        e2_pq = np.maximum(np.abs(inner_h[:, 0] - 0.75 * ch[:, 0] - 0.25 * ch[:, 2]),
                           np.abs(inner_h[:, 2] - 0.25 * ch[:, 0] - 0.75 * ch[:, 2]))
        e2_aa = np.maximum(np.abs(inner_h[:, 1] - 0.75 * ch[:, 1] - 0.25 * ch[:, 3]),
                           np.abs(inner_h[:, 3] - 0.25 * ch[:, 1] - 0.75 * ch[:, 3]))
        ok_pq = (e_pq[big] <= max_error_m) & (e2_pq <= max_error_m)
        ok_aa = (e_aa[big] <= max_error_m) & (e2_aa <= max_error_m)
        want = np.stack([ok_aa, ok_pq, ok_aa, ok_pq], 1) & ~blocked[:, None]
        gi, hs = np.nonzero(want)
        off, w, v = hier.drop_table  # sample-major: (K, r), (K, 5, r), (5, r)
        code = hier.drop_code[mb[gi]] + 4 * hs + cases.ravel()[4 * gi + hs]  # (e,) drawings
        bb = hier.diamond_base[mb[gi]]
        samples = flat[off.take(code, axis=1) + bb]  # (K, e)
        verts = flat[v.take(code, axis=1) + bb]  # (5, e)
        d = (w.take(code, axis=2) * verts).sum(axis=1)  # (K, e) the drawing at each sample
        d -= samples
        np.abs(d, out=d)
        half_err = np.zeros((len(big), 4))
        half_err[gi, hs] = d.max(axis=0)
        half_err[~want] = np.inf
        e_pq[big] = np.maximum(half_err[:, 1], half_err[:, 3])
        e_aa[big] = np.maximum(half_err[:, 0], half_err[:, 2])
    ok_pq, ok_aa = e_pq <= max_error_m, e_aa <= max_error_m
    sel = np.flatnonzero(ok_pq | ok_aa)
    ids, size = ids[sel], size[sel]
    aa = (ok_aa & (~ok_pq | (e_aa < e_pq)))[sel]
    level = hier.diamond_level[ids]
    covered = np.zeros(n + 1, dtype=bool)
    pinned = np.zeros(n + 1, dtype=bool)
    live = np.zeros(n + 1, dtype=bool)
    for lev in hier.drop_order:
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
        covered |= diamond_interiors(m, t)
        covered[m] = True
    present &= ~covered
    # a diamond left with no edge midpoint and drawn on p-q is a plain unsplit RTIN diamond
    d = np.flatnonzero(dropped[:-1] & ~flipped[:-1])
    plain = present[hier.diamond_kid.take(d, axis=0)].view(np.uint32).ravel() == 0
    dropped[d[plain]] = False
    return dropped, flipped


def diamond_candidates(present: np.ndarray, t: int) -> np.ndarray:
    """Grid ids (ascending) of the diamonds that a mesh with RTIN vertex set ``present``
    may draw specially: centre absent, both apexes present, interior. The wire sends
    one bit for each: drawn on the a1-a2 diagonal."""
    hier = hierarchy(t)
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


def rtin_vertices(err: np.ndarray, max_error_m: float, border: str = "fan") -> np.ndarray:
    """The RTIN's vertex set for a bound: ((t+1)^2 + 1,) bool over grid ids, the last
    entry a False sentinel (for the -1 ids of ``RtinStep``).

    The pyramid is monotone (a midpoint's error bounds its descendants'), so the vertex
    set of the top-down extraction is simply every sample above the bound. In ``fan``
    mode a border midpoint is an RTIN vertex only when a triangle below it is split (a
    split with nothing below it draws the same fan), which makes the set canonical."""
    t = err.shape[0] - 1
    present = np.zeros(err.size + 1, dtype=bool)
    present[:-1] = err.ravel() > max_error_m
    if border == "fan":
        edge = np.zeros((t + 1, t + 1), bool)
        edge[[0, -1]] = True
        edge[:, [0, -1]] = True
        edge[[0, 0, -1, -1], [0, -1, 0, -1]] = False
        present[:-1][edge.ravel()] = False
        close_border(present, t)
    return present


def close_border(present: np.ndarray, t: int) -> None:
    """Mark border midpoints that are apexes of present square centres (in place). Only
    border samples are added: an interior apex may be absent after ``drop_diamonds``
    (the centre of a dropped diamond whose edge midpoint stays). Border samples are never
    square centres, so one pass over a table of each one's square centres does it."""
    ids, centres = _border_apex_table(t)
    present[ids] |= present[centres].any(axis=1)


@functools.lru_cache(maxsize=8)
def _border_apex_table(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Border sample ids (k,) and, for each, the square centres it is an apex of (k, c),
    padded with the sentinel id (t+1)^2."""
    n = (t + 1) ** 2
    on_border = _border_lut(t).astype(bool)
    pairs = []
    for st in rtin_steps(t)[:-1:2]:  # square-centre steps (edge-midpoint steps follow each)
        for a in (st.a1, st.a2):
            keep = (a >= 0) & on_border[np.maximum(a, 0)]
            pairs.append(np.stack([a[keep], st.mid[keep]], 1))
    pairs = np.concatenate(pairs)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    ids, start, count = np.unique(pairs[:, 0], return_index=True, return_counts=True)
    centres = np.full((len(ids), int(count.max())), n, np.int64)
    for j in range(centres.shape[1]):
        has = count > j
        centres[has, j] = pairs[start[has] + j, 1]
    ids = ids.astype(np.int64)
    ids.setflags(write=False)
    centres.setflags(write=False)
    return ids, centres


@functools.lru_cache(maxsize=8)
def _border_lut(t: int) -> np.ndarray:
    """((t+1)^2,) int8: 1 on the tile border."""
    g = np.zeros((t + 1, t + 1), np.int8)
    g[[0, -1]] = 1
    g[:, [0, -1]] = 1
    g = g.ravel()
    g.setflags(write=False)
    return g


def _border_edge_lengths(face_ids: np.ndarray, t: int) -> np.ndarray:
    """(m, 3) int: length of edge k (vertex k -> k+1) if it lies on the tile border, else 0."""
    n1 = t + 1
    r, c = face_ids // n1, face_ids % n1
    r2, c2 = np.roll(r, -1, axis=1), np.roll(c, -1, axis=1)
    same_r = (r == r2) & ((r == 0) | (r == t))
    same_c = (c == c2) & ((c == 0) | (c == t))
    return np.where(same_r, np.abs(c2 - c), 0) + np.where(same_c & ~same_r, np.abs(r2 - r), 0)


def _long_border_edge(face_ids: np.ndarray, t: int) -> np.ndarray:
    return (_border_edge_lengths(face_ids, t) > 1).any(axis=1)


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
        kids = hier.diamond_kid.take(d, axis=0).ravel()
        on = np.flatnonzero(present[kids])
        apexes = present.copy()
        apexes[kids[on]] = False
        outer = hier.kid_other.reshape(-1, 2).take(4 * d[on >> 2] + (on & 3), axis=0).ravel()
        outer = outer[~blocked[table.ravel()[outer]]]
        extra = [hier.child_tri.take(outer, axis=0), _diamond_faces(present, dropped, flipped, t)]
    ids = np.flatnonzero(apexes[:-1])
    # (ndarray.take: several times faster than fancy indexing for rows of 2-D tables)
    sel = np.flatnonzero(~blocked[table.take(ids, axis=0)].ravel())
    out = [hier.child_tri.take(ids[sel >> 2] * 4 + (sel & 3), axis=0)] + extra
    if border == "fan":
        fans = present[hier.fan_apex] & ~blocked[hier.fan_kid]
        out.append(fan_out(hier.fan_tri.take(np.flatnonzero(fans), axis=0), t))
    return np.concatenate(out)


def simplify_grid(
    height_m: np.ndarray, max_error_m: float, border: str = "fan", flips: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive TIN of a tile's height grid within ``max_error_m`` vertical error.

    height_m: ``(T+1, T+1) float32`` metres, T a power of two (256).
    Returns ``grid_rc (n, 2) int32`` [row, col] of the kept samples and ``faces (m, 3)
    int32`` indices into grid_rc, counter-clockwise seen from above (east = +col,
    north = -row). With ``border`` "fan" (default) or "graded" every border sample is
    kept (see BORDERS). The numbering is canonical (``number_vertices``): the wire codec
    rebuilds exactly these arrays from the vertex set.
    """
    _, _, grid_rc, faces = simplify_rtin(height_m, max_error_m, border, flips)
    return grid_rc, faces


def simplify_rtin(
    height_m: np.ndarray, max_error_m: float, border: str = "fan", flips: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """``simplify_grid`` that also returns its RTIN vertex set after ``drop_diamonds`` and
    the flip bits (``present``, ``flipped`` or None; what the wire codec sends), then
    grid_rc, faces. ``flips``: False for the plain RTIN."""
    if not (np.isfinite(max_error_m) and max_error_m >= 0):
        raise ValueError(f"max_error_m must be a finite number >= 0, got {max_error_m!r}")
    err = rtin_errors(height_m, max_error_m, border)
    t = err.shape[0] - 1
    present = rtin_vertices(err, max_error_m, border)
    dropped, flipped = drop_diamonds(height_m, present, max_error_m) if flips else (None, None)
    faces = tin_faces(present, t, border, flipped, dropped)
    grid_rc, faces = number_vertices(faces, t + 1, mesh_vertices(present, t, border))
    return present, flipped, grid_rc, faces


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


def max_vertical_error(height_m: np.ndarray, grid_rc: np.ndarray, faces: np.ndarray) -> float:
    """Measured max |mesh - samples| (m) over every grid sample, by rasterising each face.

    Scanline rasterisation (each face's row span, then the exact column interval on each
    row), vectorised over faces, so long thin fans cost their area, not their bounding
    box. Raises ValueError if some sample is not covered (a hole)."""
    h = np.asarray(height_m, dtype=np.float64)
    p = np.asarray(grid_rc, dtype=np.float64)[np.asarray(faces)]  # (m, 3, 2)
    z = h[p[..., 0].astype(np.int64), p[..., 1].astype(np.int64)]  # (m, 3)
    r_lo, r_hi = p[..., 0].min(axis=1).astype(np.int64), p[..., 0].max(axis=1).astype(np.int64)
    span = r_hi - r_lo + 1
    fid = np.repeat(np.arange(len(p)), span)
    row = (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span) + r_lo[fid]).astype(np.float64)
    # Column interval of each (face, row): where the row line crosses the face's edges.
    lo = np.full(len(fid), np.inf)
    hi = np.full(len(fid), -np.inf)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        ra, ca, rb, cb = p[fid, a, 0], p[fid, a, 1], p[fid, b, 0], p[fid, b, 1]
        crosses = (np.minimum(ra, rb) <= row) & (row <= np.maximum(ra, rb))
        flat_edge = ra == rb
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(flat_edge, ca, ca + (row - ra) * (cb - ca) / (rb - ra))
        x2 = np.where(flat_edge, cb, x)
        lo = np.where(crosses, np.minimum(lo, np.minimum(x, x2)), lo)
        hi = np.where(crosses, np.maximum(hi, np.maximum(x, x2)), hi)
    c0 = np.ceil(lo - 1e-9).astype(np.int64)
    c1 = np.floor(hi + 1e-9).astype(np.int64)
    width = np.maximum(c1 - c0 + 1, 0)
    fid2 = np.repeat(fid, width)
    r = np.repeat(row, width).astype(np.int64)
    c = np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width) + np.repeat(c0, width)
    (r0, c0_), (r1, c1_), (r2, c2_) = (p[fid2, i].T for i in range(3))
    det = (r1 - r0) * (c2_ - c0_) - (r2 - r0) * (c1_ - c0_)
    w1 = ((r - r0) * (c2_ - c0_) - (r2 - r0) * (c - c0_)) / det
    w2 = ((r1 - r0) * (c - c0_) - (r - r0) * (c1_ - c0_)) / det
    zi = (1.0 - w1 - w2) * z[fid2, 0] + w1 * z[fid2, 1] + w2 * z[fid2, 2]
    covered = np.zeros(h.shape, dtype=bool)
    covered[r, c] = True
    if not covered.all():
        raise ValueError("faces do not cover every grid sample (mesh has holes)")
    return float(np.abs(zi - h[r, c]).max())


def children_grid(nw: np.ndarray, ne: np.ndarray, sw: np.ndarray, se: np.ndarray) -> np.ndarray:
    """The four children's (T+1, T+1) grids as one (2T+1, 2T+1) grid (they share edges).
    Raises ValueError if the shared edges disagree."""
    t = nw.shape[0] - 1
    for name, a, b in (("nw/ne", nw[:, -1], ne[:, 0]), ("sw/se", sw[:, -1], se[:, 0])):
        if not np.array_equal(a, b):
            raise ValueError(f"children {name} must share their edge samples")
    for name, a, b in (("nw/sw", nw[-1], sw[0]), ("ne/se", ne[-1], se[0])):
        if not np.array_equal(a, b):
            raise ValueError(f"children {name} must share their edge samples")
    out = np.empty((2 * t + 1, 2 * t + 1), dtype=np.result_type(nw, ne, sw, se))
    out[: t + 1, : t + 1], out[: t + 1, t:] = nw, ne
    out[t:, : t + 1], out[t:, t:] = sw, se
    return out


def geometric_error_m(grid_rc: np.ndarray, faces: np.ndarray, children_height_m: np.ndarray) -> float:
    """The tile's geometric error from data (DESIGN.md section 3): the max vertical
    distance (m) between its mesh and the next level's samples over the same area.

    grid_rc, faces: the tile's TIN; children_height_m: (2T+1, 2T+1) the four children's
    samples (``children_grid``). With exact nesting the even child samples are the tile's
    own, so the mesh's vertices are child samples at twice their grid coordinates."""
    t2 = children_height_m.shape[0] - 1
    if children_height_m.shape != (t2 + 1, t2 + 1) or t2 % 2:
        raise ValueError(f"children_height_m must be (2T+1, 2T+1), got {children_height_m.shape}")
    return max_vertical_error(children_height_m, 2 * np.asarray(grid_rc, dtype=np.int64), faces)


@dataclass(frozen=True, eq=False)
class TileMesh:
    """A tile's render mesh. The first n vertices are the TIN, the last k the skirt.

    grid_rc: (n, 2) int32 [row, col] of the TIN vertices in the tile grid.
    height_m: (n,) float32 their heights (m).
    faces: (m, 3) int32 surface triangles, CCW seen from above.
    skirt_faces: (s, 3) int32 skirt triangles over all n + k vertices, facing outwards.
    skirt_depth_m: how far the skirt hangs below the edge (m).
    vertices_m: (n + k, 3) float32 world positions relative to center_m (m).
    center_m: (3,) float64 world position of the tile centre (m).
    normals: (n + k, 3) float32 unit vertex normals in world axes (skirt copies its edge).
    uv: (n + k, 2) float32 texture coordinates, OpenGL convention (v = 0 at the south row).
    west, south, east, north: int32 TIN vertex indices along each edge, ordered by
      increasing row (west, east) or increasing column (north, south).
    """

    grid_rc: np.ndarray
    height_m: np.ndarray
    faces: np.ndarray
    skirt_faces: np.ndarray
    skirt_depth_m: float
    vertices_m: np.ndarray
    center_m: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray

    @property
    def all_faces(self) -> np.ndarray:
        """(m + s, 3) int32 surface then skirt faces."""
        return np.concatenate([self.faces, self.skirt_faces])

    def to_trimesh(self, image=None):
        """A ``trimesh.Trimesh`` in world metres relative to ``center_m`` (float64 vertices),
        with vertex normals and UVs (textured with ``image``, a PIL image, if given)."""
        import trimesh

        visual = trimesh.visual.TextureVisuals(uv=self.uv.astype(np.float64), image=image)
        return trimesh.Trimesh(
            vertices=self.vertices_m.astype(np.float64),
            faces=self.all_faces,
            vertex_normals=self.normals.astype(np.float64),
            visual=visual,
            process=False,
        )


def edge_indices(grid_rc: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertex indices on the west, south, east and north edges of a tile of size ``t``,
    ordered by increasing row (west, east) or column (south, north). int32 arrays."""
    r, c = grid_rc[:, 0], grid_rc[:, 1]

    def along(mask: np.ndarray, key: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return idx[np.argsort(key[idx], kind="stable")].astype(np.int32)

    return along(c == 0, r), along(r == t, c), along(c == t, r), along(r == 0, c)


def vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(n, 3) float32`` of a mesh (float64 positions)."""
    p = positions[faces]
    fn = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])  # length = 2 * area
    n = len(positions)
    out = np.stack([np.bincount(faces.reshape(-1), np.repeat(fn[:, i], 3), minlength=n) for i in range(3)], 1)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _skirt_faces(edges: tuple[np.ndarray, ...], skirt_of: np.ndarray) -> np.ndarray:
    """Two triangles per edge segment, wound so they face away from the tile.

    West and north edges run with the tile on their left seen from outside... orientation
    is fixed per edge so the skirt's front face points outwards (CCW seen from outside).
    """
    west, south, east, north = edges
    out = []
    # For each edge, (a -> b) is the direction that keeps the tile interior on the left
    # when seen from above, i.e. CCW around the tile: north edge east->west, west edge
    # north->south, south edge west->east, east edge south->north.
    for chain in (north[::-1], west, south, east[::-1]):
        a, b = chain[:-1], chain[1:]
        sa, sb = skirt_of[a], skirt_of[b]
        # Outward-facing quad (a, b, sb, sa) wound CW seen from above == CCW from outside.
        out.append(np.stack([a, sa, sb], 1))
        out.append(np.stack([a, sb, b], 1))
    return np.concatenate(out).astype(np.int32)


def build_tile_mesh(
    height_m: np.ndarray,
    max_error_m: float,
    skirt_depth_m: float,
    to_world: ToWorld,
    center_m: np.ndarray,
    border: str = "fan",
) -> TileMesh:
    """Simplify, skirt and place a tile (the server and exporter path).

    height_m: (T+1, T+1) float32 metres. max_error_m: vertical error bound (m).
    skirt_depth_m: skirt depth (m), usually ``runtime.tiles.skirt_depth_for(max_error_m)``.
    to_world: (rows, cols, height_m) float64 -> (n, 3) float64 world metres.
    center_m: (3,) float64 world position subtracted from every vertex.
    """
    h = np.asarray(height_m, dtype=np.float32)
    grid_rc, faces = simplify_grid(h, max_error_m, border)
    heights = h[grid_rc[:, 0], grid_rc[:, 1]]
    return tile_mesh(grid_rc, heights, faces, skirt_depth_m, to_world, center_m, h.shape[0] - 1)


def tile_mesh(
    grid_rc: np.ndarray,
    height_m: np.ndarray,
    faces: np.ndarray,
    skirt_depth_m: float,
    to_world: ToWorld,
    center_m: np.ndarray,
    grid_size: int,
) -> TileMesh:
    """Skirt, place and shade an already simplified tile (e.g. a decoded wire payload:
    ``tile_mesh(d.grid_rc, d.height_m, d.faces, depth, to_world, centre, d.grid_size)``).

    grid_rc: (n, 2) [row, col] on the tile grid (ints, any dtype); height_m: (n,) metres;
    faces: (m, 3) CCW. Skirts hang from every vertex on the tile border."""
    t = int(grid_size)
    if not (np.isfinite(skirt_depth_m) and skirt_depth_m >= 0):
        raise ValueError(f"skirt_depth_m must be a finite number >= 0, got {skirt_depth_m!r}")
    center = np.asarray(center_m, dtype=np.float64)
    if center.shape != (3,):
        raise ValueError(f"center_m must have shape (3,), got {center.shape}")
    grid_rc = np.round(np.asarray(grid_rc)).astype(np.int32)
    faces = np.asarray(faces, dtype=np.int32)
    heights = np.asarray(height_m, dtype=np.float32)
    edges = edge_indices(grid_rc, t)
    border = np.unique(np.concatenate(edges))
    n, k = len(grid_rc), len(border)
    skirt_of = np.full(n, -1, dtype=np.int32)
    skirt_of[border] = n + np.arange(k, dtype=np.int32)
    rows = np.concatenate([grid_rc[:, 0], grid_rc[border, 0]]).astype(np.float64)
    cols = np.concatenate([grid_rc[:, 1], grid_rc[border, 1]]).astype(np.float64)
    z = np.concatenate([heights, heights[border] - np.float32(skirt_depth_m)]).astype(np.float64)
    world = np.asarray(to_world(rows, cols, z), dtype=np.float64)
    if world.shape != (n + k, 3):
        raise ValueError(f"to_world must return ({n + k}, 3) positions, got {world.shape}")
    normals = vertex_normals(world[:n], faces)
    normals = np.concatenate([normals, normals[border]])
    uv = np.stack([cols / t, 1.0 - rows / t], axis=1).astype(np.float32)
    return TileMesh(
        grid_rc=grid_rc,
        height_m=heights,
        faces=faces,
        skirt_faces=_skirt_faces(edges, skirt_of),
        skirt_depth_m=float(skirt_depth_m),
        vertices_m=(world - center).astype(np.float32),
        center_m=center,
        normals=normals,
        uv=uv,
        west=edges[0],
        south=edges[1],
        east=edges[2],
        north=edges[3],
    )
