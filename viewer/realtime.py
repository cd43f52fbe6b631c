"""Headless real-time flight (``worldstream fly --headless --realtime``) and a GL-free renderer.

``realtime_loop`` flies a camera path on the wall clock: each frame takes the pose at the
time elapsed since the flight started, so a slow frame skips poses and never slows the
flight; tiles are drawn as they arrive (``Flight`` in realtime mode places them on a worker
thread and budgets re-uploads per frame). Frames are paced at ``fps`` at most (the rest of
the time is the server's and the client threads'). Before the clock starts the first pose
is held behind a loading screen (as flight and drone simulators do): until the roots cover
the view (``boot_s``), then until the view is complete at the error target or
``loading_max_s`` passed (``loading_s``, ``loading_complete``). Loading frames are not
flight frames: they are not drawn or counted, and the path's clock starts after them.

It measures what a pilot would see: frames over the error target, the time from each
teleport (a ``cut`` keyframe, docs/VIEWER.md) to a complete view, the longest frame and
the longest frame's tile work.
"""

from __future__ import annotations

import gc
import logging
import math
import time

import numpy as np

from runtime.tiles import World
from viewer.flight import Flight
from viewer.paths import CameraPath, camera_for
from viewer.renderer import chunk_layout, tile_gpu_bytes, vertex_array

log = logging.getLogger(__name__)


class NullRenderer:
    """The renderer's interface without GL: ``upload`` does the CPU side of a real upload
    (vertex packing, chunk layout) and keeps the byte count, ``render`` only counts
    triangles, ``read_rgb`` is black. For benchmarks of the tile pipeline where no GL
    driver exists or its cost would blur the client's own."""

    class _Tile:
        __slots__ = ("parent_ge_m", "nbytes", "triangles")

    class _Lighting:
        water = True

    def __init__(self, size: tuple[int, int]):
        self.size = tuple(size)
        self.tiles: dict = {}
        self.gpu_bytes = 0
        self.triangles_drawn = 0
        self.lighting = self._Lighting()

    def upload(self, surface, image, parent_ge_m: float = 0.0, nir=None, layer=None, placed=None) -> int:
        self.release(surface.key)
        np.ascontiguousarray(vertex_array(surface)).tobytes()
        chunk_layout(surface)
        t = self._Tile()
        t.parent_ge_m = float(parent_ge_m) if surface.has_morph else 0.0
        t.nbytes = tile_gpu_bytes(surface, image, nir, layer.classes if layer is not None else None, placed)
        t.triangles = len(surface.faces)
        self.tiles[surface.key] = t
        self.gpu_bytes += t.nbytes
        return t.nbytes

    def release(self, key) -> None:
        t = self.tiles.pop(key, None)
        if t is not None:
            self.gpu_bytes -= t.nbytes

    def render(self, camera, draw, up, targets=None) -> None:
        self.triangles_drawn = sum(self.tiles[k].triangles for k in draw if k in self.tiles)

    def read_rgb(self) -> np.ndarray:
        return np.zeros((self.size[1], self.size[0], 3), np.uint8)

    def close(self) -> None:
        self.tiles.clear()
        self.gpu_bytes = 0


def teleport_times(path: CameraPath) -> list[float]:
    """Path times (seconds) of the path's teleports: its ``cut`` keyframes."""
    return [k.t for k in path.keyframes[1:] if k.cut]


COARSE_FACTOR = 8.0
"""``teleport_coarse_s``: a view within this factor of the error target (3 levels)."""


def pace(deadline: float, clock=time.perf_counter, sleep=time.sleep) -> bool:
    """Sleep until ``deadline`` (``clock`` seconds); False, without sleeping, when it has
    passed. The clock is read once: reading it again between the check and the sleep can
    pass the deadline meanwhile, and ``time.sleep`` of a negative length raises (a real-time
    flight died so, 2026-12-08)."""
    wait = deadline - clock()
    if wait <= 0:
        return False
    sleep(wait)
    return True


