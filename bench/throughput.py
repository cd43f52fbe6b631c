"""Server throughput saturated, not demand-paced: uncached tiles/s at levels 8-16 (issue 15).

Per world and refiner, a fresh `worldstream serve` process (no store, so every tile is
generated, meshed and encoded) gets every key at once from ``--clients`` connections with
credit windows large enough that the server, not the client, sets the pace: blocks of
``--block`` x ``--block`` tiles at each level 8..16 around a land site (bench/flight.py's
sites; the plane's near its origin). Measured:

- ``uncached_tiles_per_s``: keys / (first request -> last frame received); the server
  process's CPU seconds over that wall time give the cores it used, and per tile
  (``server_cpu_ms_per_tile``) what the rate would be on N free cores with perfect
  parallelism (N * 1000 / ms): the number to compare when other jobs share the machine;
  ``server_main_cpu_ms_per_tile``: the server process alone (without mesh worker processes);
- ``cached_tiles_per_s``: the same keys again (all in the server's LRU): the send path;
- the per-stage breakdown in the same run, in this process on a sample of the same kind of
  keys (a fresh pyramid, so nothing is cached), CPU ms per tile: ``generate`` (the
  pyramid's ``prepare`` in 30 ms steps then ``tiles``, one key per call as the server's
  generator runs at saturation on a CPU), ``mesh+encode``
  (``streaming.tileservice.encode_fields``: RTIN + wire codec + colour image),
  ``frame`` (the msgpack tile frame), ``client decode`` (``runtime.wire.decode_tile``),
  ``client surface`` (``viewer.flight.client_tile``: placement, skirts, normals, colour),
  ``client raster`` (``morph_grid``: the child's quarter of its parent's height grid, what
  its morph targets read, per child whose parent is in the sample), ``client morph``
  (``with_morph`` per such child) and ``client upload`` (the CPU side of an upload,
  ``vertex_array`` + ``chunk_layout``, per tile; a re-upload of the same tile skips the
  face sort).

The machine is whatever runs it; on the project's 2-core box other jobs share the cores,
so compare numbers only within one run. Last line: one JSON object,
``{"uncached_tiles_per_s": {world: {refiner: n}}, ...}``.

    PYTHONPATH=. python bench/throughput.py --quick          # 4x4 blocks, fractal, both worlds
    PYTHONPATH=. python bench/throughput.py --refiner fractal learned
    PYTHONPATH=. python bench/throughput.py --quick --mesh-procs 0 2    # threads vs 2 mesh processes
    PYTHONPATH=. python bench/throughput.py --quick --mesh-procs 0 2 --gen-procs 0 2   # and 2 generator processes

``--threads`` adds, under each row, the CPU of every thread of the server's processes over the
uncached phase (CPU ms a tile; processes of the same shape on one line): where CPU that no
Python profiler sees goes (CUDA's and OpenMP's native threads, spinning waits).

``--gen-procs``: ``serve --gen-procs N`` runs (generate + mesh + encode in N worker processes,
streaming/genprocs.py), each with ``--mesh-procs 0``; 0 in the list keeps the ``--mesh-procs``
runs. ``server_rss_mb`` gives the server's resident memory after the uncached run: the main
process and each worker process (generator or mesh workers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve import ServerProcess  # noqa: E402  (bench/serve.py)

from runtime.tiles import T, TileKey, World, spacing_deg, spacing_m, tiles_x, tiles_y  # noqa: E402
from streaming.client import TileClient  # noqa: E402
from streaming.protocol import Limits  # noqa: E402

LEVELS = range(8, 17)
SITES = {World.PLANE: (1_000.0, -2_000.0), World.EARTH: (7.6, 46.0)}  # bench/flight.py's start sites
# --warm's site: far enough that none of its tiles or pyramid blocks is one the timed run asks for
WARM_SITES = {World.PLANE: (401_000.0, -2_000.0), World.EARTH: (11.3, 43.8)}


def key_at(world: World, level: int, x: float, y: float) -> tuple[int, int]:
    """(tile x, tile y) holding point (x, y): plane metres east/north, earth lon/lat."""
    if world is World.EARTH:
        d = spacing_deg(level)
        col, row = (x + 180.0) / d, (90.0 - y) / d
    else:
        d = spacing_m(level)
        col, row = x / d, -y / d
    return math.floor(col / T), math.floor(row / T)


def block_keys(world: World, block: int, levels=LEVELS, site=None) -> list[TileKey]:
    """``block`` x ``block`` tiles per level around ``site`` (default the world's), coarse levels first."""
    keys = []
    for lv in levels:
        cx, cy = key_at(world, lv, *(site or SITES[world]))
        for dy in range(block):
            for dx in range(block):
                x, y = cx + dx - block // 2, cy + dy - block // 2
                nx, ny = tiles_x(world, lv), tiles_y(world, lv)
                if (nx is not None and not 0 <= x < nx) or (ny is not None and not 0 <= y < ny):
                    continue
                keys.append(TileKey(lv, x, y))
    return keys


async def _drain(url: str, keys: list[TileKey], timeout_s: float) -> tuple[float, int, int]:
    """Request ``keys`` on one connection at once; (seconds to the last frame, frames, bytes)."""
    c = TileClient(window=max(64, 2 * len(keys)), decode=False)
    await c.connect(url)
    try:
        t0 = time.perf_counter()
        await c.request(keys, [0.0] * len(keys))
        got, nbytes, want = 0, 0, set(keys)
        async with asyncio.timeout(timeout_s):
            while want:
                try:
                    key, tile = await asyncio.wait_for(c.tiles.get(), 1.0)
                except TimeoutError:
                    if c.errors:  # a refused request (e.g. over the server's max_in_flight) never
                        raise c.errors[0] from None  # answers per key: fail now, not at the timeout
                    continue
                if isinstance(tile, Exception):
                    raise tile
                want.discard(key)
                got += 1
                nbytes += sum(len(v) for v in tile.values() if isinstance(v, bytes | bytearray))
        return time.perf_counter() - t0, got, nbytes
    finally:
        await c.close()


async def saturate(url: str, keys: list[TileKey], clients: int, timeout_s: float) -> tuple[float, int, int]:
    """Split ``keys`` over ``clients`` connections (more where one would hold more than the
    server's ``max_in_flight`` keys), all requested at once; (wall s, frames, bytes)."""
    clients = max(clients, -(-len(keys) // Limits().max_in_flight))
    parts = [keys[i::clients] for i in range(clients)]
    t0 = time.perf_counter()
    res = await asyncio.gather(*(_drain(url, p, timeout_s) for p in parts if p))
    return time.perf_counter() - t0, sum(r[1] for r in res), sum(r[2] for r in res)


async def server_stats(url: str) -> dict:
    """The server's counters (a ``stats`` message on a fresh connection)."""
    c = TileClient(window=1, decode=False)
    await c.connect(url)
    try:
        return await c.stats()
    finally:
        await c.close()


def backend_counts(stats: dict) -> tuple[int, int]:
    """(requests the generator workers sent the shared learned backend, backend calls that
    answered them) from a server's stats message: 0, 0 without a shared backend."""
    server = stats.get("server", stats)
    return int(server.get("backend_requests", 0)), int(server.get("backend_calls", 0))


def stages(world: World, refiner: str, sample: list[TileKey], step_s: float = 0.03) -> dict:
    """CPU ms per tile of each stage on ``sample`` (fresh pyramid, nothing cached; the
    encoder and the refiner warmed on tiles elsewhere first, as a running server is). The
    client stages need the client's compiled loops (numba): without it they are None and only
    the server's are timed."""
    import runtime.tin.warmup  # noqa: F401  (registers the mesher's warm-up)
    from runtime import jit, wire
    from runtime.tin import morph_grid, with_morph
    from streaming.cli.compose import open_world
    from streaming.session import tile_frame
    from streaming.tileservice import encode_fields

    try:
        from runtime.tin import kernels
        from viewer.flight import client_tile, drawable
        from viewer.renderer import chunk_layout, vertex_array
    except ImportError as e:  # a machine without numba (or moderngl): the server's stages only
        print(f"stages: no client stages ({e})", file=sys.stderr)
        kernels = None

    pyr = open_world(world, 0, refiner)
    jit.warm()  # as `serve` does at start
    root = TileKey(3, 0, 0)
    encode_fields(world, root, pyr.tiles([root])[0])  # one-time start (anchors, compiling, tables) not counted
    # and the refiner's first calls, away from the sample (WARM_SITES): an anchor-level root calls no
    # refiner, so a compiled learned backend compiled inside the first run's timed "generate" (85 ms
    # a tile on an H100 against 3 ms in the next run of the same process, 2026-12-07)
    warm = TileKey(LEVELS.start, *key_at(world, LEVELS.start, *WARM_SITES[world]))
    encode_fields(world, warm, pyr.tiles([warm])[0])
    if kernels is not None:
        kernels.warm()  # the client's compiled loops, loaded at viewer start
    cpu = time.process_time
    t = {k: 0.0 for k in ("generate", "mesh+encode", "frame", "client decode", "client surface", "client raster",
                          "client morph", "client upload")}
    decoded = {}
    for key in sample:  # as the server: one key per generator call, in steps of ``step_s``
        keys = [key]
        t0 = cpu()
        while not pyr.prepare(keys, step_s)[0][0]:
            pass
        fields = pyr.tiles(keys)
        t["generate"] += cpu() - t0
        for k, f in zip(keys, fields, strict=True):
            t0 = cpu()
            payload = encode_fields(world, k, f)
            t1 = cpu()
            tile_frame(k, payload)
            t2 = cpu()
            t["mesh+encode"] += t1 - t0
            t["frame"] += t2 - t1
            if kernels is None:
                continue
            d = wire.decode_tile(payload)
            t3 = cpu()
            decoded[k] = client_tile(world, k, d)
            t4 = cpu()
            t["client decode"] += t3 - t2
            t["client surface"] += t4 - t3
    n_morph = 0
    for k, ct in decoded.items():
        parent = decoded.get(k.parent())
        if parent is None:
            continue
        t0 = cpu()
        grid = morph_grid(parent.tin.grid_rc, parent.tin.height_m, parent.tin.faces, k)  # per child, as the client
        t1 = cpu()
        with_morph(world, ct.surface, grid, parent.surface)
        t["client raster"] += t1 - t0
        t["client morph"] += cpu() - t1
        n_morph += 1
    for k, ct in decoded.items():
        surface, _ = drawable(world, ct, decoded.get(k.parent()))
        t0 = cpu()
        vertex_array(surface).tobytes()
        chunk_layout(surface)
        t["client upload"] += cpu() - t0
    out = {k: round(v * 1e3 / len(sample), 2) for k, v in t.items()}
    out["client raster"] = round(t["client raster"] * 1e3 / max(n_morph, 1), 2)
    out["client morph"] = round(t["client morph"] * 1e3 / max(n_morph, 1), 2)
    if kernels is None:
        out.update(dict.fromkeys([k for k in out if k.startswith("client")]))
    return out


def stat_cpu(path: Path) -> tuple[str, float]:
    """(name, user + system CPU seconds) from a ``/proc/PID/stat`` or ``/proc/PID/task/TID/stat``
    file (the name is the ``comm`` in parentheses; it may hold spaces and parentheses)."""
    head, rest = path.read_text().rsplit(")", 1)
    fields = rest.split()
    return head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` alone (the server without its workers)."""
    return stat_cpu(Path(f"/proc/{pid}/stat"))[1]


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its live descendants (worker processes)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += stat_cpu(Path(f"/proc/{p}/stat"))[1]
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def thread_cpu_s(pid: int) -> dict:
    """CPU seconds of every thread of ``pid`` and its live descendants: {(pid, tid): (thread
    name, parent pid, seconds)} (``/proc/PID/task/TID/stat``; a thread's name is its ``comm``:
    CUDA's and OpenMP's native threads show as their own names or the process's)."""
    out, todo = {}, [(pid, 0)]
    while todo:
        p, parent = todo.pop()
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                name, cpu = stat_cpu(task / "stat")
                out[(p, int(task.name))] = (name, parent, cpu)
                todo += [(int(c), p) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def thread_report(before: dict, after: dict, tiles: int) -> list[str]:
    """Lines for ``--threads``: per process of the server's tree, busiest first, CPU ms a tile
    over the phase, and its threads that used any, busiest first (name, ms a tile); processes
    of the same shape are one line with their count."""
    procs: dict = {}
    for (p, tid), (name, parent, cpu) in after.items():
        used = cpu - before.get((p, tid), (name, parent, 0.0))[2]
        procs.setdefault(p, {"parent": parent, "threads": []})["threads"].append(
            ("main" if tid == p else name, used * 1e3 / max(tiles, 1)))
    rows: dict = {}
    for d in procs.values():
        ts = sorted((t for t in d["threads"] if t[1] >= 0.05), key=lambda t: -t[1])
        depth = "server" if d["parent"] == 0 else "worker"
        shape = (depth, len(d["threads"]), tuple(n for n, _ in ts[:4]))
        rows.setdefault(shape, []).append((sum(ms for _, ms in d["threads"]), ts))
    lines = []
    for (depth, n, _), group in sorted(rows.items(), key=lambda kv: -sum(g[0] for g in kv[1])):
        total = sum(g[0] for g in group) / len(group)
        tops: dict = {}
        for _, ts in group:
            for name, ms in ts:
                tops[name] = tops.get(name, 0.0) + ms / len(group)
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(tops.items(), key=lambda kv: -kv[1])[:6])
        lines.append(f"  threads: {len(group)} x {depth} process ({n} threads): {total:.2f} CPU ms/tile each; {top}")
    return lines


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
    except (FileNotFoundError, IndexError):
        return 0.0


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (its worker processes)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return out


def profile_window(opened: Path | None = None) -> Path | None:
    """bench/server_profile's window: with ``WORLDSTREAM_BENCH_PROFILE=DIR`` set, open it (make
    ``DIR/window``; returns its path) or close the ``opened`` one, and give every process the
    0.2 s it takes to notice (a profiled run's rates are not the product's)."""
    folder = os.environ.get("WORLDSTREAM_BENCH_PROFILE")
    if not folder:
        return None
    if opened is None:
        opened = Path(folder) / "window"
        opened.touch()
    else:
        opened.unlink()
    time.sleep(0.6)
    return opened


def run_one(world: World, refiner: str, procs: int, keys, sample, args, summary: dict, gen_procs: int = 0,
            backends: int = 1, shared_mb: int | None = None) -> None:
    """One fresh server: uncached then cached, the stages, a table row and the summary."""
    extra = ("--gen-shard-up", str(args.gen_shard_up), "--gen-backends", str(backends)) if gen_procs else ()
    if gen_procs and shared_mb is not None:
        extra += ("--gen-shared-mb", str(shared_mb))
    if args.step_ms is not None:
        extra += ("--step-ms", str(args.step_ms))
    server = ServerProcess(None, refiner=refiner, workers=args.workers, world=world.value, cache_mb=1024,
                           mesh_procs=procs, extra_args=extra,
                           gen_procs=gen_procs)
    try:
        asyncio.run(saturate(server.url, [TileKey(3, 0, 0)], 1, args.timeout))  # start-up off the clock
        if args.warm:  # the same levels at another site, off the clock (compiled refiners' buckets)
            asyncio.run(saturate(server.url, block_keys(world, args.warm, site=WARM_SITES[world]), args.clients,
                                 args.timeout))
        req0, calls0 = backend_counts(asyncio.run(server_stats(server.url)))
        window = profile_window()  # bench/server_profile: its processes profile this phase
        try:
            threads0 = thread_cpu_s(server.proc.pid) if args.threads else None
            cpu0, main0 = tree_cpu_s(server.proc.pid), proc_cpu_s(server.proc.pid)
            wall, n, nbytes = asyncio.run(saturate(server.url, keys, args.clients, args.timeout))
            cpu_s = tree_cpu_s(server.proc.pid) - cpu0
            threads = thread_report(threads0, thread_cpu_s(server.proc.pid), n) if args.threads else []
            main_s = proc_cpu_s(server.proc.pid) - main0
        finally:
            profile_window(window)
        req1, calls1 = backend_counts(asyncio.run(server_stats(server.url)))
        cores = cpu_s / wall
        rss = {"main": round(rss_mb(server.proc.pid)),
               "workers": sorted(round(rss_mb(p)) for p in child_pids(server.proc.pid))}
        cwall, cn, _ = asyncio.run(saturate(server.url, keys, args.clients, args.timeout))
    finally:
        server.stop()
    st = stages(world, refiner, sample)
    w, r = world.value, refiner + (f"+{procs}procs" if procs else "") + (f"+{gen_procs}gen" if gen_procs else "")
    r += f"x{backends}be" if backends > 1 else ""
    r += f"+shared{shared_mb}" if gen_procs and shared_mb is not None else ""
    summary["uncached_tiles_per_s"].setdefault(w, {})[r] = round(n / wall, 1)
    summary["cached_tiles_per_s"].setdefault(w, {})[r] = round(cn / cwall, 1)
    summary["server_cores"].setdefault(w, {})[r] = round(cores, 2)
    summary["server_cpu_ms_per_tile"].setdefault(w, {})[r] = round(cpu_s * 1e3 / n, 1)
    summary["server_main_cpu_ms_per_tile"].setdefault(w, {})[r] = round(main_s * 1e3 / n, 1)
    summary["stages_ms"].setdefault(w, {})[r] = st
    summary["server_rss_mb"].setdefault(w, {})[r] = rss
    backend = ""
    if req1 > req0:  # the shared learned backend: round trips a tile waits for, requests per call
        per_tile, per_call = (req1 - req0) / n, (req1 - req0) / max(calls1 - calls0, 1)
        summary.setdefault("backend_requests_per_tile", {}).setdefault(w, {})[r] = round(per_tile, 2)
        summary.setdefault("backend_requests_per_call", {}).setdefault(w, {})[r] = round(per_call, 2)
        backend = f"  backend {per_tile:.2f} requests/tile, {per_call:.2f} requests/call"
    print(f"{w:6s} {r:14s} {n:5d} {n / wall:10.1f} {cores:5.2f} {cpu_s * 1e3 / n:11.1f} {main_s * 1e3 / n:8.1f} "
          f"{cn / cwall:9.1f} {nbytes / n / 1024:8.1f}  "
          + "  ".join(f"{k} {v:.1f}" for k, v in st.items() if v is not None)
          + f"  RSS MiB main {rss['main']} workers {rss['workers']}" + backend, flush=True)
    for line in threads:
        print(line, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 x 4 tiles per level, 3 x 3 stage sample")
    ap.add_argument("--world", choices=["plane", "earth", "both"], default="both")
    ap.add_argument("--refiner", nargs="+", default=["fractal"], help="fractal and/or learned")
    ap.add_argument("--block", type=int, default=None, help="tiles per side per level (default 8, quick 4)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="the server's mesh/encode threads")
    ap.add_argument("--mesh-procs", type=int, nargs="+", default=[0],
                    help="server mesh/encode processes, one run each (0: threads)")
    ap.add_argument("--gen-procs", type=int, nargs="+", default=[0],
                    help="server generator processes (serve --gen-procs), one run each with --mesh-procs 0; "
                         "0: the --mesh-procs runs")
    ap.add_argument("--gen-shard-up", type=int, default=2, help="serve --gen-shard-up for the --gen-procs runs")
    ap.add_argument("--gen-backends", type=int, nargs="+", default=[1],
                    help="serve --gen-backends for the --gen-procs runs with the learned refiner, one run each")
    ap.add_argument("--gen-shared-mb", type=int, nargs="+", default=[None],
                    help="serve --gen-shared-mb for the --gen-procs runs, one run each (e.g. 0 256; default: the "
                         "server's)")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--warm", type=int, default=0, metavar="N",
                    help="first N x N tiles per level at another site, off the clock (compile warm-up)")
    ap.add_argument("--step-ms", type=int, default=None,
                    help="serve --step-ms (the generator's step; default: the server's own)")
    ap.add_argument("--threads", action="store_true",
                    help="also print each server process's threads' CPU ms a tile over the uncached phase")
    args = ap.parse_args(argv)
    block = args.block or (4 if args.quick else 8)
    worlds = [World.PLANE, World.EARTH] if args.world == "both" else [World.parse(args.world)]
    summary: dict = {"uncached_tiles_per_s": {}, "cached_tiles_per_s": {}, "server_cores": {},
                     "server_cpu_ms_per_tile": {}, "server_main_cpu_ms_per_tile": {}, "stages_ms": {},
                     "server_rss_mb": {}}
    print(f"{'world':6s} {'refiner':14s} {'keys':>5s} {'uncached/s':>10s} {'cores':>5s} {'CPU ms/tile':>11s} "
          f"{'main ms':>8s} {'cached/s':>9s} {'KiB/tile':>8s}  stages (CPU ms per tile)")
    for world in worlds:
        keys = block_keys(world, block)
        sample = block_keys(world, 2 if args.quick else 3)
        for refiner in args.refiner:
            runs = [(m, 0) for m in args.mesh_procs if 0 in args.gen_procs] + [(0, g) for g in args.gen_procs if g]
            for procs, gen in runs:
                for be in (args.gen_backends if gen and refiner == "learned" else [1]):
                    for mb in (args.gen_shared_mb if gen else [None]):
                        run_one(world, refiner, procs, keys, sample, args, summary, gen_procs=gen, backends=be,
                                shared_mb=mb)
    summary["levels"] = [LEVELS.start, LEVELS.stop - 1]
    summary["block"] = block
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
