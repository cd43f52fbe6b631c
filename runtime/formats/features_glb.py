"""Buildings and trees in a tile's GLB (3D Tiles content), next to the terrain.

- **Buildings**: one mesh of extruded footprints (``runtime.footprints``: axis-aligned
  rectangles in the tile's frame) with roofs, two primitives (walls, roofs). Walls go from
  ``SINK_M`` below the lowest ground under the footprint (corners and centre) to the eaves;
  the roof top is ``ground(centre) + height`` (``runtime.footprints.roof_levels``): flat on
  buildings taller than ``PITCHED_MAX_M``, a gabled roof (ridge along the longer side, rise
  ``min(2.5 m, 0.3 x height)``) on lower ones. Positions are int16 and normals int8
  (``KHR_mesh_quantization``, required; the node matrix scales them back, one uniform step
  of at most 5 cm). Every vertex is placed as the terrain is
  (``WorldGeometry.tile_to_world``, vertical = the local up; ECEF on the earth), relative to
  the tile centre, under the terrain node's transform.
- **Trees**: one low-poly tree (trunk and crown, 1 m tall, +Z up) drawn once per tree with
  ``EXT_mesh_gpu_instancing``: per instance TRANSLATION (the tree's foot on the ground, in
  the node frame), ROTATION (the mesh's +Z turned to the local up) and SCALE (its height).

``append_features`` adds both to a GLB written by ``export.tile_glb`` without touching its
terrain (JSON entries and binary data are appended), so a tile without features keeps its
bytes. The ground is the drawn surface: the TIN resampled on the tile grid
(``runtime.tin.surface.tin_grid``), so buildings and trees stand on what the client draws.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from runtime.footprints import check_buildings, check_trees, roof_levels, to_samples
from runtime.geometry import geometry_for
from runtime.grids import bilinear
from runtime.tiles import T, TileKey, World

INSTANCING = "EXT_mesh_gpu_instancing"
QUANTIZATION = "KHR_mesh_quantization"  # building positions int16, normals int8 (half the bytes)
QUANT_STEPS = 65000  # int16 steps over the buildings' largest extent
QUANT_MARGIN_M = 0.05  # height ranges hold the rounded vertices: <= 3 half-steps of a 3.4 km (level-13) tile
SINK_M = 0.5  # walls reach this far below the lowest ground under a footprint
TREE_SINK_M = 0.2
PITCHED_MAX_M = 9.0  # buildings up to this height get a gabled roof
MAX_RISE_M, RISE_FRACTION = 2.5, 0.3
MATERIALS = {  # name -> linear RGBA base colour
    "walls": [0.62, 0.58, 0.52, 1.0], "roofs": [0.36, 0.24, 0.20, 1.0],
    "trunk": [0.30, 0.20, 0.12, 1.0], "crown": [0.13, 0.30, 0.10, 1.0],
}

# Footprint corners CCW from above, in (long, short) half-axes; levels 0 base, 1 eave, 2 top.
_C = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
_WALLS = [[(*_C[i], 0), (*_C[(i + 1) % 4], 0), (*_C[(i + 1) % 4], 1), (*_C[i], 1)] for i in range(4)]
_FLAT = [[(*c, 2) for c in _C]]
_SLOPES = [[(-1, -1, 1), (1, -1, 1), (1, 0, 2), (-1, 0, 2)], [(1, 1, 1), (-1, 1, 1), (-1, 0, 2), (1, 0, 2)]]
_GABLES = [[(1, -1, 1), (1, 1, 1), (1, 0, 2)], [(-1, 1, 1), (-1, -1, 1), (-1, 0, 2)]]


def _template(polys: list) -> tuple[np.ndarray, np.ndarray]:
    """Polygons of (long, short, level) vertices -> ((v, 3) float vertices, (f, 3) fan faces)."""
    verts, faces = [], []
    for p in polys:
        base = len(verts)
        verts += p
        faces += [(base, base + k, base + k + 1) for k in range(1, len(p) - 1)]
    return np.array(verts, np.float64), np.array(faces, np.int64)


def _instances(tpl: tuple[np.ndarray, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """A template repeated for n buildings: ((n, v, 3) vertices, (n * f, 3) faces)."""
    v, f = tpl
    return np.broadcast_to(v, (n, *v.shape)), (f[None] + len(v) * np.arange(n)[:, None, None]).reshape(-1, 3)


def ground_grid(grid_rc: np.ndarray, height_m: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(T+1, T+1) float64 heights of the drawn TIN at every grid node."""
    from runtime.tin.surface import tin_grid

    return np.asarray(tin_grid(grid_rc, height_m, faces, T), np.float64)


