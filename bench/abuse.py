"""A well-behaved client beside hostile ones: is it still served fairly?

Loopback only (127.0.0.1), bounded in time and count, stops by itself. A real
``python -m streaming.cli serve`` process (plane world, fractal refiner, memory only)
serves one *good* client the whole run: every 50 ms it fetches a tile it already holds
(``cached``: LRU hit), one after another it fetches tiles never asked for before
(``uncached``: generated, meshed, encoded), and once a second it opens a fresh
connection and says hello (``connects``: any refusal is counted). Phases, one attack
at a time, each attack in its own process (so its CPU is not the good client's):

- ``never_hello``: 1,100 websockets opened and kept open without ``hello`` (reopened
  when the server closes them);
- ``churn``: request 256 fresh deep tiles, cancel them, again, as fast as possible;
- ``stats_flood``, ``garbage_flood``, ``height_flood``: send ``stats`` / random bytes /
  4,096-point height queries as fast as the socket takes them, never read;
- ``best_heights``, ``detailed_heights``: 4 clients asking ``best`` (6 asking
  ``detailed``) heights over as many fresh tiles as the limits allow, reading answers;
- ``connect_churn``: connect, hello, ask 8 tiles, disconnect, again;
- ``absurd``: malformed messages (absurd array shapes and sizes, wrong types, huge
  integers), each read back: the answer must be an ``error``, never a close 1011.

Per phase: the good client's cached and uncached p50/p99, its failed connects, the
server's RSS (``/proc/PID/status``: before, peak during, after a settle time) and how
many bad inputs the attack sent. A table, then one JSON line. Targets (issue 19):
cached p99 <= 2x unloaded + 20 ms, uncached p99 <= 2x unloaded + 250 ms, RSS growth
<= 64 MB per attack, no refused good connect, no close 1011. The server runs with 64 MiB
tile and generator caches (``--cache-mb``, ``--gen-cache-mb``), filled near their bounds
before the baseline (``--fill`` random tiles), so that RSS growth is the attack's, not the
caches' filling up.

    PYTHONPATH=. python bench/abuse.py [--quick] [--phase-s 10] [--only churn,absurd]
        [--server-arg=--step-ms --server-arg=0]   (the server without preemptible steps)

Each row also gives the machine's 1-minute load average (other jobs included): on the
shared 2-core machine it, more than the attack, moves the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from abuse_attacks import ATTACKS, attack_main  # noqa: E402 (bench/ is this script's folder)
from serve import ServerProcess  # noqa: E402 (bench/serve.py)

from runtime.tiles import TileKey  # noqa: E402
from streaming.client import TileClient  # noqa: E402
from streaming.probe import Probe, quantile_ms  # noqa: E402

HOST = "127.0.0.1"


# -- the server -------------------------------------------------------------------------


def start_server(cache_mb: int, gen_cache_mb: int, extra: tuple[str, ...] = ()) -> ServerProcess:
    """``python -m streaming.cli serve`` (plane, seed 0, fractal) on 127.0.0.1 in a child
    process, its stderr kept for the 'internal error' / traceback counts; ``extra``: more
    ``serve`` options (e.g. ``--step-ms 0``)."""
    return ServerProcess(None, cache_mb=cache_mb, keep_stderr=True,
                         extra_args=("--gen-cache-mb", str(gen_cache_mb), *extra))


# -- the good client ---------------------------------------------------------------------


class Good:
    """The well-behaved client: cached and uncached fetches and fresh connects, timed."""

    def __init__(self, url: str):
        self.url = url
        self.client = TileClient(window=256, decode=False)
        self.cached_keys = [TileKey(10, 40 + i % 3, 20 + i // 3) for i in range(9)]
        self.next_x = 5000
        self.samples: dict[str, list[float]] = {"cached": [], "uncached": [], "connect": []}
        self.connect_failures = 0
        self.connects = 0
        self.fetch_failures = 0

    async def start(self, fill: int) -> None:
        """Connect, fetch the cached set, then ``fill`` tiles at random places so that the
        server's caches are near their bounds before RSS is compared."""
        await self.client.connect(self.url)
        await self.client.fetch(self.cached_keys, timeout_s=600)
        await self.client.fetch([TileKey(12, self.next_x - 1, 3000)], timeout_s=600)  # ancestors
        rng = random.Random(6)
        for _ in range(0, fill, 8):
            keys = [
                TileKey(rng.choice((10, 12, 14)), rng.randrange(-(1 << 9), 1 << 9), rng.randrange(1 << 9))
                for _ in range(8)
            ]
            await self.client.fetch(keys, timeout_s=600)

    def reset(self) -> None:
        self.samples = {"cached": [], "uncached": [], "connect": []}
        self.connect_failures = self.connects = self.fetch_failures = 0

    async def _timed(self, kind: str, key: TileKey) -> None:
        t = time.perf_counter()
        try:
            await self.client.fetch([key], timeout_s=120)
        except Exception:  # an error answer or a timeout: counted, the client goes on
            self.fetch_failures += 1
            return
        self.samples[kind].append(time.perf_counter() - t)

    async def run(self, until: float) -> None:
        async def cached():
            i = 0
            while time.monotonic() < until:
                await self._timed("cached", self.cached_keys[i % 9])
                i += 1
                await asyncio.sleep(0.05)

        async def uncached():
            while time.monotonic() < until:
                self.next_x += 1
                await self._timed("uncached", TileKey(12, self.next_x, 3000))
                await asyncio.sleep(0.1)

        async def connects():
            while time.monotonic() < until:
                self.connects += 1
                c = TileClient(decode=False)
                t = time.perf_counter()
                try:
                    await asyncio.wait_for(c.connect(self.url), 10)
                    self.samples["connect"].append(time.perf_counter() - t)  # TCP + handshake + hello answered
                except Exception:
                    self.connect_failures += 1
                try:
                    await c.close()
                except Exception:
                    pass
                await asyncio.sleep(1.0)

        await asyncio.gather(cached(), uncached(), connects())


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000.0, q)) if xs else float("nan")


