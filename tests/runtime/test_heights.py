"""Height queries: best tile now, most detailed later, consistent with the drawn TIN."""

import math

import numpy as np
import pytest

from runtime.geometry import geodetic_to_ecef, geometry_for
from runtime.heights import HeightQueries, TileSurface, height_at, sample_surface
from runtime.tiles import T, TileKey, spacing_m

PLANE, EARTH = geometry_for("plane"), geometry_for("earth")


def ramp_grid(a=0.5, b=-0.25, c=100.0):
    """Height = a * row + b * col + c on the tile grid (metres)."""
    r, cc = np.mgrid[0:T + 1, 0:T + 1]
    return (a * r + b * cc + c).astype(np.float32)


def test_bilinear_grid_is_exact_on_a_plane_ramp():
    s = TileSurface(TileKey(5, 0, 0), heights=ramp_grid())
    h, dr, dc = sample_surface(s, [10.25, 0.0, 256.0], [3.5, 256.0, 0.0])
    assert np.allclose(h, [100 + 0.5 * 10.25 - 0.25 * 3.5, 100 - 64, 100 + 128])
    assert np.allclose(dr, 0.5) and np.allclose(dc, -0.25)


def test_tin_interpolation_follows_the_triangles_not_the_grid():
    # Two triangles over the whole tile (the simplest TIN): NW-NE-SE and NW-SE-SW, heights
    # 0 except 100 m at the SE corner. The drawn surface is 50 m at the centre and
    # 100 * row / T in the NE triangle; the (T+1)^2 grid behind it is 0 there. The query
    # must follow the triangles that are drawn.
    rc = np.array([[0, 0], [0, T], [T, 0], [T, T]], np.float64)
    hv = np.array([0.0, 0.0, 0.0, 100.0])
    faces = np.array([[0, 1, 3], [0, 3, 2]])
    grid = np.zeros((T + 1, T + 1), np.float32)
    grid[T, T] = 100.0
    tin = TileSurface(TileKey(3, 0, 0), heights=grid, grid_rc=rc, height_m=hv, faces=faces)
    h, _, _ = sample_surface(tin, [T / 2, T / 4], [T / 2, 3 * T / 4])
    assert h == pytest.approx([50.0, 25.0])
    grid_only = TileSurface(TileKey(3, 0, 0), heights=grid)
    assert sample_surface(grid_only, [T / 2], [T / 2])[0][0] == pytest.approx(0.0)


def test_tin_vs_brute_force_on_a_random_tin():
    rng = np.random.default_rng(1)
    from scipy.spatial import Delaunay
    pts = np.vstack([rng.uniform(0, T, (300, 2)), [[0, 0], [0, T], [T, 0], [T, T]]])
    tri = Delaunay(pts)
    hv = rng.uniform(-50, 800, len(pts))
    s = TileSurface(TileKey(9, 3, 4), grid_rc=pts, height_m=hv, faces=tri.simplices)
    q = rng.uniform(0, T, (200, 2))
    h, _, _ = sample_surface(s, q[:, 0], q[:, 1])
    simplex = tri.find_simplex(q)
    bary = np.einsum("nij,nj->ni", tri.transform[simplex, :2], q - tri.transform[simplex, 2])
    bary = np.c_[bary, 1 - bary.sum(axis=1)]
    expect = (hv[tri.simplices[simplex]] * bary).sum(axis=1)
    assert np.abs(h - expect).max() < 1e-9


def test_a_few_points_read_the_same_triangle_without_the_tile_index():
    # The ground under a camera is one point on a fresh tile each time the drawn tile under
    # it changes: up to _FEW_POINTS points test every face's box instead of binning all
    # faces (the frame thread paid ~40 ms for that on an earth tile), and read the same
    # triangle, so heights and slopes are the same floats as through the index.
    rng = np.random.default_rng(7)
    from scipy.spatial import Delaunay
    pts = np.vstack([rng.uniform(0, T, (2000, 2)), [[0, 0], [0, T], [T, 0], [T, T]]])
    pts = np.vstack([pts, [[64.0, 64.0], [64.0, 128.0], [128.0, 64.0]]])  # points on cell edges too
    tri = Delaunay(pts)
    hv = rng.uniform(-50, 800, len(pts))
    q = np.vstack([rng.uniform(0, T, (40, 2)), [[64.0, 64.0], [64.0, 100.0], [0.0, 0.0], [T, T]]])

    def fresh():
        return TileSurface(TileKey(9, 3, 4), grid_rc=pts, height_m=hv, faces=tri.simplices)

    many = fresh()
    indexed = sample_surface(many, q[:, 0], q[:, 1])
    assert "tin" in many._index
    for i, (r, c) in enumerate(q):
        one = fresh()
        got = sample_surface(one, [r], [c])
        assert "tin" not in one._index
        for a, b in zip(got, indexed, strict=True):
            assert a[0] == b[i]


