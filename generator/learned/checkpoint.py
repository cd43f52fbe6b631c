"""Checkpoints of the learned refiner: save, load, and the model version (weights hash).

A checkpoint is a plain dict (loads with ``torch.load(weights_only=True)``):
``{"format": 1, "config": {...RefinerConfig}, "version": str, "state_dict": {...}, "meta": {...}}``.
``version`` is a hash of the config and the weights, so it changes whenever the bytes a
tile depends on change; it enters the tile's ``model`` id. The shipped weights are fp16
(``assets/learned_refiner.pt``); they are widened to float32 on load, so every backend
runs the same float32 numbers unless it asks for fp16 itself.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import torch

from generator.learned.model import RefinerConfig, RefinerNet

ASSET_PATH = Path(__file__).resolve().parents[2] / "assets" / "learned_refiner.pt"
"""Where the shipped fp16 weights live."""

FORMAT = 1


def config_from_dict(d: dict) -> RefinerConfig:
    """The RefinerConfig saved in a checkpoint (JSON lists back to tuples)."""
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


def average_checkpoints(a: str | Path, b: str | Path, weight_b: float) -> dict:
    """The shippable fp16 checkpoint of (1 - weight_b) x a + weight_b x b, weights averaged in
    float32 ("model soup"; a and b of one lineage, e.g. b fine-tuned from a). Its meta says so,
    lists both in its lineage and counts b's training steps (it has none of its own)."""
    if not 0.0 <= weight_b <= 1.0:
        raise ValueError(f"weight_b must be in [0, 1], got {weight_b}")
    net_a, va, ma = load_net(a)
    net_b, vb, mb = load_net(b)
    if net_a.config != net_b.config:
        raise ValueError(f"{a} and {b} are different networks: {net_a.config} vs {net_b.config}")
    sa, sb = net_a.state_dict(), net_b.state_dict()
    net_a.load_state_dict({k: sa[k] * (1.0 - weight_b) + sb[k] * weight_b if sa[k].is_floating_point() else sb[k]
                           for k in sa})
    lineage = list(mb.get("lineage", []))
    if all(x.get("version") != va for x in lineage):
        lineage.append({"version": va, "step": int(ma.get("step", 0))})
    lineage.append({"version": vb, "step": int(mb.get("step", 0))})
    meta = {"step": 0, "steps_total": int(mb.get("steps_total", mb.get("step", 0))), "lineage": lineage,
            "average": f"{1.0 - weight_b:g} x {va} + {weight_b:g} x {vb}"}
    return make_checkpoint(net_a, meta, half=True)


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


if __name__ == "__main__":  # python -m generator.learned.checkpoint average A B WEIGHT_B OUT
    import sys

    if len(sys.argv) != 6 or sys.argv[1] != "average":
        raise SystemExit("usage: python -m generator.learned.checkpoint average A.pt B.pt WEIGHT_B OUT.pt")
    ck = average_checkpoints(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    save_checkpoint(ck, sys.argv[5])
    print(f"{sys.argv[5]}: version {ck['version']} ({ck['meta']['average']})")
