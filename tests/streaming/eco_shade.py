"""What a Cesium user sees at tile borders, computed offline from served quantized-mesh
tiles: shared-edge normal angles and a low-sun hillshade's border contrast.

The hillshade is computed here rather than read from a CesiumJS screenshot: headless
Chromium renders on SwiftShader with Cesium's own lighting, atmosphere and imagery
blended in, which makes a pixel threshold at 1.25x fragile. Instead each served tile is
decoded with the independent ``quantized-mesh-tile`` reader and shaded the way CesiumJS
shades terrain with ``requestVertexNormals``: per-vertex oct-decoded normals interpolated
linearly over each triangle (Gouraud), lit by a directional sun, sampled at every grid
sample of a block of neighbouring tiles.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from runtime.geometry import east_north_up
from runtime.tiles import T, TileKey, spacing_deg
from runtime.tin.simplify import face_residuals

SUN_ELEVATION_DEG = 15.0
"""A low sun: slopes facing it light up, the others darken (what shows shading seams)."""
SUN_AZIMUTH_DEG = 315.0


def extent(key: TileKey) -> tuple[float, float, float, float]:
    """(west, south, east, north) degrees of an earth tile."""
    d = spacing_deg(key.level) * T
    west, north = -180.0 + key.x * d, 90.0 - key.y * d
    return west, north - d, west + d, north


def decode_terrain(body: bytes, key: TileKey, heights: bool = False) -> tuple[np.ndarray, ...]:
    """A served .terrain (uncompressed, with octvertexnormals) -> grid_rc (n, 2) int64
    [row, col] on the tile grid, unit ECEF normals (n, 3) float64, faces (m, 3) int64;
    with ``heights`` also the vertex heights (n,) float64 m."""
    import quantized_mesh_tile as qmt

    west, south, east, north = extent(key)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.terrain"
        path.write_bytes(body)
        dec = qmt.decode(str(path), (west, south, east, north), hasLighting=True, gzipped=False)
    lon, lat, h = np.array(dec.getVerticesCoordinates()).T
    col = np.round((lon - west) / (east - west) * T).astype(np.int64)
    row = np.round((north - lat) / (north - south) * T).astype(np.int64)
    n = np.array(dec.vLight, np.float64)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = np.stack([row, col], 1), n, np.array(dec.indices, np.int64).reshape(-1, 3)
    return (*out, h) if heights else out


def edge_normal_angles_deg(tiles: dict[TileKey, tuple]) -> np.ndarray:
    """Angles (deg) between the two tiles' normals at every vertex they share on a
    common edge (tiles of one level, decoded by ``decode_terrain``)."""
    out = []
    for a, (rc_a, n_a, _) in tiles.items():
        for dx, dy in ((1, 0), (0, 1)):
            b = TileKey(a.level, a.x + dx, a.y + dy)
            if b not in tiles:
                continue
            rc_b, n_b, _ = tiles[b]
            on_a = rc_a[:, 1] == T if dx else rc_a[:, 0] == T
            on_b = rc_b[:, 1] == 0 if dx else rc_b[:, 0] == 0
            along = 0 if dx else 1
            ia = np.flatnonzero(on_a)[np.argsort(rc_a[on_a, along])]
            ib = np.flatnonzero(on_b)[np.argsort(rc_b[on_b, along])]
            assert np.array_equal(rc_a[ia, along], rc_b[ib, along]), "edges must share their vertices"
            dot = np.clip((n_a[ia] * n_b[ib]).sum(axis=1), -1.0, 1.0)
            out.append(np.degrees(np.arccos(dot)))
    return np.concatenate(out) if out else np.zeros(0)


def hillshade(tiles: dict[TileKey, tuple]) -> tuple[np.ndarray, TileKey]:
    """Low-sun Gouraud hillshade of a rectangular block of same-level tiles: (ny*T+1,
    nx*T+1) float64 in [0, 1] over their grid samples, and the block's north-west key."""
    keys = list(tiles)
    x0, y0 = min(k.x for k in keys), min(k.y for k in keys)
    nx, ny = max(k.x for k in keys) - x0 + 1, max(k.y for k in keys) - y0 + 1
    level = keys[0].level
    w, s, e, n = extent(TileKey(level, x0, y0))
    lon_c, lat_c = w + nx * (e - w) / 2, n - ny * (n - s) / 2
    enu = east_north_up(lon_c, lat_c)
    el, az = np.radians(SUN_ELEVATION_DEG), np.radians(SUN_AZIMUTH_DEG)
    sun = np.cos(el) * np.sin(az) * enu[0] + np.cos(el) * np.cos(az) * enu[1] + np.sin(el) * enu[2]
    out = np.zeros((ny * T + 1, nx * T + 1))
    count = np.zeros_like(out)
    for k, (rc, nrm, faces) in tiles.items():
        field = np.zeros((3, T + 1, T + 1))
        field[:, rc[:, 0], rc[:, 1]] = nrm.T
        res, r, c = face_residuals(field, rc, faces)
        inter = field[:, r, c] - res  # the normal interpolated over its face (3, k)
        shade = np.clip((sun @ inter) / np.linalg.norm(inter, axis=0), 0.0, None)
        # one value per sample (a sample on a triangle edge gets the same from each face)
        img = np.zeros((T + 1, T + 1))
        img[r, c] = shade
        oy, ox = (k.y - y0) * T, (k.x - x0) * T
        out[oy:oy + T + 1, ox:ox + T + 1] += img
        count[oy:oy + T + 1, ox:ox + T + 1] += 1
    return out / np.maximum(count, 1), TileKey(level, x0, y0)


RUN = 8
"""Samples along a line averaged before taking a line's contrast: a border shows as a
line because its anomaly is coherent along it; single-sample noise (the fan border keeps
every border sample, so its normals carry finer detail than the interior's) is not."""


def border_contrast_ratio(shade: np.ndarray, run: int = RUN) -> tuple[float, float, float]:
    """(border contrast, in-tile contrast, ratio) of a block hillshade (``hillshade``).

    A line of samples parallel to the tile borders has, at each sample, the anomaly
    s - (s_before + s_after) / 2 against its two neighbouring lines; its contrast is the
    mean |anomaly averaged over runs of ``run`` samples along it|. Border contrast: over
    the block's inner tile borders; in-tile contrast: over the lines at least 2 samples
    from any tile border; both over columns and rows."""
    border, inner = [], []
    for img in (shade, shade.T):  # columns, then rows
        j = np.arange(1, img.shape[1] - 1)
        a = img[:, j] - 0.5 * (img[:, j - 1] + img[:, j + 1])
        m = (a.shape[0] // run) * run
        a = np.abs(a[:m].reshape(-1, run, a.shape[1]).mean(axis=1))
        dist = np.minimum(j % T, T - j % T)
        border.append(a[:, dist == 0].ravel())
        inner.append(a[:, dist >= 2].ravel())
    b, i = float(np.concatenate(border).mean()), float(np.concatenate(inner).mean())
    return b, i, b / i
