"""The learned refiner network (network only; sampling, training and export live beside it).

One evaluation turns a parent crop into the 3 new child samples of every parent cell
(the 4th, even, child sample is the parent itself: exact nesting, DESIGN.md 2.2).

- Works at the *parent* resolution with stride 1 and valid padding only, so output cell
  (i, j) is a function of parent samples [i - m, i + m] x [j - m, j + m] and nothing else:
  any crop origin gives the same value for a global sample (seamless, DESIGN.md 2.3).
  Dilated residual blocks (Yu & Koltun 2016) give the receptive field without a stride.
- Conditioning: parent height (as asinh-compressed slopes and curvature normalised by the
  scale amplitude, plus asinh of absolute height for sea / snow line), parent colour and NIR
  with presence masks, log sample spacing, and a noise field.
- Optional context (``RefinerConfig.context_channels``): the 15 channels of
  ``generator.anchors.context`` (land fraction, Koppen group, land-cover group one-hots, NDVI
  max / min) at the parent samples, a pure function of location, through their own 1x1 stem
  (``context_stem``, zero at initialisation: a net fine-tuned from context-free weights starts
  as exactly those weights).
- Scene-centred joint decoding (MetaEarth-MM): one latent trunk, one head that emits the
  detail of every channel (height, r, g, b, nir) together.
- Optional sampled height detail (``RefinerConfig.flow_steps``): Euler steps of a conditional
  flow (FlowNet) from the head's detail plus noise, still one local function of the crop.
- Output = 4-point cubic interpolation of the parent + amplitude(s) * predicted detail;
  the height amplitude A(s) = a_1km (s / 1 km)^hurst is fitted on the training data
  (generator.learned.data.fit_amplitude), so the net predicts O(1) numbers at every scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

N_CHANNELS = 5  # height_m, red, green, blue, nir (generator.learned.data.CHANNELS)
FLOW_DILATIONS = (1, 2)  # one flow step's blocks
FLOW_REACH = sum(FLOW_DILATIONS)


@dataclass(frozen=True)
class RefinerConfig:
    """Architecture and normalisation of the refiner net; saved inside every checkpoint."""

    width: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 1)
    noise_channels: int = 4
    amp_m_at_1km: float = 13.5  # height detail amplitude at 1 km child spacing (metres)
    hurst: float = 0.5  # amplitude exponent: A(s) = amp_m_at_1km * (s / 1000 m) ** hurst
    colour_amp: float = 0.04  # detail amplitude of the [0, 1] bands
    # Steeper law below ``fine_break_m`` (None = one power law): A(s) = A(s_b) (s / s_b) **
    # hurst_fine. Real roughness exponents at metre spacings are 0.8-0.9 (generator.eval.lawfit
    # found 0.912); hurst = 0.5 carried to 1 m made LiDAR crops 2-3x too steep.
    hurst_fine: float | None = None
    fine_break_m: float | None = None
    # Context channels taken (generator.learned.inputs.CONTEXT_CHANNELS) or None = no context
    # input (every checkpoint before it; None fields stay out of the model version).
    context_channels: int | None = None
    # True: every residual block adds a zero-initialised 1x1 projection of the noise fields
    # (cropped to its size); None: noise at the stem only (every checkpoint before it). The
    # shipped net ignores its stem noise: its detail is a deterministic function of the parent.
    block_noise: bool | None = None
    # A sampled height detail (None: the head's deterministic detail, every checkpoint before it).
    # ``flow_steps`` Euler steps of a conditional flow (rectified flow / flow matching, Lipman et
    # al. 2023, Liu et al. 2023) carry x_0 = mu + flow_sigma * z to the height detail of the 3 new
    # samples of each cell: mu = the head's height detail, z = noise fields 0..2 (so the trunk
    # sees only the fields from 3 on), every step a small net (FlowNet) of the trunk's features,
    # x and t. Still one local function of the parent crop and counter-based noise: each step
    # reaches FLOW_REACH cells further, so the margin grows by flow_steps * FLOW_REACH.
    flow_steps: int | None = None
    flow_width: int | None = None
    flow_sigma: float | None = None
    # True: x_0 = mu + flow_sigma * rho * z, rho = the RMS of mu over the cell's 3 samples (+ 0.05):
    # the source is as rough as the head's detail there (plains start nearly flat, crags rough).
    flow_relative: bool | None = None

    @property
    def flow_margin(self) -> int:
        """Parent cells the flow steps reach beyond the trunk's output (0 without a flow)."""
        return (self.flow_steps or 0) * FLOW_REACH

    @property
    def margin(self) -> int:
        """Parent samples of context each side: 1 for the input stencils + the trunk's reach
        (+ the flow steps' reach)."""
        return 1 + sum(self.dilations) + self.flow_margin


