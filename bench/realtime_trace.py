"""Trace bench/realtime.py's real-time flight: when each tile was requested, placed and made
drawable, per level, after the teleport; and where the frames over the error target are.

Wraps ``viewer.flight.Flight.step`` and ``TileStreamer.on_tile`` (no change to the code under
test; the wrapper costs the frame thread ~1 %) and runs ``bench/realtime.py --quick --no-gl
--no-sim`` for one world (extra arguments go to it, e.g. ``--mesh-procs 2``). Prints, for the
tiles of the first complete view after the teleport and their ancestors ("needed"), per
level: request, placed ("known": the streamer has its heights) and drawable ("ready":
uploaded) times in seconds after the jump (min / max), and how many requested / placed
tiles were not needed; then frames over the target in the first 5 s of the flight, the 5 s
after the teleport and the rest, and per phase of the path (loading screen, take-off, run,
climb, turn, teleport + settle, hover). ``--whole`` flies the bench's whole path instead.
``--server-trace`` also times every key inside the server (bench/server_trace/sitecustomize.py:
asked, sent to a generator process, back, frame ready) and adds per level how long the needed
keys waited in the server's queue and how long a generator process took, and how busy the
generator processes were until the view was complete.

    PYTHONPATH=. python bench/realtime_trace.py plane [--json /tmp/trace.json] [--server-trace]

With ``--server-trace`` it also counts priority inversions (``inversions``): a key sent to a
generator process while a more urgent one waited for that process; the server should have none.

``--json FILE`` writes the client's events to FILE and, with ``--server-trace``, the server's to
FILE.server.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JUMP_M = 1e5  # a camera move longer than this between two frames is the teleport


def _stat(stat: Path) -> tuple[int, float] | None:
    """(parent pid, utime + stime seconds) from a /proc .../stat file; None when it is gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_snapshot() -> dict:
    """CPU seconds so far: this process's threads by name, the viewer's place workers, and
    every process below the server (its generator, backend or mesh workers) together. Linux
    /proc; empty where there is none."""
    out: dict = {}
    if not Path("/proc/self/task").is_dir():
        return out
    names = {t.native_id: t.name for t in threading.enumerate()}
    for task in Path("/proc/self/task").iterdir():
        name = names.get(int(task.name), "other")
        out[name] = out.get(name, 0.0) + (_stat(task / "stat") or (0, 0.0))[1]
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        st = _stat(proc / "stat") if proc.name.isdigit() else None
        if st is not None:
            children.setdefault(st[0], []).append(int(proc.name))
            cpu[int(proc.name)] = st[1]
    # the server's own process ("server"), then its workers, the grandchildren ("server workers");
    # this process's own spawned children are the viewer's place workers (viewer/placepool.py)
    def own(pid: int) -> str:
        try:
            spawned = b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            spawned = False
        return "place workers" if spawned else "server"

    todo = [(pid, own(pid)) for pid in children.get(os.getpid(), ())]
    while todo:
        pid, name = todo.pop()
        out[name] = out.get(name, 0.0) + cpu[pid]
        todo.extend((c, "server workers" if name == "server" else name) for c in children.get(pid, ()))
    return out


