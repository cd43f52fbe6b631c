"""Test-session setup. Importing ``generator.learned`` caps torch's CPU instruction set at AVX2
(generator/learned/__init__.py), which torch reads at its first CPU kernel: done here, before any
test runs one, so the pinned learned tile bytes (test_tile_bytes.py) do not depend on which test
happened to run torch first. It imports nothing else (no torch)."""

import generator.learned  # noqa: F401
