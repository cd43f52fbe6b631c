"""The field pyramid (DESIGN.md section 2): tiles as windows of per-level fields.

Level ``ANCHOR_LEVEL`` (3) comes from the world's anchor (earth data or the
plane's continent generator); coarser levels are its even subsamples; every
finer level is the refiner applied to the level above. Work and caching are in
square blocks of ``block`` samples per level: block (L, bi, bj) holds global
samples rows bi*B .. bi*B+B and columns bj*B .. bj*B+B (B+1 each, sharing
edges like tiles do). A block is computed from exactly the parent crop its
refiner needs (its parent window plus ``margin``), which is assembled from
parent blocks, recursively up to the anchor, so a tile costs the blocks under
it plus a thin ring per level.

Why the bytes are pure: a block's values depend only on (world, seed, refiner,
level, block index), because the refiner is local and keyed by global
coordinates. Cache state, request order and batch composition only decide
*when* a block is computed, never what it holds. On earth, column block
indices are wrapped modulo the globe, so tile x = 2*2^L - 1 meets x = 0.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np

from generator.refiner import Refiner, make_refiner
from generator.worldmetric import cols_per_world
from runtime.lru import LRU, nbytes
from runtime.tiles import ANCHOR_LEVEL, MAX_LEVEL, T, TileKey, World, validate_key

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024
_MAX_BATCH_BLOCKS = 64  # refiner batch size bound (memory), does not change any value


class Anchor(Protocol):
    """Source of the anchor-level field."""

    channels: int
    digest: str  # hash of the data or the generator configuration

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """rows (H,), cols (W,) int64 anchor-level global samples -> (C, H, W) float32."""
        ...

    # Optional: ``constrain(fields (B, C, H, W), level, origins (B, 2)) -> fields`` applied to
    # every refined block (the earth's GLOBE blend and land/water rule). It must be a pure
    # function of location that leaves even samples obeying it unchanged (exact nesting).
    # Optional: ``hidden`` with ``refine(refiner, crops, level, origins, seed, margin) -> kids``:
    # a pure layer the refiner does not see (the earth's sub-grid peaks), or None.


@dataclass(frozen=True)
class TileFields:
    """One tile's fields: ``height`` (T+1, T+1) float32 metres, ``rgb`` (T+1, T+1, 3)
    float32 in [0, 1] or None, ``model`` the pyramid's model id. Both arrays are views of
    one (C, T+1, T+1) stack (``rgb`` is not C-contiguous); keep a copy, not a view."""

    key: TileKey
    height: np.ndarray
    rgb: np.ndarray | None
    model: str


def make_anchor(world: World, seed: int) -> Anchor:
    if world is World.PLANE:
        from generator.anchors.plane import PlaneAnchor

        return PlaneAnchor(seed)
    from generator.anchors.earth import EarthAnchor

    return EarthAnchor.shared()


class Pyramid:
    """Deterministic, seamless, nested field pyramid of one world and seed."""

    def __init__(self, world: World | str, seed: int, refiner: Refiner | str = "auto",
                 cache_bytes: int = DEFAULT_CACHE_BYTES, block: int = 64, anchor: Anchor | None = None):
        self.world = World.parse(world) if not isinstance(world, World) else world
        self.seed = int(seed)
        self.refiner = make_refiner(refiner, self.world) if isinstance(refiner, str) else refiner
        if block < 2 * self.refiner.margin + 2 or block % 2 or (2 * T) % block:
            raise ValueError(f"block must be even, divide {2 * T} and exceed 2*margin, got {block}")
        self.block = block
        self.anchor = anchor if anchor is not None else make_anchor(self.world, self.seed)
        relief = getattr(self.refiner, "relief", None)
        if relief is not None and hasattr(relief, "use_anchor"):
            relief.use_anchor(self.seed, self.anchor)  # regional detail read from this anchor
        if self.anchor.channels != self.refiner.channels:
            raise ValueError(f"anchor has {self.anchor.channels} channels, refiner {self.refiner.channels}")
        self.channels = self.refiner.channels
        self.cache = LRU(cache_bytes, size=nbytes)  # generated blocks, by bytes
        cfg = json.dumps({"refiner": self.refiner.config(), "anchor": self.anchor.digest, "block": block},
                         sort_keys=True)
        short = hashlib.sha256(cfg.encode()).hexdigest()[:10]
        self.model_id = f"{self.refiner.name}-{self.refiner.version}+{short}"
        self.blocks_computed = 0
        # Blocks per step of ``prepare`` (its budget is checked between steps): a CPU block costs
        # 0.4-9 ms (anchor and relief levels the most); a GPU refiner wants larger chunks. This is
        # the smallest chunk: once a level's seconds per block are measured (``_block_s``), a chunk
        # takes as many blocks as the rest of the budget fits (at most ``_MAX_BATCH_BLOCKS``), since
        # the refiner's per-call overhead dominates small batches (2-block chunks cost 12 ms of CPU
        # per fresh plane tile, budget-sized ones 8).
        self.step_blocks = 2
        self._block_s: dict[int, float] = {}  # level -> moving average of ``prepare`` seconds per block
        # ``prepare`` plans a batch's keys together (one refiner call per level and chunk for
        # all of them) where a call is a GPU round trip (LearnedRefiner.prefers_batches)
        self.prepare_together = bool(getattr(self.refiner, "prefers_batches", False))
        self._lock = threading.Lock()  # the cache is shared state: one request computes at a time
        self.shared = None  # a table of blocks shared with other processes (``share``), or None

    def share(self, table) -> None:
        """Use ``table`` (generator.sharedblocks.SharedBlocks: blocks of this model in shared memory)
        behind this pyramid's own cache: a block the cache lacks is looked up there before it is
        computed, and every block computed is put there. Values are unchanged (a block is a pure
        function of its index); ValueError if the table was made for another model or layout."""
        if (table.model_id, table.block, table.channels) != (self.model_id, self.block, self.channels):
            raise ValueError(f"shared blocks of {table.model_id} (block {table.block}, {table.channels} channels) "
                             f"do not fit {self.model_id} (block {self.block}, {self.channels} channels)")
        self.shared = table

    # ------------------------------------------------------------ public API

    def tile(self, key: TileKey) -> TileFields:
        """Fields of one tile (see :class:`TileFields`)."""
        return self.tiles([key])[0]

    def tiles(self, keys: Iterable[TileKey]) -> list[TileFields]:
        """Fields of many tiles, batched; identical bytes to asking one by one."""
        keys = [validate_key(self.world, k) for k in keys]
        with self._lock:
            fields = self._tile_arrays(keys)
        return [self._fields(k, fields[k]) for k in keys]

    def prepare(self, keys: Iterable[TileKey], budget_s: float,
                clock=time.thread_time, together: bool | None = None) -> list[tuple[bool, float]]:
        """Compute the blocks ``keys`` will need, key by key in the given order, coarse
        level first, ``step_blocks`` blocks at a time, until done or ``budget_s`` seconds
        of ``clock`` (default: this thread's CPU time, so a step's work does not shrink
        when other processes take the cores) have passed; at least one chunk per call, so
        every call progresses. Per key: (every block it needs is held, so ``tiles`` only
        assembles; seconds spent on it in this call).

        The generator's unit of preemption: a caller that serves many clients from one
        generator (streaming/tileservice.py) runs a deep fresh tile as several short calls
        and lets other clients' keys in between. Values are unchanged: a block is a pure
        function of its index, only *when* it is computed moves (a block evicted between
        calls is recomputed by the next call or by ``tiles``).

        ``together`` (default ``prepare_together``): plan every key's blocks at once, coarse
        level first, so each level's missing blocks of the whole batch go in chunks of up to
        ``_MAX_BATCH_BLOCKS`` (one refiner call each) instead of key by key; a key is done when
        its blocks are all held, and the seconds are shared evenly. For a refiner whose call is a
        round trip to a GPU: a batch of 16 sibling tiles in a new region asked each level's
        blocks key by key, ~3 calls a tile (docs/BENCHMARKS.md, 2026-12-06)."""
        keys = [validate_key(self.world, k) for k in keys]
        t0 = clock()
        out: list[tuple[bool, float]] = []
        worked = False  # every call computes at least one chunk, however small the budget
        with self._lock:
            if (self.prepare_together if together is None else together) and len(keys) > 1:
                done, _ = self._compute(self._plan(keys), t0, budget_s, clock, worked)
                done = [True] * len(keys) if done else [not self._plan([k]) for k in keys]
                share = (clock() - t0) / len(keys)
                return [(d, share) for d in done]
            for key in keys:
                t_key = clock()
                done, worked = self._compute(self._plan([key]), t0, budget_s, clock, worked)
                out.append((done, clock() - t_key))
        return out

    def _compute(self, plan, t0: float, budget_s: float, clock, worked: bool) -> tuple[bool, bool]:
        """Compute ``plan``'s blocks (``_plan``), coarse level first, in chunks sized by the
        budget left since ``t0``, until done or over budget (after at least one chunk of the
        whole call: ``worked``). Returns (every block computed, worked)."""
        for level, ids in plan:
            i = 0
            while i < len(ids):
                t_chunk = clock()
                if worked and t_chunk - t0 >= budget_s:
                    return False, worked
                chunk = ids[i : i + self._chunk_blocks(level, budget_s - (t_chunk - t0))]
                self._ensure(level, set(chunk), look_shared=False)  # ``_plan`` looked: missing there
                per_block = (clock() - t_chunk) / len(chunk)
                old = self._block_s.get(level)
                self._block_s[level] = per_block if old is None else 0.7 * old + 0.3 * per_block
                i += len(chunk)
                worked = True
        return True, worked

    def _chunk_blocks(self, level: int, left_s: float) -> int:
        """Blocks of ``level`` in the next ``prepare`` chunk: as many as ``left_s`` seconds fit
        at the level's measured seconds per block, between ``step_blocks`` and
        ``_MAX_BATCH_BLOCKS``. Only the chunking moves: a block's values do not depend on it."""
        per_block = self._block_s.get(level)
        if per_block is None or per_block <= 0.0:
            return self.step_blocks
        return max(self.step_blocks, min(_MAX_BATCH_BLOCKS, int(left_s / per_block)))

    def _plan(self, keys: list[TileKey]) -> list[tuple[int, list[tuple[int, int]]]]:
        """[(level, missing block ids)], coarsest level first: the blocks ``tiles(keys)``
        would compute now (the recursion of ``_ensure``, without computing).

        Held blocks of the whole ancestor chain are marked used on the way, not only the
        missing ones' parents: a client that keeps asking near one place keeps its chain
        (levels 3-4 cost 6-9 ms a block on a CPU, deeper ones <1 ms) while another client's
        one-off fresh chains are evicted first."""
        need: dict[int, set] = {}
        for k in keys:
            need.setdefault(k.level, set()).update(self._block_ids(k.y * T, k.x * T, T + 1, T + 1))
        plan = []
        m, B = self.refiner.margin, self.block
        hp = B // 2 + 1 + 2 * m
        for level in range(max(need, default=-1), -1, -1):
            ids = {(bi, self._wrap(level, bj)) for bi, bj in need.get(level, ())}
            missing = sorted(i for i in ids if not self.cache.touch((level, *i)))
            if missing and self.shared is not None:  # copied from the shared table: their parents are not needed
                fetched = {i for i in missing if self._from_shared((level, *i)) is not None}
                missing = [i for i in missing if i not in fetched]
                ids -= fetched
            if missing:
                plan.append((level, missing))
            if level > ANCHOR_LEVEL and ids:
                # ``_block_ids(bi * B // 2 - m, bj * B // 2 - m, hp, hp)`` of every id, its row
                # and column ranges computed once per distinct bi and bj
                rows = {bi: self._span(bi * B // 2 - m, hp) for bi in {bi for bi, _ in ids}}
                cols = {bj: self._span(bj * B // 2 - m, hp) for bj in {bj for _, bj in ids}}
                need.setdefault(level - 1, set()).update(
                    (pi, pj) for bi, bj in ids for pi in rows[bi] for pj in cols[bj])
        return plan[::-1]

    def _tile_arrays(self, keys: list[TileKey]) -> dict[TileKey, np.ndarray]:
        fields: dict[TileKey, np.ndarray] = {}
        for level in sorted({k.level for k in keys}, reverse=True):
            at_level = [k for k in keys if k.level == level]
            ids = set().union(*(self._block_ids(k.y * T, k.x * T, T + 1, T + 1) for k in at_level))
            have = self._ensure(level, ids)
            for k in at_level:
                fields[k] = self._assemble(level, k.y * T, k.x * T, T + 1, T + 1, have)
        return fields

    def _fields(self, key: TileKey, f: np.ndarray) -> TileFields:
        # Views of the tile's own (C, T+1, T+1) stack (height is contiguous, rgb channel-major):
        # transposing the colour here cost the generator thread ~0.5 ms a tile; consumers that
        # need (H, W, 3) memory copy it (the JPEG quantiser at uint8, a mesh worker's slot).
        rgb = np.moveaxis(f[1:4], 0, -1) if self.channels >= 4 else None
        return TileFields(key, np.ascontiguousarray(f[0]), rgb, self.model_id)

    def region(self, level: int, row0: int, col0: int, h: int, w: int) -> np.ndarray:
        """(C, h, w) float32 window of the level-``level`` field at global sample (row0, col0)."""
        if not 0 <= level <= MAX_LEVEL:
            raise ValueError(f"level must be in [0, {MAX_LEVEL}], got {level}")
        if h < 1 or w < 1:
            raise ValueError(f"region size must be positive, got {h} x {w}")
        with self._lock:
            have = self._ensure(level, self._block_ids(row0, col0, h, w))
            return self._assemble(level, row0, col0, h, w, have)

    # ------------------------------------------------------------ internals

    def _wrap(self, level: int, bj: int) -> int:
        if self.world is World.EARTH:
            return bj % (cols_per_world(level) // self.block)
        return bj

    def _span(self, start: int, n: int) -> range:
        """Block indices holding samples start .. start + n - 1 (one axis; blocks share edges)."""
        return range(start // self.block, max(start, start + n - 2) // self.block + 1)

    def _block_ids(self, row0: int, col0: int, h: int, w: int) -> set[tuple[int, int]]:
        return {(bi, bj) for bi in self._span(row0, h) for bj in self._span(col0, w)}

    def _assemble(self, level: int, row0: int, col0: int, h: int, w: int, have: dict) -> np.ndarray:
        B = self.block
        out = np.empty((self.channels, h, w), dtype=np.float32)
        r_end, c_end = row0 + h - 1, col0 + w - 1
        for bi, bj in self._block_ids(row0, col0, h, w):
            blk = have[(level, bi, self._wrap(level, bj))]
            r_a, r_b = max(row0, bi * B), min(r_end, bi * B + B)
            c_a, c_b = max(col0, bj * B), min(c_end, bj * B + B)
            out[:, r_a - row0 : r_b - row0 + 1, c_a - col0 : c_b - col0 + 1] = \
                blk[:, r_a - bi * B : r_b - bi * B + 1, c_a - bj * B : c_b - bj * B + 1]
        return out

    def _ensure(self, level: int, ids: set[tuple[int, int]], look_shared: bool = True) -> dict:
        """Blocks ``ids`` of ``level`` (un-wrapped indices ok) -> {(level, bi, bj_wrapped): array}.
        ``look_shared``: look up the ones this cache lacks in the shared table first (``prepare``'s
        chunks do not: its plan just did)."""
        have: dict = {}
        missing = []
        for bi, bj in sorted({(bi, self._wrap(level, bj)) for bi, bj in ids}):
            blk = self.cache.get((level, bi, bj))
            if blk is None and look_shared and self.shared is not None:
                blk = self._from_shared((level, bi, bj))
            if blk is None:
                missing.append((bi, bj))
            else:
                have[(level, bi, bj)] = blk
        if not missing:
            return have
        B = self.block
        if level <= ANCHOR_LEVEL:
            step = 1 << (ANCHOR_LEVEL - level)
            for bi, bj in missing:
                idx = np.arange(B + 1, dtype=np.int64)
                blk = self.anchor.sample((bi * B + idx) * step, (bj * B + idx) * step)
                self._store(have, (level, bi, bj), blk)
            return have
        m = self.refiner.margin
        hp = B // 2 + 1 + 2 * m
        parent_ids: set = set()
        for bi, bj in missing:
            parent_ids |= self._block_ids(bi * B // 2 - m, bj * B // 2 - m, hp, hp)
        parents = self._ensure(level - 1, parent_ids)
        for i in range(0, len(missing), _MAX_BATCH_BLOCKS):
            chunk = missing[i : i + _MAX_BATCH_BLOCKS]
            crops = self._crops(level - 1, [(bi * B // 2 - m, bj * B // 2 - m) for bi, bj in chunk], hp, parents)
            origins = np.array([(bi * B, bj * B) for bi, bj in chunk], dtype=np.int64)
            hidden = getattr(self.anchor, "hidden", None)  # a pure layer kept out of the refiner's sight
            if hidden is None:
                kids = self.refiner.refine(crops, level, origins, self.seed)
            else:  # earth: the sub-grid peaks (generator.anchors.subgrid); even samples stay the parents'
                kids = hidden.refine(self.refiner, crops, level, origins, self.seed, m)
            if hasattr(self.anchor, "constrain"):  # real data (earth): pure, keeps even samples
                kids = self.anchor.constrain(kids, level, origins, reuse=True)  # kids: this loop's own
            for (bi, bj), kid in zip(chunk, kids, strict=True):
                self._store(have, (level, bi, bj), kid)
        return have

    def _crops(self, level: int, origins: list[tuple[int, int]], size: int, have: dict) -> np.ndarray:
        """(n, C, size, size) windows of ``level`` at global samples ``origins`` (row0, col0),
        from the blocks in ``have``. When the windows' bounding box is compact and every block
        under it is held, the box is assembled once and the windows sliced from it (one
        ``_assemble`` per chunk instead of one per window: its per-call overhead was a tenth of
        a fresh tile's generation); otherwise one ``_assemble`` each. Same values either way."""
        r_lo, c_lo = min(r for r, _ in origins), min(c for _, c in origins)
        h, w = max(r for r, _ in origins) - r_lo + size, max(c for _, c in origins) - c_lo + size
        if len(origins) > 1 and h * w <= 2 * len(origins) * size * size:
            ids = self._block_ids(r_lo, c_lo, h, w)
            if all((level, bi, self._wrap(level, bj)) in have for bi, bj in ids):
                box = self._assemble(level, r_lo, c_lo, h, w, have)
                return np.stack([box[:, r - r_lo: r - r_lo + size, c - c_lo: c - c_lo + size] for r, c in origins])
        return np.stack([self._assemble(level, r, c, size, size, have) for r, c in origins])

    def _from_shared(self, key: tuple) -> np.ndarray | None:
        """Block ``key`` from the shared table, kept in this pyramid's cache too; None if not there."""
        blk = self.shared.get(key)
        if blk is not None:
            blk.setflags(write=False)
            self.cache.put(key, blk)
        return blk

    def _store(self, have: dict, key: tuple, blk: np.ndarray) -> None:
        blk = np.ascontiguousarray(blk, dtype=np.float32)
        blk.setflags(write=False)
        have[key] = blk
        self.cache.put(key, blk)
        if self.shared is not None:
            self.shared.put(key, blk)
        self.blocks_computed += 1


def open_world(world: World | str, seed: int, refiner: Refiner | str = "auto",
               cache_bytes: int = DEFAULT_CACHE_BYTES) -> Pyramid:
    """The pyramid of ``world`` (``plane`` or ``earth``) for ``seed`` with the chosen refiner."""
    return Pyramid(world, seed, refiner, cache_bytes=cache_bytes)
