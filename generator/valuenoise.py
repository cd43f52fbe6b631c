"""Compiled value noise: :func:`generator.noise.rotated_lattice` + the four lattice corners + the
bilinear-quintic mix of ``generator.anchors.plane._value_noise``, fused into one pass per octave.

The same bits as the numpy reference (``tests/generator/test_valuenoise.py``): every float64
operation is written in the reference's order, numba compiles without ``fastmath`` (LLVM then
neither reassociates nor fuses a multiply and an add), the lattice hash is the SplitMix64
finaliser on uint64 (wrapping like numpy's), and ``cos`` / ``sin`` of an octave's angle are
taken once in Python, exactly as the reference does. numpy spent ~130 us per octave of a
65 x 65 block in ~25 array passes (the plane anchor has 25 octaves: 4.5 ms a block, the
largest generator cost of a teleport into a new plane region); the fused loop ~15 us.
"""

from __future__ import annotations

import numba
import numpy as np

from generator import noise

_M1, _M2 = np.uint64(noise._M1), np.uint64(noise._M2)
_C1, _C2 = np.uint64(noise.LATTICE_I_SALT), np.uint64(noise.LATTICE_J_SALT)
_JIT = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


@numba.njit(**_JIT)
def _corner(s):
    """``generator.anchors.plane._from_sum``: lattice value in [-1, 1) of a summed lattice key."""
    z = (s ^ (s >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0) * 2.0 - 1.0


@numba.njit(**_JIT)
def _accumulate(out, amp, x, y, key, ca, sa, off, wavelength, assign):
    """out[n] += amp * value noise at (x[n], y[n]), or out[n] = the noise if ``assign`` (all 1-D
    float64; key uint64)."""
    for n in range(x.size):
        u = (ca * x[n] - sa * y[n]) / wavelength + off
        v = (sa * x[n] + ca * y[n]) / wavelength - off
        fi = np.floor(u)
        fj = np.floor(v)
        fu = u - fi
        fv = v - fj
        fu = fu * fu * fu * (fu * (fu * 6.0 - 15.0) + 10.0)
        fv = fv * fv * fv * (fv * (fv * 6.0 - 15.0) + 10.0)
        s00 = np.uint64(np.int64(fi)) * _C1 + np.uint64(np.int64(fj)) * _C2 + key
        s10 = s00 + _C1
        a = _corner(s00)
        b = _corner(s10)
        c = _corner(s00 + _C2)
        d = _corner(s10 + _C2)
        ab = a + (b - a) * fu
        val = ab + ((c + (d - c) * fu) - ab) * fv
        if assign:
            out[n] = val
        else:
            out[n] += amp * val


def _octave(seed: int, octave: int) -> tuple[np.uint64, float, float, float]:
    """(key, cos, sin, offset) of ``octave``'s lattice, as :func:`generator.noise.rotated_lattice`."""
    key = noise.stream_key(seed, 1000 + octave, 7)
    ang = 0.61803398875 * (octave + 1) * 2.399963229728653  # golden-angle steps
    return np.uint64(key), float(np.cos(ang)), float(np.sin(ang)), (key & 0xFFFF) / 65536.0 * 977.0


def _flat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return np.ascontiguousarray(x).ravel(), np.ascontiguousarray(y).ravel(), x.shape


def value_noise(seed: int, octave: int, x: np.ndarray, y: np.ndarray, wavelength: float) -> np.ndarray:
    """Value noise in [-1, 1] at float64 points (x, y), same shape: the same bits as
    ``generator.anchors.plane._value_noise(seed, octave, x, y, wavelength)``."""
    xf, yf, shape = _flat(x, y)
    out = np.empty(xf.size)
    key, ca, sa, off = _octave(seed, octave)
    _accumulate(out, 1.0, xf, yf, key, ca, sa, off, float(wavelength), True)
    return out.reshape(shape)


def fbm(seed: int, base: int, x: np.ndarray, y: np.ndarray, wavelength: float, octaves: int,
        gain: float = 0.5) -> np.ndarray:
    """Sum of ``octaves`` octaves (base, base + 1, ...; wavelength halving, amplitude x gain)
    over their amplitudes: the same bits as ``generator.anchors.plane._fbm``."""
    xf, yf, shape = _flat(x, y)
    total = np.zeros(xf.size)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        key, ca, sa, off = _octave(seed, base + o)
        _accumulate(total, amp, xf, yf, key, ca, sa, off, float(wavelength / 2**o), False)
        norm += amp
        amp *= gain
    return (total / norm).reshape(shape)
