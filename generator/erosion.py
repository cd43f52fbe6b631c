"""Flow-routed incision for the fractal refiner (version 6): drainage instead of grain.

Versions 3-5 add independent detail to every new sample, which reads as lumpy grain: on the
deep cascade 8-40 strict local extrema per 1000 samples where real 10-30 m mountain DEMs have
0.5-4, and no valleys that join. Version 6 runs, after the v5 detail, a bounded erosion step
on the child grid of every level, on new samples only (even samples are the parents: nesting
stays exact):

1. **Clean** (one Jacobi pass): a new sample that is a strict local minimum of its 8
   neighbours is raised to the mean of its two lowest neighbours, a strict maximum lowered
   to the mean of its two highest (so it keeps one lower or one higher neighbour, no flat);
   with ``creep`` > 0 the other new samples move that share toward their neighbours' mean
   (hillslope diffusion: off in ``fractal.V6``, 0.5 in ``fractal.V6_CARVE``, whose detail is
   1.5x before the step so that the roughness feedback does not lose what the creep smooths).
2. **Route**: D8 steepest descent on the cleaned heights, in metres per metre (east-west
   distances scaled by the row's east-west spacing, so nothing changes direction toward the
   poles); a sample with no lower neighbour has no receiver.
3. **Accumulate**: ``radius`` Jacobi iterations of A(x) = 1 + sum of A over the neighbours
   whose receiver is x: A counts the upstream samples within ``radius`` steps, a quantity of
   a bounded neighbourhood.
   Optionally (``flow_smooth`` > 0, off in both presets) each routed new sample then moves
   that share toward the mean of its receiver and its main donor (the upstream neighbour with
   the largest count): smoothing along the flow, not across it, so the detail streaks
   downslope. It reads one sample further (:func:`reach`).
4. **Incise**: z -= q(A) * (z - z_receiver), q(A) = min(q_max, k max(0, A^m - (radius+1)^m))
   * fade: a stream-power-like lowering proportional to the local drop (flat ground, a plain
   or a valley floor, is not touched) for converging flow only (a plane's parallel flow has
   A = radius + 1). q <= 1 keeps every sample at or above its receiver's old height, so
   incision digs no pit. ``fade`` (the caller's) is 0 at and below vehicle scale.
5. **Breach** (one pass): a parent (even sample, fixed) left a strict pit or peak by the new
   samples around it drains through the midpoint toward its lowest (highest) parent
   neighbour, which becomes the two parents' mean. Without it the parents carried two thirds
   of the extrema left after cleaning.
6. **Clean** again (one pass, no creep).

Each level works at its own spacing, and the channels it deepens are the next level's
parents, whose midpoints route into them again. The step is a pure function of the child
heights within :func:`reach` = ``radius + 6`` samples (+1 with ``flow_smooth``); the refiner
computes children over an extended window (its margin grows by ``ceil(reach / 2)`` parents)
and keeps the block's window, so blocks, batches and orders give the same bits.

:func:`erode` is the numpy reference (shifted slices, fixed order, float32); with
``runtime.jit`` on, :func:`erode` calls :func:`_erode_kernel`, the same float32 operations
in the same order (tests compare the two).
"""

from __future__ import annotations

import math

import numpy as np

from runtime import jit

OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""The 8 neighbours (row, column offset) in the fixed order receivers are chosen in."""
_OPPOSITE = (7, 6, 5, 4, 3, 2, 1, 0)


def reach(radius: int, flow_smooth: bool = False) -> int:
    """Child samples the step reads beyond a sample it writes: the clean (1), the route (1),
    the ``radius`` accumulation steps, the smoothing along flow (1, where on), the parents'
    breach (3) and the second clean (1)."""
    return radius + 6 + (1 if flow_smooth else 0)


def incision_table(radius: int, k: float, m: float, q_max: float, fade: float) -> np.ndarray:
    """q(A) = min(q_max, k max(0, A^m - (radius + 1)^m)) * fade for A = 0 .. (2 radius + 1)^2
    (every possible upstream count; radius + 1 is a plane's parallel flow, so only converging
    flow incises), float32 (float64 libm once per call: the same table on every backend)."""
    a = np.arange((2 * radius + 1) ** 2 + 1, dtype=np.float64)
    q = np.minimum(q_max, k * np.maximum(0.0, a**m - (radius + 1.0) ** m)) * fade
    return q.astype(np.float32)


def inverse_distances(ew: np.ndarray) -> np.ndarray:
    """(B, H) east-west / north-south spacing per child row -> (B, H, 8) float32 1 / distance
    to each neighbour of OFFSETS, in north-south samples (ew clipped at 1e-3 near a pole)."""
    e = np.maximum(np.asarray(ew, dtype=np.float64), 1e-3)[..., None]
    di = np.array([abs(o[0]) for o in OFFSETS], dtype=np.float64)
    dj = np.array([abs(o[1]) for o in OFFSETS], dtype=np.float64)
    return (1.0 / np.sqrt(di * di + (dj * e) ** 2)).astype(np.float32)


def fade(child_spacing_m: float, fine_m: float, coarse_m: float) -> float:
    """Share of the incision at this child spacing: 0 at or below ``fine_m``, 1 at or above
    ``coarse_m``, linear in log spacing between."""
    if child_spacing_m <= fine_m:
        return 0.0
    if child_spacing_m >= coarse_m:
        return 1.0
    return math.log(child_spacing_m / fine_m) / math.log(coarse_m / fine_m)


def erode(z: np.ndarray, inv_d: np.ndarray, radius: int, table: np.ndarray, creep: float = 0.0,
          flow_smooth: float = 0.0) -> np.ndarray:
    """The erosion step on (B, H, W) float32 child heights whose [0, 0] is an even (parent)
    sample; inv_d (B, H, 8) from :func:`inverse_distances`; table from
    :func:`incision_table`. Returns a new (B, H, W) float32 array: even samples unchanged,
    samples within ``reach(radius)`` of the edge not valid (the caller crops them)."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    inv_d = np.ascontiguousarray(inv_d, dtype=np.float32)
    table = np.ascontiguousarray(table, dtype=np.float32)
    if z.ndim != 3 or inv_d.shape != (*z.shape[:2], 8):
        raise ValueError(f"z must be (B, H, W) and inv_d (B, H, 8), got {z.shape} and {inv_d.shape}")
    if table.shape[0] < (2 * radius + 1) ** 2 + 1:
        raise ValueError(f"table needs {(2 * radius + 1) ** 2 + 1} entries for radius {radius}, got {table.shape[0]}")
    if jit.ENABLED:
        out = np.empty_like(z)
        _erode_kernel(z, inv_d, int(radius), table, np.float32(creep), np.float32(flow_smooth), out)
        return out
    return _erode_numpy(z, inv_d, radius, table, np.float32(creep), np.float32(flow_smooth))


def _new_mask(h: int, w: int) -> np.ndarray:
    """(h, w) bool: True at new (not even, even) samples."""
    i = np.arange(h)[:, None] % 2
    j = np.arange(w)[None, :] % 2
    return (i + j) > 0


def _shift(a, di: int, dj: int):
    """The interior view of a (..., H, W) array moved by (di, dj): a[x + (di, dj)] at interior x."""
    h, w = a.shape[-2], a.shape[-1]
    return a[..., 1 + di : h - 1 + di, 1 + dj : w - 1 + dj]


def _clean(z: np.ndarray, new: np.ndarray, creep=np.float32(0.0)) -> np.ndarray:
    """One Jacobi pass of rule 1 on the interior new samples (float32); with ``creep`` > 0
    the other new samples move that share toward the mean of their 8 neighbours."""
    out = z.copy()
    nb = np.stack([_shift(z, di, dj) for di, dj in OFFSETS])  # (8, B, H-2, W-2)
    srt = np.sort(nb, axis=0)
    c = z[:, 1:-1, 1:-1]
    pit = (c < srt[0]) & new[1:-1, 1:-1]
    peak = (c > srt[7]) & new[1:-1, 1:-1]
    half = np.float32(0.5)
    if creep > 0:
        tot = nb[0]
        for k in range(1, 8):
            tot = tot + nb[k]
        c = np.where(new[1:-1, 1:-1], c + (tot * np.float32(0.125) - c) * creep, c)
    v = np.where(pit, (srt[0] + srt[1]) * half, c)
    out[:, 1:-1, 1:-1] = np.where(peak, (srt[7] + srt[6]) * half, v)
    return out


def _erode_numpy(z, inv_d, radius, table, creep, flow_smooth=np.float32(0.0)):
    b, h, w = z.shape
    new = _new_mask(h, w)
    z = _clean(z, new, creep)
    c = z[:, 1:-1, 1:-1]
    best = np.zeros(c.shape, np.float32)
    rcv = np.full(c.shape, -1, np.int64)
    zr = c.copy()
    for k, (di, dj) in enumerate(OFFSETS):
        zn = _shift(z, di, dj)
        s = (c - zn) * inv_d[:, 1:-1, k][:, :, None]
        take = s > best
        best = np.where(take, s, best)
        rcv = np.where(take, k, rcv)
        zr = np.where(take, zn, zr)
    rc = np.full((b, h, w), -1, np.int64)
    rc[:, 1:-1, 1:-1] = rcv
    acc = np.ones((b, h, w), np.int64)
    for _ in range(radius):
        nxt = np.ones((b, h, w), np.int64)
        s = nxt[:, 1:-1, 1:-1]
        for k, (di, dj) in enumerate(OFFSETS):
            s += np.where(_shift(rc, di, dj) == _OPPOSITE[k], _shift(acc, di, dj), 0)
        acc = nxt
    if flow_smooth > 0:  # each routed new sample toward the mean of its receiver and main donor
        best = np.zeros(c.shape, np.int64)
        zd = c.copy()
        for k, (di, dj) in enumerate(OFFSETS):
            a = np.where(_shift(rc, di, dj) == _OPPOSITE[k], _shift(acc, di, dj), 0)
            take = a > best
            best = np.where(take, a, best)
            zd = np.where(take, _shift(z, di, dj), zd)
        on = (best > 0) & (rcv >= 0) & new[1:-1, 1:-1]
        c = np.where(on, c + ((zr + zd) * np.float32(0.5) - c) * flow_smooth, c)
    q = table[acc[:, 1:-1, 1:-1]]
    inc = z.copy()
    inc[:, 1:-1, 1:-1] = np.where(new[1:-1, 1:-1], c - (c - zr) * q, c)
    return _clean(_breach(inc), new)


