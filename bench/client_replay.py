"""Replay recorded wire payloads through the client's tile pipeline, one thread, and time it.

The real-time client spends its CPU in three threads: the network thread decodes
(``runtime.wire.decode_tile``), the preparer places (``viewer.flight.client_tile`` and the
morph targets toward a parent or from a child already here), the frame thread stitches
edge normals with same-level neighbours, adds morph targets and packs the upload
(``vertex_array``, ``chunk_layout``), then uploads again the neighbours and children that
changed. This replays that sequence for payloads in their arrival order (one pass, no
eviction) and prints CPU ms per tile per stage, plus a sha256 of everything uploaded
(vertex rows, chunk faces / starts / boxes, per upload) and of every placed tile's info,
so two versions of the client can be compared for speed and identical output. The
recording also holds the flight's selections (``runtime.lod.selection.select``'s
arguments, each frame): they are replayed with a digest of every Selection field, then
the teleport alone (from the jump to the first complete selection: its selections and the
tiles that arrived in it, the earlier tiles setting the scene uncounted).

    PYTHONPATH=. python bench/client_replay.py record earth /tmp/earth.pkl   # one flight (~90 s)
    PYTHONPATH=. python bench/client_replay.py replay earth /tmp/earth.pkl [--repeat 3]
    PYTHONPATH=/work/main python bench/client_replay.py replay earth /tmp/earth.pkl  # a baseline's client
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent  # the client under test comes from PYTHONPATH (a baseline: main's checkout)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # bench/viewer.py is not the package


def record(world: str, dst: str) -> int:
    """Fly ``bench/realtime.py --quick --no-gl --no-sim`` for ``world`` and pickle every
    payload the client decoded, in arrival order, and the arguments of every selection
    (``runtime.lod.selection.select``: views, known tiles' infos, ready, drawn last,
    options, last frame's expanded set) of the real-time flight."""
    import runtime.lod.streamer as rs
    import streaming.client as sc

    out, selects, lock = [], [], threading.Lock()
    times, select_times = [], []  # perf_counter seconds of each payload's arrival and each selection
    orig, orig_select = sc._decode_tile, rs.select

    def rec(p):
        with lock:
            out.append(p)
            times.append(time.perf_counter())
        return orig(p)

    def rec_select(views, geometry, known, ready, drawn_last, options, expanded_last):
        if len(selects) < 4000:
            selects.append((views, dict(known), frozenset(ready), drawn_last, options, expanded_last))
            select_times.append(time.perf_counter())
        return orig_select(views, geometry, known, ready, drawn_last, options, expanded_last)

    sc._decode_tile, rs.select = rec, rec_select
    sys.path.insert(0, str(BENCH))
    import realtime as br  # bench/realtime.py

    try:
        br.main(["--quick", "--no-gl", "--no-sim", "--world", world])
    finally:
        Path(dst).write_bytes(pickle.dumps({"world": world, "payloads": out, "selects": selects, "times": times,
                                            "select_times": select_times}))
        print(f"recorded {len(out)} payloads, {len(selects)} selections -> {dst}")
    return 0


def teleport_window(rec: dict, world) -> tuple[float, float] | None:
    """(jump, complete) perf_counter seconds of the recorded flight's first teleport: the
    first selection whose drawing camera moved more than 100 km since the last one, and
    the first selection after it that is complete (no holes, nothing over the target)."""
    from runtime.geometry import WorldGeometry
    from runtime.lod.selection import select

    sels, times = rec["selects"], rec.get("select_times")
    if not times:
        return None
    pos = [np.asarray(v[0].camera.position_m if hasattr(v[0], "camera") else v[0].position_m) for v, *_ in sels]
    jump = next((i for i in range(1, len(sels)) if np.linalg.norm(pos[i] - pos[i - 1]) > 1e5), None)
    if jump is None:
        return None
    geo = WorldGeometry(world)
    for i in range(jump, len(sels)):
        views, known, ready, drawn_last, options, expanded = sels[i]
        if select(views, geo, known, ready, drawn_last, options, expanded).complete:
            return times[jump], times[i]
    return None


def replay_selection(selects: list, world) -> dict:
    """Run every recorded selection again (one geometry, its memos filled as in the flight):
    CPU seconds and a sha256 of every field of each Selection (load: key, priority,
    band, steps, error)."""
    from runtime.geometry import WorldGeometry
    from runtime.lod.selection import select

    geo = WorldGeometry(world)
    h = hashlib.sha256()
    cpu = 0.0
    for views, known, ready, drawn_last, options, expanded in selects:
        t0 = time.thread_time()
        sel = select(views, geo, known, ready, drawn_last, options, expanded)
        cpu += time.thread_time() - t0
        h.update(repr((sel.draw, [(r.key, r.priority, r.band, r.steps, r.sse_px) for r in sel.load],
                       sorted(sel.keep), sorted(sel.ideal), sel.holes, sel.over_error, sel.max_sse_px,
                       sel.under_camera, sel.visited, sorted(sel.expanded))).encode())
    return {"selections": len(selects), "cpu_s": cpu, "digest": h.hexdigest()}


def replay(payloads: list, world, digest: bool = True, count_from: int = 0) -> dict:
    """One pass over ``payloads`` (arrival order): decode, place, stitch, morph, pack.
    Returns CPU seconds per stage, the tile count and the output digest. count_from: the
    payloads before this index only set the scene (their CPU is not counted)."""
    from runtime import wire
    from runtime.tiles import neighbour
    from viewer.flight import client_tile, drawable, stitch
    from viewer.renderer import chunk_layout, vertex_array

    h = hashlib.sha256()
    cpu = dict.fromkeys(("decode", "place", "stitch", "morph", "pack"), 0.0)
    tiles: dict = {}
    uploaded: set = set()

    def upload(key) -> None:
        t = tiles[key]
        parent = tiles.get(key.parent()) if key.level else None
        t0 = time.thread_time()
        surface, pge = drawable(world, t, parent)
        t1 = time.thread_time()
        rows = np.ascontiguousarray(vertex_array(surface)).tobytes()
        layout = chunk_layout(surface)
        t2 = time.thread_time()
        cpu["morph"] += t1 - t0
        cpu["pack"] += t2 - t1
        if digest:
            h.update(repr((key, pge)).encode())
            h.update(rows)
            for a in layout:
                h.update(np.ascontiguousarray(a).tobytes())
        uploaded.add(key)

    base = dict(cpu)
    for i, p in enumerate(payloads):
        if i == count_from:
            base = dict(cpu)
        t0 = time.thread_time()
        dec = wire.decode_tile(p)
        t1 = time.thread_time()
        key = dec.key
        if key in tiles:
            continue
        tile = client_tile(world, key, dec)
        parent = tiles.get(key.parent()) if key.level else None
        if parent is not None:
            drawable(world, tile, parent)
        for child in key.children():
            if child in tiles:
                drawable(world, tiles[child], tile)
        t2 = time.thread_time()
        cpu["decode"] += t1 - t0
        cpu["place"] += t2 - t1
        tiles[key] = tile
        if digest:
            h.update(repr((key, tile.info, tile.nbytes)).encode())
        dirty: dict = {}
        t0 = time.thread_time()
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nk = neighbour(world, key, dx, dy)
            other = tiles.get(nk) if nk is not None else None
            if other is not None and stitch(world, tile, other):
                if nk in uploaded:
                    dirty[nk] = None
                for c in list(key.children()) + list(nk.children()):
                    if c in uploaded:
                        dirty[c] = None
        cpu["stitch"] += time.thread_time() - t0
        upload(key)
        for c in key.children():
            if c in uploaded:
                dirty[c] = None
        for k in dirty:
            upload(k)
    if count_from >= len(payloads):
        base = dict(cpu)
    return {"tiles": len(tiles), "counted": len(payloads) - count_from,
            "cpu": {k: v - base[k] for k, v in cpu.items()}, "digest": h.hexdigest()}


def dedupe(payloads: list) -> list:
    """Each tile's first payload, in order."""
    seen: set = set()
    return [p for p in payloads if tuple(p["key"]) not in seen and not seen.add(tuple(p["key"]))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("world", choices=["plane", "earth"])
    r.add_argument("dst")
    p = sub.add_parser("replay")
    p.add_argument("world", choices=["plane", "earth"])
    p.add_argument("src")
    p.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if args.cmd == "record":
        return record(args.world, args.dst)
    from runtime.tiles import World
    from runtime.tin import kernels

    kernels.warm()
    try:
        rec = pickle.loads(Path(args.src).read_bytes())
    except TypeError as e:  # a frozen-dataclass TileKey does not unpickle as the named tuple
        raise SystemExit(f"{args.src}: recorded before runtime.tiles.TileKey became a named tuple "
                         f"(2026-12-06): record it again ({e})") from None
    payloads = rec["payloads"] if isinstance(rec, dict) else rec
    payloads = dedupe(payloads)  # the recording holds the lockstep flight too: each tile once
    world = World.parse(args.world)
    for i in range(args.repeat):
        res = replay(payloads, world)
        c = res["cpu"]
        n = res["tiles"]
        tot = sum(c.values())
        print(f"run {i}: {n} tiles, CPU {tot:.2f} s = {tot / n * 1e3:.2f} ms/tile: "
              + ", ".join(f"{k} {v / n * 1e3:.2f}" for k, v in c.items()) + f"  digest {res['digest'][:16]}")
    if isinstance(rec, dict) and rec.get("selects"):
        for i in range(args.repeat):
            res = replay_selection(rec["selects"], world)
            print(f"selection run {i}: {res['selections']} selections, CPU {res['cpu_s']:.2f} s = "
                  f"{res['cpu_s'] / res['selections'] * 1e3:.2f} ms each  digest {res['digest'][:16]}")
        window = teleport_window(rec, world)
        if window is not None:  # the teleport alone: its selections and the tiles that arrived in it
            t0, t1 = window
            sels = [s for s, t in zip(rec["selects"], rec["select_times"], strict=True) if t0 <= t <= t1]
            arrived = [p for p, t in zip(rec["payloads"], rec["times"], strict=True) if t0 <= t <= t1]
            before = [p for p, t in zip(rec["payloads"], rec["times"], strict=True) if t < t0]
            for i in range(args.repeat):
                res = replay_selection(sels, world)
                tiles = replay(dedupe(before) + dedupe(arrived), world, digest=False, count_from=len(dedupe(before)))
                c = tiles["cpu"]
                stages = ", ".join(f"{k} {v:.3f}" for k, v in c.items())
                print(f"teleport run {i} ({t1 - t0:.2f} s recorded): {res['selections']} selections "
                      f"{res['cpu_s']:.3f} s, {tiles['counted']} tiles {stages} s; "
                      f"client CPU {res['cpu_s'] + sum(c.values()):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
