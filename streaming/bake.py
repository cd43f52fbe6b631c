"""Bake a region into the tile store on Ray, and export a store as static files.

``worldstream bake`` pre-generates every tile of a bounding box over a range of
levels (plus, by default, the ancestors up to the roots, which any client loads
first) into the same on-disk store the servers read (streaming.store), so serving
scales out as stateless servers over a shared store (DESIGN.md section 7).

Work runs on Ray: local by default (``ray.init`` with ``--workers`` CPUs), or a
cluster given ``--ray-address``. One actor per worker keeps its generator open
(opening one costs about a second); each task bakes several tiles (``--tiles-per-task``)
so scheduling costs little per tile. Where the cluster has GPUs there is one actor
per GPU instead. Resumable: keys the store already holds are skipped (``--verify``
also checks their checksums), and the store's atomic writes mean an interrupted
bake leaves only whole tiles behind.

``worldstream export`` writes what a store holds as static files any web server can
host: quantized-mesh terrain (``terrain/``) plus colour imagery (``imagery/``), or
3D Tiles 1.1 (``3dtiles/``), with the same layout as the HTTP endpoints.

This module never imports the generator: bakers are handed an ``open_pyramid``
callable (``(world name, seed) -> pyramid`` with ``model_id`` and ``tiles(keys)``),
which the CLI composes (``streaming.cli.compose.pyramid_opener``). On Ray it travels
pickled, so it must be importable on the workers (a module-level function or a
``functools.partial`` of one).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.tiles import MAX_LEVEL, T, TileKey, World, spacing_deg, spacing_m, tiles_x, tiles_y

REPO_ROOT = Path(__file__).resolve().parents[1]

PyramidOpener = Callable[[str, int], Any]
"""``open_pyramid(world_name, seed)`` -> an object with ``model_id: str`` and
``tiles(keys) -> iterable of fields`` (``generator.pyramid.Pyramid``)."""


# ---------------------------------------------------------------- planning (pure)


@dataclass(frozen=True)
class BBox:
    """A region: earth in degrees (west, south, east, north), plane in metres (east, north)."""

    west: float
    south: float
    east: float
    north: float

    def __post_init__(self):
        if not all(math.isfinite(v) for v in (self.west, self.south, self.east, self.north)):
            raise ValueError("bbox values must be finite numbers")
        if not (self.west < self.east and self.south < self.north):
            raise ValueError(f"bbox must be WEST,SOUTH,EAST,NORTH with west < east and south < north, got {self}")

    @classmethod
    def parse(cls, text: str) -> "BBox":
        try:
            v = [float(p) for p in text.split(",")]
        except ValueError:
            v = []
        if len(v) != 4:
            raise ValueError(f"bbox must be four numbers WEST,SOUTH,EAST,NORTH, got {text!r}")
        return cls(*v)


def parse_levels(text: str) -> tuple[int, int]:
    """``A..B`` (inclusive) or ``A`` -> (A, B), both in [0, MAX_LEVEL]."""
    parts = text.split("..")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or not 0 <= lo <= hi <= MAX_LEVEL:
        raise ValueError(f"levels must be A..B with 0 <= A <= B <= {MAX_LEVEL}, got {text!r}")
    return lo, hi


def bbox_keys(world: World, bbox: BBox, level: int) -> list[TileKey]:
    """The tiles of ``level`` that overlap ``bbox`` (earth: clipped to the globe), row-major."""
    if world is World.EARTH:
        d = spacing_deg(level) * T
        x0, x1 = math.floor((bbox.west + 180.0) / d), math.ceil((bbox.east + 180.0) / d) - 1
        y0, y1 = math.floor((90.0 - bbox.north) / d), math.ceil((90.0 - bbox.south) / d) - 1
        x0, x1 = max(x0, 0), min(x1, tiles_x(world, level) - 1)
        y0, y1 = max(y0, 0), min(y1, tiles_y(world, level) - 1)
    else:
        s = spacing_m(level) * T
        x0, x1 = math.floor(bbox.west / s), math.ceil(bbox.east / s) - 1
        y0, y1 = math.floor(-bbox.north / s), math.ceil(-bbox.south / s) - 1
    return [TileKey(level, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def plan_keys(world: World, bbox: BBox, levels: tuple[int, int], ancestors: bool = True) -> list[TileKey]:
    """Every key to bake, coarse levels first (a client needs ancestors before children).

    With ``ancestors``, the ancestors of the region's tiles up to level 0 come too, and
    on earth both level-0 tiles (CesiumJS loads every root tile)."""
    lo, hi = levels
    keys: set[TileKey] = set()
    for level in range(lo, hi + 1):
        keys.update(bbox_keys(world, bbox, level))
    if ancestors:
        for k in bbox_keys(world, bbox, lo):
            keys.update(k.ancestor(level) for level in range(k.level))
        if world is World.EARTH:
            keys.update((TileKey(0, 0, 0), TileKey(0, 1, 0)))
    return sorted(keys)


def chunked(keys: Sequence[TileKey], n: int) -> list[list[TileKey]]:
    if n < 1:
        raise ValueError(f"tiles per task must be >= 1, got {n}")
    return [list(keys[i:i + n]) for i in range(0, len(keys), n)]


# ---------------------------------------------------------------- workers


@dataclass(frozen=True)
class ChunkResult:
    tiles: int  # tiles generated and stored
    bytes: int  # frame bytes written
    skipped: int  # already in the store when the task ran (another baker got there first)
    seconds: float


class Baker:
    """Bakes chunks of keys into the store. Runs as a Ray actor (or in-process).

    ``open_pyramid(world_name, seed)`` opens the generator (see ``PyramidOpener``)."""

    def __init__(self, world: str, seed: int, store_root: str, open_pyramid: PyramidOpener,
                 error_scale: float = 1.0, durable: bool = True):
        from streaming.store import TileStore
        from streaming.tileservice import mesh_encoder

        self.world = World.parse(world)
        self.pyramid = open_pyramid(self.world.value, seed)
        self.store = TileStore(store_root, self.pyramid.model_id, self.world.value, seed, durable=durable)
        self.encode = mesh_encoder(error_scale)

    def model_id(self) -> str:
        return self.pyramid.model_id

    def bake(self, keys: list[TileKey]) -> ChunkResult:
        t0 = time.perf_counter()
        todo = [k for k in keys if k not in self.store]
        n_bytes = 0
        if todo:
            for key, fields in zip(todo, self.pyramid.tiles(todo)):  # one generator batch per task
                frame = self.encode(self.world, key, fields)
                self.store.put(key, frame)
                n_bytes += len(frame)
        return ChunkResult(len(todo), n_bytes, len(keys) - len(todo), time.perf_counter() - t0)


# ---------------------------------------------------------------- driver


@dataclass(frozen=True)
class BakeReport:
    planned: int  # keys in the plan
    skipped: int  # already stored before or while baking
    tiles: int  # baked now
    bytes: int
    seconds: float
    workers: int
    gpus: int
    startup_s: float = 0.0  # opening Ray and the workers' generators, inside ``seconds``

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_tiles_per_s(self) -> float:
        """Throughput once the workers are up (what a longer bake approaches)."""
        busy = self.seconds - self.startup_s
        return self.tiles / busy if busy > 0 else 0.0

    def line(self) -> str:
        return (f"baked {self.tiles} tiles ({self.skipped} already stored, {self.planned} planned), "
                f"{self.bytes / 1e6:.1f} MB, {self.tiles_per_s:.1f} tiles/s in {self.seconds:.1f} s "
                f"on {self.workers} workers ({self.gpus} GPUs; {self.steady_tiles_per_s:.1f} tiles/s after "
                f"{self.startup_s:.1f} s of start-up)")


class Progress:
    """A one-line progress bar on a terminal; a line per tenth of the work elsewhere."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.stream, self.width = total, stream or sys.stderr, width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self._last_decile = -1

    def update(self, done: int, tiles: int, n_bytes: int) -> None:
        frac = done / self.total if self.total else 1.0
        dt = time.perf_counter() - self.t0
        rate = tiles / dt if dt > 0 else 0.0
        eta = (self.total - done) / (done / dt) if done and dt > 0 else float("nan")
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        text = (f"[{bar}] {done}/{self.total} keys  {tiles} baked  {n_bytes / 1e6:.1f} MB  "
                f"{rate:.1f} tiles/s  ETA {eta:.0f} s")
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done >= self.total else ""))
        elif int(frac * 10) > self._last_decile or done >= self.total:
            self._last_decile = int(frac * 10)
            self.stream.write(text + "\n")
        self.stream.flush()


