"""The learned refiner: checkpoints and the ``Refiner`` that runs the network.

A checkpoint is a plain dict (loads with ``torch.load(weights_only=True)``):
``{"format": 1, "config": {...RefinerConfig}, "version": str, "state_dict": {...}, "meta": {...}}``.
``version`` is a hash of the config and the weights, so it changes whenever the bytes a
tile depends on change; it enters the tile's ``model`` id. The shipped weights are fp16
(``assets/learned_refiner.pt``); they are widened to float32 on load, so every backend
runs the same float32 numbers unless it asks for fp16 itself.

Noise: K normal fields per call, counter-based on (seed, level, stream, global child row,
col) through ``generator.noise`` (the same bits in numpy and torch), sampled at the child
coordinates of the parent crop's samples (2 * parent index), wrapped in longitude on earth.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from generator.learned.model import N_CHANNELS, RefinerConfig, RefinerNet
from runtime.tiles import World, spacing_m

ASSET_PATH = Path(__file__).resolve().parents[2] / "assets" / "learned_refiner.pt"
"""Where the shipped fp16 weights live."""

NOISE_STREAM0 = 0x1EA7
"""First noise stream id of the learned refiner (streams NOISE_STREAM0 + k, k < K)."""

FORMAT = 1


def config_from_dict(d: dict) -> RefinerConfig:
    d = dict(d)
    d["dilations"] = tuple(int(x) for x in d["dilations"])
    return RefinerConfig(**d)


def model_version(config: RefinerConfig, state_dict: dict) -> str:
    """12 hex digits of sha256 over the config JSON and every tensor's name, dtype, shape
    and bytes (in name order)."""
    # None fields are left out, so a field added later with default None keeps old ids
    cfg = {k: v for k, v in asdict(config).items() if v is not None}
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:12]


def make_checkpoint(net: RefinerNet, meta: dict | None = None, half: bool = True) -> dict:
    """The shippable checkpoint dict of ``net`` (weights fp16 when ``half``)."""
    sd = {
        k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in net.state_dict().items()
    }
    return {
        "format": FORMAT,
        "config": asdict(net.config),
        "version": model_version(net.config, sd),
        "state_dict": sd,
        "meta": dict(meta or {}),
    }


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    """Atomic write (temp file + rename) so a reader never sees half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def load_net(
    path: str | Path = ASSET_PATH, device: str | torch.device = "cpu"
) -> tuple[RefinerNet, str, dict]:
    """Load a checkpoint with ``weights_only=True`` -> (float32 eval net, version, meta)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"learned refiner weights not found at {path} (train with `worldstream train`)"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {ckpt.get('format')!r}, expected {FORMAT}")
    config = config_from_dict(ckpt["config"])
    version = model_version(config, ckpt["state_dict"])
    if version != ckpt["version"]:
        raise ValueError(f"{path}: weights hash {version} does not match recorded version {ckpt['version']}")
    net = RefinerNet(config)
    net.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    return net.eval().to(device), version, ckpt.get("meta", {})


# ---------------------------------------------------------------------------------------
# Noise and conditioning tensors (shared by every backend).


def noise_coords(origins: np.ndarray, h: int, w: int, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Global child (rows (B, h), cols (B, w)) int64 of each parent-crop sample."""
    origins = np.asarray(origins, np.int64)
    rows = origins[:, :1] + 2 * (np.arange(h, dtype=np.int64) - margin)[None]
    cols = origins[:, 1:] + 2 * (np.arange(w, dtype=np.int64) - margin)[None]
    return rows, cols