def _breach(z: np.ndarray) -> np.ndarray:
    """Rule 6 (one Jacobi pass): a parent that is a strict pit of its 8 (new) neighbours and
    has a lower parent among its 8 parent neighbours (2 samples away; the lowest, first in
    OFFSETS' order on ties) drains to it: the new sample between them becomes their mean; a
    strict peak the same toward its highest parent. A new sample asked by several parents
    takes the lowest pit proposal, else the highest peak proposal."""
    b, h, w = z.shape
    out = z.copy()
    pit_p = np.full(z.shape, np.inf, np.float32)
    peak_p = np.full(z.shape, -np.inf, np.float32)
    hp, wp = (h + 1) // 2, (w + 1) // 2
    if hp < 5 or wp < 5:
        return out
    zp = z[:, ::2, ::2]
    c = zp[:, 2:-2, 2:-2]  # parents with every parent neighbour inside
    near = np.stack([z[:, 4 + di : 2 * hp - 4 + di : 2, 4 + dj : 2 * wp - 4 + dj : 2] for di, dj in OFFSETS])
    far = np.stack([zp[:, 2 + di : hp - 2 + di, 2 + dj : wp - 2 + dj] for di, dj in OFFSETS])
    half = np.float32(0.5)
    bi, ii, jj = np.meshgrid(np.arange(b), 2 * np.arange(2, hp - 2), 2 * np.arange(2, wp - 2), indexing="ij")
    for kind, strict, pick, prop, better in (("pit", (c < near.min(0)), np.argmin, pit_p, np.minimum),
                                             ("peak", (c > near.max(0)), np.argmax, peak_p, np.maximum)):
        k = pick(far, axis=0)
        q = np.take_along_axis(far, k[None], 0)[0]
        ok = strict & ((q < c) if kind == "pit" else (q > c))
        val = (c + q) * half
        di = np.array([o[0] for o in OFFSETS])[k]
        dj = np.array([o[1] for o in OFFSETS])[k]
        better.at(prop, (bi[ok], ii[ok] + di[ok], jj[ok] + dj[ok]), val[ok])
    return np.where(pit_p < np.inf, pit_p, np.where(peak_p > -np.inf, peak_p, out)).astype(np.float32)


@jit.njit
def _clean_kernel(z, out, creep):
    """_clean on (B, H, W) float32: out's interior new samples written, the rest copied."""
    b_n, h, w = z.shape
    half = np.float32(0.5)
    eighth = np.float32(0.125)
    for b in range(b_n):
        for i in range(h):
            for j in range(w):
                out[b, i, j] = z[b, i, j]
        for i in range(1, h - 1):
            for j in range(1, w - 1):
                if i % 2 == 0 and j % 2 == 0:
                    continue
                lo1 = lo2 = np.float32(np.inf)
                hi1 = hi2 = np.float32(-np.inf)
                tot = np.float32(0.0)
                for di in range(-1, 2):
                    for dj in range(-1, 2):
                        if di == 0 and dj == 0:
                            continue
                        v = z[b, i + di, j + dj]
                        tot = v if (di == -1 and dj == -1) else tot + v
                        if v < lo1:
                            lo2 = lo1
                            lo1 = v
                        elif v < lo2:
                            lo2 = v
                        if v > hi1:
                            hi2 = hi1
                            hi1 = v
                        elif v > hi2:
                            hi2 = v
                c = z[b, i, j]
                if c < lo1:
                    out[b, i, j] = (lo1 + lo2) * half
                elif c > hi1:
                    out[b, i, j] = (hi1 + hi2) * half
                elif creep > 0:
                    out[b, i, j] = c + (tot * eighth - c) * creep


