"""streaming/sim.py: the simulator client's local ground queries.

Two kinds of source: an analytic tilted plane behind a stand-in client (known heights and
normals, so the frame and signs are checked exactly), and the real fractal pyramid behind
a real server (height_at against the server's detailed answers and `worldstream height`,
water at sea, determinism in a fresh process with another order).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime.ground import DEFAULT_LEVEL, enu_to_ecef, water_at
from runtime.tiles import LEVEL0_SPACING_DEG, T, TileKey, World, spacing_m
from runtime.wire import decode_tile, encode_heights
from streaming.client import ServerHello
from streaming.heights import heights_at, sample_spacing_m
from streaming.protocol import Limits
from streaming.sim import GroundClient, LocalServer, NotPrefetched, tin_grid

ROOT = Path(__file__).resolve().parents[2]
LAND = (-3_000_000.0, 0.0)  # plane seed 0: inland, ~490 m
SEA = (0.0, 0.0)  # plane seed 0: open ocean, ~-4950 m
RADIUS_M = 150.0


# -- an analytic world behind a stand-in client ------------------------------------------


class TiltedClient:
    """A SyncTileClient stand-in whose world is h = h0 + ge * east + gn * north (plane) or
    h = h0 + a * lon + b * lat (earth); tiles go through the real mesher and wire codec."""

    def __init__(self, world: str, h0: float, g1: float, g2: float):
        self.world, self.h0, self.g1, self.g2 = World.parse(world), h0, g1, g2
        self.hello = ServerHello(world, 0, "tilted", T, Limits().as_dict())
        self.fetched: list[TileKey] = []
        self._encoded: dict[TileKey, dict] = {}

    def field(self, level: int, rows, cols) -> np.ndarray:
        if self.world is World.PLANE:
            s = spacing_m(level)
            return self.h0 + self.g1 * cols * s - self.g2 * rows * s
        d = LEVEL0_SPACING_DEG / (1 << level)
        return self.h0 + self.g1 * (-180.0 + cols * d) + self.g2 * (90.0 - rows * d)

    def grid(self, key: TileKey) -> np.ndarray:
        r0, c0 = key.sample_origin()
        rows, cols = np.mgrid[r0:r0 + T + 1, c0:c0 + T + 1].astype(np.float64)
        return self.field(key.level, rows, cols).astype(np.float32)

    def fetch(self, keys, timeout_s=120.0):
        self.fetched.extend(keys)
        for k in keys:
            if k not in self._encoded:
                grid = self.grid(k)
                self._encoded[k] = encode_heights(grid, 0.25 * spacing_m(k.level), key=k, model="tilted")[0]
        return {k: decode_tile(self._encoded[k]) for k in keys}

    def heights(self, points, mode="detailed", level=None):
        from streaming.heights import keys_at

        pts = np.asarray(points, np.float64)
        grids = {k: self.grid(k) for k in set(keys_at(self.world, level, pts))}
        h, n = heights_at(self.world, level, pts, grids)
        return {"height_m": h, "normal": n, "level": np.full(len(pts), level, np.int32)}


def test_tin_grid_reproduces_a_plane_and_rejects_holes():
    rows, cols = np.mgrid[0:T + 1, 0:T + 1].astype(np.float64)
    h = (3.0 + 0.5 * cols - 0.25 * rows).astype(np.float32)
    key = TileKey(10, 2, -3)
    tile = decode_tile(encode_heights(h, 0.1, key=key, model="t")[0])
    assert len(tile.grid_rc) < 4 * T + 8  # a plane keeps its border samples and almost nothing inside
    np.testing.assert_allclose(tin_grid(tile.grid_rc, tile.height_m, tile.faces), h, atol=2 * tile.height_step_m)
    with pytest.raises(ValueError, match="uncovered"):
        tin_grid(tile.grid_rc, tile.height_m, tile.faces[:1])


@pytest.mark.parametrize("world,center,coef", [
    ("plane", (120.0, 45.0), (25.0, 0.2, -0.1)),   # rises east, falls north
    ("earth", (6.86, 45.83), (20.0, 2000.0, 1000.0)),  # metres per degree of lon, lat
])
def test_normals_are_east_north_up_on_a_tilted_plane(world, center, coef):
    c = TiltedClient(world, *coef)
    g = GroundClient(client=c)
    g.prefetch(center, 100.0)
    rng = np.random.default_rng(3)
    span = 100.0 if world == "plane" else 0.0008
    pts = np.array(center) + rng.uniform(-span, span, (50, 2))
    q = g.query(pts)
    if world == "plane":
        ge, gn = np.full(len(pts), coef[1]), np.full(len(pts), coef[2])
    else:  # metres per degree from the sample spacing at each latitude
        e_m, n_m = sample_spacing_m(World.EARTH, 0, pts[:, 1])
        ge, gn = coef[1] * LEVEL0_SPACING_DEG / e_m, coef[2] * LEVEL0_SPACING_DEG / n_m
    want = np.stack([-ge, -gn, np.ones_like(ge)], 1)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(q["normal_enu"], want, atol=2e-3)  # height quantum (2^-8 m) over 1.19 m
    assert (q["normal_enu"][:, 0] < 0).all()  # rises east: the normal leans west
    np.testing.assert_allclose(q["ground_m"], c.field(DEFAULT_LEVEL, *_rc(world, pts)), atol=0.01)
    for p, n in zip(pts[:5], q["normal_enu"][:5]):
        np.testing.assert_allclose(g.normal_at(*p), n, atol=1e-12)
    # The same normal in ECEF (earth): its ENU components against the local basis.
    ecef = enu_to_ecef(world, pts, q["normal_enu"])
    np.testing.assert_allclose(np.linalg.norm(ecef, axis=1), 1.0, atol=1e-12)
    if world == "earth":
        from runtime.geometry import east_north_up

        enu = east_north_up(*pts[0])
        np.testing.assert_allclose(enu @ ecef[0], q["normal_enu"][0], atol=1e-12)


def _rc(world, pts):
    d = LEVEL0_SPACING_DEG / (1 << DEFAULT_LEVEL)
    if world == "plane":
        s = spacing_m(DEFAULT_LEVEL)
        return -pts[:, 1] / s, pts[:, 0] / s
    return (90.0 - pts[:, 1]) / d, (pts[:, 0] + 180.0) / d


def test_prefetch_bounds_outside_and_the_antimeridian():
    c = TiltedClient("earth", 5.0, 0.0, 0.0)
    g = GroundClient(client=c, max_tiles=8)
    g.prefetch((180.0, 10.0), 100.0)  # straddles the antimeridian: both sides, few tiles
    assert {k.x for k in c.fetched} == {0, (2 << DEFAULT_LEVEL) - 1}
    assert len(c.fetched) <= 4
    assert g.height_at(179.9999, 10.0) == pytest.approx(5.0, abs=0.01)
    assert g.height_at(-179.9999, 10.0) == pytest.approx(5.0, abs=0.01)
    with pytest.raises(NotPrefetched, match="prefetch"):
        g.height_at(0.0, 10.0)
    with pytest.raises(ValueError, match="max_tiles"):
        g.prefetch((0.0, 10.0), 5000.0)
    assert g.prefetch((180.0, 10.0), 100.0) == 0  # held: nothing fetched


def test_water_rule():
    water_m, is_water = water_at("plane", [-50.0, 3.0, -2.0, -40.0], [-10.0, -10.0, 5.0, 0.0])
    assert is_water.tolist() == [True, False, False, True]  # sea; islet; land below 0; shore
    assert water_m[0] == 0.0 and math.isnan(water_m[1]) and math.isnan(water_m[2])
    c = TiltedClient("plane", -80.0, 0.01, 0.0)
    g = GroundClient(client=c)
    g.prefetch((0.0, 0.0), 50.0)
    p = g.ground_at(10.0, 10.0)
    assert p.is_water and p.water_m == 0.0 and p.ground_m == pytest.approx(-79.9, abs=0.01)
    coarse = GroundClient(client=TiltedClient("plane", -80.0, 0.0, 0.0), level=10)  # 19.6 km tiles
    coarse.prefetch((100.0, -100.0), 10.0)
    far = (19_000.0, -19_000.0)  # same tile, ~27 km from the prefetch centre: water context held too
    assert coarse.covers(*far) and coarse.ground_at(*far).is_water
    with pytest.raises(ValueError, match="level must be >= 3"):
        GroundClient(client=c, level=2)


def test_reads_are_thread_safe_during_prefetch():
    c = TiltedClient("plane", 10.0, 0.1, 0.05)
    g = GroundClient(client=c)
    g.prefetch((0.0, 0.0), 100.0)
    pts = np.random.default_rng(0).uniform(-100, 100, (500, 2))
    want = g.query(pts)["ground_m"]
    errors: list = []

    def read():
        try:
            for _ in range(4):
                got = np.array([g.height_at(x, y) for x, y in pts.tolist()])
                if not np.array_equal(got, want):
                    errors.append("changed")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(1, 6):
        g.prefetch((i * 2000.0, 0.0), 100.0)
    for t in threads:
        t.join(60)
    assert errors == []


def test_concurrent_prefetches_that_evict_each_other_both_hold_their_region():
    c = TiltedClient("plane", 10.0, 0.1, 0.05)
    g = GroundClient(client=c, max_tiles=2)
    centres = [(150.0 + 400.0 * i, -150.0) for i in range(4)]  # one tile each, 4 tiles > max_tiles
    errors: list = []

    def run(order):
        try:
            for i in order:
                g.prefetch(centres[i], 10.0)
                g.height_at(*centres[i])  # may be evicted later by the other thread, never here
        except NotPrefetched:
            pass  # the other thread evicted it between the two calls: allowed
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(o,)) for o in ([0, 1, 2, 3, 0], [3, 2, 1, 0, 3])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(g._tiles) <= 2
    g.prefetch(centres[1], 10.0)
    assert g.height_at(*centres[1]) == pytest.approx(10.0 + 0.1 * 550.0 + 0.05 * -150.0, abs=0.05)


# -- the real pyramid behind a real server -------------------------------------------------


@pytest.fixture(scope="module")
def served():
    from streaming.cli.compose import build_server

    with LocalServer(build_server("plane", 0, "fractal")) as srv, GroundClient(srv.url) as g:
        for center in (LAND, SEA):
            g.prefetch(center, RADIUS_M)
        yield g


def _points(center, n=120, seed=7):
    return np.array(center) + np.random.default_rng(seed).uniform(-RADIUS_M, RADIUS_M, (n, 2))


@pytest.mark.parametrize("center", [LAND, SEA], ids=["land", "sea"])
def test_height_at_matches_server_and_cli_within_tolerance(served, center):
    from streaming.cli.compose import open_world
    from streaming.cli.height import ground_query

    pts = _points(center)
    q = served.query(pts)
    server = served.client.heights(pts, mode="detailed", level=DEFAULT_LEVEL)
    cli = ground_query("plane", open_world("plane", 0, "fractal").tiles, pts, DEFAULT_LEVEL)
    np.testing.assert_array_equal(server["height_m"], cli["ground_m"])  # one function, same tiles
    np.testing.assert_array_equal(server["is_water"], cli["is_water"])  # one water rule
    np.testing.assert_array_equal(server["water_m"], cli["water_m"])
    tol = served.height_tolerance_m
    assert 0.29 < tol < 0.32  # 0.25 x 1.19 m + half a quantum
    assert np.abs(q["ground_m"] - cli["ground_m"]).max() <= tol
    assert (q["is_water"] == cli["is_water"]).all()
    cos = np.clip((q["normal_enu"] * cli["normal_enu"]).sum(1), -1.0, 1.0)
    assert np.degrees(np.arccos(np.median(cos))) < 6.0  # documented: median ~3 degrees
    h1 = np.array([served.height_at(x, y) for x, y in pts.tolist()])
    np.testing.assert_array_equal(h1, q["ground_m"])  # scalar and batched: the same numbers
    for i, (x, y) in enumerate(pts[:30].tolist()):
        gp = served.ground_at(x, y)
        assert (gp.ground_m, gp.is_water, gp.level) == (q["ground_m"][i], q["is_water"][i], DEFAULT_LEVEL)
        np.testing.assert_allclose(gp.normal_enu, q["normal_enu"][i], atol=1e-12)
    ctx = served._context_many(pts)  # the anchor field the water rule reads: scalar twin, and the server's
    assert [served._context_at(x, y) for x, y in pts.tolist()] == ctx.tolist()
    np.testing.assert_allclose(ctx, served.client.heights(pts, mode="detailed", level=3)["height_m"], atol=1e-9)


def test_sea_is_water_and_land_is_dry(served):
    sea, land = served.query(_points(SEA)), served.query(_points(LAND))
    assert sea["is_water"].all() and (sea["water_m"] == 0.0).all() and (sea["ground_m"] < -4000).all()
    assert not land["is_water"].any() and np.isnan(land["water_m"]).all() and (land["ground_m"] > 300).all()
    p = served.ground_at(*SEA)
    assert p.is_water and p.water_m == 0.0 and p.level == DEFAULT_LEVEL


# off Fiji: open sea on both sides of the antimeridian (the real land mask has Fiji's coast at -16.5)
# Lake Geneva (370 m, flat): water where the server says so (the lake source from the composition root)
EARTH_PLACES = {"mont_blanc": (6.8652, 45.8326), "off_iceland": (-25.0, 64.0), "off_fiji_antimeridian": (180.0, -15.5),
                "lake_geneva": (6.55, 46.45)}


@pytest.fixture(scope="module")
def earth_served():
    from streaming.cli.compose import build_server, lake_source

    with LocalServer(build_server("earth", 0, "fractal")) as srv, \
            GroundClient(srv.url, lakes=lake_source("earth")) as g:
        for center in EARTH_PLACES.values():
            g.prefetch(center, 120.0)
        yield g


@pytest.mark.parametrize("place", sorted(EARTH_PLACES))
def test_earth_against_the_cli_with_water_off_iceland(earth_served, place):
    from streaming.cli.compose import lake_source, open_world
    from streaming.cli.height import ground_query

    pts = np.array(EARTH_PLACES[place]) + np.random.default_rng(4).uniform(-0.001, 0.001, (60, 2))
    pts[:, 0] = (pts[:, 0] + 180.0) % 360.0 - 180.0  # Fiji: both sides of the antimeridian
    q = earth_served.query(pts)
    cli = ground_query("earth", open_world("earth", 0, "fractal").tiles, pts, lakes=lake_source("earth"))
    assert np.abs(q["ground_m"] - cli["ground_m"]).max() <= earth_served.height_tolerance_m
    assert (q["is_water"] == cli["is_water"]).all()
    np.testing.assert_array_equal(q["water_m"], cli["water_m"])
    if place == "lake_geneva":  # water at the lake's surface, which is the ground
        assert q["is_water"].all() and (q["water_m"] == 370.0).all()
        assert np.abs(q["ground_m"] - 370.0).max() <= earth_served.height_tolerance_m
        p = earth_served.ground_at(*pts[0])
        assert p.is_water and p.water_m == 370.0
    elif place == "mont_blanc":
        assert (q["ground_m"] > 1500.0).all() and not q["is_water"].any()
    else:  # the case: the sea floor is ground_m, the surface at 0 m is water_m
        assert q["is_water"].all() and (q["water_m"] == 0.0).all() and (q["ground_m"] < 0.0).all()


_FRESH = r"""
import json, sys
import numpy as np
from streaming.cli.compose import build_server
from streaming.sim import GroundClient, LocalServer
pts = np.array(json.loads(sys.argv[1]))
with LocalServer(build_server("plane", 0, "fractal")) as srv, GroundClient(srv.url) as g:
    for c in json.loads(sys.argv[2]):
        g.prefetch(c, float(sys.argv[3]))
    q = g.query(pts)
    print(json.dumps({"h": q["ground_m"].tolist(), "n": q["normal_enu"].tolist(), "w": q["is_water"].tolist()}))