def noise_numpy(seed: int, level: int, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    """(B, K, h, w) float32 counter-based normal noise (numpy reference)."""
    from generator.noise import gauss

    return np.stack([gauss(seed, level, NOISE_STREAM0 + i, rows, cols) for i in range(k)], 1)


def noise_torch(seed: int, level: int, rows: torch.Tensor, cols: torch.Tensor, k: int) -> torch.Tensor:
    """(B, K, h, w) float32, the same bits as :func:`noise_numpy`, on rows' device."""
    from generator.noise import gauss_torch

    return torch.stack([gauss_torch(seed, level, NOISE_STREAM0 + i, rows, cols) for i in range(k)], 1)


def stream_keys(seed: int, level: int, k: int) -> list[int]:
    """The K int64 (two's complement) keys of the learned refiner's noise streams."""
    from generator.noise import _signed, stream_key

    return [_signed(stream_key(seed, level, NOISE_STREAM0 + i)) for i in range(k)]


def noise_torch_keys(keys: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) float32 from keys (K,) int64 as a *tensor*: the same bits as
    :func:`noise_torch`, but traceable, so torch.compile fuses it into one kernel without
    specialising on (seed, level). Follows generator.noise.hash_grid_torch step by step."""
    from generator.noise import _COL_SALT, _ROW_SALT, _mix_torch, _signed, gauss_from_hash_torch

    k = keys[None, :, None]  # (1, K, 1)
    hr = _mix_torch(rows[:, None, :] * _signed(_ROW_SALT) + k)  # (B, K, h)
    hc = _mix_torch((cols[:, None, :] * _signed(_COL_SALT)) ^ k)  # (B, K, w)
    return gauss_from_hash_torch(_mix_torch(hr[..., :, None] ^ hc[..., None, :]))  # (B, K, h, w)


def widen(parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, C, h, w) with C in {4, 5} -> ((B, 5, h, w) float32, present (B, 2) float32)."""
    B, C = parents.shape[:2]
    present = np.ones((B, 2), np.float32)
    if C == N_CHANNELS - 1:
        parents = np.concatenate([parents, np.zeros((B, 1) + parents.shape[2:], np.float32)], 1)
        present[:, 1] = 0.0
    return np.ascontiguousarray(parents, np.float32), present


# ---------------------------------------------------------------------------------------


class LearnedRefiner:
    """``generator.refiner.Refiner`` running the trained network on a backend.

    backend: a ``generator.learned.backends`` name ("torch", "torch-compiled", "onnxruntime",
    "tensorrt"), "auto" (torch-compiled where CUDA is, else the exact CPU reference
    "torch"), or an object with the backends' ``run_level``.
    channels: 4 (height + rgb) or 5 (+ nir).
    spacing_scale: metres per sample = runtime.tiles.spacing_m(level) * spacing_scale
    (generator.refiner's convention for DEMs whose pixel is not a level's spacing).
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
        **backend_options,
    ):
        from generator.learned.backends import make_backend

        if channels not in (N_CHANNELS - 1, N_CHANNELS):
            raise ValueError(f"channels must be 4 (height + rgb) or 5 (+ nir), got {channels}")
        self.world = World.parse(world) if not isinstance(world, World) else world
        self.net, self.version, self.meta = load_net(checkpoint)
        self.margin = self.net.config.margin
        self.channels = channels
        self.spacing_scale = float(spacing_scale)
        if backend == "auto":
            backend = "torch-compiled" if torch.cuda.is_available() else "torch"
        if isinstance(backend, str):
            if device is None:
                device = "cuda" if backend in ("torch-compiled", "tensorrt") else "cpu"
            if backend == "torch-compiled":
                # One batch bucket: a tile's bytes must not depend on what it was batched with.
                backend_options.setdefault("buckets", (16,))
            backend = make_backend(backend, self.net, self.version, device=device, **backend_options)
        self.backend = backend

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
        if self.world is World.EARTH:
            from generator.refiner import canonical_cols

            cols = canonical_cols(self.world, level, cols)
        s = np.full((B,), spacing_m(level) * self.spacing_scale, np.float32)
        child = self.backend.run_level(p5, seed, level, rows, cols, s, present)
        child = child[:, : self.channels]
        # Bands live in [0, 1]; clipping leaves the exact parent copies (already inside) alone.
        child[:, 1:] = np.clip(child[:, 1:], 0.0, 1.0)
        return child


def _factory(world: World) -> LearnedRefiner:
    return LearnedRefiner(world)


def register() -> None:
    """Register ``learned`` with generator.refiner (when that module is present)."""
    try:
        from generator.refiner import register_refiner
    except ImportError:
        return
    register_refiner("learned", _factory)


register()