def diagnose(before: dict, after: dict, phase_s: float) -> dict:
    """Where the phase's time went, from two ``stats`` answers of the good client's
    connection: its generator lane (``lane``: key steps, generator calls its finished keys
    waited through), the server's generator calls, and with ``--probe`` the server's
    event-loop lag, GIL waits, LRU-hit request-to-send times and CPU per thread."""
    before, after = before.get("server", {}), after.get("server", {})
    la, lb = after.get("lane", {}), before.get("lane", {})
    d = {k: la.get(k, 0) - lb.get(k, 0) for k in ("key_steps", "generator_s", "keys_done", "calls_waited", "wait_s")}
    out = {f"lane_{k}": round(v, 3) for k, v in d.items()}
    out["generator_calls"] = after.get("batches", 0) - before.get("batches", 0)
    out["preempted"] = after.get("preempted", 0) - before.get("preempted", 0)
    out["dropped_cancelled"] = after.get("dropped_cancelled", 0) - before.get("dropped_cancelled", 0)
    out["trims"] = after.get("trims", 0) - before.get("trims", 0)  # malloc_trim calls, and their ms
    out["trim_ms"] = round(1000.0 * (after.get("trim_s", 0.0) - before.get("trim_s", 0.0)), 1)
    out["accept_pauses"] = after.get("accept_pauses", 0) - before.get("accept_pauses", 0)
    out["height_pauses"] = after.get("height_pauses", 0) - before.get("height_pauses", 0)
    # calls of every lane per key step of the good lane while its keys waited: ~ lanes sharing
    out["lane_calls_per_own_step"] = round(d["calls_waited"] / d["key_steps"], 2) if d["key_steps"] else None
    pa, pb = after.get("probe"), before.get("probe")
    if pa and pb:
        out["gc_n"] = sum(pa["gc"]["counts"]) - sum(pb["gc"]["counts"])
        out["gc_s"] = round(pa["gc"]["total_s"] - pb["gc"]["total_s"], 3)
        out["gc2_n"] = sum(pa["gc2"]["counts"]) - sum(pb["gc2"]["counts"])
        out["gc2_s"] = round(pa["gc2"]["total_s"] - pb["gc2"]["total_s"], 3)
        out["gc2_cpu_s"] = round(pa.get("gc2_cpu_s", 0.0) - pb.get("gc2_cpu_s", 0.0), 3)
        out["gc_objects"] = pa.get("gc_objects")  # tracked objects per generation at the phase's end
        out["gc_frozen"] = pa.get("gc_frozen")
        for name in ("loop_lag", "gil_wait", "cached_send", "gc"):
            for q in (50, 99):
                out[f"{name}_p{q}_ms"] = quantile_ms(pa[name]["counts"], pb[name]["counts"], q / 100)
        ta, tb = pa["threads"], pb["threads"]
        out["threads_cpu_s"] = {n: round(v[0] - tb.get(n, [0, 0])[0], 2) for n, v in ta.items()}
        out["threads_runq_s"] = {n: round(v[1] - tb.get(n, [0, 0])[1], 2) for n, v in ta.items()}
    return out


