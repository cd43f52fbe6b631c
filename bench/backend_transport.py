"""The shared learned backend's transport (streaming/sharedbackend.py): pipe against shared memory.

Generator workers send the network's inputs to one backend process and wait for the child. A
16-crop request of the pyramid's learned blocks is ~4 MB of parents (16 x 5 x 112 x 112 float32)
and ~5 MB of child (16 x 5 x 127 x 127). This measures what moving them costs, not the network:
the backend is ``EchoBackend``, which answers a zero child of the network's shape (margin 24)
at once. ``CLIENTS`` worker processes (each a ``RemoteBackend`` dialling a real
``BackendProcess`` on its Unix socket) send requests back to back for ``--seconds``; reported per
transport: requests/s over all clients, round-trip p50 / p99 ms, and the backend process's CPU
ms per request (from /proc). Baseline in the same run: the pipe (pickled arrays), today's
transport before shared memory.

    PYTHONPATH=. python bench/backend_transport.py [--clients 1 4 12] [--seconds 3] [--batch 16]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streaming.sharedbackend import BackendProcess, RemoteBackend  # noqa: E402

MARGIN = 24  # the shipped net's margin (parent samples each side)


class EchoBackend:
    """A backend that costs nothing: a zero child of the network's output shape."""

    name = "echo"

    def run_level(self, parents5, seed, level, rows, cols, spacing_m, present, context=None):
        b, c, h, w = parents5.shape
        return np.zeros((b, c, 2 * (h - 2 * MARGIN) - 1, 2 * (w - 2 * MARGIN) - 1), np.float32)


def make_echo():
    return EchoBackend()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client(conn_info, shm: bool, batch: int, crop: int, seconds: float, start, out) -> None:
    remote = RemoteBackend(conn_info, "echo", shared_memory=shm)
    rng = np.random.default_rng(os.getpid())
    args = (rng.normal(size=(batch, 5, crop, crop)).astype(np.float32), 0, 9,
            np.zeros((batch, crop), np.int64), np.zeros((batch, crop), np.int64),
            np.ones(batch, np.float32), np.ones((batch, 2), np.float32), None)
    remote.run_level(*args)  # the segment made, the connection warm
    start.wait()
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        child = remote.run_level(*args)
        times.append(time.perf_counter() - t0)
    assert child.shape == (batch, 5, 2 * (crop - 2 * MARGIN) - 1, 2 * (crop - 2 * MARGIN) - 1)
    out.put((times, remote.segment is not None))
    remote.close()


def run(shm: bool, clients: int, batch: int, crop: int, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    proc = BackendProcess(make_echo)
    try:
        start, out = ctx.Event(), ctx.Queue()
        ps = [ctx.Process(target=_client, args=(proc.connect(), shm, batch, crop, seconds, start, out))
              for _ in range(clients)]
        for p in ps:
            p.start()
        time.sleep(1.0)  # every client warm
        calls0, cpu0, t0 = proc.calls, _cpu_s(proc.proc.pid), time.perf_counter()
        start.set()
        got = [out.get(timeout=120) for _ in ps]
        wall = time.perf_counter() - t0
        cpu, calls = _cpu_s(proc.proc.pid) - cpu0, proc.calls - calls0
        for p in ps:
            p.join(30)
    finally:
        proc.close()
    times = np.concatenate([np.asarray(t) for t, _ in got]) * 1e3
    return {"transport": "shm" if shm else "pipe", "clients": clients, "used_shm": all(u for _, u in got),
            "requests_per_s": round(len(times) / wall, 1), "rtt_ms_p50": round(float(np.percentile(times, 50)), 2),
            "rtt_ms_p99": round(float(np.percentile(times, 99)), 2),
            "backend_cpu_ms_per_request": round(cpu / max(calls, 1) * 1e3, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 12])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64 + 2 * MARGIN, help="parent crop edge (block 64 + margins)")
    args = ap.parse_args(argv)
    st = os.statvfs("/dev/shm")
    print(f"{platform.node()}: {os.cpu_count()} cores, /dev/shm {st.f_bavail * st.f_frsize / 2**20:.0f} MiB free, "
          f"request {args.batch} x 5 x {args.crop}^2 float32 ({args.batch * 5 * args.crop**2 * 4 / 2**20:.1f} MiB)")
    print(f"{'transport':9} {'clients':>7} {'req/s':>8} {'rtt p50':>8} {'rtt p99':>8} {'backend CPU ms/req':>18}")
    rows = []
    for n in args.clients:
        for shm in (False, True):
            r = run(shm, n, args.batch, args.crop, args.seconds)
            rows.append(r)
            flag = "" if r["used_shm"] or not shm else "  (no room in /dev/shm: the pipe)"
            print(f"{r['transport']:9} {n:7d} {r['requests_per_s']:8.1f} {r['rtt_ms_p50']:8.2f} {r['rtt_ms_p99']:8.2f} "
                  f"{r['backend_cpu_ms_per_request']:18.3f}{flag}")
    print(json.dumps({"bench": "backend_transport", "machine": platform.node(), "cores": os.cpu_count(),
                      "batch": args.batch, "crop": args.crop, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
