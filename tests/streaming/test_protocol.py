import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.tiles import TileKey
from streaming import protocol as P
from streaming.protocol import ErrorCode, Limits, ProtocolError


def test_array_round_trip_keeps_dtype_shape_and_bytes():
    a = np.arange(12, dtype=np.float64).reshape(6, 2) * 1.5
    enc = P.encode_array(a)
    assert enc["dtype"] == "<f8" and enc["shape"] == [6, 2] and len(enc["data"]) == 96
    b = P.decode_array(msgpack.unpackb(msgpack.packb(enc), raw=False), "pts", ndim=2)
    assert b.dtype == np.float64 and np.array_equal(a, b)


@pytest.mark.parametrize("bad, code", [
    (b"\xc1", ErrorCode.MALFORMED),                         # never-used msgpack byte
    (msgpack.packb([1, 2, 3]), ErrorCode.MALFORMED),        # not a map
    (msgpack.packb({"kind": "hello"}), ErrorCode.MALFORMED),  # no type
    (b"x" * 2000, ErrorCode.TOO_LARGE),
])
def test_unpack_rejects_with_a_code(bad, code):
    with pytest.raises(ProtocolError) as info:
        P.unpack(bad, max_bytes=1000)
    assert info.value.code == code


def test_decode_array_refuses_object_dtypes_and_lying_shapes():
    with pytest.raises(ProtocolError, match="dtype"):
        P.decode_array({"dtype": "|O", "shape": [1], "data": b"\0" * 8}, "x")
    with pytest.raises(ProtocolError, match="bytes"):
        P.decode_array({"dtype": "<f4", "shape": [4], "data": b"\0" * 8}, "x")


def test_keys_are_checked():
    lim = Limits(max_level=20)
    assert P.key_from_wire([3, -5, 7], lim) == TileKey(3, -5, 7)
    for bad in ([21, 0, 0], [1, 0], ["1", 0, 0], [True, 0, 0], [1, 0, 2**63]):
        with pytest.raises(ProtocolError) as info:
            P.key_from_wire(bad, lim)
        assert info.value.code == ErrorCode.BAD_KEY


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_unpack_never_raises_anything_but_protocol_error(data):
    try:
        P.unpack(data, max_bytes=1 << 16)
    except ProtocolError:
        pass
