"""Training of the learned refiner (`worldstream train`).

Objective (sharp, not blurry): a conditional PatchGAN with hinge loss (Isola et al. 2017;
Miyato et al. 2018 spectral norm) on the normalised child detail, plus an L1 on the
*low-passed* detail (2x2-average-pooled) so the large features follow the real data while
the adversary alone decides the fine texture, and a small plain L1. The adversarial weight
ramps up over ``warmup_steps``. An optional per-octave spectral term (``spectral_weight``)
matches, crop by crop, the log power of the generated height detail in each octave band to
the real detail's: the L1 terms pull towards the conditional median (too little energy, worst
where the parent says little about the detail) and the adversary alone did not undo it.
Loss terms are masked per modality (height where it is a real target, rgb / nir where the
grid has them): MetaEarth-MM style joint decoding.

Runs are bounded in wall time and resume from ``<out>/last.pt`` (weights, optimiser states,
step, log), so a long training is a chain of < 10 minute runs. The shipped asset is made
with ``--ship`` (fp16 weights + config + version, loadable with ``weights_only=True``).

One file (~560 lines): the objectives (pairs, self-cascade, spectral, adversarial) and the
loop share the critic, the optimisers and the run's log; the data, the network and the
checkpoint format live beside it (data.py, model.py, checkpoint.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from generator.learned.checkpoint import config_from_dict, load_net, make_checkpoint, save_checkpoint
from generator.learned.data import (
    CascadeBatch,
    CascadeSampler,
    PairBatch,
    PairSampler,
    build_corpus,
    fit_amplitude,
    load_corpus,
    save_corpus,
)
from generator.learned.inputs import CONTEXT_CHANNELS, unpack_context_torch
from generator.learned.located import attach_context
from generator.learned.model import (
    FLOW_REACH,
    PatchDiscriminator,
    RefinerConfig,
    RefinerNet,
    _crop,
    asinh,
    widen,
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run's recipe (saved in every checkpoint)."""

    corpus: str = "out/corpus.npz"  # built from data_dir when missing
    data_dir: str = "../shared/data"
    out: str = "out/learned"
    steps: int = 100_000  # stop after this many total steps ...
    minutes: float = 8.0  # ... or this much wall time in this run, whichever first
    batch: int = 64
    cells: int = 32  # output cells per crop edge (child window 2*cells - 1)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    adv_weight: float = 0.1
    lowpass_weight: float = 1.0
    l1_weight: float = 0.1
    warmup_steps: int = 1000
    spectral_weight: float = 0.0  # per-octave log-power matching of the height detail
    init_from: str = ""  # a fresh run starts from these shipped weights (fine-tune)
    colour_jitter: float = 0.0  # per-crop band gain exp(U(-j, j)) and offset U(-j/8, j/8)
    band_dropout: float = 0.0  # probability of hiding rgb / nir from the net's input
    flat_colour: float = 0.0  # probability of replacing a crop's bands by constant colours
    # Self-cascade objective (0 = off): the net refines a real parent ``levels`` times in a
    # row, each level from its own output, gradients through every level; per-level low-pass
    # L1 and per-octave spectral terms against the real field of that level, the adversary
    # on the last one. ``cascade_levels`` is the set of depths drawn from per step.
    cascade_weight: float = 0.0
    cascade_levels: str = "2,3"
    cascade_batch: int = 16
    cascade_cells: int = 48  # h_0 = 2 margin + cells parent samples at the top
    # Deep self-cascade (0 = off): the evaluation's regime (generator.eval.cascade), a real crop
    # decimated by 2^K (K drawn from ``deep_levels``) and refined back K levels in a row with the
    # mirror context at its edge, from a ``deep_start``-sample real start parent; per-level
    # spectral, slope-W1 and relief terms, low-pass L1 at the first level (deep_cascade_losses).
    # Its margins cost no data, so K reaches 6 (a 2-3 level cascade with real margins needs grids
    # 760-1520 samples wide), and the coarse range (GLOBE from 30-60 km down) is trained at the
    # depths the product runs.
    deep_weight: float = 0.0
    deep_levels: str = "3,4,5,6"
    deep_batch: int = 8
    deep_start: int = 12
    deep_relief_weight: float = 0.0  # x |ln (p95 - p5) ratio| per level (the evaluation's relief ratio)
    # > 0: the conditional critic judges every deep level of >= DEEP_ADV_MIN samples too (each
    # child's detail over its own parent's cubic base against the real level's over the real
    # parent's): the generator's term is this x the mean over those levels of -critic(fake),
    # ramped in like adv_weight; the critic trains on those pairs beside the x4 ones.
    deep_adv_weight: float = 0.0
    cond_blur: float = 0.0  # probability of smoothing a start parent (binomial, random mix)
    cond_noise: float = 0.0  # std of noise added to start parents, in units of A(parent spacing)
    hurst_fine: float = 0.0  # > 0: amplitude law exponent below fine_break_m (model config)
    fine_break_m: float = 30.0
    # 1: the net takes the context channels (generator.anchors.context) at its parent samples; a
    # context-free --init-from gets a zero-initialised context stem (starts as those weights).
    # The corpus needs georeference (built now, or data.write_geo_sidecar for an older one).
    context: int = 0
    context_lr_mult: float = 1.0  # learning rate of the context stem = lr_g * this
    context_only: int = 0  # 1: train the context stem alone (the rest stays the --init-from weights)
    # 1: the net gets noise in every residual block (RefinerConfig.block_noise; zero-initialised,
    # so an --init-from net without it starts as exactly those weights)
    block_noise: int = 0
    # > 0: a diversity term (mode seeking, after Mao et al. 2019): a second noise draw per crop,
    # and the weight x max(0, diversity_target - mean |detail_1 - detail_2|) of the normalised
    # height detail. The L1 terms alone teach the net to ignore its noise (the shipped one does).
    diversity_weight: float = 0.0
    diversity_target: float = 0.5
    # > the --init-from net's width: start from a wider copy that computes the same function
    # (model.widen; new channels enter through zero weights), to test whether capacity limits it
    widen: int = 0
    # > 0: add a sampled height detail (RefinerConfig.flow_steps Euler steps of a conditional flow
    # around the head's detail) to the --init-from net and train it by flow matching on the real
    # pairs (flow_losses), plus the deep-cascade terms on its samples when --deep-weight > 0. The
    # trunk and head stay the --init-from weights unless flow_train_trunk is 1.
    flow_steps: int = 0
    flow_width: int = 32
    flow_sigma: float = 1.0
    flow_train_trunk: int = 0
    flow_relative: int = 0  # 1: the flow's source noise scales with the head's detail (RefinerConfig)
    seed: int = 0
    workers: int = 0
    device: str = "cpu"
    log_every: int = 50
    val_every: int = 500
    val_batches: int = 4


