"""CPU smoke training: a few real optimiser steps, resume and ship (the `train` command: test_cli.py)."""

import json

import numpy as np
import pytest
import torch

from generator.learned.checkpoint import load_net
from generator.learned.data import Grid, save_corpus
from generator.learned.model import RefinerConfig
from generator.learned.train import (
    TrainConfig,
    augment_bands,
    octave_log_power,
    plot_history,
    ship,
    spectral_loss,
    train,
)


def _corpus(tmp_path):
    rng = np.random.default_rng(0)
    z = np.cumsum(np.cumsum(rng.normal(0, 1, (200, 200)), 0), 1).astype(np.float32)
    bands = np.full((200, 200, 4), np.nan, np.float32)
    bands[..., :3] = 0.3
    bands[..., 3] = 0.4
    path = tmp_path / "corpus.npz"
    save_corpus(
        [Grid("walk", 30.0, z, bands), Grid("walk_dem", 90.0, z.T.copy(), np.full_like(bands, np.nan))], path
    )
    return path


def test_smoke_train_resume_and_ship(tmp_path):
    cfg = TrainConfig(
        corpus=str(_corpus(tmp_path)),
        out=str(tmp_path / "run"),
        steps=4,
        minutes=5.0,
        batch=4,
        cells=6,
        log_every=2,
        val_every=2,
        val_batches=1,
        warmup_steps=2,
    )
    small = RefinerConfig(width=8, dilations=(1, 2), noise_channels=2)
    torch.manual_seed(0)
    last = train(cfg, small, resume=False, log=lambda s: None)
    state = torch.load(last, map_location="cpu", weights_only=True)
    hist = json.loads(state["history"])
    assert state["step"] == 4
    assert [r["step"] for r in hist if "l1" in r] == [2, 4]
    assert all(np.isfinite(r["l1"]) and np.isfinite(r["d"]) for r in hist if "l1" in r)
    assert "val_l1" in hist[-1] and hist[-1]["final"]
    before = {k: v.clone() for k, v in state["net"].items()}

    from dataclasses import replace

    last = train(replace(cfg, steps=6), resume=True, log=lambda s: None)  # resumes at step 4
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["step"] == 6
    assert any(not torch.equal(before[k], state["net"][k]) for k in before)  # it learned something

    version = ship(last, tmp_path / "asset.pt")
    net, v, meta = load_net(tmp_path / "asset.pt")
    assert v == version and int(meta["step"]) == 6 and net.config.width == 8
    plot_history(json.loads(state["history"]), tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_octave_log_power_sees_energy_in_the_right_band():
    n = 63
    x = torch.arange(n, dtype=torch.float32)
    fine = torch.cos(2 * torch.pi * 0.375 * x)[None, :].expand(n, n)  # k = 0.375: band [1/4, 1/2)
    coarse = torch.cos(2 * torch.pi * 0.09 * x)[None, :].expand(n, n)  # k = 0.09: band [1/16, 1/8)
    p = octave_log_power(torch.stack([fine, coarse]))  # (2, 4)
    assert p.shape == (2, 4)
    assert int(p[0].argmax()) == 2 and int(p[1].argmax()) == 0
    # Doubling the amplitude adds log 4 to the band's log power.
    assert float(octave_log_power(2 * fine[None])[0, 2] - p[0, 2]) == pytest.approx(np.log(4.0), abs=1e-3)


def test_spectral_loss_penalises_too_little_detail_and_skips_missing_heights():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(4, 63, 63, generator=g)
    same = spectral_loss(real, real, torch.ones(4, dtype=torch.bool))
    assert float(same) == 0.0
    half = spectral_loss(0.5 * real, real, torch.ones(4, dtype=torch.bool))
    assert float(half) == pytest.approx(np.log(4.0), abs=0.01)  # power x 1/4 in every band
    none = spectral_loss(0.5 * real, real, torch.zeros(4, dtype=torch.bool))
    assert float(none) == 0.0


def test_flat_colour_makes_parent_and_target_bands_constant_and_says_rgb_present():
    b = 64
    g = torch.Generator().manual_seed(1)
    parents = torch.rand(b, 5, 10, 10, generator=g)
    targets = torch.rand(b, 5, 7, 7, generator=g)
    present = torch.tensor([[1.0, 0.0, 1.0]]).repeat(b, 1)  # height, no rgb, nir
    cfg = TrainConfig(flat_colour=0.5)
    p2, t2, pin = augment_bands(parents, targets, present, cfg, torch.Generator().manual_seed(2))
    flat = p2[:, 1:].flatten(2).std(2).amax(1) == 0  # every band constant
    assert 10 < int(flat.sum()) < 54  # about half
    assert torch.equal(p2[:, 0], parents[:, 0]) and torch.equal(t2[:, 0], targets[:, 0])  # heights untouched
    assert torch.equal(p2[flat, 1:, 0, 0], t2[flat, 1:, 0, 0])  # the same constants on both sides
    assert torch.all(pin[flat, 0] == 1) and torch.all(pin[~flat, 0] == 0)  # told rgb is there
    assert torch.all(pin[:, 1] == 1)  # nir presence unchanged
    assert torch.equal(p2[~flat], parents[~flat])


def test_init_from_fine_tunes_shipped_weights(tmp_path):
    small = RefinerConfig(width=8, dilations=(1, 2), noise_channels=2)
    base = TrainConfig(
        corpus=str(_corpus(tmp_path)), steps=2, batch=4, cells=6, log_every=1, val_every=2, val_batches=1,
        warmup_steps=2, spectral_weight=1.0,
    )
    from dataclasses import replace

    torch.manual_seed(0)
    first = train(replace(base, out=str(tmp_path / "a")), small, resume=False, log=lambda s: None)
    ship(first, tmp_path / "a.pt")
    net0, v0, _ = load_net(tmp_path / "a.pt")
    last = train(
        replace(base, out=str(tmp_path / "b"), init_from=str(tmp_path / "a.pt"), flat_colour=0.5),
        resume=False,
        log=lambda s: None,
    )
    state = torch.load(last, map_location="cpu", weights_only=True)
    hist = json.loads(state["history"])
    assert hist[0] == {"step": 0, "init_from": str(tmp_path / "a.pt"), "init_version": v0}
    assert state["step"] == 2 and state["model_config"]["width"] == 8
    assert all(np.isfinite(r["spectral"]) for r in hist if "spectral" in r)
    # It started from the shipped (fp16) weights, not from a fresh init, and moved.
    w0 = net0.state_dict()["head.weight"]
    w1 = state["net"]["head.weight"]
    assert (w1 - w0).abs().max() < 0.05 and not torch.equal(w0, w1)
