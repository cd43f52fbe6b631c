"""Compiled value noise: :func:`generator.noise.rotated_lattice` + the four lattice corners + the
bilinear-quintic mix of :func:`value_noise_numpy` (the numpy reference, below), fused into one pass per octave.

The same bits as the numpy reference (``tests/generator/test_valuenoise.py``): every float64
operation is written in the reference's order, numba compiles without ``fastmath`` (LLVM then
neither reassociates nor fuses a multiply and an add), the lattice hash is the SplitMix64
finaliser on uint64 (wrapping like numpy's), and ``cos`` / ``sin`` of an octave's angle are
taken once in Python, exactly as the reference does. numpy spent ~130 us per octave of a
65 x 65 block in ~25 array passes (the plane anchor has 25 octaves: 4.5 ms a block, the
largest generator cost of a teleport into a new plane region); the fused loop hashing four
corners a point made the block 1.6 ms (2026-12-06, 2-core box), and hashing each lattice node
once per call (``_accumulate``'s table) 0.95 ms.
"""

from __future__ import annotations

import functools

import numpy as np

from generator import noise
from generator.fractal_kernels import mix64
from runtime import jit

_C1, _C2 = np.uint64(noise.LATTICE_I_SALT), np.uint64(noise.LATTICE_J_SALT)


# ---------------------------------------------------------------- numpy reference

def value_noise_numpy(seed: int, octave: int, x: np.ndarray, y: np.ndarray, wavelength: float) -> np.ndarray:
    """Lattice value noise in [-1, 1] at float64 points (x, y) in samples; rotated per octave."""
    key, i0, j0, fu, fv = noise.rotated_lattice(seed, octave, x, y, wavelength)
    a, b, c, d = _corners(key, i0, j0)
    ab = a + (b - a) * fu  # one evaluation, used twice: the same bits as writing it twice
    return ab + ((c + (d - c) * fu) - ab) * fv


