"""The client tile pipeline: decoded wire tiles -> drawable tiles -> the renderer.

- ``client_tile(world, key, decoded)`` is the one call from a decoded tile
  (``runtime.wire.DecodedTile``) to what the streamer caches: the placed, skirted surface
  (float32 relative to a float64 centre), the colour image, the TIN for height queries,
  the selection's ``TileInfo`` and the bytes it costs (CPU + GPU).
- ``drawable(world, tile, parent)`` is the surface to upload: with geomorph targets when the
  parent is here (CDLOD), else the tile's own.
- ``Flight`` couples one world's ``TileStreamer``, a tile client and a renderer: per frame it
  receives, selects, requests, uploads and evicts; it stitches edge normals with same-level
  neighbours and keeps children morphing toward their parent's current surface.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from runtime import wire
from runtime.geometry import geodetic_to_ecef
from runtime.heights import TileSurface, height_at
from runtime.lod.scheduler import SchedulerOptions
from runtime.lod.selection import SPECULATIVE_LEVELS, SelectionOptions, TileInfo, View
from runtime.lod.streamer import StreamerOptions, TileStreamer
from runtime.tiles import TileKey, World, neighbour, skirt_depth_for
from runtime.tin import (
    Surface,
    kernels,
    morph_grid,
    morph_window,
    stitch_edge_normals,
    tin_surface,
    tin_to_grid,
    with_morph,
)
from viewer.features import place_features
from viewer.renderer import tile_gpu_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlightOptions:
    """error_target_px: selection's screen-space error target (pixels); cache_bytes: the
    streamer's budget for cached tiles, CPU and GPU bytes together; geomorph: upload
    children with their parent's surface as morph targets."""

    error_target_px: float = 2.0
    cache_bytes: int = 768 << 20
    geomorph: bool = True
    realtime: bool = False              # prepare tiles on a worker thread, budget re-uploads per frame
    max_uploads_per_frame: int = 32     # new tiles made drawable per frame (the streamer's budget)
    upload_budget_ms: float | None = None  # realtime: frame time for new uploads (count from their measured cost)
    reupload_budget_ms: float = 6.0     # realtime: frame time for deferred re-uploads (stitch, morph)
    place_procs: int = 0                # realtime: decode and place tiles in this many worker processes (0: a thread)
    guess_levels: int | None = SPECULATIVE_LEVELS  # tiles asked for down to this many levels below known data


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
    tile_latency_ms: list[float] = field(default_factory=list)  # request -> prepared (decoded, placed)
    late_tiles: int = 0            # arrived after the client had cancelled them
    duplicate_tiles: int = 0       # arrived for a key the client already had (asked twice)
    tile_cpu_s: float = 0.0        # frame thread CPU on tiles: placing, morph targets, uploads
    prepare_cpu_s: float = 0.0     # realtime worker thread CPU placing tiles
    uploads: int = 0               # renderer uploads, re-uploads included
    step_ms_max: dict = field(default_factory=dict)  # longest receive / select / upload / request (ms)


