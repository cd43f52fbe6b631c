"""The feature layer codec (runtime/featurelayer.py): exact round trips, old payloads without
the layer, and validation of untrusted input."""

import numpy as np
import pytest

from runtime import featurelayer as F
from runtime.tiles import T, TileKey
from runtime.wire import decode_tile, encode_heights


def _layer_arrays(seed: int = 3):
    rng = np.random.default_rng(seed)
    classes = np.full((T + 1, T + 1), F.URBAN, np.uint8)
    classes[:, 100:140] = F.WATER
    classes[::16] = F.ROAD
    b = np.stack([rng.uniform(0, 2400, 500), -rng.uniform(0, 2400, 500), rng.uniform(6, 30, 500),
                  rng.uniform(6, 30, 500), rng.uniform(3, 90, 500)], axis=1).astype(np.float32)
    t = np.stack([rng.uniform(0, 2400, 300), -rng.uniform(0, 2400, 300), rng.uniform(2, 30, 300)], 1)
    albedo = rng.uniform(0, 1, (len(F.CLASS_NAMES), 3))
    nir = rng.uniform(0, 1, len(F.CLASS_NAMES))
    return dict(classes=classes, buildings=b, trees=t.astype(np.float32), albedo=albedo, nir=nir)


@pytest.mark.parametrize("level", [13, 15, 19])
def test_round_trip_is_exact_and_re_encodes_to_the_same_bytes(level):
    a = _layer_arrays()
    p = F.encode_layer(level, **a)
    d = F.decode_layer(p, T)
    q, qt = F.quantum_for_level(level), F.quantum_for_level(level, "trees")
    assert q == {13: 2.0, 15: 0.5, 19: 1 / 32}[level] and qt == 4 * q
    np.testing.assert_array_equal(d.classes, a["classes"])
    np.testing.assert_array_equal(d.buildings, (np.round(a["buildings"].astype(np.float64) / q) * q).astype(np.float32))
    np.testing.assert_array_equal(d.trees, (np.round(a["trees"].astype(np.float64) / qt) * qt).astype(np.float32))
    assert np.abs(d.buildings - a["buildings"]).max() <= q / 2 + 1e-4
    np.testing.assert_array_equal(d.albedo, np.round(a["albedo"] * 255).astype(np.uint8))
    again = F.encode_layer(level, d.classes, d.buildings, d.trees, d.albedo / 255.0, d.nir / 255.0)
    assert again == p


def test_tile_payload_carries_the_layer_and_old_payloads_decode_without_it():
    h = np.add.outer(np.arange(T + 1), np.arange(T + 1)).astype(np.float32) * 0.1
    key = TileKey(13, 4, 5)
    payload, _, _ = encode_heights(h, 1.0, key=key, model="m")
    old = decode_tile(payload)
    assert old.features is None
    payload[F.LAYER] = F.encode_layer(13, **_layer_arrays())
    new = decode_tile(payload)
    assert new.features is not None and len(new.features.buildings) == 500
    np.testing.assert_array_equal(new.height_m, old.height_m)
    np.testing.assert_array_equal(new.faces, old.faces)


def test_empty_layer_and_missing_parts():
    p = F.encode_layer(10, classes=np.zeros((T + 1, T + 1), np.uint8))
    d = F.decode_layer(p, T)
    assert d.buildings.shape == (0, 5) and d.trees.shape == (0, 3) and d.albedo is None
    p = F.encode_layer(16, buildings=np.zeros((0, 5)), trees=np.zeros((0, 3)))
    d = F.decode_layer(p, T)
    assert d.classes is None and d.buildings.shape == (0, 5)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.update(version=2), "version 1"),
    (lambda p: p["trees"].update(quantum_m=0.3), "power of two"),
    (lambda p: p["classes"].update(size=100), "size"),
    (lambda p: p["classes"].update(data=b"junk"), "zlib"),
    (lambda p: p["buildings"].update(count=501), "buildings"),
    (lambda p: p["buildings"].update(count=1 << 20), "count"),
    (lambda p: p["palette"].update(nir=b"\x00"), "palette"),
    (lambda p: p.update(trees=[1, 2]), "trees"),
])
def test_bad_layers_are_refused_saying_what_was_expected(mutate, message):
    p = F.encode_layer(13, **_layer_arrays())
    mutate(p)
    with pytest.raises(ValueError, match=message):
        F.decode_layer(p, T)


def test_out_of_table_classes_are_refused():
    c = np.full((T + 1, T + 1), len(F.CLASS_NAMES), np.uint8)
    with pytest.raises(ValueError, match="ids <"):
        F.encode_layer(13, classes=c)


def test_feature_streams_take_the_smaller_deflate_strategy_and_any_inflater_reads_them():
    import zlib

    from runtime.intstreams import _pack_uints, _unpack_uints, _zigzag

    rng = np.random.default_rng(5)  # a dense block pattern: rows of parcels, a few storey heights
    n = 3000
    row, col = np.divmod(np.arange(n), 60)
    b = np.stack([col * 38.0 + rng.uniform(5, 12, n), -(row * 38.0 + rng.uniform(5, 12, n)),
                  rng.choice([14.0, 18.0, 22.0], n), rng.choice([22.0, 24.0, 26.0], n),
                  3.2 * rng.integers(3, 8, n) + 1.0], axis=1).astype(np.float32)
    p = F.encode_layer(13, buildings=b)["buildings"]
    q = F.quantum_for_level(13)
    v = np.round(b.astype(np.float64) / q).astype(np.int64)
    plain = 0
    for i, name in enumerate(("east", "north", "width", "depth", "height")):
        s = np.diff(v[:, i], prepend=0) if name in ("east", "north") else v[:, i]
        old = _pack_uints(_zigzag(s), 9)  # one default-strategy stream (the encoder before)
        assert len(p[name]) <= len(old)
        assert zlib.decompress(p[name]) == zlib.decompress(old)  # the same planes: decoders unchanged
        np.testing.assert_array_equal(_unpack_uints(p[name], n, name), _zigzag(s))
        plain += len(old)
    assert sum(len(p[c]) for c in ("east", "north", "width", "depth", "height")) < 0.95 * plain
    np.testing.assert_array_equal(F.decode_layer({"format": F.FORMAT, "version": F.VERSION, "buildings": p}).buildings,
                                  (v * q).astype(np.float32))
