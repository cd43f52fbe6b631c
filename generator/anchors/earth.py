"""Earth anchor: ETOPO5 relief, Blue Marble colour and the land mask on the level-3 grid.

The anchor level of the geographic tiling (level 3: 180/256/8 deg = 5.27',
about 9.8 km) is resampled once from ``../shared/data/global`` and shipped in
``assets/`` (see assets/README.md for sources and credits):

- ``earth_height_l3.xz``: metres on rows 0..2048 (90 N .. 90 S, nodes) and
  columns 0..4095 (180 W eastward; column 4096 is column 0 again), coded
  near-losslessly (:func:`encode_height`: DPCM along rows, JPEG-LS style, with a
  5 m step on land and shelves and 25 m below -200 m; the sign of every value,
  i.e. the coastline, is kept exactly), then LZMA;
- ``earth_rgb_l3.jpg``: the same grid's Blue Marble colour (sRGB / 255), JPEG.

Resampling (:func:`build_assets`): ETOPO5 is node-registered at 5' and is
sampled bilinearly at the level-3 nodes with longitude wrapped; Blue Marble is
pixel-registered at 4', blurred with a Gaussian of 0.5 px (anti-alias for the
4' -> 5.27' step) and sampled bilinearly at the nodes; the 30" land/water mask
is averaged to a land fraction at the same nodes and used to fix the sign of
the relief along coasts (land > 0 m, sea < 0 m where ETOPO5's smoothed coast
disagrees; lakes count as land in the mask, so sub-sea-level land keeps its
relief unless it is within 50 m of sea level). Both poles are single points:
their rows are made constant.

Sampling beyond a pole (only ever used as refinement context) reflects across
it onto the other side of the globe: row -k, col c -> row k, col c + 2048.
"""

from __future__ import annotations

import hashlib
import io
import lzma
from pathlib import Path

import numpy as np

from generator.paths import default_data_dir
from runtime.grids import bilinear
from runtime.tiles import ANCHOR_LEVEL, T

ASSETS = Path(__file__).resolve().parents[2] / "assets"
HEIGHT_FILE = "earth_height_l3.xz"
RGB_FILE = "earth_rgb_l3.jpg"
ROWS = (T << ANCHOR_LEVEL) + 1  # 2049 nodes, pole to pole
COLS = 2 * T << ANCHOR_LEVEL  # 4096 nodes around the globe
SPACING_DEG = 180.0 / (T << ANCHOR_LEVEL)