class ClientTile:
    """What the streamer caches per tile (see ``client_tile``). ``surface`` changes when
    edge normals are stitched with a neighbour; the rasterised height grid (features) and
    each child's quarter of it (that child's morph targets) are made on first use."""

    __slots__ = ("surface", "image", "tin", "info", "nbytes", "_grid", "_quarters", "layer", "placed", "_morph")

    def __init__(self, surface: Surface, image: np.ndarray | None, tin: TileSurface, info: TileInfo, nbytes: int,
                 layer=None, placed=None):
        self.surface, self.image, self.tin, self.info, self.nbytes = surface, image, tin, info, nbytes
        self._grid = None
        self._quarters: dict = {}  # child TileKey's (x & 1, y & 1) -> morph_grid
        self.layer = layer  # runtime.featurelayer.FeatureLayer or None
        self.placed = placed  # viewer.features.PlacedFeatures (buildings, trees) or None
        self._morph = None  # (parent's Surface, morph_dh_m, morph_normals, parent's TIN): see drawable

    @property
    def ge_m(self) -> float:
        """The tile's geometric error (metres)."""
        return self.info.geometric_error_m

    def grid(self) -> np.ndarray:
        """(T+1, T+1) float32 heights (metres) of the TIN rasterised on the sample grid."""
        if self._grid is None:
            self._grid = tin_to_grid(self.tin.grid_rc, self.tin.height_m, self.tin.faces)
        return self._grid

    def morph_grid(self, child: TileKey) -> np.ndarray:
        """(T/2 + 2, T/2 + 2) float32 heights (metres): the part of this tile's rasterised TIN
        that ``child``'s morph targets read (``runtime.tin.morph_grid``), a quarter of the
        raster; a slice of ``grid()`` when that was made."""
        q = (child.x & 1, child.y & 1)
        if q not in self._quarters:
            if self._grid is not None:
                (r0, r1), (c0, c1) = morph_window(child)
                self._quarters[q] = self._grid[r0:r1 + 1, c0:c1 + 1]
            else:
                self._quarters[q] = morph_grid(self.tin.grid_rc, self.tin.height_m, self.tin.faces, child)
        return self._quarters[q]


def client_tile(world: World, key: TileKey, tile: wire.DecodedTile) -> ClientTile:
    """A decoded tile -> its surface with skirts, colour ((H, W, 3) uint8 or None), TIN,
    selection info (height range, geometric error) and byte cost (surface arrays, colour
    and what ``TerrainRenderer.upload`` will allocate)."""
    skirt = skirt_depth_for(tile.geometric_error_m)
    surface = tin_surface(world, key, tile.grid_rc, tile.height_m, tile.faces,
                          (tile.west, tile.south, tile.east, tile.north), skirt)
    image = wire.decode_image(tile.image) if tile.image is not None else None
    info = TileInfo(float(np.min(tile.height_m)), float(np.max(tile.height_m)), tile.geometric_error_m)
    tin = TileSurface(key, grid_rc=tile.grid_rc, height_m=tile.height_m, faces=tile.faces)
    layer = tile.features  # the optional feature layer: classes, buildings, trees
    out = ClientTile(surface, image, tin, info, 0, layer)
    if layer is not None and (len(layer.buildings) or len(layer.trees)):  # standing on the drawn TIN
        out.placed = place_features(world, key, layer, out.grid(), surface.center_m)
    classes = layer.classes if layer is not None else None
    out.nbytes = (surface.nbytes + tile_gpu_bytes(surface, image, None, classes, out.placed)
                  + sum(a.nbytes for a in (image, classes, out.placed) if a is not None))
    return out


def drawable(world: World, tile: ClientTile, parent: ClientTile | None) -> tuple[Surface, float]:
    """(surface to upload, parent's geometric error in metres): with morph targets toward
    ``parent``'s surface when given, else the tile's own surface and 0 (no morph)."""
    if parent is None:
        return tile.surface, 0.0
    # The morph targets depend on the tile's samples (not on its stitched normals), the
    # parent's grid (this child's quarter of it) and the parent's surface (its edge
    # normals): kept per parent surface, so a re-upload after stitching, or an upload
    # after the realtime preparer made them, costs no rasterising or morphing on the frame
    # thread; after the parent was restitched only the parent-border normals are made again.
    cached = tile._morph
    if cached is not None and cached[0] is parent.surface:
        return replace(tile.surface, morph_dh_m=cached[1], morph_normals=cached[2]), parent.ge_m
    if cached is not None and cached[3] is parent.tin and parent.surface.edges:
        morphed = with_morph(world, tile.surface, None, parent.surface, kept=(cached[1], cached[2]))
    else:
        morphed = with_morph(world, tile.surface, parent.morph_grid(tile.surface.key), parent.surface)
    if parent.surface.edges:  # else the targets took the tile's own border normals: not kept
        tile._morph = (parent.surface, morphed.morph_dh_m, morphed.morph_normals, parent.tin)
    return morphed, parent.ge_m


def stitch(world: World, a: ClientTile, b: ClientTile) -> bool:
    """Give two tiles exact normals on their shared edge (both change); False when they
    are not same-level neighbours."""
    pair = stitch_edge_normals(world, a.surface, b.surface)
    if pair is None:
        return False
    a.surface, b.surface = pair
    return True


