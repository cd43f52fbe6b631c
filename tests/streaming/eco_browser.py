"""Headless Chromium driven over the DevTools protocol (for tests/streaming/test_eco_cesium.py).

Chromium (Debian package ``chromium``) runs with no network access beyond 127.0.0.1
traffic the page makes itself, a fresh profile and the flags that stop background
networking; WebGL runs on SwiftShader (``--disable-gpu``). The driver is a plain
DevTools-protocol client over ``websockets`` (the same protocol chromedriver speaks
to Chromium), so no WebDriver binding is needed.
"""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[2]
CESIUM_BUILD = REPO / ".ci" / "node" / "node_modules" / "cesium" / "Build" / "Cesium"

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--no-default-browser-check",
    "--enable-unsafe-swiftshader", "--use-angle=swiftshader",  # WebGL without a GPU
    "--hide-scrollbars",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class StaticSite:
    """A localhost static server for the test page and the CesiumJS build (another origin
    than the tile server, so CORS is exercised)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile_dir: Path, size=(800, 500)):
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium is not installed (bash .ci/setup --dev installs it)")
        profile_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-port=0",
             f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().split()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 << 20, open_timeout=10).__enter__()
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        # A fixed CSS viewport and pixel ratio: screenshots are exactly ``size``.
        self.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                  mobile=False)

    def call(self, method: str, timeout_s: float = 60.0, **params) -> dict:
        """Send one command and wait for its answer, keeping events that arrive meanwhile."""
        i = next(self._ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page exception: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float):
        """Poll ``expression`` until it is truthy (the page's own loaded/failed flag)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = self.evaluate(expression)
            if v:
                return v
            time.sleep(0.25)
        raise TimeoutError(f"page did not reach {expression!r} within {timeout_s} s")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def errors(self) -> list[str]:
        """Errors the page reported to DevTools: exceptions, console.error, failed loads."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def bad_responses(self) -> list[str]:
        """``status url`` of every HTTP response >= 400 and every request that failed
        (Network domain), excluding the page's own favicon."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Network.responseReceived" and p["response"]["status"] >= 400:
                out.append(f"{p['response']['status']} {p['response']['url']}")
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                out.append(f"failed {p.get('errorText')} ({p.get('type')})")
        return out

    def response_urls(self) -> list[str]:
        """URLs of every HTTP response the page received, in order."""
        return [e["params"]["response"]["url"] for e in self.events if e.get("method") == "Network.responseReceived"]

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()
