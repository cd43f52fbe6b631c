"""Counter-based noise: a pure function of (seed, level, stream, global row, col).

DESIGN.md section 2.1: no stateful RNG anywhere. Every value is a hash of its
own coordinates, so a sample gets the same noise whichever tile, batch or
process computes it. The hash is the SplitMix64 finaliser (Steele, Lea and
Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014) applied
twice: once to (key, row), once to that result xor a hash of (key, col).

numpy works in uint64, torch in int64 (torch has no general uint64 maths):
both wrap modulo 2**64 on + and *, and the right shifts of the int64 path are
masked to be logical, so the bits agree exactly. Coordinates may be negative
and as large as 2**62 in magnitude (the contract asks for 2**40).

The float outputs only use exact steps (16-bit lanes summed as integers, one
float32 multiply), so numpy and torch give identical float32 values.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_ROW_SALT = 0xD1B54A32D192ED03
_COL_SALT = 0xABC98388FB8FAC03

GAUSS_SCALE = np.float32(np.sqrt(3.0) / 65536.0)
"""Irwin-Hall(4) of 16-bit lanes -> unit variance: sum of 4 U(0, 65536) has std 65536/sqrt(3)."""
_GAUSS_SCALE_F = float(GAUSS_SCALE)
"""GAUSS_SCALE as a Python float for the torch twin: torch.compile traces a numpy scalar as a
tensor, so ``float(GAUSS_SCALE)`` inside a compiled function is a data-dependent ``.item()``
that splits the graph (4 CUDA-graph replays a step instead of 1). Same float32 value."""


def mix64(z: int) -> int:
    """SplitMix64 finaliser on a Python int (exact, for per-call keys)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, level: int, stream: int) -> int:
    """64-bit key of one noise stream; distinct (seed, level, stream) give unrelated fields."""
    k = mix64(int(seed) * _GOLDEN + 0x632BE59BD9B4E019)
    k = mix64(k ^ ((int(level) + 1) * _M1))
    return mix64(k ^ ((int(stream) + 1) * _M2))


def _signed(c: int) -> int:
    """A uint64 constant as the int64 with the same bits (for torch)."""
    c &= MASK64
    return c - (1 << 64) if c >= 1 << 63 else c


# ---------------------------------------------------------------- numpy (reference)

def _mix_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def _as_u64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).view(np.uint64)