def building_geometry(world: World | str, key: TileKey, buildings, ground: np.ndarray) -> dict:
    """Extruded buildings of a tile: {"walls": (positions (V, 3) float64 world metres, faces
    (F, 3) int64), "roofs": (positions, faces)}, faces CCW seen from outside; ``ground``
    (T+1, T+1) metres."""
    world = World.parse(world)
    b = check_buildings(buildings)
    parts: dict[str, list] = {"walls": [], "roofs": []}
    to_world = geometry_for(world).tile_to_world(key)
    if len(b):
        top = roof_levels(world, key, b, ground)
        long_east = b[:, 2] >= b[:, 3]
        half_long = np.where(long_east, b[:, 2], b[:, 3]) / 2.0
        half_short = np.where(long_east, b[:, 3], b[:, 2]) / 2.0
        corners = np.array(_C, np.float64)
        cr, cc = to_samples(world, key, b[:, 0] + corners[:, :1] * b[:, 2] / 2.0,
                            b[:, 1] + corners[:, 1:] * b[:, 3] / 2.0)  # (4, N)
        rc, ccen = to_samples(world, key, b[:, 0], b[:, 1])
        g = bilinear(ground, np.clip(np.vstack([cr, rc]), 0, T), np.clip(np.vstack([cc, ccen]), 0, T))
        base = g.min(axis=0) - SINK_M
        pitched = b[:, 4] <= PITCHED_MAX_M
        eave = np.where(pitched, top - np.minimum(MAX_RISE_M, RISE_FRACTION * b[:, 4]), top)
        for sel, templates in ((~pitched, {"walls": _WALLS, "roofs": _FLAT}),
                               (pitched, {"walls": _WALLS + _GABLES, "roofs": _SLOPES})):
            idx = np.flatnonzero(sel)
            for part, polys in templates.items() if len(idx) else ():
                v, f = _instances(_template(polys), len(idx))
                a, s = v[..., 0] * half_long[idx, None], v[..., 1] * half_short[idx, None]
                le = long_east[idx, None]
                east = b[idx, 0, None] + np.where(le, a, -s)  # long axis east, or turned 90 deg (CCW kept)
                north = b[idx, 1, None] + np.where(le, s, a)
                z = np.choose(v[..., 2].astype(np.int64), [base[idx, None], eave[idx, None], top[idx, None]])
                r, c = to_samples(world, key, east, north)
                parts[part].append((to_world(r.ravel(), c.ravel(), z.ravel()), f))
    out = {}
    for part, chunks in parts.items():
        pos, faces, n0 = [np.zeros((0, 3))], [np.zeros((0, 3), np.int64)], 0
        for p, f in chunks:
            pos.append(p)
            faces.append(f + n0)
            n0 += len(p)
        out[part] = (np.concatenate(pos), np.concatenate(faces))
    return out


def feature_height_range(world: World | str, key: TileKey, ground: np.ndarray, buildings=None,
                         trees=None) -> tuple[float, float] | None:
    """(lowest, highest) height (m) of the features ``append_features`` draws on ``ground``:
    wall bottoms to roof tops (widened by QUANT_MARGIN_M for their int16 rounding), tree feet
    to tree tops; None when there are none."""
    b = check_buildings(np.zeros((0, 5)) if buildings is None else buildings)
    t = check_trees(np.zeros((0, 3)) if trees is None else trees)
    lo, hi = [], []
    if len(b):
        for p, _ in building_geometry(world, key, b, ground).values():
            h = geometry_for(world).height_above_ellipsoid_m(p)
            lo.append(h.min() - QUANT_MARGIN_M)
            hi.append(h.max() + QUANT_MARGIN_M)
    if len(t):
        r, c = to_samples(world, key, t[:, 0], t[:, 1])
        foot = bilinear(ground, np.clip(r, 0, T), np.clip(c, 0, T)) - TREE_SINK_M
        lo.append(foot.min())
        hi.append((foot + t[:, 2]).max())
    return (float(min(lo)), float(max(hi))) if lo else None


def tree_mesh(sides: int = 6) -> dict:
    """The instanced tree, 1 m tall, +Z up: {"trunk", "crown"}: ((v, 3) float64, (f, 3) int64)."""
    a = 2 * np.pi * np.arange(sides) / sides
    ring = np.stack([np.cos(a), np.sin(a)], 1)

    def at(r, i, z):
        return (*(r * ring[i % sides]), z)

    trunk = [[at(0.04, i, 0.0), at(0.04, i + 1, 0.0), at(0.03, i + 1, 0.35), at(0.03, i, 0.35)]
             for i in range(sides)]
    crown = [[at(0.2, i, 0.25), at(0.2, i + 1, 0.25), (0.0, 0.0, 1.0)] for i in range(sides)]
    crown.append([at(0.2, i, 0.25) for i in range(sides)][::-1])  # the crown's underside
    return {"trunk": _template(trunk), "crown": _template(crown)}