def _ray_init(address: str | None, workers: int | None):
    import ray

    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, runtime_env=env,
                 log_to_driver=False, configure_logging=False)
    return ray


def bake(world: World | str, seed: int, keys: Sequence[TileKey], store_root: str | os.PathLike, *,
         open_pyramid: PyramidOpener, ray_address: str | None = None, workers: int | None = None,
         tiles_per_task: int = 8, verify: bool = False, progress_stream=None,
         max_chunks: int | None = None, use_ray: bool = True) -> BakeReport:
    """Bake ``keys`` into the store at ``store_root`` on Ray; returns the report.

    ``open_pyramid(world_name, seed)`` opens the generator in every worker (see
    ``PyramidOpener``). ``max_chunks`` stops after that many tasks (a partial bake, for
    tests and trials); ``use_ray=False`` bakes in this process (same tasks, no cluster:
    debugging, tiny jobs)."""
    from streaming.store import TileStore

    world = World.parse(world)
    t0 = time.perf_counter()
    # In-process, the one baker's generator also names the model; on Ray the driver
    # opens one only to name the store before deciding whether Ray is needed at all.
    baker = None if use_ray else Baker(world.value, seed, str(store_root), open_pyramid)
    model = baker.model_id() if baker is not None else open_pyramid(world.value, seed).model_id
    store = TileStore(store_root, model, world.value, seed)
    store.sweep()
    stored = [k for k in keys if (store.get(k) is not None if verify else k in store)]
    held = set(stored)
    todo = [k for k in keys if k not in held]
    chunks = chunked(todo, tiles_per_task)
    if max_chunks is not None:
        chunks = chunks[:max_chunks]
    progress = Progress(len(keys), progress_stream)
    done, tiles, n_bytes, skipped = len(stored), 0, 0, len(stored)
    progress.update(done, tiles, n_bytes)
    n_workers = n_gpus = 0
    startup_s = 0.0
    if chunks and baker is not None:
        n_workers, startup_s = 1, time.perf_counter() - t0
        for chunk in chunks:
            r = baker.bake(chunk)
            tiles, n_bytes, skipped = tiles + r.tiles, n_bytes + r.bytes, skipped + r.skipped
            done += r.tiles + r.skipped
            progress.update(done, tiles, n_bytes)
    elif chunks:
        ray = _ray_init(ray_address, workers)
        try:
            n_gpus = int(ray.cluster_resources().get("GPU", 0))
            if n_gpus:
                n_workers = n_gpus
                actor_cls = ray.remote(num_gpus=1, num_cpus=1)(Baker)
            else:
                n_workers = max(1, min(int(ray.cluster_resources().get("CPU", 1)), workers or 1 << 30))
                actor_cls = ray.remote(num_cpus=1)(Baker)
            n_workers = min(n_workers, len(chunks))
            actors = [actor_cls.remote(world.value, seed, str(store_root), open_pyramid) for _ in range(n_workers)]
            models = ray.get([a.model_id.remote() for a in actors])
            startup_s = time.perf_counter() - t0
            if any(m != model for m in models):
                raise RuntimeError(f"workers opened model {set(models)} but the driver has {model}: "
                                   "install the same worldstream version on every node")
            # Two tasks in flight per actor: the next one is queued while one runs.
            pending, queue, owner = {}, list(reversed(chunks)), {}
            for a in actors * 2:
                if queue:
                    ref = a.bake.remote(queue.pop())
                    pending[ref], owner[ref] = True, a
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    r: ChunkResult = ray.get(ref)
                    del pending[ref]
                    a = owner.pop(ref)
                    tiles, n_bytes, skipped = tiles + r.tiles, n_bytes + r.bytes, skipped + r.skipped
                    done += r.tiles + r.skipped
                    progress.update(done, tiles, n_bytes)
                    if queue:
                        nxt = a.bake.remote(queue.pop())
                        pending[nxt], owner[nxt] = True, a
        finally:
            ray.shutdown()
    return BakeReport(len(keys), skipped, tiles, n_bytes, time.perf_counter() - t0, n_workers, n_gpus, startup_s)


