"""Triangulated irregular networks: heights -> simplified TIN -> placed, skirted, shaded mesh.

Import the public API from here (``from runtime.tin import tile_mesh``); the modules
inside are free to move.
"""

from runtime.tin.mesh import (
    TileMesh,
    build_tile_mesh,
    first_use_order,
    simplify_grid,
    tile_mesh,
    vertex_normals,
)
from runtime.tin.surface import Surface, stitch_edge_normals, tin_surface, tin_to_grid, with_morph

__all__ = [
    "Surface",
    "TileMesh",
    "build_tile_mesh",
    "first_use_order",
    "simplify_grid",
    "stitch_edge_normals",
    "tile_mesh",
    "tin_surface",
    "tin_to_grid",
    "vertex_normals",
    "with_morph",
]
