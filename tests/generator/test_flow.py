"""A sampled height detail (RefinerConfig.flow_steps): Euler steps of a conditional flow around the
head's detail. Untrained (zero velocity head, sigma 0) it is the shipped net with its first three
noise fields zeroed; trained or not, it meets the contracts (seams, batch, nesting, ONNX), its
detail moves with the seed, and `train --flow-steps` trains the flow alone by flow matching."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from refiner_contracts import (
    assert_onnx_matches_torch,
    assert_seam_batch_nesting,
    backend_contracts,
    checkpoint_refiner,
    level_inputs,
    two_seeds,
    walk_corpus,
)

from generator.learned.backends import TorchEager
from generator.learned.checkpoint import ASSET_PATH, load_net
from generator.learned.model import FLOW_REACH, RefinerConfig, RefinerNet

pytestmark = pytest.mark.skipif(not ASSET_PATH.exists(), reason="shipped weights missing")


def _flow_net(sigma: float = 1.0, weight_std: float = 0.05, steps: int = 3) -> RefinerNet:
    """The shipped net with a flow of ``steps`` steps (velocity head random at ``weight_std``)."""
    old, _, _ = load_net()
    net = RefinerNet(replace(old.config, flow_steps=steps, flow_width=16, flow_sigma=sigma))
    missing, unexpected = net.load_state_dict(old.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("flow.") for k in missing)
    if weight_std:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            net.flow.head.weight.copy_(torch.randn(net.flow.head.weight.shape, generator=g) * weight_std)
    return net.eval()


def test_untrained_flow_without_sigma_is_the_shipped_net_and_the_margin_grows():
    old, _, _ = load_net()
    net = _flow_net(sigma=0.0, weight_std=0.0)
    assert net.config.margin == old.config.margin + 3 * FLOW_REACH
    m, m0 = net.config.margin, old.config.margin
    g = torch.Generator().manual_seed(1)
    h = 2 * m + 11
    parents = torch.cumsum(torch.randn(2, 5, h, h, generator=g), -1) * 20.0
    noise = torch.randn(2, 4, h, h, generator=g)
    args = (torch.tensor([40.0, 600.0]), torch.ones(2, 2))
    with torch.no_grad():
        got = net(parents, noise, *args)
        quiet = noise.clone()
        quiet[:, :3] = 0.0  # the flow's x_0 fields: the trunk never sees them
        k = m - m0
        want = old(parents[..., k:-k, k:-k], quiet[..., k:-k, k:-k], *args)
    assert torch.equal(got, want)


def test_the_flow_detail_moves_with_the_seed_and_keeps_nesting():
    net = _flow_net()
    m = net.config.margin
    inputs = level_inputs(1, 2 * m + 17, m)
    a, b = two_seeds(net, inputs)
    old, _, _ = load_net()
    k = m - old.config.margin  # the shipped net's crop of the same cells
    p, r, c, s, pr = inputs
    a0, b0 = two_seeds(old, (p[..., k:-k, k:-k], r[:, k:-k], c[:, k:-k], s, pr))
    assert np.abs(a - b)[:, 0].mean() > 3 * np.abs(a0 - b0)[:, 0].mean()  # sampled, not a function of the parent
    assert np.abs(a - b)[:, 1:].max() < 1e-4 + 2 * np.abs(a0 - b0)[:, 1:].max()  # the bands are the head's
    for out in (a, b):
        assert np.array_equal(out[:, :, ::2, ::2], p[:, :, m:-m, m:-m])


def test_refiner_with_a_flow_meets_seam_batch_nesting(tmp_path):
    ref = checkpoint_refiner(_flow_net(), tmp_path)
    assert ref.margin == load_net()[0].config.margin + 3 * FLOW_REACH
    assert_seam_batch_nesting(ref)


def test_onnx_export_of_a_flow_net_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert_onnx_matches_torch(_flow_net(), tmp_path)


def test_flow_matching_trains_the_flow_alone_and_its_loss_falls(tmp_path):
    """--flow-steps S from weights without a flow: the trunk and head stay those weights bit for
    bit, the velocity net learns (its zero head moves) and the flow-matching loss falls; the
    deep-cascade terms train through the sampled levels; the critic's terms are refused."""
    from generator.learned.train import TrainConfig, flow_losses, ship, train

    small = RefinerConfig(width=8, dilations=(1, 2), noise_channels=4)
    base = TrainConfig(corpus=str(walk_corpus(tmp_path)), steps=2, batch=4, cells=8, log_every=1, val_every=2,
                       val_batches=1, warmup_steps=2)
    torch.manual_seed(0)
    ship(train(replace(base, out=str(tmp_path / "a")), small, resume=False, log=lambda s: None), tmp_path / "a.pt")
    a, _, _ = load_net(tmp_path / "a.pt")
    last = train(replace(base, out=str(tmp_path / "b"), init_from=str(tmp_path / "a.pt"), flow_steps=1,
                         flow_width=8, steps=40, batch=8, log_every=5, val_every=40, lr_g=3e-3),
                 resume=False, log=lambda s: None)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["model_config"]["flow_steps"] == 1
    for k, v in a.state_dict().items():  # the trunk and head did not move
        assert torch.equal(state["net"][k].float(), v.float()), k
    assert float(state["net"]["flow.head.weight"].abs().max()) > 0
    hist = [r["flow"] for r in json.loads(state["history"]) if "flow" in r]
    assert len(hist) == 8 and all(np.isfinite(hist)) and np.mean(hist[-3:]) < np.mean(hist[:3])

    ship(last, tmp_path / "b.pt")
    net, version, _ = load_net(tmp_path / "b.pt")
    assert net.config.flow_steps == 1 and version != load_net(tmp_path / "a.pt")[1]
    # one batch by hand: the loss is the velocity's error where the height is a real target
    m = net.config.margin
    n = 10
    g = torch.Generator().manual_seed(0)
    parents = torch.cumsum(torch.randn(2, 5, n + 2 * m, n + 2 * m, generator=g), -1)
    targets = torch.randn(2, 5, 2 * n - 1, 2 * n - 1, generator=g)
    noise = torch.randn(2, 4, n + 2 * m, n + 2 * m, generator=g)
    present = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    terms = flow_losses(net, parents, targets, present, torch.tensor([30.0, 30.0]), noise, g)
    assert float(terms["flow"].detach()) > 0
    with pytest.raises(ValueError, match="--cascade-weight"):
        train(replace(base, out=str(tmp_path / "c"), init_from=str(tmp_path / "a.pt"), flow_steps=1,
                      cascade_weight=1.0), resume=False, log=lambda s: None)
    deep = train(replace(base, out=str(tmp_path / "d"), init_from=str(tmp_path / "b.pt"), flow_steps=1,
                         deep_weight=1.0, deep_levels="2", deep_batch=2, deep_start=6, steps=2),
                 resume=False, log=lambda s: None)
    dh = [r for r in json.loads(torch.load(deep, map_location="cpu", weights_only=True)["history"])
          if "d_total" in r]
    assert dh and all(np.isfinite(r["d_total"]) and np.isfinite(r["flow"]) for r in dh)


