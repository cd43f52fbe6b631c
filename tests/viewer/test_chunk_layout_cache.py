"""chunk_layout keeps a tile's layout while the arrays it was made from are the same: a
re-upload with new normals (stitching) reuses it, new morph heights make it again; either
way it is what a fresh layout gives."""

from dataclasses import replace

import numpy as np
from conftest import plane_surface

from runtime.tiles import TileKey
from viewer import renderer
from viewer.renderer import _chunk_layout, chunk_layout


def same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_layout_is_kept_across_normal_changes_and_made_again_for_new_morph_heights():
    s = plane_surface(lambda r, c: 40.0 * np.sin(r / 9.0) + 0.3 * c, key=TileKey(10, 2, 3))
    first = chunk_layout(s)
    same(first, _chunk_layout(s))
    assert first[1][-1] == len(s.faces) and np.isfinite(first[2]).any()  # every face in a block
    stitched = replace(s, normals=-s.normals)  # what stitching changes: the layout does not read it
    assert chunk_layout(stitched) is first
    dh = np.full(len(s.vertices), 25.0, np.float32)  # morph targets 25 m above: taller boxes
    morphed = replace(s, morph_dh_m=dh)
    again = chunk_layout(morphed)
    assert again is not first
    same(again, _chunk_layout(morphed))
    assert (again[3][:, 2] >= first[3][:, 2]).all() and (again[3][:, 2] > first[3][:, 2]).any()


def test_kept_layouts_are_bounded():
    surfaces = [plane_surface(lambda r, c: 0.1 * r + 0.0 * c, key=TileKey(10, x, 0), step=32)
                for x in range(renderer.LAYOUTS_KEPT + 5)]
    for s in surfaces:
        chunk_layout(s)
    assert len(renderer._LAYOUTS) <= renderer.LAYOUTS_KEPT
    same(chunk_layout(surfaces[0]), _chunk_layout(surfaces[0]))  # made again after it left
