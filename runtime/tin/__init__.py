"""Triangulated irregular networks: heights -> simplified TIN -> placed, skirted, shaded mesh.

Import the public API from here (``from runtime.tin import tile_mesh``); the modules
inside are free to move (``runtime.wire`` alone reaches into them for the RTIN tables):

- ``hierarchy``: the RTIN lattice of a grid size (steps, children, diamonds), cached;
- ``rtin``: the exact error pyramid and the vertex set it implies for a bound;
- ``diamonds``: dropped diamonds (greedy vertex removal that keeps the implied mesh);
- ``faces``: faces from a vertex set, canonical order and numbering;
- ``simplify``: heights -> TIN (``simplify_grid``) and its error measures;
- ``curvature``: the earth's sample positions for the mesher (chord sag in the error)
  and 3D error measures;
- ``placement``: the one placement path (``tile_mesh``: centre-relative positions,
  skirts, normals with the shared-edge rule, UVs) and neighbour stitching;
- ``surface``: the viewer's ``Surface`` built on it (plus morph targets);
- ``raster``: a TIN's heights on (a window of) its grid, each node once (``tin_window``);
- ``kernels``: compiled (numba) loops for the client's per-tile passes, the numpy forms' bits.
"""

from runtime.tin.curvature import curved_positions, geometric_error_3d_m, max_deviation_m
from runtime.tin.faces import first_use_order
from runtime.tin.placement import (
    EdgeData,
    TileMesh,
    build_tile_mesh,
    edge_data,
    facing_side,
    neighbour_keys,
    opposite,
    stitch,
    stitch_tiles,
    tile_mesh,
    vertex_normals,
)
from runtime.tin.raster import tin_window
from runtime.tin.rtin import BORDERS
from runtime.tin.simplify import geometric_error_m, max_vertical_error, simplify_grid
from runtime.tin.surface import (
    Surface,
    morph_grid,
    morph_window,
    stitch_edge_normals,
    tin_grid,
    tin_surface,
    tin_to_grid,
    with_morph,
)

__all__ = [
    "BORDERS",
    "EdgeData",
    "Surface",
    "TileMesh",
    "build_tile_mesh",
    "curved_positions",
    "edge_data",
    "facing_side",
    "neighbour_keys",
    "opposite",
    "first_use_order",
    "geometric_error_3d_m",
    "geometric_error_m",
    "max_deviation_m",
    "max_vertical_error",
    "morph_grid",
    "morph_window",
    "simplify_grid",
    "stitch",
    "stitch_edge_normals",
    "stitch_tiles",
    "tile_mesh",
    "tin_surface",
    "tin_grid",
    "tin_to_grid",
    "tin_window",
    "vertex_normals",
    "with_morph",
]