def irwin_hall_noise(shape, generator: torch.Generator, device) -> torch.Tensor:
    """Training noise with the distribution of generator.noise.gauss (Irwin-Hall of 4
    uniforms, unit variance), so the net sees at run time what it saw in training."""
    u = torch.rand((4,) + tuple(shape), generator=generator, device=device)
    return (u.sum(0) - 2.0) * (3.0**0.5)


def _masks(present: torch.Tensor) -> torch.Tensor:
    """(B, 3) present -> (B, 5, 1, 1) per-channel loss mask (height, r, g, b, nir)."""
    p = present
    return torch.stack([p[:, 0], p[:, 1], p[:, 1], p[:, 1], p[:, 2]], 1)[:, :, None, None]


def critic_input(net: RefinerNet, child, base, spacing_m, present) -> torch.Tensor:
    """(B, 5+2+3+3+1, S, S): asinh normalised detail (masked) + base slopes, base colour,
    masks and scale as conditioning."""
    amp = net.amplitude(spacing_m)
    mask = _masks(present)
    det = asinh((child - base) / amp) * mask
    h = base[:, 0:1]
    gx = F.pad(h[..., :, 2:] - h[..., :, :-2], (1, 1, 0, 0), mode="replicate") / (2 * amp[:, :1])
    gy = F.pad(h[..., 2:, :] - h[..., :-2, :], (0, 0, 1, 1), mode="replicate") / (2 * amp[:, :1])
    ones = torch.ones_like(h)
    rgb = (base[:, 1:4] - 0.25) * 4.0 * mask[:, 1:2]
    scale = (torch.log2(spacing_m / 1000.0) / 8.0)[:, None, None, None] * ones
    return torch.cat([det, asinh(gx), asinh(gy), rgb, present[:, :, None, None] * ones, scale], 1)


CRITIC_INPUTS = 5 + 2 + 3 + 3 + 1


def critic_pair(net: RefinerNet, parent_fake, parent_real, child, real, spacing_m, present):
    """(critic input of ``real`` over the cubic base of ``parent_real``, of the generated
    ``child`` over that of its own ``parent_fake``): one level's pair for the critic. The
    parents carry the net's margin; the bases are constants (no gradient)."""
    n = (child.shape[-1] + 1) // 2
    zeros = torch.zeros(child.shape[0], 5, 3, n, n, device=child.device)
    with torch.no_grad():
        base_fake = net.assemble(parent_fake, zeros, spacing_m)
        base_real = net.assemble(parent_real, zeros, spacing_m)
    return (critic_input(net, real, base_real, spacing_m, present),
            critic_input(net, child, base_fake, spacing_m, present))


def _context_to(packed, device):
    """Packed uint8 context (numpy) -> (B, 15, h, w) float32 on ``device`` (None stays None)."""
    return None if packed is None else unpack_context_torch(torch.from_numpy(packed).to(device, non_blocking=True))


def _to(batch: PairBatch, device) -> tuple[torch.Tensor, ...]:
    """(parents, targets, present, spacing_m, context or None) on ``device``."""
    return tuple(
        torch.from_numpy(a).to(device, non_blocking=True)
        for a in (batch.parents, batch.targets, batch.present, batch.spacing_m)
    ) + (_context_to(batch.context, device),)


def _cascade_to(batch: CascadeBatch, device):
    """(level fields, present, spacing_m, per-level context list or None) on ``device``."""
    t = lambda a: torch.from_numpy(a).to(device, non_blocking=True)
    ctx = None if batch.context is None else [_context_to(c, device) for c in batch.context]
    return [t(a) for a in batch.levels], t(batch.present), t(batch.spacing_m), ctx


