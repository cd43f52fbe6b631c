"""runtime.tin.kernels: the compiled loops give the numpy expressions' bits."""

import numpy as np

from runtime.tiles import T, TileKey, World
from runtime.tin import kernels, simplify_grid, tile_mesh, vertex_normals

CHUNKS = 4  # viewer.renderer.CHUNKS


def _rough_tin(seed: int = 3):
    rng = np.random.default_rng(seed)
    h = np.cumsum(np.cumsum(rng.normal(0, 1, (T + 1, T + 1)), 0), 1).astype(np.float32)
    grid_rc, faces = simplify_grid(h, 2.0)
    return h, grid_rc, faces


def _numpy_vertex_normals(pos: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The numpy form the kernels replaced (per-component cross products, bincount)."""
    i0, i1, i2 = faces[:, 0], faces[:, 1], faces[:, 2]
    a = [pos[i1, k] - pos[i0, k] for k in range(3)]
    b = [pos[i2, k] - pos[i0, k] for k in range(3)]
    fn = (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
    flat = faces.reshape(-1)
    out = np.stack([np.bincount(flat, np.repeat(fn[i], 3), minlength=len(pos)) for i in range(3)], 1)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def test_vertex_normals_match_the_numpy_form_bit_for_bit():
    h, grid_rc, faces = _rough_tin()
    key = TileKey(9, 270, 180)
    mesh = tile_mesh(World.EARTH, key, grid_rc, h[grid_rc[:, 0], grid_rc[:, 1]], faces, 5.0)
    pos = mesh.vertices_m[: mesh.n].astype(np.float64) * 1.001 + 0.25  # any float64 positions
    got = vertex_normals(pos, mesh.faces)
    assert got.dtype == np.float32 and got.shape == (mesh.n, 3)
    assert np.array_equal(got, _numpy_vertex_normals(pos, mesh.faces.astype(np.int64)))
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_block_z_order_is_lexsort_of_block_and_z():
    h, grid_rc, faces = _rough_tin(5)
    rc = grid_rc.astype(np.float64)
    f = faces.astype(np.int64)
    fc = (rc[f[:, 0]] + rc[f[:, 1]] + rc[f[:, 2]]) / 3.0
    cen = fc / 256.0 * CHUNKS
    block = np.clip(cen[:, 0].astype(np.int64), 0, CHUNKS - 1) * CHUNKS + np.clip(cen[:, 1].astype(np.int64), 0,
                                                                                   CHUNKS - 1)
    ij = np.floor(fc * 6.0).astype(np.int64)
    z = sum(((ij[:, k] >> b) & 1) << (2 * b + k) for b in range(11) for k in range(2))  # bits interleaved
    order, starts = kernels.block_z_order(rc, faces.astype(np.uint32), CHUNKS, 6.0)
    assert np.array_equal(order, np.lexsort((z, block)))
    assert np.array_equal(starts, np.searchsorted(np.sort(block), np.arange(CHUNKS * CHUNKS + 1)))
    plain, _ = kernels.block_z_order(rc, faces.astype(np.uint32), CHUNKS, 0.0)
    assert np.array_equal(plain, np.argsort(block, kind="stable"))


def test_tile_mesh_edge_normals_and_up_match_the_numpy_forms():
    """The compiled edge normals (``kernels.edge_normals``) and up (``kernels.lattice_up``)
    give ``shared_edges_normals``' and ``sample_up``'s bits, on the plane, at mid latitude
    and on a tile touching the pole (its north edge collapses: the numpy path)."""
    from runtime.geometry import geometry_for
    from runtime.tin import tin_surface
    from runtime.tin.placement import SIDES, shared_edges_normals

    h, grid_rc, faces = _rough_tin(11)
    for world, key in ((World.PLANE, TileKey(10, 3, -4)), (World.EARTH, TileKey(9, 270, 180)),
                       (World.EARTH, TileKey(3, 5, 0))):
        geo = geometry_for(world)
        hm = h[grid_rc[:, 0], grid_rc[:, 1]].astype(np.float64)
        mesh = tile_mesh(world, key, grid_rc, hm, faces, 5.0)
        r0, c0 = key.sample_origin()
        corners = ((grid_rc[:, 0] == 0) | (grid_rc[:, 0] == T)) & ((grid_rc[:, 1] == 0) | (grid_rc[:, 1] == T))
        edges = [mesh.edge(side) for side in SIDES]
        want = shared_edges_normals(geo, key.level, [mesh.grid_rc[e] + (r0, c0) for e in edges],
                                    [mesh.height_m[e] for e in edges])
        for e, nrm in zip(edges, want, strict=True):
            inner = ~corners[e]
            assert np.array_equal(mesh.normals[e][inner], nrm[inner])
        s = tin_surface(world, key, grid_rc, hm, faces, None, 5.0)
        up = geo.sample_up(key.level, s.grid_rc[:, 0] + r0, s.grid_rc[:, 1] + c0).astype(np.float32)
        assert np.array_equal(s.up, up)