"""


def test_deterministic_in_a_fresh_process_and_order(served):
    pts = np.concatenate([_points(LAND, 20, 1), _points(SEA, 20, 2)])
    here = served.query(pts)
    order = np.arange(len(pts))[::-1]  # other points first, other prefetch order, fresh server
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _FRESH, json.dumps(pts[order].tolist()),
                          json.dumps([list(SEA), list(LAND)]), str(RADIUS_M)],
                         capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    there = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.array(there["h"]), here["ground_m"][order])
    np.testing.assert_array_equal(np.array(there["n"]), here["normal_enu"][order])
    assert there["w"] == here["is_water"][order].tolist()


# -- the runnable examples of docs/SIMULATOR.md --------------------------------------------


def _example(name: str, *args: str, timeout_s: float = 300.0) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / name), *args], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=timeout_s)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _numbers(text: str, after: str) -> list[float]:
    import re

    tail = text.split(after, 1)[1]
    return [float(v) for v in re.findall(r"-?\d+\.\d+|-?\d+", tail)]


def test_ground_callback_example_settles_on_the_ground():
    out = _example("ground_callback.py", "--steps", "300")
    alt, surface, agl, vz = _numbers(out, "settled at alt")[:4]
    assert "over ground" in out and "900 callback calls" in out
    assert 400.0 < surface < 600.0 and -0.5 < agl < 0.0 and abs(vz) < 0.05  # on its springs, at rest


def test_drone_example_follows_the_terrain():
    out = _example("drone.py", "--steps", "40", "--no-sensors")
    lo, hi = _numbers(out, "AGL")[:2]
    assert 35.0 < lo <= hi < 45.0  # holds 40 m above height_at
    assert "prefetched 4 tiles at level 16" in out


@pytest.mark.slow
def test_drone_example_renders_sensors(tmp_path):
    """The headless capture (EGL): the down camera's centre depth equals the AGL height_at gives."""
    out = _example("drone.py", "--steps", "10", "--out", str(tmp_path), "--error-target", "16", timeout_s=600)
    depth, agl = _numbers(out, "down camera centre depth")[:2]
    assert abs(depth - agl) < 1.0
    assert {p.name for p in tmp_path.iterdir()} == {"front_rgb.png", "front_depth_m.npy", "down_rgb.png",
                                                     "down_depth_m.npy"}


def test_prefetch_path_covers_the_corridor_in_one_fetch():
    c = TiltedClient("plane", 10.0, 0.0, 0.0)
    g = GroundClient(client=c, max_tiles=64)
    path = np.array([[0.0, 0.0], [2000.0, 900.0], [2600.0, -400.0]])
    g.prefetch_path(path, 60.0)
    assert len(set(c.fetched)) == len(c.fetched)  # each tile once
    rng = np.random.default_rng(2)
    for p, q in zip(path[:-1], path[1:]):  # points within 60 m of each segment
        t = rng.uniform(0, 1, (200, 1))
        d = q - p
        perp = np.array([-d[1], d[0]]) / np.linalg.norm(d)
        pts = p + t * d + rng.uniform(-60, 60, (200, 1)) * perp
        assert all(g.covers(x, y) for x, y in pts)
    assert not g.covers(1000.0, -2000.0)
    assert g.prefetch_path(path, 60.0) == 0
