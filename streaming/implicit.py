"""3D Tiles 1.1 implicit tiling of the earth world (3D Tiles 1.1 spec, "Implicit Tiling"):
coordinates, ``tileset.json`` and binary ``.subtree`` availability files.

A ``tileset.json`` whose two children are the two level-0 tiles of the geographic
scheme (an implicit tileset has one root); binary ``.subtree`` files declare exactly the
tiles that exist (served: one level each, with the tile's real height range as
TILE_MINIMUM_HEIGHT / TILE_MAXIMUM_HEIGHT tile metadata; exported: the stored tiles a
client can reach). Each tile's geometric error is CesiumJS's error of a terrain tile of
its level, so both providers refine at the same views. The GLB content comes from
``streaming.ecosystem``. Implicit tile coordinates count y from the south (CesiumJS
``Implicit3DTileContent.deriveBoundingRegion``); our keys count rows from the north.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from runtime.formats.bounds import CESIUM_LEVEL0_ERROR_M
from runtime.geometry import DEFAULT_HEIGHT_RANGE_M
from runtime.tiles import MAX_LEVEL, WGS84_A_M, TileKey, World, validate_key

SUBTREE_LEVELS = 4
"""Levels per implicit subtree file of a static export (a subtree covers 1 + 4 + 16 + 64 tiles)."""
SERVED_SUBTREE_LEVELS = 1
"""Levels per subtree of the live server: one tile, so a subtree (which carries the tile's
height range) needs only the tile CesiumJS is about to load anyway."""
ROOT_GEOMETRIC_ERROR_M = WGS84_A_M
"""Error of drawing none of the earth (the contentless tileset root): large enough that
CesiumJS always refines it into the level-0 tiles, as its terrain always draws level 0."""


# ---------------------------------------------------------------- 3D Tiles implicit tiling


@dataclass(frozen=True, order=True)
class ImplicitCoord:
    """A tile of one of the two implicit quadtrees: ``root`` 0 (west) or 1 (east),
    ``level``, ``x`` eastward and ``y`` northward within that root."""

    root: int
    level: int
    x: int
    y: int


def implicit_coord(key: TileKey) -> ImplicitCoord:
    """Our earth key (rows from the north) -> its implicit tile (y from the south)."""
    validate_key(World.EARTH, key)
    n = 1 << key.level
    return ImplicitCoord(key.x // n, key.level, key.x % n, n - 1 - key.y)


def tile_key(c: ImplicitCoord) -> TileKey:
    """Inverse of ``implicit_coord``; raises ValueError for coordinates outside the quadtree."""
    n = 1 << c.level if 0 <= c.level <= MAX_LEVEL else 0
    if c.root not in (0, 1) or not (0 <= c.x < n and 0 <= c.y < n):
        raise ValueError(f"implicit tile must have root 0 or 1, level in [0, {MAX_LEVEL}] and x, y in "
                         f"[0, 2^level), got {c}")
    return TileKey(c.level, c.root * n + c.x, n - 1 - c.y)


TILE_BOUNDS_SCHEMA = {
    "id": "worldstream_tile_bounds",
    "classes": {"tile": {"properties": {
        "minimumHeight": {"type": "SCALAR", "componentType": "FLOAT64", "semantic": "TILE_MINIMUM_HEIGHT"},
        "maximumHeight": {"type": "SCALAR", "componentType": "FLOAT64", "semantic": "TILE_MAXIMUM_HEIGHT"},
    }}},
}
"""3D Tiles 1.1 metadata schema of the per-tile height range the subtrees carry: CesiumJS
replaces the heights of a tile's implicit region with these (Implicit3DTileContent)."""


