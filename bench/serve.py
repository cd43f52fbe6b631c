"""Tile server under many clients: latency, throughput and memory on loopback.

A real `worldstream serve` process (plane world, fractal refiner) on 127.0.0.1 and
N clients in this process flying scripted paths: each path is a straight flight at
``speed`` m/s; every ``step`` s a client asks for the tiles of a 3 x 3 ring around
its camera at each of ``levels`` (coarse first) that it has not asked for yet.
Paths are shared by groups of clients (client i flies path i % paths), so
deduplication across clients is exercised as it would be by a fleet of simulators
over one region.

Phases per client count, each on a fresh server:
- ``uncached``: the first flight over the paths; tiles are generated, meshed,
  encoded (latency includes generation; tiles asked for by several clients at once
  are generated once).
- ``cached``: the same clients fly the same paths again; every tile is in the LRU.
Baselines in the same run: ``store`` (cached phase after a restart: tiles from the
on-disk store) and ``unbatched`` (uncached with max_batch 1, no wait).

"made/s" (``generated_per_s``) is tiles generated over the phase's wall time: the clients'
scripted demand (they ask every ``step`` s, so ~92 tiles over a 4.7 s phase in ``--quick``
is ~20/s whatever the server could do), NOT the server's speed; bench/throughput.py
measures the server saturated.

Latency = time from sending the request that holds a key to receiving its frame
(undecoded: the client's decoding is the viewer's cost, not the server's). Server
RSS is sampled from /proc every 50 ms. Everything is bounded: paths, steps and a
deadline per phase (tiles missing at the deadline count as errors).

    PYTHONPATH=. python bench/serve.py [--quick]

Last line: JSON {clients, p99_ms_cached, p99_ms_uncached, rss_mb, errors, ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.tiles import T, TileKey, spacing_m  # noqa: E402
from streaming.client import ServerError, TileClient  # noqa: E402


@dataclass(frozen=True)
class Flight:
    paths: int = 10
    steps: int = 24
    step_s: float = 0.25
    speed_m_s: float = 400.0
    levels: tuple[int, ...] = (8, 10, 12, 13, 14)
    join_s: float = 2.0  # clients come online spread over this long
    deadline_s: float = 120.0


def path_position(path: int, t_s: float, speed_m_s: float) -> tuple[float, float]:
    """(east, north) metres of ``path`` at time t: distinct start areas and headings."""
    heading = math.radians(37.0 * path)
    e0, n0 = 60_000.0 * path, -45_000.0 * path
    return e0 + speed_m_s * t_s * math.cos(heading), n0 + speed_m_s * t_s * math.sin(heading)


def wanted(levels, east_m: float, north_m: float) -> list[tuple[TileKey, float]]:
    """3 x 3 tiles around the camera at each level, coarse first (higher priority)."""
    out = []
    for lv in levels:
        s = spacing_m(lv) * T
        tx, ty = math.floor(east_m / s), math.floor(-north_m / s)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                out.append((TileKey(lv, tx + dx, ty + dy), 100.0 - lv - 0.1 * (abs(dx) + abs(dy))))
    return out


@dataclass
class ClientResult:
    join_s: list[float] = field(default_factory=list)  # latencies of the first view's tiles
    flight_s: list[float] = field(default_factory=list)  # latencies of tiles asked for in flight
    errors: int = 0


async def fly(url: str, idx: int, flight: Flight, start_at: float) -> ClientResult:
    res = ClientResult()
    c = TileClient(window=256, decode=False)
    try:
        await c.connect(url)
    except Exception:
        res.errors += 1
        return res
    sent_at: dict[TileKey, float] = {}
    first_view: set[TileKey] = set()
    got: set[TileKey] = set()

    async def receive():
        while True:
            key, tile = await c.tiles.get()
            if isinstance(tile, ServerError):
                res.errors += 1
                got.add(key)
                continue
            t = time.perf_counter()
            if key in sent_at and key not in got:
                (res.join_s if key in first_view else res.flight_s).append(t - sent_at[key])
                got.add(key)

    reader = asyncio.create_task(receive())
    path = idx % flight.paths
    try:
        for step in range(flight.steps):
            await asyncio.sleep(max(0.0, start_at + step * flight.step_s - time.perf_counter()))
            e, n = path_position(path, step * flight.step_s, flight.speed_m_s)
            new = [(k, p) for k, p in wanted(flight.levels, e, n) if k not in sent_at]
            if new:
                now = time.perf_counter()
                for k, _ in new:
                    sent_at[k] = now
                if step == 0:
                    first_view.update(k for k, _ in new)
                await c.request([k for k, _ in new], [p for _, p in new])
        deadline = start_at + flight.deadline_s
        while len(got) < len(sent_at) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        res.errors += len(sent_at) - len(got) + len([e for e in c.errors if e.key is None])
    finally:
        reader.cancel()
        await c.close()
    return res


class ServerProcess:
    """`worldstream serve` in a child process; RSS from /proc."""

    def __init__(
        self,
        store: Path | None,
        max_batch: int = 16,
        batch_wait_ms: int = 4,
        cache_mb: int = 256,
        refiner: str = "fractal",
        workers: int = 2,
        world: str = "plane",
        mesh_procs: int = 0,
        extra_args: tuple[str, ...] = (),
        keep_stderr: bool = False,
        gen_procs: int | str = 0,
    ):
        """``extra_args``: more ``serve`` options; ``keep_stderr``: collect the server's stderr
        in a temporary file (not a pipe: a chatty server must never block on it) for ``stop``;
        ``gen_procs``: ``serve --gen-procs``, always passed (0, one generator thread, is what the
        benches' recorded baselines ran; the CLI's own default is ``auto``)."""
        cmd = [
            sys.executable,
            "-m",
            "streaming.cli",
            "serve",
            "--world",
            world,
            "--seed",
            "0",
            "--refiner",
            refiner,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *(["--store", str(store)] if store is not None else []),
            "--max-batch",
            str(max_batch),
            "--batch-wait-ms",
            str(batch_wait_ms),
            "--cache-mb",
            str(cache_mb),
            "--workers",
            str(workers),
            "--mesh-procs",
            str(mesh_procs),
            "--gen-procs",
            str(gen_procs),
            *extra_args,
        ]
        self.log = tempfile.TemporaryFile("w+") if keep_stderr else None
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            },
        )
        line = self.proc.stdout.readline()
        m = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.stderr()[-2000:]}")
        self.url = f"ws://127.0.0.1:{m.group(1)}"

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident set size in MiB."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        cur = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024
        peak = int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024
        return cur, peak

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used (all threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> str:
        """Stop the server; returns its stderr when kept ('' otherwise)."""
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return self.stderr()

    def stderr(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read()


async def warm_up(url: str, flight: Flight) -> float:
    """One tile per flight level far from every path, so that one-time start costs (imports,
    anchors, compiling a refiner) are not counted as tile latency; returns seconds."""
    t = time.perf_counter()
    c = TileClient(decode=False)
    await c.connect(url)
    try:
        await c.fetch([TileKey(lv, 7919, -7919) for lv in flight.levels], timeout_s=600)
    finally:
        await c.close()
    return time.perf_counter() - t


async def server_stats(url: str) -> dict:
    c = TileClient()
    await c.connect(url)
    try:
        return (await c.stats())["server"]
    finally:
        await c.close()


def _client_worker(url: str, idxs: list[int], clients: int, flight: Flight, t0: float) -> list[ClientResult]:
    """One client process: its share of the clients in one asyncio loop (perf_counter is
    CLOCK_MONOTONIC, shared by every process of the machine)."""

    async def go():
        return await asyncio.gather(*(fly(url, i, flight, t0 + flight.join_s * i / clients) for i in idxs))

    return asyncio.run(go())


async def run_phase(server: ServerProcess, clients: int, flight: Flight, procs: int) -> dict:
    rss_peak = [0.0]
    before = await server_stats(server.url)

    async def sample():
        while True:
            rss_peak[0] = max(rss_peak[0], server.rss_mb()[0])
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    cpu0 = server.cpu_s()
    # Clients come online spread over join_s, as independent simulators would; they run
    # in `procs` processes so that the clients' own Python is not what is measured.
    t0 = time.perf_counter() + 1.0
    t_start = time.perf_counter()
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork")) as pool:
        shares = [list(range(p, clients, procs)) for p in range(procs)]
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(pool, _client_worker, server.url, idxs, clients, flight, t0)
                for idxs in shares
                if idxs
            )
        )
    results = [r for part in parts for r in part]
    wall = time.perf_counter() - t_start
    sampler.cancel()
    cpu = server.cpu_s() - cpu0
    after = await server_stats(server.url)
    join = np.array([x for r in results for x in r.join_s]) * 1000.0
    fl = np.array([x for r in results for x in r.flight_s]) * 1000.0
    lat = np.concatenate([join, fl])
    n = len(lat)

    def pct(a, q):
        return float(np.percentile(a, q)) if len(a) else float("nan")

    return {
        "clients": clients,
        "tiles": n,
        "errors": sum(r.errors for r in results),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "max_ms": float(lat.max()) if n else float("nan"),
        "p99_ms_join": pct(join, 99),
        "p99_ms_flight": pct(fl, 99),
        "tiles_per_s": n / wall,
        "wall_s": wall,
        "rss_mb": rss_peak[0],
        "server_cpu_ms_per_tile": 1000.0 * cpu / max(n, 1),
        "generated": after["generated"] - before["generated"],
        "generated_per_s": (after["generated"] - before["generated"]) / wall,
        "store_hits": after["store_hits"] - before["store_hits"],
        "mean_batch": after["mean_batch"],
    }


def fmt(name: str, r: dict) -> str:
    return (
        f"{name:<10} {r['clients']:>7} {r['tiles']:>7} {r['tiles_per_s']:>9.0f} {r['p50_ms']:>8.1f} "
        f"{r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r['p99_ms_join']:>8.1f} {r['p99_ms_flight']:>8.1f} "
        f"{r['generated']:>6} {r['generated_per_s']:>7.1f} "
        f"{r['rss_mb']:>7.0f} {r['server_cpu_ms_per_tile']:>8.2f} {r['errors']:>6}"
    )


def _finite(obj):
    """NaN (a phase with no tiles of a kind) as null: the JSON line stays strict JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer paths and steps (about 30 s)")
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--client-procs", type=int, default=2, help="processes the clients run in")
    ap.add_argument("--refiner", default="fractal", help="the server's refiner (fractal, learned, auto)")
    ap.add_argument("--workers", type=int, default=2, help="the server's mesh/encode threads")
    ap.add_argument("--paths", type=int, default=None, help="distinct flight paths (default 10; quick 4)")
    ap.add_argument("--steps", type=int, default=None, help="steps per path (default 24; quick 12)")
    args = ap.parse_args(argv)
    flight = Flight(paths=4, steps=12, levels=(8, 11, 13), join_s=1.0) if args.quick else Flight()
    if args.paths is not None:
        flight = dataclasses.replace(flight, paths=args.paths)
    if args.steps is not None:
        flight = dataclasses.replace(flight, steps=args.steps)
    srv = {"refiner": args.refiner, "workers": args.workers}
    if not 1 <= args.client_procs <= 64:
        ap.error("--client-procs must be in [1, 64]")
    if any(not 1 <= c <= 1000 for c in args.clients):
        ap.error("--clients must be in [1, 1000]")

    print(
        f"worldstream server bench: plane/{args.refiner} on 127.0.0.1, {args.workers} mesh workers, "
        f"{flight.paths} paths x {flight.steps} steps "
        f"of {flight.step_s} s at {flight.speed_m_s} m/s, levels {list(flight.levels)}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'phase':<10} {'clients':>7} {'tiles':>7} {'tiles/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'p99 join':>8} {'p99 fly':>8} "
        f"{'made':>6} {'made/s':>7} {'rss MB':>7} {'cpu ms/t':>8} {'errors':>6}"
    )
    print("(made/s: the clients' paced demand, not the server's speed; see bench/throughput.py)")
    rows: dict[tuple[str, int], dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="ws-bench-"))
    try:
        for clients in args.clients:
            store = tmp / f"store-{clients}"
            server = ServerProcess(store, **srv)
            try:
                print(f"warm-up: {asyncio.run(warm_up(server.url, flight)):.1f} s", flush=True)
                for phase in ("uncached", "cached"):
                    r = asyncio.run(run_phase(server, clients, flight, args.client_procs))
                    rows[(phase, clients)] = r
                    print(fmt(phase, r), flush=True)
            finally:
                server.stop()
            server = ServerProcess(store, **srv)  # a restart: the LRU is empty, the store is not
            try:
                r = asyncio.run(run_phase(server, clients, flight, args.client_procs))
                rows[("store", clients)] = r
                print(fmt("store", r), flush=True)
            finally:
                server.stop()
        base_clients = min(args.clients)
        server = ServerProcess(tmp / "store-unbatched", max_batch=1, batch_wait_ms=0, **srv)
        try:
            asyncio.run(warm_up(server.url, flight))
            r = asyncio.run(run_phase(server, base_clients, flight, args.client_procs))
            rows[("unbatched", base_clients)] = r
            print(fmt("unbatched", r), flush=True)
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    top = max(args.clients)
    out = {
        "clients": top,
        "p99_ms_cached": round(rows[("cached", top)]["p99_ms"], 2),
        "p99_ms_uncached": round(rows[("uncached", top)]["p99_ms"], 2),
        "p50_ms_cached": round(rows[("cached", top)]["p50_ms"], 2),
        "p50_ms_uncached": round(rows[("uncached", top)]["p50_ms"], 2),
        "p99_ms_cached_join": round(rows[("cached", top)]["p99_ms_join"], 2),
        "p99_ms_cached_flight": round(rows[("cached", top)]["p99_ms_flight"], 2),
        "p99_ms_store": round(rows[("store", top)]["p99_ms"], 2),
        "tiles_per_s_cached": round(rows[("cached", top)]["tiles_per_s"], 1),
        "tiles_per_s_uncached": round(rows[("uncached", top)]["tiles_per_s"], 1),
        "generated_per_s_uncached": round(rows[("uncached", top)]["generated_per_s"], 1),
        "rss_mb": round(max(r["rss_mb"] for r in rows.values()), 1),
        "errors": sum(r["errors"] for r in rows.values()),
        "by_clients": {
            str(c): {
                ph: {k: round(v, 2) if isinstance(v, float) else v for k, v in rows[(ph, c)].items()}
                for ph in ("uncached", "cached", "store")
                if (ph, c) in rows
            }
            for c in args.clients
        },
        "unbatched_p99_ms": round(rows[("unbatched", min(args.clients))]["p99_ms"], 2),
        "quick": bool(args.quick),
        "refiner": args.refiner,
    }
    print(json.dumps(_finite(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