class _Stream(torch.utils.data.IterableDataset):
    """Endless batches from a PairSampler; each worker has its own rng stream. Each item is
    (pair batch, cascade batch of a randomly drawn depth or None, deep-cascade batch of a
    randomly drawn depth or None)."""

    def __init__(self, sampler: PairSampler, batch: int, seed: int, cascade=(), cascade_batch: int = 0,
                 deep=(), deep_batch: int = 0):
        self.sampler, self.batch, self.seed = sampler, batch, seed
        self.cascade, self.cascade_batch = list(cascade), cascade_batch
        self.deep, self.deep_batch = list(deep), deep_batch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            pair = self.sampler.sample(rng, self.batch)
            cb = db = None
            if self.cascade:
                cb = self.cascade[int(rng.integers(len(self.cascade)))].sample(rng, self.cascade_batch)
            if self.deep:
                db = self.deep[int(rng.integers(len(self.deep)))].sample(rng, self.deep_batch)
            yield pair, cb, db


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def degrade_parents(parents: torch.Tensor, spacing_m: torch.Tensor, net: RefinerNet, cfg: TrainConfig,
                    gen: torch.Generator) -> torch.Tensor:
    """Conditioning augmentation of the height of parents (B, 5, h, w) at parent spacing
    ``spacing_m`` (B,): with probability cond_blur a crop becomes x + t (blur(x) - x), blur
    the 5-tap binomial (sigma 1 sample), t ~ U(0, 1); then noise of std U(0, cond_noise)
    A(spacing). In the product a level's parent is the net's own (smoother) output or the
    smooth 9.8 km anchor: the net must add real detail to a parent poorer than real."""
    if cfg.cond_blur <= 0 and cfg.cond_noise <= 0:
        return parents
    b, dev = parents.shape[0], parents.device
    h = parents[:, :1]
    if cfg.cond_blur > 0:
        k = _BINOMIAL.to(dev, h.dtype)
        hp = F.pad(h, (2, 2, 2, 2), mode="replicate")
        blur = F.conv2d(F.conv2d(hp, k.view(1, 1, 1, 5)), k.view(1, 1, 5, 1))
        t = torch.rand(b, 1, 1, 1, generator=gen, device=dev)
        t = t * (torch.rand(b, 1, 1, 1, generator=gen, device=dev) < cfg.cond_blur)
        h = h + t * (blur - h)
    if cfg.cond_noise > 0:
        amp = net.amplitude(spacing_m)[:, :1]
        sd = cfg.cond_noise * torch.rand(b, 1, 1, 1, generator=gen, device=dev) * amp
        h = h + sd * torch.randn(h.shape, generator=gen, device=dev)
    return torch.cat([h, parents[:, 1:]], 1)


def augment_bands(parents, targets, present, cfg: TrainConfig, gen: torch.Generator):
    """Radiometric augmentation so height detail does not hinge on absolute colour (sources
    mix TOA reflectance, surface reflectance and 8-bit display RGB): the same random affine
    map on the bands of parent and target, and modality dropout on the net's input masks.
    Returns (parents, targets, present_in (B, 2))."""
    b, dev = parents.shape[0], parents.device
    present_in = present[:, 1:].clone()
    if cfg.colour_jitter > 0:
        u = torch.rand(2, b, 1, 1, 1, generator=gen, device=dev) * 2.0 - 1.0
        gain, offset = torch.exp(cfg.colour_jitter * u[0]), cfg.colour_jitter / 8.0 * u[1]
        parents = torch.cat([parents[:, :1], parents[:, 1:] * gain + offset], 1)
        targets = torch.cat([targets[:, :1], targets[:, 1:] * gain + offset], 1)
    if cfg.flat_colour > 0:
        # Uninformative colour: a DEM-only caller (learned_eval, `worldstream eval`) passes a
        # flat albedo as present rgb, which real imagery never is; without this the height
        # detail grew with the flat grey's brightness (x1.6 power in the finest octave at 0.25,
        # x3.7 at 0.5 on bigtujunga). Parent and target get the same constants, so the colour
        # loss asks for a flat child and the height target stays real.
        flat = (torch.rand(b, generator=gen, device=dev) < cfg.flat_colour)[:, None, None, None]
        grey = 0.05 + 0.55 * torch.rand(b, 4, 1, 1, generator=gen, device=dev)
        parents = torch.cat([parents[:, :1], torch.where(flat, grey, parents[:, 1:])], 1)
        targets = torch.cat([targets[:, :1], torch.where(flat, grey, targets[:, 1:])], 1)
        present_in = torch.cat([torch.where(flat[:, 0, 0], 1.0, present_in[:, :1]), present_in[:, 1:]], 1)
    if cfg.band_dropout > 0:
        keep = torch.rand(b, 1, generator=gen, device=dev) >= cfg.band_dropout
        present_in = present_in * keep
    return parents, targets, present_in


SPECTRAL_BANDS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 2**-0.5 + 1e-6)
"""Octave band edges (cycles per child sample) of the spectral term; the last band holds the
diagonal frequencies past the axis Nyquist."""


