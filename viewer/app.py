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
from runtime.lod.selection import SelectionOptions, TileInfo, View
from runtime.lod.streamer import StreamerOptions, TileStreamer
from runtime.tin import stitch_edge_normals, tin_surface, tin_to_grid, with_morph
from runtime.tiles import ANCHOR_LEVEL, TileKey, World, neighbour, skirt_depth_for
from viewer.paths import CameraPath, Keyframe, Pose, camera_for, default_path, pick_start
from viewer.renderer import tile_gpu_bytes

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
    hud: bool | None = None        # None: in a window only (recordings stay bit-identical)
    teleport: tuple[float, float, float] | None = None  # start (x, y, alt_m): free flight there
    agl_m: float | None = None     # with teleport: alt_m is above ground (terrain following)
    geomorph: bool = True


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
    gpu_bytes_max: int = 0


class _Tile:
    """What the streamer caches per tile: the renderable surface, its colour, its TIN
    (height queries) and, made on demand, its rasterised height grid (children's morphs)."""

    __slots__ = ("surface", "image", "tin", "ge_m", "_grid")

    def __init__(self, surface, image, tin, ge_m):
        self.surface, self.image, self.tin, self.ge_m, self._grid = surface, image, tin, ge_m, None

    def grid(self) -> np.ndarray:
        if self._grid is None:
            self._grid = tin_to_grid(self.tin.grid_rc, self.tin.height_m, self.tin.faces)
        return self._grid


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
        self.geomorph = options.geomorph

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
            skirt = skirt_depth_for(tile.geometric_error_m)
            surface = tin_surface(self.world, key, tile.grid_rc, tile.height_m, tile.faces,
                                  (tile.west, tile.south, tile.east, tile.north), skirt)
            image = wire.decode_image(tile.image) if tile.image is not None else None
            nbytes = surface.nbytes + tile_gpu_bytes(surface, image) + (image.nbytes if image is not None else 0)
            info = TileInfo(float(np.min(tile.height_m)), float(np.max(tile.height_m)), tile.geometric_error_m)
            tin = TileSurface(key, grid_rc=tile.grid_rc, height_m=tile.height_m, faces=tile.faces)
            self.streamer.on_tile(key, info, nbytes, _Tile(surface, image, tin, tile.geometric_error_m))
            # Children drawn before their parent arrived were uploaded without morph
            # targets: give them their targets now.
            self._refresh_children(key, unmorphed_only=True)
            self.stats.tiles_received += 1
            self.stats.bytes_received += getattr(tile, "nbytes", 0)
            n += 1
        return n

    def step(self, camera, velocity_mps=np.zeros(3)):
        """Receive, select, request, upload and evict for one frame (no drawing).

        camera: a Camera, or a list of them (sensors: one selection serves all views)."""
        self.receive()
        cams = camera if isinstance(camera, (list, tuple)) else [camera]
        views = [View(c, np.asarray(velocity_mps if i == 0 else np.zeros(3), np.float64))
                 for i, c in enumerate(cams)]
        res = self.streamer.frame(views, clock=time.perf_counter)
        for key in res.evicted:
            self.renderer.release(key)
        gone = set(res.evicted)
        for key in res.uploaded:
            # The streamer may report a key uploaded and evicted in one frame (an undrawn
            # tile over the byte budget): nothing to upload then.
            if key not in gone and self.streamer.payload(key) is not None:
                self._upload(key)
        self.stats.gpu_bytes_max = max(self.stats.gpu_bytes_max, self.renderer.gpu_bytes)
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

    def _stitch(self, key: TileKey, t: _Tile) -> None:
        """Exact normals on edges shared with same-level neighbours already here (both
        tiles change; an uploaded neighbour is uploaded again)."""
        stitched = []
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nk = neighbour(self.world, key, dx, dy)
            other = self.streamer.payload(nk) if nk is not None else None
            if other is None:
                continue
            pair = stitch_edge_normals(self.world, t.surface, other.surface)
            if pair is None:
                continue
            t.surface, other.surface = pair
            stitched += [key, nk]
            if nk in self.renderer.tiles:
                self._upload(nk, stitch=False)
        # Children already drawn morph towards their parent's normals: give them the
        # stitched ones, or what a frame shows would depend on arrival order.
        for parent in dict.fromkeys(stitched):
            self._refresh_children(parent, unmorphed_only=False)

    def _refresh_children(self, parent: TileKey, unmorphed_only: bool) -> None:
        """Upload again the drawn children of ``parent`` so that they morph towards its
        current surface: all of them, or only those drawn before it arrived (no targets)."""
        if not self.geomorph:
            return
        for child in parent.children():
            gpu = self.renderer.tiles.get(child)
            if gpu is None or self.streamer.payload(child) is None:
                continue
            if not unmorphed_only or gpu.parent_ge_m == 0.0:
                self._upload(child, stitch=False)

    def _upload(self, key: TileKey, stitch: bool = True) -> None:
        t = self.streamer.payload(key)
        if stitch:
            self._stitch(key, t)
        surface, parent_ge = t.surface, 0.0
        parent = self.streamer.payload(key.parent()) if key.level > 0 and self.geomorph else None
        if parent is not None:
            # Ancestors load first, so the parent is nearly always here; without it the
            # tile is drawn unmorphed.
            surface = with_morph(self.world, surface, parent.grid(), parent.surface)
            parent_ge = parent.ge_m
        self.renderer.upload(surface, t.image, parent_ge_m=parent_ge)

    def settle(self, cameras, timeout_s: float, velocity_mps=np.zeros(3)):
        """Step until the view of ``cameras`` is complete at the error target and nothing
        is in flight; raises TimeoutError after ``timeout_s`` (0: one step only)."""
        deadline = time.perf_counter() + timeout_s
        while True:
            res = self.step(cameras, velocity_mps)
            if res.selection.complete and not self.in_flight and not res.uploaded:
                return res
            if time.perf_counter() >= deadline:
                if timeout_s > 0:
                    raise TimeoutError(f"view not complete after {timeout_s} s "
                                       f"({len(self.in_flight)} tiles in flight)")
                return res
            if self.in_flight and not res.uploaded:
                self.wait_for_tile(0.05)

    def _lookup(self, key):
        if key not in self.streamer.ready:
            return None
        payload = self.streamer.payload(key)
        return payload.tin if payload is not None else None

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

    def surface_m(self, x: float, y: float) -> float | None:
        """What a pilot flies over: the ground, or sea level where water covers it."""
        g = self.ground_m(x, y)
        if g is None or not getattr(self.renderer.lighting, "water", False):
            return g
        return max(g, 0.0)

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


