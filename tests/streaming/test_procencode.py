"""ProcessEncoder: the production encoder in worker processes gives the same frame bytes."""

from dataclasses import dataclass

import numpy as np
import pytest

from runtime.tiles import T, TileKey, World
from streaming.procencode import ProcessEncoder
from streaming.tileservice import mesh_encoder


@dataclass
class _Fields:
    height: np.ndarray
    rgb: np.ndarray | None
    model: str


def test_process_encoder_matches_the_thread_encoder_byte_for_byte():
    r, c = np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij")
    h = (300.0 * np.sin(r / 19.0) * np.cos(c / 23.0) + 0.5 * r).astype(np.float32)
    rgb = np.stack([r / T, c / T, np.full_like(r, 0.5, dtype=np.float64)], -1).astype(np.float32)
    key = TileKey(9, 3, 2)
    enc = ProcessEncoder(1)
    try:
        for fields in (_Fields(h, None, "test"), _Fields(h, rgb, "test")):
            got = enc(World.PLANE, key, fields)
            assert isinstance(got, bytes) and got == mesh_encoder()(World.PLANE, key, fields)
    finally:
        enc.close()
    with pytest.raises(ValueError, match="processes must be >= 1"):
        ProcessEncoder(0)
