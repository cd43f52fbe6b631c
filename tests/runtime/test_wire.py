"""runtime.wire: tile codec round trips, cross-tile edges, validation of untrusted input."""

import zlib

import msgpack
import numpy as np
import pytest
from mesh_fixtures import fractal, real_crop

from runtime import wire
from runtime.tiles import T, TileKey
from runtime.tin import diamonds, simplify

KEY = TileKey(11, 700, 300)


def encode(h, max_error_m, key=KEY, **kw):
    grid_rc, faces = simplify.simplify_grid(h, max_error_m)
    heights = h[grid_rc[:, 0], grid_rc[:, 1]]
    p = wire.encode_tile(grid_rc, heights, faces, key=key, geometric_error_m=max_error_m, model="m1", **kw)
    return grid_rc, heights, faces, p


def through_msgpack(p):
    return msgpack.unpackb(msgpack.packb(p, use_bin_type=True), raw=False)


def test_payload_is_plain_msgpack_types():
    def check(v):
        if isinstance(v, dict):
            assert all(isinstance(k, str) for k in v)
            [check(x) for x in v.values()]
        elif isinstance(v, list):
            [check(x) for x in v]
        else:
            assert v is None or type(v) in (str, int, float, bytes, bool)

    _, _, _, p = encode(real_crop(), 5.0, rgb_jpeg_or_png=wire.encode_image(np.zeros((8, 8, 3))))
    check(p)
    assert p["key"] == [11, 700, 300] and p["model"] == "m1" and p["geometric_error_m"] == 5.0
    assert p["topology"] == "rtin"


@pytest.mark.parametrize("border", ["fan", "graded", "free"])
@pytest.mark.parametrize("max_error_m", [1.0, 5.0, 30.0])
def test_rtin_round_trip_same_topology_heights_within_quantum(max_error_m, border):
    h = fractal(T + 1, seed=11, offset_m=0.123)
    grid_rc, faces = simplify.simplify_grid(h, max_error_m, border)
    heights = h[grid_rc[:, 0], grid_rc[:, 1]]
    p = wire.encode_tile(grid_rc, heights, faces, key=KEY, geometric_error_m=max_error_m, model="m1")
    assert p["mesh"]["border"] == "fan" or border != "fan"
    # The server path (no re-check) codes the same mesh; a graded mesh may also be a valid
    # fan mesh, so compare what decodes, not the bytes.
    fast = wire.decode_tile(wire.encode_heights(h, max_error_m, key=KEY, model="m1", border=border)[0])
    np.testing.assert_array_equal(fast.faces, faces)
    np.testing.assert_array_equal(fast.grid_rc, grid_rc)
    d = wire.decode_tile(through_msgpack(p))
    assert d.key == KEY and d.model == "m1" and d.topology == "rtin"
    assert d.grid_rc.dtype == np.float64 and d.height_m.dtype == np.float64 and d.faces.dtype == np.int32
    np.testing.assert_array_equal(d.grid_rc, grid_rc)
    np.testing.assert_array_equal(d.faces, faces)
    step = wire.height_step_for_level(KEY.level)
    assert d.height_step_m == step == 0.125
    assert np.abs(d.height_m - heights).max() <= step / 2 + 1e-9
    assert d.height_min_m == pytest.approx(heights.min()) and d.height_max_m == pytest.approx(heights.max())
    for name in ("west", "south", "east", "north"):
        assert len(getattr(d, name)) == (T + 1 if border != "free" else len(getattr(d, name)))


@pytest.mark.parametrize("border", ["fan", "graded", "free"])
def test_flipped_diamonds_keep_the_compact_coding(border):
    """encode_tile finds the flipped diamonds of any simplify_grid mesh from its faces, and
    sends one bit per unsplit diamond: the decoded mesh is the same, topology and all."""
    h = real_crop()
    present, flipped, grid_rc, faces = simplify.simplify_rtin(h, 4.0, border)
    assert flipped.sum() > 500
    heights = h[grid_rc[:, 0], grid_rc[:, 1]]
    p = wire.encode_tile(grid_rc, heights, faces, key=KEY, geometric_error_m=4.0, model="m1")
    assert p["topology"] == "rtin"
    assert p["mesh"]["flip_count"] == len(diamonds.diamond_candidates(present, T))
    d = wire.decode_tile(through_msgpack(p))
    np.testing.assert_array_equal(d.faces, faces)
    np.testing.assert_array_equal(d.grid_rc, grid_rc)
    # the server path sends the very same streams
    fast = wire.encode_heights(h, 4.0, key=KEY, model="m1", border=border)[0]
    assert fast["mesh"] == p["mesh"] or border != "fan"


def test_payload_from_before_flips_still_decodes():
    """Tiles cached on disk before diamond flips carry no flip stream: none is flipped."""
    h = real_crop()
    grid_rc, faces = simplify.simplify_grid(h, 4.0, flips=False)
    heights = h[grid_rc[:, 0], grid_rc[:, 1]]
    p = wire.encode_tile(grid_rc, heights, faces, key=KEY, geometric_error_m=4.0, model="m1")
    assert not np.unpackbits(np.frombuffer(zlib.decompress(p["mesh"]["flips"]), np.uint8)).any()
    del p["mesh"]["flips"], p["mesh"]["flip_count"]
    d = wire.decode_tile(through_msgpack(p))
    np.testing.assert_array_equal(d.faces, faces)


