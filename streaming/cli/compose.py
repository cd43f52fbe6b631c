"""The composition: generator -> tile service (LRU, optional disk store, batching) ->
height service -> websocket server (+ optional HTTP endpoints).

The only place, with the command modules beside it, that imports both the generator and
the streaming pieces; the library modules are handed what they need (a tile source, a
pyramid opener, an HTTP handler)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os

from runtime.tiles import ANCHOR_LEVEL, World

log = logging.getLogger(__name__)


def open_world(world: World | str, seed: int, refiner: str | None = None, cache_bytes: int | None = None):
    """The generator pyramid of ``world`` for ``seed``. ``refiner``: fractal, learned or None
    (the best available); ``cache_bytes``: its block cache (None: the generator's default)."""
    from generator.pyramid import open_world as open_pyramid

    kwargs = {} if cache_bytes is None else {"cache_bytes": cache_bytes}
    return open_pyramid(World.parse(world).value, seed, refiner=refiner or "auto", **kwargs)


def pyramid_opener(refiner: str | None = None, features: bool = False):
    """``open_pyramid(world_name, seed)`` for ``streaming.bake`` (picklable for Ray workers);
    ``features``: tiles with the feature layer, stored as ``serve --features`` stores them."""
    if features:
        from generator.layer import open_layered

        return functools.partial(open_layered, refiner=refiner or "auto")
    from generator.pyramid import open_world as open_pyramid

    return functools.partial(open_pyramid, refiner=refiner or "auto")


def worker_source(world: str, seed: int, refiner: str | None, cache_bytes: int | None, features: bool,
                  backend_conn=None, *, backend_name: str | None = None, shared=None):
    """(tile source, its ``prepare``, model id) of a generator worker process
    (``streaming.genprocs``; given as a picklable partial): the pyramid ``build_server``
    opens, in the worker. ``backend_conn``: the worker's way to the server's shared learned
    backend (``streaming.sharedbackend``, named ``backend_name``: a pipe's end or a backend
    process's address), which its learned refiner calls instead of opening a model of its own.
    ``shared``: the server's ``generator.sharedblocks.SharedBlocks``, behind the pyramid's own cache."""
    if backend_conn is not None:
        from generator.learned.refiner import LearnedRefiner
        from streaming.sharedbackend import RemoteBackend

        refiner = LearnedRefiner(world, backend=RemoteBackend(backend_conn, backend_name))
    pyr = open_world(world, seed, refiner, cache_bytes=cache_bytes)
    if shared is not None:
        pyr.share(shared)
    if features:
        from generator.layer import layered_source

        return layered_source(pyr), pyr.prepare, pyr.model_id
    return pyr.tiles, pyr.prepare, pyr.model_id


DEFAULT_SHARED_BYTES = 256 << 20
"""The generator workers' shared block table where there is one (3,968 blocks of 64 x 64 samples
and 4 channels)."""
SHARED_MIN_PROCS = 2


def auto_shared_bytes(gen_procs: int, gpu: bool = False) -> int:
    """``serve --gen-shared-mb auto``: ``DEFAULT_SHARED_BYTES`` with ``SHARED_MIN_PROCS`` or more
    generator workers of a CPU refiner, else none. ``gpu``: workers that call a learned backend
    on a GPU (16-sample blocks, host work a block a fraction of the fractal's): none. Measured
    on an H100 (16 workers x 3 backends, plane, ``bench/throughput_device.sh`` with
    ``TP_ARGS="--gen-shared-mb 0 256"``, 2026-12-07): 699.3 uncached tiles/s without the
    table, 618.2 with it, 16.5 -> 21.2 server CPU ms a tile.
    On the 2-core box (2 workers, fractal, six alternated pairs) the table made more uncached
    tiles a second in 5 of 6 plane pairs (mean 159.8 -> 180.9) and 4 of 6 earth pairs (108.5 ->
    110.7), once a miss took no lock; with 8 workers more in every pair (plane 125.3 -> 150.2,
    169.3 -> 180.2; earth 104.5 -> 110.2, 109.9 -> 121.9; docs/BENCHMARKS.md, 2026-12-07)."""
    return DEFAULT_SHARED_BYTES if gen_procs >= SHARED_MIN_PROCS and not gpu else 0


def open_shared_blocks(pyr, budget_bytes: int):
    """A ``generator.sharedblocks.SharedBlocks`` of ``budget_bytes`` for ``pyr``'s model, or
    None: ``budget_bytes`` 0, or shared memory unavailable here (logged; the workers then use
    their own caches only)."""
    if budget_bytes <= 0:
        return None
    from generator.sharedblocks import SharedBlocks

    try:
        return SharedBlocks.create(budget_bytes, pyr.channels, pyr.block, pyr.model_id)
    except OSError as exc:
        log.warning("no shared block table for the generator workers (%s): each uses its own cache", exc)
        return None


WARM_KEY = (ANCHOR_LEVEL + 3, 0, 0)
"""The tile a compiled model makes before the server serves (its graphs built, as the workers do)."""


def warm_compiled(pyr) -> tuple | None:
    """Make one tile 3 levels under the anchor when ``pyr``'s refiner runs a compiled backend
    (torch-compiled, TensorRT), so its graphs are built before the first request: on an H100
    the thread server's first view otherwise waited behind torch.compile, and the real-time
    flight's 10 s loading screen timed out (docs/BENCHMARKS_LOG.md, 2026-12-06). The key, or None
    (nothing to warm)."""
    from runtime.tiles import TileKey

    if not getattr(pyr.refiner, "compiled", False):
        return None
    pyr.tiles([TileKey(*WARM_KEY)])
    return WARM_KEY


def learned_backend(world: str, refiner: str = "learned"):
    """The backend of ``refiner`` (a learned one) for ``world``, as ``open_world`` builds it:
    a ``streaming.sharedbackend.BackendProcess``'s ``make_backend`` (with functools.partial)."""
    from generator.refiner import make_refiner

    r = make_refiner(refiner, world)
    if getattr(r, "name", "") != "learned":
        raise ValueError(f"refiner {refiner!r} is {getattr(r, 'name', r)!r} here, not the learned one")
    return r.backend


def feature_source(pyramid):
    """``key -> {"buildings": (N, 5), "trees": (M, 3)}`` float32 of ``pyramid``'s tiles
    (``streaming.ecosystem.Features``; generator.features, land cover computed once per
    tile; empty arrays at levels that carry neither)."""
    import numpy as np

    from generator.features import BUILDING_LEVELS, NO_BUILDINGS, NO_TREES, TREE_LEVELS, buildings, trees
    from generator.landcover import tile_landcover

    def features(key) -> dict[str, np.ndarray]:
        if key.level not in BUILDING_LEVELS and key.level not in TREE_LEVELS:
            return {"buildings": NO_BUILDINGS, "trees": NO_TREES}
        h = pyramid.tile(key).height
        lc = tile_landcover(pyramid, key, h)
        return {"buildings": buildings(pyramid.world, pyramid.seed, key, h, lc),
                "trees": trees(pyramid.world, pyramid.seed, key, lc, h)}

    return features


def lake_source(world):
    """The world's inland water for height queries: points (n, 2) -> (n,) float64 lake surface m,
    NaN where none (``runtime.ground.water_at``'s ``lake_m``); None on the plane (no lakes yet)."""
    if World.parse(world) is not World.EARTH:
        return None
    from generator.water import earth_lake_surface

    return earth_lake_surface


def building_source(pyramid):
    """``(key, heights (T+1, T+1)) -> buildings (N, 5)`` float32 of ``pyramid``'s tiles, for
    ``surface: "buildings"`` height queries (``streaming.heights.Buildings``)."""
    from generator.features import BUILDING_LEVELS, buildings
    from generator.landcover import tile_landcover

    def of(key, heights_m):
        return buildings(pyramid.world, pyramid.seed, key, heights_m, tile_landcover(pyramid, key, heights_m))

    of.levels = BUILDING_LEVELS
    return of


def build_server(world: World | str, seed: int, refiner: str | None = None, token: str | None = None,
                 origins=None, store_dir: str | os.PathLike | None = None, service_config=None, limits=None,
                 gen_cache_bytes: int | None = None, http=None, mesh_procs: int = 0, terrain_only: bool = False,
                 features: bool = False, probe: bool = False, gen_procs: int | str = 0,
                 gen_shard_up: int | None = None, share_backend: bool | None = None,
                 gen_backends: int | str = "auto", gen_shared_bytes: int | str = "auto"):
    """A ``streaming.server.TileServer`` for ``world`` (``World`` or its name), not started.

    ``store_dir``: folder of the on-disk tile store (None: memory only); ``service_config``:
    ``ServiceConfig`` (batching, LRU, workers); ``limits``: protocol ``Limits``;
    ``gen_cache_bytes``: the generator's block cache (None: its default); ``http``: an
    ``streaming.http.HttpConfig`` to answer Cesium terrain, imagery and 3D Tiles on the same
    port (earth only; ValueError otherwise, before any generator opens); ``mesh_procs``: mesh
    and encode in that many worker processes (``streaming.procencode``; 0: on the service's
    threads); ``terrain_only``: no buildings and trees in the 3D Tiles GLBs (``http``) and no
    ``surface: "buildings"`` height queries (both are there by default);
    ``features``: serve the feature layer (``generator.layer``: land cover, buildings,
    trees) to clients that ask for it in their hello (docs/PROTOCOL.md); ``probe``: latency
    counters in every ``stats`` answer (``streaming.probe``); ``gen_procs``: generate, mesh and
    encode in that many worker processes, each with its own pyramid (``streaming.genprocs``;
    0: the generator thread; "auto": ``streaming.genprocs.auto_procs()``, 0 with ``mesh_procs``
    or the learned refiner on the CPU), keys sharded by their ancestor ``gen_shard_up``
    levels up; ``share_backend``: with the learned refiner, the workers call this process's
    one backend (``streaming.sharedbackend``) instead of each opening the model (None: when
    the backend is compiled, i.e. on a GPU, where one context per worker time-slices it);
    ``gen_backends``: that many backend processes for the workers to share, each worker with
    one of them (``streaming.sharedbackend.BackendPool``; "auto": ``auto_backends``);
    ``gen_shared_bytes``: with ``gen_procs``, a table of that many bytes of pyramid blocks in
    shared memory behind every worker's own cache (``generator.sharedblocks``; 0: none; "auto":
    ``auto_shared_bytes``)."""
    from streaming.heights import HeightConfig, HeightService
    from streaming.protocol import Limits
    from streaming.server import TileServer
    from streaming.session import ServerInfo
    from streaming.store import TileStore
    from streaming.tileservice import ServiceConfig, TileService

    world = World.parse(world)
    if http is not None and world is not World.EARTH:
        raise ValueError(f"HTTP terrain and 3D Tiles endpoints need the earth world, got {world.value}")
    pyr = open_world(world, seed, refiner, cache_bytes=gen_cache_bytes)
    limits = limits or Limits()
    source, layers = pyr.tiles, ()
    if features:
        from generator.layer import layered_model_id, layered_source
        from runtime.featurelayer import LAYER

        source, layers = layered_source(pyr), (LAYER,)
    store = None
    if store_dir:
        # frames with the layer are other bytes: their own folder (the store keys it by model)
        store_model = layered_model_id(pyr.model_id) if features else pyr.model_id
        store = TileStore(store_dir, model=store_model, world=world.value, seed=seed)
        store.sweep()  # temporary files of writers killed long ago
    cfg = service_config or ServiceConfig()
    compiled = getattr(pyr.refiner, "compiled", False)
    # the learned refiner's workers call backend processes that own the model (a GPU's, by default)
    shared = pyr.refiner.name == "learned" and (compiled if share_backend is None else share_backend)
    if gen_procs == "auto":
        # workers for the CPU refiners and for the compiled learned one (a GPU), whose workers
        # share backend processes (``share_backend``) and so are one per core: 16 workers and 3
        # backend processes made 662.5 uncached tiles/s on the plane on an H100, 12 workers 559.6,
        # the thread server 283 in an earlier run (docs/BENCHMARKS.md). None with mesh processes,
        # none with the learned refiner on the CPU (each worker would hold its own model and threads).
        from streaming.genprocs import auto_procs

        learned_cpu = pyr.refiner.name.startswith("learned") and not compiled
        gen_procs = 0 if mesh_procs or learned_cpu else auto_procs(gpu=shared)
    if gen_procs and mesh_procs:
        raise ValueError("--gen-procs workers mesh and encode their own tiles: give --mesh-procs 0 with it")
    encode = remote = None
    if gen_procs:
        from streaming.genprocs import SHARD_UP, GenProcs, GenSpec

        if getattr(pyr.refiner, "prefers_batches", False):
            # GPU round trips: a batch's keys share each level's call in the workers, which call the
            # shared backend (the thread server, --gen-procs 0, keeps its time-sized batches:
            # docs/DECISIONS.md 47)
            cfg = dataclasses.replace(cfg, full_batches=True)
        backend = None
        if shared:
            # one process owns the model for every worker (not this one: its GIL is the event loop's)
            from streaming.sharedbackend import BackendPool, auto_backends

            n = auto_backends(gen_procs) if gen_backends == "auto" else int(gen_backends)
            backend = BackendPool(functools.partial(learned_backend, world.value, refiner or "auto"), n)
            if backend.name != getattr(pyr.refiner.backend, "name", None):
                backend.close()
                raise RuntimeError(f"the shared backend is {backend.name}, this server's {pyr.refiner.backend.name}")
        table = open_shared_blocks(pyr, auto_shared_bytes(gen_procs, gpu=shared) if gen_shared_bytes == "auto"
                                   else int(gen_shared_bytes))
        opener = functools.partial(worker_source, world.value, seed, refiner, gen_cache_bytes, features,
                                   backend_name=None if backend is None else backend.name, shared=table)
        # A compiled model builds its graphs on first use: in the warm-up, one worker first
        # (the others then load torch's cached compile instead of compiling at once).
        warm = (WARM_KEY,) if compiled else ()
        remote = GenProcs(gen_procs, GenSpec(world.value, opener, cfg.error_scale, cfg.step_s,
                                             warm_keys=warm, first_alone=compiled),
                          backend=backend, shared=table,
                          shard_up=SHARD_UP if gen_shard_up is None else gen_shard_up)
        if remote.model != pyr.model_id:
            remote.close()
            raise RuntimeError(f"generator workers made model {remote.model}, the server's is {pyr.model_id}")
    if mesh_procs:
        from streaming.procencode import ProcessEncoder

        encode = ProcessEncoder(mesh_procs, cfg.error_scale)
    if not gen_procs:
        warm_compiled(pyr)
    service = TileService(world, source, cfg, store=store, encode=encode, prepare=pyr.prepare, remote=remote)
    heights = HeightService(world, service.fields, HeightConfig(max_level=limits.max_level,
                                                                max_tiles=limits.max_height_tiles),
                            buildings=None if terrain_only else building_source(pyr), lakes=lake_source(world))
    service.on_fields = heights.remember
    info = ServerInfo(world=world.value, seed=seed, model=pyr.model_id, token=token, limits=limits, layers=layers)
    endpoints = None
    if http is not None:
        from generator.water import earth_water_mask
        from streaming.http import HttpEndpoints

        endpoints = HttpEndpoints(service, name=f"worldstream {world.value} seed {seed} ({pyr.model_id})",
                                  token=token, allowed_origins=origins, config=http, water=earth_water_mask,
                                  features=None if terrain_only else feature_source(pyr))
    from streaming.probe import Probe

    return TileServer(info, service, heights=heights, allowed_origins=origins, http=endpoints,
                      probe=Probe() if probe else None)