class _Preparer:
    """Realtime: a worker thread that takes tiles from the client as they arrive and makes
    their ClientTile (placement, skirts, normals, colour), so the frame thread only adds
    morph targets and uploads. The height grid a child morphs toward (its quarter of the
    parent's raster, ``ClientTile.morph_grid``, 1-7 ms) is rasterised here when that child
    arrives, not for every tile: most tiles of a view are leaves whose children never come. ``out`` holds (key,
    ClientTile | Exception | None, arrival perf_counter seconds).

    ``urgency(key)`` (lower is sooner; None: cancelled and no longer wanted) orders what
    has arrived and is not placed yet: the most urgent is placed first, and a tile the
    client gave up on is passed on as None without being placed."""

    RECENT = 2048  # placed tiles remembered to find a newcomer's parent

    def __init__(self, world: World, client, stats: FlightStats, urgency=None):
        self.world, self.client, self.stats = world, client, stats
        self.urgency = urgency or (lambda key: 0.0)
        self._recent: dict[TileKey, ClientTile] = {}  # insertion-ordered: oldest first
        self.out: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads = self._start()

    def _start(self) -> list[threading.Thread]:
        """The threads that place tiles (here one), started."""
        t = threading.Thread(target=self._run, name="tile-prepare", daemon=True)
        t.start()
        return [t]

    def _next(self, pending: list) -> tuple:
        """Take the item to handle now: dropped tiles and errors first (they cost nothing),
        then the most urgent tile."""
        best, best_u = 0, None
        for i, (key, tile) in enumerate(pending):
            u = float("-inf") if tile is None or isinstance(tile, Exception) else self.urgency(key)
            if u is None:
                return pending.pop(i) + (None,)
            if best_u is None or u < best_u:
                best, best_u = i, u
        return pending.pop(best) + (best_u,)

    def _gather(self, pending: list) -> bool:
        """Add what arrived to ``pending``, waiting a little when nothing is pending; False
        while nothing is."""
        if not pending:
            item = self.client.wait(0.05)
            if item is None:
                return False
            pending.append(item)
        pending.extend(self.client.poll())
        return True

    def _run(self) -> None:
        pending: list = []
        while not self._stop.is_set():
            if not self._gather(pending):
                continue
            key, tile, urgency = self._next(pending)
            if tile is None or (urgency is None and not isinstance(tile, Exception)):
                # given up on: not placed (None: the network thread did not decode it either)
                self.out.put((key, None, time.perf_counter()))
                continue
            if not isinstance(tile, Exception):
                t0 = time.thread_time()
                try:
                    tile = self._finish(key, client_tile(self.world, key, tile))
                except Exception as exc:  # a tile that can not be placed fails alone
                    tile = exc
                self.stats.prepare_cpu_s += time.thread_time() - t0
            self.out.put((key, tile, time.perf_counter()))

    def _finish(self, key: TileKey, tile: ClientTile) -> ClientTile:
        """A placed tile's morph targets, made here, never on the frame thread: the parent's
        grid when its first child comes, this tile's targets if a child came first."""
        parent = self._recent.get(key.parent()) if key.level else None
        if parent is not None:
            drawable(self.world, tile, parent)  # the parent's grid and this tile's morph
        for child in key.children():
            placed = self._recent.get(child)
            if placed is not None:  # came first: its morph toward this tile, here too
                drawable(self.world, placed, tile)
        self._remember(key, tile)
        return tile

    def _remember(self, key: TileKey, tile: ClientTile) -> None:
        self._recent.pop(key, None)
        self._recent[key] = tile
        if len(self._recent) > self.RECENT:
            del self._recent[next(iter(self._recent))]

    def poll(self) -> list:
        out = []
        while True:
            try:
                out.append(self.out.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)


