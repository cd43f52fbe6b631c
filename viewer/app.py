"""The fly-through: camera path -> TileStreamer (runtime) -> tile client -> renderer -> frames.

Headless runs are lockstep by default: each frame waits (up to ``max_wait_s``) until the
view is complete at the error target before it is recorded, so a recording is the same
every time. Windowed runs are real time: what has not arrived yet is drawn from the best
loaded ancestor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime import wire
from runtime.geometry import geodetic_to_ecef
from runtime.heights import TileSurface, height_at
from runtime.selection import SelectionOptions, TileInfo, View
from runtime.streamer import StreamerOptions, TileStreamer
from runtime.surface import tin_surface
from runtime.tiles import ANCHOR_LEVEL, TileKey, World
from viewer.paths import CameraPath, camera_for, default_path, highest_point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlyOptions:
    world: str = "earth"
    seed: int = 0
    frames: int = 240
    out_dir: Path = Path("out/fly")
    headless: bool = True
    size: tuple[int, int] = (960, 540)
    path_file: str | None = None
    token: str | None = None
    fps: float = 30.0
    fov_y_deg: float = 60.0
    error_target_px: float = 2.0
    lockstep: bool = True          # headless: wait for a complete view before recording a frame
    max_wait_s: float = 60.0       # per frame, in lockstep
    cache_bytes: int = 768 << 20
    write_png: bool = True
    write_mp4: bool = True


@dataclass
class FlightStats:
    frames: int = 0
    hole_frames: int = 0
    frames_over_error_target: int = 0
    tiles_received: int = 0
    tiles_failed: int = 0
    bytes_received: int = 0
    tiles_drawn: list[int] = field(default_factory=list)
    triangles: list[int] = field(default_factory=list)
    frame_ms: list[float] = field(default_factory=list)
    wait_ms: list[float] = field(default_factory=list)
    level_under_camera: list[int] = field(default_factory=list)


class Flight:
    """Couples one world's TileStreamer, a tile client and a renderer."""

    def __init__(self, world: World, client, renderer, options: FlyOptions):
        self.world = world
        self.client = client
        self.renderer = renderer
        self.options = options
        self.streamer = TileStreamer(world, StreamerOptions(
            selection=SelectionOptions(error_target_px=options.error_target_px),
            cache_bytes=options.cache_bytes))
        self.stats = FlightStats()
        self.in_flight: set = set()
        self._stash: list = []
        self.last = None

    def wait_for_tile(self, timeout_s: float) -> None:
        """Block until a tile (or error) arrives or ``timeout_s`` passes; it is staged."""
        item = self.client.wait(timeout_s)
        if item is not None:
            self._stash.append(item)

    def receive(self) -> int:
        """Decode and stage what arrived; returns how many tiles."""
        n = 0
        items, self._stash = self._stash + self.client.poll(), []
        for key, tile in items:
            self.in_flight.discard(key)
            if isinstance(tile, Exception):
                log.warning("tile %s failed: %s", key, tile)
                self.stats.tiles_failed += 1
                self.streamer.on_failed(key)
                continue
            skirt = 5.0 * tile.geometric_error_m
            surface = tin_surface(self.world, key, tile.grid_rc, tile.height_m, tile.faces,
                                  (tile.west, tile.south, tile.east, tile.north), skirt)
            image = wire.decode_image(tile.image) if tile.image is not None else None
            nbytes = surface.nbytes + (image.nbytes if image is not None else 0)
            info = TileInfo(float(np.min(tile.height_m)), float(np.max(tile.height_m)), tile.geometric_error_m)
            tin = TileSurface(key, grid_rc=tile.grid_rc, height_m=tile.height_m, faces=tile.faces)
            self.streamer.on_tile(key, info, nbytes, (surface, image, tin))
            self.stats.tiles_received += 1
            self.stats.bytes_received += getattr(tile, "nbytes", 0)
            n += 1
        return n

    def step(self, camera, velocity_mps=np.zeros(3)):
        """Receive, select, request, upload and evict for one frame (no drawing)."""
        self.receive()
        res = self.streamer.frame([View(camera, np.asarray(velocity_mps, np.float64))], clock=time.perf_counter)
        for key in res.evicted:
            self.renderer.release(key)
        for key in res.uploaded:
            surface, image, _ = self.streamer.payload(key)
            self.renderer.upload(surface, image)
        plan = res.plan
        # runtime priorities: lower is sooner; the protocol's: higher is sooner.
        start = list(plan.start) + list(plan.reprioritise)
        if start:
            self.client.request([k for k, _ in start], [-p for _, p in start])
            self.in_flight.update(k for k, _ in plan.start)
        if plan.cancel:
            self.client.cancel(plan.cancel)
            self.in_flight.difference_update(plan.cancel)
        self.last = res
        return res

    def _lookup(self, key):
        if key not in self.streamer.ready:
            return None
        payload = self.streamer.payload(key)
        return payload[2] if payload is not None else None

    def ground_m(self, x: float, y: float) -> float | None:
        """Height of the drawn (else best loaded) surface under (x, y): plane east/north
        metres, earth lon/lat degrees. None while no tile there is loaded."""
        if self.world is World.EARTH:
            pos = geodetic_to_ecef(np.array([x]), np.array([y]), np.array([0.0]))
        else:
            pos = np.array([[x, y, 0.0]])
        try:
            res = height_at(self.streamer.geometry, pos, self._lookup, prefer=self.streamer.drawn_last)
        except LookupError:
            return None
        return float(res.height_m[0])

    def draw(self, camera) -> None:
        sel = self.last.selection
        up = self.streamer.geometry.up(np.asarray(camera.position_m)[None, :])[0]
        self.renderer.render(camera, sel.draw, up)
        self.stats.frames += 1
        self.stats.hole_frames += bool(sel.holes)
        self.stats.frames_over_error_target += bool(sel.over_error)
        self.stats.tiles_drawn.append(len(sel.draw))
        self.stats.triangles.append(self.renderer.triangles_drawn)
        if sel.under_camera:
            self.stats.level_under_camera.append(sel.under_camera[0].level)


