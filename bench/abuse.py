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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from runtime.tiles import T, TileKey, spacing_m  # noqa: E402
from streaming import protocol as P  # noqa: E402
from streaming.client import TileClient  # noqa: E402
from streaming.server import MAX_TILE_FRAME_BYTES  # noqa: E402

HOST = "127.0.0.1"
ATTACKS = (
    "never_hello",
    "churn",
    "stats_flood",
    "garbage_flood",
    "height_flood",
    "best_heights",
    "detailed_heights",
    "connect_churn",
    "absurd",
)
HELLO = P.pack({"type": "hello", "protocol": P.PROTOCOL_VERSION, "credits": 1 << 16})


# -- the server -------------------------------------------------------------------------


class Server:
    """``python -m streaming.cli serve`` on 127.0.0.1 in a child process; RSS from /proc."""

    def __init__(self, cache_mb: int, gen_cache_mb: int):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "streaming.cli", "serve", "--world", "plane", "--seed", "0",
               "--refiner", "fractal", "--host", HOST, "--port", "0",
               "--cache-mb", str(cache_mb), "--gen-cache-mb", str(gen_cache_mb)]
        self.log = tempfile.TemporaryFile("w+")  # not a pipe: a chatty server must never block on it
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        line = self.proc.stdout.readline()
        m = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self._stderr()[-2000:]}")
        self.url = f"ws://{HOST}:{m.group(1)}"

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024

    def stop(self) -> str:
        """Stop the server; returns its stderr (for 'internal error' / traceback counts)."""
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return self._stderr()

    def _stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()


# -- attacks (each runs in its own process until its deadline) ---------------------------


class Tally:
    def __init__(self):
        self.bad_inputs = 0  # hostile messages or connections tried
        self.closes: dict[int, int] = {}  # close codes the attacker saw
        self.refused = 0  # handshakes refused (HTTP 503)
        self.errors_read = 0  # error answers read back (absurd)
        self.non_error_answers = 0  # absurd input answered with something else than an error

    def closed(self, exc: BaseException) -> None:
        code = getattr(getattr(exc, "rcvd", None), "code", None)
        if code is None:
            code = getattr(exc, "code", -1)
        self.closes[code] = self.closes.get(code, 0) + 1


async def _send_until(ws, frames, deadline: float, tally: Tally) -> None:
    """Send ``frames()`` until the deadline; a send that blocks (the server stopped
    reading us) is retried until then."""
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(ws.send(frames()), max(0.01, deadline - time.monotonic()))
            tally.bad_inputs += 1
        except TimeoutError:
            return


async def _open(url: str, hello: bool = True, **kw):
    ws = await connect(url, compression=None, max_size=MAX_TILE_FRAME_BYTES, open_timeout=30, **kw)
    if hello:
        await ws.send(HELLO)
        await ws.recv()
    return ws


async def never_hello(url, deadline, tally):
    live: set = set()

    async def hold():
        while time.monotonic() < deadline:
            try:
                ws = await _open(url, hello=False)
            except InvalidStatus:
                tally.refused += 1
                await asyncio.sleep(0.05)
                continue
            except OSError:
                await asyncio.sleep(0.05)
                continue
            tally.bad_inputs += 1
            live.add(ws)
            try:
                await asyncio.wait_for(ws.wait_closed(), max(0.01, deadline - time.monotonic()))
                tally.closed(ws.protocol.close_exc)
            except TimeoutError:
                pass
            live.discard(ws)
            await ws.close()

    await asyncio.gather(*(hold() for _ in range(1100)))


