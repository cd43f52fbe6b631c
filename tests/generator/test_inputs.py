"""The learned refiner's inputs: counter-based noise (numpy == torch) and parent widening."""

import numpy as np
import torch

from generator.learned.inputs import noise_coords, noise_numpy, noise_torch, noise_torch_keys, stream_keys, widen


def test_noise_is_counter_based_and_identical_in_numpy_and_torch():
    rows = np.arange(-20, 20, 2, dtype=np.int64).reshape(2, 10) * 101
    cols = np.arange(10**12, 10**12 + 24, 2, dtype=np.int64).reshape(2, 6)
    a = noise_numpy(3, 14, rows, cols, 4)
    b = noise_torch(3, 14, torch.from_numpy(rows), torch.from_numpy(cols), 4).numpy()
    assert a.shape == (2, 4, 10, 6) and np.array_equal(a, b)
    assert abs(float(a.std()) - 1.0) < 0.2


def test_traceable_noise_from_key_tensors_is_the_same_bits():
    rows, cols = noise_coords(np.array([[4, -6], [1000, 2**40]]), 7, 5, 2)
    keys = torch.tensor(stream_keys(9, 12, 3), dtype=torch.int64)
    a = noise_torch_keys(keys, torch.from_numpy(rows), torch.from_numpy(cols)).numpy()
    assert np.array_equal(a, noise_numpy(9, 12, rows, cols, 3))


def test_noise_coords_are_child_coordinates_of_the_parent_samples():
    rows, cols = noise_coords(np.array([[10, -4]]), 3, 4, 1)
    assert rows.tolist() == [[8, 10, 12]] and cols.tolist() == [[-6, -4, -2, 0]]


def test_widen_adds_an_absent_nir_band():
    p = np.ones((2, 4, 3, 3), np.float32)
    p5, present = widen(p)
    assert p5.shape == (2, 5, 3, 3) and np.all(p5[:, 4] == 0) and np.array_equal(p5[:, :4], p)
    assert present.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    p5, present = widen(np.ones((1, 5, 3, 3), np.float32))
    assert present.tolist() == [[1.0, 1.0]]
