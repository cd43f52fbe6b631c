"""Compiled loops for the client's per-tile work (numba, ``cache=True``; issue 15). The server's
mesher and encoder have theirs in ``runtime.tin.meshkernels``.

Each kernel is one pass over a tile's vertices or faces that numpy did as 10-30 passes
over (n, 3) temporaries (an earth tile: ~21k vertices, ~42k faces). Each gives the bits
of the numpy expression it replaces (same float64 / float32 operations in the same
order; numba leaves floating point strict without ``fastmath``), so placement, morph
targets and upload buffers do not move; the tests compare them with the numpy forms.

``warm()`` compiles (or loads from numba's on-disk cache) every kernel for the dtypes
the callers pass; the viewer calls it at start so no tile pays for it. Callers coerce
their arrays to those dtypes (float64 positions, int64 indices).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from runtime.tiles import WGS84_E2
from runtime.tin.edgekernels import warm as warm_edges
from runtime.tin.facekernels import warm as warm_faces

_EPS = 1e-9  # grid units: ``runtime.tin.raster``'s tolerance


@numba.njit(cache=True, nogil=True)
def face_normal_sums(pos: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(n, 3) float64 sum of the area-weighted normals (cross products, 2 x area) of the
    faces around each vertex, faces in order: ``np.bincount``'s additions.
    pos: (n, 3) float64; faces: (m, 3) int32 or int64."""
    n = pos.shape[0]
    out = np.zeros((n, 3))
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        a0, a1, a2 = pos[i1, 0] - pos[i0, 0], pos[i1, 1] - pos[i0, 1], pos[i1, 2] - pos[i0, 2]
        b0, b1, b2 = pos[i2, 0] - pos[i0, 0], pos[i2, 1] - pos[i0, 1], pos[i2, 2] - pos[i0, 2]
        n0 = a1 * b2 - a2 * b1
        n1 = a2 * b0 - a0 * b2
        n2 = a0 * b1 - a1 * b0
        for v in (i0, i1, i2):
            out[v, 0] += n0
            out[v, 1] += n1
            out[v, 2] += n2
    return out


@numba.njit(cache=True, nogil=True)
def unit_rows_f32(v: np.ndarray) -> np.ndarray:
    """(n, 3) float64 -> (n, 3) float32 rows divided by their length (rows of length 0
    left as they are): ``(v / np.where(norm > 0, norm, 1)).astype(float32)`` with
    ``np.linalg.norm(v, axis=1)``'s sum order (x^2 + (y^2 + z^2))."""
    out = np.empty(v.shape, np.float32)
    for i in range(v.shape[0]):
        x, y, z = v[i, 0], v[i, 1], v[i, 2]
        nrm = math.sqrt(x * x + (y * y + z * z))
        d = nrm if nrm > 0.0 else 1.0
        out[i, 0] = x / d
        out[i, 1] = y / d
        out[i, 2] = z / d
    return out


@numba.njit(cache=True, nogil=True)
def raster_window(r: np.ndarray, c: np.ndarray, hm: np.ndarray, faces: np.ndarray,
                  r_a: int, r_b: int, c_a: int, c_b: int, t: int) -> np.ndarray:
    """``runtime.tin.raster.tin_window``'s spans, triangle by triangle: (rows, cols)
    float64 of the window (NaN where no triangle fills a node). r, c, hm: (n,) float64
    vertex rows, columns, heights; faces: (m, 3) int64."""
    w = c_b - c_a + 1
    out = np.full((r_b - r_a + 1) * w, np.nan)
    clip_cols = c_a > 0 or c_b < t
    for f in range(faces.shape[0]):
        v0, v1, v2 = faces[f, 0], faces[f, 1], faces[f, 2]
        # top, middle, bottom by row: the stable sorting network (0, 1), (1, 2), (0, 1)
        if r[v1] < r[v0]:
            v0, v1 = v1, v0
        if r[v2] < r[v1]:
            v1, v2 = v2, v1
        if r[v1] < r[v0]:
            v0, v1 = v1, v0
        ar, br, cr = r[v0], r[v1], r[v2]
        ac, bc, cc = c[v0], c[v1], c[v2]
        r_lo = max(int(math.ceil(ar - _EPS)), r_a)
        r_hi = t if cr >= t - _EPS else int(math.ceil(cr - _EPS)) - 1
        r_hi = min(r_hi, r_b)
        det = (br - ar) * (cc - ac) - (cr - ar) * (bc - ac)
        if r_hi < r_lo or det == 0.0:
            continue
        if clip_cols and (max(max(ac, bc), cc) < c_a - _EPS or min(min(ac, bc), cc) > c_b + _EPS):
            continue
        ha, hb, hc = hm[v0], hm[v1], hm[v2]
        dh0, dh1 = hb - ha, hc - ha
        g_row = (dh0 * (cc - ac) - dh1 * (bc - ac)) / det
        g_col = ((br - ar) * dh1 - (cr - ar) * dh0) / det
        h00 = ha - g_row * ar - g_col * ac
        s_ac = (cc - ac) / (cr - ar)
        s_ab = (bc - ac) / (br - ar) if br > ar else 0.0
        s_bc = (cc - bc) / (cr - br) if cr > br else 0.0
        for row in range(r_lo, r_hi + 1):
            rowf = float(row)
            long_c = ac + (rowf - ar) * s_ac
            if rowf <= br:
                short_c = ac + (rowf - ar) * s_ab if br > ar else bc
            else:
                short_c = bc + (rowf - br) * s_bc
            lo, hi = min(long_c, short_c), max(long_c, short_c)
            c0 = max(int(math.ceil(lo - _EPS)), c_a)
            c1 = t if hi >= t - _EPS else int(math.ceil(hi - _EPS)) - 1
            c1 = min(c1, c_b)
            if c1 < c0:
                continue
            base = h00 + g_row * rowf + g_col * c0
            first = (row - r_a) * w + (c0 - c_a)
            for k in range(c1 - c0 + 1):
                out[first + k] = base + g_col * k
    return out.reshape(r_b - r_a + 1, w)


