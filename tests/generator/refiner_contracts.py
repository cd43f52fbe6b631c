"""Checks every learned-refiner variant must pass (imported by its tests)."""

import numpy as np


def assert_seam_batch_nesting(ref, level: int = 9, shift: int = 6, seed: int = 5) -> None:
    """A crop shifted by ``shift`` parent rows refines the same global samples to the same bits
    (seams), a batch gives each crop's bits alone, and the even child samples are the parents
    (nesting): on a random walk of heights and random colour."""
    m = ref.margin
    rng = np.random.default_rng(1)
    crop = 2 * m + 13
    big = np.cumsum(rng.normal(0, 20, (1, 4, crop + shift, crop)), 2).astype(np.float32) + 300
    big[:, 1:] = rng.uniform(0.1, 0.4, (1, 3, crop + shift, crop))
    o = np.array([[2 * 137, 2 * 201]])
    a = ref.refine(big[:, :, :crop], level, o, seed)
    b = ref.refine(big[:, :, shift : shift + crop], level, o + [[2 * shift, 0]], seed)
    assert np.array_equal(a[:, :, 2 * shift :], b[:, :, : a.shape[2] - 2 * shift])  # seams
    both = ref.refine(np.concatenate([big[:, :, :crop], big[:, :, shift : shift + crop]]), level,
                      np.concatenate([o, o + [[2 * shift, 0]]]), seed)
    assert np.array_equal(both[:1], a) and np.array_equal(both[1:], b)  # batch
    assert np.array_equal(a[:, :, ::2, ::2], big[:, :, m : crop - m, m:-m])  # nesting
