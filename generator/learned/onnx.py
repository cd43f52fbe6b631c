"""ONNX export of the refiner network (inputs parents, noise, spacing_m, present, and context for a
net that takes it; output child).

Batch, height and width are dynamic axes; the graph is the float32 net (noise is an input,
made by generator.noise outside the graph, so every backend sees the same bits).
Exported with the TorchScript-based exporter (``dynamo=False``), opset 17, which
onnxruntime and TensorRT both parse.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from generator.learned.model import N_CHANNELS, RefinerNet

CACHE_DIR = Path.home() / ".cache" / "worldstream" / "onnx"
INPUTS = ("parents", "noise", "spacing_m", "present")
"""Inputs of every exported graph; a context net's graph has ``context`` (B, 15, h, w) after them."""


def input_names(net: RefinerNet) -> list[str]:
    return list(INPUTS) + (["context"] if net.takes_context else [])


def export_onnx(net: RefinerNet, path: str | Path | None = None, crop: int = 64, opset: int = 17) -> bytes:
    """Export ``net`` (float32, CPU) to ONNX; writes ``path`` when given; returns the bytes."""
    net = net.float().eval().cpu()
    crop = max(crop, 2 * net.config.margin + 16)  # the example must leave cells (a flow's margin is wider)
    k = net.config.noise_channels
    example = (
        torch.zeros(1, N_CHANNELS, crop, crop),
        torch.zeros(1, k, crop, crop),
        torch.full((1,), 30.0),
        torch.ones(1, 2),
    )
    if net.takes_context:
        example = example + (torch.zeros(1, net.config.context_channels, crop, crop),)
    dyn = {
        "parents": {0: "batch", 2: "h", 3: "w"},
        "noise": {0: "batch", 2: "h", 3: "w"},
        "spacing_m": {0: "batch"},
        "present": {0: "batch"},
        "child": {0: "batch", 2: "ch", 3: "cw"},
    }
    if net.takes_context:
        dyn["context"] = {0: "batch", 2: "h", 3: "w"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            example,
            buf,
            input_names=input_names(net),
            output_names=["child"],
            dynamic_axes=dyn,
            opset_version=opset,
            dynamo=False,
        )
    data = buf.getvalue()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return data


def cached_onnx(net: RefinerNet, version: str, cache_dir: str | Path | None = None) -> Path:
    """Path of the ONNX file for model ``version``, exporting it on first use."""
    path = Path(cache_dir or CACHE_DIR) / f"learned_refiner-{version}.onnx"
    if not path.exists():
        export_onnx(net, path)
    return path
