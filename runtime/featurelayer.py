"""The feature layer of a tile payload: land-cover classes, buildings and trees (format v1).

An optional entry ``features`` of the tile payload (``runtime.wire``; docs/PROTOCOL.md),
present only on servers started with ``--features`` and only for clients that ask for
the ``features`` layer in their hello. Decoding needs numpy and the standard library.

Contents (all optional but the header):

- ``classes``: the class id of every sample, (T+1, T+1) uint8 (:data:`CLASS_NAMES`,
  index = id; streets burnt in as ``road`` where the tile carries streets). Coded as
  each row XOR the row above (land cover is made of regions: most bytes become 0), then
  deflated.
- ``palette``: per class the visible albedo (C, 3) uint8 and NIR reflectance (C,) uint8
  (the generator's scene colours, so the viewer and the NIR sensor need no generator).
- ``buildings``: (N, 5) [east, north, width, depth, height] metres, east and north from
  the tile's sample [0, 0] along the grid axes (north = -row x spacing), axis-aligned
  boxes standing on the ground; ``trees``: (M, 3) [east, north, height]. Each carries its
  ``quantum_m``: building values are integers times 2^floor(log2(spacing / 4)) (2 m at
  level 13, seen from kilometres; 1/32 m at level 19: about a quarter of a sample), tree
  values times four times that (a crown is metres wide; trees are the bulk of a forest
  tile's layer); east and north are delta coded in the generator's order, everything
  zig-zag coded, split into byte planes and deflated per stream (``runtime.intstreams``'
  layout; deflate level 9, the smaller of the filtered and Huffman-only strategies: these
  streams are small and made of few distinct values). ``count`` 0 sends no streams.

Decoding is exact: ``decode_layer(encode_layer(...))`` gives the quantised values bit for
bit, and re-encoding them gives the same bytes.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from runtime.intstreams import _inflate, _unpack_uints, _unzigzag, _zigzag, byte_planes, get_field
from runtime.tiles import spacing_m

FORMAT = "worldstream.features"
VERSION = 1
LAYER = "features"
"""The name a client asks for in its hello (``layers``) and the payload's key."""
CLASS_NAMES = ("water", "snow_ice", "bare_rock", "sand", "grassland", "shrubland", "broadleaf_forest",
               "needleleaf_forest", "cropland", "wetland", "urban", "building", "road", "tree", "sky")
"""The fixed class table of the layer and the segmentation sensor (index = class id); the same
as ``generator.landcover.CLASS_NAMES`` (tests/runtime/test_featurelayer.py checks it)."""
(WATER, SNOW_ICE, BARE_ROCK, SAND, GRASSLAND, SHRUBLAND, BROADLEAF, NEEDLELEAF, CROPLAND, WETLAND,
 URBAN, BUILDING, ROAD, TREE, SKY) = range(len(CLASS_NAMES))
NO_CLASS = 255
"""Segmentation value of pixels nothing classified (ground of a tile without the layer)."""
MAX_FEATURES = 1 << 16
"""Most buildings or trees accepted per tile from the network."""
_COLUMNS = {"buildings": ("east", "north", "width", "depth", "height"), "trees": ("east", "north", "height")}
_DELTA = ("east", "north")  # delta coded along the generator's (row-major) order
FEATURE_ZLIB_LEVEL = 9  # 2-4 % smaller than level 4 on building streams, < 0.3 ms a tile


def quantum_for_level(level: int, kind: str = "buildings") -> float:
    """Feature quantum (m) of a level: the power of two <= spacing / 4 for buildings, four times
    that for trees."""
    return 2.0 ** math.floor(math.log2(spacing_m(level) / 4.0)) * (4.0 if kind == "trees" else 1.0)


@dataclass(frozen=True, eq=False)
class FeatureLayer:
    """A decoded feature layer. classes: (T+1, T+1) uint8 or None; buildings: (N, 5) float32
    [east, north, width, depth, height] m; trees: (M, 3) float32 [east, north, height] m;
    albedo: (C, 3) uint8 and nir: (C,) uint8 per class id, or None."""

    classes: np.ndarray | None
    buildings: np.ndarray
    trees: np.ndarray
    albedo: np.ndarray | None
    nir: np.ndarray | None


def _quantise(a: np.ndarray, cols: int, what: str, q: float) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != cols or len(a) > MAX_FEATURES or not np.isfinite(a).all():
        raise ValueError(f"{what} must be (n <= {MAX_FEATURES}, {cols}) finite metres, got shape {a.shape}")
    return np.round(a / q).astype(np.int64)


