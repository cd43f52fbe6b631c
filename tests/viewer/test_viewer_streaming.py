"""The viewer against a real in-process server: late children, sensors, GPU budget."""

import math
import time

import numpy as np
import pytest

from runtime.tiles import World
from streaming.cli import build_server
from streaming.client import SyncTileClient
from viewer.app import Flight, FlyOptions, start_in_process
from viewer.paths import Pose, camera_for
from viewer.renderer import TerrainRenderer
from viewer.sensors import SensorSession, SensorSpec

SEED = 5
SIZE = (96, 64)


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


@pytest.fixture(scope="module")
def server_url():
    server = build_server(World.PLANE, SEED)
    url, thread, loop = start_in_process(server)
    yield url
    import asyncio

    asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.mark.slow
def test_no_background_below_the_horizon_while_children_load(gl_ctx, server_url):
    client = SyncTileClient(server_url)
    late = LateChildren(client, level=4, delay=6)
    r = TerrainRenderer(gl_ctx, SIZE)
    flight = Flight(World.PLANE, late, r, FlyOptions(world="plane", error_target_px=4.0))
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
    assert late.delayed > 10 and loading_frames >= 5  # children really were late while frames were drawn
    assert flight.stats.hole_frames <= flight.stats.frames - covered
    r.close()
    client.close()


@pytest.mark.slow
def test_sensor_session_renders_several_cameras_from_one_selection(server_url):
    specs = [SensorSpec("front", (80, 60), 60.0), SensorSpec("down", (48, 48), 90.0)]
    with SensorSession(specs, url=server_url, cache_bytes=256 << 20) as s:
        pos = (30_000.0, -20_000.0, 9000.0)  # above every peak of this seed
        cams = {"front": s.camera("front", pos, heading_deg=45.0, pitch_deg=-15.0),
                "down": s.camera("down", pos, heading_deg=0.0, pitch_deg=-89.0)}
        frames = s.capture(cams, timeout_s=120.0)
        assert s.flight.last.selection.complete
        front, down = frames["front"], frames["down"]
        assert front.rgb.shape == (60, 80, 3) and down.depth_m.shape == (48, 48)
        assert front.nir is None  # the plane world has no NIR band
        # Straight down from 9000 m: depth = 9000 m - the visible surface's height: the ground
        # from the height query, or sea level where water covers it.
        ground = s.flight.ground_m(pos[0], pos[1])
        assert ground is not None
        surface = max(ground, 0.0)
        centre = down.depth_m[23:25, 23:25].mean()
        assert abs(centre - (9000.0 - surface) * math.cos(math.radians(1.0))) < 25.0, (centre, ground)
        n = down.normal[np.isfinite(down.depth_m)]
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=2e-3) and (n[:, 2] > 0).all()
        # Sky in the top rows of the front view (15 deg down, 60 deg fov: horizon at 0.25 of the height).
        assert np.isinf(front.depth_m[:5]).all() and np.isfinite(front.depth_m[-20:]).all()
        # GPU memory stays within the streamer's budget.
        assert 0 < s.renderer.gpu_bytes <= 256 << 20