def octave_log_power(d: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(B, S, S) normalised detail -> (B, len(SPECTRAL_BANDS) - 1) log of the mean periodogram
    power in each octave band (Hann window, mean removed; power per sample as in Parseval)."""
    d = d.float()
    d = d - d.mean((-2, -1), keepdim=True)
    s = d.shape[-1]
    w = torch.hann_window(s, periodic=False, device=d.device, dtype=d.dtype)
    p = torch.fft.rfft2(d * (w[:, None] * w[None, :])).abs().square() / (s * s)
    ky = torch.fft.fftfreq(s, device=d.device)[:, None]
    kx = torch.fft.rfftfreq(s, device=d.device)[None, :]
    k = torch.sqrt(ky * ky + kx * kx)
    out = []
    for lo, hi in zip(SPECTRAL_BANDS[:-1], SPECTRAL_BANDS[1:], strict=True):
        sel = ((k >= lo) & (k < hi)).to(d.dtype)
        out.append(torch.log((p * sel).sum((-2, -1)) / sel.sum() + eps))
    return torch.stack(out, 1)


def spectral_loss(d_fake: torch.Tensor, d_real: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
    """Mean |log P_fake - log P_real| over the octave bands of the height detail (B, S, S) of
    the crops whose height is a real target (``height`` (B,) bool); 0 when there are none."""
    if not bool(height.any()):
        return d_fake.sum() * 0.0
    lf, lr = octave_log_power(d_fake[height]), octave_log_power(d_real[height])
    return (lf - lr).abs().mean()


def losses(
    net,
    critic,
    parents,
    targets,
    present,
    spacing_m,
    noise,
    cfg: TrainConfig,
    adv_scale: float,
    present_in=None,
    context=None,
    noise2=None,
):
    """Generator loss terms (dict of scalars) and the critic inputs (real, fake). ``present``
    masks the loss; ``present_in`` (default present[:, 1:]) is what the net is told; ``context``
    (B, 15, P, P) at the parent samples for a context net; ``noise2`` a second noise draw (the
    diversity term, ``cfg.diversity_weight``)."""
    pres2 = present[:, 1:] if present_in is None else present_in
    fake = net(parents, noise, spacing_m, pres2, context)  # (B, 5, S, S)
    n = (fake.shape[-1] + 1) // 2
    with torch.no_grad():
        base = net.assemble(
            parents, torch.zeros(parents.shape[0], 5, 3, n, n, device=parents.device), spacing_m
        )
    amp, mask = net.amplitude(spacing_m), _masks(present)
    d_fake, d_real = (fake - base) / amp * mask, (targets - base) / amp * mask
    l1 = (d_fake - d_real).abs().mean()
    lowpass = (F.avg_pool2d(d_fake, 2) - F.avg_pool2d(d_real, 2)).abs().mean()
    x_fake = critic_input(net, fake, base, spacing_m, present)
    x_real = critic_input(net, targets, base, spacing_m, present)
    adv = -critic(x_fake).mean()
    spectral = spectral_loss(d_fake[:, 0], d_real[:, 0], present[:, 0] > 0)
    total = (
        cfg.l1_weight * l1
        + cfg.lowpass_weight * lowpass
        + cfg.spectral_weight * spectral
        + adv_scale * cfg.adv_weight * adv
    )
    terms = {"total": total, "l1": l1, "lowpass": lowpass, "spectral": spectral, "adv": adv}
    if cfg.diversity_weight > 0 and noise2 is not None:
        d_fake2 = (net(parents, noise2, spacing_m, pres2, context) - base) / amp * mask
        diversity = (d_fake[:, 0] - d_fake2[:, 0]).abs().mean()  # height detail, two noise draws
        terms["diversity"] = diversity
        terms["total"] = total + cfg.diversity_weight * F.relu(cfg.diversity_target - diversity)
    return terms, x_real, x_fake, d_real, d_fake


def flow_losses(net, parents, targets, present, spacing_m, noise, gen: torch.Generator, present_in=None,
                context=None):
    """Conditional flow matching (rectified flow) of the height detail: x_0 = mu + sigma z (the
    net's own source, mu = the head's height detail), x_1 = the real normalised detail of the 3
    new samples of each cell, x_t = (1 - t) x_0 + t x_1 with t ~ U(0, 1) per crop, and the mean
    squared error of FlowNet's velocity against x_1 - x_0 where the height is a real target. The
    real detail exists only on the target window's cells (its last row and column of cells lack
    samples), so x_t is built there and v is scored FLOW_REACH cells inside it."""
    c = net.config
    y, feats = net.trunk(parents, noise, spacing_m, present[:, 1:] if present_in is None else present_in, context)
    n = (targets.shape[-1] + 1) // 2  # target cells (window 2n - 1)
    if n - 1 <= 2 * FLOW_REACH:
        raise ValueError(f"flow matching needs more than {2 * FLOW_REACH + 1} target cells a side, got {n}")
    with torch.no_grad():
        base = net.assemble(parents, torch.zeros(parents.shape[0], 5, 3, n, n, device=parents.device), spacing_m)
    amp = net.amplitude(spacing_m)[:, :1]
    d = (targets[:, :1] - base[:, :1]) / amp  # (B, 1, 2n-1, 2n-1)
    x1 = torch.stack([d[:, 0, 0::2, 1::2][:, : n - 1], d[:, 0, 1::2, 0::2][:, :, : n - 1], d[:, 0, 1::2, 1::2]], 1)
    k = c.flow_margin  # trunk cells beyond the target's: the target window is y's centre n x n
    mu = y[:, :3, k : k + n - 1, k : k + n - 1].float()
    o = (noise.shape[-1] - y.shape[-1]) // 2 + k  # noise samples are the parent crop's
    z = noise.float()[:, :3, o : o + n - 1, o : o + n - 1]
    f = feats[:, :, k : k + n - 1, k : k + n - 1]
    x0 = net.flow_source(mu, z)
    t = torch.rand(parents.shape[0], generator=gen, device=parents.device)
    tb = t[:, None, None, None]
    xt = (1.0 - tb) * x0 + tb * x1
    v = net.flow(f, xt, t)
    r = FLOW_REACH
    err = (v - _crop(x1 - x0, r)) ** 2  # (B, 3, n-1-2r, n-1-2r)
    h = present[:, 0]
    fm = (err.mean((1, 2, 3)) * h).sum() / h.sum().clamp(min=1.0)
    return {"total": fm, "flow": fm}


def cascade_losses(net, critic, reals, present, spacing_m, cfg: TrainConfig,
                   gen: torch.Generator, adv_scale: float, present_in=None, contexts=None):
    """Unrolled self-cascade: reals = the real fields of levels 0..K (data.CascadeBatch,
    tensors), spacing_m (B,) the child spacing of level K, contexts (context nets) the context
    at the samples of levels 0..K (level j-1's is level j's input's). The start parent is level 0
    (degraded: degrade_parents); each level refines the previous
    level's output. Returns (terms, x_real, x_fake, per-level log power ratio fake / real
    (levels, n_bands), detached): low-pass L1 (4x4 mean of the normalised
    error) and spectral per level, summed over levels; adversarial on the last level."""
    levels = len(reals) - 1
    pres2 = present[:, 1:] if present_in is None else present_in
    mask, hmask = _masks(present), present[:, 0] > 0
    x = degrade_parents(reals[0], spacing_m * (1 << levels), net, cfg, gen)
    lowpass, spectral, ratios = 0.0, 0.0, []
    for j in range(1, levels + 1):
        s_j = spacing_m * (1 << (levels - j))
        noise = irwin_hall_noise((x.shape[0], net.config.noise_channels) + x.shape[2:], gen, x.device)
        child = net(x, noise, s_j, pres2, None if contexts is None else contexts[j - 1])  # (B, 5, h_j, h_j)
        real = reals[j]
        if real.shape != child.shape:
            raise ValueError(f"level {j}: real field {tuple(real.shape)} but child {tuple(child.shape)}")
        amp = net.amplitude(s_j)
        err = (child - real) / amp * mask
        lowpass = lowpass + F.avg_pool2d(err, 4).abs().mean()
        spectral = spectral + spectral_loss(child[:, 0] / amp[:, 0], real[:, 0] / amp[:, 0], hmask)
        with torch.no_grad():
            if bool(hmask.any()):
                lf = octave_log_power(child[hmask, 0] / amp[hmask, 0])
                lr = octave_log_power(real[hmask, 0] / amp[hmask, 0])
                ratios.append((lf - lr).mean(0))
        if j == levels:
            x_real, x_fake = critic_pair(net, x, reals[j - 1], child, real, s_j, present)
            adv = -critic(x_fake).mean()
        x = child
    total = cfg.lowpass_weight * lowpass + cfg.spectral_weight * spectral + adv_scale * cfg.adv_weight * adv
    terms = {"c_total": total, "c_lowpass": lowpass / levels, "c_spectral": spectral / levels, "c_adv": adv}
    return terms, x_real, x_fake, torch.stack(ratios) if ratios else None


def mirror_pad(x: torch.Tensor, m: int) -> torch.Tensor:
    """(B, C, n, n) -> (B, C, n + 2m, n + 2m): the even periodic extension of the last two axes,
    numpy's ``pad(mode="reflect")`` for any m (the evaluation's mirror context, refine_grid)."""
    n = x.shape[-1]
    if x.shape[-2] != n or n < 2:
        raise ValueError(f"mirror_pad needs square crops of >= 2 samples, got {tuple(x.shape)}")
    p = 2 * (n - 1)
    r = torch.remainder(torch.arange(-m, n + m, device=x.device), p)
    r = torch.where(r >= n, p - r, r)
    return x.index_select(-1, r).index_select(-2, r)


def slope_w1_deg(fake: torch.Tensor, real: torch.Tensor, spacing_m: torch.Tensor) -> torch.Tensor:
    """Per crop, the W1 distance (degrees) between the slope distributions of two height fields
    (B, S, S) of spacing (B,), central differences on the interior (generator.eval.metrics'
    slope_deg), averaged over crops; differentiable (sorted samples)."""

    def slopes(z):
        gy = (z[:, 2:, 1:-1] - z[:, :-2, 1:-1]) / (2 * spacing_m[:, None, None])
        gx = (z[:, 1:-1, 2:] - z[:, 1:-1, :-2]) / (2 * spacing_m[:, None, None])
        return torch.rad2deg(torch.atan(torch.sqrt(gx * gx + gy * gy + 1e-12))).flatten(1)

    return (torch.sort(slopes(fake), 1)[0] - torch.sort(slopes(real), 1)[0]).abs().mean()


DEEP_ADV_MIN = 32
"""Smallest deep level (samples a side) the critic judges: the PatchGAN's receptive field."""