def encode_layer(level: int, classes: np.ndarray | None = None, buildings: np.ndarray | None = None,
                 trees: np.ndarray | None = None, albedo: np.ndarray | None = None,
                 nir: np.ndarray | None = None) -> dict:
    """The msgpack-ready ``features`` entry of a level-``level`` tile (module docstring).

    classes: (T+1, T+1) uint8 ids < len(CLASS_NAMES); buildings (N, 5), trees (M, 3) float
    metres; albedo (C, 3) and nir (C,) floats in [0, 1] per class (C = len(CLASS_NAMES))."""
    out: dict = {"format": FORMAT, "version": VERSION}
    if classes is not None:
        c = np.asarray(classes)
        if c.ndim != 2 or c.shape[0] != c.shape[1] or c.dtype != np.uint8 or c.max(initial=0) >= len(CLASS_NAMES):
            raise ValueError(f"classes must be a square uint8 grid of ids < {len(CLASS_NAMES)}, "
                             f"got {c.dtype} {c.shape}")
        x = c.copy()
        x[1:] ^= c[:-1]  # each row XOR the row above
        out["classes"] = {"size": int(c.shape[0]), "data": zlib.compress(x.tobytes(), FEATURE_ZLIB_LEVEL)}
    if albedo is not None and nir is not None:
        a, n = np.asarray(albedo, np.float64), np.asarray(nir, np.float64)
        if a.shape != (len(CLASS_NAMES), 3) or n.shape != (len(CLASS_NAMES),):
            raise ValueError(f"albedo must be ({len(CLASS_NAMES)}, 3) and nir ({len(CLASS_NAMES)},), "
                             f"got {a.shape} and {n.shape}")
        out["palette"] = {"albedo": _u8(a).tobytes(), "nir": _u8(n).tobytes()}
    for name, arr in (("buildings", buildings), ("trees", trees)):
        if arr is None:
            continue
        cols = _COLUMNS[name]
        q = quantum_for_level(level, name)
        v = _quantise(arr, len(cols), name, q)
        streams = {"count": int(len(v)), "quantum_m": q}
        for i, col in enumerate(cols if len(v) else ()):
            s = np.diff(v[:, i], prepend=0) if col in _DELTA else v[:, i]
            streams[col] = _pack_stream(_zigzag(s))
        out[name] = streams
    return out


def _pack_stream(u: np.ndarray) -> bytes:
    """Unsigned ints -> ``runtime.intstreams.byte_planes`` (1 byte plane count, low
    plane first) as the smaller of two deflate streams: ``Z_FILTERED`` (LZ77 for the delta-coded
    positions, whose rows repeat) and ``Z_HUFFMAN_ONLY`` (sizes and heights: a few distinct values,
    where LZ77 matches cost more than they save). Any inflater reads either; 8-10 % smaller on dense
    urban tiles than one level-9 default stream (docs/BENCHMARKS.md)."""
    raw = byte_planes(u)
    best = b""
    for strategy in (zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY):
        z = zlib.compressobj(FEATURE_ZLIB_LEVEL, zlib.DEFLATED, 15, 9, strategy)
        out = z.compress(raw) + z.flush()
        if not best or len(out) < len(best):
            best = out
    return best


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def _get(p: dict, name: str, kind: type, where: str = "features"):
    return get_field(p, name, kind, where)


def decode_layer(p: dict, grid_size: int | None = None) -> FeatureLayer:
    """Decode and validate a ``features`` entry (numpy + stdlib only); ValueError names the
    offending field. grid_size: the tile's T (the class grid must then be (T+1, T+1))."""
    if not isinstance(p, dict):
        raise ValueError(f"features must be a map, got {type(p).__name__}")
    if p.get("format") != FORMAT or p.get("version") != VERSION:
        raise ValueError(f"features must be format {FORMAT!r} version {VERSION}, "
                         f"got {p.get('format')!r} version {p.get('version')!r}")
    classes = None
    if "classes" in p:
        c = _get(p, "classes", dict)
        size = _get(c, "size", int, "features classes")
        if grid_size is not None and size != grid_size + 1 or not 2 <= size <= 1025:
            raise ValueError(f"features classes size must be the tile's {grid_size} + 1 samples, got {size}")
        raw = _inflate(_get(c, "data", bytes, "features classes"), "features classes", size * size)
        if len(raw) != size * size:
            raise ValueError(f"features classes must hold {size * size} bytes, got {len(raw)}")
        x = np.frombuffer(raw, np.uint8).reshape(size, size)
        classes = np.bitwise_xor.accumulate(x, axis=0)  # undo the row XOR
        if classes.max(initial=0) >= len(CLASS_NAMES):
            raise ValueError(f"features class ids must be < {len(CLASS_NAMES)}, got {int(classes.max())}")
    albedo = nir = None
    if "palette" in p:
        pal = _get(p, "palette", dict)
        a, n = _get(pal, "albedo", bytes, "features palette"), _get(pal, "nir", bytes, "features palette")
        if len(a) != 3 * len(CLASS_NAMES) or len(n) != len(CLASS_NAMES):
            raise ValueError(f"features palette must hold {3 * len(CLASS_NAMES)} albedo and "
                             f"{len(CLASS_NAMES)} nir bytes, got {len(a)} and {len(n)}")
        albedo = np.frombuffer(a, np.uint8).reshape(-1, 3).copy()
        nir = np.frombuffer(n, np.uint8).copy()
    arrays = {}
    for name, cols in _COLUMNS.items():
        if name not in p:
            arrays[name] = np.zeros((0, len(cols)), np.float32)
            continue
        s = _get(p, name, dict)
        n = _get(s, "count", int, f"features {name}")
        if not 0 <= n <= MAX_FEATURES:
            raise ValueError(f"features {name} count must be in [0, {MAX_FEATURES}], got {n}")
        q = _get(s, "quantum_m", float, f"features {name}")
        if not (q > 0 and math.isfinite(q) and math.frexp(q)[0] == 0.5):
            raise ValueError(f"features {name} quantum_m must be a positive power of two, got {q!r}")
        vals = []
        for col in cols if n else ():
            v = _unzigzag(_unpack_uints(_get(s, col, bytes, f"features {name}"), n, f"features {name} {col}"))
            vals.append(np.cumsum(v) if col in _DELTA else v)
        v = np.stack(vals, axis=1) if n else np.zeros((0, len(cols)))
        arrays[name] = (v.astype(np.float64) * q).astype(np.float32).reshape(n, len(cols))
    return FeatureLayer(classes, arrays["buildings"], arrays["trees"], albedo, nir)
