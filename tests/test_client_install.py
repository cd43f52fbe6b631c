"""A simulator or viewer that only talks to a server installs without torch (torch lives in
pyproject's ``generator`` extra): the client packages import, and decode a tile frame, in a
process where torch and the generator cannot be imported; the console script still parses
and says what ``train`` needs."""

import json
import subprocess
import sys
from pathlib import Path

from runtime.tiles import T
from runtime.wire import height_step_for_level

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import importlib, json, pkgutil, sys

REFUSED = {"torch", "generator"}


class Refuse:  # what a client-only install looks like: these packages are not there
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r} (client-only install)", name=name)
        return None


sys.meta_path.insert(0, Refuse())

import numpy as np

import runtime
import viewer

imported = []
for pkg in (runtime, viewer):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
        imported.append(m.name)
import streaming.client
import streaming.protocol as P
import streaming.sim

imported += ["streaming.client", "streaming.protocol", streaming.sim.__name__]
from runtime.tiles import T, TileKey
from runtime.wire import decode_tile, encode_heights

# A tile frame as a server sends it, from synthetic heights (metres).
r, c = np.mgrid[0:T + 1, 0:T + 1]
h = (300.0 * np.sin(r / 17.0) * np.cos(c / 23.0) + 0.5 * r).astype(np.float32)
key = TileKey(9, 3, -2)
payload, _, _ = encode_heights(h, 0.5, key=key, model="synthetic")
msg = P.unpack(P.pack({"type": "tile", "tile": payload}), 1 << 24)
tile = decode_tile(msg["tile"])
rc = tile.grid_rc.astype(np.int64)
err = float(np.abs(tile.height_m - h[rc[:, 0], rc[:, 1]]).max())

# The console script too: its parser never needs torch (the generator package stays
# importable in a real client install: it is torch that is missing).
REFUSED.discard("generator")
from streaming.cli import build_parser, main

args = build_parser().parse_args(["fly", "--server", "ws://127.0.0.1:8765", "--headless"])
train_rc = main(["train", "--steps", "1"])
print(json.dumps({"key": [tile.key.level, tile.key.x, tile.key.y], "n": len(rc), "faces": len(tile.faces), "err": err,
                  "step": tile.height_step_m, "model": tile.model, "fly_server": args.server,
                  "train_rc": train_rc, "imported": imported,
                  "torch_loaded": any(m.split(".")[0] == "torch" for m in sys.modules)}))
"""


def test_client_packages_work_without_torch_or_the_generator():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False
    want = {"runtime.wire", "runtime.tin.placement", "viewer.flight", "viewer.app", "viewer.renderer", "streaming.sim"}
    assert want <= set(out["imported"])
    assert out["key"] == [9, 3, -2] and out["model"] == "synthetic"
    assert 3 <= out["n"] < (T + 1) ** 2 and out["faces"] > 0
    # Quantised heights come back within half a step of the synthetic field at every vertex.
    assert out["step"] == height_step_for_level(9) and out["err"] <= out["step"] / 2 + 1e-9
    assert out["fly_server"] == "ws://127.0.0.1:8765"
    assert out["train_rc"] == 2 and "training needs torch" in proc.stderr