async def churn(url, deadline, tally):
    ws = await _open(url)
    rng = random.Random(1)
    reader = asyncio.create_task(_drain(ws))
    try:
        while time.monotonic() < deadline:
            x0 = rng.randrange(-(1 << 20), 1 << 20)
            keys = [[14, x0 + i, 7000 + i // 16] for i in range(256)]
            await ws.send(P.pack({"type": "request", "keys": keys}))
            await ws.send(P.pack({"type": "cancel", "keys": keys}))
            tally.bad_inputs += 2
    except ConnectionClosed as exc:
        tally.closed(exc)
    reader.cancel()
    await ws.close()


async def _drain(ws):
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass


async def _flood(url, deadline, tally, frames, clients=1):
    async def one():
        ws = await _open(url, max_queue=1)  # read nothing beyond one frame: TCP fills up
        try:
            await _send_until(ws, frames, deadline, tally)
        except ConnectionClosed as exc:
            tally.closed(exc)
        ws.transport.abort()

    await asyncio.gather(*(one() for _ in range(clients)))


def _points(rng, n, spread_m):
    return P.encode_array(rng.uniform(-spread_m, spread_m, (n, 2)))


async def stats_flood(url, deadline, tally):
    await _flood(url, deadline, tally, lambda: P.pack({"type": "stats"}))


async def garbage_flood(url, deadline, tally):
    rng = random.Random(2)
    await _flood(url, deadline, tally, lambda: rng.randbytes(rng.randrange(1, 2000)))


async def height_flood(url, deadline, tally):
    rng = np.random.default_rng(3)
    ids = iter(range(1 << 62))
    # 4,096 points within one level-3 tile: accepted, answered (147 KB each), never read.
    await _flood(url, deadline, tally, lambda: P.pack(
        {"type": "height", "id": next(ids), "points": _points(rng, 4096, 20_000.0), "mode": "best"}))


async def _height_askers(url, deadline, tally, clients, mode, spread_m, level):
    rng = np.random.default_rng(4)

    async def one(i):
        ws = await _open(url)
        ids = iter(range(1 << 62))
        inflight = asyncio.Semaphore(4)  # the server's max_height_queries
        reader_done = asyncio.Event()

        async def read():
            try:
                async for data in ws:
                    if P.unpack(data, 1 << 30)["type"] in ("height", "error"):
                        inflight.release()
            except ConnectionClosed as exc:
                tally.closed(exc)
            reader_done.set()

        reader = asyncio.create_task(read())
        while time.monotonic() < deadline and not reader_done.is_set():
            try:
                await asyncio.wait_for(inflight.acquire(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            centre = rng.uniform(-1e8, 1e8, 2)
            pts = centre + rng.uniform(-spread_m, spread_m, (4096, 2))
            msg = {"type": "height", "id": next(ids), "points": P.encode_array(pts), "mode": mode}
            if level is not None:
                msg["level"] = level
            await ws.send(P.pack(msg))
            tally.bad_inputs += 1
        reader.cancel()
        await ws.close()

    await asyncio.gather(*(one(i) for i in range(clients)))


async def best_heights(url, deadline, tally):
    # Fresh areas: every point needs its level-3 fallback tile; spread over ~4 x 4 of them.
    s3 = spacing_m(3) * T
    await _height_askers(url, deadline, tally, 4, "best", 1.4 * s3, None)


async def detailed_heights(url, deadline, tally):
    s12 = spacing_m(12) * T
    await _height_askers(url, deadline, tally, 6, "detailed", 1.4 * s12, 12)


async def connect_churn(url, deadline, tally):
    rng = random.Random(5)

    async def one():
        while time.monotonic() < deadline:
            try:
                ws = await _open(url)
                x = rng.randrange(-(1 << 20), 1 << 20)
                await ws.send(P.pack({"type": "request", "keys": [[13, x + i, 99] for i in range(8)]}))
                tally.bad_inputs += 1
                await ws.close()
            except InvalidStatus:
                tally.refused += 1
            except (ConnectionClosed, OSError) as exc:
                tally.closed(exc)

    await asyncio.gather(*(one() for _ in range(8)))


def absurd_messages():
    """Malformed messages, each of which must get an ``error`` answer."""
    arr = lambda shape, data=b"", dtype="<f8": {"dtype": dtype, "shape": shape, "data": data}
    shapes = [[2**62, 0], [0, 2**63], [2**64 - 1, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [1 << 40, 2],
              [-1, 2], [True, 2], [4097, 2], [0, 2**31], ["a", 2]]
    out = [{"type": "height", "id": 1, "points": arr(s)} for s in shapes]
    out += [
        {"type": "height", "id": 2, "points": arr([1, 2], b"\0" * 16, "|O")},
        {"type": "height", "id": 3, "points": arr([2, 2], b"\0" * 31)},
        {"type": "height", "id": 2**63, "points": arr([1, 2], b"\0" * 16)},
        {"type": "height", "id": 4, "points": arr([1, 2], b"\0" * 16), "level": 2**64 - 1},
        {"type": "height", "id": 5, "points": arr([1, 2], b"\xff" * 16)},  # NaN points
        {"type": "height", "id": 6, "points": arr([1, 2], b"\0" * 16), "mode": ["best"]},
        {"type": "request", "keys": [[2**63, 0, 0]]},
        {"type": "request", "keys": [[5, 2**64 - 1, -(2**63)]]},
        {"type": "request", "keys": [[5, 1, 1]], "priorities": [float("nan")]},
        {"type": "request", "keys": [[5, 1, 1]] * 257},
        {"type": "request", "keys": {"a": 1}},
        {"type": "cancel", "keys": [[1, 2]]},
        {"type": "credits", "n": 2**64 - 1},
        {"type": "credits", "n": -1},
        {"type": "hello", "protocol": 1},
        {"type": "nonsense"},
        {"type": 7},
        {"kind": "request"},
    ]
    return [P.pack(m) for m in out] + [b"\xc1", b"\x92\x01\x02", b"", b"\xdf\xff\xff\xff\xff"]


async def absurd(url, deadline, tally):
    ws = await _open(url)
    msgs = absurd_messages()
    try:
        while time.monotonic() < deadline:
            for m in msgs:
                await ws.send(m)
                tally.bad_inputs += 1
                ans = P.unpack(await ws.recv(), 1 << 30)
                if ans["type"] == "error":
                    tally.errors_read += 1
                else:
                    tally.non_error_answers += 1
    except ConnectionClosed as exc:
        tally.closed(exc)
    await ws.close()


def _attack_main(name: str, url: str, duration_s: float, out) -> None:
    tally = Tally()
    deadline = time.monotonic() + duration_s

    async def go():
        try:
            await asyncio.wait_for(globals()[name](url, deadline, tally), duration_s + 30)
        except TimeoutError:
            pass

    asyncio.run(go())
    out.put(tally.__dict__)


# -- the good client ---------------------------------------------------------------------


class Good:
    """The well-behaved client: cached and uncached fetches and fresh connects, timed."""

    def __init__(self, url: str):
        self.url = url
        self.client = TileClient(window=256, decode=False)
        self.cached_keys = [TileKey(10, 40 + i % 3, 20 + i // 3) for i in range(9)]
        self.next_x = 5000
        self.samples: dict[str, list[float]] = {"cached": [], "uncached": []}
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
        for i in range(0, fill, 8):
            keys = [TileKey(rng.choice((10, 12, 14)), rng.randrange(-(1 << 9), 1 << 9), rng.randrange(1 << 9))
                    for _ in range(8)]
            await self.client.fetch(keys, timeout_s=600)

    def reset(self) -> None:
        self.samples = {"cached": [], "uncached": []}
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
                try:
                    await asyncio.wait_for(c.connect(self.url), 10)
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


async def main_async(args) -> dict:
    server = Server(args.cache_mb, args.gen_cache_mb)
    rss_log: list[tuple[float, str, float]] = []
    t0 = time.monotonic()
    phase_name = ["start"]
    stop_sampling = asyncio.Event()

    async def sample_rss():
        while not stop_sampling.is_set():
            rss_log.append((time.monotonic() - t0, phase_name[0], server.rss_mb()))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_rss())
    good = Good(server.url)
    rows = []
    try:
        await good.start(args.fill)
        ctx = multiprocessing.get_context("spawn")
        names = ["baseline", *args.only, "baseline_after"]
        for name in names:
            phase_name[0] = name
            good.reset()
            rss_before = server.rss_mb()
            tally = {}
            proc = None
            if name in ATTACKS:
                q = ctx.Queue()
                proc = ctx.Process(target=_attack_main, args=(name, server.url, args.phase_s, q), daemon=True)
                proc.start()
            start = time.monotonic()
            await good.run(start + args.phase_s)
            if proc is not None:
                tally = await asyncio.get_running_loop().run_in_executor(None, q.get, True, args.phase_s + 60)
                proc.join(10)
            peak = max((r for t, p, r in rss_log if p == name), default=rss_before)
            phase_name[0] = name + ":settle"
            await asyncio.sleep(args.settle_s)
            rows.append({
                "phase": name,
                "cached_n": len(good.samples["cached"]),
                "cached_p50_ms": pct(good.samples["cached"], 50),
                "cached_p99_ms": pct(good.samples["cached"], 99),
                "uncached_n": len(good.samples["uncached"]),
                "uncached_p50_ms": pct(good.samples["uncached"], 50),
                "uncached_p99_ms": pct(good.samples["uncached"], 99),
                "good_connects": good.connects,
                "good_connect_failures": good.connect_failures,
                "good_fetch_failures": good.fetch_failures,
                "rss_before_mb": rss_before,
                "rss_peak_mb": peak,
                "rss_after_mb": server.rss_mb(),
                "bad_inputs": tally.get("bad_inputs", 0),
                "attacker_closes": tally.get("closes", {}),
                "attacker_refused": tally.get("refused", 0),
                "absurd_errors_read": tally.get("errors_read", 0),
                "absurd_non_errors": tally.get("non_error_answers", 0),
            })
        await good.client.close()
    finally:
        stop_sampling.set()
        await sampler
        err = server.stop()
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
    hdr = (f"{'phase':<17} {'cached p50/p99 ms':>18} {'uncached p50/p99 ms':>20} {'n c/u':>8} "
           f"{'conn fail':>9} {'RSS MB before/peak/after':>25} {'bad inputs':>10}  ok")
    print(hdr)
    for r in res["rows"]:
        ok = "".join("y" if r[k] else "n" for k in ("cached_ok", "uncached_ok", "rss_ok"))
        print(f"{r['phase']:<17} {r['cached_p50_ms']:8.1f}/{r['cached_p99_ms']:<9.1f} "
              f"{r['uncached_p50_ms']:9.1f}/{r['uncached_p99_ms']:<10.1f} "
              f"{r['cached_n']:>3}/{r['uncached_n']:<4} {r['good_connect_failures']:>3}/{r['good_connects']:<5} "
              f"{r['rss_before_mb']:7.0f}/{r['rss_peak_mb']:6.0f}/{r['rss_after_mb']:<6.0f}    "
              f"{r['bad_inputs']:>10}  {ok}  closes={r['attacker_closes']}")
    print(f"caps: cached p99 <= {res['cached_cap_ms']:.1f} ms, uncached p99 <= {res['uncached_cap_ms']:.1f} ms; "
          f"closes 1011: {res['closes_1011']}; server 'connection handler failed': {res['server_internal_errors']}")
    tl = res["rss_timeline"]
    print("RSS MB over time (every ~2 s): " + " ".join(f"{t:.0f}s:{r:.0f}" for t, _, r in tl[::8]))
    print(json.dumps({k: v for k, v in res.items() if k != "rss_timeline"} | {"rss_timeline_s_phase_mb": tl[::4]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