def _lattice_value(key: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return noise.uniform_from_hash(noise.lattice_hash(key, i, j)) * 2.0 - 1.0


def _corners(key: int, i0: np.ndarray, j0: np.ndarray):
    """Lattice values at the four corners (i0, j0), (i0+1, j0), (i0, j0+1), (i0+1, j0+1)
    of every point's cell. A long wavelength puts many points in few cells: then the
    values are hashed once per lattice node of the points' bounding range and gathered
    (the same function of the same integers: the same bits, ~4x less hashing)."""
    if i0.size:
        ilo, jlo = int(i0.min()), int(j0.min())
        ni, nj = int(i0.max()) - ilo + 2, int(j0.max()) - jlo + 2
        if ni * nj * 2 <= i0.size:
            ii = np.arange(ilo, ilo + ni, dtype=np.int64)[:, None] * np.ones((1, nj), np.int64)
            jj = np.ones((ni, 1), np.int64) * np.arange(jlo, jlo + nj, dtype=np.int64)[None, :]
            table = _lattice_value(key, ii, jj).ravel()
            flat = (i0 - ilo) * nj + (j0 - jlo)
            return (table.take(flat), table.take(flat + nj), table.take(flat + 1), table.take(flat + nj + 1))
    # lattice_hash mixes i*C1 + j*C2 + key, exact mod 2**64: the neighbours' sums are this
    # one plus C1 and / or C2 (same bits as hashing i0 + 1 and j0 + 1, half the multiplies).
    with np.errstate(over="ignore"):
        c1, c2 = np.uint64(noise.LATTICE_I_SALT), np.uint64(noise.LATTICE_J_SALT)
        s00 = noise.as_u64(i0) * c1 + noise.as_u64(j0) * c2 + np.uint64(key)
        s10 = s00 + c1
        return (_from_sum(s00), _from_sum(s10), _from_sum(s00 + c2), _from_sum(s10 + c2))


def _from_sum(s: np.ndarray) -> np.ndarray:
    """``_lattice_value`` from the summed lattice key (see ``noise.lattice_hash``)."""
    return noise.uniform_from_hash(noise.mix(s)) * 2.0 - 1.0


def fbm_numpy(seed: int, base: int, x, y, wavelength: float, octaves: int, gain: float = 0.5) -> np.ndarray:
    """Octaves of :func:`value_noise_numpy` (wavelength halving, amplitude x gain) over their
    amplitudes."""
    total = np.zeros(np.shape(x))
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total += amp * value_noise_numpy(seed, base + o, x, y, wavelength / 2**o)
        norm += amp
        amp *= gain
    return total / norm


# ---------------------------------------------------------------- compiled (same bits)

def _corner(s):
    """:func:`_from_sum`, compiled: lattice value in [-1, 1) of a summed lattice key."""
    return (mix64(s) >> np.uint64(11)) * (1.0 / 9007199254740992.0) * 2.0 - 1.0


def _accumulate(out, amp, x, y, key, ca, sa, off, wavelength, assign):
    """out[n] += amp * value noise at (x[n], y[n]), or out[n] = the noise if ``assign`` (all 1-D
    float64; key uint64). Where the points span few lattice cells (a block and an octave longer
    than a few samples: at most one node for two points), each node is hashed once into a table
    and the corners gathered from it, as the numpy reference's ``_corners`` does: the same
    function of the same integers (the key sums wrap alike), so the same bits, ~4 hashes a point
    fewer (the plane anchor's 25 octaves of a 65 x 65 block were ~1.6 ms, its teleport's largest
    generator cost)."""
    size = x.size
    if size == 0:
        return
    fi = np.empty(size, np.int64)
    fj = np.empty(size, np.int64)
    fus = np.empty(size)
    fvs = np.empty(size)
    ilo, jlo = np.int64(2**62), np.int64(2**62)
    ihi, jhi = -ilo, -jlo
    for n in range(size):
        u = (ca * x[n] - sa * y[n]) / wavelength + off
        v = (sa * x[n] + ca * y[n]) / wavelength - off
        ui = np.floor(u)
        vj = np.floor(v)
        fu = u - ui
        fv = v - vj
        fus[n] = fu * fu * fu * (fu * (fu * 6.0 - 15.0) + 10.0)
        fvs[n] = fv * fv * fv * (fv * (fv * 6.0 - 15.0) + 10.0)
        i = np.int64(ui)
        j = np.int64(vj)
        fi[n] = i
        fj[n] = j
        ilo, ihi = min(ilo, i), max(ihi, i)
        jlo, jhi = min(jlo, j), max(jhi, j)
    ni, nj = ihi - ilo + 2, jhi - jlo + 2
    table = np.empty(0)
    if ni <= size and nj <= size and ni * nj * 2 <= size:  # (each side first: no overflow)
        table = np.empty(ni * nj)
        for p in range(ni):
            s0 = np.uint64(ilo + p) * _C1 + key
            for q in range(nj):
                table[p * nj + q] = _corner(s0 + np.uint64(jlo + q) * _C2)
    for n in range(size):
        fu = fus[n]
        fv = fvs[n]
        if table.size:
            t = (fi[n] - ilo) * nj + (fj[n] - jlo)
            a = table[t]
            b = table[t + nj]
            c = table[t + 1]
            d = table[t + nj + 1]
        else:
            s00 = np.uint64(fi[n]) * _C1 + np.uint64(fj[n]) * _C2 + key
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


if jit.ENABLED:
    _corner = jit.njit(_corner)
    _accumulate = jit.njit(_accumulate)


@jit.warmer
def _warm() -> None:
    value_noise(0, 0, np.zeros(2), np.zeros(2), 3.0)


@functools.lru_cache(maxsize=4096)
def _octave(seed: int, octave: int) -> tuple[np.uint64, float, float, float]:
    """:func:`generator.noise.lattice_frame` with the key as uint64, once per (seed, octave)."""
    key, ca, sa, off = noise.lattice_frame(seed, octave)
    return np.uint64(key), ca, sa, off


def _flat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return np.ascontiguousarray(x).ravel(), np.ascontiguousarray(y).ravel(), x.shape


def value_noise(seed: int, octave: int, x: np.ndarray, y: np.ndarray, wavelength: float) -> np.ndarray:
    """Value noise in [-1, 1] at float64 points (x, y), same shape: the same bits as
    :func:`value_noise_numpy` (which runs where numba is not installed)."""
    if not jit.ENABLED:
        return value_noise_numpy(seed, octave, x, y, wavelength)
    xf, yf, shape = _flat(x, y)
    out = np.empty(xf.size)
    key, ca, sa, off = _octave(seed, octave)
    _accumulate(out, 1.0, xf, yf, key, ca, sa, off, float(wavelength), True)
    return out.reshape(shape)


def fbm(seed: int, base: int, x: np.ndarray, y: np.ndarray, wavelength: float, octaves: int,
        gain: float = 0.5) -> np.ndarray:
    """Sum of ``octaves`` octaves (base, base + 1, ...; wavelength halving, amplitude x gain)
    over their amplitudes: the same bits as :func:`fbm_numpy` (which runs without numba)."""
    if not jit.ENABLED:
        return fbm_numpy(seed, base, x, y, wavelength, octaves, gain)
    xf, yf, shape = _flat(x, y)
    total = np.zeros(xf.size)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        key, ca, sa, off = _octave(seed, base + o)
        _accumulate(total, amp, xf, yf, key, ca, sa, off, float(wavelength / 2**o), False)
        norm += amp
        amp *= gain
    return (total / norm).reshape(shape)
