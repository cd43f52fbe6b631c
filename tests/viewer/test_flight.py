"""The client tile pipeline: decoded tile -> client tile -> drawable surface (pure), and
Flight against a real in-process server (settle, morph targets, stitched edges, late
children). Also the runtime.tin pieces the pipeline composes (edge normals, rasterising)."""

import math
import time

import numpy as np
import pytest
from conftest import full_grid_tin, plane_surface

from runtime import wire
from runtime.tiles import T, TileKey, World, neighbour, spacing_m
from runtime.tin import stitch_edge_normals, tin_to_grid, with_morph
from streaming.client import SyncTileClient
from viewer.flight import ClientTile, Flight, FlightOptions, FlightStats, client_tile, drawable, stitch
from viewer.paths import Pose, camera_for
from viewer.renderer import VERTEX_BYTES, TerrainRenderer

SIZE = (96, 64)


def _decoded(key: TileKey, height_fn, step: int = 8, ge_m: float = 4.0, colour: bool = True) -> wire.DecodedTile:
    """A wire round trip of a regular TIN of ``height_fn(rows, cols)`` (what a client receives)."""
    grid_rc, faces, _ = full_grid_tin(step)
    h = height_fn(grid_rc[:, 0], grid_rc[:, 1])
    rgb = np.full((T + 1, T + 1, 3), 0.5, np.float32) if colour else None
    payload = wire.encode_tile(np.rint(grid_rc).astype(np.int64), h, faces, key=key, geometric_error_m=ge_m,
                               model="test", rgb_jpeg_or_png=wire.encode_image(rgb) if colour else None)
    return wire.decode_tile(payload)


def test_client_tile_places_skirts_and_counts_what_it_costs():
    key = TileKey(10, 0, 0)
    d = _decoded(key, lambda r, c: 100.0 + 2.0 * r - 1.0 * c, ge_m=4.0)
    t = client_tile(World.PLANE, key, d)
    s = t.surface
    assert s.key == key and t.ge_m == 4.0
    assert (t.info.min_height_m, t.info.max_height_m) == (float(d.height_m.min()), float(d.height_m.max()))
    # Skirts hang 5x the geometric error below their edge vertices (plane: straight down).
    for edge, skirt, _ in s.edges.values():
        assert np.all(skirt >= s.skirt_start)
        assert np.allclose(s.vertices[edge, 2] - s.vertices[skirt, 2], 20.0, atol=1e-3)
    assert t.image.shape == (T + 1, T + 1, 3) and t.image.dtype == np.uint8
    gpu = len(s.vertices) * VERTEX_BYTES + s.faces.size * 4 + (T + 1) ** 2 * 4 * 4 // 3
    assert t.nbytes == s.nbytes + gpu + t.image.nbytes
    # The rasterised grid reproduces the planar surface at every sample.
    rr, cc = np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij")
    assert np.allclose(t.grid(), 100.0 + 2.0 * rr - 1.0 * cc, atol=1e-3)
    assert t.tin.faces is d.faces  # height queries see the TIN as received


def test_drawable_morphs_toward_the_parent_only_when_it_is_given():
    child_key, parent_key = TileKey(11, 0, 0), TileKey(10, 0, 0)
    child = client_tile(World.PLANE, child_key, _decoded(child_key, lambda r, c: np.zeros_like(r), colour=False))
    parent = client_tile(World.PLANE, parent_key, _decoded(parent_key, lambda r, c: np.full_like(r, 100.0), ge_m=9.0))
    own, ge = drawable(World.PLANE, child, None)
    assert own is child.surface and ge == 0.0 and not own.has_morph
    morphed, ge = drawable(World.PLANE, child, parent)
    assert ge == 9.0 and np.allclose(morphed.morph_dh_m, 100.0)
    assert child.surface.morph_dh_m is None  # the cached tile keeps its own surface


