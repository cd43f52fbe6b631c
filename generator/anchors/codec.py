"""Near-lossless height codec shared by the earth anchor's grids (ETOPO5 level 3, GLOBE level 6).

DPCM along rows (JPEG-LS style) with a 5 m step on land and shelves and 25 m
below -200 m; land (>= 0 m) and water (< 0 m) are kept exactly. The codes are
small integers that LZMA packs well.
"""

from __future__ import annotations

import numpy as np

FINE_STEP_M, COARSE_STEP_M, DEEP_M = 5, 25, -200


def encode_height(height: np.ndarray) -> np.ndarray:
    """(R, C) int metres -> (R, C) int16 DPCM codes; error <= one step, signs exact.

    Each value is predicted by its reconstructed west neighbour; the residual is
    quantised with a step chosen from that neighbour (5 m above -200 m, else 25 m),
    so the decoder knows the step; where rounding would flip land (>= 0 m) and water
    (< 0 m) the code moves one step toward the true value.
    """
    h = np.asarray(height, dtype=np.int64)
    codes = np.empty(h.shape, dtype=np.int64)
    prev = np.zeros(h.shape[0], dtype=np.int64)
    for j in range(h.shape[1]):
        step = np.where(prev > DEEP_M, FINE_STEP_M, COARSE_STEP_M)
        q = np.round((h[:, j] - prev) / step).astype(np.int64)
        rec = prev + q * step
        q = np.where((rec >= 0) != (h[:, j] >= 0), q + np.sign(h[:, j] - rec), q)
        codes[:, j] = q
        prev = prev + q * step
    if np.abs(codes).max() > 32767:
        raise ValueError("height residuals do not fit int16")
    return codes.astype(np.int16)


def decode_height(codes: np.ndarray, dtype=np.int32) -> np.ndarray:
    """Inverse of :func:`encode_height`: (R, C) int16 codes -> (R, C) ``dtype`` metres (exact integers).

    Rows are independent (each is predicted along itself), so they are decoded in strips:
    the working memory stays ~20 MB even for the 25 M-node GLOBE grid."""
    out = np.empty(codes.shape, dtype=dtype)
    fine, coarse = np.int64(FINE_STEP_M), np.int64(COARSE_STEP_M)
    for r0 in range(0, codes.shape[0], 512):
        by_col = np.ascontiguousarray(codes[r0 : r0 + 512].T, dtype=np.int64)  # (C, r): contiguous steps
        rec = np.empty_like(by_col)
        prev = np.zeros(by_col.shape[1], dtype=np.int64)
        for j in range(by_col.shape[0]):
            prev = prev + by_col[j] * np.where(prev > DEEP_M, fine, coarse)
            rec[j] = prev
        out[r0 : r0 + 512] = rec.T
    return out
