"""Earth anchor: ETOPO5 relief, Blue Marble colour and the land mask on the level-3 grid.

The anchor level of the geographic tiling (level 3: 180/256/8 deg = 5.27',
about 9.8 km) is resampled once from ``../shared/data/global`` and shipped in
``assets/`` (see assets/README.md for sources and credits):

- ``earth_height_l3.xz``: metres on rows 0..2048 (90 N .. 90 S, nodes) and
  columns 0..4095 (180 W eastward; column 4096 is column 0 again), coded
  near-losslessly (:func:`encode_height`: DPCM along rows, JPEG-LS style, with a
  5 m step on land and shelves and 25 m below -200 m; the sign of every value,
  i.e. the coastline, is kept exactly), with the land/water rule baked in: the nodes
  where the rule moves a decoded value (the coast cap's non-integer heights) are stored
  as exceptions, so loading applies no rule (:func:`read_height`; an older asset
  without them still gets the rule at load, 0.6-1.1 s more), then LZMA;
- ``earth_rgb_l3.jpg``: the same grid's Blue Marble colour (sRGB / 255), JPEG.

- ``etopo5_offset.json``: ETOPO5's measured registration offset field
  (:mod:`generator.anchors.registration`);
- ``earth_landwater.npz``: the 30" land/water mask and depression flags
  (:mod:`generator.anchors.landwater`), used at run time by :meth:`EarthAnchor.constrain`;
- ``earth_lakes.npz``: the lakes and their surface heights (:mod:`generator.anchors.lakes`),
  flattened at every level by :meth:`EarthAnchor.constrain` and in the level-3 asset;
- ``earth_globe_l6.xz``: GLOBE 30" on the level-6 grid where it covers
  (0..50 N, 0..60 E; :mod:`generator.anchors.globe`), blended into the level-3
  nodes here and into the new samples of levels 4-6 by :meth:`EarthAnchor.constrain`.
- ``earth_subgrid_peaks.npz``: GLOBE-calibrated sub-grid peaks outside GLOBE
  (:mod:`generator.anchors.subgrid`): their level-3 nodes are lifted in the height
  asset, and at every refined level they are a layer the refiner does not see
  (``EarthAnchor.hidden``, used by the pyramid around ``refine``).

Resampling (:func:`build_grid`): ETOPO5 is node-registered at 5' and is
sampled bilinearly at the level-3 nodes moved by the offset field (longitude
wrapped); Blue Marble is pixel-registered at 4', blurred with a Gaussian of
0.5 px (anti-alias for the 4' -> 5.27' step) and sampled bilinearly at the
nodes (it needs no offset: it agrees with the mask at zero shift); then GLOBE is
blended in where it covers (:mod:`generator.anchors.globe`), and the
land/water rule (:func:`generator.anchors.landwater.LandWater.clamp`, composed with
the lakes': :meth:`generator.anchors.lakes.Lakes.constrain_grid`) is applied at the
nodes, the same rule the pyramid applies to every refined level. Both
poles are single points: their rows are made constant.

Sampling beyond a pole (only ever used as refinement context) reflects across
it onto the other side of the globe: row -k, col c -> row k, col c + 2048.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import threading
from pathlib import Path

import numpy as np

from generator.anchors.codec import decode_height, encode_height
from generator.anchors.globe import GLOBE_FILE, GLOBE_LEVEL, GlobeField
from generator.anchors.globe import build as globe_build
from generator.anchors.lakes import LAKES_FILE, Lakes
from generator.anchors.lakes import build as lakes_build
from generator.anchors.landwater import LANDWATER_FILE, RULE_VERSION, LandWater, land_share
from generator.anchors.landwater import build as landwater_build
from generator.anchors.registration import load_offset_table, offset_arcmin, sample_etopo5
from generator.anchors.subgrid import SUBGRID_FILE, SUBGRID_VERSION, SubgridPeaks
from generator.paths import default_data_dir
from runtime.grids import bilinear
from runtime.tiles import ANCHOR_LEVEL, T, spacing_deg

ASSETS = Path(__file__).resolve().parents[2] / "assets"
HEIGHT_FILE = "earth_height_l3.xz"
RGB_FILE = "earth_rgb_l3.jpg"
ROWS = (T << ANCHOR_LEVEL) + 1  # 2049 nodes, pole to pole
COLS = 2 * T << ANCHOR_LEVEL  # 4096 nodes around the globe
SPACING_DEG = 180.0 / (T << ANCHOR_LEVEL)


class EarthAnchor:
    """The shipped level-3 earth grid; ``sample(rows, cols)`` wraps and reflects."""

    channels = 4

    def __init__(self, height_m: np.ndarray, rgb8: np.ndarray, digest: str, landwater: LandWater | None = None,
                 globe: GlobeField | None = None, lakes: Lakes | None = None,
                 peaks: SubgridPeaks | None = None):
        """height_m (ROWS, COLS) metres (the land/water rule already applied: :func:`read_height`),
        rgb8 (ROWS, COLS, 3) uint8 sRGB, digest of the source bytes, landwater the run-time
        land/water rule of the refined levels and globe the real 1 km relief blended into levels
        4-6 (None: refined levels are left as the refiner made them); lakes the inland water
        flattened to its surface (:mod:`generator.anchors.lakes`; None: none); peaks the sub-grid
        peaks whose shape levels 4-6 get (:mod:`generator.anchors.subgrid`; None: none)."""
        if height_m.shape != (ROWS, COLS) or rgb8.shape != (ROWS, COLS, 3) or rgb8.dtype != np.uint8:
            raise ValueError(f"earth grid must be ({ROWS}, {COLS}) heights and ({ROWS}, {COLS}, 3) uint8 "
                             f"colour, got {height_m.shape} and {rgb8.shape} {rgb8.dtype}")
        height_m = np.asarray(height_m, dtype=np.float32)
        self.height_m = np.ascontiguousarray(height_m, dtype=np.float32)
        self.rgb8 = np.ascontiguousarray(rgb8)  # kept as bytes: 25 MB instead of 100 MB of float32
        # the poles are single points: their colour is the mean of the (JPEG-blurred) pole rows
        self.pole_rgb = (rgb8[[0, -1]].astype(np.float32) / np.float32(255.0)).mean(axis=1)  # (2, 3)
        for a in (self.height_m, self.rgb8, self.pole_rgb):
            a.setflags(write=False)
        self.digest = digest
        self.landwater = landwater
        self.globe = globe
        self.lakes = lakes
        self.peaks = peaks
        self.hidden = peaks  # the pyramid refines around this layer (generator.anchors.subgrid)

    _shared: "EarthAnchor | None" = None
    _lock = threading.Lock()

    @classmethod
    def shared(cls) -> "EarthAnchor":
        """The shipped anchor, loaded once per process (read-only: every pyramid and the
        composition root's water mask use the same one instead of decoding ~170 MB again)."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls.load()
            return cls._shared

    @classmethod
    def load(cls, assets: Path = ASSETS) -> "EarthAnchor":
        paths = [Path(assets) / f for f in (HEIGHT_FILE, RGB_FILE, LANDWATER_FILE, GLOBE_FILE, LAKES_FILE)]
        if not all(p.exists() for p in paths):
            raise FileNotFoundError(f"earth anchor assets missing: expected {[str(p) for p in paths]}; "
                                    "build them with `python -m generator.anchors.earth build`")
        hb, cb, lb, gb, kb = (p.read_bytes() for p in paths)
        lw, lakes = LandWater.load_bytes(lb), Lakes.load_bytes(kb)
        height, ruled, lifted = read_height_lifted(hb)
        digest = hashlib.sha256(hb + cb + lb + gb + kb).hexdigest()
        peaks, sp = None, Path(assets) / SUBGRID_FILE
        if sp.exists() != lifted:
            raise ValueError(f"{Path(assets) / HEIGHT_FILE} and {sp} disagree: expected the peaks asset exactly "
                             "when the height asset's peak nodes are lifted (after `python -m "
                             "generator.anchors.earth build` run `python -m generator.anchors.subgrid_build --bake`)")
        if sp.exists():  # the height asset's peak nodes were lifted with it (generator.anchors.subgrid_build)
            pb = sp.read_bytes()
            peaks = SubgridPeaks.load_bytes(pb)
            digest = hashlib.sha256((digest + SUBGRID_VERSION).encode() + pb).hexdigest()
        if not ruled:  # an asset from before 2026-12-05: the rule at load time (+1.1 s), same heights
            height = _apply_rule(lw, lakes, height)
            digest = hashlib.sha256((digest + RULE_VERSION).encode()).hexdigest()
        from PIL import Image

        rgb8 = np.asarray(Image.open(io.BytesIO(cb)).convert("RGB"), dtype=np.uint8)
        return cls(height, rgb8, digest, lw, GlobeField.load_bytes(gb), lakes, peaks)

    def constrain(self, fields: np.ndarray, level: int, origins: np.ndarray, reuse: bool = False) -> np.ndarray:
        """Real data on refined blocks: fields (B, C, H, W) float32 of level ``level``, origins
        (B, 2) int64 global (row, col) of each [0, 0] (even) -> same shape: height, and the colour in lakes.

        At levels 4-6, GLOBE is blended into the new (odd) samples (:mod:`generator.anchors.globe`);
        then the land/water rule clamps every sample, composed with the lake rule as
        sea(lake(sea(h))) (:mod:`generator.anchors.lakes`), and the new (odd) samples of a lake
        take its colour. All are pure functions of location, the blend and the colour write only
        odd samples and the clamps are idempotent, so even samples (the parent's,
        already constrained) never change: nesting stays exact.

        ``reuse``: the caller hands over ``fields`` (its own fresh array, not read again), so a
        writable float32 array that owns its data is constrained in place instead of copied."""
        if self.landwater is None:
            return fields
        d = spacing_deg(level)
        own = (reuse and isinstance(fields, np.ndarray) and fields.dtype == np.float32 and fields.flags.owndata
               and fields.flags.writeable and fields.flags.c_contiguous)
        out = fields if own else np.array(fields, dtype=np.float32, copy=True)
        _, _, h, w = out.shape
        for b, (r0, c0) in enumerate(np.asarray(origins, dtype=np.int64)):
            rows = r0 + np.arange(h, dtype=np.int64)
            cols = np.mod(c0 + np.arange(w, dtype=np.int64), 2 * T << level)
            lat, lon = 90.0 - rows * d, -180.0 + cols * d
            # the block's extent once (lat falls with the row, exactly; lon rises with the column
            # unless the block wraps): the same floats as lat.min() ... for every reader below
            wraps = cols[-1] < cols[0]
            ext = (float(lat[-1]), float(lat[0]), float(lon.min() if wraps else lon[0]),
                   float(lon.max() if wraps else lon[-1]))
            masks = self.landwater.masks_grid(lat, lon, extent=ext)
            if self.globe is not None and level <= GLOBE_LEVEL and masks[2].any() and self.globe.overlaps(*ext):
                out[b, 0] = self._blend_globe(out[b, 0], level, rows, cols, lat, lon, masks[2])
            read = None
            # A grid that reads no lake cell: at_grid's fraction is 0, so the lake rule and colour are
            # no-ops (constrain_grid is clamp_grid, colour_grid returns rgb): skip them.
            if self.lakes is not None and self.lakes.near(*ext) and not self.lakes.dry_grid(lat, lon, ext):
                read = self.lakes.at_grid(lat, lon, with_ids=True, extent=ext)
            if read is None:
                out[b, 0] = self.landwater.clamp_grid(out[b, 0], lat, lon, masks)
            else:
                out[b, 0] = self.lakes.constrain_grid(self.landwater, out[b, 0], lat, lon, masks, read)
                if out.shape[1] >= 4:
                    out[b, 1:4] = self.lakes.colour_grid(out[b, 1:4], rows, cols, read)
        return out

    def _blend_globe(self, h: np.ndarray, level: int, rows, cols, lat, lon, free: np.ndarray) -> np.ndarray:
        """(H, W) heights with GLOBE blended into the odd samples (even ones are the parent's);
        free (H, W): land outside depressions (GLOBE reads 0 m at sea and below sea level)."""
        cov = self.globe.coverage_weight(lat[:, None], lon[None, :])
        wgt = np.where(free, cov, np.float32(0))
        new = ((rows[:, None] & 1) == 1) | ((cols[None, :] & 1) == 1)
        g = self.globe.value(level, rows, cols)
        return np.where(new & (wgt > 0), wgt * g + (np.float32(1) - wgt) * h, h).astype(np.float32)

    def relief_height(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """rows (H,), cols (W,) int64 level-3 samples -> (H, W) float32 m: the heights without the
        sub-grid peaks' node lifts (the coarse relief generator.relief's detail factor was fitted on)."""
        h = self.sample(rows, cols)[0]
        if self.peaks is None:
            return h
        r, c = _node_index(rows, cols)
        return h - self.peaks.a_grid[r[:, None], c].astype(np.float32)

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """rows (H,), cols (W,) int64 level-3 global samples -> (4, H, W) float32."""
        r, c = _node_index(rows, cols)
        out = np.empty((self.channels, len(rows), len(cols)), dtype=np.float32)
        out[0] = self.height_m[r[:, None], c]
        out[1:] = np.moveaxis(self.rgb8[r[:, None], c], -1, 0).astype(np.float32) / np.float32(255.0)
        for i, pole_row in ((0, 0), (1, ROWS - 1)):
            out[1:, r == pole_row] = self.pole_rgb[i][:, None, None]
        return out


def _node_index(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level-3 global samples rows (H,), cols (W,) -> grid rows (H,) and columns (H, W): columns
    wrap, and a trip beyond a pole comes back down the other side of the globe."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    period = 2 * (ROWS - 1)
    r = np.mod(rows, period)  # one trip over both poles and back
    flip = r > ROWS - 1
    r = np.where(flip, period - r, r)
    c = np.where(flip[:, None], np.mod(cols + COLS // 2, COLS)[None, :], np.mod(cols, COLS)[None, :])
    return r, c


def read_height(data: bytes) -> tuple[np.ndarray, bool]:
    """The height asset's bytes -> ((ROWS, COLS) float32 metres, whether the land/water rule is in
    it); see :func:`read_height_lifted`."""
    height, ruled, _ = read_height_lifted(data)
    return height, ruled


def read_height_lifted(data: bytes) -> tuple[np.ndarray, bool, bool]:
    """The height asset's bytes -> ((ROWS, COLS) float32 metres, whether the land/water rule is in it,
    whether the sub-grid peaks' nodes are lifted in it: key ``subgrid_lifted``).

    Layout (after LZMA): an ``.npz`` with ``codes`` (ROWS, COLS) int16 (:func:`encode_height`),
    ``fix_index`` (n,) int64 flat node indices and ``fix_value`` (n,) float32 metres: the nodes
    where the rule (:func:`_apply_rule`, e.g. the coast cap's non-integer heights) differs from the
    decoded codes, so the grid is the ruled grid bit for bit and loading needs no rule.
    An older asset is a bare ``.npy`` of codes: (decoded heights, False)."""
    raw = lzma.decompress(data)
    d = np.load(io.BytesIO(raw))
    if isinstance(d, np.ndarray):
        return decode_height(d).astype(np.float32), False, False
    height = decode_height(d["codes"]).astype(np.float32)
    height.reshape(-1)[d["fix_index"]] = d["fix_value"]
    return height, True, "subgrid_lifted" in d.files


def height_bytes(height_int: np.ndarray, lw: LandWater, lakes: Lakes, lifted: bool = False) -> bytes:
    """(ROWS, COLS) integer metres -> the height asset's bytes (:func:`read_height`): codes, then the
    rule applied to the decoded grid and its changes kept as exceptions; ``lifted``: the heights
    hold the sub-grid peaks' lifts (:mod:`generator.anchors.subgrid_build`), recorded in the asset."""
    codes = encode_height(height_int)
    decoded = decode_height(codes).astype(np.float32)
    ruled = _apply_rule(lw, lakes, decoded)
    fix = np.flatnonzero(ruled.reshape(-1) != decoded.reshape(-1))
    buf = io.BytesIO()
    extra = {"subgrid_lifted": np.int64(1)} if lifted else {}
    np.savez(buf, codes=codes, fix_index=fix.astype(np.int64), fix_value=ruled.reshape(-1)[fix].astype(np.float32),
             **extra)
    return lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME)


# ---------------------------------------------------------------- one-off build from shared data

def build_grid(data_dir: Path, offset_dir: Path = ASSETS) -> tuple[np.ndarray, np.ndarray, bytes, bytes, bytes]:
    """Resample the global data to the level-3 grid: ((ROWS, COLS) int16 m, (ROWS, COLS, 3) uint8,
    the land/water, GLOBE and lakes assets' bytes). ``offset_dir`` holds the measured
    ``etopo5_offset.json``."""

    data_dir = Path(data_dir)
    lat = 90.0 - SPACING_DEG * np.arange(ROWS)
    lon = -180.0 + SPACING_DEG * np.arange(COLS)

    g = np.load(data_dir / "etopo5.npz")
    z = g["elev"].astype(np.float64)
    table = load_offset_table(offset_dir)
    la, lo = np.broadcast_arrays(lat[:, None], lon[None, :])
    dlat, dlon = offset_arcmin(table, la, lo)
    height = sample_etopo5(z, la + dlat / 60.0, lo + dlon / 60.0)
    height[0] = z[0].mean()
    height[-1] = z[-1].mean()  # the South Pole: ETOPO5's last row (89.92 S) is the Antarctic plateau

    rgb = build_colour(data_dir)

    c_lat = 90.0 - (np.arange(2160) + 0.5) / 12.0  # 5' cell centres, for the depression flags
    c_lon = -180.0 + (np.arange(4320) + 0.5) / 12.0
    cla, clo = np.broadcast_arrays(c_lat[:, None], c_lon[None, :])
    cdy, cdx = offset_arcmin(table, cla, clo)
    lw_bytes = landwater_build(data_dir / "landmask_30s.npz", sample_etopo5(z, cla + cdy / 60.0, clo + cdx / 60.0))
    lw = LandWater.load_bytes(lw_bytes)
    from generator.anchors.lakes import etopo_sampler

    lakes_bytes = lakes_build(data_dir, etopo_sampler(data_dir), np.asarray(lw.depression))
    lakes = Lakes.load_bytes(lakes_bytes)
    globe_bytes = globe_build(data_dir / "globe30s_g10g_west.npz")
    globe = GlobeField.load_bytes(globe_bytes)
    rows, cols = np.arange(ROWS, dtype=np.int64), np.arange(COLS, dtype=np.int64)
    for i in range(0, ROWS, 256):  # in strips: bounded memory
        s = slice(i, i + 256)
        wgt = _globe_weight(globe, lw, la[s], lo[s])
        g = globe.value(ANCHOR_LEVEL, rows[s], cols)
        blended = np.where(wgt > 0, wgt * g + (1.0 - wgt) * height[s], height[s])
        height[s] = lakes.constrain_grid(lw, np.round(blended), lat[s], lon)
    rgb8 = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return np.round(height).astype(np.int16), rgb8, lw_bytes, globe_bytes, lakes_bytes


def land_colour(img: np.ndarray, land: np.ndarray) -> np.ndarray:
    """(H, W, 3) colour whose every pixel is the colour of the LAND around it: land pixels (share
    >= 0.98) as they are; the others a normalised convolution of ``img`` weighted by pure-land
    pixels (share >= 0.9; 1.5 px), then by any land (3 px) where no pure-land pixel is near
    (small islands), else the pixel itself (open sea). Longitude wraps."""
    from scipy import ndimage

    out = img.copy()
    filled = land >= 0.98
    for weight, sigma in (((land >= 0.9).astype(np.float64), 1.5), (land.astype(np.float64), 3.0)):
        den = ndimage.gaussian_filter(weight, sigma, mode=("nearest", "wrap"))
        ok = (den > 0.02) & ~filled
        for k in range(3):
            num = ndimage.gaussian_filter(img[..., k] * weight, sigma, mode=("nearest", "wrap"))
            out[..., k] = np.where(ok, num / np.maximum(den, 1e-12), out[..., k])
        filled |= ok
    return out


def build_colour(data_dir: Path) -> np.ndarray:
    """Blue Marble on the level-3 grid, (ROWS, COLS, 3) float64 0..255. A sample with land in
    its cell takes the colour of the land around it (``land_colour``), a sample of open water
    the sea's: Blue Marble's 4' pixels mix sea into every coastal land pixel, and at 9.8 km a
    coastal sample's colour was as much sea as land (level-11 land near Cape Town and Sydney
    was 70 % blue-dominant; docs/EARTH.md)."""
    from PIL import Image
    from scipy import ndimage

    data_dir = Path(data_dir)
    lat = 90.0 - SPACING_DEG * np.arange(ROWS)
    lon = -180.0 + SPACING_DEG * np.arange(COLS)
    raw = np.asarray(Image.open(data_dir / "bluemarble.jpg").convert("RGB"), dtype=np.float64)
    land_px = land_share(np.load(data_dir / "landmask_30s.npz")["mask"], 8, 300)  # per 4' pixel
    ii = np.clip((90.0 - lat) * 15.0 - 0.5, 0, raw.shape[0] - 1)
    jj = (lon + 180.0) * 15.0 - 0.5

    def on_grid(a: np.ndarray) -> np.ndarray:  # (H, W[, 3]) pixels -> level-3 samples, bilinear
        a = a[..., None] if a.ndim == 2 else a
        ap = np.concatenate([a[:, -1:], a, a[:, :1]], axis=1)  # wrap both sides
        return np.stack([bilinear(ap[..., k], ii[:, None], jj[None, :] + 1.0) for k in range(a.shape[-1])], -1)

    blur = lambda a: ndimage.gaussian_filter(a, sigma=(0.5, 0.5, 0), mode=("nearest", "wrap", "nearest"))
    rgb = on_grid(blur(raw))
    land_rgb = on_grid(blur(land_colour(raw, land_px)))
    # land in the sample's cell: the pixel shares within one sample spacing (1.3 px)
    near = on_grid(ndimage.maximum_filter(land_px, size=3, mode=("nearest", "wrap")))[..., 0]
    rgb = np.where((near > 0.01)[..., None], land_rgb, rgb)
    rgb[0] = rgb[0].mean(axis=0)
    rgb[-1] = rgb[-1].mean(axis=0)
    return rgb


def write_colour(rgb: np.ndarray, out_dir: Path = ASSETS) -> Path:
    """The colour asset alone: JPEG q=88 (4:4:4)."""
    from PIL import Image

    cp = Path(out_dir) / RGB_FILE
    Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8)).save(cp, format="JPEG", quality=88,
                                                                          subsampling=0, optimize=True)
    return cp


def _apply_rule(lw: LandWater, lakes: Lakes | None, height: np.ndarray) -> np.ndarray:
    """The land/water rule, sea(lake(sea(h))), on the whole level-3 grid (ROWS, COLS), in strips
    (bounded memory); ``lakes`` None: the sea rule alone (an asset from before the lakes)."""
    out = np.empty_like(height)
    lon = -180.0 + SPACING_DEG * np.arange(COLS)
    for i in range(0, ROWS, 256):
        lat = 90.0 - SPACING_DEG * np.arange(i, min(i + 256, ROWS))
        if lakes is None:
            out[i : i + 256] = lw.clamp_grid(height[i : i + 256], lat, lon)
        else:
            out[i : i + 256] = lakes.constrain_grid(lw, height[i : i + 256], lat, lon)
    return out


def _globe_weight(globe: GlobeField, lw: LandWater, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """GLOBE's blend weight at points: coverage ramp x land x not a depression (float32)."""
    land = (lw.land_fraction(lat, lon) >= 0.5) & ~lw.in_depression(lat, lon)
    return np.where(land, globe.coverage_weight(lat, lon), np.float32(0)).astype(np.float32)


def write_assets(height: np.ndarray, rgb: np.ndarray, landwater: bytes, globe: bytes, lakes: bytes,
                 out_dir: Path = ASSETS) -> tuple[Path, ...]:
    """Store the grid compressed: height DPCM codes and the rule's exceptions (LZMA), colour as
    JPEG q=88 (4:4:4), land/water, GLOBE, lakes."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hp, cp = out_dir / HEIGHT_FILE, out_dir / RGB_FILE
    hp.write_bytes(height_bytes(height, LandWater.load_bytes(landwater), Lakes.load_bytes(lakes)))
    write_colour(rgb, out_dir)
    lp = out_dir / LANDWATER_FILE
    lp.write_bytes(landwater)
    gp = out_dir / GLOBE_FILE
    gp.write_bytes(globe)
    kp = out_dir / LAKES_FILE
    kp.write_bytes(lakes)
    return hp, cp, lp, gp, kp


def bake_rule(assets: Path = ASSETS) -> int:
    """Rewrite the height asset with the current land/water and lake rules (the assets beside it)
    applied to its codes: the codes stay, the exceptions are made again (an older asset of bare
    codes loads, with its load-time rule, bit for bit as before and now needs no rule at load)."""
    hp = Path(assets) / HEIGHT_FILE
    d = np.load(io.BytesIO(lzma.decompress(hp.read_bytes())))
    codes = d if isinstance(d, np.ndarray) else d["codes"]
    lw = LandWater.load_bytes((Path(assets) / LANDWATER_FILE).read_bytes())
    lakes = Lakes.load_bytes((Path(assets) / LAKES_FILE).read_bytes())
    lifted = not isinstance(d, np.ndarray) and "subgrid_lifted" in d.files  # the codes keep the peaks' lifts
    hp.write_bytes(height_bytes(decode_height(codes).astype(np.int64), lw, lakes, lifted))
    print(f"{hp}: {hp.stat().st_size / 1e6:.2f} MB")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m generator.anchors.earth", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build", "bake-rule", "colour"],
                    help="build: everything from the shared data; bake-rule: the current land/water and lake "
                         "rules into the height asset (same codes, the rules' changes as exceptions; no data "
                         "needed); colour: the colour asset alone from the shared data")
    ap.add_argument("--data", type=Path, default=default_data_dir() / "global",
                    help="folder with etopo5.npz, bluemarble.jpg, landmask_30s.npz, globe30s_g10g_west.npz "
                         "(the offset field is read from assets/)")
    ap.add_argument("--out", type=Path, default=ASSETS)
    a = ap.parse_args(argv)
    if a.command == "bake-rule":
        return bake_rule(a.out)
    if a.command == "colour":
        p = write_colour(build_colour(a.data), a.out)
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB")
        return 0
    for p in write_assets(*build_grid(a.data), a.out):
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
