"""Free-flight controls (pure: input state in, pose out; the window only feeds devices).

Mouse look turns heading and pitch; W/S fly forward/back along the view, A/D strafe,
E/Q (or Space/C) climb/sink along local up; Shift multiplies the speed by 10. The scroll
wheel changes the base speed geometrically from walking (1.4 m/s) to orbital (8 km/s)
and beyond (``SPEEDS_MPS``). F toggles terrain following at ``agl_m``; teleport sets a
position (plane x/y metres, earth lon/lat degrees) and altitude.

Keys arrive as events (``KeyEvents``, fed by the window's GLFW key callback), not as one
poll per frame, so a tap shorter than a frame (Esc, F) is never missed.

The pose is a ``viewer.paths.Pose``, the same type scripted paths produce, so free flight
and recorded paths share the camera code (and terrain following).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from runtime.tiles import METRES_PER_DEGREE, World
from viewer.paths import Pose

WALK_MPS = 1.4
ORBITAL_MPS = 7_800.0
SPEEDS_MPS = tuple(float(v) for v in np.geomspace(WALK_MPS, 50_000.0, 25))
"""Scroll steps: 25 geometric steps from walking pace to 50 km/s (orbital is step ~21)."""


@dataclass(frozen=True)
class InputState:
    """One frame of input. keys: names held down (``W``, ``A``, ``S``, ``D``, ``Q``, ``E``,
    ``SPACE``, ``C``, ``LEFT_SHIFT``); mouse_dx/dy: cursor motion in pixels since last frame
    (right / down positive); scroll: wheel steps (up positive); pressed: keys that went down
    this frame (toggles: ``F``)."""

    keys: frozenset[str] = frozenset()
    mouse_dx_px: float = 0.0
    mouse_dy_px: float = 0.0
    scroll: float = 0.0
    pressed: frozenset[str] = frozenset()


class KeyEvents:
    """Key presses and releases, queued as they happen (GLFW key callback), read per frame.

    ``event(name, down)`` records one press (``down=True``; key repeats are presses of a
    key already down and change nothing) or release. ``frame()`` returns what the last
    frame saw: (held, pressed) frozensets of key names, where ``pressed`` are the keys
    that went down since the previous ``frame()`` and ``held`` the keys down now plus
    ``pressed`` (a tap between two frames moves for one frame). ``seen(name)`` is True
    while ``name`` is down or when it went down since the last ``seen(name)`` (Esc)."""

    def __init__(self, names):
        self.names = frozenset(names)
        self._down: set[str] = set()
        self._new: set[str] = set()
        self._latched: set[str] = set()

    def event(self, name: str, down: bool) -> None:
        if name not in self.names:
            return
        if down:
            if name not in self._down:
                self._new.add(name)
                self._latched.add(name)
            self._down.add(name)
        else:
            self._down.discard(name)

    def frame(self) -> tuple[frozenset[str], frozenset[str]]:
        pressed = frozenset(self._new)
        self._new.clear()
        return frozenset(self._down) | pressed, pressed

    def seen(self, name: str) -> bool:
        latched = name in self._latched
        self._latched.discard(name)
        return latched or name in self._down


@dataclass(frozen=True)
class ControlOptions:
    mouse_deg_per_px: float = 0.12
    boost: float = 10.0
    min_agl_m: float = 1.5          # never below this above the ground (eye height)


@dataclass
class FlyController:
    """State of free flight. ``pose`` altitudes are MSL unless ``follow`` is on, when
    ``pose.alt_m`` is the height above ground kept by terrain following."""

    world: World
    pose: Pose
    speed_index: int = 12
    follow: bool = False
    agl_m: float = 300.0
    options: ControlOptions = field(default_factory=ControlOptions)

    @property
    def speed_mps(self) -> float:
        return SPEEDS_MPS[self.speed_index]

    def teleport(self, x: float, y: float, alt_m: float, alt_mode: str = "msl") -> None:
        """Jump to (x, y) (plane metres east/north; earth lon/lat degrees) at ``alt_m``
        (``msl``: above the datum; ``agl``: above ground, turns terrain following on)."""
        if alt_mode not in ("msl", "agl"):
            raise ValueError(f"alt_mode must be 'msl' or 'agl', got {alt_mode!r}")
        if self.world is World.EARTH and not (-90.0 <= y <= 90.0 and -180.0 <= x <= 360.0):
            raise ValueError(f"earth teleport needs lon in [-180, 360] and lat in [-90, 90], got {x}, {y}")
        self.follow = alt_mode == "agl"
        if self.follow:
            self.agl_m = alt_m
        self.pose = replace(self.pose, x=float(x), y=float(y), alt_m=float(alt_m), alt_mode=alt_mode)

    def update(self, dt_s: float, inp: InputState, ground_m: float | None) -> Pose:
        """Advance by ``dt_s`` seconds; ``ground_m``: terrain height under the camera (None
        while unknown). Returns the new pose."""
        o, p = self.options, self.pose
        if inp.scroll:
            self.speed_index = int(np.clip(self.speed_index + round(inp.scroll), 0, len(SPEEDS_MPS) - 1))
        heading = (p.heading_deg + inp.mouse_dx_px * o.mouse_deg_per_px) % 360.0
        pitch = float(np.clip(p.pitch_deg - inp.mouse_dy_px * o.mouse_deg_per_px, -89.0, 89.0))
        if "F" in inp.pressed:
            self._toggle_follow(ground_m)
            p = self.pose
        k = inp.keys
        fwd = float("W" in k) - float("S" in k)
        side = float("D" in k) - float("A" in k)
        vert = float("E" in k or "SPACE" in k) - float("Q" in k or "C" in k)
        v = self.speed_mps * (o.boost if "LEFT_SHIFT" in k else 1.0)
        hd, pt = math.radians(heading), math.radians(pitch)
        # Local east/north/up displacement (metres).
        de = v * dt_s * (fwd * math.cos(pt) * math.sin(hd) + side * math.cos(hd))
        dn = v * dt_s * (fwd * math.cos(pt) * math.cos(hd) - side * math.sin(hd))
        du = v * dt_s * (fwd * math.sin(pt) + vert)
        x, y = p.x, p.y
        if self.world is World.EARTH:
            lat = math.radians(p.y)
            y = float(np.clip(p.y + dn / METRES_PER_DEGREE, -89.9, 89.9))
            x = (p.x + de / (METRES_PER_DEGREE * max(math.cos(lat), 1e-3)) + 180.0) % 360.0 - 180.0
        else:
            x, y = p.x + de, p.y + dn
        if self.follow:
            self.agl_m = max(self.agl_m + du, o.min_agl_m)
            alt, mode = self.agl_m, "agl"
        else:
            alt, mode = p.alt_m + du, "msl"
            if ground_m is not None:
                alt = max(alt, ground_m + o.min_agl_m)
        self.pose = Pose(x, y, alt, mode, heading, pitch)
        return self.pose

    def _toggle_follow(self, ground_m: float | None) -> None:
        p = self.pose
        if self.follow:
            self.follow = False
            self.pose = replace(p, alt_m=p.alt_m + (ground_m or 0.0), alt_mode="msl")
        elif ground_m is not None:
            self.follow = True
            self.agl_m = max(p.alt_m - ground_m, self.options.min_agl_m)
            self.pose = replace(p, alt_m=self.agl_m, alt_mode="agl")
