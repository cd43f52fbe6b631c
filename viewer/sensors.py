"""Sensors for simulators: several cameras per frame, read back as numpy (no window).

Two layers:

- ``SensorRig`` renders named cameras from the tiles a ``TerrainRenderer`` holds and
  reads back RGB, depth in metres, world-frame normals and false-colour NIR.
- ``SensorSession`` owns everything else: a headless GL context, a tile client (a
  running server's URL, or an in-process ``streaming.server.TileServer``) and the
  streamer; ``capture`` streams until every camera's view is complete at the error
  target, then renders all of them from one tile selection.

```python
from viewer.sensors import SensorSession, SensorSpec
with SensorSession([SensorSpec("front", (640, 480)), SensorSpec("down", (256, 256), 90.0)],
                   url="ws://127.0.0.1:8765") as s:
    cams = {"front": s.camera("front", (x, y, 500.0), heading_deg=90, pitch_deg=-10),
            "down": s.camera("down", (x, y, 500.0), heading_deg=0, pitch_deg=-89)}
    frames = s.capture(cams)
    frames["front"].depth_m   # (480, 640) float32 metres along the view axis, inf = sky
```
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.lod.camera import Camera
from runtime.tiles import World
from viewer.flight import Flight, FlightOptions, start_in_process, stop_in_process
from viewer.paths import Pose, camera_for
from viewer.renderer import MorphOptions, RenderTargets, TerrainRenderer

CHANNELS = frozenset({"rgb", "depth_m", "normal", "nir"})


@dataclass(frozen=True)
class SensorSpec:
    """A camera sensor. size_px: (width, height); fov_y_deg: vertical field of view;
    channels: any of ``rgb``, ``depth_m``, ``normal``, ``nir``."""

    name: str
    size_px: tuple[int, int] = (640, 480)
    fov_y_deg: float = 60.0
    channels: frozenset[str] = CHANNELS

    def __post_init__(self):
        w, h = (int(v) for v in self.size_px)
        if not (1 <= w <= 8192 and 1 <= h <= 8192):
            raise ValueError(f"sensor {self.name!r}: size_px must be (width, height) in 1..8192, got {self.size_px}")
        if not 0.0 < self.fov_y_deg < 180.0:
            raise ValueError(f"sensor {self.name!r}: fov_y_deg must be in (0, 180), got {self.fov_y_deg}")
        bad = set(self.channels) - CHANNELS
        if bad:
            raise ValueError(f"sensor {self.name!r}: unknown channels {sorted(bad)}; expected {sorted(CHANNELS)}")
        object.__setattr__(self, "size_px", (w, h))
        object.__setattr__(self, "channels", frozenset(self.channels))


@dataclass(frozen=True, eq=False)
class SensorFrame:
    """One camera's read-back. rgb: (H, W, 3) uint8, row 0 = top; depth_m: (H, W) float32
    metres along the view axis, inf where sky; normal: (H, W, 3) float32 world-frame unit
    normals, 0 where sky; nir: (H, W, 3) uint8 false colour (R = NIR, G = red, B = green)
    where the world has a NIR band, else None. Channels not asked for are None."""

    name: str
    camera: Camera
    rgb: np.ndarray | None
    depth_m: np.ndarray | None
    normal: np.ndarray | None
    nir: np.ndarray | None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.rgb, self.depth_m, self.normal, self.nir) if a is not None)


class SensorRig:
    """Offscreen targets per sensor on a renderer's context."""

    def __init__(self, renderer: TerrainRenderer, specs: Sequence[SensorSpec]):
        names = [s.name for s in specs]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"sensor names must be unique and at least one, got {names}")
        self.renderer = renderer
        self.specs = {s.name: s for s in specs}
        self.targets = {s.name: RenderTargets(renderer.ctx, s.size_px) for s in specs}
        self.has_nir = False  # set by the owner when the world's tiles carry a NIR band

    def camera(self, name: str, position_m, forward, up) -> Camera:
        s = self.specs[name]
        return Camera(np.asarray(position_m, np.float64), forward, up, fov_y_rad=math.radians(s.fov_y_deg),
                      viewport_px=s.size_px, near_m=0.5)

    def capture(self, cameras: Mapping[str, Camera], draw, up_at) -> dict[str, SensorFrame]:
        """Render each named camera (viewport must equal its spec's size) and read back.

        draw: keys to draw (uploaded); up_at: (3,) position -> (3,) local up."""
        out = {}
        for name, cam in cameras.items():
            spec = self.specs.get(name)
            if spec is None:
                raise KeyError(f"no sensor named {name!r}; have {sorted(self.specs)}")
            if tuple(cam.viewport_px) != spec.size_px:
                raise ValueError(f"sensor {name!r}: camera viewport {cam.viewport_px} != spec size {spec.size_px}")
            tgt = self.targets[name]
            self.renderer.render(cam, draw, up_at(cam.position_m), targets=tgt)
            ch = spec.channels
            out[name] = SensorFrame(
                name, cam,
                rgb=tgt.read_rgb() if "rgb" in ch else None,
                depth_m=tgt.read_depth_m(self.renderer.far_m) if "depth_m" in ch else None,
                normal=tgt.read_normals() if "normal" in ch else None,
                nir=tgt.read_nir() if "nir" in ch and self.has_nir else None,
            )
        return out

    def release(self) -> None:
        for t in self.targets.values():
            t.release()