def test_stitch_shares_edge_normals_between_same_level_neighbours_only():
    fn = lambda r, c, x0: 300.0 * np.sin((c + x0) / 17.0) * np.cos(r / 23.0)  # noqa: E731
    a_key, b_key = TileKey(10, 0, 0), TileKey(10, 1, 0)
    a = client_tile(World.PLANE, a_key, _decoded(a_key, lambda r, c: fn(r, c, 0.0), step=4))
    b = client_tile(World.PLANE, b_key, _decoded(b_key, lambda r, c: fn(r, c, T), step=4))
    far = client_tile(World.PLANE, TileKey(10, 5, 5), _decoded(TileKey(10, 5, 5), lambda r, c: fn(r, c, 0.0)))
    before = a.surface
    assert not stitch(World.PLANE, a, far) and a.surface is before
    assert stitch(World.PLANE, a, b)
    ea, eb = a.surface.edges["east"][0][1:-1], b.surface.edges["west"][0][1:-1]
    assert np.abs(a.surface.normals[ea] - b.surface.normals[eb]).max() < 1e-6
    assert np.abs(before.normals[ea] - a.surface.normals[ea]).max() > 1e-3  # they did change


@pytest.mark.slow
def test_settle_follows_a_camera_function_and_uploads_morphed_stitched_tiles(gl_ctx, plane_server_url):
    client = SyncTileClient(plane_server_url)
    r = TerrainRenderer(gl_ctx, (48, 32))
    flight = Flight(World.PLANE, client, r, FlightOptions(error_target_px=8.0, cache_bytes=256 << 20))
    pose = Pose(30_000.0, -20_000.0, 9000.0, "msl", 30.0, -60.0)  # above every peak of this seed
    calls = []

    def cameras():
        calls.append(flight.ground_m(pose.x, pose.y))
        return camera_for(World.PLANE, pose, 0.0, math.radians(60.0), (48, 32))

    res = flight.settle(cameras, 300.0)
    assert res.selection.complete and not flight.in_flight and not res.selection.holes
    assert len(calls) >= 2 and calls[0] is None and calls[-1] is not None  # called before every step
    draw = list(res.selection.draw)
    assert draw and all(k in r.tiles for k in draw)
    for k in draw:  # every drawn tile whose parent is cached morphs toward it
        parent = flight.streamer.payload(k.parent())
        assert parent is None or r.tiles[k].parent_ge_m == parent.ge_m
    # Uploaded same-level neighbours (the view's ancestors were drawn on the way) carry the
    # same stitched normals on their shared edges.
    up = [k for k in r.tiles if flight.streamer.payload(k) is not None]
    pairs = [(k, n, sa, sb) for k in up for (dx, dy, sa, sb) in ((1, 0, "east", "west"), (0, 1, "south", "north"))
             for n in [neighbour(World.PLANE, k, dx, dy)] if n in up]
    assert pairs, f"expected uploaded same-level neighbours, got {sorted(up)}"
    for k, n, side_a, side_b in pairs:
        a, b = flight.streamer.payload(k).surface, flight.streamer.payload(n).surface
        ea, eb = a.edges[side_a][0][1:-1], b.edges[side_b][0][1:-1]
        assert np.abs(a.normals[ea] - b.normals[eb]).max() < 1e-6, (k, n)
    assert isinstance(flight.streamer.payload(draw[0]), ClientTile)
    r.close()
    client.close()


class LateChildren:
    """A tile source whose tiles deeper than ``level`` arrive ``delay`` polls late."""

    def __init__(self, client, level: int, delay: int):
        self.client, self.level, self.delay = client, level, delay
        self.hello = client.hello
        self.held: list = []  # (release_at_poll, item)
        self.polls = 0
        self.delayed = 0

    def request(self, keys, priorities=None):
        self.client.request(keys, priorities)

    def cancel(self, keys):
        self.client.cancel(keys)

    def _take(self, items):
        out = []
        for item in items:
            if item[0].level > self.level:
                self.held.append((self.polls + self.delay, item))
                self.delayed += 1
            else:
                out.append(item)
        return out

    def poll(self):
        self.polls += 1
        out = self._take(self.client.poll())
        due = [it for at, it in self.held if at <= self.polls]
        self.held = [(at, it) for at, it in self.held if at > self.polls]
        return out + due

    def wait(self, timeout_s):
        item = self.client.wait(timeout_s)
        if item is None:
            return None
        got = self._take([item])
        return got[0] if got else None


