"""Tile wire codec: a TIN tile <-> a msgpack-ready dict (str/int/float/bytes/list/dict).

Decoding needs numpy and the standard library only (the viewer runs it on untrusted
network data, so every field is validated and errors say what was expected).

Two topology codings:

- ``rtin``: the mesh is a right-triangulated irregular network (what ``runtime.tin.simplify``
  makes). Its connectivity follows from which hypotenuse midpoints are split, so the
  payload carries one bit per midpoint whose triangle exists, level by level, coarse to
  fine, as in the split-flag coding of RTIN/bintree terrain (Evans et al. 2001;
  Pajarola's restricted quadtree coding). Heights are coded as residuals from the mean
  of the hypotenuse ends (the midpoint prediction), also level by level, so decoding is
  ~17 vectorised steps. ``border`` says how the border was meshed: ``fan`` (every border
  sample present, border triangles drawn as fans; border samples get residuals from
  their coarser neighbours along the edge) or ``rtin`` (plain RTIN; with the whole
  border kept, border splits are implied and not sent).
- ``indexed``: any triangle list: zig-zag delta coded grid u, v and heights in vertex
  order and high-water-mark coded indices as in Cesium quantized-mesh-1.0.

Heights are quantised to integers on a global lattice (``q * height_step_m`` with a
power-of-two step chosen per level), stored as uint16 offsets from the tile's minimum,
so two tiles that share an edge decode it to bit-identical float64 heights. u, v are
grid coordinates in [0, T] and exact. Integer streams are zig-zag coded, split into
byte planes and deflated (zlib), which is the entropy coder.

One file (~600 lines) because encoder and decoder must mirror each other stream by
stream: the version-1 format is defined by this file alone (docs/PROTOCOL.md).
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass

import numpy as np

import runtime.tin.meshkernels as meshkernels
from runtime import jit
from runtime.intstreams import ZLIB_LEVEL, _inflate, _pack_uints, _unpack_uints, _unzigzag, _zigzag, get_field
from runtime.tiles import T, TileKey, spacing_m
from runtime.tin.diamonds import diamond_candidates, diamond_interiors
from runtime.tin.faces import fan_face_count, first_use_order, mesh_vertices, number_vertices, tin_faces
from runtime.tin.hierarchy import hierarchy, rtin_steps
from runtime.tin.placement import edge_indices
from runtime.tin.rtin import close_border
from runtime.tin.simplify import rtin_vertex_set, simplify_rtin

FORMAT = "worldstream.tile"
VERSION = 1
MAX_GRID = 1024
"""Largest grid_size accepted from the network (the decoder builds lattice tables for it)."""
MAX_STREAM_BYTES = 64 << 20
"""Largest decompressed stream accepted (guards against deflate bombs)."""


def height_step_for_level(level: int) -> float:
    """Default height quantum (m) for a level: the power of two <= spacing / 256.

    About 0.4 % of the sample spacing (0.125 m for 30 m samples), far below the mesh
    error bounds; a power of two so that q * step is exact in float64."""
    return 2.0 ** math.floor(math.log2(spacing_m(level) / 256.0))


# ---------------------------------------------------------------- RTIN traversal


def _corner_ids(t: int) -> np.ndarray:
    n1 = t + 1
    return np.array([0, t, t * n1, t * n1 + t], dtype=np.int64)


def _border_mask(t: int) -> np.ndarray:
    """((t+1)^2 + 1,) bool: the tile's border samples (sentinel last, False)."""
    g = np.zeros((t + 1, t + 1), bool)
    g[[0, -1]] = True
    g[:, [0, -1]] = True
    return np.append(g.ravel(), False)