def test_indexed_round_trip_for_any_triangle_list():
    h = real_crop()
    grid_rc, faces = simplify.simplify_grid(h, 8.0)
    rng = np.random.default_rng(0)
    faces = faces[rng.permutation(len(faces))]  # no longer the canonical RTIN order
    heights = h[grid_rc[:, 0], grid_rc[:, 1]]
    p = wire.encode_tile(grid_rc, heights, faces, key=KEY, geometric_error_m=8.0, model="m1")
    assert p["topology"] == "indexed"
    d = wire.decode_tile(through_msgpack(p))

    # Same triangles (as sets of grid points, same winding), vertices renumbered by first use.
    def tri_set(rc, f):
        pts = rc[f].reshape(len(f), 6).astype(np.int64)
        rot = np.argmin(pts[:, 0::2] * 1000 + pts[:, 1::2], axis=1)  # start at the smallest vertex
        idx = (np.arange(3)[None] + rot[:, None]) % 3
        return {tuple(pts[i].reshape(3, 2)[idx[i]].ravel()) for i in range(len(f))}

    assert tri_set(d.grid_rc, d.faces) == tri_set(grid_rc, faces)
    lookup = {tuple(rc): hh for rc, hh in zip(grid_rc.tolist(), heights, strict=True)}
    dec = np.array([lookup[tuple(rc)] for rc in d.grid_rc.astype(int).tolist()])
    assert np.abs(d.height_m - dec).max() <= 0.0625 + 1e-9


def test_shared_edges_decode_bit_identical_across_tiles():
    """Two horizontally and two vertically adjacent tiles cut from one field."""
    field = fractal(2 * T + 1, seed=21, relief_m=2500.0, offset_m=0.123)
    tiles = {}
    for ty in range(2):
        for tx in range(2):
            h = field[ty * T : ty * T + T + 1, tx * T : tx * T + T + 1]
            key = TileKey(12, 40 + tx, 80 + ty)
            # Different error bounds per tile: the edges still match (every border sample is kept).
            tiles[tx, ty] = wire.decode_tile(through_msgpack(encode(h, 2.0 + 3 * tx + ty, key=key)[3]))
    for ty in range(2):
        a, b = tiles[0, ty], tiles[1, ty]
        assert np.array_equal(a.grid_rc[a.east, 0], b.grid_rc[b.west, 0])
        assert a.height_m[a.east].tobytes() == b.height_m[b.west].tobytes()
    for tx in range(2):
        a, b = tiles[tx, 0], tiles[tx, 1]
        assert np.array_equal(a.grid_rc[a.south, 1], b.grid_rc[b.north, 1])
        assert a.height_m[a.south].tobytes() == b.height_m[b.north].tobytes()


def test_real_tile_under_one_and_a_half_bytes_per_vertex():
    h = real_crop()
    grid_rc, _, _, p = encode(h, 5.0)
    size = len(msgpack.packb(p))
    assert size / len(grid_rc) < 1.5
    # Far below an uncompressed index buffer alone (12 bytes per vertex as uint16).
    assert size < 2 * len(grid_rc)


def test_image_round_trip():
    rgb = np.zeros((T + 1, T + 1, 3), np.float32)
    rgb[..., 0] = np.linspace(0, 1, T + 1)[None]
    rgb[..., 2] = 0.5
    data = wire.encode_image(rgb)
    assert data[:2] == b"\xff\xd8" and len(data) < 20_000
    back = wire.decode_image(data)
    assert back.shape == (T + 1, T + 1, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(float) - rgb * 255).max() < 12
    _, _, _, p = encode(real_crop(), 20.0, rgb_jpeg_or_png=data)
    d = wire.decode_tile(p)
    assert d.image == data and d.image_format == "jpeg"


@pytest.fixture(scope="module")
def payload():
    return encode(real_crop(), 10.0)[3]


def corrupt(p, path, value):
    q = dict(p)
    q["mesh"] = dict(p["mesh"])
    target = q["mesh"] if path in p["mesh"] else q
    if value is KeyError:
        del target[path]
    else:
        target[path] = value
    return q


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("format", "x", "format"),
        ("version", 99, "version"),
        ("key", [1, 2], "key"),
        ("key", "1/2/3", "key"),
        ("grid_size", 100, "grid_size"),
        ("vertex_count", 10**9, "vertex_count"),
        ("height_step_m", 0.3, "height_step_m"),
        ("topology", "magic", "topology"),
        ("border", "zigzag", "border"),
        ("splits", b"not zlib", "splits"),
        ("heights", zlib.compress(b"\x02" + b"\x00" * 10), "heights"),
        ("heights", zlib.compress(b"\x00" * (64 << 20)), "heights"),  # deflate bomb
        ("splits", KeyError, "splits"),
        ("flips", b"not zlib", "flips"),
        ("flips", zlib.compress(b"\xff" * 10**6), "flips"),
        ("flip_count", 3, "flip_count"),
        ("flip_count", KeyError, "flip_count"),
        ("model", 5, "model"),
        ("image", b"GIF89a", "image"),
    ],
)
def test_malformed_payloads_raise_value_error(payload, field, value, message):
    with pytest.raises(ValueError, match=message):
        wire.decode_tile(corrupt(payload, field, value))


