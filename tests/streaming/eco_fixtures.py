"""Shared pieces of the tests/streaming/test_eco_*.py tests: a web tile server on a
background event loop, HTTP GETs, and the Node.js validators of .ci/node."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / ".ci" / "node" / "node_modules"


class ServerThread:
    """Runs a TileServer (with its HTTP endpoints) on its own event loop in a daemon thread."""

    def __init__(self, server):
        self.server = server
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.port = self.loop.run_until_complete(server.start("127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(60):
            raise RuntimeError("web tile server did not start")
        self.base = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def get(url: str, method: str = "GET", headers: dict | None = None, timeout_s: float = 120):
    """(status, headers dict, body bytes) of one HTTP request; errors are returned, not raised."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def node_available() -> bool:
    return shutil.which("node") is not None and (NODE_MODULES / "gltf-validator").is_dir()


def gltf_validate(paths: list[Path]) -> list[dict]:
    """Khronos glTF-Validator (npm ``gltf-validator``) reports of GLB files, one per path."""
    script = """
const v = require('gltf-validator'); const fs = require('fs');
(async () => {
  const out = [];
  for (const p of JSON.parse(process.argv[1])) {
    const r = await v.validateBytes(new Uint8Array(fs.readFileSync(p)), {maxIssues: 50});
    out.push({path: p, issues: r.issues, info: r.info});
  }
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""
    r = subprocess.run(["node", "-e", script, json.dumps([str(p) for p in paths])], cwd=NODE_MODULES.parent,
                       capture_output=True, text=True, timeout=300, check=True)
    return json.loads(r.stdout)


# ---------------------------------------------------------------- 3D Tiles 1.1 subtrees, read from the spec


def read_subtree(blob: bytes) -> tuple[dict, bytes]:
    """Independent reader of the 3D Tiles 1.1 binary subtree layout: (JSON, binary chunk)."""
    import struct

    magic, version, jlen, blen = struct.unpack_from("<4sIQQ", blob)
    assert magic == b"subt" and version == 1 and jlen % 8 == 0 and blen % 8 == 0
    assert len(blob) == 24 + jlen + blen
    return json.loads(blob[24:24 + jlen]), blob[24 + jlen:]


def bit(js: dict, body: bytes, avail: dict, index: int) -> bool:
    """Bit ``index`` of an availability (constant or bitstream, least significant bit first)."""
    if "constant" in avail:
        return bool(avail["constant"])
    view = js["bufferViews"][avail["bitstream"]]
    byte = body[view["byteOffset"] + index // 8]
    return bool((byte >> (index % 8)) & 1)


def morton(x: int, y: int) -> int:
    return sum((((x >> b) & 1) << (2 * b)) | (((y >> b) & 1) << (2 * b + 1)) for b in range(20))


def tile_heights(js: dict, body: bytes) -> list[tuple[float, float]] | None:
    """The TILE_MINIMUM_HEIGHT / TILE_MAXIMUM_HEIGHT rows of a subtree's tile metadata
    (FLOAT64 property table), one per available tile in bit order; None without metadata."""
    import numpy as np

    if "tileMetadata" not in js:
        return None
    table = js["propertyTables"][js["tileMetadata"]]
    cols = []
    for name in ("minimumHeight", "maximumHeight"):
        v = js["bufferViews"][table["properties"][name]["values"]]
        assert v["byteOffset"] % 8 == 0
        cols.append(np.frombuffer(body, "<f8", table["count"], v["byteOffset"]))
    return list(zip(cols[0].tolist(), cols[1].tolist()))


def walk_tileset(base: str, query: str = "") -> dict:
    """Walk an implicit 3D Tiles 1.1 tileset at ``base`` (the folder of tileset.json) as a
    client would: every subtree its parents advertise, every tile and content its subtrees
    advertise, down to the last level. Returns {"tiles": {(root, level, x, y): (min, max)
    height or None}, "failed": [(url, status)], "subtrees": n, "last_level": L}."""
    status, _, body = get(f"{base}/tileset.json{query}")
    assert status == 200, status
    ts = json.loads(body)
    out = {"tiles": {}, "failed": [], "subtrees": 0, "last_level": 0}
    for root in ts["root"]["children"]:
        it = root["implicitTiling"]
        levels, n_avail = it["subtreeLevels"], it["availableLevels"]
        sub_uri, content_uri = it["subtrees"]["uri"], root["content"]["uri"]
        todo = [(0, 0, 0)]
        while todo:
            sl, sx, sy = todo.pop()
            url = f"{base}/{sub_uri.format(level=sl, x=sx, y=sy)}{query}"
            status, _, blob = get(url)
            if status != 200:
                out["failed"].append((url, status))
                continue
            out["subtrees"] += 1
            js, bin_ = read_subtree(blob)
            heights = tile_heights(js, bin_)
            row = 0
            for k in range(levels):
                for m in range(4 ** k):
                    i = (4 ** k - 1) // 3 + m
                    if not bit(js, bin_, js["tileAvailability"], i):
                        continue
                    x = (sx << k) + sum(((m >> (2 * b)) & 1) << b for b in range(k))
                    y = (sy << k) + sum(((m >> (2 * b + 1)) & 1) << b for b in range(k))
                    level = sl + k
                    assert level < n_avail, f"tile at level {level} beyond availableLevels {n_avail}"
                    coord = (int(content_uri.split("/")[1]), level, x, y)
                    out["tiles"][coord] = heights[row] if heights is not None else None
                    row += 1
                    out["last_level"] = max(out["last_level"], level)
                    if bit(js, bin_, js["contentAvailability"][0], i):
                        url = f"{base}/{content_uri.format(level=level, x=x, y=y)}{query}"
                        status, _, glb = get(url)
                        if status != 200 or glb[:4] != b"glTF":
                            out["failed"].append((url, status))
            for m in range(4 ** levels):
                if bit(js, bin_, js["childSubtreeAvailability"], m):
                    x = (sx << levels) + sum(((m >> (2 * b)) & 1) << b for b in range(levels))
                    y = (sy << levels) + sum(((m >> (2 * b + 1)) & 1) << b for b in range(levels))
                    todo.append((sl + levels, x, y))
    return out
