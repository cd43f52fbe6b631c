"""The terrain renderer: owns program, buffers and textures; clear -> state -> uniforms -> draw.

- Camera-relative: each tile's float64 centre minus the float64 camera position becomes a
  float32 offset, so vertices never hold large numbers (no jitter 10,000 km out).
- Logarithmic depth (gl_FragDepth = log2(1 + w) / log2(far + 1)) keeps 0.5 m to 10,000 km
  in one 24-bit depth buffer; ``read_depth_m`` inverts it to metres along the view axis.
- Sun + sky lighting and aerial perspective (exponential haze toward the horizon colour).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import moderngl
import numpy as np

from runtime.surface import Surface
from runtime.tiles import TileKey

TERRAIN_VS = """
#version 330
uniform mat4 u_viewproj;      // projection * camera-relative rotation
uniform vec3 u_offset;        // tile centre - camera position (metres)
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_rel;
out vec3 v_normal;
out vec2 v_uv;
out float v_logz;
void main() {
    vec3 rel = in_pos + u_offset;
    v_rel = rel;
    v_normal = in_normal;
    v_uv = in_uv;
    gl_Position = u_viewproj * vec4(rel, 1.0);
    v_logz = 1.0 + gl_Position.w;
}
"""

TERRAIN_FS = """
#version 330
uniform sampler2D u_tex;
uniform bool u_has_tex;
uniform vec3 u_sun;           // unit vector toward the sun
uniform vec3 u_up;            // local up at the camera
uniform vec3 u_horizon;
uniform vec3 u_zenith;
uniform float u_haze_m;       // e-folding distance of aerial perspective
uniform float u_logdepth;     // 1 / log2(far + 1)
in vec3 v_rel;
in vec3 v_normal;
in vec2 v_uv;
in float v_logz;
out vec4 f_color;
void main() {
    vec3 n = normalize(v_normal);
    vec3 albedo = u_has_tex ? texture(u_tex, v_uv).rgb : vec3(0.45, 0.42, 0.36);
    float diffuse = max(dot(n, u_sun), 0.0);
    float sky = 0.5 + 0.5 * dot(n, u_up);
    vec3 lit = albedo * (0.95 * diffuse + 0.35 * sky * u_zenith + 0.08);
    float dist = length(v_rel);
    float haze = 1.0 - exp(-dist / u_haze_m);
    f_color = vec4(mix(lit, u_horizon, clamp(haze, 0.0, 1.0)), 1.0);
    gl_FragDepth = log2(v_logz) * u_logdepth;
}
"""

SKY_VS = """
#version 330
in vec2 in_ndc;
out vec2 v_ndc;
void main() { v_ndc = in_ndc; gl_Position = vec4(in_ndc, 0.0, 1.0); }
"""

SKY_FS = """
#version 330
uniform mat4 u_inv_viewproj;
uniform vec3 u_up;
uniform vec3 u_sun;
uniform vec3 u_horizon;
uniform vec3 u_zenith;
in vec2 v_ndc;
out vec4 f_color;
void main() {
    vec4 p = u_inv_viewproj * vec4(v_ndc, 1.0, 1.0);
    vec3 dir = normalize(p.xyz / p.w);
    float e = dot(dir, u_up);
    vec3 c = mix(u_horizon, u_zenith, pow(clamp(e, 0.0, 1.0), 0.45));
    c = e < 0.0 ? u_horizon * 0.85 : c;
    c += vec3(1.0, 0.9, 0.7) * pow(max(dot(dir, u_sun), 0.0), 256.0);
    f_color = vec4(c, 1.0);
}
"""


@dataclass(frozen=True)
class Lighting:
    sun_dir: tuple[float, float, float] | None = None  # world-frame; None: from azimuth/elevation
    sun_azimuth_deg: float = 135.0
    sun_elevation_deg: float = 35.0
    horizon_rgb: tuple[float, float, float] = (0.74, 0.82, 0.92)
    zenith_rgb: tuple[float, float, float] = (0.26, 0.47, 0.80)
    haze_m: float = 120_000.0


class _GpuTile:
    __slots__ = ("vao", "buffers", "texture", "center_m", "nbytes")


class TerrainRenderer:
    """Draws tiles for a camera into an offscreen framebuffer (or the window's)."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], lighting: Lighting = Lighting(),
                 offscreen: bool = True):
        self.ctx = ctx
        self.size = tuple(size)
        self.lighting = lighting
        self.terrain = ctx.program(vertex_shader=TERRAIN_VS, fragment_shader=TERRAIN_FS)
        self.sky = ctx.program(vertex_shader=SKY_VS, fragment_shader=SKY_FS)
        quad = np.array([-1, -1, 3, -1, -1, 3], np.float32)
        self._sky_vbo = ctx.buffer(quad.tobytes())
        self._sky_vao = ctx.vertex_array(self.sky, [(self._sky_vbo, "2f", "in_ndc")])
        self.tiles: dict[TileKey, _GpuTile] = {}
        self.gpu_bytes = 0
        if offscreen:
            self._color = ctx.renderbuffer(self.size, components=4)
            self._depth = ctx.depth_texture(self.size)
            self.fbo = ctx.framebuffer([self._color], self._depth)
        else:
            self.fbo = ctx.screen
        self.far_m = 2.0e7
        self.last_camera = None
        self.triangles_drawn = 0

    # -- resources -------------------------------------------------------------------------
    def upload(self, surface: Surface, image: np.ndarray | None) -> int:
        """Upload one tile (replacing any previous version); returns its GPU bytes.

        image: (H, W, 3) uint8, row 0 = north edge of the tile, or None.
        """
        self.release(surface.key)
        ctx = self.ctx
        interleaved = np.concatenate([surface.vertices, surface.normals, surface.uv], axis=1)
        vbo = ctx.buffer(np.ascontiguousarray(interleaved, np.float32).tobytes())
        ibo = ctx.buffer(np.ascontiguousarray(surface.faces, np.uint32).tobytes())
        vao = ctx.vertex_array(self.terrain, [(vbo, "3f 3f 2f", "in_pos", "in_normal", "in_uv")],
                               index_buffer=ibo, index_element_size=4)
        t = _GpuTile()
        t.vao, t.buffers, t.center_m = vao, (vbo, ibo), surface.center_m
        t.nbytes = vbo.size + ibo.size
        t.texture = None
        if image is not None:
            img = np.ascontiguousarray(image, np.uint8)
            tex = ctx.texture((img.shape[1], img.shape[0]), 3, img.tobytes(), alignment=1)
            tex.repeat_x = tex.repeat_y = False
            tex.build_mipmaps()
            tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            t.texture = tex
            t.nbytes += int(img.nbytes * 4 // 3)
        self.tiles[surface.key] = t
        self.gpu_bytes += t.nbytes
        return t.nbytes

    def release(self, key: TileKey) -> None:
        t = self.tiles.pop(key, None)
        if t is None:
            return
        t.vao.release()
        for b in t.buffers:
            b.release()
        if t.texture is not None:
            t.texture.release()
        self.gpu_bytes -= t.nbytes

    def close(self) -> None:
        for key in list(self.tiles):
            self.release(key)

    # -- drawing ---------------------------------------------------------------------------
    def render(self, camera, draw: Sequence[TileKey], up: np.ndarray) -> None:
        """Render ``draw`` (keys already uploaded) seen by ``camera`` (runtime.camera.Camera).

        up: (3,) unit local up at the camera (world frame), for sky and lighting.
        """
        ctx, L = self.ctx, self.lighting
        self.fbo.use()
        ctx.viewport = (0, 0, *self.size)
        ctx.disable(moderngl.CULL_FACE)
        vp = (camera.projection() @ camera.view_rotation()).astype(np.float64)
        vp32 = vp.T.astype(np.float32).tobytes()  # GL wants column-major
        up = np.asarray(up, np.float64)
        sun = self._sun(up)

        ctx.disable(moderngl.DEPTH_TEST)
        self.fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        self.sky["u_inv_viewproj"].write(np.linalg.inv(vp).T.astype(np.float32).tobytes())
        for prog in (self.sky, self.terrain):
            prog["u_up"].value = tuple(up.astype(np.float32))
            prog["u_sun"].value = tuple(sun.astype(np.float32))
            prog["u_horizon"].value = L.horizon_rgb
            prog["u_zenith"].value = L.zenith_rgb
        self._sky_vao.render(moderngl.TRIANGLES)

        ctx.enable(moderngl.DEPTH_TEST)
        ctx.depth_func = "<"
        self.terrain["u_viewproj"].write(vp32)
        self.terrain["u_haze_m"].value = L.haze_m
        self.terrain["u_logdepth"].value = 1.0 / math.log2(self.far_m + 1.0)
        cam = np.asarray(camera.position_m, np.float64)
        tris = 0
        for key in draw:
            t = self.tiles.get(key)
            if t is None:
                continue
            self.terrain["u_offset"].value = tuple((t.center_m - cam).astype(np.float32))
            self.terrain["u_has_tex"].value = t.texture is not None
            if t.texture is not None:
                t.texture.use(0)
                self.terrain["u_tex"].value = 0
            t.vao.render(moderngl.TRIANGLES)
            tris += t.vao.vertices // 3
        self.triangles_drawn = tris
        self.last_camera = camera

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
        data = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(self.size[1], self.size[0], 3)[::-1].copy()

    def read_depth_m(self) -> np.ndarray:
        """(H, W) float32 distance along the view axis in metres; inf where sky."""
        d = np.frombuffer(self._depth.read(alignment=1), np.float32).reshape(self.size[1], self.size[0])[::-1]
        w = np.exp2(d.astype(np.float64) * math.log2(self.far_m + 1.0)) - 1.0
        return np.where(d >= 1.0, np.inf, w).astype(np.float32)