# ---------------------------------------------------------------- export


def open_store(store_root: str | os.PathLike, world: str | None = None, seed: int | None = None):
    """The store namespace under ``store_root`` (one per model, world and seed); with several,
    ``world`` and ``seed`` choose. Raises FileNotFoundError / ValueError saying what exists."""
    from streaming.store import TileStore

    root = Path(store_root)
    metas = sorted(root.glob("*/namespace.json"))
    if not metas:
        raise FileNotFoundError(f"no tile store under {root} (expected */namespace.json; run worldstream bake)")
    found = [json.loads(p.read_text()) for p in metas]
    pick = [m for m in found if (world is None or m["world"] == world) and (seed is None or m["seed"] == seed)]
    if len(pick) != 1:
        names = ", ".join(f"{m['world']} seed {m['seed']} model {m['model']}" for m in found)
        raise ValueError(f"expected exactly one store namespace matching world={world} seed={seed} under "
                         f"{root}, found: {names}")
    m = pick[0]
    return TileStore(root, m["model"], m["world"], m["seed"], durable=False)


def stored_keys(store) -> list[TileKey]:
    """Keys of the tiles a store holds (files ``<level>/<x>_<y>.tile``), sorted."""
    keys = []
    for p in store.root.glob("*/*.tile"):
        try:
            x, y = (int(v) for v in p.stem.split("_"))
            key = TileKey(int(p.parent.name), x, y)
        except ValueError:
            continue
        if store.path(key) == p:
            keys.append(key)
    return sorted(keys)


