"""Compiled loops for a tile's border lists (numba, ``cache=True``; issue 15): what
``runtime.tin.placement.edge_indices`` and ``is_edge_indices`` did in ~30 numpy passes
(masks, ``flatnonzero``, a stable ``argsort`` per side; the check's masks and diffs) in
one pass over the vertices each, with the same answers (a stable counting sort by the
coordinate along the side is the stable argsort), and the skirts' faces; the tests
compare them.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _side_of(r: int, c: int, t: int, side: int) -> bool:
    """Whether grid node (r, c) lies on side 0 west (c == 0), 1 south (r == t), 2 east
    (c == t), 3 north (r == 0)."""
    if side == 0:
        return c == 0
    if side == 1:
        return r == t
    if side == 2:
        return c == t
    return r == 0


@numba.njit(cache=True, nogil=True)
def edge_lists(grid_rc: np.ndarray, t: int) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ok, west, south, east, north): int32 vertex indices of ``grid_rc`` ((n, 2) integer
    [row, col]) on each side, ordered by the coordinate along it (row on west and east,
    column on south and north), ties in index order; ok False (the lists empty) where a
    vertex on a side lies beyond [0, t] along it. Two passes: count, then place."""
    n = grid_rc.shape[0]
    counts = np.zeros((4, t + 2), np.int64)
    for v in range(n):
        r, c = grid_rc[v, 0], grid_rc[v, 1]
        if (c == 0 or c == t) and not 0 <= r <= t or (r == 0 or r == t) and not 0 <= c <= t:
            z = np.zeros(0, np.int32)
            return False, z, z, z, z
        if c == 0:
            counts[0, r + 1] += 1
        if r == t:
            counts[1, c + 1] += 1
        if c == t:
            counts[2, r + 1] += 1
        if r == 0:
            counts[3, c + 1] += 1
    for side in range(4):
        for i in range(t + 1):
            counts[side, i + 1] += counts[side, i]
    west, south = np.empty(counts[0, t + 1], np.int32), np.empty(counts[1, t + 1], np.int32)
    east, north = np.empty(counts[2, t + 1], np.int32), np.empty(counts[3, t + 1], np.int32)
    for v in range(n):
        r, c = grid_rc[v, 0], grid_rc[v, 1]
        if c == 0:
            west[counts[0, r]] = v
            counts[0, r] += 1
        if r == t:
            south[counts[1, c]] = v
            counts[1, c] += 1
        if c == t:
            east[counts[2, r]] = v
            counts[2, r] += 1
        if r == 0:
            north[counts[3, c]] = v
            counts[3, c] += 1
    return True, west, south, east, north


@numba.njit(cache=True, nogil=True)
def is_edge_list(e: np.ndarray, grid_rc: np.ndarray, t: int, side: int) -> bool:
    """Whether ``e`` ((k,) ints) lists every vertex of ``grid_rc`` on ``side`` (0 west, 1
    south, 2 east, 3 north), in strictly increasing order along it."""
    n = grid_rc.shape[0]
    count = 0
    for v in range(n):
        if _side_of(grid_rc[v, 0], grid_rc[v, 1], t, side):
            count += 1
    if e.shape[0] != count:
        return False
    prev = 0
    for i in range(e.shape[0]):
        v = e[i]
        if v < 0 or v >= n or not _side_of(grid_rc[v, 0], grid_rc[v, 1], t, side):
            return False
        a = grid_rc[v, 0] if side % 2 == 0 else grid_rc[v, 1]
        if i > 0 and not a > prev:
            return False
        prev = a
    return True


@numba.njit(cache=True, nogil=True)
def _chain_faces(out: np.ndarray, k: int, e: np.ndarray, reverse: bool, skirt_of: np.ndarray) -> int:
    """Write one chain's two triangle blocks from row ``k`` (see ``skirt_faces``); the next row."""
    m = e.shape[0] - 1
    if m <= 0:
        return k
    for i in range(m):  # [a, sa, sb] for every segment, then [a, sb, b]
        a, b = (e[m - i], e[m - i - 1]) if reverse else (e[i], e[i + 1])
        out[k + i, 0], out[k + i, 1], out[k + i, 2] = a, skirt_of[a], skirt_of[b]
        out[k + m + i, 0], out[k + m + i, 1], out[k + m + i, 2] = a, skirt_of[b], b
    return k + 2 * m


@numba.njit(cache=True, nogil=True)
def skirt_faces(west: np.ndarray, south: np.ndarray, east: np.ndarray, north: np.ndarray,
                skirt_of: np.ndarray) -> np.ndarray:
    """(2 * segments, 3) int32: two triangles per edge segment, the chains north (east ->
    west), west, south, east (south -> north), each chain's [a, sa, sb] rows then its
    [a, sb, b] rows (``placement._skirt_faces``' numpy order); skirt_of (n,) int32."""
    total = 0
    for e in (north, west, south, east):
        total += 2 * max(e.shape[0] - 1, 0)
    out = np.empty((total, 3), np.int32)
    k = _chain_faces(out, 0, north, True, skirt_of)
    k = _chain_faces(out, k, west, False, skirt_of)
    k = _chain_faces(out, k, south, False, skirt_of)
    _chain_faces(out, k, east, True, skirt_of)
    return out


def warm() -> None:
    """Compile or load the loops for the callers' dtypes (integer grids int32 or int64,
    edges int32 or int64; ``placement`` takes float grids the numpy way)."""
    for rc in (np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int64)):
        edge_lists(rc, 1)
        for e in (np.zeros(1, np.int32), np.zeros(1, np.int64)):
            is_edge_list(e, rc, 1, 0)
    e = np.zeros(2, np.int32)
    skirt_faces(e, e, e, e, np.zeros(1, np.int32))
