"""Compiled twins (``runtime.jit``) of the RTIN error measures in ``runtime.tin.rtin``.

The numpy measures gather a triangle pattern's samples of every block into (K, k) arrays and
reduce them; these loop over blocks and samples with no temporaries. Same bits:

- a triangle's plane at a sample is ``w.T @ corners`` in numpy, a BLAS dgemm (OpenBLAS,
  which accumulates along the 3 vertices with fused multiply-adds: fma(w2, c2, fma(w1, c1,
  w0 * c0)), checked bit for bit against numpy over whole tiles in tests/test_jit_kernels.py).
  With a single block numpy calls dgemv, which sums in another order, so callers keep numpy
  for one block;
- a border fan's value is ``(w * v).sum(axis=0)``: ((w0 v0 + w1 v1) + w2 v2), no fma;
- the error is max |sample - surface| (max does not depend on order).
"""

from __future__ import annotations

import numpy as np

from runtime import jit

if jit.ENABLED:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _fma(typingctx, a, b, c):
        """llvm.fma.f64: a * b + c with one rounding (what OpenBLAS's kernels compute)."""
        sig = types.float64(types.float64, types.float64, types.float64)

        def codegen(context, builder, signature, args):
            d = ir.DoubleType()
            fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
            return builder.call(fn, args)

        return sig, codegen
else:  # pragma: no cover - never called without numba (callers check jit.ENABLED)
    def _fma(a, b, c):
        raise RuntimeError("runtime.tin.kernels needs numba")


@jit.njit
def plane_error_blocks(flat, n1, bi, bj, b, pi, pj, w, vr, vc, out):
    """out[q] = max over the pattern's samples of |sample - plane| in block (bi[q], bj[q]).

    flat ((n1*n1,) float64 heights, row-major), bi, bj (k,) int64 block indices (the block's
    [0, 0] is sample (bi*b, bj*b)), pattern pi, pj (K,) int64 local samples, w (3, K)
    float64 barycentric weights, vr, vc (3,) int64 local vertices; out (k,) float64."""
    kk = pi.shape[0]
    for q in range(bi.shape[0]):
        base = bi[q] * b * n1 + bj[q] * b
        c0 = flat[base + vr[0] * n1 + vc[0]]
        c1 = flat[base + vr[1] * n1 + vc[1]]
        c2 = flat[base + vr[2] * n1 + vc[2]]
        m = 0.0
        for s in range(kk):
            plane = _fma(w[2, s], c2, _fma(w[1, s], c1, w[0, s] * c0))
            d = abs(flat[base + pi[s] * n1 + pj[s]] - plane)
            if d > m:
                m = d
        out[q] = m


@jit.njit
def fan_error_blocks(flat, n1, base, pi, pj, vr, vc, w, out):
    """out[q] = max |sample - fan| of one border-fan pattern in the block whose [0, 0] is flat
    index base[q]: pi, pj (K,) local samples, vr, vc (3, K) int64 local vertices of each
    sample's fan triangle, w (3, K) float64 weights; out (k,) float64."""
    kk = pi.shape[0]
    for q in range(base.shape[0]):
        o = base[q]
        m = 0.0
        for s in range(kk):
            f = (w[0, s] * flat[o + vr[0, s] * n1 + vc[0, s]] + w[1, s] * flat[o + vr[1, s] * n1 + vc[1, s]]) \
                + w[2, s] * flat[o + vr[2, s] * n1 + vc[2, s]]
            d = abs(flat[o + pi[s] * n1 + pj[s]] - f)
            if d > m:
                m = d
        out[q] = m


@jit.warmer
def _warm() -> None:
    flat = np.arange(25, dtype=np.float64)
    one = np.zeros(1, np.int64)
    out = np.empty(1)
    pat = np.array([0, 1], np.int64)
    w = np.full((3, 2), 1.0 / 3.0)
    plane_error_blocks(flat, 5, one, one, 4, pat, pat, w, np.array([0, 0, 4]), np.array([0, 4, 4]), out)
    fan_error_blocks(flat, 5, one, pat, pat, np.zeros((3, 2), np.int64), np.zeros((3, 2), np.int64), w, out)
