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