@pytest.mark.slow
def test_no_background_below_the_horizon_while_children_load(gl_ctx, plane_server_url):
    client = SyncTileClient(plane_server_url)
    late = LateChildren(client, level=4, delay=6)
    r = TerrainRenderer(gl_ctx, SIZE)
    flight = Flight(World.PLANE, late, r, FlightOptions(error_target_px=4.0))
    fov = math.radians(60.0)
    pose = Pose(30_000.0, -20_000.0, 8000.0, "msl", 70.0, -20.0)  # above every peak of this seed
    cam = camera_for(World.PLANE, pose, 0.0, fov, SIZE)
    # The horizon of a flat world is at pitch 0: 20 deg above the image centre; require
    # terrain from 1 deg below it down.
    f_px = SIZE[1] / 2 / math.tan(fov / 2)
    first_row = int(SIZE[1] / 2 - math.tan(math.radians(20.0 - 1.0)) * f_px) + 1
    covered = loading_frames = 0
    deadline = time.perf_counter() + 150.0
    while time.perf_counter() < deadline:
        res = flight.step(cam)
        if flight.in_flight:
            flight.wait_for_tile(0.02)  # let the socket deliver
        flight.draw(cam)
        assert gl_ctx.error == "GL_NO_ERROR"
        if not res.selection.holes:
            covered += 1
            depth = r.read_depth_m()
            assert np.isfinite(depth[first_row:]).all(), f"sky below the horizon in frame {covered}"
            if flight.in_flight or late.held:
                loading_frames += 1
        if covered and res.selection.complete and not flight.in_flight and not late.held and not res.uploaded:
            break
        time.sleep(0.002)
    assert res.selection.complete, "the view never completed"
    # Children really were late while frames were drawn: the scenario happened (how many
    # depends on timing and on the per-frame upload budget: 3-24 seen; the check above is
    # what matters and held in every one of those frames).
    assert late.delayed >= 1 and loading_frames >= 1
    assert flight.stats.hole_frames <= flight.stats.frames - covered
    r.close()
    client.close()


# -- the runtime.tin pieces the pipeline composes ----------------------------------------

def test_neighbours_agree_on_their_shared_edge_normals():
    fn = lambda r, c, x0: 300.0 * np.sin((c + x0) / 17.0) * np.cos(r / 23.0)  # noqa: E731
    a = plane_surface(lambda r, c: fn(r, c, 0.0), key=TileKey(10, 0, 0), step=2)
    b = plane_surface(lambda r, c: fn(r, c, T), key=TileKey(10, 1, 0), step=2)
    ea = a.grid_rc[: a.skirt_start, 1] == T
    eb = b.grid_rc[: b.skirt_start, 1] == 0
    na, nb = a.normals[: a.skirt_start][ea], b.normals[: b.skirt_start][eb]
    ra, rb = a.grid_rc[: a.skirt_start][ea, 0], b.grid_rc[: b.skirt_start][eb, 0]
    na, nb = na[np.argsort(ra)], nb[np.argsort(rb)]
    assert len(na) == len(nb) == T // 2 + 1
    assert np.abs(na - nb).max() < 1e-5


def test_tin_to_grid_reproduces_a_planar_surface_exactly():
    grid_rc, faces, _ = full_grid_tin(32)
    h = 3.0 * grid_rc[:, 0] - 2.0 * grid_rc[:, 1] + 7.0
    g = tin_to_grid(grid_rc, h, faces)
    rr, cc = np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij")
    assert np.allclose(g, 3.0 * rr - 2.0 * cc + 7.0, atol=1e-3)


def test_stitched_edge_normals_are_shared_and_match_the_surface():
    fn = lambda r, c, x0: 300.0 * np.sin((c + x0) / 17.0) * np.cos(r / 23.0)  # noqa: E731
    a = plane_surface(lambda r, c: fn(r, c, 0.0), key=TileKey(10, 0, 0), step=1)
    b = plane_surface(lambda r, c: fn(r, c, T), key=TileKey(10, 1, 0), step=1)
    assert stitch_edge_normals("plane", a, plane_surface(lambda r, c: fn(r, c, 0.0), key=TileKey(10, 5, 5))) is None
    a2, b2 = stitch_edge_normals("plane", a, b)
    ea, eb = a2.edges["east"][0][1:-1], b2.edges["west"][0][1:-1]
    assert np.abs(a2.normals[ea] - b2.normals[eb]).max() < 1e-6
    # Analytic normal of h(east, north) at the shared edge (column 256 of tile a).
    s = spacing_m(10)
    rows = a2.grid_rc[ea, 0]
    dh_dc = 300.0 / 17.0 * np.cos(T / 17.0) * np.cos(rows / 23.0)
    dh_dr = -300.0 / 23.0 * np.sin(T / 17.0) * np.sin(rows / 23.0)
    n = np.stack([-dh_dc / s, dh_dr / s, np.ones_like(rows)], 1)  # north = -row
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    err_stitched = np.degrees(np.arccos(np.clip((a2.normals[ea] * n).sum(1), -1, 1))).mean()
    err_zero_cross = np.degrees(np.arccos(np.clip((a.normals[ea] * n).sum(1), -1, 1))).mean()
    assert err_stitched < 1.0 and err_stitched < 0.2 * err_zero_cross, (err_stitched, err_zero_cross)


