"""RTIN simplification, first half: the error pyramid and the vertex set it implies.

The simplification is a right-triangulated irregular network (RTIN), the 4-8 mesh of
Evans, Kirkpatrick & Townsend (2001) as used by Martini (mapbox, V. Agafonkin 2019):
a triangle is split at the midpoint of its hypotenuse while its own vertical error, or
that of any triangle below it, exceeds the bound. Unlike Martini the error is exact
(the max over every sample a triangle covers), so the bound holds. The hierarchy is a
fixed lattice per level (``runtime.tin.hierarchy``); the error pyramid and the vertex
set are computed level by level over whole grids, a few milliseconds in numpy.

Every border sample is a vertex, so tiles sharing an edge meet exactly; with the
default ``fan`` border the triangles along the border are fans through all their border
samples instead of a refinement of the whole RTIN towards the border (see BORDERS).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import runtime.tin.levelkernels as levelkernels
import runtime.tin.meshkernels as meshkernels
from runtime import jit
from runtime.tin.hierarchy import _border_lut, rtin_steps


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


def _plane_error_kernel(flat: np.ndarray, b: int, bi: np.ndarray, bj: np.ndarray, verts: tuple) -> np.ndarray:
    """Max |sample - plane| of one triangle pattern in blocks (bi, bj) (k,) of a level of
    b-blocks, compiled (``runtime.tin.meshkernels``): (k,) float64."""
    i, j, w, v = _pattern(b, verts)
    out = np.empty(len(bi))
    n1 = int(round(np.sqrt(flat.size)))
    meshkernels.plane_error_blocks(flat, n1, np.ascontiguousarray(bi, dtype=np.int64),
                               np.ascontiguousarray(bj, dtype=np.int64), b, i, j, w, v[0], v[1], out)
    return out


TILTED_MAX_B = 4
"""Levels b <= this also try a block's range about a plane (``exact=False``): the smallest blocks
hold most triangles and most of the error pyramid's time. Plane teleport tiles at levels >= 8:
1.62 ms a tile with plain ranges, 1.19 with b <= 4, 1.21 with b <= 8, 1.27 with b <= 16 (exact
2.42); the earth's up component (levels >= 6): 1.16 either way (exact 1.34)."""

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
    full = k >= FULL_LEVEL_FRACTION * need.size
    if jit.ENABLED and (need.size if full else k) >= 2:  # numpy's dgemm path, compiled (same bits)
        out = np.zeros(need.shape)
        if k:
            bi, bj = np.nonzero(need)
            out[bi, bj] = _plane_error_kernel(flat, b, origin[0] + stride * bi, origin[1] + stride * bj, verts)
        return out
    if full:
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
    if jit.ENABLED:  # the same sum, compiled (same bits)
        out = np.empty(len(base))
        meshkernels.fan_error_blocks(flat, n1, np.ascontiguousarray(base, dtype=np.int64), i, j, vr, vc, w, out)
        return out
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


