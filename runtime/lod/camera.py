"""A pinhole camera in float64 world metres, and the screen-space error (DESIGN.md 3).

Matrices are camera-relative: the view matrix is a pure rotation with the camera at the
origin, and every world position is first made relative to ``position_m`` in float64.
That is what keeps vertices steady 10,000 km from the origin (float32 only ever holds
small offsets). Clip space follows OpenGL (camera looks down -z, depth in [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np


def _unit(v, name: str) -> np.ndarray:
    v = np.asarray(v, np.float64).reshape(3)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n == 0.0:
        raise ValueError(f"{name} must be a finite non-zero 3-vector, got {v}")
    return v / n


@dataclass(frozen=True, eq=False)
class Camera:
    """Pose and optics.

    position_m: (3,) float64 world metres; forward, up: (3,) unit vectors (``up`` is made
    orthogonal to ``forward``); fov_y_rad: vertical field of view; viewport_px: (width,
    height) pixels; near_m / far_m: clip distances.
    """

    position_m: np.ndarray
    forward: np.ndarray
    up: np.ndarray
    fov_y_rad: float = math.radians(60.0)
    viewport_px: tuple[int, int] = (1280, 720)
    near_m: float = 1.0
    far_m: float = 1.0e8
    _planes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        pos = np.asarray(self.position_m, np.float64).reshape(3)
        if not np.all(np.isfinite(pos)):
            raise ValueError(f"position_m must be finite, got {pos}")
        fwd = _unit(self.forward, "forward")
        up = _unit(self.up, "up")
        up = up - (up @ fwd) * fwd
        if np.linalg.norm(up) < 1e-9:
            raise ValueError("up must not be parallel to forward")
        up = up / np.linalg.norm(up)
        if not 0.0 < self.fov_y_rad < math.pi:
            raise ValueError(f"fov_y_rad must be in (0, pi), got {self.fov_y_rad}")
        w, h = (int(v) for v in self.viewport_px)
        if w <= 0 or h <= 0:
            raise ValueError(f"viewport_px must be positive (width, height), got {self.viewport_px}")
        if not 0.0 < self.near_m < self.far_m:
            raise ValueError(f"need 0 < near_m < far_m, got near {self.near_m}, far {self.far_m}")
        for name, v in (("position_m", pos), ("forward", fwd), ("up", up)):
            v.setflags(write=False)
            object.__setattr__(self, name, v)
        object.__setattr__(self, "viewport_px", (w, h))
        object.__setattr__(self, "_planes", _planes_from_clip(self.projection() @ self.view_rotation()))

    @classmethod
    def look_at(cls, eye_m, target_m, up, **optics) -> "Camera":
        """Camera at ``eye_m`` looking at ``target_m`` with ``up`` as the up hint."""
        eye = np.asarray(eye_m, np.float64).reshape(3)
        return cls(eye, np.asarray(target_m, np.float64).reshape(3) - eye, up, **optics)

    def moved(self, position_m=None, forward=None, up=None) -> "Camera":
        """A copy with a new pose (optics kept)."""
        return replace(self, position_m=self.position_m if position_m is None else position_m,
                       forward=self.forward if forward is None else forward,
                       up=self.up if up is None else up)

    @property
    def right(self) -> np.ndarray:
        return np.cross(self.forward, self.up)

    @property
    def aspect(self) -> float:
        return self.viewport_px[0] / self.viewport_px[1]

    def view_rotation(self) -> np.ndarray:
        """(4, 4) float64 world -> camera rotation (no translation: camera-relative)."""
        m = np.eye(4)
        m[0, :3], m[1, :3], m[2, :3] = self.right, self.up, -self.forward
        return m

    def projection(self, fov_y_rad: float | None = None) -> np.ndarray:
        """(4, 4) float64 OpenGL perspective (gluPerspective); ``fov_y_rad`` overrides the
        camera's (same aspect)."""
        f = 1.0 / math.tan((self.fov_y_rad if fov_y_rad is None else fov_y_rad) / 2.0)
        n, fa = self.near_m, self.far_m
        m = np.zeros((4, 4))
        m[0, 0], m[1, 1] = f / self.aspect, f
        m[2, 2], m[2, 3] = (fa + n) / (n - fa), 2.0 * fa * n / (n - fa)
        m[3, 2] = -1.0
        return m

    def frustum_planes(self, fov_scale: float = 1.0) -> np.ndarray:
        """(6, 4) float64 planes (left, right, bottom, top, near, far) relative to the camera:
        a point p (camera-relative, world axes) is inside when n . p + d >= 0 for all; unit n.
        ``fov_scale`` > 1 widens the field of view (prefetch margins), capped at 170 deg."""
        if fov_scale == 1.0:
            return self._planes
        wide = min(self.fov_y_rad * fov_scale, math.radians(170.0))
        return _planes_from_clip(self.projection(wide) @ self.view_rotation())

    def sse_px(self, geometric_error_m, distance_m):
        """Screen-space error in pixels (DESIGN.md 3): error * h_px / (distance * 2 tan(fov_y / 2)).

        Broadcasts over arrays; distance is clamped to 1 mm (inside a tile's box the error
        is effectively infinite, so the tile refines)."""
        k = self.viewport_px[1] / (2.0 * math.tan(self.fov_y_rad / 2.0))
        distance = np.maximum(np.asarray(distance_m, np.float64), 1e-3)
        out = np.asarray(geometric_error_m, np.float64) * k / distance
        return float(out) if out.ndim == 0 else out

    def project_px(self, points_m) -> np.ndarray:
        """(n, 3) world points -> (n, 3) (x_px, y_px from top-left, depth in [-1, 1]); float64."""
        rel = np.asarray(points_m, np.float64).reshape(-1, 3) - self.position_m
        clip = np.c_[rel, np.ones(len(rel))] @ (self.projection() @ self.view_rotation()).T
        ndc = clip[:, :3] / clip[:, 3:4]
        w, h = self.viewport_px
        return np.stack([(ndc[:, 0] + 1) * 0.5 * w, (1 - ndc[:, 1]) * 0.5 * h, ndc[:, 2]], axis=1)


def _planes_from_clip(m: np.ndarray) -> np.ndarray:
    """Gribb & Hartmann: frustum planes from a clip matrix, normalised."""
    rows = [m[3] + m[0], m[3] - m[0], m[3] + m[1], m[3] - m[1], m[3] + m[2], m[3] - m[2]]
    planes = np.array(rows, np.float64)
    planes /= np.linalg.norm(planes[:, :3], axis=1, keepdims=True)
    planes.setflags(write=False)
    return planes
