"""Context-conditioned learned refiner: zero-initialised context stem, old checkpoints, the
refiner's context path (earth and plane), contracts with context, ONNX and CUDA parity."""

import numpy as np
import pytest
import torch
from refiner_contracts import assert_seam_batch_nesting

from generator.learned.backends import TorchEager, make_backend
from generator.learned.checkpoint import ASSET_PATH, load_net, make_checkpoint, save_checkpoint
from generator.learned.inputs import CONTEXT_CHANNELS, context_numpy, noise_coords, pack_context, unpack_context_torch
from generator.learned.model import RefinerNet
from runtime.tiles import World, spacing_m

pytestmark = pytest.mark.skipif(not ASSET_PATH.exists(), reason="shipped weights missing")
SHIPPED = "48be9ce83e5c"


def _context_net(weight_std: float = 0.3, seed: int = 0) -> RefinerNet:
    """The shipped net with a context stem (random weights of ``weight_std``; 0 = as initialised)."""
    from dataclasses import replace

    old, _, _ = load_net()
    net = RefinerNet(replace(old.config, context_channels=CONTEXT_CHANNELS))
    missing, unexpected = net.load_state_dict(old.state_dict(), strict=False)
    assert missing == ["context_stem.weight"] and unexpected == []
    if weight_std:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            net.context_stem.weight.copy_(torch.randn(net.context_stem.weight.shape, generator=g) * weight_std)
    return net.eval()


@pytest.fixture(scope="module")
def ctx_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ctx") / "ctx.pt"
    save_checkpoint(make_checkpoint(_context_net(), {"step": 1}, half=True), path)
    return path


def _inputs(b, crop, margin, seed=0, level=12):
    rng = np.random.default_rng(seed)
    z = np.cumsum(np.cumsum(rng.normal(0, 3, (b, crop, crop)), 1), 2) + 1200
    bands = rng.uniform(0.05, 0.5, (b, 4, crop, crop))
    parents = np.concatenate([z[:, None], bands], 1).astype(np.float32)
    rows, cols = noise_coords(np.array([[2 ** (level - 1) + 256 * i, 2 ** level + 512] for i in range(b)]),
                              crop, crop, margin)
    ctx = context_numpy(World.EARTH, level, rows, cols, 0)
    return parents, rows, cols, np.full((b,), spacing_m(level), np.float32), np.ones((b, 2), np.float32), ctx


def test_old_checkpoint_loads_without_context_and_keeps_its_version():
    net, version, _ = load_net()
    assert version == SHIPPED and not net.takes_context and net.config.context_channels is None


def test_zero_initialised_context_stem_is_exactly_the_shipped_net():
    old, version, _ = load_net()
    new = _context_net(0.0)
    m = old.config.margin
    p, r, c, s, pr, ctx = _inputs(2, 2 * m + 17, m)
    a = TorchEager(old, version).run_level(p, 3, 12, r, c, s, pr)
    b = TorchEager(new, "x").run_level(p, 3, 12, r, c, s, pr, ctx)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="takes context"):
        TorchEager(new, "x").run_level(p, 3, 12, r, c, s, pr)


def test_context_moves_detail_and_keeps_nesting():
    net = _context_net()
    m = net.config.margin
    p, r, c, s, pr, ctx = _inputs(1, 2 * m + 17, m)
    be = TorchEager(net, "x")
    a = be.run_level(p, 3, 12, r, c, s, pr, ctx)
    arid = np.zeros_like(ctx)
    arid[:, 0], arid[:, 2], arid[:, 12], arid[:, 13:] = 1.0, 1.0, 1.0, 0.1  # land, B arid, barren
    b = be.run_level(p, 3, 12, r, c, s, pr, arid)
    assert np.abs(a[:, 0] - b[:, 0]).max() > 0.1
    for out in (a, b):
        assert np.array_equal(out[:, :, ::2, ::2], p[:, :, m:-m, m:-m])


def test_context_checkpoint_round_trip_has_a_new_version(ctx_ckpt):
    net, version, meta = load_net(ctx_ckpt)
    assert net.takes_context and net.config.context_channels == CONTEXT_CHANNELS
    assert version != SHIPPED and len(version) == 12 and meta["step"] == 1


def test_pack_unpack_round_trip():
    ctx = context_numpy(World.EARTH, 9, np.arange(150, 190)[None] * 3, np.arange(1000, 1040)[None] * 5, 0)[0]
    back = unpack_context_torch(torch.from_numpy(pack_context(ctx))[None])[0].numpy()
    onehots = slice(1, 13)
    land = ctx[onehots].reshape(12, -1)
    exact = np.all((land == 0) | (land == 1), axis=0).reshape(ctx.shape[1:])  # no fractional one-hots
    assert np.array_equal(back[onehots][:, exact], ctx[onehots][:, exact])
    assert np.abs(back[0] - ctx[0]).max() <= 0.5 / 254 + 1e-6
    assert np.abs(back[13:] - ctx[13:]).max() <= 0.6 * 1.2 / 254


@pytest.mark.parametrize("world", ["earth", "plane"])
def test_refiner_context_contracts_seam_batch_nesting(ctx_ckpt, world):
    """The refiner reads the world's context itself: a crop shifted by k parent rows refines the
    same global samples to the same bits (seams), a batch gives each crop's bits alone, nesting."""
    from generator.learned.refiner import LearnedRefiner

    ref = LearnedRefiner(world, checkpoint=ctx_ckpt, backend="torch")
    assert_seam_batch_nesting(ref)
    assert ref.config()["version"] == load_net(ctx_ckpt)[1]


