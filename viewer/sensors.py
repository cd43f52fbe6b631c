"""Sensors for simulators: several cameras per frame, read back as numpy (no window).

Two layers:

- ``SensorRig`` renders named cameras from the tiles a ``TerrainRenderer`` holds and
  reads back RGB, depth in metres, world-frame normals, false-colour NIR and segmentation
  (class ids of the fixed table ``runtime.featurelayer.CLASS_NAMES``: land-cover classes,
  water, building, road, tree, sky; 255 where the ground has no feature layer).
- ``SensorSession`` owns everything else: a headless GL context, a tile client (a
  running server's URL, or an in-process ``streaming.server.TileServer``) and the
  streamer; ``capture`` streams until every camera's view is complete at the error
  target, then renders all of them from one tile selection.

Conventions (docs/SIMULATOR.md): ``heading_deg`` clockwise from north; ``pitch_deg`` up
positive, -90 looks straight down (nadir; the image top then points to ``heading``);
``roll_deg`` about the view axis, positive = right side down (an aircraft rolling right),
so the picture turns counter-clockwise. Depth ``depth_m`` is planar (along the view
axis), ``range_m`` along each pixel's ray; normals are world-frame (ECEF on the earth;
x east, y north, z up on the plane). Every capture has a ``frame_id`` (one per
``capture`` call, increasing from 0) and a wall-clock ``timestamp_ns``.

```python
from viewer.sensors import SensorSession, SensorSpec
with SensorSession([SensorSpec("front", (640, 480)), SensorSpec("down", (256, 256), 90.0)],
                   url="ws://127.0.0.1:8765") as s:
    cams = {"front": s.camera("front", (x, y, 500.0), heading_deg=90, pitch_deg=-10),
            "down": s.camera("down", (x, y, 500.0), heading_deg=0, pitch_deg=-90)}
    frames = s.capture(cams)
    frames["front"].depth_m   # (480, 640) float32 metres along the view axis, inf = sky
    frames["front"].range_m   # (480, 640) float32 metres along each pixel's ray
```
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.featurelayer import LAYER
from runtime.geometry import east_north_up, geodetic_to_ecef
from runtime.lod.camera import Camera
from runtime.tiles import World
from viewer.flight import Flight, FlightOptions, start_in_process, stop_in_process
from viewer.renderer import MorphOptions, RenderTargets, TerrainRenderer

CHANNELS = frozenset({"rgb", "depth_m", "range_m", "normal", "nir", "segmentation", "thermal_k"})


@dataclass(frozen=True)
class SensorSpec:
    """A camera sensor. size_px: (width, height); fov_y_deg: vertical field of view;
    channels: any of ``rgb``, ``depth_m``, ``range_m``, ``normal``, ``nir``, ``segmentation``,
    ``thermal_k``."""

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
    planar depth (metres along the view axis), inf where sky; range_m: (H, W) float32
    metres from the eye along each pixel's ray (``depth_m / cos(angle off the axis)``,
    AirSim's DepthPerspective), inf where sky; normal: (H, W, 3) float32 world-frame unit
    normals (ECEF on the earth, x east / y north / z up on the plane), 0 where sky; nir:
    (H, W, 3) uint8 false colour (R = NIR, G = red, B = green) where the world has a NIR
    band (or the feature layer's per-class NIR: vegetation bright, water dark), else None;
    segmentation: (H, W) uint8 class ids (``runtime.featurelayer.CLASS_NAMES``; sky 14;
    255 = ground without the feature layer); thermal_k: (H, W) float32 brightness temperature
    in Kelvin (``viewer.thermal``). Channels not asked for are None. frame_id: the capture's number
    (all cameras of one ``capture`` share it; increases by 1 per capture, from 0);
    timestamp_ns: wall clock (``time.time_ns()``) when the capture rendered; sim_time_s:
    what the caller passed to ``capture`` (None if nothing)."""

    name: str
    camera: Camera
    rgb: np.ndarray | None
    depth_m: np.ndarray | None
    normal: np.ndarray | None
    nir: np.ndarray | None
    range_m: np.ndarray | None = None
    frame_id: int = 0
    timestamp_ns: int = 0
    sim_time_s: float | None = None
    segmentation: np.ndarray | None = None
    thermal_k: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.rgb, self.depth_m, self.range_m, self.normal, self.nir,
                                      self.segmentation, self.thermal_k) if a is not None)