def test_split_bits_that_end_early_or_imply_extra_vertices_are_rejected(payload):
    raw = zlib.decompress(payload["mesh"]["splits"])
    short = corrupt(corrupt(payload, "splits", zlib.compress(raw[:-1])), "split_count", 8 * (len(raw) - 1))
    with pytest.raises(ValueError, match="splits ended early"):
        wire.decode_tile(short)
    every = corrupt(payload, "splits", zlib.compress(b"\xff" * len(raw)))  # every candidate split
    with pytest.raises(ValueError, match="splits ended early|more than the .* vertices"):
        wire.decode_tile(every)


def test_truncated_and_flipped_streams_never_crash(payload):
    rng = np.random.default_rng(1)
    assert np.unpackbits(np.frombuffer(zlib.decompress(payload["mesh"]["flips"]), np.uint8)).any()
    for name in ("splits", "heights", "flips"):
        data = payload["mesh"][name]
        raw = bytearray(zlib.decompress(data))
        for trial in range(20):
            bad = bytearray(raw)
            bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
            if trial % 2:
                bad = bad[: rng.integers(len(bad))]
            q = corrupt(payload, name, zlib.compress(bytes(bad)))
            try:
                d = wire.decode_tile(q)
            except ValueError:
                continue
            # A flip that still decodes must give a consistent mesh.
            assert d.faces.max() < len(d.grid_rc) and np.isfinite(d.height_m).all()


def test_decode_rejects_non_dict():
    with pytest.raises(ValueError, match="dict"):
        wire.decode_tile([1, 2, 3])


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(height_step_m=0.3), "power of two"),
        (dict(grid_rc=np.array([[0, 0], [0, 300], [1, 1]])), "grid_rc"),
        (dict(faces=np.array([[0, 1, 5]])), "faces"),
        (dict(height_m=np.array([0.0, np.nan, 1.0])), "height_m"),
    ],
)
def test_encode_validates(kw, message):
    args = dict(
        grid_rc=np.array([[0, 0], [0, 256], [256, 0]]), height_m=np.zeros(3), faces=np.array([[0, 2, 1]])
    )
    step = kw.pop("height_step_m", None)
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        wire.encode_tile(**args, key=KEY, geometric_error_m=1.0, model="m", height_step_m=step)


def test_encode_heights_is_simplify_then_encode():
    h = real_crop()
    grid_rc, heights, faces, p = encode(h, 6.0)
    q, rc2, f2 = wire.encode_heights(h, 6.0, key=KEY, model="m1")
    assert q == p
    np.testing.assert_array_equal(rc2, grid_rc)
    np.testing.assert_array_equal(f2, faces)


@pytest.mark.parametrize("max_error_m", [0.0, 0.5, 6.0, 1e9])
@pytest.mark.parametrize("curved", [False, True])
def test_encode_heights_without_faces_sends_the_same_payload(max_error_m, curved):
    from runtime.tiles import World
    from runtime.tin.curvature import curved_positions
    from runtime.tin.faces import fan_face_count

    for h in (real_crop(), fractal(T + 1, 3, hurst=0.5), np.zeros((T + 1, T + 1), np.float32)):
        key = TileKey(4, 9, 3) if curved else KEY  # level 4 on the earth: the full 3D error
        pos = curved_positions(World.EARTH, key, h) if curved else None
        want, rc, faces = wire.encode_heights(h, max_error_m, key=key, model="m1", positions_m=pos)
        got, rc2, none = wire.encode_heights(h, max_error_m, key=key, model="m1", positions_m=pos, faces=False)
        assert got == want and none is None
        np.testing.assert_array_equal(rc2, rc)
        assert fan_face_count(len(rc), T) == len(faces) == got["face_count"]


def test_colour_quantisation_matches_the_nan_to_num_chain():
    rng = np.random.default_rng(5)
    a = rng.uniform(-0.5, 1.5, (33, 17, 3))
    a.ravel()[:6] = [np.nan, np.inf, -np.inf, 0.5 / 255, 2.5 / 255, -0.0]
    a.ravel()[6:262] = (np.arange(256) + 0.5).astype(np.float32) / np.float32(255)  # float32 half points
    for x in (a, a.astype(np.float32), a[:, ::2]):
        with np.errstate(over="ignore"):
            want = np.clip(np.round(np.nan_to_num(x.astype(np.float32)) * 255.0), 0, 255).astype(np.uint8)
        assert np.array_equal(wire._unit_to_u8(x), want)
    assert list(wire._unit_to_u8(a).ravel()[:5]) == [0, 255, 0, 0, 2]
