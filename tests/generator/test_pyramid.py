"""Pyramid contracts on the plane: nesting, seams, purity (order, batch, cache, process)."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generator.fractal import FractalRefiner
from generator.pyramid import Pyramid, TileFields, open_world
from runtime.tiles import T, TileKey

ROOT = Path(__file__).resolve().parents[2]
HUGE = 2**32  # tile index; sample index ~2^40


@pytest.fixture(scope="module")
def plane():
    return open_world("plane", 7, "fractal")


def _quarter(parent: TileFields, child: TileKey) -> tuple[np.ndarray, np.ndarray]:
    h = T // 2
    r0, c0 = (child.y & 1) * h, (child.x & 1) * h
    return parent.height[r0 : r0 + h + 1, c0 : c0 + h + 1], parent.rgb[r0 : r0 + h + 1, c0 : c0 + h + 1]


@pytest.mark.parametrize("key", [TileKey(5, 3, -2), TileKey(11, -700, 413), TileKey(18, HUGE + 1, -HUGE - 3)])
def test_child_even_samples_equal_parent_quarter_bit_for_bit(plane, key):
    child = plane.tile(key)
    parent = plane.tile(key.parent())
    ph, prgb = _quarter(parent, key)
    np.testing.assert_array_equal(child.height[::2, ::2], ph)
    np.testing.assert_array_equal(child.rgb[::2, ::2], prgb)
    # and the odd samples are new detail, not interpolation only
    assert np.abs(np.diff(child.height[1::2, 1::2], axis=1)).max() > 0


def test_nesting_across_many_levels(plane):
    # level-0 global sample (-3, 5) is sample (-3 * 2^L, 5 * 2^L) of every level L
    values = []
    for level in (0, 2, 3, 4, 7, 12, 15):
        r, c = -3 << level, 5 << level
        f = plane.tile(TileKey(level, c // T, r // T))
        values.append(f.height[r % T, c % T])
    assert len(set(values)) == 1


@pytest.mark.parametrize("level", [2, 8, 16])
def test_neighbours_agree_exactly_on_shared_edges(plane, level):
    x, y = -3, 5
    c = plane.tile(TileKey(level, x, y))
    e = plane.tile(TileKey(level, x + 1, y))
    s = plane.tile(TileKey(level, x, y + 1))
    np.testing.assert_array_equal(c.height[:, -1], e.height[:, 0])
    np.testing.assert_array_equal(c.height[-1, :], s.height[0, :])
    np.testing.assert_array_equal(c.rgb[:, -1], e.rgb[:, 0])


def test_bytes_independent_of_order_batch_and_cache():
    keys = [TileKey(10, 4, 4), TileKey(10, 5, 4), TileKey(12, 17, 19), TileKey(9, -1, -1), TileKey(3, 0, 0)]
    a = Pyramid("plane", 11, "fractal")
    one_by_one = {k: a.tile(k) for k in keys}
    b = Pyramid("plane", 11, "fractal")
    batched = dict(zip(keys[::-1], b.tiles(keys[::-1]), strict=True))
    c = Pyramid("plane", 11, "fractal", cache_bytes=300_000)  # evicts constantly
    tiny_cache = {k: c.tile(k) for k in [keys[2], keys[0], keys[4], keys[1], keys[3]]}
    assert c.cache.total <= 300_000
    for k in keys:
        for other in (batched[k], tiny_cache[k]):
            assert one_by_one[k].height.tobytes() == other.height.tobytes()
            assert one_by_one[k].rgb.tobytes() == other.rgb.tobytes()


def _digest(f: TileFields) -> str:
    return hashlib.sha256(f.height.tobytes() + f.rgb.tobytes()).hexdigest()


def test_bytes_identical_across_processes(plane):
    key = TileKey(13, -501, 77)
    code = (
        "from generator.pyramid import open_world; from runtime.tiles import TileKey; import hashlib;"
        "f = open_world('plane', 7, 'fractal').tile(TileKey(13, -501, 77));"
        "print(hashlib.sha256(f.height.tobytes() + f.rgb.tobytes()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.stdout.strip() == _digest(plane.tile(key))


def test_coarse_levels_are_even_subsamples_of_anchor(plane):
    l3 = plane.region(3, -40, 100, 33, 33)
    l1 = plane.region(1, -10, 25, 9, 9)
    np.testing.assert_array_equal(l1, l3[:, ::4, ::4])


def test_region_matches_tiles(plane):
    r = plane.region(9, 2 * T - 5, -T - 3, 10, 12)
    a = plane.tile(TileKey(9, -2, 1))
    b = plane.tile(TileKey(9, -1, 2))
    np.testing.assert_array_equal(r[0, :5, :3], a.height[T - 5 : T, T - 3 : T])
    np.testing.assert_array_equal(r[0, 5:, 3:], b.height[: 5, : 9])


def test_seeds_differ_and_model_id_names_refiner():
    a = open_world("plane", 1, "fractal").tile(TileKey(4, 0, 0))
    b = open_world("plane", 2, "fractal").tile(TileKey(4, 0, 0))
    assert not np.array_equal(a.height, b.height)
    assert a.model.startswith(f"fractal-{FractalRefiner.version}+") and a.model == b.model


def test_plane_has_oceans_and_land_with_plausible_relief():
    f = open_world("plane", 3, "fractal").tile(TileKey(0, 0, 0))  # ~20,000 km square
    land = float((f.height > 0).mean())
    assert 0.15 < land < 0.7
    assert f.height.min() < -3000 and f.height.max() > 2000 and f.height.max() < 9000
    sea_rgb = f.rgb[f.height < -1000].mean(axis=0)
    assert sea_rgb[2] > sea_rgb[0]  # deep water is blue


def test_bad_key_and_region_raise():
    p = open_world("plane", 0, "fractal")
    with pytest.raises(ValueError, match="level"):
        p.tile(TileKey(40, 0, 0))
    with pytest.raises(ValueError, match="positive"):
        p.region(4, 0, 0, 0, 5)


def test_concurrent_requests_from_threads_give_the_same_bytes():
    from concurrent.futures import ThreadPoolExecutor

    keys = [TileKey(11, x, y) for x in range(-2, 2) for y in range(2)]
    alone = Pyramid("plane", 4, "fractal")
    ref = {k: _digest(alone.tile(k)) for k in keys[:3]}
    shared = Pyramid("plane", 4, "fractal", cache_bytes=4_000_000)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: (k, _digest(shared.tile(k))), keys * 2))
    assert all(d == ref[k] for k, d in got if k in ref)
    assert len({d for k, d in got if k == keys[0]}) == 1


def test_parent_crops_from_one_box_equal_crops_one_by_one():
    pyr = open_world("plane", 7, "fractal")
    B = pyr.block
    have = pyr._ensure(6, {(bi, bj) for bi in range(-2, 3) for bj in range(-2, 3)})
    size = B // 2 + 1 + 2 * pyr.refiner.margin
    calls = []
    assemble = pyr._assemble
    pyr._assemble = lambda *a: calls.append(a[3:5]) or assemble(*a)
    compact = [(r, c) for r in (-40, -8, 24) for c in (-31, 1)]  # a 3 x 2 group of windows
    spread = [(-100, -100), (60, 60)]  # their box would be mostly waste
    for origins, n_calls in ((compact, 1), (spread, 2)):
        calls.clear()
        got = pyr._crops(6, origins, size, have)
        assert len(calls) == n_calls  # one box, or one window at a time
        want = np.stack([assemble(6, r, c, size, size, have) for r, c in origins])
        assert got.shape == (len(origins), 4, size, size) and got.tobytes() == want.tobytes()
