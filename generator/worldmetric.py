"""The world metric every refiner needs: sample spacing in metres and canonical columns.

Pure tile maths on ``runtime.tiles`` (no refiner imports, so the refiner registry, the
procedural refiner and the learned refiner can all import it without a circle).
The world matters to a refiner for two things only: the metric sample spacing per row
(earth columns shrink with cos(latitude), so detail must be scaled in metres, not in
samples) and the canonical column of a sample (earth longitudes wrap, so noise must be
keyed by the wrapped column).
"""

from __future__ import annotations

import numpy as np

from runtime.tiles import T, World, spacing_m


def rows_per_world(level: int) -> int:
    """Earth sample rows from pole to pole at ``level`` (256 * 2**level)."""
    return T << level


def cols_per_world(level: int) -> int:
    """Earth sample columns around the globe at ``level`` (the longitude period)."""
    return 2 * T << level


def canonical_cols(world: World, level: int, cols: np.ndarray) -> np.ndarray:
    """Columns as keyed by noise: wrapped into [0, period) on earth, unchanged on the plane."""
    if world is World.EARTH:
        return np.mod(cols, cols_per_world(level))
    return cols


def ew_scale(world: World, level: int, rows: np.ndarray) -> np.ndarray:
    """East-west metres per sample divided by north-south metres per sample, per row.

    rows: (...) int64 global rows of ``level``. Returns float64 of the same shape:
    1 on the plane; |cos(latitude)| on the earth, exactly 0 at the poles. Rows past
    a pole (only ever used as context margin) mirror back.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if world is World.PLANE:
        return np.ones(rows.shape, dtype=np.float64)
    n = rows_per_world(level)
    colat = np.mod(rows, 2 * n)  # angle from the north pole in samples, folded
    s = np.abs(np.sin(colat * (np.pi / n)))
    return np.where(colat % n == 0, 0.0, s)


def spacing_ns_m(level: int) -> float:
    """North-south sample spacing in metres at ``level`` (plane: both directions)."""
    return spacing_m(level)