class SensorSession:
    """Headless sensor rendering of a served world (see the module docstring)."""

    def __init__(self, specs: Sequence[SensorSpec], url: str | None = None, server=None,
                 error_target_px: float = 2.0, cache_bytes: int = 512 << 20, token: str | None = None):
        from streaming.client import SyncTileClient
        from viewer.context import headless_context

        if (url is None) == (server is None):
            raise ValueError("give exactly one of url (a running server) or server (run in-process)")
        self._server = server
        self._thread = self._loop = None
        if url is None:
            url, self._thread, self._loop = start_in_process(server)
        self.client = SyncTileClient(url, token=token)
        self.world = World.parse(self.client.hello.world)
        self.ctx = headless_context()
        first = specs[0].size_px if specs else (16, 16)
        self.renderer = TerrainRenderer(self.ctx, first, morph=MorphOptions(error_target_px=error_target_px))
        opts = FlightOptions(error_target_px=error_target_px, cache_bytes=cache_bytes)
        self.flight = Flight(self.world, self.client, self.renderer, opts)
        self.rig = SensorRig(self.renderer, specs)

    def camera(self, name: str, position, heading_deg: float = 0.0, pitch_deg: float = -10.0,
               alt_mode: str = "msl") -> Camera:
        """A camera for sensor ``name`` at ``position`` = (x, y, alt_m): plane east/north
        metres, earth lon/lat degrees; alt_mode ``msl`` or ``agl`` (above the loaded ground:
        call after a capture nearby, else the ground counts as 0)."""
        x, y, alt = (float(v) for v in position)
        spec = self.rig.specs[name]
        ground = 0.0
        if alt_mode == "agl":
            g = self.flight.ground_m(x, y)
            ground = 0.0 if g is None else g
        pose = Pose(x, y, alt, alt_mode, heading_deg, pitch_deg)
        return camera_for(self.world, pose, ground, math.radians(spec.fov_y_deg), spec.size_px)

    def capture(self, cameras: Mapping[str, Camera], timeout_s: float = 120.0,
                complete: bool = True) -> dict[str, SensorFrame]:
        """Stream until all views are complete (``complete=True``; raises TimeoutError after
        ``timeout_s``) or just what is loaded now, then render every camera."""
        cams = list(cameras.values())
        self.flight.settle(cams, timeout_s if complete else 0.0)
        geo = self.flight.streamer.geometry
        draw = self.flight.last.selection.draw
        return self.rig.capture(cameras, draw, lambda p: geo.up(np.asarray(p)[None])[0])

    def close(self) -> None:
        self.rig.release()
        self.renderer.close()
        self.client.close()
        if self._loop is not None:
            stop_in_process(self._server, self._thread, self._loop)
        self.ctx.release()

    def __enter__(self) -> "SensorSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
