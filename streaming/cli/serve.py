"""``worldstream serve``: one world over websockets, and with ``--http`` Cesium terrain,
imagery and 3D Tiles on the same port, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio

import streaming.cli.args as A
from runtime.tiles import MAX_LEVEL, World
from streaming.cli.compose import DEFAULT_SHARED_BYTES, SHARED_MIN_PROCS, build_server


def cmd_serve(args) -> int:
    import runtime.tin.warmup  # noqa: F401  (registers the mesher's warm-up)
    from runtime import jit
    from streaming.http import HttpConfig
    from streaming.server import serve_forever
    from streaming.tileservice import ServiceConfig

    cfg = ServiceConfig(max_batch=args.max_batch, batch_wait_s=args.batch_wait_ms / 1000.0,
                        cache_bytes=args.cache_mb << 20, workers=args.workers, step_s=args.step_ms / 1000.0)
    if args.http_max_level is not None and not args.http:
        raise ValueError("--http-max-level needs --http")
    http = None
    if args.http:
        http = HttpConfig() if args.http_max_level is None else HttpConfig(max_level=args.http_max_level)
    server = build_server(args.world, args.seed, args.refiner, args.token, args.origin, args.store, cfg,
                          gen_cache_bytes=None if args.gen_cache_mb is None else args.gen_cache_mb << 20,
                          http=http, mesh_procs=args.mesh_procs, terrain_only=args.terrain_only,
                          features=args.features, probe=args.probe, gen_procs=args.gen_procs,
                          gen_shard_up=args.gen_shard_up, gen_backends=args.gen_backends,
                          gen_shared_bytes=args.gen_shared_mb if args.gen_shared_mb == "auto"
                          else args.gen_shared_mb << 20)
    jit.warm()  # compiled kernels loaded (or compiled once per machine) before any request
    if args.accept_rate != server.config.accept_rate:
        server.set_accept_rate(args.accept_rate)
    asyncio.run(serve_forever(server, args.host, args.port, loop_nice=args.loop_nice))
    return 0


def register(sub) -> None:
    sp = sub.add_parser("serve", help="serve a world over websockets (and HTTP with --http) until interrupted")
    A.world_args(sp, World.EARTH)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=A.int_in(0, 65535, "port"), default=8765)
    sp.add_argument("--token", default=None,
                    help="shared secret clients must send in hello (and HTTP clients as ?token=)")
    sp.add_argument("--origin", action="append", default=None, help="allowed Origin (repeatable)")
    sp.add_argument("--store", default=None,
                    help="folder of the on-disk tile store, shared with bake (default: memory only)")
    sp.add_argument("--max-batch", type=A.int_in(1, 1024, "max-batch"), default=16,
                    help="keys per generator call")
    sp.add_argument("--batch-wait-ms", type=A.int_in(0, 1000, "batch-wait-ms"), default=4,
                    help="longest wait for a batch to fill (ms)")
    sp.add_argument("--step-ms", type=A.int_in(0, 60_000, "step-ms"), default=30,
                    help="longest generator step before other clients' keys get a turn (CPU ms; 0: whole "
                         "tiles, for a GPU refiner whose batches want many blocks)")
    sp.add_argument("--cache-mb", type=A.int_in(1, 1 << 20, "cache-mb"), default=256,
                    help="tile LRU size (MiB)")
    sp.add_argument("--workers", type=A.int_in(1, 256, "workers"), default=2, help="mesh/encode threads")
    sp.add_argument("--mesh-procs", type=A.int_in(0, 256, "mesh-procs"), default=0,
                    help="mesh/encode in this many worker processes (0: on the threads; they share the GIL)")
    sp.add_argument("--gen-procs", type=A.int_or_auto(0, 256, "gen-procs"), default="auto",
                    help="generate, mesh and encode in this many worker processes, each with its own generator "
                         "(and model; on CUDA each opens the GPU), keys sharded by region (0: one generator thread; "
                         "auto, the default: 3/4 of the cores, 2 to 12, or one per core up to 16 for the learned "
                         "refiner on a GPU; 0 on one core, with --mesh-procs or with the learned refiner on the CPU)")
    sp.add_argument("--gen-shard-up", type=A.int_in(0, 8, "gen-shard-up"), default=2,
                    help="with --gen-procs: a key's worker is chosen by its ancestor this many levels up "
                         "(2: groups of 4 x 4 tiles per level share a worker and its cache)")
    sp.add_argument("--gen-backends", type=A.int_or_auto(1, 16, "gen-backends"), default="auto",
                    help="with --gen-procs and the learned refiner on a GPU: the workers share this many backend "
                         "processes (each its own CUDA context; auto, the default: one per 4 workers, 1 to 3)")
    sp.add_argument("--gen-cache-mb", type=A.int_in(1, 1 << 20, "gen-cache-mb"), default=None,
                    help="generator block cache (MiB; default: the generator's, 512)")
    sp.add_argument("--gen-shared-mb", type=A.int_or_auto(0, 1 << 20, "gen-shared-mb"), default="auto",
                    help="with --gen-procs: a table of this many MiB of generator blocks in shared memory, behind "
                         "every worker's own cache, so a block one worker made is not made again by another (0: "
                         f"none; auto, the default: {DEFAULT_SHARED_BYTES >> 20} with {SHARED_MIN_PROCS} or more "
                         "workers of a CPU refiner, else none)")
    sp.add_argument("--http", action="store_true",
                    help="also answer Cesium quantized-mesh terrain, imagery and 3D Tiles over HTTP (earth)")
    sp.add_argument("--http-max-level", type=A.int_in(0, MAX_LEVEL, "http-max-level"), default=None,
                    help="with --http: deepest level advertised in layer.json and tileset.json (default 16)")
    sp.add_argument("--terrain-only", action="store_true",
                    help="no buildings or trees in 3D Tiles GLBs and no surface 'buildings' height queries")
    sp.add_argument("--features", action="store_true",
                    help="serve the feature layer (land cover, buildings, trees) to clients that ask for it")
    sp.add_argument("--loop-nice", type=A.int_in(-20, 19, "loop-nice"), default=0,
                    help="nice of the event loop thread (e.g. -5, needs CAP_SYS_NICE: cached answers get a CPU "
                         "before generator work and other processes; 0: unchanged)")
    sp.add_argument("--accept-rate", type=A.float_in(0.0, 1e6, "accept-rate"), default=200.0,
                    help="new connections accepted per second, 0 (no limit) or >= 10 (bursts of 100); beyond it "
                         "newcomers wait in the kernel's backlog, never refused (docs/PROTOCOL.md)")
    sp.add_argument("--probe", action="store_true",
                    help="add event-loop lag, GIL waits and CPU per thread to every stats answer (streaming/probe.py)")
    sp.set_defaults(func=cmd_serve)