def deep_cascade_losses(net, reals, present, spacing_m, cfg: TrainConfig, gen: torch.Generator,
                        border: int = 2, critic=None, adv_scale: float = 0.0):
    """The evaluation's cascade, trained: reals = the real fields of levels 0..K of one crop
    (data.CascadeSampler with margin 0: level j is the final field decimated by 2^(K-j)),
    spacing_m (B,) of level K. Level 0 (real, not degraded: the evaluation's start) is refined
    K times, each level from the previous output, mirror-padded by the net's margin; gradients
    through every level. From level 2 on the parent is the net's own output, so the child can
    only match the real field in distribution: per level, ``border`` samples in from the edge,
    the per-octave spectral term (levels of >= 32 samples), the slope distribution's W1
    (degrees / 5) and ``deep_relief_weight`` x |ln| of the relief ratio (p95 - p5, the
    evaluation's); the low-pass L1 (4x4 mean of the error / A(s)) only at level 1, whose parent
    is real (later, it would pull the coarse levels' detail to the conditional mean). With a
    ``critic`` and ``cfg.deep_adv_weight`` > 0, the adversarial term at every level of >=
    DEEP_ADV_MIN samples (``adv_scale`` x weight x mean of -critic(fake)).

    Returns (terms, pairs): pairs = [(critic input of the real level, of the generated one)]
    for the critic's step (empty without the adversarial term)."""
    levels = len(reals) - 1
    judged = critic is not None and cfg.deep_adv_weight > 0
    m = net.config.margin
    pres2 = present[:, 1:]
    mask, hmask = _masks(present), present[:, 0] > 0
    x, b = reals[0], border
    lowpass, spectral, slope, relief = x.new_zeros(()), x.new_zeros(()), x.new_zeros(()), x.new_zeros(())
    adv, pairs = x.new_zeros(()), []
    for j in range(1, levels + 1):
        s_j = spacing_m * (1 << (levels - j))
        xp = mirror_pad(x, m)
        noise = irwin_hall_noise((x.shape[0], net.config.noise_channels) + xp.shape[2:], gen, x.device)
        child = net(xp, noise, s_j, pres2, None)
        real = reals[j]
        if real.shape != child.shape:
            raise ValueError(f"level {j}: real field {tuple(real.shape)} but child {tuple(child.shape)}")
        amp = net.amplitude(s_j)
        if j == 1:
            lowpass = F.avg_pool2d(((child - real) / amp * mask)[..., b:-b, b:-b], 4).abs().mean()
        if bool(hmask.any()):
            fh, rh = child[hmask, 0, b:-b, b:-b], real[hmask, 0, b:-b, b:-b]
            slope = slope + slope_w1_deg(fh, rh, s_j[hmask]) / 5.0
            if cfg.deep_relief_weight > 0:
                q = torch.tensor([0.05, 0.95], device=fh.device, dtype=fh.dtype)
                pf, pr = torch.quantile(fh.flatten(1), q, dim=1), torch.quantile(rh.flatten(1), q, dim=1)
                relief = relief + (torch.log(pf[1] - pf[0] + 1e-3) - torch.log(pr[1] - pr[0] + 1e-3)).abs().mean()
            if fh.shape[-1] >= 32:
                a = amp[hmask, 0]
                spectral = spectral + spectral_loss(fh / a, rh / a, torch.ones_like(hmask[hmask]))
        if judged and child.shape[-1] >= DEEP_ADV_MIN:
            pairs.append(critic_pair(net, xp, mirror_pad(reals[j - 1], m), child, real, s_j, present))
            adv = adv - critic(pairs[-1][1]).mean()
        x = child
    adv = adv / max(len(pairs), 1)
    total = (cfg.lowpass_weight * lowpass + cfg.spectral_weight * spectral + slope + cfg.deep_relief_weight * relief
             + adv_scale * cfg.deep_adv_weight * adv)
    terms = {"d_total": total, "d_lowpass": lowpass, "d_spectral": spectral / levels, "d_slope": slope / levels,
             "d_relief": relief / levels}
    if judged:
        terms["d_adv"] = adv
    return terms, pairs