def tree_instances(world: World | str, key: TileKey, trees, ground: np.ndarray, center_m: np.ndarray) -> dict:
    """Per-tree instance attributes in the node frame (world axes, relative to ``center_m``):
    TRANSLATION (M, 3), ROTATION (M, 4) unit quaternions (x, y, z, w) turning +Z to the local
    up, SCALE (M, 3) = the tree's height; float32."""
    world = World.parse(world)
    t = check_trees(trees)
    r, c = to_samples(world, key, t[:, 0], t[:, 1])
    geo = geometry_for(world)
    foot = geo.tile_to_world(key)(r, c, bilinear(ground, np.clip(r, 0, T), np.clip(c, 0, T)) - TREE_SINK_M)
    up = geo.up(foot) if len(t) else np.zeros((0, 3))
    q = np.stack([-up[:, 1], up[:, 0], np.zeros(len(up)), 1.0 + up[:, 2]], 1)  # shortest arc +Z -> up
    q[1.0 + up[:, 2] < 1e-9] = (1.0, 0.0, 0.0, 0.0)  # straight down (the south pole): half a turn
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return {"TRANSLATION": (foot - center_m).astype(np.float32), "ROTATION": q.astype(np.float32),
            "SCALE": np.repeat(t[:, 2:3], 3, axis=1).astype(np.float32)}


def face_normals_per_vertex(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(V, 3) float32 unit normals: the area-weighted sum of each vertex's faces (flat shading
    where vertices are not shared between faces, as here)."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, f[:, k], n)
    ln = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(ln > 0, ln, 1.0)).astype(np.float32)


class _GlbBuilder:
    """Appends buffer views and accessors to a parsed GLB (JSON dict + binary chunk)."""

    def __init__(self, glb: bytes):
        magic, version, _ = struct.unpack_from("<4sII", glb)
        jlen, jtype = struct.unpack_from("<I4s", glb, 12)
        if magic != b"glTF" or version != 2 or jtype != b"JSON":
            raise ValueError("expected a glTF 2.0 binary with a JSON chunk first")
        self.js = json.loads(glb[20:20 + jlen])
        rest = glb[20 + jlen:]
        self.bin = bytearray()
        if rest:
            blen, btype = struct.unpack_from("<I4s", rest)
            if btype != b"BIN\0":
                raise ValueError("expected the binary chunk after the JSON chunk")
            self.bin = bytearray(rest[8:8 + blen])
        for key in ("accessors", "bufferViews", "meshes", "materials", "nodes", "buffers"):
            self.js.setdefault(key, [])
        if not self.js["buffers"]:
            self.js["buffers"].append({"byteLength": 0})

    def accessor(self, data: np.ndarray, kind: str, target: int | None, bounds: bool = False,
                 normalized: bool = False) -> int:
        """An accessor of ``data`` (n,) or (n, k); a (n, 4) array of a VEC3 ``kind`` is stored
        with its 4th column as padding (byteStride: 4-byte aligned 8- and 16-bit vectors)."""
        data = np.ascontiguousarray(data)
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[kind]
        while len(self.bin) % 4:
            self.bin.append(0)
        view = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": data.nbytes}
        if data.ndim == 2 and data.shape[1] != width:
            view["byteStride"] = data.shape[1] * data.itemsize
        if target is not None:
            view["target"] = target
        self.bin.extend(data.tobytes())
        self.js["bufferViews"].append(view)
        comp = {np.dtype("<f4"): 5126, np.dtype("<u4"): 5125, np.dtype("<u2"): 5123, np.dtype("<i2"): 5122,
                np.dtype("i1"): 5120}[data.dtype]
        acc = {"bufferView": len(self.js["bufferViews"]) - 1, "componentType": comp, "count": int(len(data)),
               "type": kind}
        if normalized:
            acc["normalized"] = True
        if bounds:
            flat = data.reshape(len(data), -1)[:, :width]
            acc["min"], acc["max"] = flat.min(axis=0).tolist(), flat.max(axis=0).tolist()
        self.js["accessors"].append(acc)
        return len(self.js["accessors"]) - 1

    def extension(self, name: str, required: bool = False) -> None:
        for key in ("extensionsUsed",) + (("extensionsRequired",) if required else ()):
            names = self.js.setdefault(key, [])
            if name not in names:
                names.append(name)

    def material(self, name: str) -> int:
        self.js["materials"].append({"name": name, "pbrMetallicRoughness": {
            "baseColorFactor": MATERIALS[name], "metallicFactor": 0.0, "roughnessFactor": 1.0}})
        return len(self.js["materials"]) - 1

    def primitive(self, v: np.ndarray, f: np.ndarray, material: str, quantum: tuple | None = None) -> dict:
        """A triangle primitive of positions (node frame, float64) and faces: float32, or with
        ``quantum`` = (offset (3,), step) int16 positions (v - offset) / step and int8 normals
        (KHR_mesh_quantization; the node's matrix scales them back)."""
        nrm = face_normals_per_vertex(np.asarray(v, np.float64), f)
        if quantum is None:
            pos = self.accessor(np.asarray(v, np.float32), "VEC3", 34962, bounds=True)
            normal = self.accessor(nrm, "VEC3", 34962)
        else:
            q = np.zeros((len(v), 4), "<i2")
            q[:, :3] = np.round((np.asarray(v, np.float64) - quantum[0]) / quantum[1])
            pos = self.accessor(q, "VEC3", 34962, bounds=True)
            n8 = np.zeros((len(v), 4), "i1")
            n8[:, :3] = np.round(np.clip(nrm, -1.0, 1.0) * 127.0)
            normal = self.accessor(n8, "VEC3", 34962, normalized=True)
        return {"attributes": {"POSITION": pos, "NORMAL": normal},
                "indices": self.accessor(np.asarray(f, "<u2" if len(v) <= 65535 else "<u4").reshape(-1),
                                         "SCALAR", 34963, bounds=True),
                "material": self.material(material), "mode": 4}

    def node(self, name: str, primitives: list, matrix, extensions: dict | None = None) -> None:
        self.js["meshes"].append({"name": name, "primitives": primitives})
        node = {"name": name, "mesh": len(self.js["meshes"]) - 1}
        if matrix is not None:
            node["matrix"] = matrix
        if extensions:
            node["extensions"] = extensions
        self.js["nodes"].append(node)
        self.js["scenes"][self.js.get("scene", 0)]["nodes"].append(len(self.js["nodes"]) - 1)

    def bytes(self) -> bytes:
        while len(self.bin) % 4:
            self.bin.append(0)
        self.js["buffers"][0]["byteLength"] = len(self.bin)
        text = json.dumps(self.js, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(self.bin), b"BIN\0")
        return struct.pack("<4sII", b"glTF", 2, 12 + len(body) + len(self.bin)) + body + bytes(self.bin)


