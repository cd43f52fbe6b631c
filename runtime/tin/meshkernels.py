"""Compiled twins (``runtime.jit``) of the RTIN error measures in ``runtime.tin.rtin``.

The numpy measures gather a triangle pattern's samples of every block into (K, k) arrays and
reduce them; these loop over blocks and samples with no temporaries. Same bits:

- a triangle's plane at a sample is ``w.T @ corners`` in numpy, a BLAS dgemm (OpenBLAS,
  which accumulates along the 3 vertices with fused multiply-adds: fma(w2, c2, fma(w1, c1,
  w0 * c0)), checked bit for bit against numpy over whole tiles in tests/test_jit_kernels.py).
  With a single block numpy calls dgemv, which sums in another order, so callers keep numpy
  for one block;
- a border fan's value is ``(w * v).sum(axis=0)``: ((w0 v0 + w1 v1) + w2 v2), no fma;
- the error is max |sample - surface| (max does not depend on order).
"""

from __future__ import annotations

import numpy as np

from runtime import jit
from runtime.tin.fma import fma as _fma
from runtime.tin.trismall import tri_small

SMALL_B = 8
"""Levels b <= SMALL_B measure through ``trismall.tri_small`` (straight-line, same terms)."""


@jit.njit
def plane_error_blocks(flat, n1, bi, bj, b, pi, pj, w, vr, vc, out):
    """out[q] = max over the pattern's samples of |sample - plane| in block (bi[q], bj[q]).

    flat ((n1*n1,) float64 heights, row-major), bi, bj (k,) int64 block indices (the block's
    [0, 0] is sample (bi*b, bj*b)), pattern pi, pj (K,) int64 local samples, w (3, K)
    float64 barycentric weights, vr, vc (3,) int64 local vertices; out (k,) float64."""
    kk = pi.shape[0]
    for q in range(bi.shape[0]):
        base = bi[q] * b * n1 + bj[q] * b
        c0 = flat[base + vr[0] * n1 + vc[0]]
        c1 = flat[base + vr[1] * n1 + vc[1]]
        c2 = flat[base + vr[2] * n1 + vc[2]]
        m = 0.0
        for s in range(kk):
            plane = _fma(w[2, s], c2, _fma(w[1, s], c1, w[0, s] * c0))
            d = abs(flat[base + pi[s] * n1 + pj[s]] - plane)
            if d > m:
                m = d
        out[q] = m


@jit.njit
def _tri_error(flat, n1, base, p, pi, pj, pw, pk, vr, vc):
    """plane_error_blocks for one block (flat index ``base`` of its [0, 0]) and packed pattern p."""
    c0 = flat[base + vr[p, 0] * n1 + vc[p, 0]]
    c1 = flat[base + vr[p, 1] * n1 + vc[p, 1]]
    c2 = flat[base + vr[p, 2] * n1 + vc[p, 2]]
    m = 0.0
    for s in range(pk[p]):
        plane = _fma(pw[p, 2, s], c2, _fma(pw[p, 1, s], c1, pw[p, 0, s] * c0))
        d = abs(flat[base + pi[p, s] * n1 + pj[p, s]] - plane)
        if d > m:
            m = d
    return m


@jit.njit
def _gemv_case(k, size, full_fraction):
    """Whether numpy's _masked_plane_error would measure k of size blocks through dgemv
    (one block: another summation order than the compiled dgemm twin)."""
    if k >= full_fraction * size:
        return size < 2
    return k == 1


@jit.njit
def _quarter_error(flat, n1, base, b, k, pi, pj, pw, pk, vr, vc):
    """The error of quarter ``k`` of the b-block at ``base``: straight-line code up to
    ``SMALL_B``, the pattern tables above it (the same terms)."""
    if b <= SMALL_B:
        return tri_small(flat, n1, base, b, k)
    return _tri_error(flat, n1, base, k, pi, pj, pw, pk, vr, vc)