async def main_async(args) -> dict:
    extra = (*args.server_arg, *(["--probe"] if args.probe else []))
    server = start_server(args.cache_mb, args.gen_cache_mb, extra)
    rss_log: list[tuple[float, str, float]] = []
    t0 = time.monotonic()
    phase_name = ["start"]
    stop_sampling = asyncio.Event()

    async def sample_rss():
        while not stop_sampling.is_set():
            rss_log.append((time.monotonic() - t0, phase_name[0], server.rss_mb()[0]))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_rss())
    me = Probe()  # this process's (the good client's) own event-loop lag and CPU waits
    lag_task = asyncio.create_task(me._lag())
    good = Good(server.url)
    rows = []
    try:
        await good.start(args.fill)
        ctx = multiprocessing.get_context("spawn")
        names = ["baseline", *args.only, "baseline_after"]
        for name in names:
            phase_name[0] = name
            good.reset()
            rss_before = server.rss_mb()[0]
            tally = {}
            proc = None
            if name in ATTACKS:
                q = ctx.Queue()
                proc = ctx.Process(target=attack_main, args=(name, server.url, args.phase_s, q), daemon=True)
                proc.start()
            stats0 = await good.client.stats()
            mine0 = {"loop_lag": me.loop_lag.as_dict(), "threads": me.threads()}
            start = time.monotonic()
            await good.run(start + args.phase_s)
            diag = diagnose(stats0, await good.client.stats(), args.phase_s)
            mine1 = {"loop_lag": me.loop_lag.as_dict(), "threads": me.threads()}
            diag["client_loop_lag_p99_ms"] = quantile_ms(mine1["loop_lag"]["counts"], mine0["loop_lag"]["counts"], 0.99)
            diag["client_runq_s"] = round(mine1["threads"]["MainThread"][1] - mine0["threads"]["MainThread"][1], 2)
            if proc is not None:
                tally = await asyncio.get_running_loop().run_in_executor(None, q.get, True, args.phase_s + 60)
                proc.join(10)
            peak = max((r for t, p, r in rss_log if p == name), default=rss_before)
            phase_name[0] = name + ":settle"
            await asyncio.sleep(args.settle_s)
            rows.append(
                {
                    "phase": name,
                    "cached_n": len(good.samples["cached"]),
                    "cached_p50_ms": pct(good.samples["cached"], 50),
                    "cached_p99_ms": pct(good.samples["cached"], 99),
                    "uncached_n": len(good.samples["uncached"]),
                    "uncached_p50_ms": pct(good.samples["uncached"], 50),
                    "uncached_p99_ms": pct(good.samples["uncached"], 99),
                    "connect_p50_ms": pct(good.samples["connect"], 50),
                    "connect_max_ms": max(good.samples["connect"], default=float("nan")) * 1000.0,
                    "good_connects": good.connects,
                    "good_connect_failures": good.connect_failures,
                    "good_fetch_failures": good.fetch_failures,
                    "rss_before_mb": rss_before,
                    "rss_peak_mb": peak,
                    "rss_after_mb": server.rss_mb()[0],
                    "bad_inputs": tally.get("bad_inputs", 0),
                    "attacker_closes": tally.get("closes", {}),
                    "attacker_refused": tally.get("refused", 0),
                    "absurd_errors_read": tally.get("errors_read", 0),
                    "absurd_non_errors": tally.get("non_error_answers", 0),
                    "load_1min": os.getloadavg()[0],  # the machine's, other jobs included
                    "diag": diag,
                    "attacker_cpu_s": round(tally.get("cpu_s", 0.0), 2),
                }
            )
        await good.client.close()
    finally:
        lag_task.cancel()
        stop_sampling.set()
        await sampler
        err = server.stop()
        if args.server_log:
            Path(args.server_log).write_text(err)
    base = rows[0]
    cached_cap = 2 * base["cached_p99_ms"] + 20
    uncached_cap = 2 * base["uncached_p99_ms"] + 250
    for r in rows:
        r["cached_ok"] = r["cached_p99_ms"] <= cached_cap
        r["uncached_ok"] = r["uncached_p99_ms"] <= uncached_cap
        r["rss_ok"] = r["rss_peak_mb"] - r["rss_before_mb"] <= 64
    closes_1011 = sum(r["attacker_closes"].get(1011, 0) for r in rows)
    return {
        "rows": rows,
        "rss_timeline": [(round(t, 2), p, round(r, 1)) for t, p, r in rss_log],
        "cached_cap_ms": cached_cap,
        "uncached_cap_ms": uncached_cap,
        "closes_1011": closes_1011,
        "server_internal_errors": err.count("connection handler failed"),
        "server_tracebacks": err.count("Traceback"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 s phases, 2 s settle")
    ap.add_argument("--phase-s", type=float, default=10.0)
    ap.add_argument("--settle-s", type=float, default=3.0)
    ap.add_argument("--cache-mb", type=int, default=64, help="server tile LRU (MiB)")
    ap.add_argument("--gen-cache-mb", type=int, default=64, help="server generator block cache (MiB)")
    ap.add_argument("--server-log", default=None, help="write the server's stderr here")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more `serve` argument, repeatable (e.g. --server-arg=--step-ms --server-arg=0)")
    ap.add_argument("--probe", action="store_true",
                    help="serve --probe: the server's loop lag, GIL waits and CPU per thread per phase")
    ap.add_argument("--fill", type=int, default=48, help="random tiles fetched before the baseline")
    ap.add_argument("--only", default=",".join(ATTACKS), help=f"comma-separated subset of {','.join(ATTACKS)}")
    args = ap.parse_args()
    if args.quick:
        args.phase_s, args.settle_s, args.fill = 5.0, 2.0, 24
    args.only = [a for a in args.only.split(",") if a]
    unknown = set(args.only) - set(ATTACKS)
    if unknown:
        ap.error(f"unknown attacks {sorted(unknown)}; expected some of {list(ATTACKS)}")
    if not 1.0 <= args.phase_s <= 120.0:
        ap.error("--phase-s must be in [1, 120]")
    res = asyncio.run(main_async(args))
    hdr = (
        f"{'phase':<17} {'cached p50/p99 ms':>18} {'uncached p50/p99 ms':>20} {'n c/u':>8} "
        f"{'conn fail':>9} {'RSS MB before/peak/after':>25} {'bad inputs':>10}  ok  load"
    )
    print(hdr)
    for r in res["rows"]:
        ok = "".join("y" if r[k] else "n" for k in ("cached_ok", "uncached_ok", "rss_ok"))
        print(
            f"{r['phase']:<17} {r['cached_p50_ms']:8.1f}/{r['cached_p99_ms']:<9.1f} "
            f"{r['uncached_p50_ms']:9.1f}/{r['uncached_p99_ms']:<10.1f} "
            f"{r['cached_n']:>3}/{r['uncached_n']:<4} {r['good_connect_failures']:>3}/{r['good_connects']:<5} "
            f"{r['rss_before_mb']:7.0f}/{r['rss_peak_mb']:6.0f}/{r['rss_after_mb']:<6.0f}    "
            f"{r['bad_inputs']:>10}  {ok}  {r['load_1min']:4.1f}  connect p50/max ms "
            f"{r['connect_p50_ms']:.0f}/{r['connect_max_ms']:.0f}  closes={r['attacker_closes']}"
        )
    print(
        f"caps: cached p99 <= {res['cached_cap_ms']:.1f} ms, uncached p99 <= {res['uncached_cap_ms']:.1f} ms; "
        f"closes 1011: {res['closes_1011']}; server 'connection handler failed': {res['server_internal_errors']}"
    )
    print(f"{'phase':<17} lane: steps keys calls/step wait_s | gen calls | loop lag p50/p99 gil p99 "
          "hit->send p50/p99 ms | CPU s (run-queue s) per thread | client: loop lag p99 ms, run-queue s; "
          "attacker CPU s")
    for r in res["rows"]:
        d = r["diag"]
        line = (f"{r['phase']:<17} {d['lane_key_steps']:5} {d['lane_keys_done']:4} "
                f"{d['lane_calls_per_own_step'] if d['lane_calls_per_own_step'] is not None else '-':>10} "
                f"{d['lane_wait_s']:6.1f} | {d['generator_calls']:5} | trims {d['trims']} ({d['trim_ms']} ms) "
                f"pauses: accept {d['accept_pauses']} height {d['height_pauses']}")
        if "loop_lag_p99_ms" in d:
            cpu = " ".join(f"{n}:{c:.1f}({d['threads_runq_s'].get(n, 0):.1f})"
                           for n, c in sorted(d["threads_cpu_s"].items()) if c >= 0.05)
            line += (f" | {d['loop_lag_p50_ms']:.1f}/{d['loop_lag_p99_ms']:.1f} {d['gil_wait_p99_ms']:.1f} "
                     f"{d['cached_send_p50_ms']:.1f}/{d['cached_send_p99_ms']:.1f} | {cpu}")
        if "gc_n" in d:
            line += (f" | gc {d['gc_n']} x, {d['gc_s'] * 1000:.0f} ms, p99 {d['gc_p99_ms']:.1f}; "
                     f"full {d['gc2_n']} x {d['gc2_s'] * 1000:.0f} ms (CPU {d['gc2_cpu_s'] * 1000:.0f}); "
                     f"objects {d['gc_objects']} frozen {d['gc_frozen']}")
        print(line + f" | {d['client_loop_lag_p99_ms']:.1f} {d['client_runq_s']:.1f}; {r['attacker_cpu_s']}")
    tl = res["rss_timeline"]
    print("RSS MB over time (every ~2 s): " + " ".join(f"{t:.0f}s:{r:.0f}" for t, _, r in tl[::8]))
    print(json.dumps({k: v for k, v in res.items() if k != "rss_timeline"} | {"rss_timeline_s_phase_mb": tl[::4]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