class EarthAnchor:
    """The shipped level-3 earth grid; ``sample(rows, cols)`` wraps and reflects."""

    channels = 4

    def __init__(self, height_m: np.ndarray, rgb8: np.ndarray, digest: str):
        """height_m (ROWS, COLS) metres, rgb8 (ROWS, COLS, 3) uint8 sRGB, digest of the source bytes."""
        if height_m.shape != (ROWS, COLS) or rgb8.shape != (ROWS, COLS, 3) or rgb8.dtype != np.uint8:
            raise ValueError(f"earth grid must be ({ROWS}, {COLS}) heights and ({ROWS}, {COLS}, 3) uint8 "
                             f"colour, got {height_m.shape} and {rgb8.shape} {rgb8.dtype}")
        self.height_m = np.ascontiguousarray(height_m, dtype=np.float32)
        self.rgb8 = np.ascontiguousarray(rgb8)  # kept as bytes: 25 MB instead of 100 MB of float32
        # the poles are single points: their colour is the mean of the (JPEG-blurred) pole rows
        self.pole_rgb = (rgb8[[0, -1]].astype(np.float32) / np.float32(255.0)).mean(axis=1)  # (2, 3)
        for a in (self.height_m, self.rgb8, self.pole_rgb):
            a.setflags(write=False)
        self.digest = digest

    @classmethod
    def load(cls, assets: Path = ASSETS) -> "EarthAnchor":
        hp, cp = Path(assets) / HEIGHT_FILE, Path(assets) / RGB_FILE
        if not hp.exists() or not cp.exists():
            raise FileNotFoundError(f"earth anchor assets missing: expected {hp} and {cp}; "
                                    "build them with `python -m generator.anchors.earth build`")
        hb, cb = hp.read_bytes(), cp.read_bytes()
        codes = np.load(io.BytesIO(lzma.decompress(hb)))
        height = decode_height(codes).astype(np.float32)
        from PIL import Image

        rgb8 = np.asarray(Image.open(io.BytesIO(cb)).convert("RGB"), dtype=np.uint8)
        return cls(height, rgb8, hashlib.sha256(hb + cb).hexdigest())

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """rows (H,), cols (W,) int64 level-3 global samples -> (4, H, W) float32."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        period = 2 * (ROWS - 1)
        r = np.mod(rows, period)  # one trip over both poles and back
        flip = r > ROWS - 1
        r = np.where(flip, period - r, r)
        c = np.where(flip[:, None], np.mod(cols + COLS // 2, COLS)[None, :], np.mod(cols, COLS)[None, :])
        out = np.empty((self.channels, len(rows), len(cols)), dtype=np.float32)
        out[0] = self.height_m[r[:, None], c]
        out[1:] = np.moveaxis(self.rgb8[r[:, None], c], -1, 0).astype(np.float32) / np.float32(255.0)
        for i, pole_row in ((0, 0), (1, ROWS - 1)):
            out[1:, r == pole_row] = self.pole_rgb[i][:, None, None]
        return out


# ---------------------------------------------------------------- one-off build from shared data

def build_grid(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Resample the global data to the level-3 grid: ((ROWS, COLS) int16 m, (ROWS, COLS, 3) uint8)."""
    from PIL import Image
    from scipy import ndimage

    data_dir = Path(data_dir)
    lat = 90.0 - SPACING_DEG * np.arange(ROWS)
    lon = -180.0 + SPACING_DEG * np.arange(COLS)

    g = np.load(data_dir / "etopo5.npz")
    z = g["elev"].astype(np.float64)
    zi = (90.0 - lat) * 12.0  # node rows
    zj = (lon + 180.0) * 12.0
    zp = np.concatenate([z, z[:, :1]], axis=1)  # wrap column for interpolation
    zi_c = np.clip(zi, 0, z.shape[0] - 1)
    height = bilinear(zp, zi_c[:, None], zj[None, :])
    height[0] = z[0].mean()
    height[-1] = z[-1].mean()  # the South Pole: ETOPO5's last row (89.92 S) is the Antarctic plateau

    img = np.asarray(Image.open(data_dir / "bluemarble.jpg").convert("RGB"), dtype=np.float64)
    img = ndimage.gaussian_filter(img, sigma=(0.5, 0.5, 0), mode=("nearest", "wrap", "nearest"))
    ii = np.clip((90.0 - lat) * 15.0 - 0.5, 0, img.shape[0] - 1)
    jj = (lon + 180.0) * 15.0 - 0.5
    imgp = np.concatenate([img[:, -1:], img, img[:, :1]], axis=1)  # wrap both sides
    rgb = np.stack([bilinear(imgp[..., k], ii[:, None], jj[None, :] + 1.0) for k in range(3)], axis=-1)
    rgb[0] = rgb[0].mean(axis=0)
    rgb[-1] = rgb[-1].mean(axis=0)

    land = _land_fraction(data_dir / "landmask_30s.npz", lat, lon)
    near_sea_level = np.abs(height) < 50.0
    height = np.where((land >= 0.5) & (height <= 0.0) & near_sea_level, 1.0, height)
    height = np.where((land < 0.5) & (height > 0.0) & near_sea_level, -1.0, height)
    return np.round(height).astype(np.int16), np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _land_fraction(path: Path, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Land fraction of the 30" mask at the nodes: 10 x 10 block means (5' cells), then bilinear."""
    water = np.load(path)["mask"]  # (21600, 43200) bool, True = water, pixel-registered
    frac = np.empty((2160, 4320), dtype=np.float32)
    for i in range(0, 2160, 120):  # in strips: the full float array would need 3.7 GB
        strip = ~water[i * 10 : (i + 120) * 10]
        frac[i : i + 120] = strip.reshape(120, 10, 4320, 10).mean(axis=(1, 3))
    ii = np.clip((90.0 - lat) * 12.0 - 0.5, 0, 2159)
    jj = (lon + 180.0) * 12.0 - 0.5
    fp = np.concatenate([frac[:, -1:], frac, frac[:, :1]], axis=1)
    return bilinear(fp.astype(np.float64), ii[:, None], jj[None, :] + 1.0)


FINE_STEP_M, COARSE_STEP_M, DEEP_M = 5, 25, -200


def encode_height(height: np.ndarray) -> np.ndarray:
    """(R, C) int metres -> (R, C) int16 DPCM codes; error <= one step, signs exact.

    Each value is predicted by its reconstructed west neighbour; the residual is
    quantised with a step chosen from that neighbour (5 m above -200 m, else 25 m),
    so the decoder knows the step; where rounding would flip land/sea the code moves
    one step toward the true value.
    """
    h = np.asarray(height, dtype=np.int64)
    codes = np.empty(h.shape, dtype=np.int64)
    prev = np.zeros(h.shape[0], dtype=np.int64)
    for j in range(h.shape[1]):
        step = np.where(prev > DEEP_M, FINE_STEP_M, COARSE_STEP_M)
        q = np.round((h[:, j] - prev) / step).astype(np.int64)
        rec = prev + q * step
        q = np.where((rec > 0) != (h[:, j] > 0), q + np.sign(h[:, j] - rec), q)
        codes[:, j] = q
        prev = prev + q * step
    if np.abs(codes).max() > 32767:
        raise ValueError("height residuals do not fit int16")
    return codes.astype(np.int16)


def decode_height(codes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_height`: (R, C) int16 codes -> (R, C) int64 metres (exact integers)."""
    by_col = np.ascontiguousarray(codes.T, dtype=np.int64)  # (C, R): each step reads one contiguous row
    out = np.empty_like(by_col)
    prev = np.zeros(codes.shape[0], dtype=np.int64)
    fine, coarse = np.int64(FINE_STEP_M), np.int64(COARSE_STEP_M)
    for j in range(by_col.shape[0]):
        prev = prev + by_col[j] * np.where(prev > DEEP_M, fine, coarse)
        out[j] = prev
    return out.T


def write_assets(height: np.ndarray, rgb: np.ndarray, out_dir: Path = ASSETS) -> tuple[Path, Path]:
    """Store the grid compressed: height DPCM codes (LZMA), colour as JPEG q=88 (4:4:4)."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hp, cp = out_dir / HEIGHT_FILE, out_dir / RGB_FILE
    buf = io.BytesIO()
    np.save(buf, encode_height(height))
    hp.write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    Image.fromarray(rgb).save(cp, format="JPEG", quality=88, subsampling=0, optimize=True)
    return hp, cp


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m generator.anchors.earth", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build"])
    ap.add_argument("--data", type=Path, default=default_data_dir() / "global",
                    help="folder with etopo5.npz, bluemarble.jpg, landmask_30s.npz")
    ap.add_argument("--out", type=Path, default=ASSETS)
    a = ap.parse_args(argv)
    height, rgb = build_grid(a.data)
    for p in write_assets(height, rgb, a.out):
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
