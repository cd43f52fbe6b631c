"""Lattice value noises of the land-cover field (:mod:`generator.landcover`), keyed by location.

- :func:`value_noise`: the rotated lattice noise of ``generator.anchors.plane`` (towns, parks,
  villages, colour grain), the same function (:mod:`generator.valuenoise`);
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
    """Smooth lattice value noise in [-1, 1] at float64 points (any unit; ``wavelength`` in it):
    ``generator.anchors.plane``'s rotated lattice noise at octave 2000 + ``stream``
    (:func:`generator.valuenoise.value_noise`: compiled, or its numpy reference, which hashes
    each lattice node under a window's points once)."""
    from generator import valuenoise

    return valuenoise.value_noise(seed, 2000 + stream, x, y, wavelength)


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