@numba.njit(cache=True, nogil=True)
def _spread(v: np.ndarray) -> np.ndarray:
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
                        (2, 0x3333333333333333), (1, 0x5555555555555555)):
        v = (v | (v << shift)) & mask
    return v


@numba.njit(cache=True, nogil=True)
def block_z_order(rc: np.ndarray, faces: np.ndarray, chunks: int, zscale: float) -> tuple[np.ndarray, np.ndarray]:
    """(order (m,) uint32, starts (chunks^2 + 1,) int64): the faces grouped by the block
    of ``chunks`` x ``chunks`` their centroid lies in, within a block in Z order of
    floor(centroid * zscale), ties in face order (``np.lexsort((z, block))``'s result, by
    a stable two-pass radix sort of the 26-bit keys). rc: (n, 2) float64 tile grid
    [row, col] in [0, 256]; faces: (m, 3) uint32."""
    m = faces.shape[0]
    keys = np.empty(m, np.int64)
    for f in range(m):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        fr = (rc[i0, 0] + rc[i1, 0] + rc[i2, 0]) / 3.0
        fc = (rc[i0, 1] + rc[i1, 1] + rc[i2, 1]) / 3.0
        br = min(max(int(fr / 256.0 * chunks), 0), chunks - 1)
        bc = min(max(int(fc / 256.0 * chunks), 0), chunks - 1)
        zi = min(max(int(math.floor(fr * zscale)), 0), 2047)  # 256 * 6 < 2^11
        zj = min(max(int(math.floor(fc * zscale)), 0), 2047)
        z = _spread(np.int64(zi)) | (_spread(np.int64(zj)) << 1)
        keys[f] = ((br * chunks + bc) << 22) | z
    bits = 13  # two passes cover 26 bits: block (up to 4 bits) above the 22-bit Z code
    size = 1 << bits
    order = np.arange(m).astype(np.uint32)
    tmp = np.empty(m, np.uint32)
    for shift in (0, bits):
        count = np.zeros(size + 1, np.int64)
        for f in range(m):
            count[((keys[order[f]] >> shift) & (size - 1)) + 1] += 1
        for i in range(size):
            count[i + 1] += count[i]
        for f in range(m):
            d = (keys[order[f]] >> shift) & (size - 1)
            tmp[count[d]] = order[f]
            count[d] += 1
        order, tmp = tmp, order
    starts = np.zeros(chunks * chunks + 1, np.int64)
    for f in range(m):
        starts[(keys[f] >> 22) + 1] += 1
    for b in range(chunks * chunks):
        starts[b + 1] += starts[b]
    return order, starts


