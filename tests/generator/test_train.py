"""CPU smoke training: a few real optimiser steps, resume and ship (the `train` command: test_cli.py)."""

import json

import numpy as np
import pytest
import torch
from refiner_contracts import walk_corpus

from generator.learned.checkpoint import config_from_dict, load_net
from generator.learned.data import Grid, save_corpus
from generator.learned.model import RefinerConfig, RefinerNet
from generator.learned.train import (
    TrainConfig,
    augment_bands,
    octave_log_power,
    plot_history,
    ship,
    spectral_loss,
    train,
)


def test_smoke_train_resume_and_ship(tmp_path):
    cfg = TrainConfig(
        corpus=str(walk_corpus(tmp_path)),
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
        corpus=str(walk_corpus(tmp_path)), steps=2, batch=4, cells=6, log_every=1, val_every=2, val_batches=1,
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
    assert hist[0] == {"step": 0, "init_from": str(tmp_path / "a.pt"), "init_version": v0,
                       "lineage": [{"version": v0, "step": 2}]}
    assert state["step"] == 2 and state["model_config"]["width"] == 8
    ship(last, tmp_path / "b.pt")  # the shipped fine-tune names its ancestors and counts their steps
    _, v1, meta = load_net(tmp_path / "b.pt")
    assert v1 != v0 and meta["lineage"] == [{"version": v0, "step": 2}] and meta["steps_total"] == 4
    assert all(np.isfinite(r["spectral"]) for r in hist if "spectral" in r)
    # It started from the shipped (fp16) weights, not from a fresh init, and moved.
    w0 = net0.state_dict()["head.weight"]
    w1 = state["net"]["head.weight"]
    assert (w1 - w0).abs().max() < 0.05 and not torch.equal(w0, w1)


def _cascadewalk_corpus(tmp_path):
    rng = np.random.default_rng(1)
    z = np.cumsum(np.cumsum(rng.normal(0, 1, (300, 300)), 0), 1).astype(np.float32)
    path = tmp_path / "cascade_corpus.npz"
    save_corpus([Grid("walk", 30.0, z, np.full(z.shape + (4,), np.nan, np.float32))], path)
    return path


def test_cascade_sizes_and_windows():
    from generator.learned.data import cascade_sizes

    assert cascade_sizes(24, 3, 48) == [96, 95, 93, 89]
    with pytest.raises(ValueError, match="leaves"):
        cascade_sizes(24, 3, 2)


def test_cascade_gradients_flow_through_every_level(tmp_path):
    """The unrolled objective: the loss of the last level reaches the first level's input
    to the net, the real fields line up with the child windows (a perfect 'net' -- one that
    copies the real field -- has zero low-pass error)."""
    from generator.learned.data import CascadeSampler, load_corpus
    from generator.learned.model import PatchDiscriminator
    from generator.learned.train import CRITIC_INPUTS, cascade_losses

    grids = load_corpus(_cascadewalk_corpus(tmp_path))
    cfg = TrainConfig(cascade_cells=10, spectral_weight=1.0, cond_blur=0.5, cond_noise=0.2)
    torch.manual_seed(0)
    net = RefinerNet(RefinerConfig(width=8, dilations=(1, 2), noise_channels=2))
    critic = PatchDiscriminator(CRITIC_INPUTS, width=8)
    m = net.config.margin
    s = CascadeSampler(grids, 10, m, 3)
    b = s.sample(np.random.default_rng(0), 3)
    assert [a.shape[-1] for a in b.levels] == s.sizes == [18, 19, 21, 25]
    for coarse, fine in zip(b.levels[:-1], b.levels[1:], strict=True):
        # nesting of the real windows: level j's even samples are level j-1's inner samples
        np.testing.assert_array_equal(fine[:, :, ::2, ::2], coarse[:, :, m:-m, m:-m])
    reals = [torch.from_numpy(a) for a in b.levels]
    pres, sp = torch.from_numpy(b.present), torch.from_numpy(b.spacing_m)
    gen = torch.Generator().manual_seed(0)
    terms, x_real, x_fake, ratios = cascade_losses(net, critic, reals, pres, sp, cfg, gen, 1.0)
    assert ratios.shape == (3, 4) and torch.isfinite(ratios).all()
    assert all(torch.isfinite(v) for v in terms.values())
    # The last level's loss alone must move the stem weights through all three levels: its
    # input at level 3 is level 2's output, itself level 1's.
    terms["c_adv"].backward()
    assert net.stem.weight.grad is not None and net.stem.weight.grad.abs().sum() > 0


def test_cascade_training_loss_is_finite_and_decreases(tmp_path):
    cfg = TrainConfig(
        corpus=str(_cascadewalk_corpus(tmp_path)),
        out=str(tmp_path / "run"),
        steps=24,
        minutes=5.0,
        batch=4,
        cells=6,
        log_every=4,
        val_every=12,
        val_batches=1,
        warmup_steps=1000,
        lr_g=2e-3,
        cascade_weight=1.0,
        cascade_levels="2",
        cascade_batch=4,
        cascade_cells=10,
        cond_blur=0.5,
        cond_noise=0.1,
        hurst_fine=0.85,
        fine_break_m=100.0,
    )
    torch.manual_seed(0)
    last = train(cfg, RefinerConfig(width=8, dilations=(1, 2), noise_channels=2), resume=False, log=lambda s: None)
    state = torch.load(last, map_location="cpu", weights_only=True)
    hist = [r for r in json.loads(state["history"]) if "c_lowpass" in r]
    assert len(hist) == 6 and all(np.isfinite(r["c_total"]) for r in hist)
    assert hist[-1]["c_lowpass"] < hist[0]["c_lowpass"]
    assert "val_c_power_ratio" in json.loads(state["history"])[-1]
    assert state["model_config"]["hurst_fine"] == 0.85
    net = RefinerNet(config_from_dict(state["model_config"]))
    a = net.amplitude(torch.tensor([1000.0, 100.0, 10.0]))[:, 0, 0, 0]
    # A(100 m) follows the coarse law, A(10 m) the steeper fine one
    assert torch.allclose(a[1] / a[0], torch.tensor(0.1 ** net.config.hurst), rtol=1e-5)
    assert torch.allclose(a[2] / a[1], torch.tensor(0.1**0.85), rtol=1e-5)


def test_context_fine_tune_from_context_free_weights(tmp_path):
    """--context 1 from context-free weights: the corpus' georeference gives each crop its
    context, the new stem starts at zero; --context-only 1 moves the context stem alone."""
    from dataclasses import replace

    from generator.learned.located import geo_nodes

    rng = np.random.default_rng(3)
    z = np.cumsum(np.cumsum(rng.normal(0, 1, (200, 200)), 0), 1).astype(np.float32)
    geo = geo_nodes(z.shape, lambda y, x: (46.3 - y * 2.7e-4, -122.3 + x * 3.9e-4))  # ~30 m at St Helens
    corpus = tmp_path / "geo_corpus.npz"
    save_corpus([Grid("located", 30.0, z, np.full(z.shape + (4,), np.nan, np.float32), geo=geo)], corpus)
    small = RefinerConfig(width=8, dilations=(1, 2), noise_channels=2)
    base = TrainConfig(corpus=str(corpus), steps=2, batch=4, cells=6, log_every=1, val_every=2, val_batches=1,
                       warmup_steps=2, cascade_weight=1.0, cascade_cells=10, cascade_batch=2)
    ship(train(replace(base, out=str(tmp_path / "a")), small, resume=False, log=lambda s: None), tmp_path / "a.pt")
    net0, _, _ = load_net(tmp_path / "a.pt")
    assert not net0.takes_context
    with pytest.raises(ValueError, match="--context 1"):
        train(replace(base, out=str(tmp_path / "x"), init_from=str(tmp_path / "a.pt"), context_only=1),
              resume=False, log=lambda s: None)
    last = train(replace(base, out=str(tmp_path / "b"), init_from=str(tmp_path / "a.pt"), context=1,
                         context_only=1, lr_g=1e-2), resume=False, log=lambda s: None)
    assert (tmp_path / "geo_corpus.ctx.npz").exists()  # the context rasters' cache
    ship(last, tmp_path / "b.pt")
    net1, _, _ = load_net(tmp_path / "b.pt")
    assert net1.config.context_channels == 15
    s0, s1 = net0.state_dict(), net1.state_dict()
    assert all(torch.equal(s0[k], s1[k]) for k in s0)  # the rest stayed the init weights
    assert s1["context_stem.weight"].abs().max() > 0  # the zero stem moved


def test_block_noise_fine_tune_with_the_diversity_term(tmp_path):
    """--block-noise 1 --diversity-weight W from weights without block noise: the net starts as
    them (zero projections), the second noise draw's diversity is logged, the projections learn."""
    from dataclasses import replace

    small = RefinerConfig(width=8, dilations=(1, 2), noise_channels=2)
    base = TrainConfig(corpus=str(walk_corpus(tmp_path)), steps=2, batch=4, cells=6, log_every=1, val_every=2,
                       val_batches=1, warmup_steps=2)
    torch.manual_seed(0)
    ship(train(replace(base, out=str(tmp_path / "a")), small, resume=False, log=lambda s: None), tmp_path / "a.pt")
    last = train(replace(base, out=str(tmp_path / "b"), init_from=str(tmp_path / "a.pt"), block_noise=1,
                         diversity_weight=1.0, steps=3), resume=False, log=lambda s: None)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["model_config"]["block_noise"] is True
    hist = [r for r in json.loads(state["history"]) if "diversity" in r]
    assert hist and all(np.isfinite(r["diversity"]) and r["diversity"] >= 0 for r in hist)
    proj = [v for k, v in state["net"].items() if k.startswith("noise_proj.")]
    assert len(proj) == 2 and all(float(p.abs().max()) > 0 for p in proj)  # moved from zero
    ship(last, tmp_path / "b.pt")
    net, version, _ = load_net(tmp_path / "b.pt")
    assert net.config.block_noise is True and version != load_net(tmp_path / "a.pt")[1]


def test_widen_keeps_the_function_and_every_new_weight_learns(tmp_path):
    """model.widen: the wider net's output equals the narrow one's bit for bit (context and block
    noise too); --widen W trains it from there and the new channels' weights move."""
    from dataclasses import replace

    from generator.learned.model import widen

    torch.manual_seed(3)
    narrow = RefinerNet(RefinerConfig(width=8, dilations=(1, 2), noise_channels=2, context_channels=15,
                                      block_noise=True)).eval()
    with torch.no_grad():  # zero-initialised projections would hide a wrong copy
        for p in narrow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    wide = widen(narrow, 12).eval()
    assert wide.config.width == 12 and wide.config.margin == narrow.config.margin
    h = 2 * narrow.config.margin + 5
    args = (torch.randn(2, 5, h, h) * 50, torch.randn(2, 2, h, h), torch.tensor([30.0, 900.0]), torch.ones(2, 2),
            torch.rand(2, 15, h, h))
    with torch.no_grad():
        assert torch.equal(narrow(*args), wide(*args))
        # widths equal to an input count (the stem's 13 inputs, the 15 context channels)
        for w in (13, 15):
            assert torch.equal(narrow(*args), widen(narrow, w).eval()(*args))
    with pytest.raises(ValueError, match="width 4 < the net's 8"):
        widen(narrow, 4)

    small = RefinerConfig(width=8, dilations=(1, 2), noise_channels=2)
    base = TrainConfig(corpus=str(walk_corpus(tmp_path)), steps=2, batch=4, cells=6, log_every=1, val_every=2,
                       val_batches=1, warmup_steps=2)
    ship(train(replace(base, out=str(tmp_path / "a")), small, resume=False, log=lambda s: None), tmp_path / "a.pt")
    last = train(replace(base, out=str(tmp_path / "b"), init_from=str(tmp_path / "a.pt"), widen=12, steps=3),
                 resume=False, log=lambda s: None)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["model_config"]["width"] == 12
    with pytest.raises(ValueError, match="give --init-from"):
        train(replace(base, out=str(tmp_path / "c"), widen=12), resume=False, log=lambda s: None)
    with pytest.raises(ValueError, match="width 4 < the net's 8"):
        train(replace(base, out=str(tmp_path / "d"), init_from=str(tmp_path / "a.pt"), widen=4),
              resume=False, log=lambda s: None)
    head = state["net"]["head.weight"]
    assert head.shape[1] == 12 and float(head[:, 8:].abs().max()) > 0  # the zeros learned


def test_mirror_pad_is_numpys_reflect_for_any_margin():
    from generator.learned.train import mirror_pad

    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    for m in (1, 4, 9, 24):  # beyond the crop's own size: repeated reflection, as the evaluation pads
        want = np.pad(x.numpy(), ((0, 0), (0, 0), (m, m), (m, m)), mode="reflect")
        np.testing.assert_array_equal(mirror_pad(x, m).numpy(), want)
    with pytest.raises(ValueError, match="square"):
        mirror_pad(torch.zeros(1, 1, 4, 5), 2)


def test_deep_cascade_refines_the_evaluations_crops_and_trains(tmp_path):
    """--deep-weight: a margin-0 CascadeSampler gives each level as the final field decimated
    (the evaluation's crops), the loss refines level 0 K times with the mirror context, the
    last level's loss reaches the stem through every level, and a short run's loss falls."""
    from generator.learned.data import CascadeSampler, load_corpus
    from generator.learned.train import deep_cascade_losses

    path = _cascadewalk_corpus(tmp_path)
    s = CascadeSampler(load_corpus(path), 6, 0, 4, "train")
    b = s.sample(np.random.default_rng(0), 2)
    assert [a.shape[-1] for a in b.levels] == [6, 11, 21, 41, 81]
    for coarse, fine in zip(b.levels, b.levels[1:]):
        np.testing.assert_array_equal(fine[:, :, ::2, ::2], coarse)  # nested: a decimation
    net = RefinerNet(RefinerConfig(width=8, dilations=(1, 2), noise_channels=2))
    reals = [torch.from_numpy(a) for a in b.levels]
    gen = torch.Generator().manual_seed(0)
    terms, pairs = deep_cascade_losses(net, reals, torch.from_numpy(b.present), torch.from_numpy(b.spacing_m),
                                       TrainConfig(spectral_weight=1.0, deep_relief_weight=1.0), gen)
    assert pairs == [] and "d_adv" not in terms  # no critic, no adversarial term
    assert all(torch.isfinite(v) for v in terms.values())
    assert all(float(terms[k].detach()) > 0 for k in ("d_spectral", "d_slope", "d_relief"))
    terms["d_total"].backward()
    assert net.stem.weight.grad is not None and net.stem.weight.grad.abs().sum() > 0

    cfg = TrainConfig(corpus=str(path), out=str(tmp_path / "run"), steps=24, minutes=5.0, batch=4, cells=6,
                      log_every=4, val_every=12, val_batches=1, warmup_steps=1000, lr_g=2e-3,
                      deep_weight=1.0, deep_levels="2,3", deep_batch=2, deep_start=6)
    torch.manual_seed(0)
    last = train(cfg, RefinerConfig(width=8, dilations=(1, 2), noise_channels=2), resume=False, log=lambda s: None)
    hist = [r for r in json.loads(torch.load(last, map_location="cpu", weights_only=True)["history"])
            if "d_lowpass" in r]
    assert len(hist) == 6 and all(np.isfinite(r["d_total"]) for r in hist)
    assert hist[-1]["d_total"] < hist[0]["d_total"]


def test_the_critic_judges_every_deep_level_wide_enough(tmp_path):
    """--deep-adv-weight: the critic sees each deep level of >= DEEP_ADV_MIN samples (the real
    level over the real parent's base against the generated one over its own parent's), its
    term reaches the stem through the levels above, and a short run with it trains."""
    from generator.learned.data import CascadeSampler, load_corpus
    from generator.learned.model import PatchDiscriminator
    from generator.learned.train import CRITIC_INPUTS, DEEP_ADV_MIN, critic_input, deep_cascade_losses, mirror_pad

    path = _cascadewalk_corpus(tmp_path)
    b = CascadeSampler(load_corpus(path), 6, 0, 4, "train").sample(np.random.default_rng(0), 2)
    net = RefinerNet(RefinerConfig(width=8, dilations=(1, 2), noise_channels=2))
    critic = PatchDiscriminator(CRITIC_INPUTS)
    reals = [torch.from_numpy(a) for a in b.levels]
    present, spacing = torch.from_numpy(b.present), torch.from_numpy(b.spacing_m)
    cfg = TrainConfig(spectral_weight=1.0, deep_adv_weight=0.5)
    terms, pairs = deep_cascade_losses(net, reals, present, spacing, cfg, torch.Generator().manual_seed(0),
                                       critic=critic, adv_scale=1.0)
    sizes = [a.shape[-1] for a in b.levels[1:] if a.shape[-1] >= DEEP_ADV_MIN]
    assert sizes == [41, 81] and [p[0].shape[-1] for p in pairs] == sizes
    # the real side: level j's real field over the cubic base of the real level j - 1
    last = reals[-1]
    n = (last.shape[-1] + 1) // 2
    base = net.assemble(mirror_pad(reals[-2], net.config.margin), torch.zeros(2, 5, 3, n, n), spacing)
    torch.testing.assert_close(pairs[-1][0], critic_input(net, last, base, spacing, present))
    assert torch.isfinite(terms["d_adv"])
    net.zero_grad()
    terms["d_adv"].backward()
    assert net.stem.weight.grad is not None and net.stem.weight.grad.abs().sum() > 0

    cfg = TrainConfig(corpus=str(path), out=str(tmp_path / "run"), steps=8, minutes=5.0, batch=4, cells=6,
                      log_every=4, val_every=8, val_batches=1, warmup_steps=4, deep_weight=1.0,
                      deep_levels="3", deep_batch=2, deep_start=6, deep_adv_weight=0.5)
    torch.manual_seed(0)
    last = train(cfg, RefinerConfig(width=8, dilations=(1, 2), noise_channels=2), resume=False, log=lambda s: None)
    hist = [r for r in json.loads(torch.load(last, map_location="cpu", weights_only=True)["history"])
            if "d_adv" in r]
    assert len(hist) == 2 and all(np.isfinite(r["d_adv"]) and np.isfinite(r["d"]) for r in hist)


def test_slope_w1_is_the_evaluations_measure():
    from generator.eval.metrics import slope_deg, wasserstein1
    from generator.learned.train import slope_w1_deg

    rng = np.random.default_rng(0)
    a = np.cumsum(rng.normal(0, 3, (64, 64)), 1)
    b = np.cumsum(rng.normal(0, 5, (64, 64)), 0)
    got = float(slope_w1_deg(torch.tensor(a)[None], torch.tensor(b)[None], torch.tensor([10.0], dtype=torch.float64)))
    assert got == pytest.approx(wasserstein1(slope_deg(a, 10.0), slope_deg(b, 10.0)), rel=1e-2)
