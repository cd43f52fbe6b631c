"""Meshing and encoding in worker processes: a ``TileService`` encoder that uses every core.

``streaming.tileservice.mesh_encoder`` runs on the service's worker threads, which share
the GIL: at saturation the server used 1.0-1.56 of 2 cores (issue 15). ``ProcessEncoder``
is the same encoder (same bytes: it calls ``mesh_encoder`` in the worker) behind a process
pool; the service's threads block on the result with the GIL released, so meshing runs in
parallel with the generator and the event loop. Fields travel pickled (one (T+1)^2 float32
height grid and an optional RGB grid, ~1 MB), the frame comes back as bytes.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from runtime.tiles import TileKey, World

_ENCODE = None


def _init(error_scale: float) -> None:
    global _ENCODE
    from streaming.tileservice import mesh_encoder

    _ENCODE = mesh_encoder(error_scale)


def _encode(world: World, key: TileKey, fields) -> bytes:
    return _ENCODE(world, key, fields)


class ProcessEncoder:
    """``encode(world, key, fields) -> bytes`` (``streaming.tileservice.Encoder``) in
    ``processes`` worker processes (spawned: no inherited threads or CUDA state)."""

    def __init__(self, processes: int, error_scale: float = 1.0):
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init, initargs=(error_scale,))

    def __call__(self, world: World, key: TileKey, fields) -> bytes:
        # A plain (picklable) copy of the fields: sources may return their own classes.
        return self.pool.submit(_encode, world, key, _Plain(fields)).result()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Plain:
    """The attributes an encoder reads from a source's fields (``tileservice.Fields``)."""

    __slots__ = ("height", "rgb", "model", "layer")

    def __init__(self, f):
        self.height, self.rgb, self.model = f.height, f.rgb, f.model
        self.layer = getattr(f, "layer", None)  # the optional feature layer's arrays

    def __getstate__(self):
        return (self.height, self.rgb, self.model, self.layer)

    def __setstate__(self, state):
        self.height, self.rgb, self.model, self.layer = state