def fetch_blocking(client, keys, timeout_s: float = 120.0) -> dict:
    """Request ``keys`` on a SyncTileClient and wait for all; other arrivals are put back."""
    client.request(list(keys))
    want, got, others = set(keys), {}, []
    deadline = time.perf_counter() + timeout_s
    while want - got.keys():
        item = client.wait(max(0.0, deadline - time.perf_counter()))
        if item is None:
            raise TimeoutError(f"tiles {sorted(want - got.keys())[:4]} did not arrive in {timeout_s} s")
        key, tile = item
        if key not in want:
            others.append(item)
        elif isinstance(tile, Exception):
            raise tile
        else:
            got[key] = tile
    for item in others:
        client.received.put(item)
    return got


def _start_in_process(server) -> tuple[str, threading.Thread, asyncio.AbstractEventLoop]:
    """Run a TileServer on loopback in a background thread; returns its ws:// URL."""
    loop = asyncio.new_event_loop()
    ready: dict = {}
    started = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        ready["port"] = loop.run_until_complete(server.start("127.0.0.1", 0))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="worldstream-server", daemon=True)
    thread.start()
    if not started.wait(60):
        raise RuntimeError("in-process server did not start")
    return f"ws://127.0.0.1:{ready['port']}", thread, loop


def run_fly(opts: FlyOptions, url: str | None = None, server=None) -> int:
    """The main job. Returns a process exit code."""
    from streaming.client import SyncTileClient

    thread = loop = None
    if url is None:
        url, thread, loop = _start_in_process(server)
    client = SyncTileClient(url, token=opts.token)
    try:
        return _fly(opts, client)
    finally:
        client.close()
        if loop is not None:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


