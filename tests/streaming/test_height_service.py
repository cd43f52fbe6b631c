"""Height queries: grid geometry, bilinear heights and ENU normals, best vs detailed, the
water fields, determinism across fresh servers and query orders, and the same over the
loopback server."""

import asyncio

import numpy as np
import pytest
from stream_fixtures import SyntheticSource, analytic_height, loopback_server, run

from runtime.tiles import T, TileKey, World, spacing_m
from streaming.client import ServerError, TileClient
from streaming.heights import (
    HeightConfig,
    HeightLimitError,
    HeightService,
    global_samples,
    heights_at,
    keys_at,
    sample_spacing_m,
    tiles_and_local,
)
from streaming.protocol import Limits


def _plane_grid(key: TileKey, a: float, b: float, c0: float):
    """Tile heights of the plane h = a*east + b*north + c0 (metres)."""
    s = spacing_m(key.level)
    r0, col0 = key.sample_origin()
    rows, cols = np.mgrid[r0 : r0 + T + 1, col0 : col0 + T + 1].astype(np.float64)
    return (a * cols * s + b * (-rows * s) + c0).astype(np.float64)


def test_points_map_to_tiles_and_local_samples():
    s = spacing_m(10)
    pts = np.array([[0.0, 0.0], [T * s + 3 * s, -2.5 * s], [-0.5 * s, 0.25 * s]])
    rows, cols = global_samples(World.PLANE, 10, pts)
    tx, ty, r, c = tiles_and_local(World.PLANE, 10, rows, cols)
    assert list(zip(tx, ty, strict=True)) == [(0, 0), (1, 0), (-1, -1)]
    assert np.allclose(r, [0, 2.5, T - 0.25]) and np.allclose(c, [0, 3, T - 0.5])
    # earth: lon/lat to the geographic grid; +180 and -90 land on the last tile's edges.
    e = np.array([[-180.0, 90.0], [180.0, -90.0], [0.0, 0.0], [-540.0, 0.0]])
    tx, ty, r, c = tiles_and_local(World.EARTH, 1, *global_samples(World.EARTH, 1, e))
    assert list(zip(tx.tolist(), ty.tolist(), strict=True)) == [
        (0, 0),
        (3, 1),
        (2, 1),
        (0, 1),
    ]  # -540 is -180
    assert np.allclose(r, [0, T, 0, 0]) and np.allclose(c, [0, T, 0, 0])


@pytest.mark.parametrize("a, b", [(0.0, 0.0), (0.1, 0.0), (0.0, -0.3), (0.2, 0.5)])
def test_heights_and_normals_of_a_tilted_plane_are_exact(a, b):
    key = TileKey(12, 3, -2)
    s = spacing_m(12)
    grid = _plane_grid(key, a, b, 100.0)
    rng = np.random.default_rng(0)
    r0, c0 = key.sample_origin()
    rows = r0 + rng.uniform(0, T, 50)
    cols = c0 + rng.uniform(0, T, 50)
    pts = np.stack([cols * s, -rows * s], 1)
    h, n = heights_at(World.PLANE, 12, pts, {key: grid})
    assert np.allclose(h, a * pts[:, 0] + b * pts[:, 1] + 100.0, atol=1e-6)
    want = np.array([-a, -b, 1.0]) / np.sqrt(a * a + b * b + 1.0)
    assert np.allclose(n, want, atol=1e-9)


def test_earth_sample_spacing_uses_wgs84_radii():
    e, n = sample_spacing_m(World.EARTH, 0, np.array([0.0, 60.0]))
    d = np.radians(180.0 / 256)
    assert e[0] == pytest.approx(6378137.0 * d) and n[0] == pytest.approx(6335439.327 * d, rel=1e-9)
    assert e[1] == pytest.approx(
        e[0] * 0.5 / np.sqrt(1 - 0.00669438 * 0.75) * np.sqrt(1 - 0.00669438 * 0.0), rel=1e-6
    )


class _Fields:
    def __init__(self, height):
        self.height = height


