"""The network's inputs, made the same way for every backend: noise fields and parent tensors.

Noise: K normal fields per call, counter-based on (seed, level, stream, global child row,
col) through ``generator.noise`` (the same bits in numpy and torch), sampled at the child
coordinates of the parent crop's samples (2 * parent index), wrapped in longitude on earth
by the caller.
"""

from __future__ import annotations

import numpy as np
import torch

from generator.learned.model import N_CHANNELS
from generator.noise import (
    _COL_SALT,
    _ROW_SALT,
    _mix_torch,
    _signed,
    gauss,
    gauss_from_hash_torch,
    gauss_torch,
    stream_key,
)

NOISE_STREAM0 = 0x1EA7
"""First noise stream id of the learned refiner (streams NOISE_STREAM0 + k, k < K)."""


def noise_coords(origins: np.ndarray, h: int, w: int, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Global child (rows (B, h), cols (B, w)) int64 of each parent-crop sample."""
    origins = np.asarray(origins, np.int64)
    rows = origins[:, :1] + 2 * (np.arange(h, dtype=np.int64) - margin)[None]
    cols = origins[:, 1:] + 2 * (np.arange(w, dtype=np.int64) - margin)[None]
    return rows, cols


def noise_numpy(seed: int, level: int, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    """(B, K, h, w) float32 counter-based normal noise (numpy reference)."""
    return np.stack([gauss(seed, level, NOISE_STREAM0 + i, rows, cols) for i in range(k)], 1)


def noise_torch(seed: int, level: int, rows: torch.Tensor, cols: torch.Tensor, k: int) -> torch.Tensor:
    """(B, K, h, w) float32, the same bits as :func:`noise_numpy`, on rows' device."""
    return torch.stack([gauss_torch(seed, level, NOISE_STREAM0 + i, rows, cols) for i in range(k)], 1)


def stream_keys(seed: int, level: int, k: int) -> list[int]:
    """The K int64 (two's complement) keys of the learned refiner's noise streams."""
    return [_signed(stream_key(seed, level, NOISE_STREAM0 + i)) for i in range(k)]


def noise_torch_keys(keys: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) float32 from keys (K,) int64, or (B, K): each crop its own (seed, level),
    as a *tensor*: the same bits as :func:`noise_torch`, but traceable, so torch.compile fuses
    it into one kernel without specialising on (seed, level), and crops of several levels can
    share one call. Follows generator.noise.hash_grid_torch step by step."""
    k = keys[:, :, None] if keys.dim() == 2 else keys[None, :, None]  # (B or 1, K, 1)
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


# ------------------------------------------------------------------------------ context

CONTEXT_CHANNELS = 15
"""Context channels a context net takes: generator.anchors.channels.CHANNELS (land, Koppen A-E,
7 land-cover groups, NDVI max, NDVI min), at the parent samples."""


def context_numpy(world, level: int, rows: np.ndarray, cols: np.ndarray, seed: int) -> np.ndarray:
    """(B, 15, h, w) float32 context of ``world`` at the parent-crop samples: rows (B, h), cols
    (B, w) are their global coordinates at the *child* level (noise_coords; cols wrapped on
    earth), the same places as the parents' own samples. A pure function of location:
    ``generator.anchors.context.context`` per crop (point lookups, a few ms a crop)."""
    from generator.anchors.context import context

    return np.stack([context(world, level, r, c, seed) for r, c in zip(rows, cols, strict=True)])


def pack_context(ctx: np.ndarray) -> np.ndarray:
    """(15, ...) float32 context -> (5, ...) uint8 (land * 254, Koppen group + 1 or 0 (sea),
    land-cover group + 1 or 0 (water), NDVI max / min as (NDVI + 0.2) / 1.2 * 254): the
    training corpus keeps this (fractional one-hots, the plane's between nodes, become their
    largest class)."""
    ctx = np.asarray(ctx, np.float32)
    out = np.empty((5,) + ctx.shape[1:], np.uint8)
    out[0] = np.round(np.clip(ctx[0], 0.0, 1.0) * 254)
    for i, (a, b) in enumerate(((1, 6), (6, 13))):
        oh = ctx[a:b]
        out[1 + i] = np.where(oh.max(0) > 0, oh.argmax(0) + 1, 0)
    out[3:5] = np.round(np.clip((ctx[13:15] + 0.2) / 1.2, 0.0, 1.0) * 254)
    return out


def unpack_context_torch(packed: torch.Tensor) -> torch.Tensor:
    """(B, 5, h, w) uint8 (pack_context) -> (B, 15, h, w) float32 on packed's device."""
    p = packed.long()
    classes = lambda c, n: (p[:, c : c + 1] == torch.arange(1, n + 1, device=p.device)[None, :, None, None])
    return torch.cat([
        p[:, :1].float() / 254.0,
        classes(1, 5).float(),
        classes(2, 7).float(),
        p[:, 3:5].float() / 254.0 * 1.2 - 0.2,
    ], 1)
