"""GLOBE 30" as part of the earth anchor: real ~1 km relief down to level 6 where it covers.

GLOBE (NOAA, 30", ~0.9 km; the staged tile covers 0..50 N, 0..60 E) is
resampled once onto the level-6 node grid (spacing 0.011 deg = 39.6", ~1.2 km):
Gaussian anti-alias of half a level-6 spacing, then bilinear at the nodes,
rounded to metres and stored near-losslessly (the anchor's DPCM codec, 5 m
step, LZMA) in ``assets/earth_globe_l6.xz`` (7.8 MB; 4552 x 5462 nodes).

How it enters the pyramid, as a pure function of location (``value(level,
rows, cols)``): a sample of level L <= 6 reads the level-6 node at the same
point (every level-L sample is a level-6 node), so every level sees the same
value at the same point and nesting is exact; the blend weight is

    w = coverage ramp (0 at the tile's edges, 1 from 1 deg inside)
        x land (30" mask) x not a depression (GLOBE reads 0 m there),

and a sample's height is ``w * GLOBE + (1 - w) * h`` with h the ETOPO5 anchor
(level 3, at build time) or the refiner's output (levels 4-6, only the *new*
odd samples: even ones are the parent's, already blended). Below level 6 the
refiner takes over from real 1.2 km relief.

Trade-off: coarse levels (3-5) point-sample the 1.2 km grid instead of an
area mean, so their heights alias (a level-3 node on a flank carries that
spot's height), in exchange for levels 6 and finer being exactly GLOBE.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import numpy as np

from generator.anchors.codec import decode_height, encode_height
from generator.paths import read_asset
from runtime.tiles import spacing_deg

ASSETS = Path(__file__).resolve().parents[2] / "assets"
GLOBE_FILE = "earth_globe_l6.xz"
GLOBE_LEVEL = 6
RAMP_DEG = 1.0
_HEADER_BYTES = 64


class GlobeField:
    """The level-6 GLOBE node grid: heights (R, C) int16 m, level-6 global (row0, col0) of [0, 0],
    and the lat/lon box it covers (degrees)."""

    def __init__(self, height_m: np.ndarray, row0: int, col0: int, box: tuple[float, float, float, float]):
        self.height_m = np.ascontiguousarray(height_m, dtype=np.int16)
        self.height_m.setflags(write=False)
        self.row0, self.col0 = int(row0), int(col0)
        self.lat0, self.lat1, self.lon0, self.lon1 = (float(v) for v in box)

    @classmethod
    def load(cls, path: Path = ASSETS / GLOBE_FILE) -> "GlobeField":
        return cls.load_bytes(read_asset(path, "GLOBE", "python -m generator.anchors.earth build"))

    @classmethod
    def load_bytes(cls, data: bytes) -> "GlobeField":
        """Asset layout (after LZMA): int64 row0, col0, rows, cols; float64 lat0, lat1, lon0, lon1;
        then rows x cols int16 DPCM codes (read in place: no copy of the 50 MB grid)."""
        raw = lzma.decompress(data)
        row0, col0, rows, cols = np.frombuffer(raw, dtype=np.int64, count=4)
        box = tuple(float(v) for v in np.frombuffer(raw, dtype=np.float64, count=4, offset=32))
        codes = np.frombuffer(raw, dtype=np.int16, offset=_HEADER_BYTES).reshape(int(rows), int(cols))
        return cls(decode_height(codes, np.int16), int(row0), int(col0), box)

    def overlaps(self, lat_a: float, lat_b: float, lon_a: float, lon_b: float) -> bool:
        """Whether the box (degrees) meets the part of the tile where the weight is > 0."""
        return (lat_b > self.lat0 and lat_a < self.lat1 and lon_b > self.lon0 and lon_a < self.lon1)

    def coverage_weight(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Smoothstep ramp from 0 at the tile's edges to 1 at RAMP_DEG inside; any shape."""
        def s(x):
            t = np.clip(x / RAMP_DEG, 0.0, 1.0)
            return t * t * (3.0 - 2.0 * t)

        return (s(lat - self.lat0) * s(self.lat1 - lat) * s(lon - self.lon0) * s(self.lon1 - lon)).astype(np.float32)

    def value(self, level: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """GLOBE height (H, W) float32 m at level-``level`` (<= 6) global samples rows (H,), cols (W,);
        outside the grid the nearest edge node (its weight is 0 there anyway)."""
        if not 0 <= level <= GLOBE_LEVEL:
            raise ValueError(f"GLOBE holds levels 0..{GLOBE_LEVEL}, got {level}")
        k = GLOBE_LEVEL - level
        r = np.clip((np.asarray(rows, dtype=np.int64) << k) - self.row0, 0, self.height_m.shape[0] - 1)
        c = np.clip((np.asarray(cols, dtype=np.int64) << k) - self.col0, 0, self.height_m.shape[1] - 1)
        return self.height_m[r[:, None], c[None, :]].astype(np.float32)


def build(globe_path: Path) -> bytes:
    """The asset's bytes from the staged GLOBE tile (pixel-registered, 30")."""
    from scipy import ndimage

    g = np.load(globe_path)
    elev = g["elev"].astype(np.float32)
    lat_top, lon_left, step = float(g["lat_top"]), float(g["lon_left"]), float(g["step_deg"])
    lat_bot, lon_right = lat_top - step * elev.shape[0], lon_left + step * elev.shape[1]
    d = spacing_deg(GLOBE_LEVEL)
    r0, r1 = int(np.ceil((90.0 - lat_top) / d)), int(np.floor((90.0 - lat_bot) / d))
    c0, c1 = int(np.ceil((lon_left + 180.0) / d)), int(np.floor((lon_right + 180.0) / d))
    lat = 90.0 - np.arange(r0, r1 + 1) * d
    lon = -180.0 + np.arange(c0, c1 + 1) * d
    smooth = ndimage.gaussian_filter(elev, 0.5 * d / step, mode="nearest")
    fi, fj = np.meshgrid((lat_top - lat) / step - 0.5, (lon - lon_left) / step - 0.5, indexing="ij")
    nodes = ndimage.map_coordinates(smooth, [fi, fj], order=1, mode="nearest")
    codes = encode_height(np.round(nodes).astype(np.int64))
    header = np.array([r0, c0, *codes.shape], dtype=np.int64).tobytes() + np.array(
        [lat_bot, lat_top, lon_left, lon_right], dtype=np.float64).tobytes()
    return lzma.compress(header + codes.tobytes(), preset=6)