def _service(levels_held=(), max_tiles=16):
    calls = []

    async def fields(keys, owner=None):
        calls.append(list(keys))
        return [_Fields(_plane_grid(k, 0.01, 0.02, 10.0 * k.level)) for k in keys]

    hs = HeightService(World.PLANE, fields, HeightConfig(max_level=14, best_level=12, max_tiles=max_tiles))
    for k in levels_held:
        hs.remember(k, _Fields(_plane_grid(k, 0.01, 0.02, 10.0 * k.level)))
    return hs, calls


def test_best_answers_at_one_fixed_level_whatever_is_held():
    s12 = spacing_m(12)
    inside = np.array([[10.5 * s12, -20.25 * s12]])  # in tile (12, 0, 0)
    far = np.array([[1e7, 1e7]])
    hs, calls = _service(levels_held=[TileKey(8, 0, 0)])  # a held coarser tile changes nothing
    res = run(hs.query(np.concatenate([inside, far]), "best"))
    assert res["level"].tolist() == [12, 12]  # best_level, not the held level 8
    asked = sorted(k for c in calls for k in c if k.level == 12)  # one key per call (fair queue)
    assert asked == sorted({TileKey(12, 0, 0), keys_at(World.PLANE, 12, far)[0]})
    assert res["height_m"][0] == pytest.approx(0.01 * inside[0, 0] + 0.02 * inside[0, 1] + 120.0)
    # An asked level is used as it is, clamped to max_level.
    assert run(hs.query(inside, "best", level=10))["level"].tolist() == [10]
    assert run(hs.query(inside, "best", level=14))["level"].tolist() == [14]
    assert hs.mode_level("best", 20) == 14 and hs.mode_level("detailed", None) == 14


def test_water_fields_follow_the_water_rule():
    """Plane h = 0.01 e + 0.02 n + 10 level: the level-3 context and the ground are both
    below 0 m south-west of the origin (sea), above it north-east (land)."""
    hs, _ = _service()
    sea, land = [-2e4, -2e4], [2e4, 2e4]
    res = run(hs.query(np.array([sea, land]), "detailed", level=14))
    assert res["height_m"][0] == pytest.approx(-0.01 * 2e4 - 0.02 * 2e4 + 140.0)  # -460 m
    assert res["is_water"].dtype == np.uint8 and res["is_water"].tolist() == [1, 0]
    assert res["water_m"][0] == 0.0 and np.isnan(res["water_m"][1])


def test_detailed_generates_the_asked_level_and_limits_tiles():
    hs, calls = _service(max_tiles=2)
    pts = np.array([[5.0, -5.0], [6.0, -6.0]])
    res = run(hs.query(pts, "detailed", level=14))
    # The asked tile, then the level-3 water context.
    assert res["level"].tolist() == [14, 14] and calls == [[TileKey(14, 0, 0)], [TileKey(3, 0, 0)]]
    assert np.allclose(res["height_m"], 0.01 * pts[:, 0] + 0.02 * pts[:, 1] + 140.0)
    run(hs.query(pts, "detailed", level=14))
    assert len(calls) == 2  # held now
    spread = np.array([[i * 1e5, 0.0] for i in range(3)])
    with pytest.raises(HeightLimitError):
        run(hs.query(spread, "detailed", level=14))


