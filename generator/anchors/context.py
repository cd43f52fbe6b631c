"""Context channels at every level as a pure function of location (for context-conditioned refiners).

``context(world, level, rows, cols, seed)`` -> (C, H, W) float32 for the level's
global samples rows (H,) x cols (W,), channels :data:`CHANNELS`:

- ``land``: land fraction in [0, 1] (earth: the 30" mask read bilinearly, see
  :mod:`generator.anchors.landwater`; >= 0.5 is land);
- ``climate_A`` .. ``climate_E``: one-hot Koppen-Geiger main group (tropical,
  arid, temperate, cold, polar/alpine); all 0 over the sea;
- ``forest``, ``shrub_grass``, ``wetland``, ``crop``, ``urban``, ``snow_ice``,
  ``barren``: one-hot land-cover group (MODIS IGBP 2019); all 0 over water;
- ``ndvi_max``, ``ndvi_min``: climatological NDVI (-0.2 .. 1; -0.2 where there is
  no vegetation record: sea, ice).

Earth assets (``assets/earth_context.npz``, see assets/README.md): Koppen at 2.5'
(majority of 5 x 5 cells of the 30" map), MODIS at its native 0.05 deg, NDVI
at 0.1 deg (mean of 2 x 2 cells); categorical layers are read at the nearest
cell, NDVI bilinearly. The plane world makes the same channels from its own
continent fields at its anchor nodes, mixed bilinearly between them
(:meth:`generator.anchors.plane.PlaneAnchor.context`; ~10 ms per 65 x 65 block at fine
levels, mostly the noise fields' fixed cost; earth ~2.5 ms), so one refiner can be conditioned
the same way in both worlds.

How a refiner uses it (not wired here): for a block of level L with child
origin (r0, c0), call ``context(world, L, r0 + arange(h), c0 + arange(w))`` and
stack it after the parent channels; everything is a function of location only,
so the pyramid stays pure, nested and seamless.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np

from generator.anchors.channels import CHANNELS, COVER_GROUPS, IGBP_TO_GROUP, NDVI_NONE, one_hot
from generator.paths import read_asset
from runtime.tiles import World, spacing_deg

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CONTEXT_FILE = "earth_context.npz"
def context(world: World | str, level: int, rows: np.ndarray, cols: np.ndarray, seed: int = 0) -> np.ndarray:
    """Context channels (:data:`CHANNELS`) of ``world`` at level-``level`` global samples:
    rows (H,), cols (W,) int64 -> (len(CHANNELS), H, W) float32. ``seed`` matters for the plane only."""
    world = World.parse(world) if not isinstance(world, World) else world
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if world is World.PLANE:
        from generator.anchors.plane import PlaneAnchor

        return PlaneAnchor(seed).context(level, rows, cols)
    d = spacing_deg(level)
    lat = np.broadcast_to((90.0 - rows * d)[:, None], (rows.size, cols.size))
    lon = np.broadcast_to((-180.0 + np.mod(cols * d, 360.0))[None, :], (rows.size, cols.size))
    return EarthContext.shared().at(lat, lon)


class EarthContext:
    """The earth's context layers; :meth:`at` reads them at points."""

    _shared: "EarthContext | None" = None
    _lock = threading.Lock()

    def __init__(self, koppen: np.ndarray, modis: np.ndarray, ndvi_max: np.ndarray, ndvi_min: np.ndarray):
        """koppen (4320, 8640) uint8 groups 0..5 at 2.5'; modis (3600, 7200) uint8 IGBP at 0.05 deg;
        ndvi_max, ndvi_min (1800, 3600) uint8 codes (NDVI = u/254*1.2 - 0.2, 255 none) at 0.1 deg.
        All pixel-registered, row 0 at 90 N, column 0 at 180 W."""
        from generator.anchors.landwater import LandWater

        self.koppen, self.modis, self.ndvi_max, self.ndvi_min = koppen, modis, ndvi_max, ndvi_min
        self.landwater = LandWater.load()

    @classmethod
    def load(cls, path: Path = ASSETS / CONTEXT_FILE) -> "EarthContext":
        d = np.load(io.BytesIO(read_asset(path, "earth context", "python -m generator.anchors.context build")))
        return cls(d["koppen"], d["modis"], d["ndvi_max"], d["ndvi_min"])

    @classmethod
    def shared(cls) -> "EarthContext":
        """One loaded instance per process (the layers are read-only)."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls.load()
            return cls._shared

    def at(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Context at points (degrees, (H, W)) -> (len(CHANNELS), H, W) float32."""
        out = np.empty((len(CHANNELS),) + lat.shape, dtype=np.float32)
        out[0] = self.landwater.land_fraction(lat, lon)
        kop = _nearest(self.koppen, lat, lon).astype(np.int64) - 1  # 0 sea -> -1
        out[1:6] = one_hot(kop, 5)
        grp = IGBP_TO_GROUP[_nearest(self.modis, lat, lon)]
        out[6:13] = one_hot(grp.astype(np.int64), len(COVER_GROUPS))
        out[13] = _ndvi(self.ndvi_max, lat, lon)
        out[14] = _ndvi(self.ndvi_min, lat, lon)
        return out


