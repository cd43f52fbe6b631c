"""The fly-through: camera path -> TileStreamer (runtime) -> tile client -> renderer -> frames.

Headless runs are lockstep by default: each frame waits (up to ``max_wait_s``) until the
view is complete at the error target before it is recorded, so a recording is the same
every time. Windowed runs are real time: what has not arrived yet is drawn from the best
loaded ancestor. ``realtime`` makes a headless run real time too: poses follow the wall
clock (a slow frame skips poses, it never slows the flight), tiles are drawn as they
arrive, and stats.json measures how far behind the camera the tiles were
(``realtime_stats``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from runtime import wire
from runtime.lod.selection import SPECULATIVE_LEVELS
from runtime.tiles import ANCHOR_LEVEL, TileKey, World
from viewer.flight import Flight, FlightOptions, start_in_process, stop_in_process
from viewer.paths import CameraPath, Keyframe, Pose, camera_for, default_path, pick_start
from viewer.realtime import NullRenderer, realtime_loop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlyOptions:
    """``worldstream fly``. size: (width, height) pixels; fps: path sampling (frames per
    second of path time) and window pacing; path_file: a scripted path (JSON), else the
    default flight, or a teleport (x, y, alt_m: plane metres, earth lon/lat degrees)."""

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
    teleport_agl: bool = False     # with teleport: alt_m is above ground (terrain following)
    teleport_heading_deg: float = 90.0  # with teleport: clockwise from north
    teleport_pitch_deg: float = -10.0   # with teleport: up positive, in (-90, 90)
    geomorph: bool = True
    realtime: bool = False         # headless: poses follow the wall clock, no waiting for tiles
    loading_max_s: float = 10.0    # realtime: longest loading screen (first view complete) before the clock starts
    gl: bool = True                # False: GL-free (NullRenderer: the CPU side of uploads, no pixels)
    place_procs: int | None = None  # realtime: tile decode/place worker processes (None: viewer.placepool.auto_procs)
    guess_levels: int = SPECULATIVE_LEVELS  # tiles asked for down to this many levels below known data

    @property
    def flight(self) -> FlightOptions:
        """The tile pipeline's share of these options (``viewer.flight.Flight``)."""
        if self.realtime:
            from viewer.placepool import auto_procs

            procs = auto_procs() if self.place_procs is None else self.place_procs
            return FlightOptions(self.error_target_px, self.cache_bytes, self.geomorph, realtime=True,
                                 max_uploads_per_frame=REALTIME_UPLOADS_PER_FRAME,
                                 upload_budget_ms=REALTIME_UPLOAD_BUDGET_MS, place_procs=procs,
                                 guess_levels=self.guess_levels)
        return FlightOptions(self.error_target_px, self.cache_bytes, self.geomorph, guess_levels=self.guess_levels)


REALTIME_UPLOADS_PER_FRAME = 32
"""At most this many new tiles made drawable per realtime frame; the rest wait a frame,
drawn from their ancestors meanwhile. Within it, ``REALTIME_UPLOAD_BUDGET_MS`` sets the
count (1 a frame, the earlier fixed limit, capped a 30 frames/s flight at 30 tiles/s: after
a teleport the ~110-130 tiles of the complete view took >= 4 s to become drawable whatever
the server did; docs/DECISIONS.md)."""

REALTIME_UPLOAD_BUDGET_MS = 16.0
"""Frame time for new uploads (morph targets, stitching, GPU packing: ~0.5-4 ms of wall a
tile since the compiled client kernels, more while the tile threads hold the GIL): count =
budget / the measured mean, at least 1. Half a 30 frames/s frame: at 8 ms earth tiles
waited up to 0.5 s (27-34 placed, not drawable) after a teleport."""


def run_fly(opts: FlyOptions, url: str | None = None, server=None) -> int:
    """The main job. Returns a process exit code."""
    from streaming.client import SyncTileClient

    thread = loop = None
    if url is None:
        url, thread, loop = start_in_process(server)
    client = SyncTileClient(url, token=opts.token, expect={"layers": ["features"]})  # drawn when served
    try:
        return _fly(opts, client)
    finally:
        try:
            client.close()
        except TimeoutError:  # the network thread still busy with tiles nobody wants: the run is done
            log.warning("tile client did not close within 10 s")
        if loop is not None:
            stop_in_process(server, thread, loop)


def default_start(world: World, client) -> tuple[float, float, float]:
    """Where the default flight goes: (x, y, heading_deg) over the anchor tiles around the
    origin (plane) or Europe (earth), the land with the most relief below the snow
    (``pick_start``)."""
    if world is World.EARTH:
        keys = [TileKey(ANCHOR_LEVEL, x, 1) for x in (8, 9)]  # 0..45 E, 45..67.5 N (Alps, Scandinavia)
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


