"""A heads-up display drawn in GL: a bitmap font baked with Pillow into one texture.

Printable ASCII (32..126) is rasterised once into a grid of fixed cells (Pillow's default
font); each line of text becomes textured quads in pixel coordinates over a translucent
panel. ``hud_lines`` formats the flight numbers the issue asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np

HUD_VS = """
#version 330
uniform vec2 u_screen;
in vec2 in_px;
in vec2 in_uv;
out vec2 v_uv;
void main() {
    v_uv = in_uv;
    gl_Position = vec4(in_px.x / u_screen.x * 2.0 - 1.0, 1.0 - in_px.y / u_screen.y * 2.0, 0.0, 1.0);
}
"""

HUD_FS = """
#version 330
uniform sampler2D u_font;
uniform vec4 u_color;
uniform bool u_solid;
in vec2 v_uv;
out vec4 f_color;
void main() {
    float a = u_solid ? 1.0 : texture(u_font, v_uv).r;
    f_color = vec4(u_color.rgb, u_color.a * a);
}
"""

FIRST, LAST = 32, 126


def bake_font(size_px: int = 13) -> tuple[np.ndarray, int, int, np.ndarray]:
    """(atlas (H, W) uint8 coverage, cell width, cell height, advances (95,) float32 px):
    glyph i of ``FIRST + i`` in row-major cells of 16 columns."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    chars = [chr(c) for c in range(FIRST, LAST + 1)]
    boxes = [font.getbbox(ch) for ch in chars]
    cw = max(b[2] for b in boxes) + 1
    ch = max(b[3] for b in boxes) + 2
    cols, rows = 16, (len(chars) + 15) // 16
    img = Image.new("L", (cols * cw, rows * ch), 0)
    draw = ImageDraw.Draw(img)
    for i, c in enumerate(chars):
        draw.text(((i % cols) * cw, (i // cols) * ch), c, fill=255, font=font)
    adv = np.array([font.getlength(c) if hasattr(font, "getlength") else font.getbbox(c)[2] for c in chars],
                   np.float32)
    return np.asarray(img, np.uint8), cw, ch, np.ceil(adv)


@dataclass(frozen=True)
class HudStats:
    fps: float
    frame_ms: float
    tiles_drawn: int
    tiles_loading: int
    triangles: int
    level_under_camera: int | None
    altitude_m: float
    agl_m: float | None
    position: str
    speed_mps: float | None = None
    gpu_mib: float | None = None
    heading_deg: float | None = None     # clockwise from north
    pitch_deg: float | None = None       # up positive
    following_agl_m: float | None = None  # terrain following at this height above ground; None: off


def hud_lines(s: HudStats) -> list[str]:
    """The HUD's text: frame rate, tiles, level, altitude/AGL, position, then (when known)
    heading, pitch and terrain following ("follow 300 m AGL" or "follow off"), speed, GPU."""
    agl = "--" if s.agl_m is None else f"{s.agl_m:,.0f} m"
    lvl = "--" if s.level_under_camera is None else str(s.level_under_camera)
    lines = [
        f"{s.fps:6.1f} fps  {s.frame_ms:6.2f} ms/frame",
        f"tiles {s.tiles_drawn} drawn, {s.tiles_loading} loading   {s.triangles:,} triangles",
        f"level under camera {lvl}",
        f"altitude {s.altitude_m:,.0f} m   AGL {agl}",
        f"position {s.position}",
    ]
    if s.heading_deg is not None or s.pitch_deg is not None:
        parts = []
        if s.heading_deg is not None:
            parts.append(f"heading {s.heading_deg % 360.0:05.1f} deg")
        if s.pitch_deg is not None:
            parts.append(f"pitch {s.pitch_deg:+05.1f} deg")
        follow = "off" if s.following_agl_m is None else f"{s.following_agl_m:,.0f} m AGL"
        parts.append(f"follow {follow}")
        lines.append("   ".join(parts))
    if s.speed_mps is not None or s.gpu_mib is not None:
        parts = []
        if s.speed_mps is not None:
            parts.append(f"speed {s.speed_mps:,.1f} m/s")
        if s.gpu_mib is not None:
            parts.append(f"GPU {s.gpu_mib:,.1f} MiB")
        lines.append("   ".join(parts))
    return lines


class Hud:
    """Draws lines of text at the top-left of the bound framebuffer."""

    def __init__(self, ctx: moderngl.Context, size_px: int = 13):
        self.ctx = ctx
        atlas, self.cw, self.ch, self.advance = bake_font(size_px)
        self.atlas_size = (atlas.shape[1], atlas.shape[0])
        self.texture = ctx.texture(self.atlas_size, 1, np.ascontiguousarray(atlas).tobytes(), alignment=1)
        self.texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.program = ctx.program(vertex_shader=HUD_VS, fragment_shader=HUD_FS)
        self.vbo = ctx.buffer(reserve=4096 * 6 * 16)
        self.vao = ctx.vertex_array(self.program, [(self.vbo, "2f 2f", "in_px", "in_uv")])

    def quads(self, lines: list[str], origin_px=(8.0, 8.0)) -> tuple[np.ndarray, np.ndarray]:
        """(panel (6, 4), glyphs (6 * n, 4)) float32 vertices [x_px, y_px, u, v]."""
        W, H = self.atlas_size
        x0, y0 = origin_px
        verts = []
        width = 0.0
        for li, line in enumerate(lines):
            x = x0
            for ch in line:
                code = ord(ch)
                if not FIRST <= code <= LAST:
                    code = ord("?")
                g = code - FIRST
                u0, v0 = (g % 16) * self.cw / W, (g // 16) * self.ch / H
                u1, v1 = u0 + self.cw / W, v0 + self.ch / H
                y = y0 + li * self.ch
                a, b = x + self.cw, y + self.ch
                if code != 32:
                    verts += [(x, y, u0, v0), (a, y, u1, v0), (x, b, u0, v1),
                              (a, y, u1, v0), (a, b, u1, v1), (x, b, u0, v1)]
                x += float(self.advance[g])
            width = max(width, x - x0)
        w = width + 8
        h = len(lines) * self.ch + 8
        px, py = x0 - 4, y0 - 4
        panel = np.array([(px, py, 0, 0), (px + w, py, 0, 0), (px, py + h, 0, 0),
                          (px + w, py, 0, 0), (px + w, py + h, 0, 0), (px, py + h, 0, 0)], np.float32)
        return panel, np.array(verts, np.float32).reshape(-1, 4)

    def draw(self, lines: list[str], viewport_px: tuple[int, int]) -> None:
        ctx, prog = self.ctx, self.program
        panel, glyphs = self.quads(lines)
        data = np.concatenate([panel, glyphs])[: self.vbo.size // 16]
        self.vbo.write(data.tobytes())
        ctx.disable(moderngl.DEPTH_TEST)
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        prog["u_screen"].value = (float(viewport_px[0]), float(viewport_px[1]))
        prog["u_font"].value = 0
        self.texture.use(0)
        prog["u_solid"].value = True
        prog["u_color"].value = (0.0, 0.0, 0.0, 0.45)
        self.vao.render(moderngl.TRIANGLES, vertices=6)
        prog["u_solid"].value = False
        prog["u_color"].value = (1.0, 1.0, 1.0, 1.0)
        self.vao.render(moderngl.TRIANGLES, vertices=len(data) - 6, first=6)
        ctx.disable(moderngl.BLEND)

    def release(self) -> None:
        for obj in (self.vao, self.vbo, self.program, self.texture):
            obj.release()
