"""Colour and NIR from land cover: nested, bright vegetation and dark water in NIR, class colours
taking over below the anchor."""

import numpy as np
import pytest

from generator.landcover import BROADLEAF, CLASS_NAMES, WATER, tile_landcover
from generator.pyramid import open_world
from generator.scene import ALBEDO, NIR, scene_colour
from runtime.tiles import T, TileKey


@pytest.fixture(scope="module")
def plane():
    return open_world("plane", 0, refiner="fractal")


def _scene(plane, key):
    f = plane.tile(key)
    lc = tile_landcover(plane, key, f.height)
    rows = key.y * T + np.arange(T + 1)
    cols = key.x * T + np.arange(T + 1)
    return lc, f.rgb, *scene_colour("plane", 0, key.level, rows, cols, lc, f.rgb)


def test_tables_cover_the_class_table():
    assert ALBEDO.shape == (len(CLASS_NAMES), 3) and NIR.shape == (len(CLASS_NAMES),)
    assert NIR[BROADLEAF] > 5 * NIR[WATER]
    for c in ("grassland", "shrubland", "broadleaf_forest", "needleleaf_forest", "cropland", "wetland", "tree"):
        i = CLASS_NAMES.index(c)
        assert NIR[i] > 1.1 * ALBEDO[i, 0], c  # vegetation: NIR above red


@pytest.mark.parametrize("parent", [TileKey(6, -14, 3), TileKey(12, -1520 // 2, 32)])
def test_children_keep_the_parents_colour_and_nir(plane, parent):
    _, _, alb_p, nir_p = _scene(plane, parent)
    h = T // 2
    for qy in (0, 1):
        for qx in (0, 1):
            child = TileKey(parent.level + 1, 2 * parent.x + qx, 2 * parent.y + qy)
            _, _, alb_c, nir_c = _scene(plane, child)
            win = (slice(qy * h, qy * h + h + 1), slice(qx * h, qx * h + h + 1))
            np.testing.assert_array_equal(alb_c[::2, ::2], alb_p[win])
            np.testing.assert_array_equal(nir_c[::2, ::2], nir_p[win])


def test_deep_tiles_take_the_class_colour_and_nir_separates_water_from_forest(plane):
    lc, rgb, alb, nir = _scene(plane, TileKey(6, -14, 3))  # coast, forest and farmland
    odd = np.zeros(lc.shape, bool)
    odd[1::2, 1::2] = True  # born at level 6: weight 0.6 on the class colour
    for c in np.unique(lc[odd]):
        m = odd & (lc == c)
        expect = 0.4 * rgb[m] + 0.6 * ALBEDO[c]
        assert np.abs(alb[m] - expect).mean() < 0.08, CLASS_NAMES[c]
    assert (lc == BROADLEAF).any()
    if (lc == WATER).any():
        assert nir[lc == WATER].mean() < 0.1 < nir[lc == BROADLEAF].mean()
    assert nir[lc == BROADLEAF].mean() > 0.35


def test_rejects_unknown_class_ids():
    with pytest.raises(ValueError, match="class ids"):
        scene_colour("plane", 0, 8, np.arange(2), np.arange(2), np.full((2, 2), 99, np.uint8),
                     np.zeros((2, 2, 3), np.float32))
