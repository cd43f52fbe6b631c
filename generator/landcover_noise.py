"""Lattice value noises of the land-cover field (:mod:`generator.landcover`), keyed by location.

- :func:`value_noise`: the rotated lattice noise of ``generator.anchors.plane`` (towns, parks,
  villages, colour grain), bit for bit, hashing each lattice node under the points once;
- :func:`grid_noise` / :func:`point_noise`: an axis-aligned lattice, so on a grid of points the
  bilinear interpolation separates (along y at the few lattice columns, then along x): two
  gathers and three operations a point, the same bits at scattered points. The class field's
  warps, splits and snow band use it.

Both are keyed by the point's location (not a sample index), so a sample reads the same value
at every level: what keeps the class field nested.
"""

from __future__ import annotations

import numpy as np


def value_noise(seed: int, stream: int, x: np.ndarray, y: np.ndarray, wavelength: float) -> np.ndarray:
    """Smooth lattice value noise in [-1, 1] at float64 points (any unit; ``wavelength`` in it).

    Bit for bit ``generator.anchors.plane._value_noise(seed, 2000 + stream, ...)`` (the same
    expressions in the same order), but each lattice node under the points is hashed once: a
    window's points cover a small box of nodes, so a tile costs a few dozen hashes instead of four
    per sample (the hashing was most of the class field's time)."""
    from generator import noise

    octave = 2000 + stream
    key, i0, j0, fu, fv = noise.rotated_lattice(seed, octave, x, y, wavelength)
    if i0.size == 0:
        return np.zeros(i0.shape)
    ia, ja = int(i0.min()), int(j0.min())
    ni, nj = int(i0.max()) - ia + 2, int(j0.max()) - ja + 2
    if ni * nj <= 4 * i0.size:  # the box of nodes: one hash each, then gathers
        table = noise.uniform_from_hash(noise.lattice_hash(
            key, np.arange(ia, ia + ni, dtype=np.int64)[:, None], np.arange(ja, ja + nj, dtype=np.int64)[None, :]))
        table = (table * 2.0 - 1.0).ravel()
        idx = (i0 - ia) * nj + (j0 - ja)
        a, b, c, d = table[idx], table[idx + nj], table[idx + 1], table[idx + nj + 1]
    else:  # points spread thinner than the lattice: hash per corner
        def corner(di, dj):
            return noise.uniform_from_hash(noise.lattice_hash(key, i0 + di, j0 + dj)) * 2.0 - 1.0

        a, b, c, d = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
    return (a + (b - a) * fu) + ((c + (d - c) * fu) - (a + (b - a) * fu)) * fv


def grid_noise(seed: int, stream: int, xs: np.ndarray, ys: np.ndarray, wavelength: float) -> np.ndarray:
    """(H, W) float64 value noise in [-1, 1] at the grid of points (xs[c], ys[r]) (xs (W,), ys (H,),
    any unit; ``wavelength`` in it): an axis-aligned lattice, so bilinear interpolation separates
    (along y at the few lattice columns, then along x): two gathers and three operations per
    point. The class field's noise (warps, splits, towns, snow); :func:`point_noise` gives the same
    bits at scattered points. Keyed by location, so the same at every level."""
    from generator import noise

    key = noise.stream_key(seed, 4000 + stream, 11)
    jx, fx = _lattice_axis(xs, wavelength, (key & 0xFFFF) / 65536.0 * 977.0)
    iy, fy = _lattice_axis(ys, wavelength, ((key >> 16) & 0xFFFF) / 65536.0 * 977.0)
    if not iy.size or not jx.size:
        return np.zeros((iy.size, jx.size))
    ia, ja = int(iy.min()), int(jx.min())
    tab = noise.uniform_from_hash(noise.lattice_hash(
        key, np.arange(ia, int(iy.max()) + 2, dtype=np.int64)[:, None],
        np.arange(ja, int(jx.max()) + 2, dtype=np.int64)[None, :])) * 2.0 - 1.0
    r0, r1 = tab[iy - ia], tab[iy - ia + 1]  # (H, lattice columns)
    rm = r0 + (r1 - r0) * fy[:, None]
    starts = np.flatnonzero(np.diff(jx, prepend=jx[0] - 1))  # runs of points in one lattice column
    if starts.size <= 8:  # a deep window spans a few columns: broadcast per run instead of gathering
        out = np.empty((iy.size, jx.size))
        for s0, s1 in zip(starts, np.append(starts[1:], jx.size)):
            j = int(jx[s0]) - ja
            a, b = rm[:, j : j + 1], rm[:, j + 1 : j + 2]
            out[:, s0:s1] = a + (b - a) * fx[None, s0:s1]
        return out
    a, b = rm[:, jx - ja], rm[:, jx - ja + 1]
    return a + (b - a) * fx[None, :]


def point_noise(seed: int, stream: int, x: np.ndarray, y: np.ndarray, wavelength: float) -> np.ndarray:
    """:func:`grid_noise` at scattered points x, y (same shape): the same expressions, the same bits."""
    from generator import noise

    key = noise.stream_key(seed, 4000 + stream, 11)
    jx, fx = _lattice_axis(x, wavelength, (key & 0xFFFF) / 65536.0 * 977.0)
    iy, fy = _lattice_axis(y, wavelength, ((key >> 16) & 0xFFFF) / 65536.0 * 977.0)

    def h(di, dj):
        return noise.uniform_from_hash(noise.lattice_hash(key, iy + di, jx + dj)) * 2.0 - 1.0

    h00, h01 = h(0, 0), h(0, 1)
    a = h00 + (h(1, 0) - h00) * fy
    b = h01 + (h(1, 1) - h01) * fy
    return a + (b - a) * fx


def _lattice_axis(t: np.ndarray, wavelength: float, off: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index (int64) and quintic-faded fraction (float64) of coordinates t along one axis."""
    u = np.asarray(t, dtype=np.float64) / wavelength + off
    i = np.floor(u)
    f = u - i
    return i.astype(np.int64), f * f * f * (f * (f * 6.0 - 15.0) + 10.0)