def test_refine_grid_needs_a_location_for_a_context_net(ctx_ckpt):
    from generator.eval.learned import refine_grid
    from generator.learned.located import geo_nodes
    from generator.learned.refiner import LearnedRefiner

    ref = LearnedRefiner(checkpoint=ctx_ckpt, backend="torch")
    z = np.cumsum(np.random.default_rng(2).normal(0, 5, (20, 20)), 0).astype(np.float32) + 500
    with pytest.raises(ValueError, match="location"):
        refine_grid(ref, z, 12, 0)
    geo = geo_nodes((200, 200), lambda y, x: (46.2 - y * 1e-3, -122.2 + x * 1e-3))
    out = refine_grid(ref, z, 12, 0, (geo, 0, 0, 4))
    assert out.shape == (39, 39) and np.array_equal(out[::2, ::2], z)


def test_onnxruntime_with_context_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from generator.learned.onnx import export_onnx

    net = _context_net()
    m = net.config.margin
    path = tmp_path / "c.onnx"
    export_onnx(net, path)
    assert [i.name for i in onnx.load(str(path)).graph.input][-1] == "context"
    args = _inputs(2, 2 * m + 21, m)
    a = TorchEager(net, "x").run_level(args[0], 4, 12, *args[1:])
    b = make_backend("onnxruntime", net, "x", onnx_path=str(path)).run_level(args[0], 4, 12, *args[1:])
    assert np.array_equal(b[:, :, ::2, ::2], args[0][:, :, m:-m, m:-m])
    assert np.abs(a[:, 0] - b[:, 0]).max() < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_with_context_close_to_eager_and_batch_invariant_on_gpu():
    net = _context_net()
    m = net.config.margin
    eager = make_backend("torch", net, "x", device="cuda")
    comp = make_backend("torch-compiled", net, "x", buckets=(16,))
    args = _inputs(5, 2 * m + 33, m)
    a = eager.run_level(args[0], 1, 12, *args[1:])
    b = comp.run_level(args[0], 1, 12, *args[1:])
    one = comp.run_level(*(x[:1] if isinstance(x, np.ndarray) else x for x in (args[0], 1, 12, *args[1:])))
    assert np.array_equal(b[:, :, ::2, ::2], args[0][:, :, m:-m, m:-m])
    assert np.abs(a[:, 0] - b[:, 0]).max() < 0.1
    assert np.abs(one[:, 0] - b[:1, 0]).max() <= 1e-3


def _coded_grid(n: int = 240):
    """A grid whose height encodes its position (y * 1000 + x) and whose packed context land
    byte is (7 y + 3 x) mod 251, so a crop's context can be checked sample by sample."""
    from dataclasses import replace

    from generator.learned.data import Grid, _no_bands
    from generator.learned.located import geo_nodes

    y, x = np.mgrid[0:n, 0:n]
    g = Grid("coded", 30.0, (y * 1000 + x).astype(np.float32), _no_bands((n, n)),
             geo=geo_nodes((n, n), lambda a, b: (10.0 - a * 1e-3, 20.0 + b * 1e-3)))
    ctx = np.zeros((5, n, n), np.uint8)
    ctx[0] = (7 * y + 3 * x) % 251
    return replace(g, context=ctx, ctx_stride=1)


def _check_coded(fields: np.ndarray, packed: np.ndarray):
    h = fields[:, 0].astype(np.int64)
    assert np.array_equal(packed[:, 0], (7 * (h // 1000) + 3 * (h % 1000)) % 251)


def test_pair_sampler_context_is_at_the_parent_samples_and_leaves_the_rng_alone():
    from generator.learned.data import PairSampler

    g = _coded_grid()
    with_ctx = PairSampler([g], cells=8, margin=5, context=True).sample(np.random.default_rng(4), 16)
    without = PairSampler([g], cells=8, margin=5).sample(np.random.default_rng(4), 16)
    assert with_ctx.context.shape == (16, 5) + with_ctx.parents.shape[2:] and without.context is None
    assert np.array_equal(with_ctx.parents, without.parents) and np.array_equal(with_ctx.targets, without.targets)
    _check_coded(with_ctx.parents, with_ctx.context)


def test_cascade_sampler_context_follows_every_level():
    from generator.learned.data import CascadeSampler

    b = CascadeSampler([_coded_grid()], 6, 3, 2, context=True, max_step_log2=1).sample(np.random.default_rng(5), 8)
    assert len(b.context) == len(b.levels) == 3
    for lv, ctx in zip(b.levels, b.context, strict=True):
        _check_coded(lv, ctx)


def test_geo_nodes_read_back_between_nodes():
    from generator.learned.located import geo_nodes, latlon_at

    f = lambda y, x: (45.0 - y * 0.01, 179.9 + x * 0.02)  # crosses the antimeridian
    geo = geo_nodes((50, 70), f)
    lat, lon = latlon_at(geo, np.array([[0.0, 13.5], [49.0, 31.0]]), np.array([[0.0, 7.25], [69.0, 40.0]]))
    want_lat, want_lon = f(np.array([[0.0, 13.5], [49.0, 31.0]]), np.array([[0.0, 7.25], [69.0, 40.0]]))
    assert np.allclose(lat, want_lat) and np.allclose(lon, (want_lon + 180) % 360 - 180)
