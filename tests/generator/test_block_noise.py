"""Noise in every residual block (RefinerConfig.block_noise): zero-initialised (the shipped net
exactly), then the noise moves the detail while the contracts hold (seams, batch, nesting), and
the diversity term of training (TrainConfig.diversity_weight) trains it."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from refiner_contracts import (
    assert_onnx_matches_torch,
    assert_seam_batch_nesting,
    checkpoint_refiner,
    level_inputs,
    two_seeds,
)

from generator.learned.backends import TorchEager
from generator.learned.checkpoint import ASSET_PATH, load_net
from generator.learned.model import RefinerNet

pytestmark = pytest.mark.skipif(not ASSET_PATH.exists(), reason="shipped weights missing")


def _noisy_net(weight_std: float = 0.3) -> RefinerNet:
    """The shipped net with noise in every block (random projections of ``weight_std``)."""
    old, _, _ = load_net()
    net = RefinerNet(replace(old.config, block_noise=True))
    missing, unexpected = net.load_state_dict(old.state_dict(), strict=False)
    assert unexpected == [] and sorted(missing) == [f"noise_proj.{i}.weight" for i in range(len(net.blocks))]
    if weight_std:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for proj in net.noise_proj:
                proj.weight.copy_(torch.randn(proj.weight.shape, generator=g) * weight_std)
    return net.eval()


def test_zero_initialised_block_noise_is_exactly_the_shipped_net_and_keeps_old_ids():
    old, version, _ = load_net()
    assert old.config.block_noise is None  # the shipped checkpoint: its id does not move
    m = old.config.margin
    p, r, c, s, pr = level_inputs(2, 2 * m + 17, m)
    a = TorchEager(old, version).run_level(p, 3, 12, r, c, s, pr)
    b = TorchEager(_noisy_net(0.0), "x").run_level(p, 3, 12, r, c, s, pr)
    assert np.array_equal(a, b)


def test_block_noise_moves_the_detail_between_seeds_and_keeps_nesting():
    net = _noisy_net()
    m = net.config.margin
    inputs = level_inputs(1, 2 * m + 17, m)
    a, b = two_seeds(net, inputs)
    a0, b0 = two_seeds(load_net()[0], inputs)
    assert np.abs(a - b)[:, 0].mean() > 5 * np.abs(a0 - b0)[:, 0].mean()  # the noise now matters
    p = inputs[0]
    for out in (a, b):
        assert np.array_equal(out[:, :, ::2, ::2], p[:, :, m:-m, m:-m])


def test_refiner_with_block_noise_meets_seam_batch_nesting(tmp_path):
    assert_seam_batch_nesting(checkpoint_refiner(_noisy_net(), tmp_path))


def test_onnx_export_of_a_block_noise_net_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert_onnx_matches_torch(_noisy_net(), tmp_path)
