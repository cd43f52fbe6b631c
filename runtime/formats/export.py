"""Exports in the ecosystem's formats: GLB (through trimesh), Cesium quantized-mesh-1.0
and 3D Tiles 1.1 (tileset.json + GLB).

quantized-mesh-1.0 follows https://github.com/CesiumGS/quantized-mesh (README.md):
88-byte header (tile centre, height range, bounding sphere, horizon occlusion point),
zig-zag delta coded u, v, height in [0, 32767], high-water-mark coded 16/32-bit
indices (counter-clockwise), the four edge index lists, then the oct-encoded vertex
normals extension (id 1). Tiles use Cesium's geographic tiling scheme, which is ours
(2 x 1 roots); file paths are TMS (y counted from the south) as ``layer.json`` says.

Every writer takes meshes placed by ``runtime.tin.tile_mesh`` (the viewer's path too).
The tileset writers see all their tiles at once, so they first ``stitch_tiles``: every
edge shared by two written tiles gets the joined mesh's normal on both sides; a tile
exported alone keeps the shared-edge rule, which its neighbours compute identically.
"""

from __future__ import annotations

import io
import json
import math
import struct

import numpy as np

from runtime.tiles import WGS84_A_M, WGS84_B_M, T, TileKey, World, spacing_deg, tiles_y, validate_key
from runtime.tin import TileMesh, first_use_order, stitch_tiles

QM_MAX = 32767
"""Largest quantized-mesh u, v and height value."""

EXT_OCT_NORMALS = 1
"""Extension id of oct-encoded per-vertex normals."""

_RADII = np.array([WGS84_A_M, WGS84_A_M, WGS84_B_M])


# ---------------------------------------------------------------- GLB


def tile_glb(tile: TileMesh, image=None, *, y_up: bool = True, material=None) -> bytes:
    """A binary glTF of the tile (surface and skirts, normals, UVs, optional texture).

    Vertices stay float32 relative to the tile centre; the centre goes into the node
    transform (float64 in the JSON), the usual relative-to-centre layout. With ``y_up``
    the world's Z-up axes are turned into glTF's Y-up ones ((x, y, z) -> (x, z, -y)), which
    3D Tiles clients undo by default. ``image`` is an optional PIL image (the tile colour);
    ``material`` a trimesh material instead (e.g. a PBR terrain material holding it).
    """
    import trimesh

    m = tile.to_trimesh(image=image, material=material)
    transform = np.eye(4)
    transform[:3, 3] = tile.center_m
    if y_up:
        z_to_y = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
        transform = z_to_y @ transform
    scene = trimesh.Scene()
    scene.add_geometry(m, node_name="tile", geom_name="tile", transform=transform)
    return scene.export(file_type="glb")


# ---------------------------------------------------------------- quantized-mesh


def _zigzag16(delta: np.ndarray) -> np.ndarray:
    d = delta.astype(np.int32)
    return ((d << 1) ^ (d >> 31)).astype(np.uint16)


