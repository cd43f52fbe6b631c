"""Warm-up of the compiled mesher and wire kernels (``runtime.tin.meshkernels``): importing this
module registers a ``runtime.jit`` warmer that runs the server's meshing path once on a small
tile, so that ``jit.warm()`` at server start loads (or compiles once per machine) every
kernel with the dtypes and layouts the real calls use. Kept apart from the kernels so that
they import nothing of the mesher (no import cycle)."""

from __future__ import annotations

import numpy as np

from runtime import jit
from runtime.tiles import T, TileKey, World
from runtime.tin.curvature import enu_positions
from runtime.tin.diamonds import drop_diamonds
from runtime.tin.rtin import rtin_errors
from runtime.wire import encode_heights, encode_image


@jit.warmer
def _warm() -> None:
    g = np.add.outer(np.arange(17.0), np.arange(17.0) ** 1.5)
    for border in ("fan", "graded"):
        rtin_errors(g, 0.5, border)
    h = np.zeros((9, 9))
    h[4, 4] = 0.1
    for fields in (h, np.stack([h, h, h])):  # one field (plane), three components (earth)
        present = np.ones(82, bool)
        present[-1] = False  # the sentinel
        drop_diamonds(fields, present, 1.0)
    # the wire streams and diamond candidates, with the tables' own dtypes (a 16-sample tile)
    encode_heights(g.astype(np.float32), 0.5, key=TileKey(4, 0, 0), model="warm-up", faces=False)
    pos = np.stack([g, g, g]).astype(np.float64)
    encode_heights(g.astype(np.float32), 0.5, key=TileKey(4, 0, 0), model="warm-up", faces=False, positions_m=pos)
    # the earth's positions and the colour image's bytes (the layouts the server passes)
    enu_positions(World.EARTH, TileKey(8, 0, 0), np.zeros((T + 1, T + 1), np.float32), up_only=True)
    rgb = np.zeros((3, 8, 8), np.float32)
    encode_image(np.moveaxis(rgb, 0, -1))
    encode_image(np.zeros((8, 8, 3), np.float32))
