"""Compiled twins (``runtime.jit``) of ``generator.shaping``'s array steps the gullies run on
every refined block, same bits: :func:`upsample` (per-parent values to the child grid) and
:func:`unit_mix` (the unit-variance mix of the detail and the stripes), each numpy's float32
expressions in its order (no fast-math, so no fused multiply-add)."""

from __future__ import annotations

import numpy as np

from runtime import jit


@jit.njit
def upsample(a, out):
    """``shaping.upsample`` (float32, same order): a (B, n, m) -> out (B, 2n-1, 2m-1), even samples
    copied, new samples (x + y) * 0.5 of their two parents, centres of their two row means."""
    half = np.float32(0.5)
    b_n, n, m = a.shape
    for b in range(b_n):
        for i in range(n):
            for j in range(m):
                out[b, 2 * i, 2 * j] = a[b, i, j]
            for j in range(m - 1):
                out[b, 2 * i, 2 * j + 1] = (a[b, i, j] + a[b, i, j + 1]) * half
            if i + 1 < n:
                for j in range(m):
                    out[b, 2 * i + 1, 2 * j] = (a[b, i, j] + a[b, i + 1, j]) * half
                for j in range(m - 1):
                    h0 = (a[b, i, j] + a[b, i, j + 1]) * half
                    h1 = (a[b, i + 1, j] + a[b, i + 1, j + 1]) * half
                    out[b, 2 * i + 1, 2 * j + 1] = (h0 + h1) * half


@jit.njit
def unit_mix(white, ridged, s, out):
    """``shaping.unit_mix`` per sample (float32, same order): white * ((1 - s^2) / (1 + s^2)) +
    ridged * (2s / (1 + s^2)); all (B, R, C)."""
    one = np.float32(1.0)
    for b in range(out.shape[0]):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                si = s[b, i, j]
                s2 = si * si
                den = s2 + one
                out[b, i, j] = white[b, i, j] * ((-s2 + one) / den) + ridged[b, i, j] * ((si + si) / den)


@jit.warmer
def _warm() -> None:
    up = np.ones((1, 3, 3), np.float32)
    upsample(up, np.empty((1, 5, 5), np.float32))
    upsample(up[:, ::2, 1::2] * 1, np.empty((1, 3, 1), np.float32))
    g3 = np.ones((1, 6, 6), np.float32)  # the share: a strided view of the upsampled weight
    for s3 in (g3[:, ::2, 1::2], g3[:, 1::2, ::2], g3[:, 1::2, 1::2]):
        unit_mix(np.ones((1, 3, 3), np.float32), np.ones((1, 3, 3), np.float32), s3, np.empty((1, 3, 3), np.float32))