def _start(opts: FlyOptions, world: World, client, window):
    """(camera path, free-flight controller or None). The path: the path file, else a
    teleport's one keyframe, else the default flight. In a window without a path file the
    controller takes over at the path's last keyframe."""
    from viewer.controls import FlyController

    if opts.path_file:
        path = CameraPath.load(opts.path_file)
    elif opts.teleport is not None:
        x, y, alt = opts.teleport
        path = CameraPath([Keyframe(0.0, x, y, alt, "agl" if opts.teleport_agl else "msl",
                                    opts.teleport_heading_deg % 360.0, opts.teleport_pitch_deg)])
    else:
        x, y, heading = default_start(world, client)
        path = default_path(world, (x, y), heading_deg=heading)
    if window is None or opts.path_file:
        return path, None
    k = path.keyframes[-1]
    agl = k.alt_mode == "agl"
    pose = Pose(k.x, k.y, k.alt_m, k.alt_mode, k.heading_deg, k.pitch_deg)
    return path, FlyController(world, pose, follow=agl, agl_m=k.alt_m if agl else 300.0)


def _fly(opts: FlyOptions, client) -> int:
    from viewer.context import Window, has_display, headless_context
    from viewer.hud import Hud
    from viewer.renderer import MorphOptions, TerrainRenderer

    world = World.parse(client.hello.world)
    window = Window(opts.size) if not opts.headless and has_display() else None
    path_ctx = window is None and not opts.gl
    ctx = None if path_ctx else window.ctx if window is not None else headless_context()
    path, controller = _start(opts, world, client, window)
    if ctx is None:
        renderer = NullRenderer(opts.size)
    else:
        renderer = TerrainRenderer(ctx, opts.size if window is None else window.size, offscreen=window is None,
                                   morph=MorphOptions(error_target_px=opts.error_target_px, enabled=opts.geomorph))
    show_hud = (opts.hud if opts.hud is not None else window is not None) and ctx is not None
    hud = Hud(ctx) if show_hud else None
    realtime = opts.realtime and window is None
    flight = Flight(world, client, renderer, opts.flight if realtime else replace(opts, realtime=False).flight)
    lockstep = opts.lockstep and window is None and not realtime
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames_png: list[Path] = []

    def record(i: int) -> None:
        if ctx is not None and opts.write_png:
            p = out / f"frame_{i:05d}.png"
            _save_png(p, renderer.read_rgb())
            frames_png.append(p)

    t_start = time.perf_counter()
    try:
        if realtime:
            extra = realtime_loop(opts, world, path, flight, record)
        else:
            extra = {}
            _paced_loop(opts, world, path, controller, window, flight, hud, lockstep, record)
    finally:
        flight.close()
    wall = time.perf_counter() - t_start
    mp4 = _write_mp4(out / "flight.mp4", frames_png, opts.fps) if opts.write_mp4 and frames_png else None
    s = flight.stats
    stats = {
        "world": world.value, "seed": client.hello.seed, "model": client.hello.model,
        "frames": s.frames, "size": list(opts.size), "lockstep": lockstep, "realtime": realtime,
        "gl": ctx is not None,
        "wall_s": round(wall, 3), "fps": round(s.frames / wall, 3) if wall > 0 else None,
        "render_ms_p50": _p(s.frame_ms, 50), "frame_wait_ms_p50": _p(s.wait_ms, 50),
        "hole_frames": s.hole_frames, "frames_over_error_target": s.frames_over_error_target,
        "frac_over_error_target": round(s.frames_over_error_target / s.frames, 4) if s.frames else None,
        "tiles_received": s.tiles_received, "tiles_failed": s.tiles_failed,
        "tile_latency_ms_p50": _p(s.tile_latency_ms, 50), "tile_latency_ms_p99": _p(s.tile_latency_ms, 99),
        "late_tiles": s.late_tiles, "duplicate_tiles": s.duplicate_tiles, "uploads": s.uploads,
        "step_ms_max": {k: round(v, 1) for k, v in s.step_ms_max.items()},
        "client_ms_per_tile": (round((s.tile_cpu_s + s.prepare_cpu_s) * 1e3 / s.tiles_received, 2)
                               if s.tiles_received else None),
        "tiles_drawn_max": max(s.tiles_drawn, default=0), "triangles_max": max(s.triangles, default=0),
        "levels_under_camera": [min(s.level_under_camera, default=0), max(s.level_under_camera, default=0)],
        "gpu_bytes_max": s.gpu_bytes_max, "gpu_budget_bytes": opts.cache_bytes,
        "start": [path.keyframes[0].x, path.keyframes[0].y],
        "mp4": str(mp4) if mp4 else None, "png_frames": len(frames_png),
        **extra,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats))
    if hud is not None:
        hud.release()
    renderer.close()
    if window is not None:
        window.close()
    return 0


