"""The terrain renderer: owns program, buffers and textures; clear -> state -> uniforms -> draw.

- Camera-relative: each tile's float64 centre minus the float64 camera position becomes a
  float32 offset, so vertices never hold large numbers (no jitter 10,000 km out).
- Logarithmic depth (gl_FragDepth = log2(1 + w) / log2(far + 1)) keeps 0.5 m to 10,000 km
  in one 24-bit depth buffer; ``read_depth_m`` inverts it to metres along the view axis.
- Sun + sky lighting and aerial perspective (exponential haze toward the horizon colour).
- Water: where a vertex lies below the datum it is lifted to it along the local up (the
  ellipsoid on earth) and shaded as water (Fresnel sky reflection, sun glint, depth tint).
- Geomorphing (CDLOD, Strugar 2009): a tile whose parent's surface is known blends its
  heights, normals and colour into the parent's with distance, reaching the parent at the
  distance where selection would draw the parent instead; level changes do not pop, and a
  fine tile meets a coarser neighbour on the coarse surface (no lines at level borders).
- Several render targets: colour, world-frame normal, false-colour NIR (when a tile
  carries a NIR band or land-cover classes) and the segmentation class come out of one
  pass; viewer.sensors reads them back.
- The feature layer (``runtime.featurelayer``): where a tile carries land-cover classes the
  ground takes the class colour (and NIR) and the segmentation its class; its buildings and
  trees are drawn instanced by ``viewer.features.FeatureRenderer`` after the terrain.

The GLSL is in ``viewer/shaders/`` (package data, ``shader_source``); this module holds
what the CPU does: vertex layout, sub-tile culling blocks, uniforms and draw calls.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import moderngl
import numpy as np

from runtime.tiles import ANCHOR_LEVEL, TileKey
from runtime.tin import Surface, kernels
from viewer.features import FeatureOptions, FeatureRenderer, PlacedFeatures
from viewer.paths import FAR_M
from viewer.thermal import AIR_K, SKY_DEPRESSION_K, thermal_table

SHADERS = resources.files("viewer") / "shaders"
"""The GLSL sources (package data): terrain.{vert,frag}.glsl, sky.{vert,frag}.glsl and
sky_colour.glsl, which the fragment shaders ``#include``."""


def shader_source(name: str, defines: Sequence[str] = ()) -> str:
    """GLSL 330 source of ``viewer/shaders/<name>.glsl`` with ``#include "file"`` lines
    replaced by that file and ``#define``s for ``defines`` after the ``#version`` line."""
    lines = []
    for line in (SHADERS / f"{name}.glsl").read_text().splitlines(keepends=True):
        if line.startswith("#include "):
            lines.append((SHADERS / line.split('"')[1]).read_text())
        else:
            lines.append(line)
            if line.startswith("#version"):
                lines += [f"#define {d}\n" for d in defines]
    return "".join(lines)


VERTEX_FORMAT = "3f 3f 2f 1f 3f 1f 3f"
VERTEX_ATTRS = ("in_pos", "in_normal", "in_uv", "in_height", "in_up", "in_dh", "in_pnormal")
VERTEX_BYTES = 16 * 4


@dataclass(frozen=True)
class Lighting:
    sun_dir: tuple[float, float, float] | None = None  # world-frame; None: from azimuth/elevation
    sun_azimuth_deg: float = 135.0
    sun_elevation_deg: float = 35.0
    horizon_rgb: tuple[float, float, float] = (0.74, 0.82, 0.92)
    zenith_rgb: tuple[float, float, float] = (0.26, 0.47, 0.80)
    haze_m: float = 120_000.0
    water: bool = True              # draw the sea surface where terrain is below the datum
    air_k: float = AIR_K            # air temperature of the thermal target (viewer/thermal.py)


@dataclass(frozen=True)
class MorphOptions:
    """Geomorph policy. error_target_px must be selection's (the parent is drawn from the
    distance where its error drops to it); start_fraction: the morph begins at this
    fraction of that distance. enabled=False draws every tile's own surface."""

    error_target_px: float = 2.0
    start_fraction: float = 0.6
    enabled: bool = True