class _PoolPreparer(_Preparer):
    """``_Preparer`` with decoding and placing in worker processes (``viewer.placepool``):
    the client delivers raw wire payloads, a dispatcher thread gives the most urgent one to
    the next idle worker, and a collector thread maps each result back and makes its morph
    targets (``_finish``, in this process: they need the parent's tile). Same ``out``,
    ``poll`` and ``close``."""

    def __init__(self, world: World, client, stats: FlightStats, urgency=None, procs: int = 1):
        import multiprocessing as mp

        from viewer.placepool import PlacePool

        self.pool = PlacePool(world, procs, client_tile)
        try:
            self._lock = threading.Lock()  # the pool's busy set: submitted here, collected there
            self._slots = threading.Semaphore(len(self.pool))
            self._wake_r, self._wake_w = mp.Pipe(duplex=False)  # a submit wakes the collector
            super().__init__(world, client, stats, urgency)
        except BaseException:
            self.pool.close()  # no worker process outlives a preparer that never started
            raise

    def _start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._dispatch, name="tile-dispatch", daemon=True),
                   threading.Thread(target=self._collect, name="tile-collect", daemon=True)]
        for t in threads:
            t.start()
        return threads

    def _dispatch(self) -> None:
        pending: list = []
        while not self._stop.is_set():
            if not self._gather(pending) or not self._slots.acquire(timeout=0.05):
                continue
            key, tile, urgency = self._next(pending)  # chosen when a worker is free: the most urgent now
            if tile is None or isinstance(tile, Exception) or urgency is None:
                # nothing to place: an error passes on as it is, a given-up tile as None
                self._slots.release()
                self.out.put((key, tile if isinstance(tile, Exception) else None, time.perf_counter()))
                continue
            with self._lock:
                self.pool.submit(self.pool.idle()[0], key, tile)
            self._wake_w.send_bytes(b"")

    def _collect(self) -> None:
        from multiprocessing.connection import wait

        while not self._stop.is_set():
            with self._lock:
                busy = self.pool.busy()
            for conn in wait([*busy, self._wake_r], 0.05):
                if conn is self._wake_r:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                    continue
                t0 = time.thread_time()
                with self._lock:
                    key, tile, worker_cpu_s = self.pool.collect(busy[conn])
                self._slots.release()
                if not isinstance(tile, Exception):
                    try:
                        tile = self._finish(key, tile)
                    except Exception as exc:  # a tile that can not be placed fails alone
                        tile = exc
                self.stats.prepare_cpu_s += worker_cpu_s + time.thread_time() - t0
                self.out.put((key, tile, time.perf_counter()))

    def close(self) -> None:
        super().close()
        self.pool.close()
        self._wake_r.close()
        self._wake_w.close()