@jit.njit
def rtin_level(flat, n1, b, nb, he, ve, inner_h, inner_v, thr, fan, full_fraction, pi, pj, pw, pk, vr, vc, ce, rng):
    """One level (b >= 4) of ``rtin.rtin_errors`` without its border ring: the four quarter
    triangles of every b-block where their hypotenuse's error allows (he, ve updated in place),
    then the block centres' errors ``ce`` (nb, nb) and the two halves of each plain block.

    Patterns packed by ``rtin._level_patterns(b)``: qn, qs, qw, qe, then the even and the odd
    blocks' halves. Returns 2 when done; 0 (nothing changed) or 1 (quarters done and ``ce``
    before the halves) where numpy would have measured a single block through dgemv, so that
    the caller measures that stage with numpy (same bits either way).

    ``rng`` (nb, nb): where the caller accepts a bound for errors within ``thr``, a bound on the
    errors of every triangle of the block that is within ``thr`` (``block_ranges``: its height
    range; ``tilted_ranges``: its range about a plane), inf elsewhere (measure). A triangle inside
    a block deviates from its plane by at most the block's range (the plane at a sample is a
    convex mix of three samples of the block), so there the bound is written instead of the
    measured error: the same comparisons with ``thr``, no samples read."""
    size = nb * nb
    k0 = k1 = k2 = k3 = 0
    for i in range(nb):
        for j in range(nb):
            k0 += he[i, j] <= thr and inner_h[i, j]
            k1 += he[i + 1, j] <= thr and inner_h[i + 1, j]
            k2 += ve[i, j] <= thr and inner_v[i, j]
            k3 += ve[i, j + 1] <= thr and inner_v[i, j + 1]
    if (_gemv_case(k0, size, full_fraction) or _gemv_case(k1, size, full_fraction)
            or _gemv_case(k2, size, full_fraction) or _gemv_case(k3, size, full_fraction)):
        return 0
    q = np.zeros((4, nb, nb))
    for i in range(nb):
        for j in range(nb):
            base = i * b * n1 + j * b
            if rng[i, j] < np.inf:  # every triangle of the block is within its range (docstring)
                r = rng[i, j]
                if he[i, j] <= thr and inner_h[i, j]:
                    q[0, i, j] = r
                if he[i + 1, j] <= thr and inner_h[i + 1, j]:
                    q[1, i, j] = r
                if ve[i, j] <= thr and inner_v[i, j]:
                    q[2, i, j] = r
                if ve[i, j + 1] <= thr and inner_v[i, j + 1]:
                    q[3, i, j] = r
                continue
            if he[i, j] <= thr and inner_h[i, j]:
                q[0, i, j] = _quarter_error(flat, n1, base, b, 0, pi, pj, pw, pk, vr, vc)
            if he[i + 1, j] <= thr and inner_h[i + 1, j]:
                q[1, i, j] = _quarter_error(flat, n1, base, b, 1, pi, pj, pw, pk, vr, vc)
            if ve[i, j] <= thr and inner_v[i, j]:
                q[2, i, j] = _quarter_error(flat, n1, base, b, 2, pi, pj, pw, pk, vr, vc)
            if ve[i, j + 1] <= thr and inner_v[i, j + 1]:
                q[3, i, j] = _quarter_error(flat, n1, base, b, 3, pi, pj, pw, pk, vr, vc)
    for i in range(nb):
        for j in range(nb):
            he[i, j] = max(he[i, j], q[0, i, j])
            he[i + 1, j] = max(he[i + 1, j], q[1, i, j])
            ve[i, j] = max(ve[i, j], q[2, i, j])
            ve[i, j + 1] = max(ve[i, j + 1], q[3, i, j])
    for i in range(nb):
        for j in range(nb):
            ce[i, j] = max(max(he[i, j], he[i + 1, j]), max(ve[i, j], ve[i, j + 1]))
    # plain blocks (the ring is the caller's in fan mode), by parity sub-grid
    for oi in range(2):
        for oj in range(2):
            k = 0
            for i in range(oi, nb, 2):
                for j in range(oj, nb, 2):
                    ring = fan and (i == 0 or j == 0 or i == nb - 1 or j == nb - 1)
                    k += ce[i, j] <= thr and not ring
            if k and _gemv_case(k, ((nb - oi + 1) // 2) * ((nb - oj + 1) // 2), full_fraction):
                return 1
    for i in range(nb):
        for j in range(nb):
            ring = fan and (i == 0 or j == 0 or i == nb - 1 or j == nb - 1)
            if not (ce[i, j] <= thr and not ring):
                continue
            if rng[i, j] < np.inf:  # the block's range stands for its halves' errors
                ce[i, j] = max(ce[i, j], rng[i, j])
                continue
            p = 4 if (i + j) % 2 == 0 else 6
            base = i * b * n1 + j * b
            if b <= SMALL_B:  # straight-line (runtime.tin.trismallgen), the same terms
                e = max(tri_small(flat, n1, base, b, p), tri_small(flat, n1, base, b, p + 1))
            else:
                e = max(_tri_error(flat, n1, base, p, pi, pj, pw, pk, vr, vc),
                        _tri_error(flat, n1, base, p + 1, pi, pj, pw, pk, vr, vc))
            ce[i, j] = max(ce[i, j], e)
    return 2


RANGE_MARGIN_M = 1e-6
"""Added to a block's range before it stands for its triangles' errors (``block_ranges``): the
measured error rounds its plane's fma terms and the range one subtraction, a few ulps of the
heights apart (~1e-11 m), so a range within the bound by less than this is measured instead."""


@jit.njit
def block_ranges(flat, n1, b, thr, lo, hi, rng):
    """Per b-block (b >= 2) of the (n1, n1) grid ``flat``: lo, hi (nb, nb) the min and max of
    its (b+1)^2 samples, and ``rng`` (nb, nb) hi - lo + RANGE_MARGIN_M where that is <= thr,
    else inf."""
    nb = lo.shape[0]
    for i in range(nb):
        for j in range(nb):
            o = i * b * n1 + j * b
            mn = flat[o]
            mx = mn
            for r in range(b + 1):
                for c in range(b + 1):
                    v = flat[o + r * n1 + c]
                    mn = min(mn, v)
                    mx = max(mx, v)
            lo[i, j], hi[i, j] = mn, mx
            d = (mx - mn) + RANGE_MARGIN_M
            rng[i, j] = d if d <= thr else np.inf


@jit.njit
def coarser_ranges(lo, hi, thr, lo2, hi2, rng):
    """``block_ranges`` of the blocks twice as large from those of a level (lo, hi (2nb, 2nb)):
    a block's samples are its four children's (they share edges). Returns how many are within
    ``thr`` (0: none, nor at any coarser level, whose ranges are larger)."""
    nb = lo2.shape[0]
    k = 0
    for i in range(nb):
        for j in range(nb):
            mn = min(min(lo[2 * i, 2 * j], lo[2 * i, 2 * j + 1]), min(lo[2 * i + 1, 2 * j], lo[2 * i + 1, 2 * j + 1]))
            mx = max(max(hi[2 * i, 2 * j], hi[2 * i, 2 * j + 1]), max(hi[2 * i + 1, 2 * j], hi[2 * i + 1, 2 * j + 1]))
            lo2[i, j], hi2[i, j] = mn, mx
            d = (mx - mn) + RANGE_MARGIN_M
            if d <= thr:
                rng[i, j] = d
                k += 1
            else:
                rng[i, j] = np.inf
    return k


@jit.njit
def tilted_ranges(flat, n1, b, thr, rng):
    """Where ``rng`` (``block_ranges``) is inf, the range of the b-block's heights minus a plane,
    plus RANGE_MARGIN_M, if that is within ``thr``: for any affine q the error of a triangle in
    the block is at most the range of h - q over the block (the triangle's plane of h - q is its
    plane of h minus q), and on a slope h - q varies far less than h. q's gradient is the mean
    of the block's opposite corner differences. Returns how many entries are finite."""
    nb = rng.shape[0]
    k = 0
    for i in range(nb):
        for j in range(nb):
            if rng[i, j] < np.inf:  # already within the bound: a lower value decides nothing
                k += 1
                continue
            o = i * b * n1 + j * b
            c00, c0b = flat[o], flat[o + b]
            cb0, cbb = flat[o + b * n1], flat[o + b * n1 + b]
            gr = ((cb0 - c00) + (cbb - c0b)) / (2.0 * b)  # per row
            gc = ((c0b - c00) + (cbb - cb0)) / (2.0 * b)  # per column
            mn = np.inf
            mx = -np.inf
            for r in range(b + 1):
                base = o + r * n1
                t = gr * r
                for c in range(b + 1):
                    v = flat[base + c] - (t + gc * c)
                    mn = min(mn, v)
                    mx = max(mx, v)
            d = (mx - mn) + RANGE_MARGIN_M
            if d <= thr:
                rng[i, j] = d
                k += 1
    return k


@jit.njit
def fan_error_blocks(flat, n1, base, pi, pj, vr, vc, w, out):
    """out[q] = max |sample - fan| of one border-fan pattern in the block whose [0, 0] is flat
    index base[q]: pi, pj (K,) local samples, vr, vc (3, K) int64 local vertices of each
    sample's fan triangle, w (3, K) float64 weights; out (k,) float64."""
    kk = pi.shape[0]
    for q in range(base.shape[0]):
        o = base[q]
        m = 0.0
        for s in range(kk):
            f = (w[0, s] * flat[o + vr[0, s] * n1 + vc[0, s]] + w[1, s] * flat[o + vr[1, s] * n1 + vc[1, s]]) \
                + w[2, s] * flat[o + vr[2, s] * n1 + vc[2, s]]
            d = abs(flat[o + pi[s] * n1 + pj[s]] - f)
            if d > m:
                m = d
        out[q] = m


@jit.njit
def _norm_at(fl, cc, vals):
    """|x| of one component, else sqrt(((x0^2 + x1^2) + x2^2 ...)) (diamonds._norm's order)."""
    if cc == 1:
        return abs(vals[0])
    acc = vals[0] * vals[0]
    for c in range(1, cc):
        acc = acc + vals[c] * vals[c]
    return np.sqrt(acc)


@jit.njit
def drop_candidates(flats, present, drop_ok, corner, dsize, quarter, kid, inner, drop_code, dbase,
                    off, w, v, nk, thr, ids_out, e_pq_out, e_aa_out, size_out):
    """The measuring half of ``diamonds.drop_diamonds`` (its first filter, then the larger
    diamonds' quarter-point, diagonal and per-drawing errors), the same bits.

    flats (n, C) float64 fields, component-minor (a sample's components in one cache line);
    present ((n + 1,) bool); the ``Hierarchy`` tables; off (r, K), w (r, K, 5), v (r, 5) its
    ``drop_table`` drawing-major, nk (r,) each drawing's samples before its padding (z with
    weight 1, whose error is exactly 0: ``diamonds._drop_rows``); thr the bound. Writes the
    candidates that pass (grid id ascending), their e_pq and e_aa errors (inf for a drawing
    not allowed) and diamond size into the ``*_out`` arrays (at least n long); returns how
    many. A drawing's error is its exact max where it is within ``thr`` and some value above
    ``thr`` otherwise (the measurement stops there): drop_diamonds only compares errors above
    the bound with the bound (an e_aa < e_pq tie-break reads both only when both are within
    it), so its result is numpy's."""
    cc = flats.shape[1]
    n = flats.shape[0]
    nw = w.shape[2]
    vals = np.empty(cc)
    vals2 = np.empty(cc)
    half = np.empty(4)
    corners = np.empty((nw, cc))
    cnt = 0
    for m in range(n):
        if not (present[m] and drop_ok[m]):
            continue
        c0, c1, c2, c3 = corner[m, 0], corner[m, 1], corner[m, 2], corner[m, 3]
        for c in range(cc):
            vals[c] = flats[m, c] - 0.5 * (flats[c0, c] + flats[c2, c])
            vals2[c] = flats[m, c] - 0.5 * (flats[c1, c] + flats[c3, c])
        e_pq = _norm_at(flats, cc, vals)
        e_aa = _norm_at(flats, cc, vals2)
        if not (e_pq <= thr or e_aa <= thr):
            continue
        size = dsize[m]
        if size > 2:
            blocked = False
            for q in range(quarter.shape[1]):
                if present[quarter[m, q]]:
                    blocked = True
            i0, i1, i2, i3 = inner[m, 0], inner[m, 1], inner[m, 2], inner[m, 3]
            for c in range(cc):
                vals[c] = flats[i0, c] - 0.75 * flats[c0, c] - 0.25 * flats[c2, c]
                vals2[c] = flats[i2, c] - 0.25 * flats[c0, c] - 0.75 * flats[c2, c]
            e2_pq = max(_norm_at(flats, cc, vals), _norm_at(flats, cc, vals2))
            for c in range(cc):
                vals[c] = flats[i1, c] - 0.75 * flats[c1, c] - 0.25 * flats[c3, c]
                vals2[c] = flats[i3, c] - 0.25 * flats[c1, c] - 0.75 * flats[c3, c]
            e2_aa = max(_norm_at(flats, cc, vals), _norm_at(flats, cc, vals2))
            ok_pq = e_pq <= thr and e2_pq <= thr
            ok_aa = e_aa <= thr and e2_aa <= thr
            base = dbase[m]
            for h in range(4):
                allowed = (ok_aa if h % 2 == 0 else ok_pq) and not blocked
                if not allowed:
                    half[h] = np.inf
                    continue
                kprev = np.int64(present[kid[m, (h + 3) % 4]])
                case = kprev + 2 * np.int64(present[kid[m, h]])
                code = drop_code[m] + 4 * h + case
                worst = 0.0
                first = True
                for j in range(nw):  # the drawing's vertices, read once (the same values)
                    for c in range(cc):
                        corners[j, c] = flats[v[code, j] + base, c]
                for smp in range(nk[code]):
                    for c in range(cc):
                        d = w[code, smp, 0] * corners[0, c]
                        for j in range(1, nw):
                            d += w[code, smp, j] * corners[j, c]
                        d -= flats[off[code, smp] + base, c]
                        vals[c] = d
                    e = _norm_at(flats, cc, vals)
                    if first or e > worst:
                        worst = e
                        first = False
                    if worst > thr:  # this drawing fails whatever follows: its exact max is never read
                        break
                half[h] = worst
            e_pq = max(half[1], half[3])
            e_aa = max(half[0], half[2])
        ids_out[cnt] = m
        e_pq_out[cnt] = e_pq
        e_aa_out[cnt] = e_aa
        size_out[cnt] = size
        cnt += 1
    return cnt


@jit.njit
def rtin_stream_arrays(present, qgrid, corners, mid, pp, qq, a1, a2, on_border, forced, fan, flags, res):
    """The rtin wire streams' arrays (``runtime.wire._rtin_streams``), integer maths: the
    split bits of every step with a candidate midpoint (``flags``) and the height residuals
    (``res``: the four corners, then each coded midpoint's q minus the floor mean of its
    edge ends). Returns (split count, residual count). -1 ids read the sentinel (last)."""
    nf = 0
    for c in range(4):
        res[c] = qgrid[corners[c]]
    nr = 4
    for k in range(mid.shape[0]):
        sp = present[mid[k]]
        cand = present[a1[k]] or present[a2[k]]
        if cand and not (forced and on_border[k]):
            flags[nf] = sp
            nf += 1
        if sp or (fan and on_border[k]):
            res[nr] = qgrid[mid[k]] - ((qgrid[pp[k]] + qgrid[qq[k]]) >> 1)
            nr += 1
    return nf, nr


@jit.njit
def diamond_candidates(present, diamond_ok, a1, a2, out):
    """``diamonds.diamond_candidates``: ids (ascending) whose centre is absent and both
    apexes present, among ``diamond_ok``; writes them to ``out``, returns how many."""
    k = 0
    for m in range(present.shape[0] - 1):
        if diamond_ok[m] and not present[m] and present[a1[m]] and present[a2[m]]:
            out[k] = m
            k += 1
    return k


@jit.njit
def resolve_drops(ids, level, aa, present, drop_order, kid, a1, a2, corner, kind, dbase, inter, inter_n,
                  dropped, flipped, covered):
    """``diamonds.drop_diamonds``'s conflict rules, level by level in ``drop_order``: a
    candidate (ids ascending, their levels, ``aa`` = drawn on the a1-a2 diagonal) is skipped
    where covered or pinned by an earlier level; of two at one level sharing a present edge
    midpoint the lower id is dropped; each dropped one pins its present edge midpoints and
    corners and covers its inside (``inter`` (kinds, K) padded offsets from its base,
    ``inter_n`` counts) and centre. Every decision of a level reads the state before it, as
    the vectorised numpy does. Sets dropped, flipped, covered ((n + 1,) bool) in place."""
    n1 = present.shape[0]
    pinned = np.zeros(n1, np.bool_)
    live = np.zeros(n1, np.bool_)
    sel = np.empty(ids.shape[0], np.int64)
    keep = np.empty(ids.shape[0], np.bool_)
    for lev in drop_order:
        k = 0
        for q in range(ids.shape[0]):
            m = ids[q]
            if level[q] == lev and not (covered[m] or pinned[m]):
                sel[k] = q
                k += 1
        for r in range(k):
            live[ids[sel[r]]] = True
        for r in range(k):
            m = ids[sel[r]]
            keep[r] = True
            for c in range(4):
                kd = kid[m, c]
                if present[kd]:
                    other = a1[kd] + a2[kd] - m
                    if live[other] and other < m:
                        keep[r] = False
        for r in range(k):
            live[ids[sel[r]]] = False
        for r in range(k):
            if not keep[r]:
                continue
            q = sel[r]
            m = ids[q]
            dropped[m] = True
            if aa[q]:
                flipped[m] = True
            for c in range(4):
                kd = kid[m, c]
                if present[kd]:
                    pinned[kd] = True
                pinned[corner[m, c]] = True
            kd_ = kind[m]
            b = dbase[m]
            for e in range(inter_n[kd_]):
                covered[b + inter[kd_, e]] = True
            covered[m] = True


@jit.njit
def ring_fans(flat, n1, b, need, ce, kinds, boff, bis, bjs, poff, pi, pj, vr, vc, w, rng):
    """``rtin.rtin_errors``'s border ring in fan mode, its fan and corner halves (packed by
    ``rtin._ring_packed``): where ``need`` (nb, nb), a corner half sets the block's ``ce`` to
    inf, a fan half raises it to the fan's error (fan_error_blocks' sum), or to the block's
    range where ``rng <= thr`` (``rtin_level``; a fan's triangles lie in the block too)."""
    for e in range(kinds.shape[0]):
        for q in range(boff[e], boff[e + 1]):
            i, j = bis[q], bjs[q]
            if not need[i, j]:
                continue
            if kinds[e] == 0:
                ce[i, j] = np.inf
                continue
            if rng[i, j] < np.inf:  # the caller passes a range only where it is within thr
                ce[i, j] = max(ce[i, j], rng[i, j])
                continue
            o = i * b * n1 + j * b
            m = 0.0
            for s in range(poff[e], poff[e + 1]):
                f = (w[0, s] * flat[o + vr[0, s] * n1 + vc[0, s]] + w[1, s] * flat[o + vr[1, s] * n1 + vc[1, s]]) \
                    + w[2, s] * flat[o + vr[2, s] * n1 + vc[2, s]]
                d = abs(flat[o + pi[s] * n1 + pj[s]] - f)
                if d > m:
                    m = d
            ce[i, j] = max(ce[i, j], m)


@jit.njit
def ring_planes(flat, n1, b, need, ce, boff, bis, bjs, poff, pi, pj, w, vr, vc, single, rng):
    """``rtin.rtin_errors``'s border ring in fan mode, its plain halves (packed by
    ``rtin._ring_planes_packed``): an entry whose blocks need it (``need`` (nb, nb)) at two or
    more raises their ``ce`` to the half's plane error (plane_error_blocks' fma, numpy's dgemm);
    an entry needed at exactly one block is left to the caller (numpy's dgemv sums in another
    order) and flagged in ``single`` (E,) bool. ``rng`` as in ``ring_fans``."""
    for e in range(boff.shape[0] - 1):
        k = 0
        for q in range(boff[e], boff[e + 1]):
            if need[bis[q], bjs[q]]:
                k += 1
        single[e] = k == 1
        if k < 2:
            continue
        for q in range(boff[e], boff[e + 1]):
            i, j = bis[q], bjs[q]
            if not need[i, j]:
                continue
            if rng[i, j] < np.inf:
                ce[i, j] = max(ce[i, j], rng[i, j])
                continue
            base = i * b * n1 + j * b
            c0 = flat[base + vr[e, 0] * n1 + vc[e, 0]]
            c1 = flat[base + vr[e, 1] * n1 + vc[e, 1]]
            c2 = flat[base + vr[e, 2] * n1 + vc[e, 2]]
            m = 0.0
            for s in range(poff[e], poff[e + 1]):
                plane = _fma(w[2, s], c2, _fma(w[1, s], c1, w[0, s] * c0))
                d = abs(flat[base + pi[s] * n1 + pj[s]] - plane)
                if d > m:
                    m = d
            ce[i, j] = max(ce[i, j], m)


@jit.njit
def enu_component(h, ncl, cl, nn, azsl, horiz, const, out):
    """One component of ``curvature.enu_positions``, elementwise as its numpy expression
    ``((ncl + cl h) horiz + (nn + h) azsl) - const`` (same operations in the same order, no
    fma): h (R, C) float64 m, ncl, cl, nn, azsl (R,) per row, horiz (C,) per column; out (R, C)."""
    for r in range(h.shape[0]):
        a, c_l, b, s = ncl[r], cl[r], nn[r], azsl[r]
        for c in range(h.shape[1]):
            x = h[r, c]
            out[r, c] = ((a + c_l * x) * horiz[c] + (b + x) * s) - const


@jit.njit
def unit_to_u8(a, out):
    """``wire._unit_to_u8`` elementwise: float32(a) * float32(255) in float32, rounded half to
    even, clipped to [0, 255], NaN -> 0; a (H, W, K) float32 any strides, out (H, W, K) uint8."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for k in range(a.shape[2]):
                b = np.float32(a[i, j, k] * np.float32(255.0))
                if b != b:
                    out[i, j, k] = 0
                    continue
                b = np.rint(b)
                if b < 0.0:
                    b = np.float32(0.0)
                elif b > 255.0:
                    b = np.float32(255.0)
                out[i, j, k] = np.uint8(b)


@jit.njit
def _nanmax(a, b):
    """np.maximum of two float64 scalars (NaN wins)."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a >= b else b


@jit.njit
def rtin_finest(h, he, ve, inner_h, inner_v, fan, corner_inf, err, ce):
    """``rtin.rtin_errors``'s finest level (b = 2) in one pass, numpy's operations per
    element: the edge midpoints' own errors |m - 0.5 (a + b)| where ``inner_*`` raised
    into ``he`` (nb+1, nb) and ``ve`` (nb, nb+1) (in place), the square centres' errors
    against the diagonal of their parity raised to their four edges' (``ce`` (nb, nb)),
    in fan mode the corner squares' ``corner_inf`` (4,) (inf or 0: tile corners, order
    (0,0), (0,-1), (-1,0), (-1,-1)); all written into ``err`` (t+1, t+1) float64."""
    nb = ce.shape[0]
    for i in range(nb + 1):
        for j in range(nb):
            o = abs(h[2 * i, 2 * j + 1] - 0.5 * (h[2 * i, 2 * j] + h[2 * i, 2 * j + 2]))
            he[i, j] = _nanmax(he[i, j], o if inner_h[i, j] else 0.0)
            err[2 * i, 2 * j + 1] = he[i, j]
    for i in range(nb):
        for j in range(nb + 1):
            o = abs(h[2 * i + 1, 2 * j] - 0.5 * (h[2 * i, 2 * j] + h[2 * i + 2, 2 * j]))
            ve[i, j] = _nanmax(ve[i, j], o if inner_v[i, j] else 0.0)
            err[2 * i + 1, 2 * j] = ve[i, j]
    for i in range(nb):
        for j in range(nb):
            if (i + j) % 2 == 0:
                d = 0.5 * (h[2 * i, 2 * j] + h[2 * i + 2, 2 * j + 2])
            else:
                d = 0.5 * (h[2 * i, 2 * j + 2] + h[2 * i + 2, 2 * j])
            c = abs(h[2 * i + 1, 2 * j + 1] - d)
            ce[i, j] = _nanmax(c, _nanmax(_nanmax(he[i, j], he[i + 1, j]), _nanmax(ve[i, j], ve[i, j + 1])))
    if fan:
        ce[0, 0] = _nanmax(ce[0, 0], corner_inf[0])
        ce[0, nb - 1] = _nanmax(ce[0, nb - 1], corner_inf[1])
        ce[nb - 1, 0] = _nanmax(ce[nb - 1, 0], corner_inf[2])
        ce[nb - 1, nb - 1] = _nanmax(ce[nb - 1, nb - 1], corner_inf[3])
    for i in range(nb):
        for j in range(nb):
            err[2 * i + 1, 2 * j + 1] = ce[i, j]
