"""TileStreamer end to end against an in-test tile source counted in frames (deterministic)."""

import numpy as np
import pytest

from runtime.geometry import geometry_for
from runtime.lod.camera import Camera
from runtime.lod.scheduler import SchedulerOptions
from runtime.lod.selection import SelectionOptions, TileInfo, View
from runtime.lod.streamer import StreamerOptions, TileStreamer
from runtime.tiles import level_error_m

PLANE = geometry_for("plane")
TILE_BYTES = 1 << 20


def info(key):
    # Gently rolling ground: 0..200 m everywhere, the level's default error.
    return TileInfo(0.0, 200.0, level_error_m(key.level))


class FrameSource:
    """Answers each request ``delay`` frames later, at most ``per_frame`` per frame."""

    def __init__(self, delay=2, per_frame=40):
        self.delay, self.per_frame = delay, per_frame
        self.queue = []  # (due frame, key)
        self.frame = 0

    def send(self, plan):
        cancelled = set(plan.cancel)
        self.queue = [(f, k) for f, k in self.queue if k not in cancelled]
        self.queue += [(self.frame + self.delay, k) for k, _ in plan.start]

    def poll(self):
        self.frame += 1
        due = [(f, k) for f, k in self.queue if f <= self.frame][: self.per_frame]
        for item in due:
            self.queue.remove(item)
        return [k for _, k in due]


def fly(streamer, source, cameras, velocity):
    holes = over = 0
    drawn_sizes, evicted_total, res = [], 0, None
    for cam in cameras:
        for key in source.poll():
            streamer.on_tile(key, info(key), TILE_BYTES)
        res = streamer.frame(View(cam, velocity))
        source.send(res.plan)
        holes += bool(res.selection.holes)
        over += bool(res.selection.over_error)
        drawn_sizes.append(len(res.selection.draw))
        evicted_total += len(res.evicted)
        assert set(res.selection.draw) <= streamer.ready
        assert len(streamer.scheduler.in_flight) <= streamer.options.scheduler.max_in_flight
        # Over budget only by what must stay: this frame's keep set and last frame's drawing.
        must = len(res.selection.keep | set(streamer.drawn_last)) * TILE_BYTES
        assert streamer.cache.bytes <= max(streamer.cache.budget_bytes, must)
    return holes, over, drawn_sizes, evicted_total


def path(n, start, step):
    return [Camera(start + i * step, [1.0, 0.0, -0.3], [0, 0, 1], viewport_px=(960, 540)) for i in range(n)]


def test_flight_without_holes_and_with_a_tight_cache():
    start = np.array([5.0e5, -7.0e5, 600.0])
    step = np.array([250.0 / 60, 0.0, 0.0])  # 250 m/s at 60 frames per second
    opts = StreamerOptions(selection=SelectionOptions(max_level=16),
                           scheduler=SchedulerOptions(max_in_flight=16, max_uploads_per_frame=8),
                           cache_bytes=60 * TILE_BYTES)
    streamer = TileStreamer("plane", opts)
    source = FrameSource(delay=3, per_frame=12)
    # Loading screen: until the roots cover the view.
    boot = path(1, start, step)[0]
    for _ in range(30):
        for key in source.poll():
            streamer.on_tile(key, info(key), TILE_BYTES)
        res = streamer.frame(View(boot))
        source.send(res.plan)
        if not res.selection.holes:
            break
    assert not res.selection.holes
    holes, over, sizes, evicted = fly(streamer, source, path(240, start, step), step * 60)
    assert holes == 0
    assert over < 240  # it catches up at times
    assert min(sizes) > 0
    assert evicted > 0


def test_teleport_keeps_a_cover_and_completes():
    opts = StreamerOptions(selection=SelectionOptions(max_level=14))
    streamer = TileStreamer("plane", opts)
    source = FrameSource(delay=1, per_frame=200)
    a = np.array([1.0e5, -1.0e5, 800.0])
    b = np.array([1.0e7, -2.0e6, 800.0])  # 10,000 km away, same level-0 neighbourhood
    cam_a, cam_b = path(1, a, 0)[0], path(1, b, 0)[0]
    for _ in range(60):
        for key in source.poll():
            streamer.on_tile(key, info(key), TILE_BYTES)
        res = streamer.frame(View(cam_a))
        source.send(res.plan)
    assert res.selection.complete
    frames = None
    for i in range(120):
        for key in source.poll():
            streamer.on_tile(key, info(key), TILE_BYTES)
        res = streamer.frame(View(cam_b))
        source.send(res.plan)
        assert not res.selection.holes
        if res.selection.complete:
            frames = i + 1
            break
    assert frames is not None and frames < 60


def test_urgent_keys_go_first_and_are_kept():
    streamer = TileStreamer("plane", StreamerOptions(scheduler=SchedulerOptions(max_in_flight=1)))
    cam = path(1, np.array([0.0, 0.0, 500.0]), 0)[0]
    key = PLANE.key_at(18, np.array([3.0e6, 1.0e6, 0.0]))
    res = streamer.frame(View(cam), urgent=[key])
    assert res.plan.start == ((key, -1.0),)