def start_in_process(server) -> tuple[str, threading.Thread, asyncio.AbstractEventLoop]:
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
        url, thread, loop = start_in_process(server)
    client = SyncTileClient(url, token=opts.token)
    try:
        return _fly(opts, client)
    finally:
        client.close()
        if loop is not None:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


def default_start(world: World, client) -> tuple[float, float, float]:
    """Where the default flight goes: over the anchor tiles around the origin (plane) or
    the Alps (earth), the land with the most relief below the snow (``pick_start``)."""
    if world is World.EARTH:
        keys = [TileKey(ANCHOR_LEVEL, x, 1) for x in (8, 9)]  # 0..45 E, 22.5..45 N (Alps, Caucasus)
    else:
        keys = [TileKey(ANCHOR_LEVEL, x, y) for y in (-1, 0) for x in (-1, 0)]
    tiles = client.fetch(keys)
    images = {k: wire.decode_image(t.image) for k, t in tiles.items() if t.image is not None}
    x, y, _, heading = pick_start(world, tiles, images)
    return x, y, heading


def _position_text(world: World, pose: Pose) -> str:
    if world is World.EARTH:
        return f"lon {pose.x:.5f}  lat {pose.y:.5f}"
    return f"x {pose.x:,.1f} m  y {pose.y:,.1f} m"