def range_from_planar(depth_m: np.ndarray, fov_y_deg: float) -> np.ndarray:
    """(H, W) planar depth -> (H, W) float32 range along each pixel's ray (metres).

    A pixel centre (col j, row i) lies at (x, y) = ((j + 0.5 - W/2) / f, (H/2 - i - 0.5) / f)
    on the image plane at unit depth, f = H / (2 tan(fov_y / 2)) pixels; its ray is
    sqrt(1 + x^2 + y^2) times longer than its depth. inf stays inf."""
    h, w = depth_m.shape
    f = h / (2.0 * math.tan(math.radians(fov_y_deg) / 2.0))
    x = (np.arange(w) + 0.5 - w / 2.0) / f
    y = (h / 2.0 - np.arange(h) - 0.5) / f
    scale = np.sqrt(1.0 + x[None, :] ** 2 + y[:, None] ** 2)
    return (depth_m.astype(np.float64) * scale).astype(np.float32)


def oriented(east, north, up, heading_deg: float, pitch_deg: float, roll_deg: float = 0.0):
    """Local frame vectors (3,) -> (forward, camera up) unit (3,) float64.

    heading clockwise from north; pitch up positive, in [-90, 90] (at -90 the camera looks
    down ``-up`` and its image top points to ``heading``; at +90 it looks up with the
    image bottom toward ``heading``); roll about forward, positive = right side down."""
    if not -90.0 <= pitch_deg <= 90.0:
        raise ValueError(f"pitch_deg must be in [-90, 90], got {pitch_deg}")
    e, n, u = (np.asarray(v, np.float64) for v in (east, north, up))
    hd, pt, rl = (math.radians(v) for v in (heading_deg, pitch_deg, roll_deg))
    level = math.sin(hd) * e + math.cos(hd) * n          # horizontal heading direction
    fwd = math.cos(pt) * level + math.sin(pt) * u
    cam_up = -math.sin(pt) * level + math.cos(pt) * u    # orthogonal to fwd at every pitch
    right = np.cross(fwd, cam_up)
    cam_up = math.cos(rl) * cam_up + math.sin(rl) * right
    return fwd / np.linalg.norm(fwd), cam_up / np.linalg.norm(cam_up)


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
        self.frames_captured = 0  # the next capture's frame_id

    def camera(self, name: str, position_m, forward, up) -> Camera:
        s = self.specs[name]
        return Camera(np.asarray(position_m, np.float64), forward, up, fov_y_rad=math.radians(s.fov_y_deg),
                      viewport_px=s.size_px, near_m=0.5)

    def capture(self, cameras: Mapping[str, Camera], draw, up_at,
                sim_time_s: float | None = None) -> dict[str, SensorFrame]:
        """Render each named camera (viewport must equal its spec's size) and read back.

        draw: keys to draw (uploaded); up_at: (3,) position -> (3,) local up; sim_time_s:
        stamped on every frame as it is. All frames get the same new ``frame_id``."""
        frame_id, stamp = self.frames_captured, time.time_ns()
        self.frames_captured += 1
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
            depth = tgt.read_depth_m(self.renderer.far_m) if ch & {"depth_m", "range_m"} else None
            out[name] = SensorFrame(
                name, cam,
                rgb=tgt.read_rgb() if "rgb" in ch else None,
                depth_m=depth if "depth_m" in ch else None,
                normal=tgt.read_normals() if "normal" in ch else None,
                nir=tgt.read_nir() if "nir" in ch and self.has_nir else None,
                range_m=range_from_planar(depth, spec.fov_y_deg) if "range_m" in ch else None,
                frame_id=frame_id, timestamp_ns=stamp, sim_time_s=sim_time_s,
                segmentation=tgt.read_segmentation() if "segmentation" in ch else None,
                thermal_k=tgt.read_thermal_k() if "thermal_k" in ch else None,
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
        self.client = SyncTileClient(url, token=token, expect={"layers": [LAYER]})  # features if served
        self.world = World.parse(self.client.hello.world)
        self.ctx = headless_context()
        first = specs[0].size_px if specs else (16, 16)
        self.renderer = TerrainRenderer(self.ctx, first, morph=MorphOptions(error_target_px=error_target_px))
        opts = FlightOptions(error_target_px=error_target_px, cache_bytes=cache_bytes)
        self.flight = Flight(self.world, self.client, self.renderer, opts)
        self.rig = SensorRig(self.renderer, specs)
        self.rig.has_nir = LAYER in self.client.hello.layers  # per-class NIR from the feature layer

    def camera(self, name: str, position, heading_deg: float = 0.0, pitch_deg: float = -10.0,
               alt_mode: str = "msl", roll_deg: float = 0.0) -> Camera:
        """A camera for sensor ``name`` at ``position`` = (x, y, alt_m): plane east/north
        metres, earth lon/lat degrees. alt_mode ``msl``: alt_m above the datum; ``agl``:
        above the ground under (x, y): the drawn surface when tiles there are loaded, else
        the server's height query (mode ``best``, level 16), so a camera made before the
        first capture is placed right too; LookupError when neither can say. Angles:
        heading clockwise from north, pitch in [-90, 90] (up positive), roll positive =
        right side down (the module docstring)."""
        if alt_mode not in ("msl", "agl"):
            raise ValueError(f"alt_mode must be 'msl' or 'agl', got {alt_mode!r}")
        x, y, alt = (float(v) for v in position)
        spec = self.rig.specs[name]
        if alt_mode == "agl":
            alt += self.ground_under(x, y)
        if self.world is World.EARTH:
            pos = geodetic_to_ecef(np.array([x]), np.array([y]), np.array([alt]))[0]
            e, n, u = east_north_up(x, y)
        else:
            pos = np.array([x, y, alt], np.float64)
            e, n, u = np.eye(3)
        fwd, up = oriented(e, n, u, heading_deg, pitch_deg, roll_deg)
        return Camera(pos, fwd, up, fov_y_rad=math.radians(spec.fov_y_deg), viewport_px=spec.size_px)

    def ground_under(self, x: float, y: float) -> float:
        """Ground height (m above the datum) under (x, y): the drawn/loaded surface, else
        the server's ``best`` height query; LookupError when the server answers none."""
        g = self.flight.ground_m(x, y)
        if g is not None:
            return g
        from streaming.client import ServerError

        try:
            ans = self.client.heights(np.array([[x, y]], np.float64), mode="best")
        except ServerError as exc:
            raise LookupError(
                f"alt_mode='agl' at ({x}, {y}): no tile loaded there and the server answered no height "
                f"query ({exc}); capture nearby first or give the altitude as msl"
            ) from exc
        return float(ans["height_m"][0])

    def capture(self, cameras: Mapping[str, Camera], timeout_s: float = 120.0,
                complete: bool = True, sim_time_s: float | None = None) -> dict[str, SensorFrame]:
        """Stream until all views are complete (``complete=True``; raises TimeoutError after
        ``timeout_s``) or just what is loaded now, then render every camera. Frames carry
        the capture's ``frame_id``, ``timestamp_ns`` and ``sim_time_s`` (as given)."""
        cams = list(cameras.values())
        self.flight.settle(cams, timeout_s if complete else 0.0)
        geo = self.flight.streamer.geometry
        draw = self.flight.last.selection.draw
        return self.rig.capture(cameras, draw, lambda p: geo.up(np.asarray(p)[None])[0], sim_time_s)

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