class _GpuTile:
    __slots__ = ("vao", "buffers", "texture", "nir", "classes", "center_m", "nbytes", "parent_ge_m", "triangles",
                 "chunk_starts", "chunk_lo", "chunk_hi", "water_m", "lakes")


LAKE_BELOW_SEA_M = (-500.0, -10.0)
"""A flat water surface in this range (m) is a lake below sea level (the Caspian -32 m, Chott
Melrhir, the Salton Sea, the Dead Sea), not a sea-floor plateau: the Arctic's shelf has one at
-5 m. Tiles above the anchor level (>= 22.5 deg wide, seen from 1,000 km and more) keep 0 m:
their quantised floors repeat values (level 0: -256 m)."""


LAKE_VERTICES_PER_HEIGHT = 6.0
"""Lakes: a tile's water-class vertices above 0 m hold on average at least this many vertices per
distinct height (earth, one height per lake: 7.6 .. 452 at Geneva, the Alps' lakes at level 6
and in Finland; the plane's coast, its quantised land heights: 2 .. 3.8)."""


def class_lakes(surface: Surface, classes: np.ndarray | None) -> bool:
    """Whether the classes' water above sea level is drawn as water (lakes): on earth the class
    is water exactly where the lake rule holds the terrain flat, so those vertices share their
    lake's exact height (:data:`LAKE_VERTICES_PER_HEIGHT`); the plane's classes call 8 % of its coastal
    land water at all heights (its classes and its sea disagree at the coast): those stay
    ground in the water's palette colour, as before."""
    if classes is None or surface.height_m is None or surface.grid_rc is None:
        return False
    h = np.asarray(surface.height_m, np.float32)
    rc = np.clip(np.rint(np.asarray(surface.grid_rc)).astype(np.int64), 0, np.asarray(classes.shape) - 1)
    up = h[(classes[rc[:, 0], rc[:, 1]] == 0) & (h > 0)]
    return np.unique(up).size <= max(1.0, up.size / LAKE_VERTICES_PER_HEIGHT)