def rtin_errors(
    height_m: np.ndarray, max_error_m: float = np.inf, border: str = "fan", exact: bool = True
) -> np.ndarray:
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

    ``exact=False`` (compiled path, levels b >= 4): an entry at or below ``max_error_m`` may
    be any value from its exact error up to the bound. Where a block's height range (plus
    ``meshkernels.RANGE_MARGIN_M``) is within the bound, it stands for the errors of the block's
    triangles (it bounds them) and no sample is measured; blocks of ``TILTED_MAX_B`` samples
    or fewer also try their range about a plane (a slope's is small). Entries above the bound
    are the exact ones' bits, so every comparison with the bound, and ``rtin_vertices``'
    vertex set, is the same. For a caller that only compares with the bound
    (``simplify.rtin_vertex_set``), not one that combines entries (a norm).
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
    ranged = not exact and jit.ENABLED  # block ranges stand for errors within the bound
    ranges_left = ranged  # some block's plain range was within the bound (coarser ones only grow)
    lo = hi = None  # the previous level's block minima and maxima (``meshkernels.block_ranges``)
    while s < t:
        b = 2 * s
        nb = t // b
        rng = np.full((nb, nb), inf)  # a block's range where within the bound, else inf (measure)
        if ranged and s > 1:
            if ranges_left:
                lo2, hi2 = np.empty((nb, nb)), np.empty((nb, nb))
                if lo is None:
                    meshkernels.block_ranges(flat, n1, b, thr, lo2, hi2, rng)
                    lo, hi = lo2, hi2
                elif meshkernels.coarser_ranges(lo, hi, thr, lo2, hi2, rng):
                    lo, hi = lo2, hi2
                else:  # no block within the bound: none at coarser levels either
                    ranges_left = False
            if b <= TILTED_MAX_B:  # on slopes: the range about a plane (``meshkernels.tilted_ranges``)
                meshkernels.tilted_ranges(flat, n1, b, thr, rng)
        bt = None  # (b+1, b+1, nb, nb) block views, made where numpy measures (below)
        stage = 0  # stages measured compiled: 0 none, 1 the quarters, 2 the halves too
        if fan and jit.ENABLED and s > 1:  # the whole level in one compiled call where it can (same bits)
            inner_h, inner_v = _inner(nb, fan)
            he, ve, ce = np.empty((nb + 1, nb)), np.empty((nb, nb + 1)), np.empty((nb, nb))
            planes = _ring_planes_packed(b, t)
            stage = levelkernels.level_fan(flat, n1, b, centres, he, ve, inner_h, inner_v, thr, FULL_LEVEL_FRACTION,
                                           *_level_patterns(b), *_ring_packed(b, t), *planes,
                                           np.zeros(len(planes[0]) - 1, bool), err, ce, rng)
            if stage == 3:
                centres = ce
                s = b
                continue
        # Descendants of edge midpoints: the four s-square centres at (+-s/2, +-s/2).
        if stage:  # level_fan made them (and measured the quarters)
            pass
        elif s > 1:
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
        inner_h, inner_v = _inner(nb, fan)
        if b == 2 and jit.ENABLED and nb >= 2:  # the finest level below in one compiled pass (same bits)
            ce = np.empty((nb, nb))
            meshkernels.rtin_finest(h, he, ve, inner_h, inner_v, fan, _corner_inf(t), err, ce)
            centres = ce
            s = b
            continue
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
        if jit.ENABLED and not (fan and s > 1):  # the level's quarters and plain halves, compiled (same bits)
            ce = np.empty((nb, nb))
            stage = meshkernels.rtin_level(flat, n1, b, nb, he, ve, inner_h, inner_v, thr, fan, FULL_LEVEL_FRACTION,
                                       *_level_patterns(b), ce, rng)
        if stage < 1:
            bt = sliding_window_view(h, (b + 1, b + 1))[::b, ::b].transpose(2, 3, 0, 1)
            # Quarter triangles of each b-block: hypotenuse on a block edge, apex at its centre.
            qn = _masked_plane_error(bt, flat, (he[:-1] <= thr) & inner_h[:-1], b, _quarters(b)[0])
            qs = _masked_plane_error(bt, flat, (he[1:] <= thr) & inner_h[1:], b, _quarters(b)[1])
            qw = _masked_plane_error(bt, flat, (ve[:, :-1] <= thr) & inner_v[:, :-1], b, _quarters(b)[2])
            qe = _masked_plane_error(bt, flat, (ve[:, 1:] <= thr) & inner_v[:, 1:], b, _quarters(b)[3])
            he[:-1] = np.maximum(he[:-1], qn)
            he[1:] = np.maximum(he[1:], qs)
            ve[:, :-1] = np.maximum(ve[:, :-1], qw)
            ve[:, 1:] = np.maximum(ve[:, 1:], qe)
            # Halves of each b-block along its diagonal, which alternates with block parity.
            ce = np.maximum(np.maximum(he[:-1], he[1:]), np.maximum(ve[:, :-1], ve[:, 1:]))
        err[0::b, s::b] = he
        err[s::b, 0::b] = ve
        need = ce <= thr  # after the halves (stage 2) the ring blocks' entries are still these
        plain = need & ~_ring(nb) if fan else need
        # Blocks of one parity are two strided sub-grids (views), so each diagonal is
        # measured only where it exists.
        for origins, d1, d2 in _halves(b) if stage < 2 else ():
            for oi, oj in origins:
                sel = plain[oi::2, oj::2]
                if not sel.any():
                    continue
                if bt is None:
                    bt = sliding_window_view(h, (b + 1, b + 1))[::b, ::b].transpose(2, 3, 0, 1)
                sub = bt[:, :, oi::2, oj::2]
                e = np.maximum(
                    _masked_plane_error(sub, flat, sel, b, d1, (oi, oj), 2),
                    _masked_plane_error(sub, flat, sel, b, d2, (oi, oj), 2),
                )
                ce[oi::2, oj::2] = np.maximum(ce[oi::2, oj::2], e)
        ring = _ring_halves(b, t) if fan else ()
        if fan and jit.ENABLED:  # fans, corners and planes compiled (same bits); one-block planes as below
            meshkernels.ring_fans(flat, n1, b, need, ce, *_ring_packed(b, t), rng)
            planes = _ring_planes(b, t)
            single = np.zeros(len(planes), bool)
            if planes:
                meshkernels.ring_planes(flat, n1, b, need, ce, *_ring_planes_packed(b, t), single, rng)
            ring = [planes[e] for e in np.flatnonzero(single)]
        if fan:
            for mask, kind, geo in ring:
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


@functools.lru_cache(maxsize=64)
def _inner(nb: int, fan: bool) -> tuple[np.ndarray, np.ndarray]:
    """The edge midpoints of a level of nb x nb blocks whose quarters are measured: horizontal
    edges (nb+1, nb) and vertical ones (nb, nb+1) bool, all but the tile border's in fan mode
    (its quarters are measured through their children). Read-only (shared by every tile)."""
    inner_h = np.ones((nb + 1, nb), bool)
    inner_v = np.ones((nb, nb + 1), bool)
    if fan:
        inner_h[[0, -1]] = False
        inner_v[:, [0, -1]] = False
    inner_h.setflags(write=False)
    inner_v.setflags(write=False)
    return inner_h, inner_v


@functools.lru_cache(maxsize=8)
def _corner_inf(t: int) -> np.ndarray:
    """``np.where(_corner_halves(2, t), inf, 0.0)``, read-only."""
    out = np.where(_corner_halves(2, t), np.inf, 0.0)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=64)
