"""Heights -> simplified TIN (``simplify_grid``), and the measures of a TIN against
samples: its max vertical error and the geometric error from the next level's data."""

from __future__ import annotations

import numpy as np

from runtime.tin.diamonds import drop_diamonds
from runtime.tin.faces import mesh_vertices, number_vertices, tin_faces
from runtime.tin.rtin import rtin_errors, rtin_vertices


def simplify_grid(
    height_m: np.ndarray, max_error_m: float, border: str = "fan", flips: bool = True,
    positions_m: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive TIN of a tile's height grid within ``max_error_m`` error.

    height_m: ``(T+1, T+1) float32`` metres, T a power of two (256).
    positions_m: None (the error is vertical: |sample - face| in height) or the samples'
    true positions ``(C, T+1, T+1) float64`` metres in a frame where the mesh is flat
    (``runtime.tin.curvature.curved_positions`` on the earth): then a triangle's error is
    the norm over components of its max |residual| per component, which bounds the 3D
    distance from each sample to where the flat face draws it (height error + chord sag).
    Returns ``grid_rc (n, 2) int32`` [row, col] of the kept samples and ``faces (m, 3)
    int32`` indices into grid_rc, counter-clockwise seen from above (east = +col,
    north = -row). With ``border`` "fan" (default) or "graded" every border sample is
    kept (see BORDERS). The numbering is canonical (``number_vertices``): the wire codec
    rebuilds exactly these arrays from the vertex set.
    """
    _, _, grid_rc, faces = simplify_rtin(height_m, max_error_m, border, flips, positions_m)
    return grid_rc, faces


def simplify_rtin(
    height_m: np.ndarray, max_error_m: float, border: str = "fan", flips: bool = True,
    positions_m: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """``simplify_grid`` that also returns its RTIN vertex set after ``drop_diamonds`` and
    the flip bits (``present``, ``flipped`` or None; what the wire codec sends), then
    grid_rc, faces. ``flips``: False for the plain RTIN."""
    present, flipped, dropped = rtin_vertex_set(height_m, max_error_m, border, flips, positions_m)
    t = np.shape(height_m)[0] - 1
    faces = tin_faces(present, t, border, flipped, dropped)
    grid_rc, faces = number_vertices(faces, t + 1, mesh_vertices(present, t, border))
    return present, flipped, grid_rc, faces


def rtin_vertex_set(
    height_m: np.ndarray, max_error_m: float, border: str = "fan", flips: bool = True,
    positions_m: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The first half of ``simplify_rtin``: the RTIN vertex set after ``drop_diamonds``
    (``present``, ((T+1)^2 + 1,) bool, sentinel last) and the ``flipped`` and ``dropped``
    bits (same shape, or None without ``flips``), without building the faces: what the
    wire codec sends (``runtime.wire.encode_heights(faces=False)``, the server's path)."""
    if not (np.isfinite(max_error_m) and max_error_m >= 0):
        raise ValueError(f"max_error_m must be a finite number >= 0, got {max_error_m!r}")
    if positions_m is None:
        fields = np.asarray(height_m)[None]
        err = rtin_errors(height_m, max_error_m, border, exact=False)  # compared with the bound only
    else:
        fields = np.asarray(positions_m, dtype=np.float64)
        n1 = np.asarray(height_m).shape[0]
        if fields.ndim != 3 or fields.shape[1:] != (n1, n1):
            raise ValueError(f"positions_m must be (C, {n1}, {n1}) metres, got shape {fields.shape}")
        # Per component: entries above the bound only bound it from below, and then so
        # does the norm; where every component is measured the norm is exact.
        if len(fields) == 1 and 1e-150 <= max_error_m <= 1e150:
            # One component (the up alone): sqrt(e^2) is e exactly (round to nearest) but where
            # e^2 under- or overflows (e < 1e-154 or > 1e154), and such an e and its sqrt(e^2)
            # lie on the same side of a bound in this range: the same vertex set, one pass less.
            err = rtin_errors(fields[0], max_error_m, border, exact=False)
        else:  # a norm of entries: exact ones (a bound per component could push it over)
            err = np.sqrt(sum(np.square(rtin_errors(f, max_error_m, border)) for f in fields))
    present = rtin_vertices(err, max_error_m, border)
    dropped, flipped = drop_diamonds(fields, present, max_error_m) if flips else (None, None)
    return present, flipped, dropped


def max_vertical_error(height_m: np.ndarray, grid_rc: np.ndarray, faces: np.ndarray) -> float:
    """Measured max |mesh - samples| (m) over every grid sample, by rasterising each face
    (``face_residuals``). Raises ValueError if some sample is not covered (a hole)."""
    res, _, _ = face_residuals(np.asarray(height_m, dtype=np.float64)[None], grid_rc, faces)
    return float(np.abs(res[0]).max())


def face_residuals(field: np.ndarray, grid_rc: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sample minus mesh at every (face, covered sample) pair: ``(C, k) float64`` residuals
    of a (C, T+1, T+1) field interpolated linearly over each face, and the samples' rows
    and cols (k,) int64 (a sample on a shared edge appears once per face).

    Scanline rasterisation (each face's row span, then the exact column interval on each
    row), vectorised over faces, so long thin fans cost their area, not their bounding
    box. Raises ValueError if some sample is not covered (a hole)."""
    f = np.asarray(field, dtype=np.float64)
    h = f[0]
    p = np.asarray(grid_rc, dtype=np.float64)[np.asarray(faces)]  # (m, 3, 2)
    pi = p.astype(np.int64)
    z = f[:, pi[..., 0], pi[..., 1]]  # (C, m, 3)
    r_lo, r_hi = p[..., 0].min(axis=1).astype(np.int64), p[..., 0].max(axis=1).astype(np.int64)
    span = r_hi - r_lo + 1
    fid = np.repeat(np.arange(len(p)), span)
    row = (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span) + r_lo[fid]).astype(np.float64)
    # Column interval of each (face, row): where the row line crosses the face's edges.
    lo = np.full(len(fid), np.inf)
    hi = np.full(len(fid), -np.inf)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        ra, ca, rb, cb = p[fid, a, 0], p[fid, a, 1], p[fid, b, 0], p[fid, b, 1]
        crosses = (np.minimum(ra, rb) <= row) & (row <= np.maximum(ra, rb))
        flat_edge = ra == rb
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(flat_edge, ca, ca + (row - ra) * (cb - ca) / (rb - ra))
        x2 = np.where(flat_edge, cb, x)
        lo = np.where(crosses, np.minimum(lo, np.minimum(x, x2)), lo)
        hi = np.where(crosses, np.maximum(hi, np.maximum(x, x2)), hi)
    c0 = np.ceil(lo - 1e-9).astype(np.int64)
    c1 = np.floor(hi + 1e-9).astype(np.int64)
    width = np.maximum(c1 - c0 + 1, 0)
    fid2 = np.repeat(fid, width)
    r = np.repeat(row, width).astype(np.int64)
    c = np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width) + np.repeat(c0, width)
    (r0, c0_), (r1, c1_), (r2, c2_) = (p[fid2, i].T for i in range(3))
    det = (r1 - r0) * (c2_ - c0_) - (r2 - r0) * (c1_ - c0_)
    w1 = ((r - r0) * (c2_ - c0_) - (r2 - r0) * (c - c0_)) / det
    w2 = ((r1 - r0) * (c - c0_) - (r - r0) * (c1_ - c0_)) / det
    zi = (1.0 - w1 - w2) * z[:, fid2, 0] + w1 * z[:, fid2, 1] + w2 * z[:, fid2, 2]
    covered = np.zeros(h.shape, dtype=bool)
    covered[r, c] = True
    if not covered.all():
        raise ValueError("faces do not cover every grid sample (mesh has holes)")
    return f[:, r, c] - zi, r, c


def children_grid(nw: np.ndarray, ne: np.ndarray, sw: np.ndarray, se: np.ndarray) -> np.ndarray:
    """The four children's (T+1, T+1) grids as one (2T+1, 2T+1) grid (they share edges).
    Raises ValueError if the shared edges disagree."""
    t = nw.shape[0] - 1
    for name, a, b in (("nw/ne", nw[:, -1], ne[:, 0]), ("sw/se", sw[:, -1], se[:, 0])):
        if not np.array_equal(a, b):
            raise ValueError(f"children {name} must share their edge samples")
    for name, a, b in (("nw/sw", nw[-1], sw[0]), ("ne/se", ne[-1], se[0])):
        if not np.array_equal(a, b):
            raise ValueError(f"children {name} must share their edge samples")
    out = np.empty((2 * t + 1, 2 * t + 1), dtype=np.result_type(nw, ne, sw, se))
    out[: t + 1, : t + 1], out[: t + 1, t:] = nw, ne
    out[t:, : t + 1], out[t:, t:] = sw, se
    return out


def geometric_error_m(grid_rc: np.ndarray, faces: np.ndarray, children_height_m: np.ndarray) -> float:
    """The tile's geometric error from data (DESIGN.md section 3): the max vertical
    distance (m) between its mesh and the next level's samples over the same area.

    grid_rc, faces: the tile's TIN; children_height_m: (2T+1, 2T+1) the four children's
    samples (``children_grid``). With exact nesting the even child samples are the tile's
    own, so the mesh's vertices are child samples at twice their grid coordinates."""
    t2 = children_height_m.shape[0] - 1
    if children_height_m.shape != (t2 + 1, t2 + 1) or t2 % 2:
        raise ValueError(f"children_height_m must be (2T+1, 2T+1), got {children_height_m.shape}")
    return max_vertical_error(children_height_m, 2 * np.asarray(grid_rc, dtype=np.int64), faces)
