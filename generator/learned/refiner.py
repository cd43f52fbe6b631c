"""The learned refiner: the ``Refiner`` that runs the trained network on a backend.

The network is ``generator.learned.model``, its weights and version come from
``generator.learned.checkpoint``, its noise and input tensors from ``generator.learned.inputs``
and the backends that run it from ``generator.learned.backends``. Listed as ``learned`` in
``generator.refiner.FACTORIES``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from generator.learned.backends import COMPILED, make_backend
from generator.learned.checkpoint import ASSET_PATH, load_net
from generator.learned.inputs import context_numpy, noise_coords, widen
from generator.learned.model import N_CHANNELS
from generator.worldmetric import canonical_cols
from runtime.tiles import World, spacing_m


class LearnedRefiner:
    """``generator.refiner.Refiner`` running the trained network on a backend.

    backend: a ``generator.learned.backends`` name ("torch", "torch-compiled", "onnxruntime",
    "tensorrt"), "auto" (torch-compiled where CUDA is, else the exact CPU reference
    "torch"), or an object with the backends' ``run_level``.
    channels: 4 (height + rgb) or 5 (+ nir).
    spacing_scale: metres per sample = runtime.tiles.spacing_m(level) * spacing_scale
    (generator.refiner's convention for DEMs whose pixel is not a level's spacing).
    context_fn: for a net that takes context (checkpoint config ``context_channels``), where
    it comes from: None = the world's own context at the parent samples
    (``generator.learned.inputs.context_numpy``: earth layers or the plane's continents, a
    pure function of location); or ``f(level, rows (B, h), cols (B, w)) -> (B, 15, h, w)``
    (generator.eval.cascade: a located DEM refined at a level that is not its own).
    Context-free nets ignore it.
    """

    name = "learned"

    def __init__(
        self,
        world: World | str = World.PLANE,
        checkpoint: str | Path = ASSET_PATH,
        backend="auto",
        device: str | None = None,
        channels: int = 4,
        spacing_scale: float = 1.0,
        context_fn=None,
        **backend_options,
    ):
        if channels not in (N_CHANNELS - 1, N_CHANNELS):
            raise ValueError(f"channels must be 4 (height + rgb) or 5 (+ nir), got {channels}")
        self.world = World.parse(world) if not isinstance(world, World) else world
        self.net, self.version, self.meta = load_net(checkpoint)
        self.margin = self.net.config.margin
        self.channels = channels
        self.spacing_scale = float(spacing_scale)
        self.context_fn = context_fn
        self.takes_context = self.net.takes_context
        if backend == "auto":
            backend = "torch-compiled" if torch.cuda.is_available() else "torch"
        if isinstance(backend, str):
            if device is None:
                device = "cuda" if backend in COMPILED else "cpu"
            if backend == "torch-compiled":
                # One batch bucket: a tile's bytes must not depend on what it was batched with.
                backend_options.setdefault("buckets", (16,))
            backend = make_backend(backend, self.net, self.version, device=device, **backend_options)
        self.backend = backend
        # a compiled GPU backend (here, or behind the shared backend: its name is the owner's)
        # builds its graphs on first use (the servers warm it) and makes every call a round trip
        # to the card (the pyramid plans a batch's blocks together: Pyramid.prepare_together)
        self.compiled = self.prefers_batches = getattr(backend, "name", "") in COMPILED

    def config(self) -> dict:
        """JSON-able; enters the pyramid's model id. The backend enters it too: fp16 on the GPU
        and float32 on the CPU agree within centimetres, not bit for bit, and a tile's bytes
        must depend only on (world, seed, model, key)."""
        return {
            "name": self.name,
            "version": self.version,
            "backend": getattr(self.backend, "name", type(self.backend).__name__),
            "margin": self.margin,
            "channels": self.channels,
            "spacing_scale": self.spacing_scale,
            **({"context": "world"} if self.takes_context else {}),
        }

    def refine(self, parents: np.ndarray, level: int, origins: np.ndarray, seed: int) -> np.ndarray:
        parents = np.asarray(parents)
        if parents.ndim != 4 or parents.shape[1] != self.channels:
            raise ValueError(f"parents must be (B, {self.channels}, h, w), got {parents.shape}")
        B, _, h, w = parents.shape
        if min(h, w) <= 2 * self.margin:
            raise ValueError(f"parent crop {h}x{w} must exceed 2 * margin = {2 * self.margin}")
        origins = np.asarray(origins, np.int64).reshape(B, 2)
        if level < 1:
            raise ValueError(f"level is the child level and must be >= 1, got {level}")
        p5, present = widen(parents.astype(np.float32, copy=False))
        rows, cols = noise_coords(origins, h, w, self.margin)
        cols = canonical_cols(self.world, level, cols)  # wrapped longitude on earth
        s = np.full((B,), spacing_m(level) * self.spacing_scale, np.float32)
        ctx = None
        if self.takes_context:
            if self.context_fn is not None:
                ctx = np.asarray(self.context_fn(level, rows, cols), np.float32)
            else:
                ctx = context_numpy(self.world, level, rows, cols, seed)
            if ctx.shape != (B, self.net.config.context_channels, h, w):
                raise ValueError(f"context must be (B, {self.net.config.context_channels}, h, w) = "
                                 f"{(B, self.net.config.context_channels, h, w)}, got {ctx.shape}")
        child = self.backend.run_level(p5, seed, level, rows, cols, s, present, ctx)
        child = child[:, : self.channels]
        # Bands live in [0, 1]; clipping leaves the exact parent copies (already inside) alone.
        child[:, 1:] = np.clip(child[:, 1:], 0.0, 1.0)
        return child