def _ring_planes(b: int, t: int) -> list:
    """The "plane" entries of ``_ring_halves(b, t)`` (measured through numpy's BLAS path)."""
    return [e for e in _ring_halves(b, t) if e[1] == "plane"]


@functools.lru_cache(maxsize=64)
def _ring_planes_packed(b: int, t: int) -> tuple[np.ndarray, ...]:
    """``_ring_planes(b, t)`` packed for ``meshkernels.ring_planes``: block offsets (E+1,) into
    rows, cols (k,), pattern offsets (E+1,) into the concatenated ``_pattern`` samples pi, pj
    (K,) int64 and weights w (3, K) float64, the vertices' rows and cols (E, 3) int64."""
    boff, bis, bjs, poff, pis, pjs, ws, vrs, vcs = [0], [], [], [0], [], [], [], [], []
    for mask, _, verts in _ring_planes(b, t):
        bi, bj = np.nonzero(mask)
        i, j, w, v = _pattern(b, verts)
        bis.append(bi)
        bjs.append(bj)
        boff.append(boff[-1] + len(bi))
        pis.append(i)
        pjs.append(j)
        ws.append(w)
        poff.append(poff[-1] + len(i))
        vrs.append(v[0])
        vcs.append(v[1])
    i64 = [np.ascontiguousarray(np.concatenate(a + [np.zeros(0, np.int64)]), dtype=np.int64) for a in (bis, bjs)]
    p64 = [np.ascontiguousarray(np.concatenate(a + [np.zeros(0, np.int64)]), dtype=np.int64) for a in (pis, pjs)]
    w = np.ascontiguousarray(np.concatenate(ws, axis=1) if ws else np.zeros((3, 0)), dtype=np.float64)
    v = [np.ascontiguousarray(np.array(a, np.int64).reshape(-1, 3)) for a in (vrs, vcs)]
    return (np.array(boff, np.int64), *i64, np.array(poff, np.int64), *p64, w, *v)