def hash_grid(key: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """uint64 hash of every (row, col) pair.

    rows (..., H) int64 and cols (..., W) int64 with the same leading shape;
    returns (..., H, W) uint64.
    """
    k = np.uint64(key)
    with np.errstate(over="ignore"):
        hr = _mix_np((_as_u64(rows) * np.uint64(_ROW_SALT)) + k)
        hc = _mix_np((_as_u64(cols) * np.uint64(_COL_SALT)) ^ k)
        return _mix_np(hr[..., :, None] ^ hc[..., None, :])


def hash_pairs(key: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """uint64 hash of (row, col) pairs, broadcasting rows against cols (int64 arrays).

    Same bits as :func:`hash_grid` for the same pair: hash_grid(k, r, c) ==
    hash_pairs(k, r[..., :, None], c[..., None, :]).
    """
    k = np.uint64(key)
    with np.errstate(over="ignore"):
        hr = _mix_np((_as_u64(rows) * np.uint64(_ROW_SALT)) + k)
        hc = _mix_np((_as_u64(cols) * np.uint64(_COL_SALT)) ^ k)
        return _mix_np(hr ^ hc)


LATTICE_I_SALT, LATTICE_J_SALT = _COL_SALT, _ROW_SALT
"""lattice_hash(key, i, j) == mix(as_u64(i) * LATTICE_I_SALT + as_u64(j) * LATTICE_J_SALT + key)."""
mix = _mix_np  # the SplitMix64 finaliser, uint64 arrays
as_u64 = _as_u64  # int64 array -> the same bits as uint64


def lattice_hash(key: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cheap elementwise uint64 hash of lattice points (i, j): one SplitMix64 finaliser of
    key + i*C1 + j*C2 (mod 2**64). For value noise, where a few collisions between points
    2**32 apart do not matter; the tiles' detail noise uses :func:`hash_grid`."""
    with np.errstate(over="ignore"):
        return _mix_np(_as_u64(i) * np.uint64(_COL_SALT) + _as_u64(j) * np.uint64(_ROW_SALT) + np.uint64(key))


def lattice_frame(seed: int, octave: int) -> tuple[int, float, float, float]:
    """(key, cos, sin, offset) of ``octave``'s lattice of smooth value noise: rotated by
    golden-angle steps, offset per key (the offset in lattice cells)."""
    key = stream_key(seed, 1000 + octave, 7)
    ang = 0.61803398875 * (octave + 1) * 2.399963229728653  # golden-angle steps
    return key, float(np.cos(ang)), float(np.sin(ang)), (key & 0xFFFF) / 65536.0 * 977.0


def rotated_lattice(seed: int, octave: int, x: np.ndarray, y: np.ndarray, wavelength: float):
    """Where float64 points (x, y) fall on ``octave``'s lattice of smooth value noise
    (:func:`lattice_frame`): (key, i0, j0 int64 lower-left nodes, fu, fv quintic weights). The
    one definition behind the plane anchor's and the land cover's value noise."""
    key, ca, sa, off = lattice_frame(seed, octave)
    u = (ca * x - sa * y) / wavelength + off
    v = (sa * x + ca * y) / wavelength - off
    i0 = np.floor(u)
    j0 = np.floor(v)
    fu, fv = u - i0, v - j0
    fu = fu * fu * fu * (fu * (fu * 6.0 - 15.0) + 10.0)
    fv = fv * fv * fv * (fv * (fv * 6.0 - 15.0) + 10.0)
    return key, i0.astype(np.int64), j0.astype(np.int64), fu, fv


def gauss_from_hash(h: np.ndarray) -> np.ndarray:
    """Approximately standard normal float32 (Irwin-Hall of four 16-bit lanes, |g| <= 3.46)."""
    m = np.uint64(0xFFFF)
    s = (h & m) + ((h >> np.uint64(16)) & m) + ((h >> np.uint64(32)) & m) + (h >> np.uint64(48))
    return (s.astype(np.int64) - 131070).astype(np.float32) * GAUSS_SCALE


def uniform_from_hash(h: np.ndarray) -> np.ndarray:
    """float64 uniform in [0, 1) from the top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def gauss(seed: int, level: int, stream: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(..., H, W) float32 counter-based normal noise at global samples rows x cols."""
    return gauss_from_hash(hash_grid(stream_key(seed, level, stream), rows, cols))


# ---------------------------------------------------------------- torch (same bits)

def _mix_torch(z):
    # Logical right shift of an int64: arithmetic shift, then clear the sign-extended bits.
    z = (z ^ ((z >> 30) & ((1 << 34) - 1))) * _signed(_M1)
    z = (z ^ ((z >> 27) & ((1 << 37) - 1))) * _signed(_M2)
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def hash_grid_torch(key: int, rows, cols):
    """torch twin of :func:`hash_grid`: int64 tensors in, (..., H, W) int64 out (same bits)."""
    k = _signed(key)
    hr = _mix_torch(rows * _signed(_ROW_SALT) + k)
    hc = _mix_torch((cols * _signed(_COL_SALT)) ^ k)
    return _mix_torch(hr[..., :, None] ^ hc[..., None, :])


def hash_pairs_torch(key: int, rows, cols):
    """torch twin of :func:`hash_pairs` (broadcasting int64 tensors, same bits)."""
    k = _signed(key)
    return _mix_torch(_mix_torch(rows * _signed(_ROW_SALT) + k) ^ _mix_torch((cols * _signed(_COL_SALT)) ^ k))


def gauss_from_hash_torch(h):
    import torch

    m = 0xFFFF
    s = (h & m) + ((h >> 16) & m) + ((h >> 32) & m) + ((h >> 48) & m)
    return (s - 131070).to(torch.float32) * _GAUSS_SCALE_F


def gauss_torch(seed: int, level: int, stream: int, rows, cols):
    """torch twin of :func:`gauss`; rows/cols int64 tensors on any device."""
    return gauss_from_hash_torch(hash_grid_torch(stream_key(seed, level, stream), rows, cols))