def realtime_loop(opts, world: World, path: CameraPath, flight: Flight, record) -> dict:
    """Fly ``path`` on the wall clock for ``opts.frames / opts.fps`` seconds of path time.

    opts: viewer.app.FlyOptions; record(i): called after frame i is drawn (PNG). Returns
    the realtime statistics for stats.json: ``teleport_complete_s`` (one per teleport,
    wall seconds to a complete view at the error target, None if never),
    ``teleport_coarse_s`` (the same to a view whose largest drawn error is at most
    ``COARSE_FACTOR`` times the target: the coarse cover, three levels short), ``stall_ms_max``
    (longest frame, drawing included), ``tile_ms_max`` (longest frame's receive, select,
    request and upload work), ``boot_s`` (loading until the roots cover the first pose),
    ``loading_s`` (the whole loading screen: until the first pose's view is complete at the
    error target, or ``opts.loading_max_s``), ``loading_complete`` (False: the loading
    screen timed out), ``poses_skipped`` (frames at ``fps`` that the flight ran past while
    a frame was slow), ``gc_frozen`` (objects made before the flight and kept out of the
    garbage collector's full passes during it, then released) and ``path_s``."""
    renderer = flight.renderer
    fov = math.radians(opts.fov_y_deg)
    t_path0 = path.keyframes[0].t
    duration = opts.frames / opts.fps
    frame_s = 1.0 / opts.fps

    # Loading screen: the first pose until the roots cover it (boot_s), then until its view
    # is complete at the error target or loading_max_s passed (loading_s). Nothing is drawn
    # or counted meanwhile; the flight clock starts after it.
    t_boot = time.perf_counter()
    pose = path.pose(t_path0)
    ground = 0.0
    boot_s = None
    loading_complete = False
    while True:
        cam = camera_for(world, pose, ground, fov, renderer.size)
        res = flight.step(cam)
        g = flight.surface_m(pose.x, pose.y)
        ground = g if g is not None else ground
        now = time.perf_counter() - t_boot
        if boot_s is None and not res.selection.holes and res.selection.draw:
            boot_s = now
        if boot_s is not None:
            if res.selection.complete:
                loading_complete = True
                break
            if now >= max(boot_s, opts.loading_max_s):
                break
        elif now > opts.max_wait_s:
            raise TimeoutError(f"the roots did not arrive within {opts.max_wait_s} s")
        flight.wait_for_tile(0.02)
    loading_s = time.perf_counter() - t_boot

    # Everything built before the flight (modules, compiled kernels, caches, the first view's
    # tiles) lives through it: out of the collector's way, as in the server (serve_forever),
    # so a full collection during the flight walks what the flight made, not ~40-110 ms of
    # old objects inside one frame (traces: one such frame every ~12 s).
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        teleports = teleport_times(path)
        started: list[float | None] = [None] * len(teleports)
        done: list[float | None] = [None] * len(teleports)
        coarse: list[float | None] = [None] * len(teleports)
        coarse_px = COARSE_FACTOR * opts.error_target_px
        stall_ms, tile_ms = [], []
        prev_pos = None
        prev_t = 0.0
        i = 0
        t0 = time.perf_counter()
        while True:
            t_frame = time.perf_counter()
            now = t_frame - t0
            if now >= duration:
                break
            t_path = t_path0 + now
            pose = path.pose(t_path)
            jumped = False
            for j, tt in enumerate(teleports):
                if started[j] is None and t_path >= tt:
                    started[j] = now
                    jumped = True
            g = flight.surface_m(pose.x, pose.y)
            if g is not None:
                ground = g if (jumped or i == 0) else 0.9 * ground + 0.1 * g
            cam = camera_for(world, pose, ground, fov, renderer.size)
            dt = now - prev_t
            vel = np.zeros(3) if (prev_pos is None or jumped or dt <= 0) else (cam.position_m - prev_pos) / dt
            res = flight.step(cam, vel)
            t_tiles = time.perf_counter()
            tile_ms.append((t_tiles - t_frame) * 1e3)
            flight.stats.wait_ms.append(tile_ms[-1])
            if not res.selection.holes and res.selection.max_sse_px <= coarse_px:
                for j in range(len(teleports)):
                    if started[j] is not None and coarse[j] is None:
                        coarse[j] = time.perf_counter() - t0 - started[j]
            if res.selection.complete:
                for j in range(len(teleports)):
                    if started[j] is not None and done[j] is None:
                        done[j] = time.perf_counter() - t0 - started[j]
            flight.draw(cam)
            record(len(stall_ms))
            t_end = time.perf_counter()
            flight.stats.frame_ms.append((t_end - t_tiles) * 1e3)
            stall_ms.append((t_end - t_frame) * 1e3)
            prev_pos, prev_t = cam.position_m, now
            i += 1
            # Pace at fps at most: the time left is the server's and the tile threads'.
            if not pace(t0 + i * frame_s):
                i = max(i, int((time.perf_counter() - t0) / frame_s))  # behind: frame numbers follow the clock
        return {
            "teleport_complete_s": [None if d is None else round(d, 3) for d in done],
            "teleport_coarse_s": [None if d is None else round(d, 3) for d in coarse],
            "stall_ms_max": round(max(stall_ms), 1) if stall_ms else None,
            "stall_ms_p99": round(float(np.percentile(stall_ms, 99)), 1) if stall_ms else None,
            "tile_ms_max": round(max(tile_ms), 1) if tile_ms else None,
            "frames_over_100ms": int(sum(ms > 100.0 for ms in stall_ms)),
            "boot_s": round(boot_s, 3), "loading_s": round(loading_s, 3), "loading_complete": loading_complete,
            "path_s": round(duration, 3),
            "gc_frozen": frozen,
            "poses_skipped": max(0, int(round(duration * opts.fps)) - len(stall_ms)),
        }
    finally:
        gc.unfreeze()