class Flight:
    """Couples one world's TileStreamer, a tile client and a renderer.

    client: ``request(keys, priorities)``, ``cancel(keys)``, ``poll() -> [(key, DecodedTile
    | Exception)]``, ``wait(timeout_s) -> item | None`` (``streaming.client.SyncTileClient``).

    Re-uploads that follow an arrival (stitched neighbours, children that morph toward a
    new or restitched parent) are collected per frame and done once each; in realtime
    they get ``reupload_budget_ms`` of each frame and the rest waits (those tiles are
    drawn meanwhile with their previous normals / morph targets), tiles are placed on a
    worker thread (``_Preparer``) and requests / cancels are sent without waiting for the
    network thread (``request_nowait`` / ``cancel_nowait`` where the client has them).
    Call ``close()`` when done.
    """

    def __init__(self, world: World, client, renderer, options: FlightOptions = FlightOptions()):
        kernels.warm()  # the compiled per-tile loops: loaded (or compiled) now, not on the first tile
        self.world = world
        self.client = client
        self.renderer = renderer
        self.options = options
        self.streamer = TileStreamer(world, StreamerOptions(
            selection=SelectionOptions(error_target_px=options.error_target_px,
                                       speculative_levels=options.guess_levels),
            scheduler=SchedulerOptions(max_uploads_per_frame=options.max_uploads_per_frame),
            cache_bytes=options.cache_bytes))
        self.stats = FlightStats()
        self.in_flight: set = set()
        self._stash: list = []
        self.last = None
        self.geomorph = options.geomorph
        self._requested: dict[TileKey, float] = {}  # key -> perf_counter at request
        self._cancelled: set[TileKey] = set()
        self._dirty: dict[TileKey, None] = {}  # drawn tiles to upload again (ordered, once each)
        self._preparer = None
        if options.realtime and options.place_procs > 0 and hasattr(client, "set_decode"):
            try:  # the client hands over raw payloads: the workers decode them
                self._preparer = _PoolPreparer(world, client, self.stats, self._urgency, options.place_procs)
                client.set_decode(False)
            except Exception as exc:  # no processes here (a sandbox, no spawn): the thread does it
                log.warning("tile place processes unavailable (%s): placing on a thread", exc)
        if options.realtime and self._preparer is None:
            self._preparer = _Preparer(world, client, self.stats, self._urgency)
        if self._preparer is not None and hasattr(client, "set_skip_decode"):
            # A tile cancelled and not wanted again is not decoded on arrival either.
            client.set_skip_decode(lambda key: self._urgency(key) is None)
        self._upload_ms = 2.0  # running mean wall ms of one new upload on the frame thread (stitch, morph, pack)

    def _max_uploads(self) -> int | None:
        """New tiles to make drawable this frame: as many as ``upload_budget_ms`` holds at
        their measured cost, 1 .. ``max_uploads_per_frame`` (None: the streamer's count)."""
        budget = self.options.upload_budget_ms
        if self._preparer is None or budget is None:
            return None
        return max(1, min(self.options.max_uploads_per_frame, int(budget / max(self._upload_ms, 0.05))))

    def _urgency(self, key: TileKey) -> float | None:
        """For the preparer thread: the key's priority in the last plan; None when it was
        cancelled and is no longer wanted (a tile still wanted is placed even if its
        request made way for a more urgent one)."""
        p = self.streamer.scheduler.wanted_priority(key)
        if p is None and key in self._cancelled:
            return None
        return float("inf") if p is None else p

    def close(self) -> None:
        """Stop the realtime worker thread (if any)."""
        if self._preparer is not None and hasattr(self.client, "set_skip_decode"):
            self.client.set_skip_decode(None)
        if isinstance(self._preparer, _PoolPreparer):
            self.client.set_decode(True)
        if self._preparer is not None:
            self._preparer.close()
            self._preparer = None

    def wait_for_tile(self, timeout_s: float) -> None:
        """Block until a tile (or error) arrives or ``timeout_s`` passes; it is staged."""
        if self._preparer is not None:
            try:
                self._stash.append(self._preparer.out.get(timeout=timeout_s))
            except queue.Empty:
                pass
            return
        item = self.client.wait(timeout_s)
        if item is not None:
            self._stash.append(item + (time.perf_counter(),))

    def receive(self) -> int:
        """Place (unless the worker did) and stage what arrived; returns how many tiles."""
        n = 0
        if self._preparer is not None:
            items = self._stash + self._preparer.poll()
        else:
            now = time.perf_counter()
            items = self._stash + [it + (now,) for it in self.client.poll()]
        self._stash = []
        for key, tile, arrived in items:
            if key in self.streamer.known:
                self.stats.duplicate_tiles += 1
            self.in_flight.discard(key)
            if key in self._cancelled:
                self._cancelled.discard(key)
                self.stats.late_tiles += 1
            t_req = self._requested.pop(key, None)
            if tile is None:  # the preparer dropped it: cancelled and no longer wanted
                continue
            if isinstance(tile, Exception):
                log.warning("tile %s failed: %s", key, tile)
                self.stats.tiles_failed += 1
                self.streamer.on_failed(key)
                continue
            if not isinstance(tile, ClientTile):
                t0 = time.thread_time()
                tile = client_tile(self.world, key, tile)
                self.stats.tile_cpu_s += time.thread_time() - t0
                arrived = time.perf_counter()
            if t_req is not None:
                self.stats.tile_latency_ms.append((arrived - t_req) * 1e3)
            self.streamer.on_tile(key, tile.info, tile.nbytes, tile)
            # Children drawn before their parent arrived were uploaded without morph
            # targets: give them their targets.
            self._refresh_children(key, unmorphed_only=True)
            self.stats.tiles_received += 1
            self.stats.bytes_received += getattr(tile, "nbytes", 0)
            n += 1
        return n

    def step(self, camera, velocity_mps=np.zeros(3)):
        """Receive, select, request, upload and evict for one frame (no drawing).

        camera: a Camera, or a list of them (sensors: one selection serves all views)."""
        t0 = time.perf_counter()
        self.receive()
        t1 = time.perf_counter()
        cams = camera if isinstance(camera, (list, tuple)) else [camera]
        views = [View(c, np.asarray(velocity_mps if i == 0 else np.zeros(3), np.float64))
                 for i, c in enumerate(cams)]
        res = self.streamer.frame(views, clock=time.perf_counter, max_uploads=self._max_uploads())
        t_cpu = time.thread_time()
        for key in res.evicted:
            self.renderer.release(key)
            self._dirty.pop(key, None)
        gone = set(res.evicted)
        t_up, n_up = time.perf_counter(), 0
        for key in res.uploaded:
            # The streamer may report a key uploaded and evicted in one frame (an undrawn
            # tile over the byte budget): nothing to upload then.
            if key not in gone and self.streamer.payload(key) is not None:
                self._upload(key)
                n_up += 1
        if n_up:
            self._upload_ms += 0.25 * ((time.perf_counter() - t_up) * 1e3 / n_up - self._upload_ms)
        if self._preparer is None:
            self._flush_reuploads(None)
        else:  # the frame's upload budget: what new uploads left of it, else at least one re-upload
            spent_ms = (time.perf_counter() - t1 - res.select_s) * 1e3
            self._flush_reuploads(self.options.reupload_budget_ms - spent_ms, at_least_one=spent_ms < 0.5)
        self.stats.tile_cpu_s += time.thread_time() - t_cpu
        t2 = time.perf_counter()
        self.stats.gpu_bytes_max = max(self.stats.gpu_bytes_max, self.renderer.gpu_bytes)
        plan = res.plan
        # Cancels first: the server drops stale work before it can pick it for the generator.
        if plan.cancel:
            send = getattr(self.client, "cancel_nowait", None) if self._preparer is not None else None
            (send or self.client.cancel)(plan.cancel)
            self.in_flight.difference_update(plan.cancel)
            for k in plan.cancel:
                self._requested.pop(k, None)
                self._cancelled.add(k)
        # runtime priorities: lower is sooner; the protocol's: higher is sooner.
        start = list(plan.start)
        moved = getattr(self.client, "reprioritise_nowait" if self._preparer is not None else "reprioritise", None)
        if moved is not None:  # only for tiles not received yet (a request would fetch them again)
            if plan.reprioritise:
                moved([k for k, _ in plan.reprioritise], [-p for _, p in plan.reprioritise])
        else:
            start += list(plan.reprioritise)
        if start:
            send = getattr(self.client, "request_nowait", None) if self._preparer is not None else None
            (send or self.client.request)([k for k, _ in start], [-p for _, p in start])
            now = time.perf_counter()
            for k, _ in plan.start:
                self.in_flight.add(k)
                self._requested[k] = now
                self._cancelled.discard(k)
        self.last = res
        m = self.stats.step_ms_max
        for name, ms in (("receive", t1 - t0), ("select", res.select_s), ("upload", t2 - t1 - res.select_s),
                         ("request", time.perf_counter() - t2)):
            m[name] = max(m.get(name, 0.0), ms * 1e3)
        return res

    def settle(self, cameras, timeout_s: float, velocity_mps=np.zeros(3)):
        """Step until the view is complete at the error target and nothing is in flight;
        raises TimeoutError after ``timeout_s`` (0: one step only).

        cameras: a Camera, a list of them, or a callable returning either, called before
        every step (terrain following: the camera moves as finer ground arrives)."""
        deadline = time.perf_counter() + timeout_s
        while True:
            res = self.step(cameras() if callable(cameras) else cameras, velocity_mps)
            if res.selection.complete and not self.in_flight and not res.uploaded and not self._dirty:
                return res
            if time.perf_counter() >= deadline:
                if timeout_s > 0:
                    raise TimeoutError(f"view not complete after {timeout_s} s "
                                       f"({len(self.in_flight)} tiles in flight)")
                return res
            if self.in_flight and not res.uploaded:
                self.wait_for_tile(0.05)

    def _stitch(self, key: TileKey, t: ClientTile) -> None:
        """Exact normals on edges shared with same-level neighbours already here (both
        tiles change; an uploaded neighbour is queued for upload again)."""
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nk = neighbour(self.world, key, dx, dy)
            other = self.streamer.payload(nk) if nk is not None else None
            if other is None or not stitch(self.world, t, other):
                continue
            if nk in self.renderer.tiles:
                self._dirty[nk] = None
            # Drawn children morph toward their parent's normals on the parent's border:
            # give the two along the stitched edge (of each tile) the new ones, or what a
            # frame shows would depend on arrival order. Inner borders morph toward the
            # parent's grid, which stitching does not change.
            self._refresh_children(key, unmorphed_only=False, side=(dx, dy))
            self._refresh_children(nk, unmorphed_only=False, side=(-dx, -dy))

    def _refresh_children(self, parent: TileKey, unmorphed_only: bool, side: tuple[int, int] | None = None) -> None:
        """Queue the drawn children of ``parent`` for upload again so that they morph towards
        its current surface: all of them, or only those drawn before it arrived (no targets).
        side: (dx, dy) of one edge (x east, y south): only the two children along it."""
        if not self.geomorph:
            return
        for child in parent.children():
            if side is not None and not ((side[0] and (child.x & 1) == (side[0] > 0))
                                         or (side[1] and (child.y & 1) == (side[1] > 0))):
                continue
            gpu = self.renderer.tiles.get(child)
            if gpu is None or self.streamer.payload(child) is None:
                continue
            if not unmorphed_only or gpu.parent_ge_m == 0.0:
                self._dirty[child] = None

    def _flush_reuploads(self, budget_ms: float | None, at_least_one: bool = True) -> None:
        """Upload queued tiles again, once each: all of them (budget None), else while
        ``budget_ms`` of this frame is left, and one even without budget when
        ``at_least_one`` (a frame without new uploads), so the queue always drains."""
        t0 = time.perf_counter()
        done = 0
        while self._dirty:
            if (budget_ms is not None and (time.perf_counter() - t0) * 1e3 >= budget_ms
                    and (done or not at_least_one)):
                return
            key = next(iter(self._dirty))
            del self._dirty[key]
            if key in self.renderer.tiles and self.streamer.payload(key) is not None:
                self._upload(key, stitch=False)
                done += 1

    def _upload(self, key: TileKey, stitch: bool = True) -> None:
        t = self.streamer.payload(key)
        if stitch:
            self._stitch(key, t)
        self._dirty.pop(key, None)  # uploaded now with its current neighbours and parent
        # Ancestors load first, so the parent is nearly always here; without it the tile
        # is drawn unmorphed.
        parent = self.streamer.payload(key.parent()) if key.level > 0 and self.geomorph else None
        surface, parent_ge = drawable(self.world, t, parent)
        self.renderer.upload(surface, t.image, parent_ge_m=parent_ge, layer=t.layer, placed=t.placed)
        self.stats.uploads += 1

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
        self._ground_key = res.keys[0]
        return float(res.height_m[0])

    def surface_m(self, x: float, y: float) -> float | None:
        """What a pilot flies over: the ground, or the water level where water covers it (the
        drawn tile's: 0 m, or a lake's surface below it, ``viewer.renderer.water_level``)."""
        g = self.ground_m(x, y)
        if g is None or not getattr(self.renderer.lighting, "water", False):
            return g
        t = getattr(self.renderer, "tiles", {}).get(self._ground_key)
        return max(g, getattr(t, "water_m", 0.0))

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


def stop_in_process(server, thread: threading.Thread, loop: asyncio.AbstractEventLoop) -> None:
    """Close a server started by ``start_in_process`` and end its thread."""
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
