"""Scenario tests for LOD selection, one per rule of DESIGN.md section 3 / issue 3.

Small trees on the plane: R = root TileKey(0, 0, 0) (20,037 km square), its children
NW, NE, SW, SE (level 1). A camera straight above R's centre sees only R; R's centre is
the corner shared by all four children, so all four are visible when R refines.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.geometry import east_north_up, geodetic_to_ecef, geometry_for
from runtime.lod.camera import Camera
from runtime.lod.selection import (
    PINNED_PRIORITY,
    SPECULATIVE_PENALTY,
    Band,
    SelectionOptions,
    TileInfo,
    View,
    select,
)
from runtime.tiles import T, TileKey, level_error_m, spacing_m

PLANE, EARTH = geometry_for("plane"), geometry_for("earth")
W0 = spacing_m(0) * T
CENTRE = np.array([W0 / 2, -W0 / 2, 0.0])
R = TileKey(0, 0, 0)
NW, NE, SW, SE = R.children()
SMALL = SelectionOptions(max_level=1, prefetch_fov_scale=1.0, prefetch_s=0.0)


def down_camera(height_m, at=CENTRE, **kw):
    return Camera(at + [0, 0, height_m], [0, 0, -1], [0, 1, 0], viewport_px=(720, 720), **kw)


def info(level, hmin=0.0, hmax=100.0):
    return TileInfo(hmin, hmax, level_error_m(level))


def known_for(keys, hmin=0.0, hmax=100.0):
    return {k: info(k.level, hmin, hmax) for k in keys}


def test_error_target_decides_refinement():
    # sse(R) = 19,568 m * 623.5 px / distance; target 2 px -> refine closer than 6,100 km.
    #   1,000 km up:  R -> NW NE SW SE  (sse 12.2 px)
    #   8,000 km up:  R                 (sse 1.5 px)
    known = known_for([R, NW, NE, SW, SE])
    near = select(down_camera(1.0e6), PLANE, known, set(known), options=SMALL)
    far = select(down_camera(8.0e6), PLANE, known, set(known), options=SMALL)
    assert near.ideal == {NW, NE, SW, SE} and sorted(near.draw) == sorted([NW, NE, SW, SE])
    assert far.ideal == {R} and far.draw == (R,)
    assert far.max_sse_px == pytest.approx(level_error_m(0) * 623.5 / (8.0e6 - 100), rel=1e-3)
    # A looser target keeps R even from 1,000 km.
    loose = select(down_camera(1.0e6), PLANE, known, set(known), options=SelectionOptions(
        max_level=1, prefetch_fov_scale=1.0, prefetch_s=0.0, error_target_px=20.0))
    assert loose.draw == (R,)


def test_never_a_hole_best_ready_ancestor_is_drawn():
    #   R (ready)            R is drawn: SE is missing, so R can not be replaced yet
    #   ├ NW NE SW (ready)
    #   └ SE (loading)
    known = known_for([R, NW, NE, SW])
    sel = select(down_camera(1.0e6), PLANE, known, {R, NW, NE, SW}, options=SMALL)
    assert sel.draw == (R,) and sel.holes == () and sel.over_error == (R,)
    assert [r.key for r in sel.load if r.key.level == 1] == [SE]
    assert not sel.complete
    # Nothing ready at all: a hole is reported (only before the roots arrive).
    empty = select(down_camera(1.0e6), PLANE, {}, set(), options=SMALL)
    assert empty.draw == () and empty.holes == (R,)
    # Children ready but R not: the children are drawn (complete cover without R).
    kids = select(down_camera(1.0e6), PLANE, known_for([NW, NE, SW, SE]), {NW, NE, SW, SE}, options=SMALL)
    assert sorted(kids.draw) == sorted([NW, NE, SW, SE]) and kids.complete


def test_no_overlap_and_no_gap_in_a_deeper_tree():
    # A camera low over R's centre with max_level 4: whatever is ready, the drawn tiles
    # never overlap (no key is an ancestor of another) and cover every ideal tile.
    opts = SelectionOptions(max_level=4, prefetch_fov_scale=1.0, prefetch_s=0.0)
    cam = down_camera(2.0e5)
    full = select(cam, PLANE, {}, set(), options=opts)
    walked = [r.key for r in full.load]
    rng = np.random.default_rng(3)
    for _ in range(20):
        ready = {k for k in walked if k.level == 0 or rng.random() < 0.6}
        sel = select(cam, PLANE, known_for(ready), ready, options=opts)
        check_cover(sel, ready)


def test_drawn_detail_is_not_swapped_for_an_unloaded_ancestor():
    # Frame 1 (1,000 km up):  R -> [NW NE SW SE] drawn
    # Frame 2 (8,000 km up):  ideal is R, but R is not ready -> keep drawing the children
    # Frame 3: R arrives    -> draw R
    kids = [NW, NE, SW, SE]
    known = known_for(kids)
    f1 = select(down_camera(1.0e6), PLANE, known, set(kids), options=SMALL)
    assert sorted(f1.draw) == sorted(kids)
    f2 = select(down_camera(8.0e6), PLANE, known, set(kids), drawn_last=set(f1.draw), options=SMALL)
    assert sorted(f2.draw) == sorted(kids) and f2.holes == ()
    assert R in [r.key for r in f2.load]
    # Without last frame's drawing the same state has a hole (nothing ties the children in).
    cold = select(down_camera(8.0e6), PLANE, known, set(kids), options=SMALL)
    assert cold.holes == (R,)
    f3 = select(down_camera(8.0e6), PLANE, known_for(kids + [R]), set(kids) | {R}, drawn_last=set(f2.draw),
                options=SMALL)
    assert f3.draw == (R,)


def test_box_direction_is_the_angle_to_the_nearest_point():
    # A camera 500 m above the ground looking east and slightly down: the level-5 tile it is
    # over holds it (0, though the tile's centre may lie behind); a small tile ahead is ~0
    # off; the same tile behind ~2 (1 - cos 180 deg, less its drop); one straight below ~1.
    from runtime.lod.selection import _as_views, _Frame

    pos = CENTRE + [1234.0, -5678.0, 500.0]
    fwd = np.array([math.cos(0.2), 0.0, -math.sin(0.2)])
    cam = Camera(pos, fwd, [0, 0, 1], viewport_px=(720, 720))
    frame = _Frame(PLANE, _as_views(View(cam)), SelectionOptions())
    over = PLANE.key_at(5, pos)
    lv = 16
    here = PLANE.key_at(lv, pos)
    ahead = TileKey(lv, here.x + 6, here.y)
    behind = TileKey(lv, here.x - 6, here.y)
    packed = PLANE.packed_tile_bounds([(over, 0.0, 1000.0), (ahead, 0.0, 10.0), (behind, 0.0, 10.0),
                                       (here, 0.0, 10.0)])
    d = frame.box_direction(packed)
    assert d[0] == 0.0
    assert d[1] < 0.1 and d[2] > 1.5 and 0.7 < d[3] < 1.3


def test_ancestors_load_first():
    # Nothing known: every requested tile comes after all of its requested ancestors.
    #   R -> NW.. -> level 2 -> ... -> level 6 (under the camera)
    opts = SelectionOptions(max_level=6, prefetch_fov_scale=1.0, prefetch_s=0.0)
    sel = select(down_camera(3.0e5), PLANE, {}, set(), options=opts)
    order = {r.key: i for i, r in enumerate(sel.load)}
    assert sel.load[0].key == R
    for key, i in order.items():
        for lv in range(key.level):
            a = key.ancestor(lv)
            if a in order:
                assert order[a] < i, (a, key)
    # Once R is ready its children block refinement (steps 0) and come before grandchildren.
    sel2 = select(down_camera(3.0e5), PLANE, known_for([R]), {R}, options=opts)
    steps = {r.key: r.steps for r in sel2.load}
    assert all(steps[c] == 0 for c in R.children() if c in steps)
    assert max(steps.values()) > 0
    # Tiles whose parent is not known yet (speculative) load after every covered wanted tile
    # whose parent is known, and before pinned roots and prefetch; the drawn column under the
    # camera (the deepest chain of the view: each level waits for the one above) is no guess:
    # it loads between the two, ancestors first.
    column = {PLANE.key_at(lv, CENTRE) for lv in range(7)}
    wanted = [r for r in sel2.load if r.band == Band.WANTED and r.priority < PINNED_PRIORITY]
    sure = [r.priority for r in wanted if r.key.level == 1]
    guess = [r.priority for r in wanted if r.key.level >= 2 and r.key not in column]
    chain = [(r.key.level, r.priority) for r in wanted if r.key.level >= 2 and r.key in column]
    assert sure and guess and min(guess) - max(sure) > SPECULATIVE_PENALTY
    assert max(sure) < min(guess) < PINNED_PRIORITY
    assert [lv for lv, _ in chain] == list(range(2, 2 + len(chain))) and len(chain) >= 3
    assert max(sure) < min(p for _, p in chain) and max(p for _, p in chain) < min(guess)
    assert [p for _, p in chain] == sorted(p for _, p in chain)


def test_guesses_stop_a_few_levels_below_what_is_known():
    # 3 km above the plane looking ahead and down with only R known: the walk bounds the
    # unknown tiles by R's range grown by each level's error and refines to max_level near
    # the camera. Only speculative_levels levels of guesses below R's children are asked
    # for; the column under the camera goes deeper (the ground height is wanted at once).
    pos = CENTRE + [1234.0, -5678.0, 3000.0]
    cam = Camera.look_at(pos, pos + [1.0e4, 0.0, -3.0e3], [0, 0, 1])
    known = known_for([R], -100.0, 2000.0)
    column = {PLANE.key_at(lv, pos) for lv in range(21)}

    def loads(spec):
        opts = SelectionOptions(prefetch_fov_scale=1.0, prefetch_s=0.0, speculative_levels=spec)
        return select(cam, PLANE, known, {R}, options=opts)

    every = loads(None)
    assert max(r.key.level for r in every.load if r.key not in column) == 20
    for spec in (0, 2):
        sel = loads(spec)
        assert {r.key for r in sel.load} <= {r.key for r in every.load}
        off_column = [r.key for r in sel.load if r.key not in column]
        assert max(k.level for k in off_column) == spec + 1
        # Nothing the view needs is starved: every guess left out has an ancestor that is asked.
        asked = {r.key for r in sel.load}
        for r in every.load:
            if r.key not in asked:
                assert r.key.ancestor(spec + 1) in asked
        # The same tiles are drawn either way (only requests change).
        assert sel.draw == every.draw and sel.over_error == every.over_error
    assert column - {R} <= {r.key for r in loads(0).load}
    with pytest.raises(ValueError, match="speculative_levels"):
        SelectionOptions(speculative_levels=-1)


def test_holes_load_before_refinement():
    # Looking along the boundary of two roots from 9,000 km up (only R ready):
    #   R  (ready, refining: its children have high error)
    #   E = TileKey(0, 1, 0) (visible, not ready: a hole)
    # E loads before any child of R, however large their error.
    e = TileKey(0, 1, 0)
    cam = Camera(CENTRE + [W0 / 2, 0, 9.0e6], [0, 0, -1], [0, 1, 0], viewport_px=(1920, 1080))
    opts = SelectionOptions(max_level=3, prefetch_fov_scale=1.0, prefetch_s=0.0)
    sel = select(cam, PLANE, known_for([R]), {R}, options=opts)
    order = [r.key for r in sel.load]
    assert sel.holes == (e,)
    assert order[0] == e and {r.band for r in sel.load if r.key == e} == {Band.HOLE}
    kids = [r for r in sel.load if r.key.level == 1 and r.key.ancestor(0) == R]
    assert kids and all(r.band == Band.WANTED for r in kids)


def test_ground_under_a_camera_is_always_wanted():
    # Camera 1 km above the ground looking straight up at the sky: nothing is visible,
    # but the column of tiles under it is still walked and requested, down to the level
    # the camera's height needs.
    pos = CENTRE + [1234.0, -5678.0, 1000.0]
    cam = Camera(pos, [0, 0, 1], [0, 1, 0], viewport_px=(1920, 1080))
    opts = SelectionOptions(max_level=8, prefetch_fov_scale=1.0, prefetch_s=0.0)
    sel = select(cam, PLANE, {}, set(), options=opts)
    column = [PLANE.key_at(lv, pos) for lv in range(9)]
    loads = {r.key: r for r in sel.load}
    for k in column:
        assert k in loads and loads[k].band == Band.HOLE  # nothing ready above them yet
    assert sel.draw == () and sel.under_camera == (column[-1],)
    # With heights known (ground 0..100 m) the column stops where the error from 900 m
    # falls under 2 px: ge_L * 935 / 900 <= 2 -> spacing <= 7.7 m -> level 14 (4.8 m).
    class AllKnown(dict):
        def get(self, k, d=None):
            return info(k.level)

        def __contains__(self, k):
            return True

    deep = select(cam, PLANE, AllKnown(), set(), options=SelectionOptions(prefetch_fov_scale=1.0))
    ge = [level_error_m(lv) * cam.sse_px(1.0, 900.0) for lv in range(21)]
    expect = next(lv for lv in range(21) if ge[lv] <= 2.0)
    assert deep.under_camera[0].level == expect == 14


def test_several_cameras_each_get_their_detail():
    # Two sensors 5,000 km apart, both 1 km up looking down: each one's ground column is
    # requested to max_level, and one selection serves both.
    a = CENTRE + [-2.5e6, 0, 1000.0]
    b = CENTRE + [2.5e6, 0, 1000.0]
    cams = [View(Camera(p, [0, 0, -1], [0, 1, 0])) for p in (a, b)]
    opts = SelectionOptions(max_level=7, prefetch_fov_scale=1.0, prefetch_s=0.0)
    sel = select(cams, PLANE, {}, set(), options=opts)
    keys = {r.key for r in sel.load}
    assert PLANE.key_at(7, a) in keys and PLANE.key_at(7, b) in keys
    assert len(sel.under_camera) == 2
    one = select(cams[:1], PLANE, {}, set(), options=opts)
    assert PLANE.key_at(7, b) not in {r.key for r in one.load}


def test_prefetch_along_the_velocity():
    # Moving east at 20 km/s with prefetch_s = 10: tiles 200 km ahead are requested in the
    # prefetch band (after everything wanted now), and not without the velocity.
    pos = CENTRE + [0, 0, 1000.0]
    cam = Camera(pos, [0, 0, -1], [0, 1, 0])
    opts = SelectionOptions(max_level=8, prefetch_s=10.0, prefetch_fov_scale=1.0, speculative_levels=None)
    ahead = PLANE.key_at(8, pos + [2.0e5, 0, 0])
    still = select(View(cam), PLANE, {}, set(), options=opts)
    moving = select(View(cam, np.array([2.0e4, 0, 0])), PLANE, {}, set(), options=opts)
    assert ahead not in {r.key for r in still.load}
    req = {r.key: r for r in moving.load}
    assert ahead in req and req[ahead].band == Band.PREFETCH
    last_wanted = max(i for i, r in enumerate(moving.load) if r.band != Band.PREFETCH)
    first_prefetch = min(i for i, r in enumerate(moving.load) if r.band == Band.PREFETCH)
    assert last_wanted < first_prefetch
    # Prefetched tiles are never drawn by the prefetch view alone.
    assert ahead not in moving.draw


def test_frustum_culling_uses_the_height_range_and_the_parents_while_unknown():
    # Camera 1 km up looking north, pitched up 45 deg: the frustum's lower edge is 15 deg
    # above the horizon. A tile 10 km north with ground 0..100 m is below it; the same
    # tile under a 5 km mountain reaches into it.
    pos = CENTRE + [0, 0, 1000.0]
    fwd = [0, math.cos(math.radians(45)), math.sin(math.radians(45))]
    cam = Camera(pos, fwd, [0, 0, 1], viewport_px=(1920, 1080))
    level = 12  # ~4.9 km tiles
    key = PLANE.key_at(level, pos + [0, 10_000.0, 0])
    low = PLANE.tile_bounds(key, 0.0, 100.0)
    high = PLANE.tile_bounds(key, 0.0, 5000.0)
    assert not low.intersects_frustum(cam.frustum_planes(), cam.position_m)
    assert high.intersects_frustum(cam.frustum_planes(), cam.position_m)
    # Unknown tile: its parent's range (grown by the parent's error) decides.
    parent = key.parent()
    opts = SelectionOptions(max_level=level, prefetch_fov_scale=1.0, prefetch_s=0.0, error_target_px=0.01)
    ancestors = [key.ancestor(lv) for lv in range(level)]

    def walked(hmax):
        known = known_for(ancestors, 0.0, hmax)
        sel = select(cam, PLANE, known, set(known), options=opts)
        return {r.key for r in sel.load} | set(sel.keep)

    assert parent in walked(5000.0) and key in walked(5000.0)
    assert key not in walked(100.0)


def test_earth_horizon_culling():
    # 1 km above the equator at lon 0 looking east along it: a level-8 tile 3 deg east
    # (333 km) is above the horizon; one 10 deg east (1,113 km) is hidden by the earth
    # even with 9 km mountains, though it is inside the frustum.
    pos = geodetic_to_ecef(0.0, 0.0, 1000.0)[0]
    cam = Camera(pos, [0, 1, 0], [1, 0, 0], viewport_px=(1920, 1080))
    opts = SelectionOptions(max_level=9, prefetch_fov_scale=1.0, prefetch_s=0.0)
    near_key = EARTH.key_at(8, geodetic_to_ecef(3.0, 0.2, 0.0)[0])
    far_key = EARTH.key_at(8, geodetic_to_ecef(10.0, 0.2, 0.0)[0])
    from runtime.geometry import horizon_visible
    for key, expect in ((near_key, True), (far_key, False)):
        b = EARTH.tile_bounds(key, -100.0, 9000.0)
        assert b.intersects_frustum(cam.frustum_planes(), pos)
        assert bool(horizon_visible(pos, b.horizon_point[None])[0]) is expect
    sel = select(cam, EARTH, {}, set(), options=opts)
    walked = {r.key for r in sel.load}
    assert far_key not in walked
    far = [k for k in walked if k.level >= 7
           and np.linalg.norm(EARTH.tile_center(k) - pos) > 1.2e6]
    assert far == []
    no_horizon = select(cam, EARTH, {}, set(), options=SelectionOptions(
        max_level=9, prefetch_fov_scale=1.0, prefetch_s=0.0, horizon_culling=False))
    assert len(no_horizon.load) > len(sel.load)


def test_per_tile_geometric_error_replaces_the_level_default():
    # R known with a tiny error (a flat tile): it no longer needs refining from 1,000 km.
    flat = {R: TileInfo(0.0, 100.0, 10.0)}
    sel = select(down_camera(1.0e6), PLANE, flat, {R}, options=SMALL)
    assert sel.draw == (R,) and sel.complete
    default = select(down_camera(1.0e6), PLANE, known_for([R]), {R}, options=SMALL)
    assert default.over_error == (R,)


def test_bad_views_say_what_was_expected():
    with pytest.raises(ValueError, match="at least one view"):
        select([], PLANE, {}, set())
    with pytest.raises(ValueError, match="error_target_px must be > 0"):
        SelectionOptions(error_target_px=0)


@st.composite
def scenes(draw):
    world = draw(st.sampled_from(["plane", "earth"]))
    height = draw(st.floats(50.0, 3.0e6))
    yaw = draw(st.floats(0, 2 * math.pi))
    pitch = draw(st.floats(-1.5, 0.5))
    seed = draw(st.integers(0, 2**31 - 1))
    p_ready = draw(st.floats(0.0, 1.0))
    return world, height, yaw, pitch, seed, p_ready


@settings(max_examples=40, deadline=None)
@given(scenes())
def test_property_draw_is_a_cover_without_overlaps(scene):
    # Any camera, any subset of ready tiles (roots ready): the drawn tiles are ready, never
    # overlap, cover every ideal tile, and there is no hole.
    world, height, yaw, pitch, seed, p_ready = scene
    geo = PLANE if world == "plane" else EARTH
    rng = np.random.default_rng(seed)
    if world == "plane":
        pos = np.array([rng.uniform(-3e7, 3e7), rng.uniform(-3e7, 3e7), height])
        frame = np.eye(3)
    else:
        lon, lat = rng.uniform(-180, 180), rng.uniform(-85, 85)
        pos = geodetic_to_ecef(lon, lat, height)[0]
        frame = east_north_up(lon, lat)
    cp = math.cos(pitch)
    fwd = np.array([math.cos(yaw) * cp, math.sin(yaw) * cp, math.sin(pitch)]) @ frame
    cam = Camera(pos, fwd, frame[2], viewport_px=(640, 360))
    opts = SelectionOptions(max_level=9, prefetch_fov_scale=1.0, prefetch_s=0.0)
    first = select(cam, geo, {}, set(), options=opts)
    roots = {r.key for r in first.load if r.key.level == 0}
    walked = {r.key for r in first.load}
    ready = roots | {k for k in walked if rng.random() < p_ready}
    sel = select(cam, geo, known_for(ready), ready, options=opts)
    check_cover(sel, ready)
    # Next frame zoomed out 4x with some coarse tiles missing: last frame's drawing may stay,
    # and the invariants still hold.
    up = geo.up(pos[None])[0]
    cam2 = Camera(pos + 3 * height * up, fwd, frame[2], viewport_px=(640, 360))
    ready2 = {k for k in ready if k.level == 0 or k in sel.draw or rng.random() < 0.5}
    sel2 = select(cam2, geo, known_for(ready2), ready2, drawn_last=set(sel.draw), options=opts)
    check_cover(sel2, ready2)
    # Last frame's tree as a speed hint changes nothing in the result.
    hinted = select(cam2, geo, known_for(ready2), ready2, drawn_last=set(sel.draw), options=opts,
                    expanded_last=sel.expanded)
    assert hinted.draw == sel2.draw and hinted.keep == sel2.keep
    assert sorted(r.key for r in hinted.load) == sorted(r.key for r in sel2.load)
    assert np.allclose([r.priority for r in hinted.load], [r.priority for r in sel2.load], rtol=1e-9)
    assert hinted.ideal == sel2.ideal and hinted.expanded == sel2.expanded


def check_cover(sel, ready):
    drawn = set(sel.draw)
    assert len(drawn) == len(sel.draw) and drawn <= ready and sel.holes == ()
    for k in drawn:
        assert not any(k.ancestor(lv) in drawn for lv in range(k.level)), k
    for leaf in sel.ideal:  # drawn itself, under a drawn ancestor, or tiled by drawn descendants
        if any(leaf.ancestor(lv) in drawn for lv in range(leaf.level + 1)):
            continue
        area = sum(4.0 ** (leaf.level - d.level) for d in drawn if d.level > leaf.level
                   and d.ancestor(leaf.level) == leaf)
        assert area == 1.0, leaf


def test_pinned_ring_beyond_the_roots_loads_after_the_view():
    # The plane pins one ring of level-0 tiles beyond the traversal roots (for the next
    # teleport); nothing in view needs them, so they load after every tile the view waits
    # for, and before prefetch.
    cam = down_camera(5.0e5, far_m=2.0e7)  # the renderer's far plane: 3 x 3 roots
    sel = select(View(cam), PLANE, {}, set(), options=SelectionOptions(max_level=3))
    ring = [r for r in sel.load if r.priority == PINNED_PRIORITY]
    others = [r for r in sel.load if r.priority != PINNED_PRIORITY]
    assert len(ring) == 16 and all(r.key.level == 0 and r.band == Band.WANTED for r in ring)
    assert len([r for r in others if r.key.level == 0]) == 9  # the traversal roots
    assert max(r.priority for r in others if r.band != Band.PREFETCH) < PINNED_PRIORITY
    assert PINNED_PRIORITY < 1000.0 * Band.PREFETCH  # every prefetch priority is above the band's floor