@torch.no_grad()
def validate_cascade(net, critic, val, cfg: TrainConfig, gen: torch.Generator) -> dict:
    """Cascade terms on fixed validation batches [(crops, present, spacing, levels)] and the
    detail power ratio fake / real of the last level (exp of the mean log ratio over the
    octave bands): 1 is real, below 1 the cascade flattens."""
    net.eval()
    acc = {"val_c_lowpass": 0.0, "val_c_spectral": 0.0, "val_c_power_ratio": 0.0}
    for reals, present, spacing_m, ctx in val:
        terms, _, _, ratios = cascade_losses(net, critic, reals, present, spacing_m,
                                             replace(cfg, cond_blur=0.0, cond_noise=0.0), gen, 0.0, contexts=ctx)
        acc["val_c_lowpass"] += float(terms["c_lowpass"]) / len(val)
        acc["val_c_spectral"] += float(terms["c_spectral"]) / len(val)
        acc["val_c_power_ratio"] += float(torch.exp(ratios[-1].mean())) / len(val)
    net.train()
    return acc


@torch.no_grad()
def validate(
    net, critic, val: list[tuple[torch.Tensor, ...]], cfg: TrainConfig, gen: torch.Generator
) -> dict:
    """Mean L1 / low-pass L1 of the detail and the std ratio fake / real of the height detail
    on fixed validation batches (regions no training crop touches)."""
    net.eval()
    acc = {"val_l1": 0.0, "val_lowpass": 0.0, "val_spectral": 0.0}
    sf, sr = 0.0, 0.0
    for parents, targets, present, spacing_m, ctx in val:
        noise = irwin_hall_noise(
            (parents.shape[0], net.config.noise_channels) + parents.shape[2:], gen, parents.device
        )
        terms, _, _, d_real, d_fake = losses(
            net, critic, parents, targets, present, spacing_m, noise, cfg, 0.0, context=ctx
        )
        acc["val_l1"] += float(terms["l1"]) / len(val)
        acc["val_lowpass"] += float(terms["lowpass"]) / len(val)
        acc["val_spectral"] += float(terms["spectral"]) / len(val)
        h = present[:, 0] > 0
        sf += float(d_fake[h, 0].std()) / len(val)
        sr += float(d_real[h, 0].std()) / len(val)
    net.train()
    acc["val_height_std_ratio"] = sf / max(sr, 1e-9)
    return acc