def test_most_detailed_height_query_through_the_streamer():
    # A simulator asks for the ground under two points at level 12; the keys go out as
    # urgent requests and the future resolves once they have arrived.
    from runtime.heights import HeightQueries, TileSurface
    from runtime.tiles import T

    streamer = TileStreamer("plane", StreamerOptions(selection=SelectionOptions(max_level=12, speculative_levels=None)))
    source = FrameSource(delay=2, per_frame=64)

    def surface(key):  # a flat tile at 10 m per level, so the level read is visible
        return TileSurface(key, heights=np.full((T + 1, T + 1), 10.0 * key.level, np.float32))

    queries = HeightQueries(PLANE, lambda k: streamer.payload(k) if k in streamer.known else None, level=12)
    pts = np.array([[2.0e5, -3.0e5, 0.0], [-4.0e6, 1.0e6, 0.0]])
    fut = queries.most_detailed(pts)
    cam = path(1, np.array([0.0, 0.0, 3000.0]), 0)[0]
    frames = 0
    while not fut.done() and frames < 20:
        source.send(streamer.frame(View(cam), urgent=queries.urgent()).plan)
        frames += 1
        for key in source.poll():
            streamer.on_tile(key, info(key), TILE_BYTES, payload=surface(key))
        queries.on_tiles()
    assert fut.done() and frames <= 4
    res = fut.result(timeout=0)
    assert list(res.height_m) == [120.0, 120.0] and all(k.level == 12 for k in res.keys)


@pytest.mark.parametrize("world", ["plane", "earth"])
def test_random_flights_and_teleports_never_show_a_hole(world):
    # Random poses (10 m .. 3,000 km up, any heading), a teleport every 40 frames, a cache
    # of 60 tiles and a slow source: after the first complete cover no frame has a hole,
    # drawn tiles are always ready and never overlap.
    from runtime.geometry import east_north_up, geodetic_to_ecef

    rng = np.random.default_rng(11)
    opts = StreamerOptions(scheduler=SchedulerOptions(max_in_flight=16, max_uploads_per_frame=6),
                           cache_bytes=60 * TILE_BYTES)
    streamer = TileStreamer(world, opts)
    source = FrameSource(delay=2, per_frame=10)

    def random_pose():
        h = 10 ** rng.uniform(1, 6.5)
        if world == "plane":
            pos, frame = np.array([rng.uniform(-2e7, 2e7), rng.uniform(-2e7, 2e7), 200 + h]), np.eye(3)
        else:
            lon, lat = rng.uniform(-180, 180), rng.uniform(-88, 88)
            pos, frame = geodetic_to_ecef(lon, lat, 200 + h)[0], east_north_up(lon, lat)
        yaw, pitch = rng.uniform(0, 2 * np.pi), rng.uniform(-1.4, 0.3)
        fwd = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)]) @ frame
        return pos, fwd, frame[2]

    pos, fwd, up = random_pose()
    booted, hole_frames = False, 0
    for i in range(320):
        if i % 40 == 39:
            pos, fwd, up = random_pose()
        else:
            pos = pos + fwd * 5.0
        for key in source.poll():
            streamer.on_tile(key, info(key), TILE_BYTES)
        res = streamer.frame(View(Camera(pos, fwd, up, viewport_px=(640, 360), far_m=2e7)))
        source.send(res.plan)
        drawn = set(res.selection.draw)
        assert drawn <= streamer.ready
        for k in drawn:
            assert not any(k.ancestor(lv) in drawn for lv in range(k.level))
        if res.selection.holes:
            assert not any(h in streamer.ready for h in res.selection.holes)
            hole_frames += booted
        else:
            booted = True
    assert booted and hole_frames == 0


def test_prefetch_waits_while_the_view_is_incomplete():
    # Moving fast with nothing known: the view is incomplete and the prefetch band (tiles
    # ahead and the pinned ring) is asked for at most ``max_prefetch_incomplete`` at a time;
    # without the cap the free slots fill with it.
    cam = path(1, np.array([5.0e5, -7.0e5, 600.0]), 0)[0]
    view = View(cam, np.array([3.0e4, 0.0, 0.0]))
    sched = SchedulerOptions(max_in_flight=400)

    def prefetch_started(cap):
        selection = SelectionOptions(max_level=12, speculative_levels=None)  # every guess, as before the limit
        streamer = TileStreamer("plane", StreamerOptions(scheduler=sched, max_prefetch_incomplete=cap,
                                                         selection=selection))
        res = streamer.frame(view)
        assert not res.selection.complete
        return sum(1 for _, p in res.plan.start if p >= 2000.0), res

    capped, res = prefetch_started(4)
    uncapped, _ = prefetch_started(None)
    assert capped == 4 and uncapped > 4
    # Wanted keys are all asked for either way.
    assert sum(1 for _, p in res.plan.start if p < 2000.0) == sum(1 for r in res.selection.load if r.band < 2)
    with pytest.raises(ValueError, match="max_prefetch_incomplete"):
        StreamerOptions(max_prefetch_incomplete=-1)
