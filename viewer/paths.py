"""Scripted camera paths: a small JSON format, linear in time (docs/VIEWER.md).

```json
{"keyframes": [
  {"t": 0, "x": 7.3, "y": 45.9, "alt_m": 15000, "alt_mode": "msl", "heading_deg": 90, "pitch_deg": -25},
  {"t": 8, "x": 7.9, "y": 46.0, "alt_m": 300, "alt_mode": "agl", "heading_deg": 80, "pitch_deg": -8, "cut": false}
]}
```
``x, y``: plane east/north metres, earth lon/lat degrees. ``alt_mode``: ``msl`` (height
above the ellipsoid / plane zero) or ``agl`` (above the ground under the camera:
terrain following). ``cut``: jump to this keyframe instead of flying to it (teleport).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.geometry import east_north_up, geodetic_to_ecef
from runtime.lod.camera import Camera
from runtime.tiles import METRES_PER_DEGREE, World

METRES_PER_DEGREE_LAT = METRES_PER_DEGREE  # close enough for placing a path (within 0.7 %)


@dataclass(frozen=True)
class Keyframe:
    t: float
    x: float
    y: float
    alt_m: float
    alt_mode: str = "agl"
    heading_deg: float = 0.0  # clockwise from north
    pitch_deg: float = -10.0  # negative looks down
    cut: bool = False

    def __post_init__(self):
        if self.alt_mode not in ("agl", "msl"):
            raise ValueError(f"alt_mode must be 'agl' or 'msl', got {self.alt_mode!r}")
        if not -90.0 < self.pitch_deg < 90.0:
            raise ValueError(f"pitch_deg must be in (-90, 90), got {self.pitch_deg}")


@dataclass(frozen=True)
class Pose:
    x: float
    y: float
    alt_m: float
    alt_mode: str
    heading_deg: float
    pitch_deg: float


class CameraPath:
    def __init__(self, keyframes: list[Keyframe]):
        if not keyframes:
            raise ValueError("a camera path needs at least one keyframe")
        ts = [k.t for k in keyframes]
        if ts != sorted(ts):
            raise ValueError("keyframe times must not decrease")
        self.keyframes = keyframes

    @property
    def duration_s(self) -> float:
        return self.keyframes[-1].t - self.keyframes[0].t

    @classmethod
    def load(cls, path: str | Path) -> "CameraPath":
        try:
            doc = json.loads(Path(path).read_text())
            frames = [Keyframe(**{k: v for k, v in kf.items()}) for kf in doc["keyframes"]]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"camera path {path}: expected JSON {{'keyframes': [{{t, x, y, alt_m, ...}}]}}: "
                             f"{exc}") from None
        return cls(frames)

    def pose(self, t: float) -> Pose:
        ks = self.keyframes
        if t <= ks[0].t:
            a = b = ks[0]
        elif t >= ks[-1].t:
            a = b = ks[-1]
        else:
            i = next(i for i in range(1, len(ks)) if ks[i].t >= t)
            a, b = ks[i - 1], ks[i]
            if b.cut and t < b.t:
                b = a
        f = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
        dh = (b.heading_deg - a.heading_deg + 180.0) % 360.0 - 180.0
        mode = a.alt_mode if f < 1.0 else b.alt_mode
        alt = a.alt_m + f * (b.alt_m - a.alt_m) if a.alt_mode == b.alt_mode else (a.alt_m if f < 1 else b.alt_m)
        return Pose(a.x + f * (b.x - a.x), a.y + f * (b.y - a.y), alt, mode,
                    (a.heading_deg + f * dh) % 360.0, a.pitch_deg + f * (b.pitch_deg - a.pitch_deg))


def default_path(world: World, start_xy: tuple[float, float] | None = None, duration_s: float = 8.0,
                 heading_deg: float = 85.0) -> CameraPath:
    """The main job's flight: a descent from 8 km to a 300 m AGL pass at 250 m/s through
    ``start_xy`` (plane metres; earth lon/lat degrees, e.g. from ``pick_start``) toward
    ``heading_deg``. Without a start: the plane's origin, or the earth's Pennine Alps."""
    if world is World.EARTH and start_xy is None:
        # Over the Pennine Alps (Monte Rosa / Matterhorn), eastward.
        return CameraPath([
            Keyframe(0.0, 7.40, 45.80, 20000.0, "msl", 60.0, -35.0),
            Keyframe(duration_s * 0.5, 7.62, 45.92, 3000.0, "agl", 75.0, -18.0),
            Keyframe(duration_s, 7.80, 45.97, 400.0, "agl", 80.0, -8.0),
        ])
    x0, y0 = start_xy if start_xy is not None else (0.0, 0.0)
    d = 250.0 * duration_s
    h = math.radians(heading_deg)
    east, north = math.sin(h), math.cos(h)
    if world is World.EARTH:  # metres -> degrees around the start
        sy = 1.0 / METRES_PER_DEGREE_LAT
        sx = sy / max(math.cos(math.radians(y0)), 1e-3)
    else:
        sx = sy = 1.0

    def at(f):
        return x0 + f * d * east * sx, y0 + f * d * north * sy

    return CameraPath([
        Keyframe(0.0, *at(-0.6), 8000.0, "agl", (heading_deg - 15.0) % 360.0, -30.0),
        Keyframe(duration_s * 0.5, *at(-0.1), 1200.0, "agl", (heading_deg - 5.0) % 360.0, -15.0),
        Keyframe(duration_s, *at(0.4), 300.0, "agl", heading_deg % 360.0, -8.0),
    ])


def pose_frame(world: World, pose: Pose, ground_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World position (3,) float64, forward and up unit vectors for a pose."""
    h = pose.alt_m + (ground_m if pose.alt_mode == "agl" else 0.0)
    if world is World.EARTH:
        pos = geodetic_to_ecef(np.array([pose.x]), np.array([pose.y]), np.array([h]))[0]
        enu = east_north_up(pose.x, pose.y)
        east, north, up = enu[0], enu[1], enu[2]
    else:
        pos = np.array([pose.x, pose.y, h], np.float64)
        east, north, up = np.eye(3)
    hd, pt = math.radians(pose.heading_deg), math.radians(pose.pitch_deg)
    fwd = math.cos(pt) * (math.sin(hd) * east + math.cos(hd) * north) + math.sin(pt) * up
    return pos, fwd / np.linalg.norm(fwd), up