def _fly(opts: FlyOptions, client) -> int:
    from viewer.context import Window, has_display, headless_context
    from viewer.controls import FlyController
    from viewer.hud import Hud, HudStats, hud_lines
    from viewer.renderer import MorphOptions, TerrainRenderer

    world = World.parse(client.hello.world)
    window = None
    if not opts.headless and has_display():
        window = Window(opts.size)
        ctx = window.ctx
    else:
        ctx = headless_context()
    # Scripted path unless free flight: a window without a path file, or a teleport.
    controller = None
    if opts.path_file:
        path = CameraPath.load(opts.path_file)
    elif opts.teleport is not None:
        x, y, alt = opts.teleport
        mode = "agl" if opts.agl_m is not None else "msl"
        alt = opts.agl_m if opts.agl_m is not None else alt
        path = CameraPath([Keyframe(0.0, x, y, alt, mode, 90.0, -10.0)])
    else:
        x, y, heading = default_start(world, client)
        path = default_path(world, (x, y), heading_deg=heading)
    if window is not None and not opts.path_file:
        k0 = path.keyframes[-1] if opts.teleport is None else path.keyframes[0]
        controller = FlyController(world, Pose(k0.x, k0.y, k0.alt_m, k0.alt_mode, k0.heading_deg, k0.pitch_deg),
                                   follow=k0.alt_mode == "agl", agl_m=k0.alt_m if k0.alt_mode == "agl" else 300.0)
    renderer = TerrainRenderer(ctx, opts.size if window is None else window.size, offscreen=window is None,
                               morph=MorphOptions(error_target_px=opts.error_target_px, enabled=opts.geomorph))
    show_hud = opts.hud if opts.hud is not None else window is not None
    hud = Hud(ctx) if show_hud else None
    flight = Flight(world, client, renderer, opts)
    lockstep = opts.lockstep and window is None
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames_png: list[Path] = []
    fov = math.radians(opts.fov_y_deg)
    ground = 0.0
    prev_pos = None
    t_start = t_prev = time.perf_counter()
    frame_s = 1.0 / opts.fps
    for i in range(opts.frames):
        t0 = time.perf_counter()
        if controller is not None:
            inp = window.input()
            g = flight.surface_m(controller.pose.x, controller.pose.y)
            pose = controller.update(min(t0 - t_prev, 0.25), inp, g)
            ground = g if g is not None else ground
        else:
            pose = path.pose(path.keyframes[0].t + i / opts.fps)
        t_prev = t0
        size = renderer.size
        cam = camera_for(world, pose, ground, fov, size)
        vel = np.zeros(3) if prev_pos is None else (cam.position_m - prev_pos) * opts.fps
        flight.step(cam, vel)
        if lockstep:
            deadline = time.perf_counter() + opts.max_wait_s
            while time.perf_counter() < deadline:
                g = flight.surface_m(pose.x, pose.y)
                if g is not None and abs(g - ground) > 0.01:
                    ground = g
                    cam = camera_for(world, pose, ground, fov, size)
                res = flight.step(cam, vel)
                if res.selection.complete and not flight.in_flight and not res.uploaded:
                    break
                if flight.in_flight and not res.uploaded:
                    flight.wait_for_tile(0.05)
            else:  # timed out: still place the camera on the best ground known
                g = flight.surface_m(pose.x, pose.y)
                if g is not None and abs(g - ground) > 0.01:
                    ground = g
                    cam = camera_for(world, pose, ground, fov, size)
                log.warning("frame %d: view not complete after %.0f s", i, opts.max_wait_s)
        elif controller is None:
            g = flight.surface_m(pose.x, pose.y)
            if g is not None:
                ground = 0.9 * ground + 0.1 * g if i else g
        flight.stats.wait_ms.append((time.perf_counter() - t0) * 1e3)
        t1 = time.perf_counter()
        flight.draw(cam)
        if hud is not None:
            s = flight.stats
            last_ms = s.frame_ms[-1] if s.frame_ms else 0.0
            sel = flight.last.selection
            alt = float(flight.streamer.geometry.height_above_ellipsoid_m(cam.position_m[None])[0])
            g_now = flight.surface_m(pose.x, pose.y)
            hud.draw(hud_lines(HudStats(
                fps=1e3 / max(last_ms + s.wait_ms[-1], 1e-3) if window is not None else opts.fps,
                frame_ms=last_ms, tiles_drawn=len(sel.draw), tiles_loading=len(flight.in_flight),
                triangles=renderer.triangles_drawn,
                level_under_camera=sel.under_camera[0].level if sel.under_camera else None,
                altitude_m=alt, agl_m=None if g_now is None else alt - g_now,
                position=_position_text(world, pose),
                speed_mps=controller.speed_mps if controller is not None else None,
                gpu_mib=renderer.gpu_bytes / 2**20)), renderer.size)
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
        if window is not None:
            time.sleep(max(0.0, frame_s - (time.perf_counter() - t0)) if opts.fps < 1000 else 0.0)
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
        "gpu_bytes_max": s.gpu_bytes_max, "gpu_budget_bytes": opts.cache_bytes,
        "start": [path.keyframes[0].x, path.keyframes[0].y],
        "mp4": str(mp4) if mp4 else None, "png_frames": len(frames_png),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats))
    if hud is not None:
        hud.release()
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
