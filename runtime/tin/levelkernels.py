"""One level of ``runtime.tin.rtin.rtin_errors`` (b >= 4, fan border) in one compiled call:
the glue between ``meshkernels``' passes (the edge midpoints from the previous level's square
centres, the blocks that need their halves, the writes into the error pyramid), which numpy
did in ~25 small array operations a level. Same bits: maxima, comparisons and copies only."""

from __future__ import annotations

import numpy as np

from runtime import jit
from runtime.tin.meshkernels import ring_fans, ring_planes, rtin_level


@jit.njit
def level_edges(centres, he, ve):
    """The edge midpoints' errors of a level from the previous level's square centres
    ``centres`` (2nb, 2nb): he (nb+1, nb) the max of the (up to) four centres beside each
    horizontal edge midpoint (rows 2r-1, 2r, cols 2c, 2c+1), ve (nb, nb+1) likewise (rows
    2r, 2r+1, cols 2c-1, 2c), 0 where none (numpy's zero padding; errors are >= 0 and never
    NaN, so the order of the max does not matter)."""
    n2 = centres.shape[0]
    nb = n2 // 2
    for r in range(nb + 1):
        for c in range(nb):
            m = 0.0
            for i in (2 * r - 1, 2 * r):
                if 0 <= i < n2:
                    m = max(m, max(centres[i, 2 * c], centres[i, 2 * c + 1]))
            he[r, c] = m
    for r in range(nb):
        for c in range(nb + 1):
            m = 0.0
            for j in (2 * c - 1, 2 * c):
                if 0 <= j < n2:
                    m = max(m, max(centres[2 * r, j], centres[2 * r + 1, j]))
            ve[r, c] = m


@jit.njit
def level_fan(flat, n1, b, centres, he, ve, inner_h, inner_v, thr, full_fraction, pi, pj, pw, pk, vr, vc,
              kinds, boff, bis, bjs, poff, fpi, fpj, fvr, fvc, fw,
              pboff, pbis, pbjs, ppoff, ppi, ppj, ppw, pvr, pvc, single, err, ce, rng):
    """``level_edges``, ``meshkernels.rtin_level`` (patterns ``rtin._level_patterns(b)``), then
    where that finished (2) the border ring: ``ring_fans`` (``rtin._ring_packed``) and
    ``ring_planes`` (``rtin._ring_planes_packed``; ``single`` (E,) scratch), unless a ring
    plane is needed at a single block (numpy's dgemv). Returns 3 when the level is complete,
    he, ve and ce (nb, nb) then written into ``err`` (t+1, t+1) as numpy does; otherwise
    ``rtin_level``'s stage (0, 1 or 2) with he and ve made, the ring untouched, and the caller
    goes on with numpy from there. ``rng``: ``meshkernels.rtin_level``'s block ranges (inf: measure)."""
    nb = ce.shape[0]
    s = b // 2
    level_edges(centres, he, ve)
    stage = rtin_level(flat, n1, b, nb, he, ve, inner_h, inner_v, thr, True, full_fraction, pi, pj, pw, pk, vr, vc,
                       ce, rng)
    if stage < 2:
        return stage
    need = np.empty((nb, nb), np.bool_)
    for i in range(nb):
        for j in range(nb):
            need[i, j] = ce[i, j] <= thr
    for e in range(pboff.shape[0] - 1):
        k = 0
        for q in range(pboff[e], pboff[e + 1]):
            if need[pbis[q], pbjs[q]]:
                k += 1
        if k == 1:
            return stage
    ring_fans(flat, n1, b, need, ce, kinds, boff, bis, bjs, poff, fpi, fpj, fvr, fvc, fw, rng)
    if pboff.shape[0] > 1:
        ring_planes(flat, n1, b, need, ce, pboff, pbis, pbjs, ppoff, ppi, ppj, ppw, pvr, pvc, single, rng)
    for i in range(nb + 1):
        for j in range(nb):
            err[i * b, s + j * b] = he[i, j]
    for i in range(nb):
        for j in range(nb + 1):
            err[s + i * b, j * b] = ve[i, j]
    for i in range(nb):
        for j in range(nb):
            err[s + i * b, s + j * b] = ce[i, j]
    return 3
