"""tin_surface passes the decoder's edge lists to tile_mesh when they are exactly
edge_indices' (placement.is_edge_indices) and places the same surface as without them;
lists in another order still place it (checked as a set), wrong ones are refused."""

import numpy as np
import pytest
from mesh_fixtures import real_crop

from runtime import wire
from runtime.tiles import T, TileKey
from runtime.tin import tin_surface
from runtime.tin.placement import edge_indices, is_edge_indices


@pytest.fixture(scope="module")
def decoded():
    payload, _, _ = wire.encode_heights(real_crop(), 4.0, key=TileKey(11, 3, 4), model="m")
    return wire.decode_tile(payload)


def same_surface(a, b) -> None:
    for name in ("vertices", "normals", "uv", "faces", "height_m", "up", "grid_rc"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.edges.keys() == b.edges.keys()
    for side in a.edges:
        for x, y in zip(a.edges[side], b.edges[side], strict=True):
            np.testing.assert_array_equal(x, y)


def test_decoded_edges_are_edge_indices_and_place_the_same_surface(decoded):
    d = decoded
    edges = (d.west, d.south, d.east, d.north)
    assert is_edge_indices(edges, d.grid_rc, T)
    assert all(len(e) == T + 1 for e in edges)  # the fan border keeps every border sample
    plain = tin_surface("earth", d.key, d.grid_rc, d.height_m, d.faces, None, 30.0)
    for given in (edges, dict(zip(("west", "south", "east", "north"), edges, strict=True))):
        same_surface(tin_surface("earth", d.key, d.grid_rc, d.height_m, d.faces, given, 30.0), plain)
    assert len(plain.vertices) == len(d.grid_rc) + 4 * T  # one skirt vertex per border vertex


def test_other_edge_lists_are_checked_as_a_set_or_refused(decoded):
    d = decoded
    edges = [d.west, d.south, d.east, d.north]
    plain = tin_surface("earth", d.key, d.grid_rc, d.height_m, d.faces, None, 30.0)
    reordered = [edges[1], edges[0], edges[3], edges[2]]  # sides swapped
    backwards = [e[::-1] for e in edges]
    for other in (reordered, backwards):
        assert not is_edge_indices(other, d.grid_rc, T)
        same_surface(tin_surface("earth", d.key, d.grid_rc, d.height_m, d.faces, other, 30.0), plain)
    short = [edges[0][:-1], edges[1], edges[2], edges[3][1:-1]]
    assert not is_edge_indices(short, d.grid_rc, T)
    with pytest.raises(ValueError, match="tile border"):
        tin_surface("earth", d.key, d.grid_rc, d.height_m, d.faces, [e[1:-1] for e in edges], 30.0)
    assert all(np.array_equal(a, b) for a, b in zip(edge_indices(d.grid_rc, T), edges, strict=True))
