"""Backends: ONNX export + onnxruntime parity with torch, unavailable backends said plainly."""

import numpy as np
import pytest
import torch

from generator.learned.backends import BackendUnavailable, TorchEager, make_backend
from generator.learned.checkpoint import ASSET_PATH, load_net
from generator.learned.inputs import noise_coords
from generator.learned.model import RefinerConfig, RefinerNet

pytestmark = pytest.mark.skipif(not ASSET_PATH.exists(), reason="shipped weights missing")


@pytest.fixture(scope="module")
def net_version():
    net, version, _ = load_net()
    return net, version


def _level_inputs(b, crop, margin, seed=0):
    rng = np.random.default_rng(seed)
    z = np.cumsum(np.cumsum(rng.normal(0, 3, (b, crop, crop)), 1), 2) + 1200
    bands = rng.uniform(0.05, 0.5, (b, 4, crop, crop))
    parents = np.concatenate([z[:, None], bands], 1).astype(np.float32)
    rows, cols = noise_coords(np.array([[256 * i, -512] for i in range(b)]), crop, crop, margin)
    return parents, rows, cols, np.full((b,), 38.2, np.float32), np.ones((b, 2), np.float32)


def test_onnxruntime_matches_torch(net_version, tmp_path):
    pytest.importorskip("onnxruntime")
    net, version = net_version
    m = net.config.margin
    from generator.learned.onnx import export_onnx

    path = tmp_path / "r.onnx"
    export_onnx(net, path)
    ort_b = make_backend("onnxruntime", net, version, onnx_path=str(path))
    ref_b = TorchEager(net, version)
    args = _level_inputs(2, 2 * m + 33, m)
    a = ref_b.run_level(args[0], 4, 11, *args[1:])
    b = ort_b.run_level(args[0], 4, 11, *args[1:])
    assert a.shape == b.shape == (2, 5, 65, 65)
    assert np.array_equal(b[:, :, ::2, ::2], args[0][:, :, m:-m, m:-m])  # nesting exact in ONNX too
    assert np.abs(a[:, 0] - b[:, 0]).max() < 1e-3  # metres
    assert np.abs(a[:, 1:] - b[:, 1:]).max() < 1e-4


def test_onnx_graph_has_dynamic_batch_and_size(net_version, tmp_path):
    onnx = pytest.importorskip("onnx")
    from generator.learned.onnx import export_onnx

    net, _ = net_version
    model = onnx.load_from_string(export_onnx(net))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 5, "h", "w"]
    assert [i.name for i in model.graph.input] == ["parents", "noise", "spacing_m", "present"]


def test_tensorrt_unavailable_is_reported_plainly(net_version):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="TensorRT Python package is not installed"):
            make_backend("tensorrt", *net_version)
    else:
        pytest.skip("tensorrt is installed here")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_compiled_backend_needs_cuda(net_version):
    with pytest.raises(BackendUnavailable, match="CUDA"):
        make_backend("torch-compiled", *net_version)


def test_unknown_backend():
    net = RefinerNet(RefinerConfig(width=4, dilations=(1,), noise_channels=1))
    with pytest.raises(ValueError, match="expected one of"):
        make_backend("tpu", net, "x")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_fp16_close_to_eager_on_gpu(net_version):
    net, version = net_version
    m = net.config.margin
    eager = make_backend("torch", net, version, device="cuda")
    comp = make_backend("torch-compiled", net, version)
    args = _level_inputs(4, 2 * m + 33, m)
    a = eager.run_level(args[0], 1, 12, *args[1:])
    b = comp.run_level(args[0], 1, 12, *args[1:])
    assert np.array_equal(b[:, :, ::2, ::2], args[0][:, :, m:-m, m:-m])
    assert np.abs(a[:, 0] - b[:, 0]).max() < 0.1


@pytest.mark.parametrize("b", [1, 3, 4, 5, 16, 37])
def test_run_bucketed_pads_to_buckets_chunks_and_keeps_each_row(b):
    from generator.learned.backends import run_bucketed

    seen = []

    def run(n, parents5, rows, cols, spacing_m, present):
        seen.append((n, parents5.shape[0], rows.shape[0], cols.shape[0], spacing_m.shape[0], present.shape[0]))
        # a per-row function of every input, like a network evaluated on a fixed batch shape
        return parents5.sum((1, 2, 3)) + rows.sum(1) - cols.sum(1) + spacing_m * present.sum(1)

    g = torch.Generator().manual_seed(b)
    p = torch.rand(b, 5, 3, 3, generator=g)
    r, c = torch.rand(b, 7, generator=g), torch.rand(b, 7, generator=g)
    s, m = torch.rand(b, generator=g), torch.rand(b, 2, generator=g)
    out = run_bucketed(run, (1, 4, 16), p, r, c, s, m)
    assert torch.equal(out, p.sum((1, 2, 3)) + r.sum(1) - c.sum(1) + s * m.sum(1))
    assert all(len(set(x)) == 1 and x[0] in (1, 4, 16) for x in seen)  # every input padded alike
    assert len(seen) == max(1, -(-b // 16))  # one call, or chunks of the biggest bucket
