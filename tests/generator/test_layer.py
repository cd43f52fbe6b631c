"""The served feature layer's content (generator/layer.py) through the codec and the server's
encoder: a city tile carries urban classes with streets, buildings and trees; bytes are
deterministic; frames without the layer are byte-identical to the plain encoder's."""

import numpy as np
import pytest

from generator.features import tile_features
from generator.landcover import CLASS_NAMES, ROAD, URBAN
from generator.layer import LAYER_MIN_LEVEL, burn_roads, layered_source, tile_layer
from generator.pyramid import open_world
from runtime import featurelayer as F
from runtime.tiles import T, TileKey, World, spacing_m
from runtime.wire import decode_tile
from streaming import protocol as P
from streaming.session import strip_layers
from streaming.tileservice import mesh_encoder

CITY15 = TileKey(15, -6079, 257)  # plane seed 0, inside the city of tests/generator/test_features.py


@pytest.fixture(scope="module")
def plane():
    return open_world("plane", 0, refiner="fractal")


def test_class_table_is_the_generators():
    assert F.CLASS_NAMES == CLASS_NAMES


def test_city_tile_layer_round_trips_through_the_served_frame(plane):
    (f,) = layered_source(plane)([CITY15])
    frame = mesh_encoder()(World.PLANE, CITY15, f)
    tile = decode_tile(P.unpack(frame, 1 << 24)["tile"])
    lay = tile.features
    want = tile_features(plane, CITY15, f.height)
    assert len(want["buildings"]) > 100 and len(want["trees"]) > 100
    q = F.quantum_for_level(15)
    np.testing.assert_array_equal(lay.buildings, (np.round(want["buildings"].astype(np.float64) / q) * q)
                                  .astype(np.float32))
    qt = F.quantum_for_level(15, "trees")
    np.testing.assert_array_equal(lay.trees, (np.round(want["trees"].astype(np.float64) / qt) * qt)
                                  .astype(np.float32))
    np.testing.assert_array_equal(lay.classes, f.layer["classes"])
    share = np.bincount(lay.classes.ravel(), minlength=len(CLASS_NAMES)) / lay.classes.size
    assert share[URBAN] > 0.5 and 0.05 < share[ROAD] < 0.4  # streets burnt into the urban ground
    # plain clients get the frame byte for byte as the plain encoder makes it
    plain = mesh_encoder()(World.PLANE, CITY15, plane.tile(CITY15))
    assert strip_layers(frame, (F.LAYER,)) == plain and len(frame) > len(plain)
    assert strip_layers(plain, (F.LAYER,)) is plain


def test_layer_is_deterministic_and_absent_above_its_levels(plane):
    a = tile_layer(plane, CITY15, plane.tile(CITY15).height)
    fresh = open_world("plane", 0, refiner="fractal")
    b = tile_layer(fresh, CITY15, fresh.tile(CITY15).height)
    assert F.encode_layer(15, **a) == F.encode_layer(15, **b)
    k = TileKey(LAYER_MIN_LEVEL - 1, CITY15.x >> 6, CITY15.y >> 6)
    assert tile_layer(plane, k, plane.tile(k).height) is None


def test_burn_roads_paints_the_street_rectangles():
    classes = np.full((T + 1, T + 1), URBAN, np.uint8)
    key = TileKey(15, 0, 0)
    seg = np.array([[0.0, -100.0, 200.0, -100.0, 12.0], [50.0, 0.0, 50.0, -300.0, 7.0]], np.float32)
    out = burn_roads(World.PLANE, key, classes, seg)
    sp = spacing_m(15)  # 2.39 m
    r = int(round(100 / sp))
    assert out[r, 10] == ROAD and out[r, int(250 / sp)] == URBAN and out[int(200 / sp), int(50 / sp)] == ROAD
    assert out[int(200 / sp), int(60 / sp)] == URBAN and (out == ROAD).sum() > 0


def test_the_process_encoder_carries_the_layer(plane):
    from streaming.procencode import ProcessEncoder

    (f,) = layered_source(plane)([CITY15])
    enc = ProcessEncoder(1)
    try:
        assert enc(World.PLANE, CITY15, f) == mesh_encoder()(World.PLANE, CITY15, f)
    finally:
        enc.close()


def test_a_store_baked_with_the_layer_is_the_features_servers_store(plane, tmp_path):
    """``bake --features`` writes the frames ``serve --features`` would make, under the key that
    server opens (a store baked without the layer keys the bare model: not mixed in)."""
    from generator.layer import layered_model_id
    from streaming.bake import bake, open_store, stored_keys
    from streaming.cli.compose import build_server, pyramid_opener

    keys = [CITY15, TileKey(15, CITY15.x + 1, CITY15.y)]
    r = bake(World.PLANE, 0, keys, tmp_path, use_ray=False, open_pyramid=pyramid_opener("fractal", features=True))
    assert r.tiles == 2
    store = open_store(tmp_path)
    assert store.model == layered_model_id(plane.model_id) and stored_keys(store) == sorted(keys)
    server = build_server(World.PLANE, 0, "fractal", store_dir=tmp_path, features=True)
    assert server.service.store.model == store.model and all(k in server.service.store for k in keys)
    own = mesh_encoder()(World.PLANE, CITY15, layered_source(plane)([CITY15])[0])
    assert store.get(CITY15) == own and F.LAYER in P.unpack(own, 1 << 26)["tile"]
    bare = build_server(World.PLANE, 0, "fractal", store_dir=tmp_path)  # without the layer: its own namespace
    assert bare.service.store.model == plane.model_id and CITY15 not in bare.service.store