def record(events: list) -> None:
    """Wrap Flight.step / TileStreamer.on_tile to append (kind, perf_counter s, data) to ``events``."""
    from runtime.lod import streamer as S
    from viewer import flight as F

    step, on_tile = F.Flight.step, S.TileStreamer.on_tile
    prev = {"pos": None}
    jumped_at = {"t": None}

    def traced_step(self, camera, velocity_mps=np.zeros(3)):
        if not self.options.realtime:
            return step(self, camera, velocity_mps)
        t = time.perf_counter()
        cam = camera[0] if isinstance(camera, (list, tuple)) else camera
        pos = np.asarray(cam.position_m, np.float64)
        if prev["pos"] is not None and np.linalg.norm(pos - prev["pos"]) > JUMP_M:
            events.append(("jump", t, None))
            events.append(("cpu", t, cpu_snapshot()))
            jumped_at["t"] = t
        prev["pos"] = pos
        res = step(self, camera, velocity_mps)
        events.extend(("req", t, (k.level, k.x, k.y)) for k, _ in res.plan.start)
        wanted = {r.key: r for r in res.selection.load}
        # A cancel is "gone" (no longer wanted) or "preempted" (still wanted, made way).
        events.extend(("cancel", t, (k.level, k.x, k.y), "preempted" if k in wanted else "gone")
                      for k in res.plan.cancel)
        if jumped_at["t"] is not None and t - jumped_at["t"] < 3.0:
            events.append(("load", t, [(r.key.level, r.key.x, r.key.y, round(r.priority, 1))
                                       for r in res.selection.load]))
        events.extend(("ready", t, (k.level, k.x, k.y)) for k in res.uploaded)
        sel = res.selection
        events.append(("frame", t, bool(sel.complete)))
        step_ms = (time.perf_counter() - t) * 1e3
        if step_ms > 50.0:  # a slow step: its length and its selection's share (ms)
            events.append(("slow", t, round(step_ms, 1), round(res.select_s * 1e3, 1), len(sel.load)))
        if sel.complete:
            events.append(("complete", t, [(k.level, k.x, k.y) for k in sel.draw]))
            if jumped_at["t"] is not None and not jumped_at.get("cpu_done"):
                events.append(("cpu", t, cpu_snapshot()))
                jumped_at["cpu_done"] = True
        return res

    def traced_on_tile(self, key, info, nbytes, payload=None):
        events.append(("known", time.perf_counter(), (key.level, key.x, key.y)))
        return on_tile(self, key, info, nbytes, payload)

    gc_start = {}

    def on_gc(phase, info):  # garbage collections over 5 ms: (generation, ms, thread)
        if phase == "start":
            gc_start["t"] = time.perf_counter()
        elif "t" in gc_start:
            ms = (time.perf_counter() - gc_start.pop("t")) * 1e3
            if ms > 5.0:
                events.append(("gc", time.perf_counter(), info["generation"], round(ms, 1),
                               threading.current_thread().name))

    gc.callbacks.append(on_gc)
    surface_m = F.Flight.surface_m

    def traced_surface_m(self, x, y):
        t = time.perf_counter()
        out = surface_m(self, x, y)
        ms = (time.perf_counter() - t) * 1e3
        if ms > 20.0:
            events.append(("slow_ground", t, round(ms, 1), str(getattr(self, "_ground_key", None))))
        return out

    F.Flight.surface_m = traced_surface_m
    F.Flight.step = traced_step
    S.TileStreamer.on_tile = traced_on_tile


def read_server_trace(prefix: str) -> list:
    """The server's events (bench/server_trace/sitecustomize.py), every process's, by time."""
    import ast
    import glob

    out = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            out.extend(ast.literal_eval(line) for line in f if line.strip())
        os.unlink(path)
    with contextlib.suppress(OSError):  # main's mkdtemp folder, empty now
        os.rmdir(os.path.dirname(prefix))
    return sorted(out)


def server_split(server: list, need: set, t0: float, t1: float) -> tuple[dict, str]:
    """Per level of the needed keys: (queue waits, generator seconds) of their batches that
    started in [t0, t1] (a key's wait runs from its latest queueing before the batch: after
    the store lookup, or after its previous step); and a line on how busy the generator
    processes were and how their time went to needed keys and others."""
    queued: dict = {}
    started: dict = {}
    per_level: dict = {}
    busy: dict = {}
    spent = {True: [0, 0.0], False: [0, 0.0]}
    for t, kind, *rest in server:
        if kind == "queued":
            queued[rest[0]] = t
        elif kind == "dispatch":
            started[rest[0]] = (t, rest[1])
        elif kind == "back" and rest[0] in started:
            t_start, keys = started.pop(rest[0])
            if not t0 <= t_start <= t1:
                continue
            busy[rest[0]] = busy.get(rest[0], 0.0) + min(t, t1) - t_start
            for key in map(tuple, keys):
                wanted = key in need
                spent[wanted][0] += 1
                spent[wanted][1] += (t - t_start) / len(keys)
                if wanted:
                    waits = per_level.setdefault(key[0], ([], []))
                    waits[0].append(t_start - queued.get(key, t_start))
                    waits[1].append(t - t_start)
    share = ", ".join(f"{s}: {b / (t1 - t0):.0%}" for s, b in sorted(busy.items()))
    line = (f"generator processes busy ({share}); batches for needed keys {spent[True][0]} "
            f"({spent[True][1]:.2f} s), for others {spent[False][0]} ({spent[False][1]:.2f} s)")
    return per_level, line


