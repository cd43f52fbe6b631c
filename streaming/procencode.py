"""Meshing and encoding in worker processes: a ``TileService`` encoder that uses every core.

``streaming.tileservice.mesh_encoder`` runs on the service's worker threads, which share
the GIL with the generator and the event loop: at saturation the server used 0.65-1.56 of
2 cores (issue 15). ``ProcessEncoder`` is the same encoder (same bytes: it calls
``mesh_encoder`` in the worker) behind a process pool; the service's threads block on the
result with the GIL released, so meshing runs in parallel with the generator.

The fields do not travel through the pool's pipe: each call copies the height grid
((T+1)^2 float32) and the colour (3 x (T+1)^2 float32, channel-major as the pyramid holds
it) into a shared-memory slot (a file
in /dev/shm mapped by both sides; one slot per call in flight) and sends only its name;
the frame (a few KiB) comes back pickled. Pickling the ~1 MB of fields cost ~1-2 ms of CPU
per tile on the two sides. Anything else a source adds (the feature layer's arrays) and
fields of other shapes still travel pickled.

Workers are started and warmed (imports, the RTIN hierarchy tables, a plane and an earth
tile encoded once) in the constructor: lazily, the first tiles after a start cost each
worker ~0.4 s, which the old bench counted as +6 ms per tile.
"""

from __future__ import annotations

import itertools
import mmap
import multiprocessing
import os
import tempfile
import threading
import weakref
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from runtime.tiles import T, TileKey, World

_ENCODE = None
_VIEWS: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # worker: slot path -> (height, rgb) read-only views

_N1 = T + 1
_H_BYTES = _N1 * _N1 * 4
_SLOT_BYTES = _H_BYTES + 3 * _H_BYTES  # float32 height, then float32 (3, T+1, T+1) colour
_WARM_TIMEOUT_S = 120.0
_PREFIX = "worldstream-enc-"  # slot files: _PREFIX + owner pid + "-" + ...


def _init(error_scale: float, ready, warm: bool) -> None:
    global _ENCODE
    import runtime.tin.warmup  # noqa: F401  (registers the mesher's warm-up)
    from runtime import jit
    from streaming.tileservice import mesh_encoder

    jit.warm()
    _ENCODE = mesh_encoder(error_scale)
    if warm:
        _warm_up()
    ready.put(os.getpid())


def _warm_up() -> None:
    """Encode a synthetic tile of each world once: imports and cached tables are paid here."""
    r, c = np.meshgrid(np.arange(_N1), np.arange(_N1), indexing="ij")
    h = (200.0 * np.sin(r / 17.0) * np.cos(c / 29.0)).astype(np.float32)
    rgb = np.stack([r / T, c / T, np.full(r.shape, 0.5)], -1).astype(np.float32)
    for world, key in ((World.PLANE, TileKey(9, 3, 2)), (World.EARTH, TileKey(9, 500, 100)),
                       (World.EARTH, TileKey(4, 10, 3))):
        _ENCODE(world, key, _Plain.of(h, rgb, "warm-up"))


def _views(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The worker's read-only arrays over a slot (mapped once per slot)."""
    v = _VIEWS.get(path)
    if v is None:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), _SLOT_BYTES, access=mmap.ACCESS_READ)
        h = np.frombuffer(buf, np.float32, _N1 * _N1).reshape(_N1, _N1)
        rgb = np.frombuffer(buf, np.float32, 3 * _N1 * _N1, offset=_H_BYTES).reshape(3, _N1, _N1)
        v = _VIEWS[path] = (h, np.moveaxis(rgb, 0, -1))  # (T+1, T+1, 3) view of the channel-major slot
    return v


def _encode(world: World, key: TileKey, fields) -> bytes:
    return _ENCODE(world, key, fields)


def _encode_slot(world: World, key: TileKey, path: str, has_rgb: bool, model: str, layer) -> bytes:
    h, rgb = _views(path)
    return _ENCODE(world, key, _Plain.of(h, rgb if has_rgb else None, model, layer))