def _paced_loop(opts: FlyOptions, world: World, path: CameraPath, controller, window, flight: Flight, hud,
                lockstep: bool, record) -> None:
    """Lockstep (headless) or windowed frames: one pose per frame at ``opts.fps`` of path time."""
    renderer = flight.renderer
    fov = math.radians(opts.fov_y_deg)
    ground = 0.0
    prev_pos = pose = cam = None

    def follow():
        """Terrain following while a frame settles: the camera again whenever the ground
        known under the pose moved (finer tiles arrived)."""
        nonlocal ground, cam
        g = flight.surface_m(pose.x, pose.y)
        if g is not None and abs(g - ground) > 0.01:
            ground = g
            cam = camera_for(world, pose, ground, fov, renderer.size)
        return cam

    t_prev = time.perf_counter()
    frame_s = 1.0 / opts.fps
    for i in range(opts.frames):
        t0 = time.perf_counter()
        if controller is not None:
            g = flight.surface_m(controller.pose.x, controller.pose.y)
            pose = controller.update(min(t0 - t_prev, 0.25), window.input(), g)
            ground = g if g is not None else ground
        else:
            pose = path.pose(path.keyframes[0].t + i / opts.fps)
        t_prev = t0
        cam = camera_for(world, pose, ground, fov, renderer.size)
        vel = np.zeros(3) if prev_pos is None else (cam.position_m - prev_pos) * opts.fps
        flight.step(cam, vel)
        if lockstep:
            try:
                flight.settle(follow, opts.max_wait_s, vel)
            except TimeoutError:
                follow()  # still place the camera on the best ground known
                log.warning("frame %d: view not complete after %.0f s", i, opts.max_wait_s)
        elif controller is None:
            g = flight.surface_m(pose.x, pose.y)
            if g is not None:
                ground = 0.9 * ground + 0.1 * g if i else g
        flight.stats.wait_ms.append((time.perf_counter() - t0) * 1e3)
        t1 = time.perf_counter()
        flight.draw(cam)
        if hud is not None:
            _draw_hud(hud, flight, world, pose, cam, controller, opts.fps if window is None else None)
        if window is not None:
            window.swap()
            if window.should_close() or window.key("ESCAPE"):
                break
        else:
            record(i)
        flight.stats.frame_ms.append((time.perf_counter() - t1) * 1e3)
        prev_pos = cam.position_m
        if window is not None:
            time.sleep(max(0.0, frame_s - (time.perf_counter() - t0)) if opts.fps < 1000 else 0.0)


def _draw_hud(hud, flight: Flight, world: World, pose: Pose, cam, controller, fps: float | None) -> None:
    """The HUD over the frame just drawn. fps: what to show (a recording's rate), or None:
    measured from the last frame's render and wait times."""
    from viewer.hud import HudStats, hud_lines

    s, renderer = flight.stats, flight.renderer
    last_ms = s.frame_ms[-1] if s.frame_ms else 0.0
    sel = flight.last.selection
    alt = float(flight.streamer.geometry.height_above_ellipsoid_m(cam.position_m[None])[0])
    g_now = flight.surface_m(pose.x, pose.y)
    hud.draw(hud_lines(HudStats(
        fps=1e3 / max(last_ms + s.wait_ms[-1], 1e-3) if fps is None else fps,
        frame_ms=last_ms, tiles_drawn=len(sel.draw), tiles_loading=len(flight.in_flight),
        triangles=renderer.triangles_drawn,
        level_under_camera=sel.under_camera[0].level if sel.under_camera else None,
        altitude_m=alt, agl_m=None if g_now is None else alt - g_now,
        position=_position_text(world, pose),
        speed_mps=controller.speed_mps if controller is not None else None,
        gpu_mib=renderer.gpu_bytes / 2**20, heading_deg=pose.heading_deg, pitch_deg=pose.pitch_deg,
        following_agl_m=pose.alt_m if pose.alt_mode == "agl" else None)), renderer.size)


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
        # macro_block_size 2: H.264 (yuv420p) needs even sizes only, so 960 x 540 frames stay
        # 960 x 540 (8 resized them to 960 x 544, stretched, with a warning on every fly)
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=2) as w:
            for p in frames:
                w.append_data(np.asarray(Image.open(p).convert("RGB")))
    except Exception as exc:  # ffmpeg missing or failing must not lose the PNGs and stats
        log.warning("MP4 not written: %s", exc)
        return None
    return path
