"""The HUD: its text lines and their pixels over a rendered frame (EGL)."""

import numpy as np
from conftest import down_camera

from runtime.tiles import TileKey
from viewer.hud import Hud, HudStats, hud_lines
from viewer.renderer import TerrainRenderer

KEY = TileKey(10, 0, 0)


def test_hud_draws_text_over_a_panel(gl_ctx):
    r = TerrainRenderer(gl_ctx, (320, 120))
    r.render(down_camera(KEY, 1000.0, (320, 120)), [], np.array([0.0, 0.0, 1.0]))
    sky = r.read_rgb().astype(int)
    lines = hud_lines(HudStats(fps=61.5, frame_ms=16.3, tiles_drawn=12, tiles_loading=3, triangles=123456,
                               level_under_camera=14, altitude_m=1234.0, agl_m=300.0, position="x 1.0 m  y 2.0 m"))
    assert "61.5 fps" in lines[0] and "3 loading" in lines[1] and "14" in lines[2] and "AGL 300 m" in lines[3]
    hud = Hud(gl_ctx)
    r.fbo.use()
    hud.draw(lines, (320, 120))
    img = r.read_rgb().astype(int)
    assert gl_ctx.error == "GL_NO_ERROR"
    panel = img[6:60, 6:150]
    assert (panel.sum(2) > 600).mean() > 0.03  # white glyphs
    assert (panel.sum(2) < sky[6:60, 6:150].sum(2) - 60).mean() > 0.3  # darkened panel
    bottom = int(hud.quads(lines)[0][:, 1].max()) + 1
    assert np.array_equal(img[bottom:], sky[bottom:])  # below the panel untouched
    hud.release()
    r.close()


def test_hud_shows_heading_pitch_and_terrain_following():
    base = dict(fps=30.0, frame_ms=5.0, tiles_drawn=1, tiles_loading=0, triangles=10, level_under_camera=None,
                altitude_m=500.0, agl_m=None, position="p")
    on = hud_lines(HudStats(**base, heading_deg=-30.0, pitch_deg=-12.5, following_agl_m=300.0))
    assert on[-1] == "heading 330.0 deg   pitch -12.5 deg   follow 300 m AGL"
    off = hud_lines(HudStats(**base, heading_deg=90.0, pitch_deg=5.0))
    assert off[-1] == "heading 090.0 deg   pitch +05.0 deg   follow off"
    assert not any("heading" in x for x in hud_lines(HudStats(**base)))  # not known: not shown
