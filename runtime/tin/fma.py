"""``fma(a, b, c)``: llvm.fma.f64 in compiled kernels (``runtime.jit``), a * b + c rounded once,
the sum OpenBLAS's dgemm kernels form (``runtime.tin.meshkernels``, ``runtime.tin.tri4``)."""

from __future__ import annotations

from runtime import jit

if jit.ENABLED:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx, a, b, c):
        """llvm.fma.f64: a * b + c with one rounding (what OpenBLAS's kernels compute)."""
        sig = types.float64(types.float64, types.float64, types.float64)

        def codegen(context, builder, signature, args):
            d = ir.DoubleType()
            fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
            return builder.call(fn, args)

        return sig, codegen
else:  # pragma: no cover - never called without numba (callers check jit.ENABLED)
    def fma(a, b, c):
        raise RuntimeError("runtime.tin.kernels needs numba")