def _encode_rtin(
    grid_rc: np.ndarray, faces: np.ndarray, q: np.ndarray, t: int, known: tuple | None = None
) -> dict | None:
    """RTIN streams, or None when (grid_rc, faces) is not a canonical RTIN tile mesh.
    Tries the fan border first, then the plain RTIN. ``known`` = (mode, present,
    flipped) from ``simplify_rtin`` (mode "fan" or "rtin") skips the check."""
    n1 = t + 1
    ids = grid_rc[:, 0].astype(np.int64) * n1 + grid_rc[:, 1]
    if known is not None:
        mode, present, flipped = known
        whole_border = mode == "fan" or bool(_border_mask(t)[ids].sum() == 4 * t)
        return _rtin_streams(present, ids, q, t, mode, whole_border, flipped)
    vertices = np.zeros(n1 * n1 + 1, dtype=bool)  # last entry: sentinel for id -1
    vertices[ids] = True
    if not vertices[_corner_ids(t)].all():
        return None
    border = _border_mask(t)
    whole_border = bool(vertices[border].all())
    candidates = []
    if whole_border:
        present = vertices & ~border
        present[_corner_ids(t)] = True
        close_border(present, t)
        candidates.append(("fan", present))
    candidates.append(("rtin", vertices))
    if len(ids) > 1 and not (np.diff(ids) > 0).all():
        return None
    face_ids = ids[faces]
    edge_keys = None
    hier = hierarchy(t)
    for mode, present in candidates:
        # Flip bits: the candidates whose a1-a2 diagonal is an edge of the mesh.
        cands = diamond_candidates(present, t)
        flipped = np.zeros(n1 * n1 + 1, dtype=bool)
        if len(cands):
            if edge_keys is None:
                e = np.sort(np.concatenate([face_ids[:, [0, 1]], face_ids[:, [1, 2]], face_ids[:, [2, 0]]]), 1)
                edge_keys = np.sort(e[:, 0].astype(np.int64) * n1 * n1 + e[:, 1])
            a1, a2 = hier.diamond_a1[cands].astype(np.int64), hier.diamond_a2[cands].astype(np.int64)
            k = np.minimum(a1, a2) * n1 * n1 + np.maximum(a1, a2)
            pos = np.minimum(np.searchsorted(edge_keys, k), len(edge_keys) - 1)
            # A candidate inside a dropped diamond (one with a vertex at an edge midpoint)
            # can see its a1-a2 segment drawn as that diamond's fan edge: not a flip.
            with_kid = cands[present[hier.diamond_kid.take(cands, axis=0)].any(axis=1)]
            inside = diamond_interiors(with_kid, t)
            flipped[cands[(edge_keys[pos] == k) & ~inside[cands]]] = True
        canonical = tin_faces(present, t, "fan" if mode == "fan" else "graded", flipped)
        if canonical.shape != faces.shape or not np.array_equal(face_ids, canonical):
            continue
        return _rtin_streams(present, ids, q, t, mode, whole_border, flipped, cands)
    return None


@functools.lru_cache(maxsize=8)
def _all_steps(t: int) -> tuple[np.ndarray, ...]:
    """mid, p, q, a1, a2, border of every ``rtin_steps(t)`` step with midpoints, concatenated
    coarse to fine (the order of the split bits and height residuals)."""
    steps = rtin_steps(t)[:-1]
    out = tuple(np.concatenate([getattr(st, f) for st in steps]) for f in ("mid", "p", "q", "a1", "a2", "border"))
    for a in out:
        a.setflags(write=False)
    return out