@jit.njit
def _erode_kernel(z, inv_d, radius, table, creep, flow_smooth, out):
    """_erode_numpy compiled: the same float32 operations, neighbours in OFFSETS' order."""
    b_n, h, w = z.shape
    di_ = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
    dj_ = np.array([-1, 0, 1, -1, 1, -1, 0, 1])
    zc = np.empty_like(z)
    _clean_kernel(z, zc, creep)
    rc = np.full((b_n, h, w), -1, np.int64)
    zr = zc.copy()
    for b in range(b_n):
        for i in range(1, h - 1):
            d = inv_d[b, i]
            for j in range(1, w - 1):
                c = zc[b, i, j]
                best = np.float32(0.0)
                kb = -1
                zb = c
                for k in range(8):
                    zn = zc[b, i + di_[k], j + dj_[k]]
                    s = (c - zn) * d[k]
                    if s > best:
                        best = s
                        kb = k
                        zb = zn
                rc[b, i, j] = kb
                zr[b, i, j] = zb
    # the numpy form pulls from the 8 neighbours; here each routed sample pushes its count to
    # its receiver (integer sums: the same counts at every interior sample, 8x fewer reads)
    acc = np.ones((b_n, h, w), np.int64)
    nxt = np.ones((b_n, h, w), np.int64)
    for _ in range(radius):
        nxt[:] = 1
        for b in range(b_n):
            for i in range(1, h - 1):
                for j in range(1, w - 1):
                    k = rc[b, i, j]
                    if k >= 0:
                        nxt[b, i + di_[k], j + dj_[k]] += acc[b, i, j]
        acc, nxt = nxt, acc
    inc = zc.copy()
    half = np.float32(0.5)
    for b in range(b_n):
        for i in range(1, h - 1):
            for j in range(1, w - 1):
                if i % 2 == 0 and j % 2 == 0:
                    continue
                c = zc[b, i, j]
                if flow_smooth > 0 and rc[b, i, j] >= 0:
                    best = 0
                    zd = c
                    for k in range(8):
                        ii, jj = i + di_[k], j + dj_[k]
                        if rc[b, ii, jj] == 7 - k and acc[b, ii, jj] > best:
                            best = acc[b, ii, jj]
                            zd = zc[b, ii, jj]
                    if best > 0:
                        c = c + ((zr[b, i, j] + zd) * half - c) * flow_smooth
                inc[b, i, j] = c - (c - zr[b, i, j]) * table[acc[b, i, j]]
    _breach_kernel(inc, zc)
    _clean_kernel(zc, out, np.float32(0.0))


@jit.njit
def _breach_kernel(z, out):
    """_breach compiled (the same comparisons and means; min / max are exact)."""
    b_n, h, w = z.shape
    di_ = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
    dj_ = np.array([-1, 0, 1, -1, 1, -1, 0, 1])
    half = np.float32(0.5)
    hp, wp = (h + 1) // 2, (w + 1) // 2
    pit_p = np.full((h, w), np.float32(np.inf))
    peak_p = np.full((h, w), np.float32(-np.inf))
    for b in range(b_n):
        for i in range(h):
            for j in range(w):
                out[b, i, j] = z[b, i, j]
                pit_p[i, j] = np.inf
                peak_p[i, j] = -np.inf
        if hp < 5 or wp < 5:
            continue
        for pi in range(2, hp - 2):
            for pj in range(2, wp - 2):
                i, j = 2 * pi, 2 * pj
                c = z[b, i, j]
                lo = np.float32(np.inf)
                hi = np.float32(-np.inf)
                flo = np.float32(np.inf)
                fhi = np.float32(-np.inf)
                klo = khi = 0
                for k in range(8):
                    v = z[b, i + di_[k], j + dj_[k]]
                    lo = min(lo, v)
                    hi = max(hi, v)
                    f = z[b, i + 2 * di_[k], j + 2 * dj_[k]]
                    if f < flo:
                        flo = f
                        klo = k
                    if f > fhi:
                        fhi = f
                        khi = k
                if c < lo and flo < c:
                    ti, tj = i + di_[klo], j + dj_[klo]
                    pit_p[ti, tj] = min(pit_p[ti, tj], (c + flo) * half)
                if c > hi and fhi > c:
                    ti, tj = i + di_[khi], j + dj_[khi]
                    peak_p[ti, tj] = max(peak_p[ti, tj], (c + fhi) * half)
        for i in range(h):
            for j in range(w):
                if pit_p[i, j] < np.inf:
                    out[b, i, j] = pit_p[i, j]
                elif peak_p[i, j] > -np.inf:
                    out[b, i, j] = peak_p[i, j]


@jit.warmer
def _warm() -> None:
    z = np.arange(2 * 9 * 9, dtype=np.float32).reshape(2, 9, 9)
    erode(z, inverse_distances(np.ones((2, 9))), 2, incision_table(2, 0.1, 0.5, 0.5, 1.0))