def inversions(server: list, t0: float, t1: float) -> list[tuple]:
    """Dispatches in [t0, t1] of a key while a key with a better priority (by more than 1) was
    queued for the same generator process (its shard by ``streaming.genprocs.shard_of`` at the
    default ``--gen-shard-up``, or the process a run-out step pinned it to): (t, shard, key,
    priority, the best one waiting).
    The server should have none (docs/DECISIONS.md, "Learned the hard way")."""
    from runtime.tiles import TileKey
    from streaming.genprocs import shard_of

    shards = 1 + max((e[2] for e in server if e[1] == "dispatch"), default=0)
    prio, queued, pinned, out = {}, set(), {}, []
    for t, kind, *rest in server:
        if kind in ("get", "prio"):
            prio[tuple(rest[0])] = rest[1]
        elif kind == "queued":
            queued.add(tuple(rest[0]))
        elif kind == "release":
            queued.discard(tuple(rest[0]))
        elif kind == "dispatch":
            shard, keys = rest[0], [tuple(k) for k in rest[1]]
            queued.difference_update(keys)
            if shard < 0 or not t0 <= t <= t1:
                continue
            for k in keys:
                bar = prio.get(k, 0.0) + 1.0
                waiting = [(prio.get(q, 0.0), q) for q in queued
                           if pinned.get(q, shard_of(TileKey(*q), shards)) == shard and prio.get(q, 0.0) > bar]
                if waiting:
                    out.append((t, shard, k, prio.get(k, 0.0), max(waiting)))
        elif kind == "back" and len(rest) > 2:
            for k, ran_out in zip(rest[1], rest[2], strict=False):
                if ran_out:
                    pinned[tuple(k)] = rest[0]
    return out


