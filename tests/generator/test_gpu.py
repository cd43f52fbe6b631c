"""GPU-only: the same pyramid contracts with refiners running on CUDA (skipped without one).

Run on the device machine: `python -m pytest -q -m gpu tests/generator`.
"""

import numpy as np
import pytest
import torch

from generator.fractal import FractalRefiner
from generator.pyramid import Pyramid
from runtime.tiles import T, TileKey

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("world", ["plane", "earth"])
def test_fractal_on_cuda_matches_the_cpu_reference_within_a_millimetre(world):
    key = TileKey(11, 1060, 300) if world == "earth" else TileKey(11, -7, 12)
    cpu = Pyramid(world, 5, FractalRefiner(world)).tile(key)
    gpu = Pyramid(world, 5, FractalRefiner(world, device="cuda")).tile(key)
    assert np.abs(cpu.height - gpu.height).max() <= 1e-3
    assert np.abs(cpu.rgb - gpu.rgb).max() <= 1e-3


def test_learned_on_cuda_nests_exactly_and_meets_neighbours_within_a_millimetre():
    from generator.learned.refiner import LearnedRefiner

    pyr = Pyramid("plane", 9, LearnedRefiner("plane", device="cuda"))
    assert pyr.model_id.startswith("learned-")
    key = TileKey(13, 40, -21)
    child, east, parent = pyr.tile(key), pyr.tile(TileKey(13, 41, -21)), pyr.tile(key.parent())
    # Exact nesting: the child's even samples are the matching quarter of its parent.
    r0, c0 = (key.y & 1) * (T // 2), (key.x & 1) * (T // 2)
    assert np.array_equal(child.height[::2, ::2], parent.height[r0:r0 + T // 2 + 1, c0:c0 + T // 2 + 1])
    # Seamless: the shared edge agrees.
    assert np.abs(child.height[:, -1] - east.height[:, 0]).max() <= 1e-3
    # Deterministic across batch composition (same backend): the same bytes when the tile
    # and its ancestors were computed together with other tiles.
    again = Pyramid("plane", 9, LearnedRefiner("plane", device="cuda")).tiles(
        [TileKey(13, 39, -21), key, TileKey(13, 40, -20)])[1]
    assert np.array_equal(again.height, child.height) and np.array_equal(again.rgb, child.rgb)