def append_features(glb: bytes, world: World | str, key: TileKey, center_m: np.ndarray, ground: np.ndarray,
                    buildings=None, trees=None) -> bytes:
    """``glb`` (a tile GLB whose first node carries the terrain's centre transform) plus a
    ``buildings`` node and an instanced ``trees`` node under the same transform; unchanged
    when both arrays are empty or None. ``ground``: (T+1, T+1) drawn heights (``ground_grid``)."""
    b = check_buildings(np.zeros((0, 5)) if buildings is None else buildings)
    t = check_trees(np.zeros((0, 3)) if trees is None else trees)
    if not len(b) and not len(t):
        return glb
    g = _GlbBuilder(glb)
    matrix = g.js["nodes"][0].get("matrix") if g.js["nodes"] else None
    center = np.asarray(center_m, np.float64)
    if len(b):
        geo = building_geometry(world, key, b, ground)
        rel = {part: (p - center, f) for part, (p, f) in geo.items()}
        every = np.concatenate([p for p, _ in rel.values()])
        lo, hi = every.min(axis=0), every.max(axis=0)
        offset, step = (lo + hi) / 2.0, max(float((hi - lo).max()) / QUANT_STEPS, 1e-6)  # one step: normals stay true
        g.node("buildings", [g.primitive(p, f, part, (offset, step)) for part, (p, f) in rel.items()],
               _times(matrix, offset, step))
        g.extension(QUANTIZATION, required=True)
    if len(t):
        mesh = tree_mesh()
        inst = tree_instances(world, key, t, ground, center)
        attrs = {name: g.accessor(a, "VEC4" if name == "ROTATION" else "VEC3", None) for name, a in inst.items()}
        g.node("trees", [g.primitive(*mesh["trunk"], "trunk"), g.primitive(*mesh["crown"], "crown")], matrix,
               {INSTANCING: {"attributes": attrs}})
        g.extension(INSTANCING)
    return g.bytes()


def _times(matrix: list | None, offset: np.ndarray, step: float) -> list:
    """A column-major glTF node matrix (None: identity) times the dequantization
    x = offset + step * q."""
    m = np.eye(4) if matrix is None else np.array(matrix, np.float64).reshape(4, 4).T
    d = np.eye(4)
    d[:3, :3] *= step
    d[:3, 3] = offset
    return (m @ d).T.reshape(-1).tolist()