def test_morph_normals_on_the_parents_border_are_the_parents_edge_normals():
    fn = lambda r, c: 200.0 * np.sin(c / 13.0) * np.cos(r / 29.0)  # noqa: E731
    parent = plane_surface(fn, key=TileKey(10, 0, 0), step=1)
    grid = tin_to_grid(parent.grid_rc[: parent.skirt_start], parent.height_m[: parent.skirt_start],
                       parent.faces[: len(parent.faces) - 8 * T])
    child = with_morph("plane", plane_surface(lambda r, c: np.zeros_like(r), key=TileKey(11, 1, 0), step=2),
                       grid, parent)
    # Child (11, 1, 0) is the parent's NE quarter: its east edge (col T) lies on the parent's east edge.
    ce = np.nonzero(child.grid_rc[: child.skirt_start, 1] == T)[0]
    pe, _, _ = parent.edges["east"]
    rows_in_parent = child.grid_rc[ce, 0] / 2.0
    even = np.isclose(rows_in_parent % 1.0, 0.0)
    lookup = {float(r): i for r, i in zip(parent.grid_rc[pe, 0], pe, strict=True)}
    want = parent.normals[[lookup[float(r)] for r in rows_in_parent[even]]]
    assert np.abs(child.morph_normals[ce[even]] - want).max() < 1e-5


class _NoSource:
    """A tile client that never sends anything (Flight's client interface)."""

    def request(self, keys, priorities=None):
        pass

    def cancel(self, keys):
        pass

    def poll(self):
        return []

    def wait(self, timeout_s):
        return None


def test_reuploads_are_queued_once_each_and_budgeted_per_frame():
    from viewer.realtime import NullRenderer

    flight = Flight(World.PLANE, _NoSource(), NullRenderer((32, 32)), FlightOptions(realtime=True))
    try:
        fn = lambda r, c: 50.0 * np.sin(c / 9.0) + 0.0 * r  # noqa: E731
        keys = [TileKey(10, x, 0) for x in range(3)]
        for k in keys:
            t = client_tile(World.PLANE, k, _decoded(k, fn, step=4, colour=False))
            flight.streamer.on_tile(k, t.info, t.nbytes, t)
        flight._upload(keys[0])
        flight._upload(keys[2])
        assert flight.stats.uploads == 2 and not flight._dirty
        flight._upload(keys[1])  # stitches both drawn neighbours: each queued once, not uploaded yet
        assert flight.stats.uploads == 3 and set(flight._dirty) == {keys[0], keys[2]}
        flight._dirty[keys[0]] = None  # queued again: still once
        flight._flush_reuploads(0.0)  # spent budget: one upload still happens
        assert flight.stats.uploads == 4 and len(flight._dirty) == 1
        flight._flush_reuploads(None)
        assert flight.stats.uploads == 5 and not flight._dirty
    finally:
        flight.close()


def test_realtime_upload_count_follows_the_time_budget_and_measured_cost():
    from viewer.realtime import NullRenderer

    opts = FlightOptions(realtime=True, max_uploads_per_frame=32, upload_budget_ms=16.0)
    flight = Flight(World.PLANE, _NoSource(), NullRenderer((32, 32)), opts)
    try:
        flight._upload_ms = 2.0
        assert flight._max_uploads() == 8
        flight._upload_ms = 40.0
        assert flight._max_uploads() == 1  # over budget: still one a frame
        flight._upload_ms = 0.1
        assert flight._max_uploads() == 32  # capped by max_uploads_per_frame
    finally:
        flight.close()
    lockstep = Flight(World.PLANE, _NoSource(), NullRenderer((32, 32)), FlightOptions(upload_budget_ms=16.0))
    assert lockstep._max_uploads() is None  # lockstep: the streamer's count


