"""The server's CPU for one teleport's tiles, replayed (issue 15): ``--record`` runs
bench/teleport.py's walk once and keeps the keys it fetched (the start site's view, then the
teleport's); a replay gives a fresh pyramid the start view's keys (untimed: the caches before
the jump), then the teleport's one key a call, as the server's generator and encoder do, and
prints generate and mesh+encode CPU per tile and the earth's ``constrain`` CPU per block.

No selection or client decode runs in a replay, so the same keys can be replayed by two trees
alternately (``PYTHONPATH=<tree> python bench/teleport_replay.py KEYS``: the tree on
PYTHONPATH is the one imported), the comparison a shared box allows (CPU time, several
rounds; one process's numbers move by 10-20 % with other jobs on the cores).

    PYTHONPATH=. python bench/teleport_replay.py --record /tmp/keys_earth.json --world earth
    PYTHONPATH=. python bench/teleport_replay.py /tmp/keys_earth.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# A PYTHONPATH tree comes first, so one copy of this script replays any checkout: this
# directory (sys.path[0]; its generator.py would hide the package) and the root go last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent), str(_HERE)]


def record(world_name: str, path: str) -> dict:
    """Run bench/teleport.py's walk for ``world_name`` and write the fetched keys to ``path``:
    {"world", "start": [[level, x, y], ...], "teleport": [...]}."""
    import teleport as tp

    world = tp.World.parse(world_name)
    keys: dict = {"world": world.value, "start": [], "teleport": []}
    phase = ["start"]
    fetch, complete_view = tp.fetch, tp.complete_view

    def recording_fetch(w, pyr, key):
        keys[phase[0]].append([key.level, key.x, key.y])
        return fetch(w, pyr, key)

    calls = [0]

    def phased_view(*args, **kw):
        calls[0] += 1
        phase[0] = "start" if calls[0] == 1 else "teleport"
        return complete_view(*args, **kw)

    tp.fetch, tp.complete_view = recording_fetch, phased_view
    try:
        tp.run_world(world, "fractal", 2.0, False, log=lambda *a: None)
    finally:
        tp.fetch, tp.complete_view = fetch, complete_view
    Path(path).write_text(json.dumps(keys))
    return keys


def replay(path: str) -> dict:
    """Generate and encode the recorded keys on a fresh pyramid (seed 0, fractal refiner)."""
    from generator.pyramid import Pyramid
    from runtime import jit
    from runtime.tiles import TileKey, World
    from streaming.tileservice import encode_fields

    keys = json.loads(Path(path).read_text())
    if not keys.get("teleport"):
        raise ValueError(f"{path} holds no teleport keys (write it with --record)")
    world = World.parse(keys["world"])
    jit.warm()
    pyr = Pyramid(world, 0, "fractal")
    for k in keys["start"]:
        key = TileKey(*k)
        encode_fields(world, key, pyr.tiles([key])[0])
    con = {"cpu": 0.0, "blocks": 0}
    constrain = getattr(pyr.anchor, "constrain", None)
    if constrain is not None:
        def timed_constrain(kids, level, origins, **kw):
            t = time.process_time()
            out = constrain(kids, level, origins, **kw)
            con["cpu"] += time.process_time() - t
            con["blocks"] += len(origins)
            return out

        pyr.anchor.constrain = timed_constrain
    gen = enc = 0.0
    for k in keys["teleport"]:
        key = TileKey(*k)
        t0 = time.process_time()
        fields = pyr.tiles([key])[0]
        t1 = time.process_time()
        encode_fields(world, key, fields)
        t2 = time.process_time()
        gen, enc = gen + t1 - t0, enc + t2 - t1
    n = len(keys["teleport"])
    return {"world": world.value, "tiles": n, "gen_ms_tile": round(1e3 * gen / n, 2),
            "enc_ms_tile": round(1e3 * enc / n, 2), "ms_tile": round(1e3 * (gen + enc) / n, 2),
            "constrain_ms_block": round(1e3 * con["cpu"] / con["blocks"], 4) if con["blocks"] else None,
            "constrain_blocks": con["blocks"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("keys", nargs="?", help="a --record file to replay")
    ap.add_argument("--record", metavar="FILE", help="run bench/teleport.py's walk and write its keys here")
    ap.add_argument("--world", choices=["plane", "earth"], default="earth", help="with --record")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.record:
        keys = record(args.world, args.record)
        print(json.dumps({k: len(v) for k, v in keys.items() if k != "world"}))
        return 0
    if not args.keys:
        ap.error("give a keys file to replay, or --record FILE")
    print(json.dumps(replay(args.keys)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