@numba.njit(cache=True, nogil=True)
def block_boxes(pos: np.ndarray, up: np.ndarray, h: np.ndarray, dh: np.ndarray, faces: np.ndarray,
                order: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(faces[order] (m, 3) uint32, lo, hi (B, 3) float32): the faces sorted by block
    (``block_z_order``; ``starts`` (B + 1,) their triangle offsets) and each block's box
    (empty blocks: zeros) over every position a vertex can take: its own, geomorphed
    (pos + up dh) and lifted to sea level, float32 as ``viewer.renderer.chunk_layout``.
    pos, up: (n, 3) float32; h, dh: (n,) float32; faces: (m, 3) uint32; order: (m,) uint32."""
    n = pos.shape[0]
    vlo = np.empty((n, 3), np.float32)
    vhi = np.empty((n, 3), np.float32)
    zero = np.float32(0.0)
    for i in range(n):
        lift = max(-h[i], zero)
        both = dh[i] + max(-(h[i] + dh[i]), zero)
        for k in range(3):
            p = pos[i, k]
            a = p + up[i, k] * dh[i]
            b = p + up[i, k] * lift
            c = p + up[i, k] * both
            vlo[i, k] = min(min(min(p, a), b), c)
            vhi[i, k] = max(max(max(p, a), b), c)
    m = order.shape[0]
    out = np.empty((m, 3), np.uint32)
    for f in range(m):
        for j in range(3):
            out[f, j] = faces[order[f], j]
    nb = starts.shape[0] - 1
    lo = np.zeros((nb, 3), np.float32)
    hi = np.zeros((nb, 3), np.float32)
    for b in range(nb):
        if starts[b + 1] <= starts[b]:
            continue
        v = out[starts[b], 0]
        lo0, lo1, lo2 = vlo[v, 0], vlo[v, 1], vlo[v, 2]
        hi0, hi1, hi2 = vhi[v, 0], vhi[v, 1], vhi[v, 2]
        for f in range(starts[b], starts[b + 1]):
            for j in range(3):
                v = out[f, j]
                lo0, lo1, lo2 = min(lo0, vlo[v, 0]), min(lo1, vlo[v, 1]), min(lo2, vlo[v, 2])
                hi0, hi1, hi2 = max(hi0, vhi[v, 0]), max(hi1, vhi[v, 1]), max(hi2, vhi[v, 2])
        lo[b, 0], lo[b, 1], lo[b, 2] = lo0, lo1, lo2
        hi[b, 0], hi[b, 1], hi[b, 2] = hi0, hi1, hi2
    return out, lo, hi


@numba.njit(cache=True, nogil=True)
def rtin_decode(flags: np.ndarray, res: np.ndarray, present: np.ndarray, qgrid: np.ndarray, mid: np.ndarray,
                p: np.ndarray, q: np.ndarray, a1: np.ndarray, a2: np.ndarray, border: np.ndarray,
                forced: bool, fan: bool) -> tuple[int, int, int]:
    """The wire's RTIN vertex set and quantised heights from its split bits, midpoint by
    midpoint in ``rtin_steps`` order (coarse to fine; the splittable steps' arrays
    concatenated): a midpoint with a present apex is a candidate, it takes the next split
    bit (border midpoints are split without one when ``forced``), and each vertex (``fan``:
    each border midpoint too) gets its height as the mean of its hypotenuse's ends plus
    the next residual. ``runtime.wire``'s step-by-step numpy form, in the same order.

    flags: (nbits,) bool; res: (n,) int64 residuals, the 4 corners' first; present:
    ((t+1)^2 + 1,) bool and qgrid (same,) int64, corners set, written in place; mid, p, q,
    a1, a2: (k,) int32 grid ids (-1: none, the sentinel entry); border: (k,) bool.
    Returns (status, bits used, residuals used): status 0, or 1 when the bits end early,
    2 when the splits imply more vertices than ``res`` holds."""
    nb, nr = 0, 4
    for i in range(mid.shape[0]):
        m = mid[i]
        if present[a1[i]] or present[a2[i]]:
            if forced and border[i]:
                present[m] = True
            else:
                if nb >= flags.shape[0]:
                    return 1, nb, nr
                present[m] = flags[nb]
                nb += 1
        if present[m] or (fan and border[i]):
            if nr >= res.shape[0]:
                return 2, nb, nr
            qgrid[m] = ((qgrid[p[i]] + qgrid[q[i]]) >> 1) + res[nr]
            nr += 1
    return 0, nb, nr


@numba.njit(cache=True, nogil=True, inline="always")
def _lattice_point(rt: np.ndarray, ct: np.ndarray, i: int, j: int, h: float, earth: bool) -> tuple:
    """One lattice point from ``WorldGeometry.lattice_tables`` (row i, column j, height h):
    ``geodetic_to_ecef``'s operations (earth) or (x, y, h) (plane)."""
    if not earth:
        return ct[j, 0], rt[i, 0], h
    n = rt[i, 0]
    ncl = (n + h) * rt[i, 1]
    return ncl * ct[j, 0], ncl * ct[j, 1], (n * (1.0 - WGS84_E2) + h) * rt[i, 2]


@numba.njit(cache=True, nogil=True)
def lattice_points(rt: np.ndarray, ct: np.ndarray, ki: np.ndarray, kj: np.ndarray, h: np.ndarray,
                   earth: bool) -> np.ndarray:
    """(n, 3) float64 world positions of lattice rows ``ki`` / columns ``kj`` ((n,) int64,
    indices into the tables) at heights ``h`` ((n,) float64): ``WorldGeometry.lattice_to_world``."""
    out = np.empty((ki.shape[0], 3))
    for v in range(ki.shape[0]):
        x, y, z = _lattice_point(rt, ct, ki[v], kj[v], h[v], earth)
        out[v, 0], out[v, 1], out[v, 2] = x, y, z
    return out


@numba.njit(cache=True, nogil=True)
def lattice_up(rt: np.ndarray, ct: np.ndarray, ki: np.ndarray, kj: np.ndarray, earth: bool) -> np.ndarray:
    """(n, 3) float32 local up at lattice rows ``ki`` / columns ``kj`` ((n,) int64 indices
    into ``WorldGeometry.lattice_tables``): ``WorldGeometry.sample_up``'s
    (cos lat cos lon, cos lat sin lon, sin lat) on earth, (0, 0, 1) on the plane."""
    out = np.empty((ki.shape[0], 3), np.float32)
    for v in range(ki.shape[0]):
        if earth:
            i, j = ki[v], kj[v]
            out[v, 0], out[v, 1], out[v, 2] = rt[i, 1] * ct[j, 0], rt[i, 1] * ct[j, 1], rt[i, 2]
        else:
            out[v, 0], out[v, 1], out[v, 2] = 0.0, 0.0, 1.0
    return out


@numba.njit(cache=True, nogil=True)
def edge_normals(rt: np.ndarray, ct: np.ndarray, ki: np.ndarray, kj: np.ndarray, h: np.ndarray, starts: np.ndarray,
                 along_cols: np.ndarray, earth: bool) -> tuple[np.ndarray, bool]:
    """``runtime.tin.placement.shared_edges_normals`` on lattice tables: for each edge
    ``s`` (vertices starts[s]..starts[s + 1] - 1, ordered along it, at least 2; lattice
    rows ``ki``, columns ``kj`` ((k,) int64 indices into ``lattice_tables``, which reach
    one row and column beyond them), heights ``h`` (k,) float64) the unit normal of the
    slope along the edge (``np.gradient``) crossed with one sample across it (+1 row where
    ``along_cols[s]``, else +1 column), turned to the local up: ((k, 3) float32, False), or
    (undefined, True) where an edge collapses (a pole: the caller's numpy path)."""
    k = ki.shape[0]
    pos = np.empty((k, 3))
    for v in range(k):
        pos[v, 0], pos[v, 1], pos[v, 2] = _lattice_point(rt, ct, ki[v], kj[v], h[v], earth)
    out = np.empty((k, 3), np.float32)
    for s in range(starts.shape[0] - 1):
        a, b = starts[s], starts[s + 1]
        for v in range(a, b):
            if b - a == 2:
                u, w, half = a + 1, a, False
            elif v == a:
                u, w, half = a + 1, a, False
            elif v == b - 1:
                u, w, half = b - 1, b - 2, False
            else:
                u, w, half = v + 1, v - 1, True
            t0, t1, t2 = pos[u, 0] - pos[w, 0], pos[u, 1] - pos[w, 1], pos[u, 2] - pos[w, 2]
            if half:
                t0, t1, t2 = t0 / 2.0, t1 / 2.0, t2 / 2.0
            if along_cols[s]:
                x, y, z = _lattice_point(rt, ct, ki[v] + 1, kj[v], h[v], earth)
            else:
                x, y, z = _lattice_point(rt, ct, ki[v], kj[v] + 1, h[v], earth)
            c0, c1, c2 = x - pos[v, 0], y - pos[v, 1], z - pos[v, 2]
            n0 = t1 * c2 - t2 * c1  # np.cross(tangent, across)
            n1 = t2 * c0 - t0 * c2
            n2 = t0 * c1 - t1 * c0
            length = math.sqrt(n0 * n0 + (n1 * n1 + n2 * n2))
            if length <= 1e-12:
                return out, True
            n0, n1, n2 = n0 / length, n1 / length, n2 / length
            if earth:
                i, j = ki[v], kj[v]
                u0, u1, u2 = rt[i, 1] * ct[j, 0], rt[i, 1] * ct[j, 1], rt[i, 2]
            else:
                u0, u1, u2 = 0.0, 0.0, 1.0
            d = n0 * u0 + (n1 * u1 + n2 * u2) + 1e-30
            sg = 1.0 if d > 0 else (-1.0 if d < 0 else 0.0)
            out[v, 0], out[v, 1], out[v, 2] = n0 * sg, n1 * sg, n2 * sg
    return out, False


@numba.njit(cache=True, nogil=True)
def morph_normals(half: np.ndarray, hi0: int, hj0: int, rt: np.ndarray, ct: np.ndarray, ki: np.ndarray,
                  kj: np.ndarray, earth: bool) -> np.ndarray:
    """(n, 3) float64 unit normals of a surface at half-sample lattice points (ki, kj)
    ((n,) int64 half-sample indices, at least 1 inside ``half``'s lattice): the cross
    product of the central differences along rows and columns, each point placed at the
    height ``half[k - hi0, l - hj0]`` (``with_morph``'s parent-surface normals). rt, ct:
    ``lattice_tables`` from row ki.min() - 1 and column kj.min() - 1 on."""
    out = np.empty((ki.shape[0], 3))
    i0, j0 = ki.min() - 1, kj.min() - 1
    for v in range(ki.shape[0]):
        i, j = ki[v], kj[v]
        w0, w1, w2 = _lattice_point(rt, ct, i - i0, j - 1 - j0, half[i - hi0, j - 1 - hj0], earth)
        e0, e1, e2 = _lattice_point(rt, ct, i - i0, j + 1 - j0, half[i - hi0, j + 1 - hj0], earth)
        n0, n1, n2 = _lattice_point(rt, ct, i - 1 - i0, j - j0, half[i - 1 - hi0, j - hj0], earth)
        s0, s1, s2 = _lattice_point(rt, ct, i + 1 - i0, j - j0, half[i + 1 - hi0, j - hj0], earth)
        c0, c1, c2 = e0 - w0, e1 - w1, e2 - w2  # along the columns (east)
        r0, r1, r2 = s0 - n0, s1 - n1, s2 - n2  # along the rows (south)
        x = r1 * c2 - r2 * c1  # np.cross(along_r, along_c): south x east = up
        y = r2 * c0 - r0 * c2
        z = r0 * c1 - r1 * c0
        d = max(math.sqrt(x * x + (y * y + z * z)), 1e-12)
        out[v, 0], out[v, 1], out[v, 2] = x / d, y / d, z / d
    return out


@numba.njit(cache=True, nogil=True)
def inward_normals(rc: np.ndarray, faces: np.ndarray, own: np.ndarray, t: int) -> np.ndarray:
    """``runtime.tin.placement.inward_normals`` (see there), face by face: (n, 3) float32.
    Each border vertex (corners aside) takes the first face, in face order, holding the
    sample one step inward of it; its half of the joined normal is the own normals of
    that face's vertices off the border weighted by the sample's barycentric weights
    (all three where those weights are ~0); no face found: its own normal.
    rc: (n, 2) int32 [row, col]; faces: (m, 3) int32 or int64; own: (n, 3) float32."""
    n = rc.shape[0]
    on = np.zeros(n, np.bool_)
    edge = np.zeros(n, np.bool_)
    out = np.zeros((n, 3), np.float32)
    for v in range(n):
        r_end = rc[v, 0] == 0 or rc[v, 0] == t
        c_end = rc[v, 1] == 0 or rc[v, 1] == t
        on[v] = r_end or c_end
        edge[v] = on[v] and not (r_end and c_end)
        if edge[v]:
            out[v] = own[v]
    done = np.zeros(n, np.bool_)
    w = np.empty(3)
    for f in range(faces.shape[0]):
        f0, f1, f2 = faces[f, 0], faces[f, 1], faces[f, 2]
        if not (edge[f0] or edge[f1] or edge[f2]):
            continue
        r0, c0 = float(rc[f0, 0]), float(rc[f0, 1])
        r1, c1 = float(rc[f1, 0]), float(rc[f1, 1])
        r2, c2 = float(rc[f2, 0]), float(rc[f2, 1])
        det = (r1 - r0) * (c2 - c0) - (r2 - r0) * (c1 - c0)
        if det == 0.0:
            continue
        for slot in range(3):
            v = faces[f, slot]
            if not edge[v] or done[v]:
                continue
            q0, q1 = float(rc[v, 0]), float(rc[v, 1])
            q0 += (1.0 if q0 == 0 else 0.0) - (1.0 if q0 == t else 0.0)
            q1 += (1.0 if q1 == 0 else 0.0) - (1.0 if q1 == t else 0.0)
            w[1] = ((q0 - r0) * (c2 - c0) - (r2 - r0) * (q1 - c0)) / det
            w[2] = ((r1 - r0) * (q1 - c0) - (q0 - r0) * (c1 - c0)) / det
            w[0] = 1.0 - w[1] - w[2]
            if w[0] < -1e-9 or w[1] < -1e-9 or w[2] < -1e-9:
                continue
            done[v] = True
            off0 = w[0] * (0.0 if on[f0] else 1.0)
            off1 = w[1] * (0.0 if on[f1] else 1.0)
            off2 = w[2] * (0.0 if on[f2] else 1.0)
            if off0 + (off1 + off2) < 1e-6:  # the face's vertices all on the border
                off0, off1, off2 = w[0], w[1], w[2]
            for k in range(3):
                out[v, k] = (off0 * float(own[f0, k]) + off1 * float(own[f1, k])) + off2 * float(own[f2, k])
    return out


@numba.njit(cache=True, nogil=True)
def vertex_rows(pos: np.ndarray, nrm: np.ndarray, uv: np.ndarray, h: np.ndarray, up: np.ndarray, dh: np.ndarray,
                pn: np.ndarray) -> np.ndarray:
    """(n, 16) float32 interleaved vertex rows: position (3), normal (3), uv (2), height,
    up (3), morph dh, morph normal (3); every input float32, (n, k) or (n,)."""
    n = pos.shape[0]
    out = np.empty((n, 16), np.float32)
    for i in range(n):
        for k in range(3):
            out[i, k] = pos[i, k]
            out[i, 3 + k] = nrm[i, k]
            out[i, 9 + k] = up[i, k]
            out[i, 13 + k] = pn[i, k]
        out[i, 6] = uv[i, 0]
        out[i, 7] = uv[i, 1]
        out[i, 8] = h[i]
        out[i, 12] = dh[i]
    return out


def warm() -> None:
    """Compile or load every kernel for the callers' dtypes (a one-triangle tile)."""
    pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    faces = np.array([[0, 1, 2]], np.int64)
    unit_rows_f32(face_normal_sums(pos, faces))
    face_normal_sums(pos, faces.astype(np.int32))  # placement passes a decoded tile's int32 faces as they are
    rc = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    raster_window(rc[:, 0].copy(), rc[:, 1].copy(), pos[:, 0].copy(), faces, 0, 1, 0, 1, 1)
    f32 = faces.astype(np.uint32)
    order, starts = block_z_order(rc, f32, 4, 6.0)
    p32 = pos.astype(np.float32)
    h32 = np.zeros(3, np.float32)
    block_boxes(p32, p32, h32, h32, f32, order, starts)
    rt, ct = np.ones((3, 3)), np.ones((3, 2))
    k = np.ones(1, np.int64)
    lattice_points(rt, ct, k, k, np.zeros(1), True)
    morph_normals(np.ones((3, 3)), 0, 0, rt, ct, k, k, True)
    lattice_up(rt, ct, k, k, True)
    k2 = np.zeros(2, np.int64)
    edge_normals(rt, ct, k2, k2 + 1, np.zeros(2), np.array([0, 2]), np.ones(1, np.bool_), True)
    v32 = np.zeros((1, 3), np.float32)
    vertex_rows(v32, v32, np.zeros((1, 2), np.float32), v32[:, 0].copy(), v32, v32[:, 0].copy(), v32)
    inward_normals(np.zeros((3, 2), np.int32), faces, p32, 1)
    inward_normals(np.zeros((3, 2), np.int32), faces.astype(np.int32), p32, 1)
    ids, border = np.zeros(1, np.int32), np.zeros(1, np.bool_)
    for a in (ids, border):  # the wire's step tables are read-only: numba types them apart
        a.setflags(write=False)
    rtin_decode(np.zeros(1, np.bool_), np.zeros(5, np.int64), np.zeros(5, np.bool_), np.zeros(5, np.int64), ids,
                ids, ids, ids, ids, border, False, True)
    warm_faces()
    warm_edges()