@dataclass(frozen=True)
class ExportReport:
    tiles: int
    files: int
    bytes: int
    corrupt: int  # tiles that failed their checksum (left out)
    seconds: float

    def line(self, out: Path) -> str:
        return (f"exported {self.tiles} tiles as {self.files} files, {self.bytes / 1e6:.1f} MB to {out} in "
                f"{self.seconds:.1f} s" + (f" ({self.corrupt} corrupt tiles left out)" if self.corrupt else ""))


def _write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


def export_store(store, out: str | os.PathLike, fmt: str, progress_stream=None, water=None,
                 features=None) -> ExportReport:
    """Write the store's tiles as static ``quantized-mesh`` (terrain/ + imagery/) or
    ``3dtiles`` (3dtiles/) files under ``out``. ``water``: the world's water
    (``ecosystem.WaterMask``), written as the quantized-mesh water mask when given;
    ``features``: the world's buildings and trees (``ecosystem.Features``, of the store's
    model), drawn in every 3D Tiles GLB and counted in its height range when given."""
    from streaming import ecosystem as E
    from streaming import implicit as I

    if fmt not in ("quantized-mesh", "3dtiles"):
        raise ValueError(f"format must be quantized-mesh or 3dtiles, got {fmt!r}")
    if store.world != World.EARTH.value:
        raise ValueError(f"quantized-mesh and 3D Tiles exports are geographic: they need the earth world, "
                         f"the store holds {store.world}")
    t0 = time.perf_counter()
    out = Path(out)
    keys = stored_keys(store)
    if not keys:
        raise ValueError(f"the store {store.root} holds no tiles")
    progress = Progress(len(keys), progress_stream)
    files = n_bytes = corrupt = 0
    good = []
    # Every stored tile is known: edges shared by two stored tiles get the joined mesh's
    # normals on both sides (runtime.tin.stitch), so borders do not show as lines.
    edges = E.NeighbourEdges(World.EARTH, store.get)
    heights = {}  # 3D Tiles: key -> content height range (tile boxes)
    for i, key in enumerate(keys):
        frame = store.get(key)
        if frame is None:
            corrupt += 1
            continue
        good.append(key)
        mesh, tile = E.frame_mesh(frame)
        mesh = edges.stitched(mesh)
        if fmt == "quantized-mesh":
            n_bytes += _write(out / "terrain" / E.terrain_path_of(key),
                              E.mesh_terrain_bytes(mesh, E.TERRAIN_EXTENSIONS if water else ("octvertexnormals",),
                                                   water))
            n_bytes += _write(out / "imagery" / f"{key.level}/{key.x}/{key.y}.png", E.imagery_png(frame))
            files += 2
        else:
            feats = features(key) if features is not None else None
            n_bytes += _write(out / "3dtiles" / E.glb_path_of(key), E.mesh_glb(mesh, tile.image, feats))
            heights[key] = E.tile_height_range(frame, World.EARTH, feats)
            files += 1
        progress.update(i + 1, len(good), n_bytes)
    if not good:
        raise ValueError(f"no intact tile in {store.root}")
    name = f"worldstream {store.world} seed {store.seed} ({store.model})"
    if fmt == "quantized-mesh":
        data = json.dumps(E.terrain_layer_json(good, name=name, water=water is not None), indent=1).encode()
        n_bytes += _write(out / "terrain" / "layer.json", data)
        files += 1
    else:
        max_level = max(k.level for k in good)
        roots = sorted({I.implicit_coord(k).root for k in good if k.level == 0})
        if not roots:
            raise ValueError("3D Tiles need the level-0 tiles: bake with ancestors (the default)")
        lo, hi = min(h[0] for h in heights.values()), max(h[1] for h in heights.values())
        data = json.dumps(I.implicit_tileset_json(max_level, roots, height_range_m=(lo, hi)), indent=1).encode()
        n_bytes += _write(out / "3dtiles" / "tileset.json", data)
        files += 1
        for coord, blob in I.subtrees_for(good, max_level, heights_m=heights).items():
            n_bytes += _write(out / "3dtiles" / I.subtree_path_of(coord), blob)
            files += 1
    return ExportReport(len(good), files, n_bytes, corrupt, time.perf_counter() - t0)


__all__ = ["BBox", "Baker", "BakeReport", "ExportReport", "PyramidOpener", "bake", "bbox_keys", "chunked",
           "export_store", "open_store", "parse_levels", "plan_keys", "stored_keys"]
