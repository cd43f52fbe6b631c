"""The learned refiner (network, checkpoints, inputs, backends, training).

Importing the package caps the CPU instruction sets torch's CPU kernels may use at AVX2
(``ONEDNN_MAX_CPU_ISA`` for oneDNN's convolutions, ``ATEN_CPU_CAPABILITY`` for ATen's own),
unless the environment already says otherwise: the exact CPU reference's bytes must not depend
on the machine, and oneDNN's AVX-512 convolutions round differently from its AVX2 ones (one of
the seven pinned learned tiles of tests/test_tile_bytes.py moved on an AVX2-only AMD EPYC; an
SSE4.1 cap moved another). Both are read when torch first runs a CPU kernel, so this must run
before that: every caller of the learned refiner imports this package first.
"""

import os
import platform

if platform.machine().lower() in ("x86_64", "amd64"):  # the names are x86's; other CPUs keep theirs
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