def oct_encode(normals: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) -> oct-encoded (n, 2) uint8, as Cesium's
    AttributeCompression.octEncodeInRange(v, 255) (Meyer et al. 2010)."""
    v = np.asarray(normals, dtype=np.float64)
    p = v[:, :2] / np.abs(v).sum(axis=1, keepdims=True)
    neg = v[:, 2] < 0
    sign = np.where(p >= 0, 1.0, -1.0)  # signNotZero
    folded = (1.0 - np.abs(p[:, ::-1])) * sign
    p = np.where(neg[:, None], folded, p)
    return np.round((np.clip(p, -1.0, 1.0) * 0.5 + 0.5) * 255.0).astype(np.uint8)


def oct_decode(xy: np.ndarray) -> np.ndarray:
    """Oct-encoded (n, 2) uint8 -> unit vectors (n, 3) float64 (Cesium's octDecodeInRange)."""
    p = np.asarray(xy, dtype=np.float64) / 255.0 * 2.0 - 1.0
    z = 1.0 - np.abs(p).sum(axis=1)
    neg = z < 0
    sign = np.where(p >= 0, 1.0, -1.0)
    p = np.where(neg[:, None], (1.0 - np.abs(p[:, ::-1])) * sign, p)
    v = np.column_stack([p, z])
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def horizon_occlusion_point(positions_m: np.ndarray, center_m: np.ndarray) -> np.ndarray:
    """Cesium's EllipsoidalOccluder.computeHorizonCullingPointFromVertices, in the
    ellipsoid-scaled frame: the point along the centre's direction that is hidden by the
    WGS84 ellipsoid only when every vertex is. (3,) float64; NaN where none exists (a tile
    wider than a hemisphere's horizon, as at level 0), which Cesium treats as "never cull"."""
    d = center_m / _RADII
    d = d / np.linalg.norm(d)
    p = positions_m / _RADII
    mag2 = (p * p).sum(axis=1)
    mag = np.sqrt(mag2)
    direction = p / mag[:, None]
    mag2, mag = np.maximum(1.0, mag2), np.maximum(1.0, mag)
    cos_a = direction @ d
    sin_a = np.linalg.norm(np.cross(direction, d), axis=1)
    cos_b = 1.0 / mag
    sin_b = np.sqrt(mag2 - 1.0) * cos_b
    denom = cos_a * cos_b - sin_a * sin_b
    if (denom <= 0).any():
        return np.full(3, np.nan)
    return d * (1.0 / denom).max()


def quantized_mesh(tile: TileMesh, key: TileKey, *, normals: bool = True) -> bytes:
    """One quantized-mesh-1.0 ``.terrain`` tile (uncompressed bytes) of an earth tile.

    ``tile`` must be meshed in WGS84 ECEF (``runtime.geometry`` earth transform) on the
    tile's (T+1)^2 sample grid; skirts are left out (Cesium adds its own from the edge
    lists). With ``normals`` the oct-encoded vertex normals extension (ECEF) follows."""
    validate_key(World.EARTH, key)
    n = len(tile.grid_rc)
    # Faces in Z order of their centroids, vertices renumbered by first use: what
    # high-water-mark index coding needs, and what makes it (and gzip) effective.
    faces, order = _cache_friendly(tile.grid_rc, tile.faces)
    rc = tile.grid_rc[order].astype(np.int64)
    h = tile.height_m[order].astype(np.float64)
    hmin, hmax = float(h.min()), float(h.max())
    # u west->east, v south->north, both over the tile's extent; heights over [min, max].
    u = np.round(rc[:, 1] * QM_MAX / T).astype(np.int64)
    v = np.round((T - rc[:, 0]) * QM_MAX / T).astype(np.int64)
    span = hmax - hmin
    hq = np.round((h - hmin) / span * QM_MAX).astype(np.int64) if span > 0 else np.zeros(n, np.int64)
    pos = tile.vertices_m[:n].astype(np.float64) + tile.center_m
    sphere_c = 0.5 * (pos.min(axis=0) + pos.max(axis=0))
    radius = float(np.linalg.norm(pos - sphere_c, axis=1).max())
    hop = horizon_occlusion_point(pos, tile.center_m)
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)

    out = io.BytesIO()
    out.write(struct.pack("<3d2f4d3d", *tile.center_m, hmin, hmax, *sphere_c, radius, *hop))
    out.write(struct.pack("<I", n))
    for q in (u, v, hq):
        out.write(_zigzag16(np.diff(q, prepend=0)).astype("<u2").tobytes())
    wide = n > 65536
    itype = "<u4" if wide else "<u2"
    if wide and out.tell() % 4:
        out.write(b"\0" * (4 - out.tell() % 4))  # IndexData32 is 4-byte aligned
    f = faces.reshape(-1)
    highest = np.maximum.accumulate(np.concatenate([[0], f[:-1] + 1]))
    codes = highest - f
    out.write(struct.pack("<I", len(faces)))
    out.write(codes.astype(itype).tobytes())
    # Edge lists: west/east south->north, south/north west->east.
    for edge in (tile.west[::-1], tile.south, tile.east[::-1], tile.north):
        out.write(struct.pack("<I", len(edge)))
        out.write(inv[edge].astype(itype).tobytes())
    if normals:
        xy = oct_encode(tile.normals[:n][order])
        out.write(struct.pack("<BI", EXT_OCT_NORMALS, xy.size))
        out.write(xy.tobytes())
    return out.getvalue()


