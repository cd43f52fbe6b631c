"""Height grids shared by the meshing, wire and export tests."""

from pathlib import Path

import numpy as np

DATA = Path(__file__).parents[1] / "data"


def real_crop() -> np.ndarray:
    """A real 257 x 257 DEM crop (Big Tujunga, 30 m), float32 metres."""
    return np.load(DATA / "dem_crop_bigtujunga_257.npz")["elev"].astype(np.float32)


def fractal(n: int, seed: int, hurst: float = 0.8, relief_m: float = 800.0, offset_m: float = 0.0) -> np.ndarray:
    """fBm surface by spectral synthesis, (n, n) float32 metres in [offset, offset + relief]."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(2 * n)
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    kk[0, 0] = 1.0
    spec = kk ** -(hurst + 1.0) * np.exp(2j * np.pi * rng.random(kk.shape))
    spec[0, 0] = 0.0
    z = np.fft.ifft2(spec).real[:n, :n]
    return ((z - z.min()) / np.ptp(z) * relief_m + offset_m).astype(np.float32)


def signed_area2(grid_rc: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """2 x signed area in (east = col, north = -row): > 0 is counter-clockwise from above."""
    p = grid_rc[faces].astype(np.float64)
    x, y = p[..., 1], -p[..., 0]
    return (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