def water_level(surface: Surface, classes: np.ndarray | None) -> float:
    """The tile's water surface (m) up to which the terrain is lifted and shaded as water: 0 (the
    sea) unless the tile holds a lake below sea level. The lake rule makes a lake exactly flat
    (docs/EARTH.md) and no sea floor is: when at least a quarter (and 3) of the vertices in
    :data:`LAKE_BELOW_SEA_M` share one height, that is the level; with the feature layer's
    classes ((T+1, T+1) uint8) only water-class vertices count, without them (levels < 6, or no
    layer) all do (over every level-4 earth tile only the Caspian's two pass). Lakes above sea
    level need no lift: the classes shade them as water (without the layer nothing on the wire
    says so). A tile without a lake keeps 0 m even where its classes hold no water: the plane's
    classes and its sea disagree at the coast (6 of 52 coastal tiles under plane 10/-118/5 have
    ground below 0 m and no water class), so land below sea level there is drawn as sea, as
    before (around Baku, only in tiles without the Caspian)."""
    if surface.height_m is None or surface.key.level < ANCHOR_LEVEL:  # coarser: quantised floors repeat
        return 0.0
    h = np.asarray(surface.height_m, np.float32)
    low = (h > LAKE_BELOW_SEA_M[0]) & (h < LAKE_BELOW_SEA_M[1])
    if classes is not None and surface.grid_rc is not None:
        rc = np.clip(np.rint(np.asarray(surface.grid_rc)).astype(np.int64), 0, np.asarray(classes.shape) - 1)
        low &= classes[rc[:, 0], rc[:, 1]] == 0
    low = h[low]
    if low.size < 3:
        return 0.0
    v, c = np.unique(low, return_counts=True)
    k = int(np.argmax(c))
    return float(v[k]) if c[k] >= max(3, low.size // 4) else 0.0


CHUNKS = 4
"""Sub-tile culling: a tile's triangles are grouped into CHUNKS x CHUNKS blocks of its grid,
each a contiguous index range with a bounding box; blocks outside the frustum are skipped."""


Z_ORDER_FACES = True
"""Order each block's faces along a Z curve (False: decoded order; bench baseline only)."""


_FACE_ORDERS: dict[int, tuple] = {}  # id(faces) -> (weakref to faces, grid_rc, Z_ORDER_FACES, order, starts)


def _face_order(surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    """(order (m,) of the faces grouped by block, starts (CHUNKS^2 + 1,) triangle offsets
    of the blocks): ``chunk_layout``'s sort, which depends only on the faces and their grid
    positions. Kept while the faces array lives: a tile uploaded again (stitched normals,
    new morph targets: ``dataclasses.replace`` keeps ``faces`` and ``grid_rc``) skips it."""
    faces_arr = surface.faces
    hit = _FACE_ORDERS.get(id(faces_arr))
    if (hit is not None and hit[0]() is faces_arr and hit[1] is surface.grid_rc and hit[2] == Z_ORDER_FACES
            and surface.grid_rc is not None):
        return hit[3], hit[4]
    faces = np.ascontiguousarray(faces_arr, np.uint32)
    rc = surface.grid_rc if surface.grid_rc is not None else surface.uv[:, ::-1].astype(np.float64) * 256.0
    # Blocks of the face centroids (tile grid units); within a block, faces in Z order of
    # their centroids: consecutive triangles share vertices, so the GPU's post-transform
    # cache hits (ACMR ~0.7 instead of ~2.2 in RTIN hierarchy order, FIFO of 32): ~3x fewer
    # vertex-shader runs on a geometry-bound pass. (Z_ORDER_FACES False: the decoded RTIN
    # order, the benchmark's baseline only.)
    order, starts = kernels.block_z_order(np.ascontiguousarray(rc, np.float64), faces, CHUNKS,
                                          6.0 if Z_ORDER_FACES else 0.0)
    if isinstance(faces_arr, np.ndarray) and surface.grid_rc is not None:  # uint32: a third of the faces array
        key = id(faces_arr)
        ref = weakref.ref(faces_arr, lambda _, k=key: _FACE_ORDERS.pop(k, None))
        _FACE_ORDERS[key] = (ref, surface.grid_rc, Z_ORDER_FACES, order, starts)
    return order, starts


_LAYOUTS: dict[int, tuple] = {}  # id(faces) -> (weakref to faces, vertices, up, height_m, morph_dh_m, layout)
LAYOUTS_KEPT = 128
"""Tiles whose chunk layout is kept (most recently made first): re-uploads follow an upload
within a few frames (a neighbour or the parent arrives); an earth layout is ~0.5 MB."""


def chunk_layout(surface: Surface) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(faces (m, 3) uint32 grouped by block, starts (CHUNKS^2 + 1,) triangle offsets,
    lo (CHUNKS^2, 3), hi (CHUNKS^2, 3) float32 box corners relative to the tile centre).

    The boxes hold every position a vertex can take: its own, geomorphed (own + up * dh)
    and lifted to sea level (water), so culling never removes a visible triangle. The
    face order (``_face_order``) is kept per faces array; the layout is kept with the
    arrays it was made from (faces, vertices, up, height, morph heights), so a re-upload
    that changed only normals (stitched edges, a restitched parent's morph normals: most
    re-uploads) reuses it. The arrays are never written in place (``dataclasses.replace``
    makes new ones), so the same objects mean the same values."""
    faces_arr = surface.faces
    hit = _LAYOUTS.get(id(faces_arr))
    if (hit is not None and hit[0]() is faces_arr and hit[1] is surface.vertices and hit[2] is surface.up
            and hit[3] is surface.height_m and hit[4] is surface.morph_dh_m and hit[5] == Z_ORDER_FACES):
        return hit[6]
    layout = _chunk_layout(surface)
    if isinstance(faces_arr, np.ndarray):
        key = id(faces_arr)
        ref = weakref.ref(faces_arr, lambda _, k=key: _LAYOUTS.pop(k, None))
        _LAYOUTS.pop(key, None)  # (re)inserted last: the oldest go first
        _LAYOUTS[key] = (ref, surface.vertices, surface.up, surface.height_m, surface.morph_dh_m, Z_ORDER_FACES,
                         layout)
        while len(_LAYOUTS) > LAYOUTS_KEPT:
            _LAYOUTS.pop(next(iter(_LAYOUTS)), None)
    return layout


def _chunk_layout(surface: Surface) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``chunk_layout`` made afresh."""
    order, starts = _face_order(surface)
    n = len(surface.vertices)
    up = surface.up if surface.up is not None else np.tile(np.float32([0, 0, 1]), (n, 1))
    h = surface.height_m if surface.height_m is not None else np.zeros(n, np.float32)
    dh = surface.morph_dh_m if surface.morph_dh_m is not None else np.zeros(n, np.float32)
    # Per vertex the box of its own, geomorphed (pos + up dh), lifted (sea level) and both
    # positions, then per block the min / max over its faces' corners (compiled: one pass).
    c32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    faces, lo, hi = kernels.block_boxes(c32(surface.vertices), c32(up), c32(h), c32(dh),
                                        np.ascontiguousarray(surface.faces, np.uint32), order, starts)
    return faces, starts, lo, hi


def visible_ranges(planes: np.ndarray, rel_center: np.ndarray, starts: np.ndarray, lo: np.ndarray,
                   hi: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous (first triangle, count) runs of the blocks whose boxes meet the frustum.

    planes: (6, 4) camera-relative (n . p + d >= 0 inside); rel_center: (3,) tile centre
    minus camera (metres); lo, hi: (B, 3) block boxes relative to the tile centre."""
    c = (lo + hi) * 0.5 + rel_center
    e = (hi - lo) * 0.5
    n, d = planes[:, :3], planes[:, 3]
    dist = c @ n.T + d  # (B, 6)
    reach = e @ np.abs(n).T
    keep = ((dist + reach) >= 0).all(axis=1) & np.isfinite(lo[:, 0])
    runs = []
    i, B = 0, len(keep)
    while i < B:
        if keep[i]:
            j = i
            while j + 1 < B and keep[j + 1]:
                j += 1
            a, b = int(starts[i]), int(starts[j + 1])
            if b > a:
                runs.append((a, b - a))
            i = j + 1
        else:
            i += 1
    return runs


def vertex_array(surface: Surface) -> np.ndarray:
    """(n, 16) float32 interleaved vertex data in VERTEX_FORMAT order."""
    n = len(surface.vertices)
    c32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    h = surface.height_m if surface.height_m is not None else np.zeros(n, np.float32)
    up = surface.up if surface.up is not None else np.tile(np.float32([0, 0, 1]), (n, 1))
    dh = surface.morph_dh_m if surface.morph_dh_m is not None else np.zeros(n, np.float32)
    pn = surface.morph_normals if surface.morph_normals is not None else surface.normals
    return kernels.vertex_rows(c32(surface.vertices), c32(surface.normals), c32(surface.uv), c32(h), c32(up), c32(dh),
                               c32(pn))


def tile_gpu_bytes(surface: Surface, image: np.ndarray | None, nir: np.ndarray | None = None,
                   classes: np.ndarray | None = None, placed: PlacedFeatures | None = None) -> int:
    """Bytes ``upload`` will allocate for this tile (vertex + index buffers, mipmapped textures,
    class texture, feature instances)."""
    b = len(surface.vertices) * VERTEX_BYTES + surface.faces.size * 4
    for img in (image, nir):
        if img is not None:
            b += int(np.asarray(img).shape[0] * np.asarray(img).shape[1] * 4 * 4 // 3)
    if classes is not None:
        b += int(np.asarray(classes).size)
    if placed is not None:
        b += placed.nbytes
    return b


class TerrainRenderer:
    """Draws tiles for a camera into an offscreen framebuffer (or the window's)."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], lighting: Lighting = Lighting(),
                 offscreen: bool = True, morph: MorphOptions = MorphOptions(), fragment_depth: bool = True,
                 cull_backfaces: bool = False, chunk_culling: bool = True,
                 features: FeatureOptions = FeatureOptions()):
        """fragment_depth: logarithmic depth per fragment (exact; what sensors read), else per
        vertex (keeps early depth testing: faster on GPUs, approximate inside long triangles).
        cull_backfaces: skip triangles facing away (skirts then show from outside only).
        chunk_culling: skip blocks of a tile outside the frustum (``CHUNKS``). features: the
        distances within which buildings and trees are drawn."""
        self.chunk_culling = chunk_culling
        self.ctx = ctx
        self.size = tuple(int(v) for v in size)
        self.lighting = lighting
        self.morph = morph
        self.fragment_depth = fragment_depth
        self.cull_backfaces = cull_backfaces
        defines = () if fragment_depth else ("VERTEX_LOGDEPTH",)
        self.terrain = ctx.program(vertex_shader=shader_source("terrain.vert", defines),
                                   fragment_shader=shader_source("terrain.frag", defines))
        self.sky = ctx.program(vertex_shader=shader_source("sky.vert"), fragment_shader=shader_source("sky.frag"))
        self.features = FeatureRenderer(ctx, ctx.program(vertex_shader=shader_source("feature.vert", defines),
                                                         fragment_shader=shader_source("feature.frag", defines)),
                                        features)
        self._palette = None  # the layer palette last set (bytes), to write uniforms on change only
        table = thermal_table().tobytes()
        for prog in (self.terrain, self.features.prog):
            prog["u_thermal"].write(table)
            prog["u_air_k"].value = lighting.air_k
        self.sky["u_sky_k"].value = lighting.air_k - SKY_DEPRESSION_K
        quad = np.array([-1, -1, 3, -1, -1, 3], np.float32)
        self._sky_vbo = ctx.buffer(quad.tobytes())
        self._sky_vao = ctx.vertex_array(self.sky, [(self._sky_vbo, "2f", "in_ndc")])
        self.tiles: dict[TileKey, _GpuTile] = {}
        self.gpu_bytes = 0
        self.offscreen = offscreen
        self.targets = RenderTargets(ctx, self.size) if offscreen else None
        self.fbo = self.targets.fbo if offscreen else ctx.screen
        self.far_m = FAR_M
        self.last_camera = None
        self.triangles_drawn = 0
        self.tiles_drawn = 0

    # -- resources -------------------------------------------------------------------------
    def upload(self, surface: Surface, image: np.ndarray | None, parent_ge_m: float = 0.0,
               nir: np.ndarray | None = None, layer=None, placed: PlacedFeatures | None = None) -> int:
        """Upload one tile (replacing any previous version); returns its GPU bytes.

        image: (H, W, 3) uint8, row 0 = north edge of the tile, or None. parent_ge_m: the
        parent's geometric error (metres) when ``surface`` has morph targets (it sets the
        morph distance), else 0. nir: (H, W) uint8 near-infrared band, or None. layer: the
        tile's ``runtime.featurelayer.FeatureLayer`` (classes and palette) or None; placed:
        its buildings and trees (``viewer.features.place_features``) or None.
        """
        self.release(surface.key)
        ctx = self.ctx
        vbo = ctx.buffer(np.ascontiguousarray(vertex_array(surface)).tobytes())
        faces, starts, lo, hi = chunk_layout(surface)
        ibo = ctx.buffer(np.ascontiguousarray(faces, np.uint32).tobytes())
        vao = ctx.vertex_array(self.terrain, [(vbo, VERTEX_FORMAT, *VERTEX_ATTRS)],
                               index_buffer=ibo, index_element_size=4)
        t = _GpuTile()
        t.vao, t.buffers, t.center_m = vao, (vbo, ibo), surface.center_m
        t.triangles = len(surface.faces)
        t.chunk_starts, t.chunk_lo, t.chunk_hi = starts, lo.astype(np.float64), hi.astype(np.float64)
        t.parent_ge_m = float(parent_ge_m) if surface.has_morph else 0.0
        t.texture = self._texture(image, 3) if image is not None else None
        t.nir = self._texture(nir, 1) if nir is not None else None
        classes = layer.classes if layer is not None else None
        t.classes = None
        t.water_m, t.lakes = water_level(surface, classes), class_lakes(surface, classes)
        if classes is not None:
            t.classes = ctx.texture((classes.shape[1], classes.shape[0]), 1,
                                    np.ascontiguousarray(classes, np.uint8).tobytes(), alignment=1)
            t.classes.filter = (moderngl.NEAREST, moderngl.NEAREST)
        if layer is not None and layer.albedo is not None:
            self._set_palette(layer.albedo, layer.nir)
        if placed is not None and len(placed.buildings) + len(placed.trees):
            self.features.upload(surface.key, surface.center_m, placed)
        t.nbytes = tile_gpu_bytes(surface, image, nir, classes, placed)
        self.tiles[surface.key] = t
        self.gpu_bytes += t.nbytes
        return t.nbytes

    def _set_palette(self, albedo: np.ndarray, nir: np.ndarray) -> None:
        key = albedo.tobytes() + nir.tobytes()
        if key == self._palette:
            return
        self._palette = key
        pal = np.zeros((16, 3), np.float32)
        pal[: len(albedo)] = albedo.astype(np.float32) / 255.0
        pn = np.zeros(16, np.float32)
        pn[: len(nir)] = nir.astype(np.float32) / 255.0
        self.terrain["u_palette"].write(np.ascontiguousarray(pal).tobytes())
        self.terrain["u_palette_nir"].write(pn.tobytes())
        self.features.set_palette(albedo, nir)

    def _texture(self, img: np.ndarray, components: int) -> moderngl.Texture:
        img = np.ascontiguousarray(img, np.uint8)
        tex = self.ctx.texture((img.shape[1], img.shape[0]), components, img.tobytes(), alignment=1)
        tex.repeat_x = tex.repeat_y = False
        tex.build_mipmaps()
        tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        return tex

    def release(self, key: TileKey) -> None:
        t = self.tiles.pop(key, None)
        if t is None:
            return
        t.vao.release()
        for b in t.buffers:
            b.release()
        for tex in (t.texture, t.nir, t.classes):
            if tex is not None:
                tex.release()
        self.features.release(key)
        self.gpu_bytes -= t.nbytes

    def close(self) -> None:
        for key in list(self.tiles):
            self.release(key)
        self.features.close()
        if self.targets is not None:
            self.targets.release()

    # -- drawing ---------------------------------------------------------------------------
    def render(self, camera, draw: Sequence[TileKey], up: np.ndarray, targets: "RenderTargets | None" = None,
               sky: bool = True) -> None:
        """Render ``draw`` (keys already uploaded) seen by ``camera`` (runtime.lod.camera.Camera)
        into ``targets`` (default: this renderer's framebuffer; its size must match the
        camera's viewport). up: (3,) unit local up at the camera (world frame)."""
        ctx, L = self.ctx, self.lighting
        if targets is not None:
            fbo, size = targets.fbo, targets.size
        else:
            fbo, size = self.fbo, self.size
        fbo.use()
        ctx.viewport = (0, 0, *size)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        vp = (camera.projection() @ camera.view_rotation()).astype(np.float64)
        vp32 = vp.T.astype(np.float32).tobytes()  # GL wants column-major
        up = np.asarray(up, np.float64)
        sun = self._sun(up)

        ctx.disable(moderngl.DEPTH_TEST)
        fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        self._common = {"u_up": tuple(up.astype(np.float32)), "u_sun": tuple(sun.astype(np.float32)),
                        "u_horizon": L.horizon_rgb, "u_zenith": L.zenith_rgb}
        for prog in (self.sky, self.terrain):
            for name, value in self._common.items():
                prog[name].value = value
        if sky:
            self.sky["u_inv_viewproj"].write(np.linalg.inv(vp).T.astype(np.float32).tobytes())
            self._sky_vao.render(moderngl.TRIANGLES)
        self.draw_terrain(camera, draw, vp32)
        self.last_camera = camera

    def draw_terrain(self, camera, draw: Sequence[TileKey], vp32: bytes | None = None) -> None:
        """The terrain pass alone (uniforms of the sky pass must be set: use ``render``)."""
        ctx, L, prog = self.ctx, self.lighting, self.terrain
        if vp32 is None:
            vp32 = (camera.projection() @ camera.view_rotation()).T.astype(np.float32).tobytes()
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.depth_func = "<"
        prog["u_viewproj"].write(vp32)
        prog["u_haze_m"].value = L.haze_m
        prog["u_water"].value = L.water
        if self.fragment_depth:
            prog["u_logdepth"].value = 1.0 / math.log2(self.far_m + 1.0)
        else:
            prog["u_logdepth_vs"].value = 1.0 / math.log2(self.far_m + 1.0)
        if self.cull_backfaces:
            ctx.front_face = "ccw"
            ctx.enable(moderngl.CULL_FACE)
        prog["u_tex"].value, prog["u_ptex"].value, prog["u_nir"].value, prog["u_class"].value = 0, 1, 2, 3
        prog["u_class_fade"].value = self.features.options.ground_colour_fade_m
        # Selection draws the parent from the distance where its error is error_target_px.
        k = camera.viewport_px[1] / (2.0 * math.tan(camera.fov_y_rad / 2.0))
        morph_k = k / self.morph.error_target_px if self.morph.enabled else 0.0
        start = self.morph.start_fraction
        cam = np.asarray(camera.position_m, np.float64)
        u_tile = prog["u_tile"]
        planes = camera.frustum_planes()
        block = np.zeros((4, 4), np.float32)
        tris = drawn = 0
        for key in draw:
            t = self.tiles.get(key)
            if t is None:
                continue
            # One uniform write per tile: Python-side calls dominate a frame of ~100 tiles.
            block[0, :3] = t.center_m - cam
            block[0, 3] = t.texture is not None
            end = t.parent_ge_m * morph_k
            parent = self.tiles.get(key.parent()) if end > 0 and key.level > 0 else None
            has_ptex = parent is not None and parent.texture is not None
            block[1] = (end * start, end, has_ptex, t.nir is not None)
            block[2] = (0.5 * (key.x & 1), 0.5 * (key.y & 1), 0.5, 0.5)
            block[3, :3] = (t.classes is not None, t.water_m, t.lakes)
            u_tile.write(block.tobytes())
            if t.classes is not None:
                t.classes.use(3)
            if t.texture is not None:
                t.texture.use(0)
            if has_ptex:
                parent.texture.use(1)
            if t.nir is not None:
                t.nir.use(2)
            if self.chunk_culling:
                runs = visible_ranges(planes, t.center_m - cam, t.chunk_starts, t.chunk_lo, t.chunk_hi)
                for first, count in runs:
                    t.vao.render(moderngl.TRIANGLES, vertices=3 * count, first=3 * first)
                    tris += count
            else:
                t.vao.render(moderngl.TRIANGLES)
                tris += t.triangles
            drawn += 1
        self.triangles_drawn = tris
        if self.cull_backfaces:
            ctx.disable(moderngl.CULL_FACE)
        self.tiles_drawn = drawn
        if self.features.tiles:  # buildings and trees of the drawn tiles, same depth and targets
            common = dict(getattr(self, "_common", {}), u_haze_m=L.haze_m)
            if self.fragment_depth:
                common["u_logdepth"] = 1.0 / math.log2(self.far_m + 1.0)
            else:
                common["u_logdepth_vs"] = 1.0 / math.log2(self.far_m + 1.0)
            self.features.draw(draw, cam, vp32, common)

    def _sun(self, up: np.ndarray) -> np.ndarray:
        L = self.lighting
        if L.sun_dir is not None:
            s = np.asarray(L.sun_dir, np.float64)
            return s / np.linalg.norm(s)
        # Local east/north frame around ``up`` (for the plane this is the world frame).
        ref = np.array([0.0, 0.0, 1.0]) if abs(up[2]) < 0.99 else np.array([0.0, 1.0, 0.0])
        east = np.cross(ref, up) if abs(up[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
        east /= np.linalg.norm(east)
        north = np.cross(up, east)
        az, el = math.radians(L.sun_azimuth_deg), math.radians(L.sun_elevation_deg)
        return math.cos(el) * (math.sin(az) * east + math.cos(az) * north) + math.sin(el) * up

    def read_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8, row 0 = top of the image."""
        if self.targets is not None:
            return self.targets.read_rgb()
        data = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(self.size[1], self.size[0], 3)[::-1].copy()

    def read_depth_m(self) -> np.ndarray:
        """(H, W) float32 distance along the view axis in metres; inf where sky."""
        return self.targets.read_depth_m(self.far_m)


class RenderTargets:
    """An offscreen framebuffer: colour (RGBA8), normal (RGBA16F), NIR (RGBA8), segmentation
    class (R8: id + 1, 0 = unclassified), thermal brightness temperature (R32F, K), depth."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int]):
        self.size = (int(size[0]), int(size[1]))
        self.color = ctx.renderbuffer(self.size, components=4)
        self.normal = ctx.renderbuffer(self.size, components=4, dtype="f2")
        self.nir = ctx.renderbuffer(self.size, components=4)
        self.segment = ctx.renderbuffer(self.size, components=1)
        self.thermal = ctx.renderbuffer(self.size, components=1, dtype="f4")
        self.depth = ctx.depth_texture(self.size)
        self.fbo = ctx.framebuffer([self.color, self.normal, self.nir, self.segment, self.thermal], self.depth)

    def _read(self, attachment: int, components: int, dtype: str, np_dtype) -> np.ndarray:
        data = self.fbo.read(components=components, attachment=attachment, dtype=dtype, alignment=1)
        w, h = self.size
        return np.frombuffer(data, np_dtype).reshape(h, w, components)[::-1]

    def read_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8, row 0 = top of the image."""
        return self._read(0, 3, "f1", np.uint8).copy()

    def read_normals(self) -> np.ndarray:
        """(H, W, 3) float32 world-frame unit normals; 0 where sky."""
        return self._read(1, 3, "f2", np.float16).astype(np.float32)

    def read_nir(self) -> np.ndarray:
        """(H, W, 3) uint8 false colour (R = NIR, G = red, B = green); 0 where no NIR band."""
        return self._read(2, 3, "f1", np.uint8).copy()

    def read_segmentation(self) -> np.ndarray:
        """(H, W) uint8 class ids of ``runtime.featurelayer.CLASS_NAMES`` (sky included);
        255 (``NO_CLASS``) where the ground has no land-cover classes (the sea is water)."""
        v = self._read(3, 1, "f1", np.uint8)[..., 0]
        return np.where(v == 0, 255, v - 1).astype(np.uint8)

    def read_thermal_k(self) -> np.ndarray:
        """(H, W) float32 brightness temperature in Kelvin (viewer/thermal.py)."""
        return self._read(4, 1, "f4", np.float32)[..., 0].copy()

    def read_depth_m(self, far_m: float) -> np.ndarray:
        """(H, W) float32 distance along the view axis in metres; inf where sky."""
        w, h = self.size
        d = np.frombuffer(self.depth.read(alignment=1), np.float32).reshape(h, w)[::-1]
        z = np.exp2(d.astype(np.float64) * math.log2(far_m + 1.0)) - 1.0
        return np.where(d >= 1.0, np.inf, z).astype(np.float32)

    def release(self) -> None:
        ctx = self.fbo.ctx
        if ctx.fbo is self.fbo:
            # Releasing the bound framebuffer leaves moderngl rebinding a dead name on the next
            # framebuffer it creates (GL_INVALID_OPERATION); bind a parked 1x1 one first.
            _parking_fbo(ctx).use()
        for obj in (self.fbo, self.color, self.normal, self.nir, self.segment, self.thermal, self.depth):
            obj.release()


def _parking_fbo(ctx: moderngl.Context) -> moderngl.Framebuffer:
    if not isinstance(ctx.extra, dict):
        ctx.extra = {}
    fb = ctx.extra.get("worldstream_parking_fbo")
    if fb is None:
        fb = ctx.extra["worldstream_parking_fbo"] = ctx.simple_framebuffer((1, 1))
    return fb