def test_height_queries_over_the_server():
    src = SyntheticSource()
    lim = Limits(max_level=16, max_height_tiles=4)

    async def main():
        async with loopback_server(src, limits=lim, heights=True) as (srv, url):
            c = TileClient()
            await c.connect(url)
            await c.fetch([TileKey(9, 0, 0)])  # holding tiles does not change any answer
            s9 = spacing_m(9)
            pts = np.array([[100.5 * s9, -30.25 * s9]])
            best = await c.heights(pts, "best", level=9)
            detailed = await c.heights(pts, "detailed", level=11)
            with pytest.raises(ServerError) as info:
                await c.heights(np.array([[i * 1e6, 0.0] for i in range(8)]), "detailed")
            await c.close()
            return best, detailed, info.value

    best, detailed, err = run(main())
    assert best["level"].tolist() == [9]
    # Synthetic field at level 9: 0.5 col - 0.25 row + 40 sin(row/97) cos(col/131) + 90.
    r, c = 30.25, 100.5
    want9 = 0.5 * c - 0.25 * r + 90.0
    wave = [40 * np.sin(rr / 97.0) * np.cos(cc / 131.0) for rr in (30, 31) for cc in (100, 101)]
    want9 += 0.75 * 0.5 * wave[0] + 0.75 * 0.5 * wave[1] + 0.25 * 0.5 * wave[2] + 0.25 * 0.5 * wave[3]
    assert best["height_m"][0] == pytest.approx(want9, abs=1e-3)
    assert best["normal"].shape == (1, 3) and best["normal"][0, 2] > 0.9
    assert best["normal"][0, 0] < 0  # heights grow eastward (0.5 m per sample): the normal leans west
    assert best["normal_enu"] is best["normal"] and best["ground_m"] is best["height_m"]  # client aliases
    assert best["is_water"].dtype == bool and best["is_water"].tolist() == [False]
    assert np.isnan(best["water_m"][0])
    # Level 11 has 4x the samples: the point is sample (121, 402) there, exactly.
    assert detailed["level"].tolist() == [11]
    assert detailed["height_m"][0] == pytest.approx(
        float(analytic_height(11, np.array(121.0), np.array(402.0))), abs=1e-3
    )
    assert err.code == "limit" and "at most 4" in err.message


def _fresh_answers(order):
    """Answers of a fresh loopback server to three queries asked in ``order``."""
    s = spacing_m(14)
    pts = np.array([[3.5 * s, -7.25 * s], [-1e5, 2e5], [9e4, -4e4]])
    asks = [("best", None), ("best", 12), ("detailed", 13)]

    async def main():
        async with loopback_server(SyntheticSource(), limits=Limits(max_level=14, max_height_tiles=8),
                                   heights=True) as (_srv, url):
            c = TileClient()
            await c.connect(url)
            if order[0] == 2:  # make the server hold tiles first: it must not matter
                await c.fetch([TileKey(9, 0, 0), TileKey(14, 0, -1)])
            out = {}
            for i in order:
                mode, level = asks[i]
                out[i] = await c.heights(pts, mode, level)
            await c.close()
            return out

    return run(main())


def test_every_mode_answers_the_same_bits_on_fresh_servers_in_any_order():
    a = _fresh_answers([0, 1, 2])
    b = _fresh_answers([2, 1, 0])
    for i in range(3):
        for k in ("height_m", "normal", "level", "water_m", "is_water"):
            assert np.array_equal(a[i][k], b[i][k], equal_nan=True), (i, k)
    assert a[0]["level"].tolist() == [14] * 3  # best default (16) clamped to max_level 14
    assert a[1]["level"].tolist() == [12] * 3 and a[2]["level"].tolist() == [13] * 3


def test_one_connection_waits_for_at_most_max_tiles_new_tiles_at_a_time():
    gate = asyncio.Event()

    async def fields(keys, owner=None):
        await gate.wait()
        return [_Fields(_plane_grid(k, 0.01, 0.02, 0.0)) for k in keys]

    hs = HeightService(World.PLANE, fields, HeightConfig(max_level=14, max_tiles=4))
    s14 = spacing_m(14) * T
    three = np.array([[(i + 0.5) * s14, -0.5 * s14] for i in range(3)])
    two = np.array([[(i + 10.5) * s14, -0.5 * s14] for i in range(2)])

    async def main():
        first = asyncio.create_task(hs.query(three, "detailed", 14, owner="a"))
        await asyncio.sleep(0)  # let it register its three tiles
        with pytest.raises(HeightLimitError, match="wait for 3; at most 4"):
            await hs.query(two, "detailed", 14, owner="a")
        other = asyncio.create_task(hs.query(two, "detailed", 14, owner="b"))  # its own budget
        await asyncio.sleep(0)
        gate.set()
        res = await first, await other
        again = await hs.query(two, "detailed", 14, owner="a")  # held now: costs nothing
        return res, again, dict(hs._generating)

    (a, b), again, left = asyncio.run(main())
    assert a["level"].tolist() == [14] * 3 and b["level"].tolist() == [14] * 2
    assert again["level"].tolist() == [14] * 2 and left == {}
