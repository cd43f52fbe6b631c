"""Free-flight controls and start picking (pure)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import full_grid_tin

from runtime.tiles import METRES_PER_DEGREE, T, TileKey, World, spacing_m
from viewer.controls import ORBITAL_MPS, SPEEDS_MPS, WALK_MPS, FlyController, InputState, KeyEvents
from viewer.paths import Pose, pick_start


def _ctl(world=World.PLANE, **kw):
    return FlyController(world, Pose(1000.0, 2000.0, 500.0, "msl", 90.0, 0.0), **kw)


def test_speeds_span_walking_to_orbital_and_scroll_steps_through_them():
    assert SPEEDS_MPS[0] == pytest.approx(WALK_MPS) and SPEEDS_MPS[-1] > ORBITAL_MPS
    c = _ctl(speed_index=0)
    c.update(0.1, InputState(scroll=3), None)
    assert c.speed_mps == pytest.approx(SPEEDS_MPS[3])
    c.update(0.1, InputState(scroll=100), None)
    assert c.speed_mps == SPEEDS_MPS[-1]
    c.update(0.1, InputState(scroll=-1000), None)
    assert c.speed_mps == SPEEDS_MPS[0]


def test_forward_flies_along_heading_and_shift_boosts():
    c = _ctl(speed_index=10)
    v = c.speed_mps
    p = c.update(2.0, InputState(keys=frozenset({"W"})), None)  # heading 90: east
    assert p.x == pytest.approx(1000.0 + 2.0 * v) and p.y == pytest.approx(2000.0) and p.alt_m == 500.0
    p = c.update(1.0, InputState(keys=frozenset({"W", "LEFT_SHIFT"})), None)
    assert p.x == pytest.approx(1000.0 + 12.0 * v)
    p = c.update(1.0, InputState(keys=frozenset({"D"})), None)  # strafe right of east: south
    assert p.y == pytest.approx(2000.0 - v)
    p = c.update(1.0, InputState(keys=frozenset({"E"})), None)
    assert p.alt_m == pytest.approx(500.0 + v)


def test_mouse_look_turns_and_clamps_pitch():
    c = _ctl()
    p = c.update(0.0, InputState(mouse_dx_px=100, mouse_dy_px=-100), None)
    assert p.heading_deg == pytest.approx(90.0 + 12.0) and p.pitch_deg == pytest.approx(12.0)
    p = c.update(0.0, InputState(mouse_dy_px=-10_000), None)
    assert p.pitch_deg == 89.0


def test_terrain_following_keeps_the_set_height_above_ground_and_never_goes_below_it():
    c = _ctl()
    c.update(0.0, InputState(pressed=frozenset({"F"})), ground_m=120.0)
    assert c.follow and c.agl_m == pytest.approx(380.0) and c.pose.alt_mode == "agl"
    p = c.update(1.0, InputState(keys=frozenset({"W"})), ground_m=900.0)
    assert p.alt_mode == "agl" and p.alt_m == pytest.approx(380.0)
    c.update(0.0, InputState(pressed=frozenset({"F"})), ground_m=900.0)
    assert not c.follow and c.pose.alt_m == pytest.approx(1280.0)
    p = c.update(10.0, InputState(keys=frozenset({"Q"})), ground_m=1270.0)  # sink into the ground: stop at eye height
    assert p.alt_m == pytest.approx(1270.0 + c.options.min_agl_m)


def test_teleport_plane_and_earth():
    c = _ctl()
    c.teleport(-5.0e6, 3.0e6, 300.0, "agl")
    assert (c.pose.x, c.pose.y, c.pose.alt_m, c.follow) == (-5.0e6, 3.0e6, 300.0, True)
    e = _ctl(World.EARTH)
    e.teleport(7.75, 45.95, 4000.0)
    assert (e.pose.x, e.pose.y, e.pose.alt_mode, e.follow) == (7.75, 45.95, "msl", False)
    with pytest.raises(ValueError, match="lat"):
        e.teleport(7.0, 95.0, 10.0)
    with pytest.raises(ValueError, match="alt_mode"):
        e.teleport(7.0, 45.0, 10.0, "agl2")
    # Earth motion is in degrees: 1 s north at v m/s moves v / METRES_PER_DEGREE degrees of latitude.
    e.pose = Pose(7.75, 45.95, 4000.0, "msl", 0.0, 0.0)
    p = e.update(1.0, InputState(keys=frozenset({"W"})), None)
    assert p.y - 45.95 == pytest.approx(e.speed_mps / METRES_PER_DEGREE) and p.x == pytest.approx(7.75)
    assert math.isclose(p.alt_m, 4000.0)


def test_pick_start_prefers_relief_on_snow_free_land():
    key = TileKey(3, 0, 0)
    grid_rc, faces, _ = full_grid_tin(8)
    r, c = grid_rc[:, 0], grid_rc[:, 1]
    # Two bumps: the taller (NW) is snow-covered in the colour image, the other (SE) is green.
    h = 4000.0 * np.exp(-((r - 40) ** 2 + (c - 40) ** 2) / 50.0)
    h = h + 1500.0 * np.exp(-((r - 200) ** 2 + (c - 200) ** 2) / 50.0)
    h = h + 100.0
    tile = SimpleNamespace(grid_rc=grid_rc, height_m=h, faces=faces)
    img = np.zeros((T, T, 3), np.uint8)
    img[..., 1] = 120
    img[20:60, 20:60] = 250  # snow on the tall bump
    x, y, relief, heading = pick_start(World.PLANE, {key: tile}, {key: img})
    assert 0.0 <= heading < 360.0
    s = spacing_m(3)
    assert relief > 1000.0
    assert abs(x / s - 200) < 8 and abs(-y / s - 200) < 8  # the green bump, not the snowy one
    x2, y2, _, _ = pick_start(World.PLANE, {key: tile})  # without colour: the most relief
    assert abs(x2 / s - 40) < 8 and abs(-y2 / s - 40) < 8


def test_pick_start_heads_toward_the_windows_peak():
    key = TileKey(3, 0, 0)
    grid_rc, faces, _ = full_grid_tin(1)
    r, c = grid_rc[:, 0], grid_rc[:, 1]
    # A slope rising to the east inside every window: the peak is on each window's east edge.
    h = 100.0 + 50.0 * (c % 8) + 1.0 * (r % 8 == 4)  # one peak per window: row 4, east edge
    tile = SimpleNamespace(grid_rc=grid_rc, height_m=h, faces=faces)
    _, _, relief, heading = pick_start(World.PLANE, {key: tile})
    assert relief == pytest.approx(351.0)
    assert 60.0 < heading < 120.0  # roughly east


def test_key_taps_shorter_than_a_frame_are_seen():
    k = KeyEvents(("W", "F", "ESCAPE"))
    k.event("F", True)
    k.event("F", False)  # pressed and released between two frames
    k.event("X", True)   # not a key of ours: ignored
    held, pressed = k.frame()
    assert pressed == {"F"} and held == {"F"}  # seen once
    assert k.frame() == (frozenset(), frozenset())  # and only once
    k.event("W", True)
    k.event("W", True)  # a repeat is no new press
    assert k.frame() == ({"W"}, {"W"}) and k.frame() == ({"W"}, frozenset())
    k.event("W", False)
    assert k.frame() == (frozenset(), frozenset())
    k.event("ESCAPE", True)
    k.event("ESCAPE", False)
    assert k.seen("ESCAPE") and not k.seen("ESCAPE")  # a tap of Esc latches until asked once
