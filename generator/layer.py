"""The served feature layer's content: what ``worldstream serve --features`` adds to each tile.

:func:`tile_layer` gathers, for one tile, the arrays that ``runtime.featurelayer.encode_layer``
codes: the land-cover classes (:mod:`generator.landcover`) with the tile's streets burnt in
as ``road``, the buildings and trees (:mod:`generator.features`) and the scene palette
(:mod:`generator.scene`). :func:`layered_source` wraps a pyramid's ``tiles`` so that the
layer is computed on the generator's thread, beside the fields (the pyramid and its caches
are not thread-safe; the mesh workers only code arrays).

Levels: the class grid from :data:`LAYER_MIN_LEVEL` (1.2 km samples: segmentation sensors
classify the ground out to the horizon; a few hundred bytes a tile), buildings and streets at
``generator.features.BUILDING_LEVELS`` (13-19), merged blocks standing in for them at
``BLOCK_LEVEL`` (12, the far field), trees at ``TREE_LEVELS`` (15-19).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from generator.features import (
    BLOCK_LEVEL,
    BUILDING_LEVELS,
    TREE_LEVELS,
    _buildings,
    _metres_per_sample,
    blocks,
    parcels,
    roads,
    trees,
)
from generator.landcover import ROAD, tile_landcover
from generator.scene import ALBEDO, NIR
from runtime.tiles import T, TileKey, World

LAYER_MIN_LEVEL = 6
LAYER_CONTENT = "features-4"  # 4: land cover water = the lake rule (2026-12-05)
"""What the layer's arrays are made by; part of the tile store's key for frames with the layer
(:func:`layered_model_id`), so a store baked by older rules is not mixed with new tiles. 2: the
class field's separable noise and per-node plane classes, the 9.6 m slope rule for buildings.
3: earth buildings' density and heights from data (``generator.urban``); merged blocks at level 12."""


@dataclass(frozen=True)
class LayeredFields:
    """A tile's fields plus its layer arrays (``layer``: keyword arguments of
    ``runtime.featurelayer.encode_layer`` but ``level``, or None below LAYER_MIN_LEVEL)."""

    key: TileKey
    height: np.ndarray
    rgb: np.ndarray | None
    model: str
    layer: dict | None


def burn_roads(world: World, key: TileKey, classes: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(T+1, T+1) uint8 copy of ``classes`` with ROAD on every sample within half a street's width
    of a segment ((K, 5) [east0, north0, east1, north1, width] m, axis-aligned, tile metres as in
    ``generator.features.roads``). Each segment paints one rectangle of samples (a 2-D difference
    array: no per-segment loop); east metres per sample are taken at the segment's middle row."""
    out = classes.copy()
    if not len(segments):
        return out
    s = segments.astype(np.float64)
    half = s[:, 4] / 2.0
    rows_mid = -(s[:, 1] + s[:, 3]) / 2.0
    _, n_m = _metres_per_sample(world, key.level, np.zeros(1))
    e_m, _ = _metres_per_sample(world, key.level, key.y * T + np.clip(rows_mid / n_m, 0, T))
    lo_e, hi_e = np.minimum(s[:, 0], s[:, 2]) - half, np.maximum(s[:, 0], s[:, 2]) + half
    lo_s, hi_s = np.minimum(-s[:, 1], -s[:, 3]) - half, np.maximum(-s[:, 1], -s[:, 3]) + half
    c0 = np.clip(np.ceil(lo_e / e_m), 0, T + 1).astype(np.int64)
    c1 = np.clip(np.floor(hi_e / e_m) + 1, 0, T + 1).astype(np.int64)
    r0 = np.clip(np.ceil(lo_s / n_m), 0, T + 1).astype(np.int64)
    r1 = np.clip(np.floor(hi_s / n_m) + 1, 0, T + 1).astype(np.int64)
    ok = (c1 > c0) & (r1 > r0)
    d = np.zeros((T + 2, T + 2), np.int64)
    for rr, cc, sign in ((r0, c0, 1), (r0, c1, -1), (r1, c0, -1), (r1, c1, 1)):
        np.add.at(d, (rr[ok], cc[ok]), sign)
    cover = d.cumsum(axis=0).cumsum(axis=1)[: T + 1, : T + 1] > 0
    out[cover] = ROAD
    return out


def tile_layer(pyramid, key: TileKey, heights_m: np.ndarray) -> dict | None:
    """The layer arrays of one pyramid tile (see :class:`LayeredFields`); None below
    LAYER_MIN_LEVEL. heights_m: the tile's (T+1, T+1) float32 heights."""
    if key.level < LAYER_MIN_LEVEL:
        return None
    world, seed = pyramid.world, pyramid.seed
    lc = tile_landcover(pyramid, key, heights_m)
    out = {"classes": lc, "albedo": ALBEDO, "nir": NIR}
    P = parcels(world, seed, key, heights_m, lc)  # shared by buildings, streets and trees
    if key.level == BLOCK_LEVEL:  # the far field's merged blocks
        out["buildings"] = blocks(world, seed, key, heights_m, lc)
    built = None
    if key.level in BUILDING_LEVELS:
        built = _buildings(world, seed, key, heights_m, lc, P)  # also what trees keep clear of
        out["buildings"] = built[0]
        out["classes"] = burn_roads(world, key, lc, roads(world, seed, key, lc, P))
    if key.level in TREE_LEVELS:
        out["trees"] = trees(world, seed, key, lc, heights_m, P, built)
    return out


def layered_source(pyramid):
    """``keys -> [LayeredFields]``: ``pyramid.tiles`` plus each tile's layer (a tile source for
    ``streaming.tileservice.TileService``)."""

    def tiles(keys: Iterable[TileKey]) -> Sequence[LayeredFields]:
        keys = list(keys)
        return [LayeredFields(k, f.height, f.rgb, f.model, tile_layer(pyramid, k, f.height))
                for k, f in zip(keys, pyramid.tiles(keys), strict=True)]

    return tiles


def layered_model_id(model_id: str) -> str:
    """The tile store's model key of frames with the layer (``serve --features``, ``bake --features``)."""
    return f"{model_id}+{LAYER_CONTENT}"


class LayeredPyramid:
    """A pyramid seen as ``streaming.bake`` sees one (``model_id``, ``tiles(keys)``) whose tiles carry
    the feature layer and whose model id is :func:`layered_model_id`: ``worldstream bake --features``
    bakes with it, so its store holds the very frames a ``serve --features`` server stores, under
    the same key, and that server reuses them (a store baked without the layer holds frames without
    it, under the bare model id: a features server cannot use those, since the layer needs the
    tile's generated heights, which a frame does not carry)."""

    def __init__(self, pyramid):
        self.pyramid = pyramid
        self.model_id = layered_model_id(pyramid.model_id)
        self.tiles = layered_source(pyramid)


def open_layered(world: str, seed: int, refiner: str = "auto") -> LayeredPyramid:
    """``generator.pyramid.open_world`` wrapped in :class:`LayeredPyramid` (a picklable opener for
    Ray bakers with ``functools.partial``)."""
    from generator.pyramid import open_world

    return LayeredPyramid(open_world(world, seed, refiner=refiner))
