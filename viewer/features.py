"""Buildings and trees of the feature layer: placement on the tile (CPU) and instanced drawing (GL).

- ``place_features(world, key, layer, ground_m)`` turns a decoded layer
  (``runtime.featurelayer.FeatureLayer``: tile metres) into instances standing on the drawn
  ground: per instance 12 float32 = base centre (relative to the tile centre), east half
  axis, north half axis and up axis (the box's or tree's height), in world metres. The
  base sits at the lowest ground under the footprint's corners (nothing floats on a slope).
- ``FeatureRenderer`` owns one unit box (walls + roof) and one unit tree (trunk + cone),
  instanced per tile; it draws a tile's features when the tile is drawn, its level carries
  them and its centre is within ``FeatureOptions`` distances (their own LOD: the layer puts
  buildings on tiles of levels 13-19, merged blocks on level 12 and trees on 15-19;
  a tile and its children are never drawn together, so a drawn tile never shows a feature
  twice). Outputs: colour, normal, NIR and segmentation class, like the terrain, with the same
  logarithmic depth, so depth and normal sensors see buildings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import moderngl
import numpy as np

from runtime.featurelayer import BUILDING, TREE, FeatureLayer
from runtime.geometry import WorldGeometry
from runtime.grids import bilinear
from runtime.tiles import T, TileKey, World, spacing_deg, spacing_m

INSTANCE_FLOATS = 12
TREE_RADIUS = 0.3  # crown radius / tree height
PART_COLOURS = ((1.0, 1.0, 1.0), (0.55, 0.33, 0.28), (1.0, 1.0, 1.0), (0.30, 0.22, 0.14))
"""Colours per mesh part: wall (x the building albedo), roof tiles (30 % of roofs; the rest grey),
crown (x the tree albedo), trunk (bark)."""


@dataclass(frozen=True)
class FeatureOptions:
    """Distances (m) from the camera to a tile's centre beyond which its features are not drawn,
    and the distances over which the ground's land-cover colour fades out (full before the first,
    none beyond the second: tiles without classes, coarser than the layer's level 6, are drawn
    only hundreds of kilometres away, and the fade hides the class colour's own level steps)."""

    building_distance_m: float = 12_000.0
    tree_distance_m: float = 3_000.0
    ground_colour_fade_m: tuple[float, float] = (2_000.0, 4_000.0)


@dataclass(frozen=True, eq=False)
class PlacedFeatures:
    """A tile's instances: buildings (N, 12), trees (M, 12) float32 (module docstring)."""

    buildings: np.ndarray
    trees: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.buildings.nbytes + self.trees.nbytes


def _grid_coords(world: World, key: TileKey, east: np.ndarray, north: np.ndarray):
    """Tile metres -> fractional tile (row, col) and east metres per sample at those rows."""
    s = spacing_m(key.level)
    rows = -north.astype(np.float64) / s
    e_m = np.full(rows.shape, s)
    if world is World.EARTH:  # the generator's east metres use the feature's latitude
        lat = 90.0 - (key.y * T + rows) * spacing_deg(key.level)
        e_m = s * np.maximum(np.cos(np.radians(lat)), 1e-3)
    return rows, east.astype(np.float64) / e_m, e_m, s


def _frames(geo: WorldGeometry, key: TileKey, rows, cols, base_m):
    """World base points (n, 3) and unit east, north, up (n, 3) at fractional tile samples."""
    r0, c0 = key.sample_origin()
    p = geo.sample_to_world(key.level, rows + r0, cols + c0, base_m)
    up = geo.up(p)
    ahead = geo.sample_to_world(key.level, rows + r0, cols + c0 + 1.0, base_m)
    east = ahead - p
    east -= up * np.sum(east * up, axis=1, keepdims=True)
    east /= np.linalg.norm(east, axis=1, keepdims=True)
    return p, east, np.cross(up, east), up