def _ready() -> int:
    return os.getpid()


class ProcessEncoder:
    """``encode(world, key, fields) -> bytes`` (``streaming.tileservice.Encoder``) in
    ``processes`` worker processes (spawned: no inherited threads or CUDA state), started
    and warmed before the constructor returns (``warm=False``: imports only)."""

    def __init__(self, processes: int, error_scale: float = 1.0, warm: bool = True):
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Queue()
        self.pool = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init,
                                        initargs=(error_scale, ready, warm))
        # One task per process spawns them all (the pool starts one per submit while none is idle).
        for f in [self.pool.submit(_ready) for _ in range(processes)]:
            f.result(timeout=_WARM_TIMEOUT_S)
        for _ in range(processes):
            ready.get(timeout=_WARM_TIMEOUT_S)  # every worker has run its initializer
        shm = Path("/dev/shm")
        self._dir = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()
        _sweep(self._dir)
        self._free: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._paths: list[str] = []
        self._lock = threading.Lock()
        self._names = itertools.count()
        self._cleanup = weakref.finalize(self, _unlink, self._paths)

    def __call__(self, world: World, key: TileKey, fields) -> bytes:
        h, rgb = np.asarray(fields.height), fields.rgb
        if h.shape != (_N1, _N1) or (rgb is not None and np.shape(rgb) != (_N1, _N1, 3)):
            # Other shapes: a plain (picklable) copy of the fields, as sources may return their own classes.
            return self.pool.submit(_encode, world, key, _Plain(fields)).result()
        slot = self._take()
        try:
            path, sh, srgb = slot
            sh[...] = h  # float32 (the encoder's first step converts to float32 anyway)
            if rgb is not None:  # channel-major: a plain copy for the pyramid's (C, H, W) views
                srgb[...] = np.moveaxis(np.asarray(rgb), -1, 0)
            return self.pool.submit(_encode_slot, world, key, path, rgb is not None, fields.model,
                                    getattr(fields, "layer", None)).result()
        finally:
            with self._lock:
                self._free.append(slot)

    def _take(self) -> tuple[str, np.ndarray, np.ndarray]:
        """A free slot, or a new one: as many exist as calls were ever in flight at once."""
        with self._lock:
            if self._free:
                return self._free.pop()
            path = os.path.join(self._dir, f"{_PREFIX}{os.getpid()}-{id(self):x}-{next(self._names)}")
            self._paths.append(path)
        with open(path, "w+b") as f:
            f.truncate(_SLOT_BYTES)
            buf = mmap.mmap(f.fileno(), _SLOT_BYTES)
        h = np.frombuffer(buf, np.float32, _N1 * _N1).reshape(_N1, _N1)
        rgb = np.frombuffer(buf, np.float32, 3 * _N1 * _N1, offset=_H_BYTES).reshape(3, _N1, _N1)
        return path, h, rgb

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._cleanup()


def _sweep(folder: str) -> None:
    """Remove slot files left by encoders whose process is gone (killed before its exit
    handlers ran): their names start with ``_PREFIX`` and the owner's pid."""
    for p in Path(folder).glob(f"{_PREFIX}*"):
        try:
            pid = int(p.name[len(_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            p.unlink(missing_ok=True)


def _unlink(paths: list[str]) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


class _Plain:
    """The attributes an encoder reads from a source's fields (``tileservice.Fields``)."""

    __slots__ = ("height", "rgb", "model", "layer")

    def __init__(self, f):
        self.height, self.rgb, self.model = f.height, f.rgb, f.model
        self.layer = getattr(f, "layer", None)  # the optional feature layer's arrays

    @classmethod
    def of(cls, height, rgb, model: str, layer=None) -> _Plain:
        p = cls.__new__(cls)
        p.height, p.rgb, p.model, p.layer = height, rgb, model, layer
        return p

    def __getstate__(self):
        return (self.height, self.rgb, self.model, self.layer)

    def __setstate__(self, state):
        self.height, self.rgb, self.model, self.layer = state
