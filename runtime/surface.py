"""Renderable tile surfaces from decoded TIN tiles (numpy only; the viewer uploads them).

A decoded tile gives vertices as fractional grid coordinates + heights, triangles and
the four edge vertex lists. Here they become float32 positions relative to a float64
tile centre (camera-relative rendering needs no float64 on the GPU), vertex normals,
UVs into the tile's colour image, and skirts hanging below each edge against cracks
between levels (Cesium's quantized-mesh convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.geometry import geometry_for
from runtime.mesh import vertex_normals
from runtime.tiles import T, TileKey, World


@dataclass(frozen=True)
class Surface:
    """Arrays ready for a vertex buffer.

    vertices: (n, 3) float32 metres relative to ``center_m`` (3,) float64 world position;
    normals: (n, 3) float32 unit; uv: (n, 2) float32 in [0, 1] (u east, v south);
    faces: (m, 3) uint32; heights within [min_height_m, max_height_m].
    """

    key: TileKey
    center_m: np.ndarray
    vertices: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    faces: np.ndarray
    min_height_m: float
    max_height_m: float
    skirt_start: int

    @property
    def nbytes(self) -> int:
        return int(self.vertices.nbytes + self.normals.nbytes + self.uv.nbytes + self.faces.nbytes)


def tin_surface(
    world: World | str,
    key: TileKey,
    grid_rc: np.ndarray,
    height_m: np.ndarray,
    faces: np.ndarray,
    edges: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    skirt_depth_m: float,
) -> Surface:
    """Build a Surface from a TIN in tile grid coordinates.

    grid_rc: (n, 2) float64 [row, col] in [0, T]; height_m: (n,) metres; faces: (m, 3)
    vertex indices; edges: the vertex indices on the west, south, east and north edges
    (any order, a mapping or a sequence); skirt_depth_m: how far skirts hang below.
    """
    geo = geometry_for(world)
    grid_rc = np.asarray(grid_rc, np.float64)
    h = np.asarray(height_m, np.float64)
    faces = np.asarray(faces, np.int64)
    r0, c0 = key.sample_origin()
    center = geo.tile_center(key)
    pos = geo.sample_to_world(key.level, grid_rc[:, 0] + r0, grid_rc[:, 1] + c0, h)
    normals = vertex_normals(pos - center, faces)
    up_c = geo.up(center[None, :])[0]
    if float((normals.astype(np.float64) @ up_c).sum()) < 0:  # winding seen from below: flip
        faces = faces[:, ::-1]
        normals = -normals

    edge_lists = list(edges.values()) if isinstance(edges, Mapping) else list(edges)
    skirt_faces = []
    skirt_src = []
    n = len(pos)
    for e in edge_lists:
        e = np.asarray(e, np.int64)
        if len(e) < 2:
            continue
        # Order the edge by position along it so consecutive vertices form segments.
        rc = grid_rc[e]
        along = rc[:, 1] if np.ptp(rc[:, 1]) >= np.ptp(rc[:, 0]) else rc[:, 0]
        e = e[np.argsort(along, kind="stable")]
        base = n + sum(len(s) for s in skirt_src)
        skirt_src.append(e)
        a, b = e[:-1], e[1:]
        sa, sb = base + np.arange(len(e) - 1), base + np.arange(1, len(e))
        skirt_faces.append(np.stack([a, sa, b], 1))
        skirt_faces.append(np.stack([b, sa, sb], 1))
    if skirt_src:
        src = np.concatenate(skirt_src)
        skirt_pos = geo.sample_to_world(key.level, grid_rc[src, 0] + r0, grid_rc[src, 1] + c0,
                                        h[src] - skirt_depth_m)
        all_pos = np.concatenate([pos, skirt_pos])
        all_normals = np.concatenate([normals, normals[src]])
        all_rc = np.concatenate([grid_rc, grid_rc[src]])
        all_faces = np.concatenate([faces] + skirt_faces)
    else:
        all_pos, all_normals, all_rc, all_faces = pos, normals, grid_rc, faces
    uv = (all_rc[:, ::-1] / T).astype(np.float32)
    return Surface(
        key=key, center_m=center, vertices=(all_pos - center).astype(np.float32), normals=all_normals,
        uv=uv, faces=all_faces.astype(np.uint32), min_height_m=float(h.min()) - skirt_depth_m,
        max_height_m=float(h.max()), skirt_start=n,
    )