def place_features(world: World, key: TileKey, layer: FeatureLayer, ground_m: np.ndarray,
                   center_m: np.ndarray) -> PlacedFeatures:
    """Instances of a tile's buildings and trees on its ground ((T+1, T+1) float32 metres, the
    drawn TIN on the sample grid), relative to ``center_m`` (3,) float64."""
    geo = WorldGeometry(world)
    out = []
    for arr, kind in ((layer.buildings, "b"), (layer.trees, "t")):
        if not len(arr):
            out.append(np.zeros((0, INSTANCE_FLOATS), np.float32))
            continue
        rows, cols, e_m, n_m = _grid_coords(world, key, arr[:, 0], arr[:, 1])
        if kind == "b":
            hw, hd, h = arr[:, 2] / 2.0, arr[:, 3] / 2.0, arr[:, 4].astype(np.float64)
            dr, dc = hd / n_m, hw / e_m
            corners = [bilinear(ground_m, np.clip(rows + a * dr, 0, T), np.clip(cols + b * dc, 0, T))
                       for a in (-1, 1) for b in (-1, 1)]
            base = np.min(corners, axis=0) - 0.3  # sunk a little: no gap under the downhill wall
            top = np.max(corners, axis=0) + h
            p, e, n, u = _frames(geo, key, rows, cols, base)
            inst = [p - center_m, e * hw[:, None], n * hd[:, None], u * (top - base)[:, None]]
        else:
            h = arr[:, 2].astype(np.float64)
            base = bilinear(ground_m, np.clip(rows, 0, T), np.clip(cols, 0, T)) - 0.2
            p, e, n, u = _frames(geo, key, rows, cols, base)
            r = (TREE_RADIUS * h)[:, None]
            inst = [p - center_m, e * r, n * r, u * h[:, None]]
        out.append(np.concatenate(inst, axis=1).astype(np.float32))
    return PlacedFeatures(*out)


def _box_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Unit box x, y in [-1, 1], z in [0, 1]: (24, 7) [pos, normal, part] and (36,) indices."""
    verts, idx = [], []
    faces = [((1, 0, 0), 0), ((-1, 0, 0), 0), ((0, 1, 0), 0), ((0, -1, 0), 0), ((0, 0, 1), 1)]
    for (nx, ny, nz), part in faces:
        n = np.array([nx, ny, nz], np.float64)
        a = np.array([ny, nz, nx], np.float64) if nz == 0 else np.array([1.0, 0, 0])
        a = a - n * (a @ n)
        a /= np.linalg.norm(a)
        b = np.cross(n, a)
        c = np.array([0.0, 0.0, 0.5]) + np.array([nx, ny, 0.5 * nz])
        base = len(verts)
        for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            q = c + sa * a * np.array([1, 1, 0.5]) + sb * b * np.array([1, 1, 0.5])
            verts.append([*q, *n, part])
        idx += [base, base + 1, base + 2, base, base + 2, base + 3]
    return np.array(verts, np.float32), np.array(idx, np.uint32)


def _tree_mesh(sides: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Unit tree: a trunk prism (radius 0.12, z 0..0.25) and a cone (radius 1, z 0.2..1)."""
    verts, idx = [], []
    a = np.linspace(0.0, 2.0 * math.pi, sides, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a)], 1)
    slope = 1.0 / 0.8  # cone: radius 1 over height 0.8 -> normal's z component
    for i in range(sides):
        j = (i + 1) % sides
        base = len(verts)
        for k in (i, j):  # trunk side
            n = [ring[k, 0], ring[k, 1], 0.0]
            verts += [[0.12 * ring[k, 0], 0.12 * ring[k, 1], 0.0, *n, 3],
                      [0.12 * ring[k, 0], 0.12 * ring[k, 1], 0.25, *n, 3]]
        idx += [base, base + 2, base + 3, base, base + 3, base + 1]
        base = len(verts)
        mid = (a[i] + a[(i + 1) % sides] + (2 * math.pi if j == 0 else 0)) / 2.0
        nz = 1.0 / slope
        n = np.array([math.cos(mid), math.sin(mid), nz]) / math.hypot(1.0, nz)
        verts += [[ring[i, 0], ring[i, 1], 0.2, *n, 2], [ring[j, 0], ring[j, 1], 0.2, *n, 2],
                  [0.0, 0.0, 1.0, *n, 2], [ring[i, 0], ring[i, 1], 0.2, 0, 0, -1, 2],
                  [ring[j, 0], ring[j, 1], 0.2, 0, 0, -1, 2], [0.0, 0.0, 0.2, 0, 0, -1, 2]]
        idx += [base, base + 1, base + 2, base + 3, base + 5, base + 4]
    return np.array(verts, np.float32), np.array(idx, np.uint32)


