"""Helpers for the streaming tests: a deterministic tile source and a loopback server.

The source isolates the server from the generator: a smooth analytic field (so
heights are known exactly at every sample), counting its calls, able to fail on
chosen keys or to hold the generator until the test lets it go. Everything else
is real: TileService, the mesh encoder (runtime.tin + runtime.wire), TileServer
on 127.0.0.1 and websockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

import numpy as np

from runtime.tiles import T, TileKey, World
from streaming.protocol import Limits
from streaming.server import ServerConfig, TileServer
from streaming.session import ServerInfo
from streaming.tileservice import ServiceConfig, TileService


@dataclass(frozen=True)
class Fields:
    key: TileKey
    height: np.ndarray
    rgb: np.ndarray | None
    model: str


def analytic_height(level: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Height (m) at global samples of ``level``: a tilted plane plus long waves."""
    return (
        0.5 * cols - 0.25 * rows + 40.0 * np.sin(rows / 97.0) * np.cos(cols / 131.0) + 10.0 * level
    ).astype(np.float32)


class SyntheticSource:
    """keys -> Fields, deterministic per key; records every call (list of key lists)."""

    def __init__(
        self,
        fail: set[TileKey] = frozenset(),
        noise_m: float = 0.0,
        rgb: bool = True,
        noisy_rgb: bool = False,
    ):
        self.noisy_rgb = noisy_rgb
        self.calls: list[list[TileKey]] = []
        self.fail = set(fail)
        self.noise_m = noise_m
        self.rgb = rgb
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self._lock = threading.Lock()

    @property
    def keys_generated(self) -> list[TileKey]:
        return [k for call in self.calls for k in call]

    def __call__(self, keys):
        keys = list(keys)
        with self._lock:
            self.calls.append(keys)
        self.entered.set()
        self.gate.wait(30)
        out = []
        for k in keys:
            if k in self.fail:
                raise RuntimeError(f"synthetic failure on {k}")
            r0, c0 = k.sample_origin()
            rows, cols = np.mgrid[r0 : r0 + T + 1, c0 : c0 + T + 1].astype(np.float64)
            h = analytic_height(k.level, rows, cols)
            if self.noise_m:
                rng = np.random.default_rng([k.level, k.x & 0xFFFF, k.y & 0xFFFF])
                h = h + (self.noise_m * rng.standard_normal(h.shape)).astype(np.float32)
            rgb = None
            if self.rgb:
                rgb = np.stack([(rows - r0) / T, (cols - c0) / T, np.full_like(rows, 0.5)], -1).astype(
                    np.float32
                )
            if self.noisy_rgb:  # incompressible colour: large frames
                rgb = (
                    np.random.default_rng([k.level, k.x & 0xFFFF, k.y & 0xFFFF, 1])
                    .random((T + 1, T + 1, 3))
                    .astype(np.float32)
                )
            out.append(Fields(k, h, rgb, "synthetic-1"))
        return out


@contextlib.asynccontextmanager
async def loopback_server(
    source=None,
    world: str = "plane",
    limits: Limits | None = None,
    service_config: ServiceConfig | None = None,
    store=None,
    token=None,
    origins=None,
    server_config: ServerConfig | None = None,
    heights: bool = False,
    prepare=None,
):
    """A started TileServer on 127.0.0.1 (random port) around ``source`` (and its stepped
    ``prepare``, if any: ``TileService``); yields (server, url)."""
    from streaming.heights import HeightConfig, HeightService

    source = source or SyntheticSource()
    limits = limits or Limits()
    service_config = service_config or ServiceConfig()
    server_config = server_config or ServerConfig()
    service = TileService(world, source, service_config, store=store, prepare=prepare)
    hs = None
    if heights:
        hs = HeightService(
            world, service.fields, HeightConfig(max_level=limits.max_level, max_tiles=limits.max_height_tiles)
        )
        service.on_fields = hs.remember
    info = ServerInfo(world=world, seed=1, model="synthetic-1", limits=limits, token=token)
    server = TileServer(info, service, heights=hs, allowed_origins=origins, config=server_config)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, f"ws://127.0.0.1:{port}"
    finally:
        await server.close()


def run(coro, timeout_s: float = 60.0):
    """Run a test coroutine with a deadline (no pytest-asyncio here)."""

    async def main():
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(main())


__all__ = ["Fields", "SyntheticSource", "analytic_height", "loopback_server", "run", "World"]