def _rtin_streams(present, ids, q, t, mode, whole_border, flipped=None, cands=None) -> dict:
    """The rtin streams of vertex set ``present`` with flip bits ``flipped``; ``cands``:
    ``diamond_candidates(present, t)`` when the caller has it already."""
    n1 = t + 1
    qgrid = np.zeros(n1 * n1 + 1, dtype=np.int64)
    qgrid[ids] = q
    fan = mode == "fan"
    forced = whole_border and not fan  # plain RTIN keeping the border: border splits implied
    # All levels at once (the encoder knows the whole vertex set; the decoder walks them
    # coarse to fine): the steps' arrays concatenated in order.
    mid, pp, qq, a1, a2, on_border = _all_steps(t)
    if jit.ENABLED:  # the same arrays in one compiled pass (runtime.tin.meshkernels)
        flags, res = np.empty(len(mid), bool), np.empty(len(mid) + 4, np.int64)
        nf, nr = meshkernels.rtin_stream_arrays(present, qgrid, _corner_ids(t), mid, pp, qq, a1, a2, on_border,
                                            forced, fan, flags, res)
        flags, res = flags[:nf], [res[:nr]]
    else:
        cand = present[a1] | present[a2]
        split = present[mid]
        flags = split[cand & ~on_border if forced else cand]
        # Heights: every split midpoint; with fans also every border sample (from its
        # neighbours along the edge, which are coarser border samples).
        has_h = np.flatnonzero(split | on_border if fan else split)
        res = [qgrid[_corner_ids(t)], qgrid[mid[has_h]] - ((qgrid[pp[has_h]] + qgrid[qq[has_h]]) >> 1)]
    if cands is None:
        cands = diamond_candidates(present, t)
    flips = np.zeros(len(cands), bool) if flipped is None else flipped[cands]
    return {
        "border": mode,
        "whole_border": whole_border,
        "split_count": int(len(flags)),
        "splits": zlib.compress(np.packbits(flags).tobytes(), ZLIB_LEVEL),
        "flip_count": int(len(flips)),
        "flips": zlib.compress(np.packbits(flips).tobytes(), ZLIB_LEVEL),
        "heights": _pack_uints(_zigzag(np.concatenate(res))),
    }


@functools.lru_cache(maxsize=4)
def _splittable_steps(t: int) -> tuple[np.ndarray, ...]:
    """(mid, p, q, a1, a2, border) of ``rtin_steps(t)[:-1]`` (the steps with midpoints to
    split) concatenated in order, for ``kernels.rtin_decode``; read-only."""
    steps = rtin_steps(t)[:-1]
    out = tuple(np.ascontiguousarray(np.concatenate([getattr(st, f) for st in steps]))
                for f in ("mid", "p", "q", "a1", "a2", "border"))
    for v in out:
        v.setflags(write=False)
    return out