def _nearest(grid: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    per_deg = grid.shape[0] / 180.0
    i = np.clip(np.floor((90.0 - lat) * per_deg).astype(np.int64), 0, grid.shape[0] - 1)
    j = np.mod(np.floor((lon + 180.0) * per_deg).astype(np.int64), grid.shape[1])
    return grid[i, j]


def _ndvi(grid: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Bilinear NDVI from cell centres; cells without a record count as NDVI_NONE."""
    per_deg = grid.shape[0] / 180.0
    fi = np.clip((90.0 - lat) * per_deg - 0.5, 0.0, grid.shape[0] - 1.0)
    fj = (lon + 180.0) * per_deg - 0.5
    i0 = np.minimum(np.floor(fi).astype(np.int64), grid.shape[0] - 2)
    j0 = np.floor(fj).astype(np.int64)
    ti, tj = (fi - i0).astype(np.float32), (fj - j0).astype(np.float32)

    def v(i, j):
        u = grid[i, np.mod(j, grid.shape[1])].astype(np.float32)
        return np.where(u == 255, np.float32(NDVI_NONE), u / np.float32(254.0) * np.float32(1.2) - np.float32(0.2))

    return ((v(i0, j0) * (1 - tj) + v(i0, j0 + 1) * tj) * (1 - ti)
            + (v(i0 + 1, j0) * (1 - tj) + v(i0 + 1, j0 + 1) * tj) * ti)


# ---------------------------------------------------------------- one-off build

def build(data_dir: Path) -> bytes:
    """The asset's bytes from ``../shared/data/global`` (Koppen 30", MODIS and NDVI 0.05 deg)."""
    data_dir = Path(data_dir)
    cls = np.load(data_dir / "koppen_geiger_30s.npz")["cls"]
    counts = np.zeros((6, 4320, 8640), dtype=np.uint8)
    for i in range(0, 4320, 480):  # 5 x 5 majority in strips
        strip = cls[i * 5 : (i + 480) * 5].reshape(480, 5, 8640, 5)
        for k in range(6):
            counts[k, i : i + 480] = (strip == k).sum(axis=(1, 3))
    land_counts = counts[1:]
    koppen = np.where(counts[0] > 12, 0, 1 + land_counts.argmax(axis=0)).astype(np.uint8)
    modis = np.load(data_dir / "modis_igbp_2019_005deg.npz")["cls"]
    nd = np.load(data_dir / "ndvi_minmax_005deg.npz")
    halves = []
    for key in ("ndvi_max", "ndvi_min"):
        u = nd[key].astype(np.float32).reshape(1800, 2, 3600, 2)
        valid = u != 255
        mean = np.where(valid, u, 0).sum(axis=(1, 3)) / np.maximum(valid.sum(axis=(1, 3)), 1)
        halves.append(np.where(valid.sum(axis=(1, 3)) >= 2, np.round(mean), 255).astype(np.uint8))
    buf = io.BytesIO()
    np.savez_compressed(buf, koppen=koppen, modis=modis, ndvi_max=halves[0], ndvi_min=halves[1])
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    import argparse

    from generator.paths import default_data_dir

    ap = argparse.ArgumentParser(prog="python -m generator.anchors.context", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build"])
    ap.add_argument("--data", type=Path, default=default_data_dir() / "global")
    ap.add_argument("--out", type=Path, default=ASSETS / CONTEXT_FILE)
    a = ap.parse_args(argv)
    a.out.write_bytes(build(a.data))
    print(f"{a.out}: {a.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
