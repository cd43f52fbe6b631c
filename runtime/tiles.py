"""Tile keys and the two worlds' sample grids (DESIGN.md section 1).

Every tile holds (T+1) x (T+1) samples, T = 256. Sample [r, c] of tile
(L, x, y) is global sample (y*T + r, x*T + c) of level L, so neighbours share
their edge samples. Rows grow southward (north-up, like DEM rasters and
Cesium's geographic tiling scheme where y = 0 is the northern row of tiles).

- ``earth``: Cesium geographic tiling (EPSG:4326), 2 x 1 root tiles of
  180 x 180 degrees at level 0. Global sample (r, c) of level L lies at
  lon = -180 + c * d, lat = 90 - r * d, with d = (180 / 256) / 2**L degrees.
- ``plane``: an infinite flat world in metres. Global sample (r, c) lies at
  east = c * s, north = -r * s, with s = d * METRES_PER_DEGREE (the same
  spacing as the earth at the equator). Any integer x, y is a tile.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

T = 256
"""Samples per tile edge, minus one: a tile is (T+1) x (T+1) samples."""

ANCHOR_LEVEL = 3
"""Level whose field comes from data (earth) or the continent generator (plane)."""

MAX_LEVEL = 24
"""Deepest level served (level 18 is about 0.3 m; a little headroom beyond)."""

WGS84_A_M = 6378137.0
WGS84_F = 1.0 / 298.257223563
WGS84_B_M = WGS84_A_M * (1.0 - WGS84_F)
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)

METRES_PER_DEGREE = 2.0 * 3.141592653589793 * WGS84_A_M / 360.0
"""Equatorial metres per degree of longitude (111319.49 m)."""

LEVEL0_SPACING_DEG = 180.0 / T
"""Sample spacing of level 0 in degrees (about 78 km at the equator)."""


class World(str, enum.Enum):
    """The two worlds. Values are the names used on the CLI and the wire."""

    PLANE = "plane"
    EARTH = "earth"

    @classmethod
    def parse(cls, name: str) -> "World":
        if isinstance(name, cls):
            return name
        try:
            return cls(str(name).lower())
        except ValueError:
            raise ValueError(
                f"unknown world {name!r}: expected one of {[w.value for w in cls]}"
            ) from None


def spacing_deg(level: int) -> float:
    """Sample spacing of ``level`` in degrees (earth)."""
    return LEVEL0_SPACING_DEG / (1 << level) if level >= 0 else LEVEL0_SPACING_DEG * 2.0 ** -level


def spacing_m(level: int) -> float:
    """Sample spacing of ``level`` in metres (plane; earth at the equator)."""
    return spacing_deg(level) * METRES_PER_DEGREE


GEOMETRIC_ERROR_PER_SPACING = 0.25
"""A level's geometric error as a fraction of its sample spacing.

Cesium's estimate for heightmap terrain (``getEstimatedLevelZeroGeometricErrorForAHeightmap``:
radius * 2 pi * 0.25 / samples around the equator, halved per level) is 0.25 of the
equatorial sample spacing."""

SKIRT_FACTOR = 5.0
"""Skirt depth as a multiple of the tile's vertical error bound (DESIGN.md section 4)."""


def level_error_m(level: int) -> float:
    """The geometric error (m) of ``level``'s tiles: 0.25 x its sample spacing (Cesium's
    heightmap rule; about 19.6 km at level 0, 0.6 m at level 15, halving per level).

    One rule for three uses: the TIN's vertical error bound (the mesher), the error the
    selection refines by before a tile is known, and the 3D Tiles ``geometricError``."""
    return GEOMETRIC_ERROR_PER_SPACING * spacing_m(level)


def skirt_depth_for(error_m: float) -> float:
    """How far a tile's skirts hang below its edges (m): ``SKIRT_FACTOR`` x its vertical
    error bound ``error_m``, deep enough to hide the crack to a coarser neighbour."""
    return SKIRT_FACTOR * error_m


def tiles_x(world: World, level: int) -> int | None:
    """Number of tile columns at ``level``; None when unbounded (plane)."""
    return 2 << level if world is World.EARTH else None


def tiles_y(world: World, level: int) -> int | None:
    """Number of tile rows at ``level``; None when unbounded (plane)."""
    return 1 << level if world is World.EARTH else None


class TileKey(NamedTuple):
    """A tile of the quadtree: ``level`` >= 0, integer column ``x``, row ``y``.

    A named tuple (immutable, ordered by (level, x, y), hashed as that tuple): the selection,
    the server's queues and the client's caches hash and compare keys hundreds of thousands
    of times a flight, and a tuple does it in C (a frozen dataclass's generated ``__hash__``,
    ``__eq__`` and ``__init__`` are Python: 6x, 5x and 2x slower)."""

    level: int
    x: int
    y: int

    def parent(self) -> "TileKey":
        if self.level == 0:
            raise ValueError(f"{self} is a root tile and has no parent")
        return TileKey(self.level - 1, self.x >> 1, self.y >> 1)

    def children(self) -> tuple["TileKey", "TileKey", "TileKey", "TileKey"]:
        """Children in row-major order: NW, NE, SW, SE."""
        L, x, y = self.level + 1, self.x << 1, self.y << 1
        return (TileKey(L, x, y), TileKey(L, x + 1, y), TileKey(L, x, y + 1), TileKey(L, x + 1, y + 1))

    def ancestor(self, level: int) -> "TileKey":
        if not 0 <= level <= self.level:
            raise ValueError(f"ancestor level must be in [0, {self.level}], got {level}")
        s = self.level - level
        return TileKey(level, self.x >> s, self.y >> s)

    def sample_origin(self) -> tuple[int, int]:
        """Global (row, col) of this tile's sample [0, 0] at its level."""
        return self.y * T, self.x * T

    def __str__(self) -> str:
        return f"{self.level}/{self.x}/{self.y}"


def validate_key(world: World, key: TileKey, max_level: int = MAX_LEVEL) -> TileKey:
    """Check ``key`` exists in ``world``; raise ValueError saying what was expected."""
    if not isinstance(key.level, int) or not 0 <= key.level <= max_level:
        raise ValueError(f"level must be an integer in [0, {max_level}], got {key.level!r}")
    nx, ny = tiles_x(world, key.level), tiles_y(world, key.level)
    if nx is not None and not 0 <= key.x < nx:
        raise ValueError(f"earth tile x at level {key.level} must be in [0, {nx - 1}], got {key.x}")
    if ny is not None and not 0 <= key.y < ny:
        raise ValueError(f"earth tile y at level {key.level} must be in [0, {ny - 1}], got {key.y}")
    return key


def neighbour(world: World, key: TileKey, dx: int, dy: int) -> TileKey | None:
    """The tile ``dx`` columns east and ``dy`` rows south of ``key`` at its level.

    earth: columns wrap around the antimeridian; past a pole there is no tile (None).
    plane: every offset exists.
    """
    x, y = key.x + dx, key.y + dy
    if world is World.EARTH:
        if not 0 <= y < (1 << key.level):
            return None
        x %= 2 << key.level
    return TileKey(key.level, x, y)