def train(cfg: TrainConfig, model_cfg: RefinerConfig | None = None, resume: bool = True, log=print) -> Path:
    """Train (or resume) until ``cfg.steps`` or ``cfg.minutes``; returns the last.pt path."""
    t_start = time.monotonic()
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    corpus = Path(cfg.corpus)
    if not corpus.exists():
        log(f"building corpus {corpus} from {cfg.data_dir}")
        corpus.parent.mkdir(parents=True, exist_ok=True)
        save_corpus(build_corpus(cfg.data_dir), corpus)
    grids = load_corpus(corpus)
    if cfg.context:
        t_ctx = time.monotonic()
        grids = attach_context(grids, corpus.with_name(corpus.name.split(".npz")[0] + ".ctx.npz"))
        log(f"context rasters of {len(grids)} grids in {time.monotonic() - t_ctx:.1f} s")

    if cfg.widen and not cfg.init_from:
        raise ValueError("--widen widens the --init-from weights: give --init-from")
    state = torch.load(last, map_location="cpu", weights_only=True) if resume and last.exists() else None
    init = None
    if state is None and cfg.init_from:
        init, init_version, init_meta = load_net(cfg.init_from)
        if cfg.widen and cfg.widen != init.config.width:  # narrower: widen says so
            init = widen(init, cfg.widen, seed=cfg.seed)
            log(f"widened {init_version} to width {cfg.widen} (the same function)")
        model_cfg = init.config
        log(f"fine-tuning from {cfg.init_from} (model {init_version}); new critic and optimisers")
    if state is not None:
        model_cfg = config_from_dict(state["model_config"])
    elif model_cfg is None:
        a, hurst = fit_amplitude(grids)
        model_cfg = RefinerConfig(amp_m_at_1km=round(a, 3), hurst=round(hurst, 4))
    if state is None and cfg.hurst_fine > 0:
        model_cfg = replace(model_cfg, hurst_fine=cfg.hurst_fine, fine_break_m=cfg.fine_break_m)
    if state is None and cfg.context and not model_cfg.context_channels:
        model_cfg = replace(model_cfg, context_channels=CONTEXT_CHANNELS)
    if state is None and cfg.block_noise and not model_cfg.block_noise:
        model_cfg = replace(model_cfg, block_noise=True)
    if state is None and cfg.flow_steps and model_cfg.flow_steps != cfg.flow_steps:
        if model_cfg.flow_steps:
            raise ValueError(f"--flow-steps {cfg.flow_steps}: the --init-from net has {model_cfg.flow_steps}")
        model_cfg = replace(model_cfg, flow_steps=cfg.flow_steps, flow_width=cfg.flow_width,
                            flow_sigma=cfg.flow_sigma, flow_relative=bool(cfg.flow_relative) or None)
    flow = bool(model_cfg.flow_steps)
    if flow and cfg.cascade_weight > 0:
        raise ValueError("--cascade-weight scores the critic; a flow net trains with --deep-weight")
    if state is None and not cfg.context and model_cfg.context_channels:
        raise ValueError("--init-from weights take context: train them with --context 1")
    torch.manual_seed(cfg.seed)
    net = RefinerNet(model_cfg).to(device).train()
    critic = PatchDiscriminator(CRITIC_INPUTS).to(device).train()
    ctx_params = list(net.context_stem.parameters()) if net.takes_context else []
    if cfg.context_only and not ctx_params:
        raise ValueError("--context-only 1 needs --context 1")
    base_params = [p for n, p in net.named_parameters() if not n.startswith("context_stem.")]
    if flow and not cfg.flow_train_trunk:  # the flow alone learns; the trunk stays as loaded
        for n, p in net.named_parameters():
            p.requires_grad_(n.startswith("flow."))
        base_params = list(net.flow.parameters())
    if cfg.context_only:
        for p in base_params:
            p.requires_grad_(False)
    groups = ([] if cfg.context_only else [{"params": base_params}])
    groups += [{"params": ctx_params, "lr": cfg.lr_g * cfg.context_lr_mult}] if ctx_params else []
    opt_g = torch.optim.Adam(groups, cfg.lr_g, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(critic.parameters(), cfg.lr_d, betas=(0.5, 0.99))
    step, history = 0, []
    if init is not None:
        missing, unexpected = net.load_state_dict(init.state_dict(), strict=False)
        if unexpected or any(not k.startswith(("context_stem.", "noise_proj.", "flow.")) for k in missing):
            raise ValueError(f"--init-from {cfg.init_from}: missing {missing}, unexpected {unexpected}")
        # the weights this run starts from, after their own ancestors (ship() writes it to meta)
        lineage = list(init_meta.get("lineage", []))
        lineage.append({"version": init_version, "step": int(init_meta.get("step", 0))})
        history.append({"step": 0, "init_from": str(cfg.init_from), "init_version": init_version,
                        "lineage": lineage})
    if state is not None:
        net.load_state_dict(state["net"])
        critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step, history = int(state["step"]), json.loads(state["history"])
        log(f"resumed {last} at step {step}")

    m = model_cfg.margin
    ctx = bool(cfg.context)
    train_sampler = PairSampler(grids, cfg.cells, m, "train", context=ctx)
    val_sampler = PairSampler(grids, cfg.cells, m, "val", context=ctx)
    vrng = np.random.default_rng(12345)  # the same validation batches in every run
    val = [_to(val_sampler.sample(vrng, cfg.batch), device) for _ in range(cfg.val_batches)]
    cascade, cval = [], []
    if cfg.cascade_weight > 0:
        depths = sorted({int(k) for k in cfg.cascade_levels.split(",")})
        cascade = [CascadeSampler(grids, cfg.cascade_cells, m, k, "train", context=ctx) for k in depths]
        for k in depths[::-1] + [1]:  # the deepest cascade the validation regions hold
            try:
                vs = CascadeSampler(grids, cfg.cascade_cells, m, k, "val", context=ctx)
            except ValueError:
                continue
            for _ in range(cfg.val_batches):
                cval.append(_cascade_to(vs.sample(vrng, cfg.cascade_batch), device))
            break
    deep = []
    if cfg.deep_weight > 0:
        if ctx:
            raise ValueError("--deep-weight trains a context-free net (the evaluation's crops carry no context)")
        deep = [CascadeSampler(grids, cfg.deep_start, 0, k, "train")
                for k in sorted({int(k) for k in cfg.deep_levels.split(",")})]
    loader = torch.utils.data.DataLoader(
        _Stream(train_sampler, cfg.batch, cfg.seed * 1_000_003 + step, cascade, cfg.cascade_batch,
                deep, cfg.deep_batch),
        batch_size=None,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers else None,
    )
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + step)
    vgen = lambda: torch.Generator(device=device).manual_seed(99)

    def save():
        ckpt = {
            "model_config": asdict(model_cfg),
            "train_config": asdict(cfg),
            "step": step,
            "net": net.state_dict(),
            "critic": critic.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "history": json.dumps(history),
        }
        save_checkpoint(ckpt, last)
        with open(out / "log.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)

    t0, run_log, n_logged = time.monotonic(), {}, 0
    deadline = t_start + cfg.minutes * 60.0
    for batch in loader:
        if step >= cfg.steps or time.monotonic() > deadline:
            break
        batch, cbatch, dbatch = batch
        parents, targets, present, spacing_m, context = _to(batch, device)
        noise = irwin_hall_noise(
            (parents.shape[0], model_cfg.noise_channels) + parents.shape[2:], gen, device
        )
        adv_scale = min(1.0, step / max(cfg.warmup_steps, 1))
        parents, targets, present_in = augment_bands(parents, targets, present, cfg, gen)
        parents = degrade_parents(parents, spacing_m * 2.0, net, cfg, gen)
        noise2 = irwin_hall_noise(noise.shape, gen, device) if cfg.diversity_weight > 0 else None
        if flow:
            terms = flow_losses(net, parents, targets, present, spacing_m, noise, gen, present_in, context)
            total, pairs = terms["total"], []
        else:
            terms, x_real, x_fake, _, _ = losses(
                net, critic, parents, targets, present, spacing_m, noise, cfg, adv_scale, present_in, context, noise2
            )
            total, pairs = terms["total"], [(x_real, x_fake)]
        if cbatch is not None:
            reals, cpres, cspace, cctx = _cascade_to(cbatch, device)
            cterms, cx_real, cx_fake, _ = cascade_losses(net, critic, reals, cpres, cspace, cfg, gen, adv_scale,
                                                         contexts=cctx)
            total = total + cfg.cascade_weight * cterms["c_total"]
            terms.update(cterms)
            pairs.append((cx_real, cx_fake))
        if dbatch is not None:
            dreals, dpres, dspace, _ = _cascade_to(dbatch, device)
            dterms, dpairs = deep_cascade_losses(net, dreals, dpres, dspace, cfg, gen, critic=critic,
                                                 adv_scale=adv_scale)
            total = total + cfg.deep_weight * dterms["d_total"]
            terms.update(dterms)
            pairs.extend(dpairs)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        # Critic step (hinge loss) on the same batch (and the cascade's last level).
        d_loss = sum(
            (F.relu(1.0 - critic(xr)).mean() + F.relu(1.0 + critic(xf.detach())).mean() for xr, xf in pairs),
            torch.zeros((), device=device),
        )
        if pairs:
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        step += 1
        for k, v in terms.items():
            run_log[k] = run_log.get(k, 0.0) + float(v.detach())
        run_log["d"] = run_log.get("d", 0.0) + float(d_loss.detach())
        n_logged += 1
        if step % cfg.log_every == 0:
            rec = {
                "step": step,
                "time_s": round(time.monotonic() - t0, 1),
                **{k: round(v / n_logged, 5) for k, v in run_log.items()},
            }
            if step % cfg.val_every == 0:
                rec.update({k: round(v, 5) for k, v in validate(net, critic, val, cfg, vgen()).items()})
                if cval:
                    rec.update({k: round(v, 5) for k, v in validate_cascade(net, critic, cval, cfg, vgen()).items()})
            history.append(rec)
            if step % cfg.val_every == 0:
                save()
            log(json.dumps(rec))
            run_log, n_logged = {}, 0
    rec = {"step": step, "time_s": round(time.monotonic() - t0, 1), "final": True}
    rec.update({k: round(v, 5) for k, v in validate(net, critic, val, cfg, vgen()).items()})
    if cval:
        rec.update({k: round(v, 5) for k, v in validate_cascade(net, critic, cval, cfg, vgen()).items()})
    history.append(rec)
    log(json.dumps(rec))
    save()
    return last


def ship(last: str | Path, asset: str | Path) -> str:
    """Write the shipped fp16 asset from a training checkpoint; returns its version."""
    state = torch.load(last, map_location="cpu", weights_only=True)
    net = RefinerNet(config_from_dict(state["model_config"]))
    net.load_state_dict(state["net"])
    meta = {"step": int(state["step"]), "train_config": json.dumps(state["train_config"])}
    history = json.loads(state.get("history", "[]"))
    lineage = next((h["lineage"] for h in history if "lineage" in h), [])
    if lineage:  # a fine-tune: the versions it descends from and the steps over all of them
        meta["lineage"] = lineage
        meta["steps_total"] = meta["step"] + sum(int(a["step"]) for a in lineage)
    ckpt = make_checkpoint(net, meta, half=True)
    save_checkpoint(ckpt, asset)
    return ckpt["version"]


def plot_history(
    history: list[dict], path: str | Path, keys=("l1", "lowpass", "adv", "d", "height_std_ratio")
) -> None:
    """Loss curves as a PNG (Pillow only): one panel per key, step on x; blue = training
    (mean over each logging interval), red = the fixed validation batches."""
    from PIL import Image, ImageDraw

    w, h, pad = 900, 160, 40
    img = Image.new("RGB", (w, h * len(keys) + 10), "white")
    draw = ImageDraw.Draw(img)
    # Runs before the per-interval count fix averaged a resumed run's first, partial interval
    # over a full one: leave out the first record after each resume.
    recs = [r for i, r in enumerate(history) if "l1" in r and not (i and history[i - 1].get("final"))]
    steps = [r["step"] for r in history]
    x0, x1 = min(steps), max(max(steps) - min(steps), 1) + min(steps)
    to_x = lambda s: pad + (np.asarray(s, float) - x0) / (x1 - x0) * (w - 10 - pad)
    for i, k in enumerate(keys):
        y0 = i * h + 5
        train = [(r["step"], r[k]) for r in recs if k in r]
        val = [(r["step"], r[f"val_{k}"]) for r in history if f"val_{k}" in r]
        draw.rectangle([pad, y0, w - 10, y0 + h - 25], outline="black")
        ys = np.array([v for _, v in train + val], float)
        if ys.size < 2:
            continue
        lo, hi = np.percentile(ys, 1), np.percentile(ys, 99)
        hi = hi if hi > lo else lo + 1e-6
        to_y = lambda v, y0=y0, lo=lo, hi=hi: y0 + (h - 25) - (np.clip(v, lo, hi) - lo) / (hi - lo) * (h - 25)
        for series, colour, width in ((train, "navy", 1), (val, "red", 2)):
            if len(series) > 1:
                sx, sy = to_x([p[0] for p in series]), to_y(np.array([p[1] for p in series]))
                draw.line(list(zip(sx.tolist(), sy.tolist(), strict=True)), fill=colour, width=width)
        draw.text(
            (pad + 5, y0 + 3), f"{k}  y in [{lo:.4g}, {hi:.4g}]  (blue train, red validation)", fill="black"
        )
        draw.text((pad, y0 + h - 22), f"step {x0} .. {x1}", fill="black")
    img.save(path)