def implicit_tileset_json(max_level: int, roots: Iterable[int] = (0, 1), *, subtree_levels: int = SUBTREE_LEVELS,
                          height_range_m: tuple[float, float] = DEFAULT_HEIGHT_RANGE_M) -> dict:
    """3D Tiles 1.1 ``tileset.json``: an empty global root refined into one implicit
    quadtree per geographic level-0 tile present in ``roots``.

    Geometric error of an implicit level-L tile is CesiumJS's error of a level-L
    quantized-mesh tile (runtime.formats.bounds.cesium_level_error_m: 77,067 m / 2^L),
    which halves per level as implicit tiling requires, so at one maximumScreenSpaceError
    both providers select the same levels. The global root's error (ROOT_GEOMETRIC_ERROR_M)
    makes it always refine. ``height_range_m`` gives the heights of the implicit root
    regions, which only the not-yet-loaded subtree placeholders use: every tile's region
    takes its own content's heights from its subtree's tile metadata (TILE_BOUNDS_SCHEMA).
    Paths: ``subtrees/{root}/{level}/{x}/{y}.subtree`` and ``tiles/{root}/{level}/{x}/{y}.glb``."""
    if not 0 <= max_level <= MAX_LEVEL:
        raise ValueError(f"max_level must be in [0, {MAX_LEVEL}], got {max_level}")
    if subtree_levels < 1:
        raise ValueError(f"subtree_levels must be >= 1, got {subtree_levels}")
    roots = sorted(set(roots))
    if not roots or not set(roots) <= {0, 1}:
        raise ValueError(f"roots must be a non-empty subset of (0, 1), got {roots}")
    h0, h1 = (float(v) for v in height_range_m)
    if not h0 <= h1:
        raise ValueError(f"height_range_m must be (low, high) with low <= high, got {height_range_m}")
    children = []
    for r in roots:
        west = -math.pi + r * math.pi
        children.append({
            "boundingVolume": {"region": [west, -math.pi / 2, west + math.pi, math.pi / 2, h0, h1]},
            "geometricError": CESIUM_LEVEL0_ERROR_M,
            "refine": "REPLACE",
            "content": {"uri": f"tiles/{r}/{{level}}/{{x}}/{{y}}.glb"},
            "implicitTiling": {
                "subdivisionScheme": "QUADTREE",
                "subtreeLevels": subtree_levels,
                "availableLevels": max_level + 1,
                "subtrees": {"uri": f"subtrees/{r}/{{level}}/{{x}}/{{y}}.subtree"},
            },
        })
    west = -math.pi + roots[0] * math.pi
    east = -math.pi + (roots[-1] + 1) * math.pi
    return {
        "asset": {"version": "1.1", "generator": "worldstream"},
        "schema": TILE_BOUNDS_SCHEMA,
        "geometricError": ROOT_GEOMETRIC_ERROR_M,
        "root": {
            "boundingVolume": {"region": [west, -math.pi / 2, east, math.pi / 2, h0, h1]},
            "geometricError": ROOT_GEOMETRIC_ERROR_M,
            "refine": "REPLACE",
            "children": children,
        },
    }


