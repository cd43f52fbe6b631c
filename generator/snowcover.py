"""Snow on the served colour, where the class field says snow.

The pyramid's colour is Blue Marble's (earth) or the continent generator's (plane), refined: at
~500 m a pixel the Alps' glaciers and the snow above the snowline blur into the forest around
them, so the Pennine Alps came out dark green up to 4,500 m while the land-cover class field
(:mod:`generator.landcover`) said snow. This makes the colour follow the class field's snow:

- the snowline rule: land whose height is above the snowline plus the class field's own noise
  (``h > line + SNOW_NOISE_M * grid_noise(seed, 5, ...)``: the same function, the same bits);
  colour = mix(rgb, SNOW_RGB, w), w = 0.55 at the line rising to 1 at ``FULL_SNOW_M`` above it;
- MODIS snow/ice (glaciers and ice sheets, the base classes) below the line: w = ``GLACIER_W``.

So the drawn colour, the segmentation classes and the thermal and NIR sensors agree. Not in
the rule: the class field's bare rock (slope over 35 deg, which wins over snow there) needs the
birth slope of every sample (~5 ms a tile); steep faces above the snowline are white here and
rock in the classes.

Why it nests: height, location, land, the base class and the pyramid's colour of a sample are
the same at every level where the sample exists, and so is w. Cost: a tile with no sample within
``SNOW_NOISE_M`` of its snowline and no MODIS snow/ice cell near pays one comparison and (earth)
a look at the MODIS cells under it (~0.1-0.3 ms); one with snow pays the base classes and the
noise (~2.5 ms).
"""

from __future__ import annotations

import numpy as np

from runtime.tiles import T, TileKey, World

SNOW_RGB = np.array([0.90, 0.92, 0.95], np.float32)  # generator.scene.ALBEDO's snow_ice
FULL_SNOW_M = 400.0  # metres above the (noisy) snowline where the colour is all snow
GLACIER_W = 0.8  # snow share of the colour where MODIS says snow/ice below the snowline
VERSION = "snow-2"  # in the pyramid's model id


def _modis_snow_near(lat1: np.ndarray, lon1: np.ndarray) -> bool:
    """Whether any MODIS snow/ice cell (IGBP 15: glaciers, ice sheets) lies within the class
    field's warp of the samples at lat1 (H,) x lon1 (W,) degrees: only then can the base classes
    say snow below the snowline."""
    from generator.anchors.context import EarthContext
    from generator.landcover import WARP_DEG

    modis = EarthContext.shared().modis
    per = modis.shape[0] / 180.0
    r0 = int(np.clip(np.floor((90.0 - lat1.max() - WARP_DEG) * per), 0, modis.shape[0] - 1))
    r1 = int(np.clip(np.floor((90.0 - lat1.min() + WARP_DEG) * per), 0, modis.shape[0] - 1))
    lons = np.concatenate([lon1 - WARP_DEG, lon1, lon1 + WARP_DEG])
    cols = np.unique(np.mod(np.floor((lons + 180.0) * per).astype(np.int64), modis.shape[1]))
    return bool((modis[r0 : r1 + 1][:, cols] == 15).any())


def snow_weight(world: World, seed: int, key: TileKey, height_m: np.ndarray) -> np.ndarray | None:
    """(T+1, T+1) float32 in [0, 1]: how much of the tile's colour is snow (0 where the class
    field's snow rule or its MODIS snow/ice does not hold); None when no sample can be snow."""
    from generator.landcover import SNOW_ICE, SNOW_NOISE_M, axis_locations, base_classes, grid_noise, snowline_m

    if height_m.shape != (T + 1, T + 1):
        raise ValueError(f"height must be {(T + 1, T + 1)}, got {height_m.shape}")
    rows = key.y * T + np.arange(T + 1, dtype=np.int64)
    cols = key.x * T + np.arange(T + 1, dtype=np.int64)
    x1, y1 = axis_locations(world, key.level, rows, cols)
    if world is World.EARTH:
        line, wave = snowline_m(world, seed, y1)[:, None], 0.02
    else:
        line, wave = snowline_m(world, seed, None), 2000.0
    h = np.asarray(height_m, dtype=np.float32)
    high = h > line - SNOW_NOISE_M  # the class field's own screen (same comparison, same types)
    any_high = bool(high.any())
    if not any_high and not (world is World.EARTH and _modis_snow_near(y1, x1)):
        return None
    cls, land, _ = base_classes(world, seed, key.level, rows, cols)
    w = np.where(land & (cls == SNOW_ICE), np.float32(GLACIER_W), np.float32(0.0))  # MODIS snow/ice
    if any_high:
        over = h - (line + SNOW_NOISE_M * grid_noise(seed, 5, x1, y1, wave))
        rule = land & high & (over > 0)
        w = np.maximum(w, np.where(rule, 0.55 + 0.45 * np.clip(over / FULL_SNOW_M, 0.0, 1.0), 0.0))
    if not w.any():
        return None
    return w.astype(np.float32)


def with_snow(world: World, seed: int, key: TileKey, height_m: np.ndarray, rgb_chw: np.ndarray) -> np.ndarray:
    """The tile's colour, channel-major (3, T+1, T+1) like the pyramid's stack, with snow where the
    class field says snow; ``rgb_chw`` itself (not a copy) when the tile has none."""
    w = snow_weight(world, seed, key, height_m)
    if w is None:
        return rgb_chw
    out = np.array(rgb_chw, dtype=np.float32)  # a copy: the pyramid's blocks stay as generated
    for c in range(3):  # in place, per channel plane: out += w (snow - out)
        plane = out[c]
        plane += w * (SNOW_RGB[c] - plane)
    return out