def _decode_rtin(p: dict, t: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n1 = t + 1
    mode = _get(p, "border", str)
    if mode not in ("fan", "rtin"):
        raise ValueError(f"border must be 'fan' or 'rtin', got {mode!r}")
    fan = mode == "fan"
    whole_border = _get(p, "whole_border", bool)
    if fan and not whole_border:
        raise ValueError("border 'fan' requires whole_border")
    forced = whole_border and not fan
    nbits = _get(p, "split_count", int)
    if not 0 <= nbits <= n1 * n1:
        raise ValueError(f"split_count must be in [0, {n1 * n1}], got {nbits}")
    raw = _inflate(_get(p, "splits", bytes), "splits", (nbits + 7) // 8)
    if len(raw) != (nbits + 7) // 8:
        raise ValueError(f"splits must hold {nbits} bits ({(nbits + 7) // 8} bytes), got {len(raw)} bytes")
    flags = np.unpackbits(np.frombuffer(raw, np.uint8), count=nbits).astype(bool)
    res = _unzigzag(_unpack_uints(_get(p, "heights", bytes), n, "heights"))
    present = np.zeros(n1 * n1 + 1, dtype=bool)
    qgrid = np.zeros(n1 * n1 + 1, dtype=np.int64)
    corners = _corner_ids(t)
    present[corners] = True
    qgrid[corners] = res[:4]
    from runtime.tin.kernels import rtin_decode  # numba loads here, on first use

    status, nb, nr = rtin_decode(flags, np.ascontiguousarray(res, np.int64), present, qgrid, *_splittable_steps(t),
                                 forced, fan)
    if status == 1:
        raise ValueError(f"splits ended early: the mesh needs more than the {nbits} bits sent")
    if status == 2:
        raise ValueError(f"the splits imply more than the {n} vertices announced")
    if nb != nbits or nr != n:
        raise ValueError(f"splits/heights do not match: used {nb}/{nbits} bits, {nr}/{n} vertices")
    flipped = None
    if "flips" in p:  # (absent in payloads from before diamond flips: none flipped)
        cands = diamond_candidates(present, t)
        nflip = _get(p, "flip_count", int)
        if nflip != len(cands):
            raise ValueError(f"flip_count must be {len(cands)} (the mesh's unsplit diamonds), got {nflip}")
        raw = _inflate(_get(p, "flips", bytes), "flips", (nflip + 7) // 8)
        if len(raw) != (nflip + 7) // 8:
            raise ValueError(f"flips must hold {nflip} bits ({(nflip + 7) // 8} bytes), got {len(raw)} bytes")
        flipped = np.zeros(n1 * n1 + 1, dtype=bool)
        flipped[cands] = np.unpackbits(np.frombuffer(raw, np.uint8), count=nflip).astype(bool)
        # the dropped diamonds (``dropped_diamonds``, from the candidates already found)
        kp = present[hierarchy(t).diamond_kid.take(cands, axis=0)].view(np.uint32).ravel() != 0  # any of 4
        dropped = np.zeros(n1 * n1 + 1, dtype=bool)
        dropped[cands[flipped[cands] | kp]] = True
    mode = "fan" if fan else "graded"
    faces = tin_faces(present, t, mode, flipped, None if flipped is None else dropped)
    grid_rc, faces = number_vertices(faces, n1, mesh_vertices(present, t, mode))
    if len(grid_rc) != n or len(faces) != m:
        raise ValueError(f"decoded {len(grid_rc)} vertices / {len(faces)} faces, payload says {n} / {m}")
    q = qgrid[grid_rc[:, 0].astype(np.int64) * n1 + grid_rc[:, 1]]
    return grid_rc, faces, q


# ---------------------------------------------------------------- indexed coding


def _hwm_encode(faces: np.ndarray) -> np.ndarray:
    """High-water-mark codes (quantized-mesh-1.0): code = highest - index, where highest
    is one more than the largest index seen so far. Needs indices in first-use order."""
    f = faces.reshape(-1).astype(np.int64)
    highest = np.maximum.accumulate(np.concatenate([[0], f[:-1] + 1]))
    return highest - f


def _hwm_decode(codes: np.ndarray) -> np.ndarray:
    # Sequential by nature; a code of 0 introduces a new vertex, so highest = 1 + the
    # count of zero codes seen before (first-use order makes that hold).
    zero = codes == 0
    highest = np.cumsum(zero) - zero
    return highest - codes


def _encode_indexed(grid_rc: np.ndarray, faces: np.ndarray, q: np.ndarray) -> dict:
    # Renumber vertices by first use so that high-water-mark coding applies.
    order = first_use_order(faces, len(grid_rc))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    grid_rc, q, faces = grid_rc[order], q[order], inv[faces]
    return {
        "u": _pack_uints(_zigzag(np.diff(grid_rc[:, 1].astype(np.int64), prepend=0))),
        "v": _pack_uints(_zigzag(np.diff(grid_rc[:, 0].astype(np.int64), prepend=0))),
        "heights": _pack_uints(_zigzag(np.diff(q, prepend=0))),
        "indices": _pack_uints(_hwm_encode(faces)),
    }


def _decode_indexed(p: dict, t: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    col = np.cumsum(_unzigzag(_unpack_uints(_get(p, "u", bytes), n, "u")))
    row = np.cumsum(_unzigzag(_unpack_uints(_get(p, "v", bytes), n, "v")))
    q = np.cumsum(_unzigzag(_unpack_uints(_get(p, "heights", bytes), n, "heights")))
    codes = _unpack_uints(_get(p, "indices", bytes), 3 * m, "indices").astype(np.int64)
    faces = _hwm_decode(codes)
    if len(faces) and (faces.min() < 0 or faces.max() >= n):
        raise ValueError(f"face indices must be in [0, {n - 1}]")
    if (
        (row.min(initial=0) < 0)
        or (row.max(initial=0) > t)
        or (col.min(initial=0) < 0)
        or (col.max(initial=0) > t)
    ):
        raise ValueError(f"vertex u, v must lie in [0, {t}]")
    return np.stack([row, col], 1), faces.reshape(-1, 3), q


# ---------------------------------------------------------------- public API


@dataclass(frozen=True, eq=False)
class DecodedTile:
    """A decoded tile.

    grid_rc: (n, 2) float64 [row, col] in [0, T]. height_m: (n,) float64 metres.
    faces: (m, 3) int32, CCW seen from above. west/south/east/north: int32 vertex
    indices on each edge, by increasing row (west, east) or column (south, north).
    """

    key: TileKey
    grid_size: int
    grid_rc: np.ndarray
    height_m: np.ndarray
    faces: np.ndarray
    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray
    height_min_m: float
    height_max_m: float
    height_step_m: float
    geometric_error_m: float
    model: str
    topology: str
    image: bytes | None
    image_format: str | None
    features: object | None = None  # runtime.featurelayer.FeatureLayer when the payload has the layer


def encode_tile(
    grid_rc: np.ndarray,
    height_m: np.ndarray,
    faces: np.ndarray,
    *,
    key: TileKey,
    geometric_error_m: float,
    model: str,
    rgb_jpeg_or_png: bytes | None = None,
    height_step_m: float | None = None,
    grid_size: int = T,
) -> dict:
    """Encode a tile mesh into a msgpack-ready dict.

    grid_rc: (n, 2) int [row, col] in [0, grid_size]; height_m: (n,) float metres;
    faces: (m, 3) int CCW. height_step_m: height quantum, a power of two (default
    ``height_step_for_level(key.level)``); doubled until the tile's range fits uint16.
    Uses the compact ``rtin`` coding when the mesh is the canonical RTIN of its vertex
    set (``runtime.tin.simplify_grid`` output), else ``indexed``.
    """
    rc = np.asarray(grid_rc)
    f = np.asarray(faces)
    h = np.asarray(height_m, dtype=np.float64)
    if rc.ndim != 2 or rc.shape[1] != 2 or len(rc) < 3:
        raise ValueError(f"grid_rc must be (n >= 3, 2) [row, col], got shape {rc.shape}")
    if rc.min() < 0 or rc.max() > grid_size or not np.array_equal(rc, np.round(rc)):
        raise ValueError(f"grid_rc must hold integers in [0, {grid_size}]")
    if h.shape != (len(rc),) or not np.all(np.isfinite(h)):
        raise ValueError(f"height_m must be ({len(rc)},) finite metres, got shape {h.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min() < 0 or f.max() >= len(rc):
        raise ValueError(f"faces must be (m, 3) indices in [0, {len(rc) - 1}], got shape {f.shape}")
    return _payload(
        rc.astype(np.int32),
        h,
        f.astype(np.int32),
        key=key,
        geometric_error_m=geometric_error_m,
        model=model,
        image=rgb_jpeg_or_png,
        height_step_m=height_step_m,
        grid_size=grid_size,
        known_rtin=None,
    )


def encode_heights(
    height_m: np.ndarray,
    max_error_m: float,
    *,
    key: TileKey,
    model: str,
    geometric_error_m: float | None = None,
    rgb_jpeg_or_png: bytes | None = None,
    height_step_m: float | None = None,
    border: str = "fan",
    positions_m: np.ndarray | None = None,
    faces: bool = True,
) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """The server path in one call: ``simplify_grid`` then ``encode_tile``, skipping the
    check that the mesh is the canonical RTIN (it is by construction).

    height_m: (T+1, T+1) float32 metres. Returns (payload, grid_rc, faces); the payload's
    geometric error defaults to ``max_error_m``. positions_m: the samples' true positions
    on a curved world (``runtime.tin.curvature.curved_positions``; ``simplify_grid``).
    ``faces=False`` (the server, which sends the vertex set and flip bits, not faces):
    with the ``fan`` border the faces are never built (their count follows from the
    vertex count, ``fan_face_count``) and None is returned for them; same payload."""
    h = np.asarray(height_m, dtype=np.float32)
    if faces or border != "fan":
        present, flipped, grid_rc, tris = simplify_rtin(h, max_error_m, border, positions_m=positions_m)
        face_count = len(tris)
    else:
        present, flipped, _ = rtin_vertex_set(h, max_error_m, border, positions_m=positions_m)
        t = h.shape[0] - 1
        ids = np.flatnonzero(mesh_vertices(present, t, border))
        grid_rc = np.stack([ids // (t + 1), ids % (t + 1)], axis=1).astype(np.int32)  # number_vertices' order
        tris, face_count = None, fan_face_count(len(ids), t)
    heights = h[grid_rc[:, 0], grid_rc[:, 1]].astype(np.float64)
    payload = _payload(
        grid_rc,
        heights,
        tris,
        key=key,
        geometric_error_m=max_error_m if geometric_error_m is None else geometric_error_m,
        model=model,
        image=rgb_jpeg_or_png,
        height_step_m=height_step_m,
        grid_size=h.shape[0] - 1,
        known_rtin=("fan" if border == "fan" else "rtin", present, flipped),
        face_count=face_count,
    )
    return payload, grid_rc, tris


def _payload(rc, h, f, *, key, geometric_error_m, model, image, height_step_m, grid_size, known_rtin,
             face_count: int | None = None) -> dict:
    """``f``: (m, 3) faces, or None with ``known_rtin`` and ``face_count`` (the rtin coding
    needs only the vertex set)."""
    step = float(height_step_m) if height_step_m is not None else height_step_for_level(key.level)
    if not (step > 0 and math.frexp(step)[0] == 0.5):
        raise ValueError(f"height_step_m must be a positive power of two, got {step!r}")
    qabs = np.round(h / step).astype(np.int64)
    while qabs.max() - qabs.min() > 65535:
        step *= 2.0
        qabs = np.round(h / step).astype(np.int64)
    qmin = int(qabs.min())
    q = qabs - qmin
    streams = _encode_rtin(rc, f, q, grid_size, known=known_rtin)
    topology = "rtin"
    if streams is None:
        topology = "indexed"
        streams = _encode_indexed(rc, f, q)
    return {
        "format": FORMAT,
        "version": VERSION,
        "key": [int(key.level), int(key.x), int(key.y)],
        "model": str(model),
        "geometric_error_m": float(geometric_error_m),
        "grid_size": int(grid_size),
        "height_min_m": float(h.min()),
        "height_max_m": float(h.max()),
        "height_step_m": step,
        "height_q0": qmin,
        "vertex_count": int(len(rc)),
        "face_count": int(len(f) if face_count is None else face_count),
        "topology": topology,
        "mesh": streams,
        "image": None if image is None else bytes(image),
    }


def _get(p: dict, name: str, kind: type):
    return get_field(p, name, kind, "tile", lacks="tile payload")


def decode_tile(payload: dict) -> DecodedTile:
    """Decode and validate a payload made by ``encode_tile`` (numpy + stdlib only).

    Raises ValueError naming the offending field on malformed input."""
    if not isinstance(payload, dict):
        raise ValueError(f"tile payload must be a dict, got {type(payload).__name__}")
    if payload.get("format") != FORMAT:
        raise ValueError(f"tile payload format must be {FORMAT!r}, got {payload.get('format')!r}")
    if payload.get("version") != VERSION:
        raise ValueError(f"tile payload version must be {VERSION}, got {payload.get('version')!r}")
    key = _get(payload, "key", list)
    if len(key) != 3 or not all(isinstance(k, int) and not isinstance(k, bool) for k in key) or key[0] < 0:
        raise ValueError(f"key must be [level >= 0, x, y] integers, got {key!r}")
    t = _get(payload, "grid_size", int)
    if not 2 <= t <= MAX_GRID or t & (t - 1):
        raise ValueError(f"grid_size must be a power of two in [2, {MAX_GRID}], got {t}")
    n = _get(payload, "vertex_count", int)
    m = _get(payload, "face_count", int)
    if not 3 <= n <= (t + 1) ** 2 or not 1 <= m <= 2 * t * t:
        raise ValueError(f"vertex_count must be in [3, {(t + 1) ** 2}] and face_count in [1, {2 * t * t}]")
    step = _get(payload, "height_step_m", float)
    if not (step > 0 and math.isfinite(step) and math.frexp(step)[0] == 0.5):
        raise ValueError(f"height_step_m must be a positive power of two, got {step!r}")
    q0 = _get(payload, "height_q0", int)
    topology = _get(payload, "topology", str)
    streams = _get(payload, "mesh", dict)
    if topology == "rtin":
        grid_rc, faces, q = _decode_rtin(streams, t, n, m)
    elif topology == "indexed":
        grid_rc, faces, q = _decode_indexed(streams, t, n, m)
    else:
        raise ValueError(f"topology must be 'rtin' or 'indexed', got {topology!r}")
    if q.min() < 0 or q.max() > 65535:
        raise ValueError("quantised heights must lie in [0, 65535]")
    image = payload.get("image")
    if image is not None and not isinstance(image, (bytes, bytearray)):
        raise ValueError(f"image must be bytes or None, got {type(image).__name__}")
    fmt = None
    if image is not None:
        image = bytes(image)
        fmt = "png" if image[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg" if image[:2] == b"\xff\xd8" else None
        if fmt is None:
            raise ValueError("image must be JPEG or PNG bytes")
    rc = grid_rc.astype(np.int64)
    edges = edge_indices(rc, t)
    features = None
    if payload.get("features") is not None:  # the optional feature layer (runtime.featurelayer)
        from runtime.featurelayer import decode_layer

        features = decode_layer(payload["features"], t)
    return DecodedTile(
        key=TileKey(*key),
        grid_size=t,
        grid_rc=rc.astype(np.float64),
        height_m=(q + q0).astype(np.float64) * step,
        faces=faces.astype(np.int32),
        west=edges[0],
        south=edges[1],
        east=edges[2],
        north=edges[3],
        height_min_m=_get(payload, "height_min_m", float),
        height_max_m=_get(payload, "height_max_m", float),
        height_step_m=step,
        geometric_error_m=_get(payload, "geometric_error_m", float),
        model=_get(payload, "model", str),
        topology=topology,
        image=image,
        image_format=fmt,
        features=features,
    )


def encode_image(rgb: np.ndarray, quality: int = 85) -> bytes:
    """(H, W, 3) float32 in [0, 1] -> JPEG bytes (Pillow, 4:2:0, ``quality``)."""
    from PIL import Image

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {a.shape}")
    u8 = _unit_to_u8(a)
    import io

    buf = io.BytesIO()
    Image.fromarray(u8, "RGB").save(buf, format="JPEG", quality=int(quality), optimize=True)
    return buf.getvalue()


def _unit_to_u8(a: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 as ``clip(round(nan_to_num(float32(a)) * 255), 0, 255)``, in one
    float32 buffer (the chain made five full copies): NaN -> 0, +-inf -> 255 / 0."""
    if jit.ENABLED and isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 3:
        out = np.empty(a.shape, np.uint8)  # one pass, the same bits (runtime.tin.meshkernels)
        meshkernels.unit_to_u8(a, out)
        return out
    b = np.multiply(a, np.float32(255.0), dtype=np.float32)  # float32(a) * 255 in float32, as before
    np.rint(b, out=b)
    np.clip(b, 0.0, 255.0, out=b)
    nan = np.isnan(b)
    if nan.any():
        b[nan] = 0.0
    return np.ascontiguousarray(b.astype(np.uint8))  # (H, W, 3) rows for Pillow, whatever a's layout


def decode_image(data: bytes) -> np.ndarray:
    """JPEG or PNG bytes -> (H, W, 3) uint8."""
    import io

    from PIL import Image

    try:
        img = Image.open(io.BytesIO(bytes(data)))
        img.load()
    except Exception as e:  # Pillow raises many types on corrupt data
        raise ValueError(f"image must be decodable JPEG or PNG bytes: {e}") from None
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