FAR_M = 2.0e7
"""The renderer's far plane (m): nothing beyond it is drawn, so selection walks no further.
With Camera's default (1e8 m) the plane pinned 9 x 9 level-0 roots instead of 5 x 5, each
~100 ms of server CPU, all of them ahead of the tiles under the camera."""


def camera_for(world: World, pose: Pose, ground_m: float, fov_y_rad: float, viewport_px) -> Camera:
    pos, fwd, up = pose_frame(world, pose, ground_m)
    return Camera.look_at(pos, pos + fwd, up, fov_y_rad=fov_y_rad, viewport_px=tuple(viewport_px), far_m=FAR_M)


def highest_point(world: World, tiles) -> tuple[float, float, float]:
    """(x, y, height_m) of the highest vertex among decoded tiles (runtime.wire.DecodedTile).

    The default flight over a seeded plane starts near it, so it flies over land.
    """
    from runtime.geometry import geometry_for

    geo = geometry_for(world)
    best = None
    for key, t in tiles.items():
        i = int(np.argmax(t.height_m))
        if best is None or t.height_m[i] > best[2]:
            r0, c0 = key.sample_origin()
            p = geo.sample_to_world(key.level, np.array([r0 + t.grid_rc[i, 0]]), np.array([c0 + t.grid_rc[i, 1]]),
                                    np.array([t.height_m[i]]))[0]
            best = (float(p[0]), float(p[1]), float(t.height_m[i]))
    if best is None:
        raise ValueError("no tiles to search")
    return best


def pick_start(world: World, tiles, images: dict | None = None,
               window: int = 8) -> tuple[float, float, float, float]:
    """(x, y, relief_m, heading_deg) of a good place to fly: the centre of the window of
    ``window`` x ``window`` samples with the largest height range that is land and not
    snow, and the heading from there toward the window's highest sample (look at relief).

    tiles: {TileKey: runtime.wire.DecodedTile} (coarse tiles around the origin); images:
    {TileKey: (H, W, 3) uint8} their colour. A window qualifies when under 10 % of it is
    below sea level and (with colour) under 5 % of its pixels look like snow (all channels
    above 200). Falls back to the highest point when nothing qualifies.
    """
    from runtime.geometry import geometry_for
    from runtime.tiles import T
    from runtime.tin import tin_to_grid

    geo = geometry_for(world)
    best = None
    n = T // window
    for key, t in tiles.items():
        grid = tin_to_grid(t.grid_rc, t.height_m, t.faces)[:T, :T].reshape(n, window, n, window)
        relief = grid.max(axis=(1, 3)) - grid.min(axis=(1, 3))
        water = (grid < 0).mean(axis=(1, 3))
        ok = water < 0.1
        img = (images or {}).get(key)
        if img is not None:
            from PIL import Image

            small = np.asarray(Image.fromarray(np.asarray(img, np.uint8)).resize((T, T), Image.BILINEAR))
            snow = (small.min(axis=2) > 200).reshape(n, window, n, window).mean(axis=(1, 3))
            ok &= snow < 0.05
        score = np.where(ok, relief, -1.0)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[i, j] > 0 and (best is None or score[i, j] > best[0]):
            r0, c0 = key.sample_origin()
            pi, pj = np.unravel_index(int(np.argmax(grid[i, :, j, :])), (window, window))
            # Rows grow south, columns east (both worlds): heading from the centre to the peak.
            dn = (window / 2 - 0.5) - pi
            de = pj - (window / 2 - 0.5)
            heading = math.degrees(math.atan2(de, dn)) % 360.0 if (dn or de) else 85.0
            p = geo.sample_to_world(key.level, [r0 + (i + 0.5) * window], [c0 + (j + 0.5) * window], [0.0])[0]
            if world is World.EARTH:
                from runtime.geometry import ecef_to_geodetic

                lon, lat, _ = ecef_to_geodetic(p[None])
                p = (float(lon[0]), float(lat[0]))
            best = (float(score[i, j]), float(p[0]), float(p[1]), heading)
    if best is None:
        x, y, _ = highest_point(world, tiles)
        return x, y, 0.0, 85.0
    return best[1], best[2], best[0], best[3]