class _GpuFeatures:
    __slots__ = ("level", "center_m", "vaos", "buffers", "counts", "nbytes")


class FeatureRenderer:
    """Instanced buildings and trees on a moderngl context (one program, two unit meshes)."""

    def __init__(self, ctx: moderngl.Context, program: moderngl.Program, options: FeatureOptions = FeatureOptions()):
        """program: ``shaders/feature.{vert,frag}.glsl`` compiled by the terrain renderer (same
        depth variant); options: the features' draw distances."""
        self.ctx, self.options = ctx, options
        self.prog = program
        self.meshes = []
        for verts, idx in (_box_mesh(), _tree_mesh()):
            self.meshes.append((ctx.buffer(verts.tobytes()), ctx.buffer(idx.tobytes())))
        self.tiles: dict[TileKey, _GpuFeatures] = {}
        self.drawn = 0  # instances drawn in the last frame

    def upload(self, key: TileKey, center_m: np.ndarray, placed: PlacedFeatures) -> int:
        """Upload a tile's instances (replacing earlier ones); returns the GPU bytes."""
        self.release(key)
        g = _GpuFeatures()
        g.level, g.center_m, g.vaos, g.buffers, g.counts, g.nbytes = key.level, center_m, [], [], [], 0
        for (vbo, ibo), inst in zip(self.meshes, (placed.buildings, placed.trees)):
            if not len(inst):
                g.vaos.append(None)
                g.counts.append(0)
                continue
            buf = self.ctx.buffer(np.ascontiguousarray(inst, np.float32).tobytes())
            vao = self.ctx.vertex_array(self.prog, [(vbo, "3f 3f 1f", "in_pos", "in_normal", "in_part"),
                                                    (buf, "3f 3f 3f 3f/i", "i_base", "i_east", "i_north", "i_up")],
                                        index_buffer=ibo, index_element_size=4)
            g.vaos.append(vao)
            g.buffers.append(buf)
            g.counts.append(len(inst))
            g.nbytes += inst.nbytes
        self.tiles[key] = g
        return g.nbytes

    def release(self, key: TileKey) -> None:
        g = self.tiles.pop(key, None)
        if g is None:
            return
        for v in g.vaos:
            if v is not None:
                v.release()
        for b in g.buffers:
            b.release()

    def close(self) -> None:
        for key in list(self.tiles):
            self.release(key)
        for vbo, ibo in self.meshes:
            vbo.release()
            ibo.release()
        self.prog.release()

    def set_palette(self, albedo: np.ndarray, nir: np.ndarray) -> None:
        """Class albedo (C, 3) uint8 and NIR (C,) uint8 of the layer (building and tree used)."""
        a, n = albedo.astype(np.float32) / 255.0, nir.astype(np.float32) / 255.0
        self.prog["u_albedo"].write(np.ascontiguousarray(a[[BUILDING, TREE]]).tobytes())
        self.prog["u_nir"].write(np.ascontiguousarray(n[[BUILDING, TREE]]).tobytes())

    def draw(self, keys, cam_m: np.ndarray, vp32: bytes, common: dict) -> None:
        """Draw the features of ``keys`` (drawn tiles) with the terrain's uniforms ``common``
        (name -> value: sun, up, sky colours, haze, log depth); depth test as the terrain's."""
        prog, opt = self.prog, self.options
        if not self.tiles:
            self.drawn = 0
            return
        prog["u_viewproj"].write(vp32)
        for name, value in common.items():
            u = prog.get(name, None)  # the compiler drops what a variant does not use
            if u is not None:
                u.value = value
        prog["u_parts"].write(np.array(PART_COLOURS, np.float32).tobytes())
        drawn = 0
        for key in keys:
            g = self.tiles.get(key)
            if g is None:
                continue
            rel = g.center_m - cam_m
            dist = float(np.linalg.norm(rel))
            prog["u_offset"].value = tuple(rel.astype(np.float32))
            for kind, (vao, n, limit) in enumerate(zip(g.vaos, g.counts,
                                                      (opt.building_distance_m, opt.tree_distance_m))):
                if vao is None or dist > limit:
                    continue
                prog["u_kind"].value = kind
                vao.render(moderngl.TRIANGLES, instances=n)
                drawn += n
        self.drawn = drawn