def morton2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Morton (Z-order) index of quadtree tiles: bits of x on even, of y on odd positions
    (3D Tiles 1.1, "Availability": tiles of a level are ordered by Morton index)."""
    x, y = np.asarray(x, np.uint64), np.asarray(y, np.uint64)
    out = np.zeros(np.broadcast(x, y).shape, np.uint64)
    for b in range(32):
        out |= ((x >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b)
        out |= ((y >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b + 1)
    return out


def subtree_bytes(tile: bool | np.ndarray, content: bool | np.ndarray, child: bool | np.ndarray,
                  heights_m: np.ndarray | None = None) -> bytes:
    """A binary ``.subtree`` file (magic ``subt``, version 1, JSON chunk, binary chunk).

    Each availability is a constant (bool) or a bitstream given as a (n,) bool array:
    tiles of every subtree level by Morton index, level after level (tile, content),
    or the subtree roots one level below the subtree (child). Bits are packed least
    significant first; chunks and buffer views are 8-byte aligned, as the spec asks.
    ``heights_m``: optional (k, 2) float64 [min, max] content heights of the k available
    tiles in bit order, written as a property table of TILE_BOUNDS_SCHEMA's ``tile``
    class (``tileMetadata``); it needs ``tile`` as a bitstream."""
    views, blob = [], bytearray()

    def view(data: bytes) -> int:
        while len(blob) % 8:
            blob.append(0)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        blob.extend(data)
        return len(views) - 1

    def avail(a):
        if isinstance(a, (bool, np.bool_)):
            return {"constant": int(bool(a))}
        a = np.asarray(a, dtype=bool)
        return {"bitstream": view(np.packbits(a, bitorder="little").tobytes()), "availableCount": int(a.sum())}

    js = {"tileAvailability": avail(tile), "contentAvailability": [avail(content)],
          "childSubtreeAvailability": avail(child)}
    if heights_m is not None:
        hm = np.asarray(heights_m, dtype="<f8").reshape(-1, 2)
        if isinstance(tile, (bool, np.bool_)) or len(hm) != js["tileAvailability"]["availableCount"]:
            raise ValueError(f"heights_m needs one [min, max] row per available tile of a tile bitstream, "
                             f"got {len(hm)} rows")
        if not (np.isfinite(hm).all() and (hm[:, 0] <= hm[:, 1]).all()):
            raise ValueError("heights_m rows must be finite [min, max] with min <= max")
        js["propertyTables"] = [{"class": "tile", "count": len(hm), "properties": {
            "minimumHeight": {"values": view(hm[:, 0].tobytes())},
            "maximumHeight": {"values": view(hm[:, 1].tobytes())}}}]
        js["tileMetadata"] = 0
    while len(blob) % 8:
        blob.append(0)
    if blob:
        js["buffers"] = [{"byteLength": len(blob)}]
        js["bufferViews"] = views
    text = json.dumps(js, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<4sIQQ", b"subt", 1, len(text), len(blob)) + text + bytes(blob)


def reachable(keys: Iterable[TileKey]) -> set[TileKey]:
    """The earth keys whose every ancestor is in ``keys`` too: the tiles a client can reach
    from the level-0 roots (implicit availability must not mark a tile with no parent)."""
    keys = set(keys)
    out: set[TileKey] = set()
    for k in sorted(keys, key=lambda k: k.level):
        if k.level == 0 or k.parent() in out:
            out.add(k)
    return out


def subtrees_for(keys: Iterable[TileKey], max_level: int, subtree_levels: int = SUBTREE_LEVELS,
                 heights_m: dict[TileKey, tuple[float, float]] | None = None) -> dict[ImplicitCoord, bytes]:
    """The ``.subtree`` files of a tileset holding exactly ``keys`` (earth, levels <= max_level).

    Only tiles a client can reach (``reachable``) are marked. A subtree is written for every
    subtree root that has an available tile below it; a tile's content is available exactly
    when the tile is (every stored tile has a GLB); a child subtree exactly when it is
    written. ``heights_m``: key -> (min, max) content heights (``tile_height_range``) of
    every key, written as tile metadata."""
    coords = {implicit_coord(k) for k in reachable(k for k in keys if k.level <= max_level)}
    by_subtree: dict[ImplicitCoord, list[ImplicitCoord]] = {}
    for c in coords:
        s_level = (c.level // subtree_levels) * subtree_levels
        d = c.level - s_level
        by_subtree.setdefault(ImplicitCoord(c.root, s_level, c.x >> d, c.y >> d), []).append(c)
    d = subtree_levels
    children: dict[ImplicitCoord, np.ndarray] = {}
    for cs in by_subtree:
        if cs.level >= d:
            p = ImplicitCoord(cs.root, cs.level - d, cs.x >> d, cs.y >> d)
            bits = children.setdefault(p, np.zeros(4 ** d, dtype=bool))
            bits[int(morton2(cs.x - (p.x << d), cs.y - (p.y << d)))] = True
    out = {}
    n_tiles = (4 ** d - 1) // 3
    for s, members in by_subtree.items():
        bits = np.zeros(n_tiles, dtype=bool)
        at = {}
        for c in members:
            k = c.level - s.level
            i = (4 ** k - 1) // 3 + int(morton2(c.x - (s.x << k), c.y - (s.y << k)))
            bits[i] = True
            at[i] = c
        hm = None
        if heights_m is not None:
            hm = np.array([heights_m[tile_key(at[i])] for i in sorted(at)], dtype=np.float64)
        child = children.get(s)
        out[s] = subtree_bytes(bits, bits, child if child is not None else False, hm)
    return out


def served_subtree_bytes(c: ImplicitCoord, max_level: int, height_range_m: tuple[float, float]) -> bytes:
    """The one-tile subtree (SERVED_SUBTREE_LEVELS) of a live server, where every tile to
    ``max_level`` exists: the tile and its content are available, with the content's
    ``height_range_m``; the four child subtrees exist while ``c.level < max_level``."""
    tile_key(c)
    if not 0 <= c.level <= max_level:
        raise ValueError(f"subtree level must be in [0, {max_level}], got {c.level}")
    one = np.ones(1, dtype=bool)
    return subtree_bytes(one, one, bool(c.level < max_level), np.array([height_range_m], np.float64))


def subtree_path_of(c: ImplicitCoord) -> str:
    return f"subtrees/{c.root}/{c.level}/{c.x}/{c.y}.subtree"