def _fly(opts: FlyOptions, client) -> int:
    from viewer.context import Window, has_display, headless_context
    from viewer.renderer import TerrainRenderer

    world = World.parse(client.hello.world)
    if opts.path_file:
        path = CameraPath.load(opts.path_file)
    elif world is World.PLANE:
        # Start over the highest land of the anchor tiles around the origin.
        keys = [TileKey(ANCHOR_LEVEL, x, y) for y in (-1, 0) for x in (-1, 0)]
        x, y, _ = highest_point(world, fetch_blocking(client, keys))
        path = default_path(world, (x, y))
    else:
        path = default_path(world)
    window = None
    if not opts.headless and has_display():
        window = Window(opts.size)
        ctx = window.ctx
    else:
        ctx = headless_context()
    renderer = TerrainRenderer(ctx, opts.size, offscreen=window is None)
    flight = Flight(world, client, renderer, opts)
    lockstep = opts.lockstep and window is None
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames_png: list[Path] = []
    fov = math.radians(opts.fov_y_deg)
    ground = 0.0
    prev_pos = None
    t_start = time.perf_counter()
    for i in range(opts.frames):
        t = path.keyframes[0].t + i / opts.fps
        pose = path.pose(t)
        t0 = time.perf_counter()
        cam = camera_for(world, pose, ground, fov, opts.size)
        vel = np.zeros(3) if prev_pos is None else (cam.position_m - prev_pos) * opts.fps
        flight.step(cam, vel)
        if lockstep:
            deadline = time.perf_counter() + opts.max_wait_s
            while time.perf_counter() < deadline:
                g = flight.ground_m(pose.x, pose.y)
                if g is not None and abs(g - ground) > 0.01:
                    ground = g
                    cam = camera_for(world, pose, ground, fov, opts.size)
                res = flight.step(cam, vel)
                if res.selection.complete and not flight.in_flight and not res.uploaded:
                    break
                if flight.in_flight and not res.uploaded:
                    flight.wait_for_tile(0.05)
        else:
            g = flight.ground_m(pose.x, pose.y)
            if g is not None:
                ground = 0.9 * ground + 0.1 * g if i else g
        flight.stats.wait_ms.append((time.perf_counter() - t0) * 1e3)
        t1 = time.perf_counter()
        flight.draw(cam)
        if window is not None:
            window.swap()
            if window.should_close() or window.key("ESCAPE"):
                break
        else:
            img = renderer.read_rgb()
            if opts.write_png:
                p = out / f"frame_{i:05d}.png"
                _save_png(p, img)
                frames_png.append(p)
        flight.stats.frame_ms.append((time.perf_counter() - t1) * 1e3)
        prev_pos = cam.position_m
    wall = time.perf_counter() - t_start
    mp4 = _write_mp4(out / "flight.mp4", frames_png, opts.fps) if opts.write_mp4 and frames_png else None
    s = flight.stats
    stats = {
        "world": world.value, "seed": client.hello.seed, "model": client.hello.model,
        "frames": s.frames, "size": list(opts.size), "lockstep": lockstep,
        "wall_s": round(wall, 3), "fps": round(s.frames / wall, 3) if wall > 0 else None,
        "render_ms_p50": _p(s.frame_ms, 50), "frame_wait_ms_p50": _p(s.wait_ms, 50),
        "hole_frames": s.hole_frames, "frames_over_error_target": s.frames_over_error_target,
        "tiles_received": s.tiles_received, "tiles_failed": s.tiles_failed,
        "tiles_drawn_max": max(s.tiles_drawn, default=0), "triangles_max": max(s.triangles, default=0),
        "levels_under_camera": [min(s.level_under_camera, default=0), max(s.level_under_camera, default=0)],
        "mp4": str(mp4) if mp4 else None, "png_frames": len(frames_png),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats))
    renderer.close()
    if window is not None:
        window.close()
    return 0


def _p(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(img).save(path, compress_level=1)


def _write_mp4(path: Path, frames: list[Path], fps: float) -> Path | None:
    try:
        import imageio.v2 as imageio
    except ImportError:
        log.info("imageio not installed (video extra): no MP4")
        return None
    from PIL import Image

    try:
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8) as w:
            for p in frames:
                w.append_data(np.asarray(Image.open(p).convert("RGB")))
    except Exception as exc:  # ffmpeg missing or failing must not lose the PNGs and stats
        log.warning("MP4 not written: %s", exc)
        return None
    return path
