"""The refiner network: exact nesting, locality (seamless crops), shapes, fp16 trunk."""

import pytest
import torch

from generator.learned.model import N_CHANNELS, RefinerConfig, RefinerNet, asinh

SMALL = RefinerConfig(width=8, dilations=(1, 2, 1), noise_channels=2)


def _net(config=SMALL, seed=0):
    torch.manual_seed(seed)
    return RefinerNet(config).eval()


def _inputs(b, h, w, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    parents = torch.cat(
        [torch.randn(b, 1, h, w, generator=g) * 300 + 1000, torch.rand(b, 4, h, w, generator=g)], 1
    )
    return parents, torch.randn(b, k, h, w, generator=g), torch.full((b,), 30.0), torch.ones(b, 2)


def test_margin_counts_stencil_and_dilations():
    assert SMALL.margin == 1 + 1 + 2 + 1
    assert RefinerConfig().margin == 24


@torch.no_grad()
def test_output_shape_and_exact_nesting():
    net = _net()
    m = SMALL.margin
    p, n, s, pr = _inputs(2, 20, 27, 2)
    out = net(p, n, s, pr)
    assert out.shape == (2, N_CHANNELS, 2 * (20 - 2 * m) - 1, 2 * (27 - 2 * m) - 1)
    assert out.dtype == torch.float32
    assert torch.equal(out[:, :, ::2, ::2], p[:, :, m:-m, m:-m])  # bit for bit


@torch.no_grad()
def test_shifted_crops_agree_bit_for_bit():
    """A global sample's value must not depend on where the crop starts (seamless tiles)."""
    net = _net()
    p, n, s, pr = _inputs(1, 40, 40, 2, seed=3)
    a = net(p[..., :30, :30], n[..., :30, :30], s, pr)
    b = net(p[..., 6:36, 4:34], n[..., 6:36, 4:34], s, pr)
    assert torch.equal(a[..., 12:, 8:], b[..., :-12, :-8])


@torch.no_grad()
def test_output_depends_only_on_margin_window():
    net = _net()
    m = SMALL.margin
    p, n, s, pr = _inputs(1, 30, 30, 2, seed=4)
    q = p.clone()
    q[..., :, 0] += 500.0  # change a column m+1 parent samples left of output column 1's parents
    a, b = net(p, n, s, pr), net(q, n, s, pr)
    assert not torch.equal(a[..., :, 0], b[..., :, 0])  # inside the receptive field
    assert torch.equal(a[..., :, 2 * m :], b[..., :, 2 * m :])  # outside it: untouched


@torch.no_grad()
def test_zero_detail_is_the_interpolating_cubic():
    net = _net()
    m = SMALL.margin
    x = torch.arange(20.0)
    plane = (3.0 * x[None, :] + 2.0 * x[:, None] ** 3)[None, None].expand(1, 5, 20, 20).contiguous()
    out = net.assemble(plane, torch.zeros(1, 5, 3, 20 - 2 * m, 20 - 2 * m), torch.full((1,), 30.0))
    # The 4-point cubic reproduces cubic polynomials: odd samples are the midpoint values.
    xs = torch.arange(out.shape[-1]) / 2 + m
    expect = 3.0 * xs[None, :] + 2.0 * xs[:, None] ** 3
    assert torch.allclose(out[0, 0], expect, rtol=1e-6, atol=1e-3)


@torch.no_grad()
def test_amplitude_follows_the_scale_law():
    net = _net(RefinerConfig(amp_m_at_1km=10.0, hurst=0.5, colour_amp=0.03))
    a = net.amplitude(torch.tensor([1000.0, 10.0]))
    assert a.shape == (2, 5, 1, 1)
    assert a[0, 0].item() == pytest.approx(10.0)
    assert a[1, 0].item() == pytest.approx(1.0)
    assert a[1, 1].item() == pytest.approx(0.03)


@torch.no_grad()
def test_fp16_trunk_keeps_heights_float32_and_nesting():
    net = _net()
    for mod in (net.stem, net.blocks, net.head):
        mod.half()
    m = SMALL.margin
    p, n, s, pr = _inputs(1, 24, 24, 2)
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no fp16 convolution on this CPU build")
    try:
        out = net(p, n, s, pr)
    except RuntimeError as e:  # some CPU builds lack half convolutions
        pytest.skip(f"fp16 conv unsupported here: {e}")
    assert out.dtype == torch.float32
    assert torch.equal(out[:, :, ::2, ::2], p[:, :, m:-m, m:-m])


def test_asinh_matches_torch():
    x = torch.linspace(-1e4, 1e4, 20001)
    assert torch.allclose(asinh(x), torch.asinh(x), atol=1e-5)
    assert asinh(torch.tensor([0.0, 1e30]))[1].item() == pytest.approx(35.23, abs=0.01)