def _spread_lut(n: int) -> np.ndarray:
    """Bit-spread table for Z-order keys: bit k of v moves to bit 2k. (n,) int64."""
    v = np.arange(n, dtype=np.int64)
    out = np.zeros(n, dtype=np.int64)
    for k in range(int(n).bit_length()):
        out |= ((v >> k) & 1) << (2 * k)
    return out


_SPREAD = _spread_lut(T + 1)


def _cache_friendly(grid_rc: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faces sorted by the Z-order key of their centroid and renumbered by first use.
    Returns (faces (m, 3) int64 in the new numbering, order (n,): new i = old order[i])."""
    c = grid_rc[faces].sum(axis=1).astype(np.int64)  # 3 x centroid, (m, 2)
    key = _SPREAD[c[:, 0] // 3] | (_SPREAD[c[:, 1] // 3] << 1)
    faces = np.asarray(faces)[np.argsort(key, kind="stable")]
    order = first_use_order(faces, len(grid_rc))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return inv[faces], order


def terrain_path(key: TileKey) -> str:
    """Relative path of a tile in a quantized-mesh tileset: ``{z}/{x}/{y}.terrain`` with
    TMS y (0 at the south), as layer.json's ``"scheme": "tms"`` declares."""
    return f"{key.level}/{key.x}/{tiles_y(World.EARTH, key.level) - 1 - key.y}.terrain"


def layer_json(keys: list[TileKey], *, name: str, description: str = "", attribution: str = "") -> dict:
    """The ``layer.json`` of a quantized-mesh tileset holding ``keys`` (earth tiles):
    geographic tiling (EPSG:4326), TMS scheme, octvertexnormals, and the ``available``
    ranges per level (each level's tiles as TMS row runs)."""
    if not keys:
        raise ValueError("layer.json needs at least one tile key")
    for k in keys:
        validate_key(World.EARTH, k)
    max_level = max(k.level for k in keys)
    available: list[list[dict]] = []
    for level in range(max_level + 1):
        ranges = []
        ny = tiles_y(World.EARTH, level)
        # Group this level's tiles into runs of consecutive x within one TMS row.
        cells = sorted({(ny - 1 - k.y, k.x) for k in keys if k.level == level})
        for y, x in cells:
            if ranges and ranges[-1]["startY"] == y and ranges[-1]["endX"] == x - 1:
                ranges[-1]["endX"] = x
            else:
                ranges.append({"startX": x, "startY": y, "endX": x, "endY": y})
        available.append(ranges)
    return {
        "tilejson": "2.1.0",
        "name": name,
        "description": description,
        "version": "1.0.0",
        "format": "quantized-mesh-1.0",
        "attribution": attribution,
        "scheme": "tms",
        "extensions": ["octvertexnormals"],
        "tiles": ["{z}/{x}/{y}.terrain?v={version}"],
        "projection": "EPSG:4326",
        "bounds": [-180.0, -90.0, 180.0, 90.0],
        "minzoom": 0,
        "maxzoom": max_level,
        "available": available,
    }


def write_quantized_mesh_tileset(root, tiles: dict[TileKey, TileMesh], *, name: str, **layer_kw) -> list[str]:
    """Write ``layer.json`` and one ``.terrain`` file per tile under ``root`` (a path).
    Shared edges get joined normals (``stitch_tiles``). Returns the relative paths
    written. Files are stored uncompressed; serve them with
    ``Content-Type: application/vnd.quantized-mesh`` (gzip transfer encoding is optional)."""
    from pathlib import Path

    root = Path(root)
    written = []
    for key, tile in stitch_tiles(World.EARTH, tiles).items():
        rel = terrain_path(key)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(quantized_mesh(tile, key))
        written.append(rel)
    (root / "layer.json").write_text(json.dumps(layer_json(list(tiles), name=name, **layer_kw), indent=1))
    written.append("layer.json")
    return written


# ---------------------------------------------------------------- 3D Tiles


def tile_region(key: TileKey, height_min_m: float, height_max_m: float) -> list[float]:
    """3D Tiles ``boundingVolume.region`` of an earth tile: [west, south, east, north] in
    radians (WGS84 geodetic) and [min, max] height in metres."""
    validate_key(World.EARTH, key)
    d = spacing_deg(key.level) * T  # 180 / 2^level degrees: exact, so shared edges agree
    west, north = -180.0 + key.x * d, 90.0 - key.y * d
    rad = [math.radians(v) for v in (west, north - d, west + d, north)]
    return [*rad, float(height_min_m), float(height_max_m)]


def tileset_node(region: list[float], geometric_error_m: float, content_uri: str | None = None,
                 **more) -> dict:
    """One 3D Tiles tile object: ``region`` bounding volume (``tile_region``), geometric
    error, REPLACE refinement, optional content; ``more`` (``children``,
    ``implicitTiling``) follows in that order."""
    out = {"boundingVolume": {"region": region}, "geometricError": geometric_error_m, "refine": "REPLACE"}
    if content_uri is not None:
        out["content"] = {"uri": content_uri}
    out.update(more)
    return out


def enclosing_region(regions: list[list[float]]) -> list[float]:
    """The smallest ``region`` holding every one of ``regions`` (none crossing the antimeridian)."""
    return [min(r[0] for r in regions), min(r[1] for r in regions), max(r[2] for r in regions),
            max(r[3] for r in regions), min(r[4] for r in regions), max(r[5] for r in regions)]


def tileset_document(root: dict, geometric_error_m: float) -> dict:
    """A 3D Tiles 1.1 ``tileset.json`` document around ``root``."""
    return {"asset": {"version": "1.1", "generator": "worldstream"}, "geometricError": geometric_error_m,
            "root": root}


def explicit_tileset_json(tiles: dict[TileKey, tuple[float, float, float]]) -> dict:
    """A 3D Tiles 1.1 ``tileset.json`` listing each of ``tiles`` explicitly (earth tiles,
    content ``{z}/{x}/{y}.glb`` as ``tile_glb`` writes it, Y-up with the centre in the node
    transform). The served and baked worlds use implicit tiling instead
    (streaming.ecosystem.implicit_tileset_json), built from the same nodes.

    tiles: key -> (geometric_error_m, height_min_m, height_max_m). Tiles whose parent is
    in the set become its children (refine REPLACE); the others hang under one root that
    has no content and spans them all."""
    if not tiles:
        raise ValueError("a tileset needs at least one tile")

    def node(key: TileKey) -> dict:
        err, lo, hi = tiles[key]
        kids = [node(k) for k in key.children() if k in tiles]
        out = tileset_node(tile_region(key, lo, hi), float(err), f"{key.level}/{key.x}/{key.y}.glb")
        if kids:
            # A parent's box must hold its children's (their heights may reach further).
            out["boundingVolume"]["region"][4] = min(c["boundingVolume"]["region"][4] for c in kids + [out])
            out["boundingVolume"]["region"][5] = max(c["boundingVolume"]["region"][5] for c in kids + [out])
            out["children"] = kids
        return out

    tops = [node(k) for k in sorted(tiles) if k.level == 0 or k.parent() not in tiles]
    root_error = max(t["geometricError"] for t in tops) * 2.0
    root = tileset_node(enclosing_region([t["boundingVolume"]["region"] for t in tops]), root_error,
                        children=tops)
    return tileset_document(root, root_error)


def write_3d_tiles(root, tiles: dict[TileKey, tuple[TileMesh, float]], image_of=None) -> list[str]:
    """Write ``tileset.json`` and one ``{z}/{x}/{y}.glb`` per earth tile under ``root``.

    tiles: key -> (mesh in WGS84 ECEF, geometric_error_m); image_of: optional
    key -> PIL image for the tile's colour. Shared edges get joined normals
    (``stitch_tiles``). Returns the relative paths written."""
    from pathlib import Path

    root = Path(root)
    written = []
    info = {}
    stitched = stitch_tiles(World.EARTH, {k: m for k, (m, _) in tiles.items()})
    for key, (_, err) in tiles.items():
        tile = stitched[key]
        rel = f"{key.level}/{key.x}/{key.y}.glb"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image = image_of(key) if image_of is not None else None
        path.write_bytes(tile_glb(tile, image=image, y_up=True))
        written.append(rel)
        lo = float(tile.height_m.min()) - tile.skirt_depth_m
        info[key] = (float(err), lo, float(tile.height_m.max()))
    (root / "tileset.json").write_text(json.dumps(explicit_tileset_json(info), indent=1))
    written.append("tileset.json")
    return written
