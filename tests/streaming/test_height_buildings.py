"""Height queries with buildings (collision) or without (bare earth), said explicitly: over
the websocket server, through ``worldstream height`` and the simulator's GroundClient, on a
level-16 tile of central Paris whose buildings come from the generator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.footprints import building_at, to_samples
from runtime.grids import bilinear
from runtime.tiles import T, TileKey, World, spacing_deg

PARIS_16 = TileKey(16, 66392, 14979)


def lonlat(key: TileKey, r, c) -> np.ndarray:
    d = spacing_deg(key.level)
    return np.stack([-180.0 + (key.x * T + np.asarray(c)) * d, 90.0 - (key.y * T + np.asarray(r)) * d], -1)


@pytest.fixture(scope="module")
def paris():
    """The tile's heights, buildings, and three points: the tallest building's centre, a point
    inside it 30 % of the way to its east wall, and the middle of a street."""
    from generator.features import roads
    from generator.landcover import tile_landcover
    from streaming.cli.compose import building_source, open_world

    pyr = open_world("earth", 0, "fractal")
    h = np.asarray(pyr.tile(PARIS_16).height, np.float32)
    b = building_source(pyr)(PARIS_16, h)
    k = int(np.argmax(b[:, 4]))
    e, n, w = float(b[k, 0]), float(b[k, 1]), float(b[k, 2])
    seg = roads(pyr.world, pyr.seed, PARIS_16, tile_landcover(pyr, PARIS_16, h))[3]
    rc = np.array([to_samples(World.EARTH, PARIS_16, x, y) for x, y in
                   [(e, n), (e + 0.3 * w, n), ((seg[0] + seg[2]) / 2, (seg[1] + seg[3]) / 2)]])
    assert building_at(World.EARTH, PARIS_16, b, rc[:, 0], rc[:, 1]).tolist() == [k, k, -1]
    ground_centre = float(bilinear(h, rc[0, 0], rc[0, 1]))
    return {"h": h, "b": b, "k": k, "pts": lonlat(PARIS_16, rc[:, 0], rc[:, 1]), "rc": rc,
            "roof": ground_centre + float(b[k, 4])}


@pytest.fixture(scope="module")
def served():
    from streaming.cli.compose import build_server
    from streaming.sim import LocalServer

    with LocalServer(build_server("earth", 0, "fractal")) as srv:
        yield srv


def test_server_answers_roofs_inside_footprints_and_bare_earth_elsewhere(served, paris):
    from streaming.client import ServerError, SyncTileClient

    c = SyncTileClient(served.url)
    try:
        bare = c.heights(paris["pts"], "best")
        built = c.heights(paris["pts"], "best", surface="buildings")
        with pytest.raises(ServerError) as bad:
            c.heights(paris["pts"], "best", surface="roofs")
        with pytest.raises(ServerError) as low:
            c.heights(paris["pts"], "best", level=10, surface="buildings")
    finally:
        c.close()
    # The default stays the bare earth, with the keys it always had.
    assert sorted(bare) == ["ground_m", "height_m", "is_water", "level", "normal", "normal_enu", "water_m"]
    want_bare = bilinear(paris["h"], paris["rc"][:, 0], paris["rc"][:, 1])
    np.testing.assert_allclose(bare["height_m"], want_bare, atol=1e-9)
    assert bare["height_m"][0] > 20.0  # Paris lies ~35 m above the ellipsoid here
    # With buildings: the roof (ground at the footprint centre + height) over the footprint.
    assert built["on_building"].tolist() == [True, True, False]
    assert built["height_m"][0] == pytest.approx(paris["roof"], abs=1e-6)
    assert built["height_m"][1] == pytest.approx(paris["roof"], abs=1e-6)
    assert built["height_m"][0] - bare["height_m"][0] == pytest.approx(float(paris["b"][paris["k"], 4]), abs=1e-6)
    assert built["height_m"][2] == bare["height_m"][2]  # the street: bare earth
    np.testing.assert_array_equal(built["ground_m"], bare["height_m"])
    assert built["normal"][0].tolist() == [0.0, 0.0, 1.0] and built["normal"][2].tolist() == bare["normal"][2].tolist()
    assert bad.value.code == "malformed" and "'surface' must be one of ['bare', 'buildings']" in bad.value.message
    assert low.value.code == "malformed" and "13..19" in low.value.message


def test_height_cli_surface_buildings(capsys, paris):
    from streaming.cli import main

    at = ";".join(f"{float(x)!r},{float(y)!r}" for x, y in paris["pts"])
    assert main(["height", "--world", "earth", "--refiner", "fractal", f"--at={at}", "--surface", "buildings",
                 "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["on_building"] for r in rows] == [True, True, False]
    assert rows[0]["height_m"] == pytest.approx(paris["roof"], abs=1e-6)
    assert rows[2]["height_m"] == rows[2]["ground_m"]
    assert rows[0]["ground_m"] == pytest.approx(float(bilinear(paris["h"], *paris["rc"][0])), abs=1e-6)
    assert main(["height", "--world", "earth", "--refiner", "fractal", f"--at={at}", "--json"]) == 0
    bare = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all("height_m" not in r and "on_building" not in r for r in bare)  # default: unchanged rows
    with pytest.raises(SystemExit) as exc:
        main(["height", "--world", "earth", f"--at={at}", "--surface", "roofs"])
    assert exc.value.code == 2 and "invalid choice: 'roofs'" in capsys.readouterr().err
    assert main(["height", "--world", "earth", "--refiner", "fractal", f"--at={at}", "--surface", "buildings",
                 "--level", "12"]) == 2
    assert "13..19" in capsys.readouterr().err


def test_ground_client_surface_buildings(served, paris):
    """GroundClient with the tiles' buildings (here handed in from the generator; by default
    they come with the wire's feature layer) answers roofs from memory."""
    from streaming.cli.compose import building_source, open_world
    from streaming.sim import GroundClient

    pyr = open_world("earth", 0, "fractal")
    source = building_source(pyr)

    def of(tile):
        return source(tile.key, np.asarray(pyr.tile(tile.key).height, np.float32))

    centre, inside, street = (tuple(p) for p in paris["pts"])
    with GroundClient(served.url, surface="buildings", buildings_of=of) as g, GroundClient(served.url) as bare:
        g.prefetch(centre, 50.0)
        bare.prefetch(centre, 50.0)
        tol = g.height_tolerance_m
        assert bare.height_at(*centre) == pytest.approx(float(bilinear(paris["h"], *paris["rc"][0])), abs=tol)
        assert g.height_at(*centre) == pytest.approx(paris["roof"], abs=tol)
        assert g.height_at(*inside) == g.height_at(*centre)  # one flat roof over the footprint
        assert g.height_at(*street) == bare.height_at(*street)
        assert g.normal_at(*centre) == (0.0, 0.0, 1.0)
        q = g.query(paris["pts"])
        assert q["on_building"].tolist() == [True, True, False]
        np.testing.assert_array_equal(q["ground_m"], bare.query(paris["pts"])["ground_m"])
        assert q["height_m"][0] == g.height_at(*centre)
        p = g.ground_at(*centre)
        assert p.on_building and p.height_m == g.height_at(*centre) and p.ground_m == bare.height_at(*centre)
    with pytest.raises(ValueError, match="surface must be one of"):
        GroundClient(served.url, surface="roof")
    with GroundClient(served.url, surface="buildings") as wire:  # tiles without a feature layer
        with pytest.raises(ValueError, match="carries no buildings"):
            wire.prefetch(centre, 10.0)


def test_wire_buildings_reads_the_tiles_feature_layer():
    """GroundClient's default source: the decoded tile's feature layer (an object or a map
    with ``buildings``); None when the tile carries no layer."""
    from types import SimpleNamespace

    from streaming.sim import wire_buildings

    b = np.array([[10.0, -20.0, 8.0, 12.0, 9.6]], np.float32)
    assert wire_buildings(SimpleNamespace(features=SimpleNamespace(buildings=b))) is b
    assert wire_buildings(SimpleNamespace(features={"buildings": b})) is b
    assert wire_buildings(SimpleNamespace(features=None)) is None
    assert wire_buildings(SimpleNamespace()) is None
