"""The plane's anchor-node context for the class field (:mod:`generator.landcover`), memoised.

``PlaneAnchor.node_context`` (the continent fields) costs ~2 ms of Python per call whatever its
size, and every deep tile of a region asks for a few nodes: so nodes are computed per aligned
area and kept in a small least-recently-used memo (docs/BENCHMARKS.md, "Every tile under 5 ms").
"""

from __future__ import annotations

import collections
import functools

import numpy as np

ANCHOR_AREA_NODES = 16
"""Anchor cells per side of the memoised areas of :func:`_anchor_nodes` (157 km)."""
ANCHOR_AREAS_KEPT = 64
_AREAS: collections.OrderedDict = collections.OrderedDict()  # (seed, br, bc) -> nodes, least recent first


def _anchor_nodes(seed: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """(11, r1-r0+1, c1-c0+1) float32 channels land, climate B, D, E and the seven cover groups of
    the plane's anchor nodes rows r0..r1 x cols c0..c1 (``PlaneAnchor.node_context``, pointwise).

    The continent fields cost ~2 ms of Python per call whatever their size, so nodes are computed
    per aligned area of :data:`ANCHOR_AREA_NODES` cells (its nodes and one more row and column on
    each side: a tile's warped lookup reaches one node past its edges) and memoised (:func:`_anchor_area`,
    :data:`ANCHOR_AREAS_KEPT` areas, ~0.8 MB): every tile of level >= 7 lies inside one area.
    Larger boxes (level-6 tiles) are memoised per box and fill the areas inside them, so in a
    descent the level-6 ancestor pays once for its descendants."""
    a = ANCHOR_AREA_NODES
    br, bc = (r0 + 1) // a, (c0 + 1) // a
    if r1 <= br * a + a + 1 and c1 <= bc * a + a + 1:
        i0, j0 = br * a - 1, bc * a - 1
        return _anchor_area(seed, br, bc)[:, r0 - i0 : r1 - i0 + 1, c0 - j0 : c1 - j0 + 1]
    box = _anchor_box(seed, r0 - 1, r1 + 1, c0 - 1, c1 + 1)  # one node more each side: whole areas
    for i in range(-(-r0 // a), (r1 - a) // a + 1):  # the areas inside it
        for j in range(-(-c0 // a), (c1 - a) // a + 1):
            if (seed, i, j) not in _AREAS:
                part = np.ascontiguousarray(box[:, i * a - r0 : i * a + a + 3 - r0, j * a - c0 : j * a + a + 3 - c0])
                part.flags.writeable = False
                _keep_area((seed, i, j), part)
    return box[:, 1:-1, 1:-1]


def _anchor_area(seed: int, br: int, bc: int) -> np.ndarray:
    """The nodes of area (br, bc): rows br*16 - 1 .. br*16 + 17 (a deep tile's warped lookup reaches
    one node past either edge of its cells), the same for cols (least-recently-used memo of
    ANCHOR_AREAS_KEPT areas)."""
    key = (seed, br, bc)
    out = _AREAS.get(key)
    if out is None:
        a = ANCHOR_AREA_NODES
        out = _anchor_box.__wrapped__(seed, br * a - 1, br * a + a + 1, bc * a - 1, bc * a + a + 1)
        _keep_area(key, out)
    else:
        _AREAS.move_to_end(key)
    return out


def _keep_area(key: tuple, nodes: np.ndarray) -> None:
    _AREAS[key] = nodes
    _AREAS.move_to_end(key)
    while len(_AREAS) > ANCHOR_AREAS_KEPT:
        _AREAS.popitem(last=False)


def anchor_memo_clear() -> None:
    """Forget the memoised anchor nodes (benchmarks of a cold start)."""
    _AREAS.clear()
    _anchor_box.cache_clear()


@functools.lru_cache(maxsize=16)
def _anchor_box(seed: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    from generator.anchors.plane import PlaneAnchor

    n = PlaneAnchor(seed).node_context(np.arange(r0, r1 + 1, dtype=np.int64), np.arange(c0, c1 + 1, dtype=np.int64))
    out = n[[0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]]
    out.flags.writeable = False
    return out