class _QueuedSource(_NoSource):
    """Tiles that arrived at the client and wait to be placed (held until ``go``)."""

    def __init__(self, items):
        import threading

        self.items, self.go = list(items), threading.Event()

    def poll(self):
        if not self.go.is_set():
            return []
        out, self.items = self.items, []
        return out

    def wait(self, timeout_s):
        if not self.go.wait(timeout_s) or not self.items:
            return None
        return self.items.pop(0)


def test_realtime_places_the_most_urgent_arrival_first_and_drops_given_up_tiles():
    from viewer.flight import _Preparer

    fn = lambda r, c: 20.0 * np.cos(r / 7.0) + 0.0 * c  # noqa: E731
    keys = [TileKey(12, x, 3) for x in range(4)]
    urgency = {keys[0]: 2050.0, keys[1]: None, keys[2]: 5.0, keys[3]: 1012.0}  # keys[1]: cancelled
    client = _QueuedSource([(k, _decoded(k, fn, step=8, colour=False)) for k in keys])
    prep = _Preparer(World.PLANE, client, FlightStats(), urgency.get)
    try:
        client.go.set()
        got = []
        while len(got) < 4:
            got.append(prep.out.get(timeout=20))
    finally:
        prep.close()
    assert [k for k, _, _ in got] == [keys[1], keys[2], keys[3], keys[0]]
    assert got[0][1] is None  # given up on: passed on unplaced
    assert all(isinstance(t, ClientTile) for _, t, _ in got[1:])
    # The parent raster is made when a child arrives, not for every tile.
    assert all(t._grid is None and not t._quarters for _, t, _ in got[1:])


def test_morph_targets_are_kept_per_parent_surface_and_equal_a_fresh_morph():
    child_key, parent_key = TileKey(11, 1, 0), TileKey(10, 0, 0)
    fn = lambda r, c: 30.0 * np.sin(c / 11.0) + 0.5 * r  # noqa: E731
    child = client_tile(World.PLANE, child_key, _decoded(child_key, fn, step=8, colour=False))
    parent = client_tile(World.PLANE, parent_key, _decoded(parent_key, fn, step=16, colour=False, ge_m=9.0))
    first, _ = drawable(World.PLANE, child, parent)
    fresh = with_morph(World.PLANE, child.surface, parent.grid(), parent.surface)
    assert np.array_equal(first.morph_dh_m, fresh.morph_dh_m)
    assert np.array_equal(first.morph_normals, fresh.morph_normals)
    again, ge = drawable(World.PLANE, child, parent)
    assert ge == 9.0 and again.morph_dh_m is first.morph_dh_m  # kept, not made again
    # The parent restitched (a new surface with other edge normals): made again.
    from dataclasses import replace

    parent.surface = replace(parent.surface, normals=parent.surface.normals * np.float32(-1.0))
    third, _ = drawable(World.PLANE, child, parent)
    assert third.morph_normals is not first.morph_normals
    assert np.array_equal(third.morph_normals,
                          with_morph(World.PLANE, child.surface, parent.grid(), parent.surface).morph_normals)


def test_tiles_given_up_on_arrive_undecoded_and_pass_the_preparer_unplaced(plane_server_url):
    from runtime.wire import DecodedTile
    from viewer.flight import _Preparer

    keys = [TileKey(1, 0, 0), TileKey(1, 1, 0), TileKey(1, 0, 1)]
    client = SyncTileClient(plane_server_url)
    try:
        client.set_skip_decode(lambda key: key == keys[1])
        client.request(keys)
        got = {}
        while len(got) < 3:
            item = client.wait(30)
            assert item is not None, "tiles did not arrive"
            got[item[0]] = item[1]
        assert got[keys[1]] is None  # not decoded
        assert isinstance(got[keys[0]], DecodedTile) and isinstance(got[keys[2]], DecodedTile)
        assert got[keys[0]].grid_size == T and len(got[keys[0]].faces) > 100
    finally:
        client.close()
    # The preparer passes an undecoded tile on as given up on, even if it is wanted again
    # by now (the frame loop then asks for it again).
    fn = lambda r, c: 0.1 * r + 0.2 * c  # noqa: E731
    source = _QueuedSource([(keys[1], None), (keys[0], _decoded(keys[0], fn, step=16, colour=False))])
    prep = _Preparer(World.PLANE, source, FlightStats(), lambda key: 1.0)
    try:
        source.go.set()
        out = [prep.out.get(timeout=20) for _ in range(2)]
    finally:
        prep.close()
    assert [(k, t is None) for k, t, _ in out] == [(keys[1], True), (keys[0], False)]