def test_height_at_uses_the_deepest_tile_and_gives_the_normal():
    # Level 4 tile flat at 10 m; its level 5 child is a ramp. Points over the child read the
    # ramp; a point elsewhere in the parent reads 10 m.
    parent = TileKey(4, 0, 0)
    child = parent.children()[0]
    tiles = {parent: TileSurface(parent, heights=np.full((T + 1, T + 1), 10.0, np.float32)),
             child: TileSurface(child, heights=ramp_grid(a=0.5, b=0.0, c=20.0))}
    s5 = spacing_m(5)
    inside = [[10.5 * s5, -20.25 * s5, 0.0]]            # child sample (20.25, 10.5)
    outside = [[200 * spacing_m(4), -5 * spacing_m(4), 1e4]]  # parent, east of the child
    res = height_at(PLANE, inside + outside, tiles.get, max_level=8)
    assert res.keys == (child, parent)
    assert res.height_m == pytest.approx([20 + 0.5 * 20.25, 10.0])
    # Ramp: +0.5 m per row, rows run south -> the surface rises to the south, faces north.
    slope = 0.5 / s5
    expect = np.array([0.0, slope, 1.0]) / math.sqrt(1 + slope**2)
    assert np.allclose(res.normal[0], expect) and np.allclose(res.normal[1], [0, 0, 1])
    # A drawn (preferred) tile wins over a deeper one: what the user sees.
    drawn = height_at(PLANE, inside, tiles.get, max_level=8, prefer={parent})
    assert drawn.keys == (parent,) and drawn.height_m[0] == pytest.approx(10.0)
    with pytest.raises(LookupError, match="no tile covers"):
        height_at(PLANE, [[-1e9, 1e9, 0]], tiles.get, max_level=8)


def test_earth_normal_is_the_ellipsoid_normal_on_flat_ground():
    key = TileKey(6, 70, 20)
    tiles = {key: TileSurface(key, heights=np.full((T + 1, T + 1), 300.0, np.float32))}
    w, s, e, n = EARTH.tile_extent_deg(key)
    p = geodetic_to_ecef((w + e) / 2, (s + n) / 2, 5000.0)
    res = height_at(EARTH, p, tiles.get, max_level=6)
    assert res.height_m[0] == pytest.approx(300.0)
    assert np.allclose(res.normal[0], EARTH.up(p)[0], atol=1e-6)


def test_most_detailed_waits_for_the_finest_tiles():
    store = {}
    root = TileKey(0, 0, 0)
    store[root] = TileSurface(root, heights=np.zeros((T + 1, T + 1), np.float32))
    q = HeightQueries(PLANE, store.get, level=6)
    pts = [[1000.0, -2000.0, 0.0], [9.0e5, -3.0e5, 0.0]]
    fut = q.most_detailed(pts)
    need = {PLANE.key_at(6, np.array(p)) for p in pts}
    assert not fut.done() and set(q.urgent()) == need
    first, second = sorted(need)
    store[first] = TileSurface(first, heights=np.full((T + 1, T + 1), 7.0, np.float32))
    assert q.on_tiles([first]) == 0 and not fut.done() and q.urgent() == [second]
    store[second] = TileSurface(second, heights=np.full((T + 1, T + 1), 9.0, np.float32))
    assert q.on_tiles([second]) == 1 and fut.done() and q.pending == 0
    res = fut.result(timeout=0)
    assert sorted(res.height_m) == [7.0, 9.0]
    assert {k.level for k in res.keys} == {6}
    # Already available: resolves at once.
    assert q.most_detailed(pts[:1]).done()


def test_surface_validation():
    with pytest.raises(ValueError, match="need a height grid or a TIN"):
        TileSurface(TileKey(0, 0, 0))
    with pytest.raises(ValueError, match=r"heights must be \(257, 257\)"):
        TileSurface(TileKey(0, 0, 0), heights=np.zeros((3, 3)))
