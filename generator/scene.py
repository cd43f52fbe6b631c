"""Colour and NIR from the scene: albedo that follows land cover, and a NIR reflectance per class.

``scene_colour(world, seed, level, rows, cols, classes, rgb)`` -> (albedo (H, W, 3),
nir (H, W)) float32 in [0, 1] for a window of level-``level`` samples with their
land-cover classes (:mod:`generator.landcover`) and the pyramid's colour ``rgb``.

- Each class has a visible albedo (sRGB-ish, like the Blue Marble colours the
  anchor uses) and a NIR reflectance (~0.85 um) on the same display scale:
  vegetation is brighter in NIR than in red (cropland 0.55, broadleaf and grass
  0.5, needleleaf 0.38), water dark (0.03), snow bright in both (0.75), rock
  and sand moderate, towns grey (0.2). The ordering follows spectral libraries
  (e.g. the USGS and ECOSTRESS leaf, soil, snow and water curves); the numbers
  are rounded choices, not fitted here.
- Fields: cropland, grassland and shrubland are tinted per *field*, a cell of
  the fixed level-9 lattice (153 m; earth: of lon/lat), by a hash of the cell
  index (a patchwork); every class gets +-6 % brightness value noise at 60 m.
- The pyramid's colour keeps the regional tone: albedo = mix(rgb, class colour,
  w(B)) with B the sample's birth level and w = 0.2 x (B - anchor), capped at
  0.8. Samples born at or above the anchor level keep the anchor's colour.

Why it nests: every input (class, pyramid colour, location, birth level) is the
same at every level at which a sample exists (see :mod:`generator.landcover`).

Not wired into the served tiles: ``worldstream tile`` writes ``albedo`` and
``nir`` beside the unchanged ``rgb``; using it for the served colour is one call
in the pyramid's tile assembly and changes tile bytes (docs/LANDCOVER.md).
"""

from __future__ import annotations

import numpy as np

from generator import noise
from generator.landcover import CLASS_NAMES, CROPLAND, GRASSLAND, SHRUBLAND, _ctz, locations, value_noise
from runtime.tiles import ANCHOR_LEVEL, World, spacing_deg, spacing_m

ALBEDO = np.array([
    [0.04, 0.09, 0.14],  # water
    [0.90, 0.92, 0.95],  # snow_ice
    [0.42, 0.39, 0.35],  # bare_rock
    [0.78, 0.70, 0.52],  # sand
    [0.36, 0.46, 0.20],  # grassland
    [0.42, 0.42, 0.26],  # shrubland
    [0.13, 0.27, 0.09],  # broadleaf_forest
    [0.08, 0.18, 0.08],  # needleleaf_forest
    [0.45, 0.48, 0.24],  # cropland
    [0.20, 0.30, 0.20],  # wetland
    [0.50, 0.48, 0.45],  # urban
    [0.55, 0.52, 0.48],  # building
    [0.30, 0.30, 0.31],  # road
    [0.12, 0.25, 0.09],  # tree
    [0.53, 0.70, 0.92],  # sky
], dtype=np.float32)
"""(len(CLASS_NAMES), 3) visible albedo per class id."""
NIR = np.array([0.03, 0.75, 0.30, 0.45, 0.50, 0.48, 0.50, 0.38, 0.55, 0.30, 0.20, 0.20, 0.15, 0.48, 0.0],
               dtype=np.float32)
"""(len(CLASS_NAMES),) NIR reflectance per class id."""
FIELD_LEVEL = 9
MAX_WEIGHT, WEIGHT_PER_LEVEL = 0.8, 0.2


def scene_colour(world: World | str, seed: int, level: int, rows: np.ndarray, cols: np.ndarray,
                 classes: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(albedo (H, W, 3), nir (H, W)) float32 of level-``level`` samples rows (H,) x cols (W,) with
    classes (H, W) uint8 and the pyramid's rgb (H, W, 3) in [0, 1] (module docstring)."""
    world = World.parse(world) if not isinstance(world, World) else world
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if classes.shape != (rows.size, cols.size) or rgb.shape != classes.shape + (3,):
        raise ValueError(f"classes must be {(rows.size, cols.size)} and rgb {(rows.size, cols.size, 3)}, "
                         f"got {classes.shape} and {rgb.shape}")
    if classes.max(initial=0) >= len(CLASS_NAMES):
        raise ValueError(f"class ids must be < {len(CLASS_NAMES)}, got {int(classes.max())}")
    x, y = locations(world, level, rows, cols)
    if world is World.EARTH:
        fi = np.floor((90.0 - y) / spacing_deg(FIELD_LEVEL)).astype(np.int64)
        fj = np.floor((x + 180.0) / spacing_deg(FIELD_LEVEL)).astype(np.int64)
        grain = value_noise(seed, 30, x, y, 60.0 / 111320.0)
    else:
        fi = np.floor(y / spacing_m(FIELD_LEVEL)).astype(np.int64)
        fj = np.floor(x / spacing_m(FIELD_LEVEL)).astype(np.int64)
        grain = value_noise(seed, 30, x, y, 60.0)
    colour = ALBEDO[classes] * (1.0 + 0.06 * grain)[..., None].astype(np.float32)
    nir = NIR[classes] * (1.0 + 0.06 * grain).astype(np.float32)
    fields = np.isin(classes, (CROPLAND, GRASSLAND, SHRUBLAND))
    if fields.any():
        h = noise.hash_pairs(noise.stream_key(seed, FIELD_LEVEL, 31), fi[fields], fj[fields])
        u = (h & np.uint64(0xFFFF)).astype(np.float32) / np.float32(65536.0)
        v = ((h >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.float32) / np.float32(65536.0)
        tint = np.stack([0.8 + 0.4 * u, 0.85 + 0.3 * v, 0.8 + 0.3 * u * v], axis=-1)  # green crops .. stubble
        colour[fields] *= tint
        nir[fields] *= 0.7 + 0.6 * v  # greener fields reflect more NIR
    r = np.broadcast_to(rows[:, None], classes.shape)
    c = np.broadcast_to(cols[None, :], classes.shape)
    birth = level - np.minimum(np.minimum(_ctz(r), _ctz(c)), level)
    w = np.clip(WEIGHT_PER_LEVEL * (birth - ANCHOR_LEVEL), 0.0, MAX_WEIGHT).astype(np.float32)[..., None]
    albedo = rgb.astype(np.float32) * (1 - w) + colour * w
    return (np.clip(albedo, 0.0, 1.0).astype(np.float32), np.clip(nir, 0.0, 1.0).astype(np.float32))
