"""bench/cityview.py's stored scene: a tile with the feature layer survives
``bench.viewer.encode_client_tile`` (client tile -> wire payload) exactly, and
``bench.viewer.upload_scene`` uploads its classes and instances as the viewer's own pipeline
does (same instances, bit for bit)."""

import msgpack
import numpy as np

from bench.viewer import encode_client_tile, upload_scene
from generator.layer import layered_source
from generator.pyramid import open_world
from runtime.tiles import TileKey, World
from runtime.wire import decode_tile
from streaming import protocol as P
from streaming.tileservice import mesh_encoder
from viewer.flight import client_tile
from viewer.renderer import TerrainRenderer

CITY = TileKey(15, -6079, 257)  # plane seed 0: a city core (tests/viewer/test_feature_drawing.py)


def test_a_stored_city_tile_keeps_its_layer_and_uploads_the_same_instances(gl_ctx):
    pyr = open_world("plane", 0, refiner="fractal")
    (f,) = layered_source(pyr)([CITY])
    ct = client_tile(World.PLANE, CITY, decode_tile(P.unpack(mesh_encoder()(World.PLANE, CITY, f), 1 << 26)["tile"]))
    assert len(ct.layer.buildings) > 100 and len(ct.layer.trees) > 0  # a city core with a park
    stored = msgpack.packb(encode_client_tile(CITY, ct, "test"), use_bin_type=True)
    payload = msgpack.unpackb(stored, raw=False)  # as stored
    back = decode_tile(payload).features
    for name in ("classes", "buildings", "trees", "albedo", "nir"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ct.layer, name), err_msg=name)
    r = TerrainRenderer(gl_ctx, (64, 64))
    try:
        scene = {"meta": {"world": "plane", "draw": [[CITY.level, CITY.x, CITY.y]]}, "tiles": [payload]}
        draw = upload_scene(r, scene)
        assert draw == [CITY]
        g = r.features.tiles[CITY]
        assert g.counts == [len(ct.placed.buildings), len(ct.placed.trees)]
        got = np.frombuffer(g.buffers[0].read(), np.float32).reshape(-1, ct.placed.buildings.shape[1])
        np.testing.assert_array_equal(got, ct.placed.buildings)
        assert r.tiles[CITY].classes is not None
        upload_scene(r, scene, features=False)
        assert CITY not in r.features.tiles and r.tiles[CITY].classes is None
    finally:
        r.close()