@functools.lru_cache(maxsize=64)
def _ring_packed(b: int, t: int) -> tuple[np.ndarray, ...]:
    """The fan and corner entries of ``_ring_halves(b, t)`` packed for ``meshkernels.ring_fans``:
    kind (E,) (0 corner, 1 fan), block offsets (E+1,) into rows, cols (k,), pattern offsets
    (E+1,) into the concatenated ``_fan_pattern`` samples (pi, pj (K,), vr, vc (3, K) int64,
    w (3, K) float64)."""
    kinds, boff, bis, bjs, poff, pats = [], [0], [], [], [0], []
    for mask, kind, geo in _ring_halves(b, t):
        if kind == "plane":
            continue
        bi, bj = np.nonzero(mask)
        kinds.append(0 if kind == "corner" else 1)
        bis.append(bi)
        bjs.append(bj)
        boff.append(boff[-1] + len(bi))
        pat = _fan_pattern(b, *geo) if kind == "fan" else tuple(np.zeros((0,) if k < 2 else (3, 0)) for k in range(5))
        pats.append(pat)
        poff.append(poff[-1] + len(pat[0]))
    cat = [np.concatenate([p[k] for p in pats], axis=-1) if pats else np.zeros((3, 0)) for k in range(5)]
    i64 = [np.ascontiguousarray(a, dtype=np.int64) for a in cat[:4]]
    return (np.array(kinds, np.int64), np.array(boff, np.int64), np.concatenate(bis + [np.zeros(0, np.int64)]),
            np.concatenate(bjs + [np.zeros(0, np.int64)]), np.array(poff, np.int64), *i64,
            np.ascontiguousarray(cat[4], dtype=np.float64))


def _quarters(b: int) -> tuple:
    """A b-block's quarter triangles (hypotenuse on a block edge, apex at its centre): north,
    south, west, east, as ``_pattern`` vertices."""
    s = b // 2
    return (((0, 0), (0, b), (s, s)), ((b, b), (b, 0), (s, s)), ((b, 0), (0, 0), (s, s)), ((0, b), (b, b), (s, s)))


def _halves(b: int) -> tuple:
    """(parity sub-grid origins, half 1, half 2) for the even then the odd blocks."""
    return ((((0, 0), (1, 1)), ((0, 0), (b, b), (0, b)), ((b, b), (0, 0), (b, 0))),
            (((0, 1), (1, 0)), ((0, b), (b, 0), (0, 0)), ((b, 0), (0, b), (b, b))))


@functools.lru_cache(maxsize=16)
def _level_patterns(b: int) -> tuple[np.ndarray, ...]:
    """``_pattern`` of the quarters then the even and odd halves (8), packed for
    ``meshkernels.rtin_level``: rows, cols (8, K) int64, weights (8, 3, K) float64 (zero padded),
    counts (8,), vertex rows, cols (8, 3) int64."""
    pats = [_pattern(b, v) for v in _quarters(b) + tuple(d for _, d1, d2 in _halves(b) for d in (d1, d2))]
    kmax = max(len(p[0]) for p in pats)
    pi, pj = np.zeros((8, kmax), np.int64), np.zeros((8, kmax), np.int64)
    pw = np.zeros((8, 3, kmax))
    for n, (i, j, w, _) in enumerate(pats):
        pi[n, : len(i)], pj[n, : len(j)], pw[n, :, : len(i)] = i, j, w
    pk = np.array([len(p[0]) for p in pats], np.int64)
    vr = np.array([p[3][0] for p in pats], np.int64)
    vc = np.array([p[3][1] for p in pats], np.int64)
    return pi, pj, pw, pk, vr, vc


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
    if jit.ENABLED and len(base) >= 2:  # numpy's dgemm path, compiled (same bits)
        return _plane_error_kernel(flat, b, base // (b * n1), (base % n1) // b, verts)
    i, j, w, v = _pattern(b, verts)
    corners = flat[(v[0] * n1 + v[1])[:, None] + base]  # (3, k)
    d = flat[(i * n1 + j)[:, None] + base]  # (K, k)
    d -= w.T @ corners
    np.abs(d, out=d)
    return d.max(axis=0)


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