def report(events: list, phases: list | None = None, server: list | None = None) -> None:
    """Print the per-level table and the split of frames over the target (see the module doc);
    ``phases``: [(name, seconds)] of the path in order (bench/flight.py's script), for the split
    by phase; ``server``: the server's own events (``--server-trace``), for the queue wait and
    generator time of the needed keys."""
    jumps = [e[1] for e in events if e[0] == "jump"]
    if not jumps:
        print("no teleport in the trace")
        return
    jump = jumps[0]
    done = next((e for e in events if e[0] == "complete" and e[1] >= jump), None)
    end = done[1] if done else float("inf")
    print("teleport -> complete view:", "never" if done is None else f"{done[1] - jump:.2f} s")
    need = set()
    for lv, x, y in (done[2] if done else []):
        while True:
            need.add((lv, x, y))
            if lv == 0:
                break
            lv, x, y = lv - 1, x // 2, y // 2
    first = {"req": {}, "known": {}, "ready": {}}
    for kind, t, key, *_ in events:
        if kind in first and jump <= t <= end:
            first[kind].setdefault(tuple(key), t - jump)
    split, busy_line = server_split(server, need, jump, end) if server else ({}, "")
    print("level needed | request s | known s | ready s | not needed: requested, known"
          + (" | server queue s p50 / max | generator ms p50" if server else ""))
    levels = sorted({k[0] for k in first["req"]} | {k[0] for k in need})
    for lv in levels:
        keys = [k for k in need if k[0] == lv]

        def span(d, keys=keys):
            v = [d[k] for k in keys if k in d]
            return f"{min(v):.2f}-{max(v):.2f}" if v else "-"
        extra = [sum(1 for k in first[kind] if k[0] == lv and k not in need) for kind in ("req", "known")]
        row = (f"{lv:5d} {len(keys):6d} | {span(first['req']):9s} | {span(first['known']):9s} | "
               f"{span(first['ready']):9s} | {extra[0]}, {extra[1]}")
        if server:
            waits, gen = split.get(lv, ([], []))
            row += (f" | {np.median(waits):.2f} / {max(waits):.2f} | {np.median(gen) * 1e3:.0f}" if waits
                    else " | -")
        print(row)
    if server:
        print(busy_line)
        inv = inversions(server, jump, end)
        print(f"priority inversions (a key dispatched while a better one waited for the same process): {len(inv)}"
              + (f", first at {inv[0][0] - jump:.2f} s: {inv[0][2]} ({inv[0][3]:.1f}) before {inv[0][4][1]} "
                 f"({inv[0][4][0]:.1f})" if inv else ""))
    cpu = [e for e in events if e[0] == "cpu"]
    if len(cpu) == 2:
        (_, t0, a), (_, t1, b) = cpu
        used = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in b}
        print(f"CPU s from the teleport to the complete view ({t1 - t0:.2f} s wall): "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v > 0))
    frames = [(e[1], e[2]) for e in events if e[0] == "frame"]
    t0 = frames[0][0]
    over = [t for t, ok in frames if not ok]
    start = sum(1 for t in over if t - t0 < 5.0)
    tele = sum(1 for t in over if 0.0 <= t - jump < 5.0)
    print(f"frames over the target: {len(over)} of {len(frames)}: first 5 s {start}, 5 s after the "
          f"teleport {tele}, rest {len(over) - start - tele}")
    if phases:  # per phase of the path, on the flight clock (the jump is the teleport phase's start)
        t_jump = sum(d for name, d in phases[: next(i for i, (n, _) in enumerate(phases) if "teleport" in n)])
        bounds, at = [("loading", -float("inf"), -t_jump)], -t_jump
        for name, d in phases:
            bounds.append((name, at, at + d))
            at += d
        bounds[-1] = (bounds[-1][0], bounds[-1][1], float("inf"))
        print("phase                  frames  over the target")
        for name, lo, hi in bounds:
            sel = [ok for t, ok in frames if lo <= t - jump < hi]
            print(f"{name:22s} {len(sel):6d}  {sum(1 for ok in sel if not ok):6d}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = None
    if "--json" in argv:
        i = argv.index("--json")
        out = argv[i + 1]
        del argv[i:i + 2]
    if not argv or argv[0] not in ("plane", "earth"):
        raise SystemExit("usage: realtime_trace.py plane|earth [--json FILE] [--whole] [bench/realtime.py options]")
    events: list = [("clock", time.perf_counter(), time.time())]  # to line up with wall-clock samples
    record(events)  # imports the viewer package before bench/ (it has a viewer.py) is on the path
    sys.path.insert(0, str(ROOT / "bench"))
    import realtime  # bench/realtime.py

    whole = "--whole" in argv  # the bench's whole path (130 s) instead of --quick's 0.3x (39 s)
    if whole:
        argv.remove("--whole")
    prefix = None
    if "--server-trace" in argv:  # the server (a child process) finds the hook on its path
        argv.remove("--server-trace")
        import tempfile

        prefix = os.path.join(tempfile.mkdtemp(prefix="ws_trace_"), "server")
        os.environ["WORLDSTREAM_BENCH_TRACE"] = prefix
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "bench" / "server_trace"), os.environ.get("PYTHONPATH")]))
    realtime.main([*([] if whole else ["--quick"]), "--no-gl", "--no-sim", "--world", argv[0], *argv[1:]])
    if out:
        Path(out).write_text(json.dumps(events))
    poses = realtime.simflight.script(not whole)
    phases: list = []
    for p in poses:
        if phases and phases[-1][0] == p.phase:
            phases[-1][1] += 1.0 / realtime.simflight.FPS
        else:
            phases.append([p.phase, 1.0 / realtime.simflight.FPS])
    server = read_server_trace(prefix) if prefix else None
    if out and server is not None:  # the server's own events beside the client's
        Path(out + ".server").write_text(json.dumps(server))
    report(events, [tuple(x) for x in phases], server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