def test_the_relative_source_is_as_rough_as_the_heads_detail():
    """flow_relative: x_0 - mu = sigma * rho * z, rho = the RMS of mu over the cell's 3 samples
    (+ 0.05): a flat cell starts nearly flat, a rough one rough."""
    net = RefinerNet(RefinerConfig(width=8, dilations=(1,), flow_steps=1, flow_width=4, flow_sigma=0.5,
                                   flow_relative=True))
    mu = torch.zeros(1, 3, 2, 2)
    mu[..., 1, :] = torch.tensor([3.0, 0.0, -3.0])[:, None]  # second row: RMS sqrt(6)
    z = torch.ones(1, 3, 2, 2)
    x0 = net.flow_source(mu, z) - mu
    torch.testing.assert_close(x0[..., 0, :], torch.full((1, 3, 2), 0.5 * 0.05))
    torch.testing.assert_close(x0[..., 1, :], torch.full((1, 3, 2), 0.5 * (6.0 + 0.0025) ** 0.5))
    plain = RefinerNet(RefinerConfig(width=8, dilations=(1,), flow_steps=1, flow_width=4, flow_sigma=0.5))
    torch.testing.assert_close(plain.flow_source(mu, z) - mu, torch.full((1, 3, 2, 2), 0.5))


def test_cpu_reference_contracts_of_a_flow_net_are_exact():
    net = _flow_net()
    c = backend_contracts(TorchEager(net, "x"), "cpu", net.config.margin, batch=2, cells=24, shift=8)
    assert c == {"seam_max_m": 0.0, "batch_max_m": 0.0, "nesting_exact": True}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_flow_net_meets_seam_batch_and_nesting_contracts():
    """The compiled graph of a flow net (float32 trunk and flow, no TF32): seams and a batch of 256 within 1 mm."""
    from generator.learned.backends import make_backend

    net = _flow_net()
    c = backend_contracts(make_backend("torch-compiled", net, "x"), "cuda", net.config.margin, batch=256)
    assert c["nesting_exact"] and c["seam_max_m"] <= 1e-3 and c["batch_max_m"] <= 1e-3, c