def asinh(x: torch.Tensor) -> torch.Tensor:
    """asinh from log and sqrt (the TorchScript ONNX exporter has no aten::asinh); float32.
    |x| is clamped at 1e15 (asinh = 35.2) so a * a cannot overflow."""
    a = x.abs().clamp(max=1e15)
    return torch.sign(x) * torch.log(a + torch.sqrt(a * a + 1.0))


def _crop(x: torch.Tensor, k: int) -> torch.Tensor:
    """Drop k samples on each side of the last two axes."""
    return x[..., k : x.shape[-2] - k, k : x.shape[-1] - k] if k else x


class Block(nn.Module):
    """Dilated 3x3 (valid) -> LeakyReLU -> 1x1, added to the centre-cropped input."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv2d(width, width, 3, dilation=dilation)
        self.mix = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mix(F.leaky_relu(self.conv(F.leaky_relu(x, 0.2)), 0.2))  # (B, W, h-2d, w-2d)
        return _crop(x, self.dilation) + y


def _cubic_stencils() -> torch.Tensor:
    """(3, 1, 5, 5) float64 kernels giving the child samples (2i, 2j+1), (2i+1, 2j) and
    (2i+1, 2j+1) from parent rows/cols i-2..i+2 (4-point cubic, zero weight on i-2)."""
    t = torch.tensor([0.0, -1.0, 9.0, 9.0, -1.0], dtype=torch.float64) / 16.0
    e = torch.zeros(5, dtype=torch.float64)
    e[2] = 1.0
    return torch.stack([torch.outer(e, t), torch.outer(t, e), torch.outer(t, t)])[:, None]


def context_features(context: torch.Tensor) -> torch.Tensor:
    """(B, 15, h, w) context (generator.anchors.channels.CHANNELS) -> O(1) net inputs: land
    fraction to [-1, 1], one-hots as they are, NDVI (-0.2 .. 1) centred on 0.3 and doubled."""
    c = context.float()
    return torch.cat([2.0 * c[:, :1] - 1.0, c[:, 1:13], (c[:, 13:15] - 0.3) * 2.0], 1)


class FlowNet(nn.Module):
    """One flow step's velocity: trunk features (B, W, h, w) + the height detail x (B, 3, h, w)
    + t -> v (B, 3, h - 2 FLOW_REACH, w - 2 FLOW_REACH). The head starts at zero (v = 0), so
    an untrained flow leaves x_0 = mu + sigma z as it is."""

    def __init__(self, width: int, flow_width: int):
        super().__init__()
        self.stem = nn.Conv2d(width + 3 + 1, flow_width, 1)
        self.blocks = nn.ModuleList(Block(flow_width, d) for d in FLOW_DILATIONS)
        self.head = nn.Conv2d(flow_width, 3, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, feats: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        dt = self.stem.weight.dtype
        tt = torch.ones_like(x[:, :1]) * (t if isinstance(t, float) else t.to(x.dtype)[:, None, None, None])
        y = self.stem(torch.cat([feats.to(dt), x.to(dt), tt.to(dt)], 1))
        for block in self.blocks:
            y = block(y)
        return self.head(F.leaky_relu(y, 0.2)).float()


class RefinerNet(nn.Module):
    """parents (B, 5, h, w) + noise (B, K, h, w) + spacing (B,) + present (B, 2)
    [+ context (B, 15, h, w) when ``config.context_channels``]
    -> child (B, 5, 2(h-2m)-1, 2(w-2m)-1) with child[2i, 2j] == parents[m+i, m+j]."""

    def __init__(self, config: RefinerConfig):
        super().__init__()
        self.config = config
        c = config
        n_in = 4 + 4 + 2 + 1 + c.noise_channels  # slopes/curv/alt, bands, masks, scale, noise
        self.stem = nn.Conv2d(n_in, c.width, 1)
        if c.context_channels:
            # Its own zero-initialised 1x1: fine-tuned from context-free weights, the net starts
            # as exactly those weights, and their state_dict loads (strict=False) unchanged.
            self.context_stem = nn.Conv2d(c.context_channels, c.width, 1, bias=False)
            nn.init.zeros_(self.context_stem.weight)
        self.blocks = nn.ModuleList(Block(c.width, d) for d in c.dilations)
        if c.block_noise:
            # zero at initialisation, like the context stem: fine-tuned from weights without
            # it, the net starts as exactly those weights
            self.noise_proj = nn.ModuleList(nn.Conv2d(c.noise_channels, c.width, 1, bias=False) for _ in c.dilations)
            for proj in self.noise_proj:
                nn.init.zeros_(proj.weight)
        self.head = nn.Conv2d(c.width, 3 * N_CHANNELS, 1)
        if c.flow_steps:
            if c.noise_channels < 3 or c.flow_sigma is None:
                raise ValueError(f"a flow needs noise_channels >= 3 (its x_0) and flow_sigma, got {c.noise_channels}, "
                                 f"{c.flow_sigma}")
            self.flow = FlowNet(c.width, c.flow_width or c.width)
        self.register_buffer("stencils", _cubic_stencils().float(), persistent=False)

    def amplitude(self, spacing_m: torch.Tensor) -> torch.Tensor:
        """(B,) child spacing in metres -> (B, 5, 1, 1) detail amplitude per channel."""
        c = self.config
        a_h = c.amp_m_at_1km * (spacing_m / 1000.0) ** c.hurst  # (B,)
        if c.hurst_fine is not None and c.fine_break_m is not None:
            a_b = c.amp_m_at_1km * (c.fine_break_m / 1000.0) ** c.hurst
            fine = a_b * (spacing_m / c.fine_break_m) ** c.hurst_fine
            a_h = torch.where(spacing_m < c.fine_break_m, fine, a_h)
        a_c = torch.full_like(a_h, c.colour_amp)
        return torch.stack([a_h, a_c, a_c, a_c, a_c], 1)[:, :, None, None]

    def features(self, parents, noise, spacing_m, present):
        """Conditioning at parent resolution, (B, n_in, h-2, w-2)."""
        h = parents[:, 0:1]  # (B, 1, h, w) metres
        a = self.amplitude(spacing_m)[:, :1]  # (B, 1, 1, 1) metres
        centre = h[:, :, 1:-1, 1:-1]
        dx = (h[:, :, 1:-1, 2:] - h[:, :, 1:-1, :-2]) / (4.0 * a)
        dy = (h[:, :, 2:, 1:-1] - h[:, :, :-2, 1:-1]) / (4.0 * a)
        curv = (
            h[:, :, 1:-1, 2:] + h[:, :, 1:-1, :-2] + h[:, :, 2:, 1:-1] + h[:, :, :-2, 1:-1] - 4.0 * centre
        ) / (4.0 * a)
        alt = asinh(centre / 200.0)
        rgb = (parents[:, 1:4, 1:-1, 1:-1] - 0.25) * 4.0 * present[:, 0, None, None, None]
        nir = (parents[:, 4:5, 1:-1, 1:-1] - 0.25) * 4.0 * present[:, 1, None, None, None]
        ones = torch.ones_like(centre)
        masks = present[:, :, None, None] * ones  # (B, 2, h-2, w-2)
        scale = (torch.log2(spacing_m / 1000.0) / 8.0)[:, None, None, None] * ones
        return torch.cat(
            [asinh(dx), asinh(dy), asinh(curv), alt, rgb, nir, masks, scale, noise[:, :, 1:-1, 1:-1]], 1
        )

    @property
    def takes_context(self) -> bool:
        return bool(self.config.context_channels)

    def detail(self, parents, noise, spacing_m, present, context=None):
        """Normalised detail, (B, 5, 3, h-2m, w-2m): channel x new sample x cell."""
        y, feats = self.trunk(parents, noise, spacing_m, present, context)
        if not self.config.flow_steps:
            return y.unflatten(1, (N_CHANNELS, 3))
        c = self.config
        fm = c.flow_margin
        z = _crop(noise.float()[:, :3], (noise.shape[-1] - y.shape[-1]) // 2)  # the cells of y
        x = self.flow_source(y[:, :3].float(), z)  # x_0 around the head's height detail
        for k in range(c.flow_steps):
            x = _crop(x, FLOW_REACH) + self.flow(feats, x, k / c.flow_steps) / c.flow_steps
            feats = _crop(feats, FLOW_REACH)
        return torch.cat([x.to(y.dtype), _crop(y[:, 3:], fm)], 1).unflatten(1, (N_CHANNELS, 3))

    def flow_source(self, mu: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x_0 = mu + sigma z, or sigma rho z (``flow_relative``), of the (B, 3, h, w) head detail."""
        c = self.config
        if c.flow_relative:
            return mu + c.flow_sigma * (mu.square().mean(1, keepdim=True) + 0.0025).sqrt() * z
        return mu + c.flow_sigma * z

    def trunk(self, parents, noise, spacing_m, present, context=None):
        """The head's output (B, 15, h-2(m-f), ...) and the trunk's features (B, W, same), f =
        the flow margin. A flow net's trunk does not see noise fields 0..2 (they are its x_0)."""
        if self.config.flow_steps:
            noise = torch.cat([torch.zeros_like(noise[:, :3]), noise[:, 3:]], 1)
        f = self.features(parents.float(), noise.float(), spacing_m.float(), present.float())
        x = self.stem(f.to(self.stem.weight.dtype))  # (B, W, h-2, w-2), trunk dtype (fp16 ok)
        if self.takes_context:
            if context is None or context.shape[1] != self.config.context_channels:
                got = None if context is None else tuple(context.shape)
                raise ValueError(f"this net takes context (B, {self.config.context_channels}, h, w), got {got}")
            cf = context_features(context)[:, :, 1:-1, 1:-1]
            x = x + self.context_stem(cf.to(self.context_stem.weight.dtype))
        for i, block in enumerate(self.blocks):
            x = block(x)  # (B, W, h-2-2*sum(d), ...)
            if self.config.block_noise:
                nz = _crop(noise, (noise.shape[-1] - x.shape[-1]) // 2)  # the same samples as x
                x = x + self.noise_proj[i](nz.to(self.noise_proj[i].weight.dtype))
        return self.head(F.leaky_relu(x, 0.2)), x  # (B, 15, h-2(m-f), ...), (B, W, ...)

    def base(self, parents: torch.Tensor, margin: int) -> torch.Tensor:
        """Cubic prediction of the 3 new samples, (B, 5, 3, h-2m, w-2m), float32."""
        B, C, H, W = parents.shape
        p = _crop(parents.float(), margin - 2).reshape(B * C, 1, H - 2 * margin + 4, W - 2 * margin + 4)
        b = F.conv2d(p, self.stencils.float())  # (B*C, 3, h-2m, w-2m)
        return b.reshape(B, C, 3, H - 2 * margin, W - 2 * margin)

    def forward(self, parents, noise, spacing_m, present, context=None):
        """parents (B, 5, h, w) float32 (height m, r, g, b, nir; absent bands anything),
        noise (B, K, h, w) ~ N(0, 1), spacing_m (B,) child spacing, present (B, 2) rgb / nir
        masks, context (B, 15, h, w) at the parent samples (context nets only; ignored
        otherwise) -> child (B, 5, 2n-1, 2n-1) float32, n = h - 2m."""
        return self.assemble(parents, self.detail(parents, noise, spacing_m, present, context), spacing_m)

    def assemble(self, parents, detail, spacing_m):
        """Parents + normalised detail (B, 5, 3, n, n) -> child (B, 5, 2n-1, 2n-1) float32.
        Base and amplitude stay float32 even with an fp16 trunk: heights need the precision."""
        m = self.config.margin
        odd = self.base(parents, m) + self.amplitude(spacing_m.float())[:, :, None] * detail.float()
        even = _crop(parents, m).float()[:, :, None]  # (B, 5, 1, n, n): exact copies
        q = torch.cat([even, odd], 2)  # (B, 5, 4, n, n) in order (0,0), (0,1), (1,0), (1,1)
        B, C, _, n, w = q.shape
        child = q.reshape(B, C, 2, 2, n, w).permute(0, 1, 4, 2, 5, 3).reshape(B, C, 2 * n, 2 * w)
        return child[:, :, :-1, :-1]


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN critic (Isola et al. 2017) on child-resolution fields, used in
    training only. Input (B, n_in, S, S): normalised detail of the 5 channels (masked where
    a modality is missing) + conditioning; output (B, 1, ~S/4, ~S/4) realism scores."""

    def __init__(self, n_in: int, width: int = 64):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(n_in, width, 3, padding=1)),
            nn.LeakyReLU(0.2),  # (B, W, S, S)
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1)),
            nn.LeakyReLU(0.2),  # (B, 2W, S/2, S/2)
            sn(nn.Conv2d(2 * width, 2 * width, 4, 2, 1)),
            nn.LeakyReLU(0.2),  # (B, 2W, S/4, S/4)
            sn(nn.Conv2d(2 * width, 2 * width, 3, padding=1)),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * width, 1, 3, padding=1)),  # (B, 1, S/4, S/4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def widen(net: RefinerNet, width: int, seed: int = 0, init_scale: float = 0.5) -> RefinerNet:
    """A wider copy of ``net`` that computes exactly the same function (Net2Net-style widening,
    Chen et al. 2016): the old channels keep their weights, every weight by which a new channel
    reaches an old channel or the head is zero, and everything else the new channels read or
    write starts at ``init_scale`` x PyTorch's default init (so gradients reach all of it).
    The receptive field (dilations, hence the margin) is unchanged; only the trunk gets wider."""
    old = net.config
    if old.flow_steps:
        raise ValueError("widen: a flow net's FlowNet reads the trunk's width; widen the net before adding the flow")
    if width < old.width:
        raise ValueError(f"widen: width {width} < the net's {old.width}")
    if width == old.width:
        return net
    torch.manual_seed(seed)
    wide = RefinerNet(replace(old, width=width))
    w0, src = old.width, net.state_dict()
    with torch.no_grad():
        for name, t in wide.state_dict().items():
            if name not in src:
                raise ValueError(f"widen: {name} missing from the net being widened")
            s = src[name].to(t.dtype)
            t.mul_(init_scale)
            if t.shape == s.shape:  # head bias: no width axis
                t.copy_(s)
                continue
            t[tuple(slice(0, n) for n in s.shape)] = s
            # Weights that read the trunk (its convs and the head) take no new channel into an old
            # output. Chosen by name, not by shape: an input count (stem, context, noise) may equal
            # the width.
            if name == "head.weight":
                t[:, w0:] = 0.0
            elif name.startswith("blocks.") and name.endswith(".weight"):
                t[:w0, w0:] = 0.0
    return wide
