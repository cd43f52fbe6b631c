"""Which tiles to draw, load and keep this frame: the LOD traversal (DESIGN.md 3).

One entry function, ``select``, made of named passes (the shape of 3DTilesRendererJS's
``runTraversal``); read the bottom of the file for the algorithm:

1. ``mark_used``      walk the quadtree from the roots, level by level (vectorised per
                      level), culling by frustum and horizon and refining where the
                      screen-space error is above ``error_target_px`` for any view. Tiles
                      under each camera are always walked (height queries); prefetch views
                      (each camera widened, and moved velocity * prefetch_s ahead) walk for
                      loading only.
2. ``choose_draw``    bottom-up: a refined tile is replaced by its children only when every
                      visible child can be drawn; otherwise the tile itself is drawn if it
                      is ready, else the descendants drawn last frame stay (never swap drawn
                      detail for an unloaded ancestor), else the parent covers. No holes
                      once the roots are ready; no overlaps ever.
3. ``collect_loads``  every walked tile that is wanted and not known yet: holes first,
                      then ancestors first, then larger error, then straight ahead;
                      prefetch last.
4. ``collect_keep``   what the cache must not drop: drawn, walked and under-camera tiles.

Tiles whose data is not known yet are bounded by their parent's height range grown by
the parent's geometric error (the children differ from the parent by at most that, by
definition of the geometric error), and use the per-level default geometric error.

Why one file of ~600 lines: the four passes share the per-level arrays of one walk and
are only readable side by side (3DTilesRendererJS keeps its traversal in one file too);
split, each pass would import the others' private array layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

import numpy as np

from runtime.geometry import (
    DEFAULT_HEIGHT_RANGE_M,
    WorldGeometry,
    occluder_radii_m,
)
from runtime.lod.camera import Camera
from runtime.tiles import MAX_LEVEL, T, TileKey, level_error_m, spacing_m

# --- inputs and outputs -----------------------------------------------------------------


SPECULATIVE_LEVELS = 2
"""Default ``SelectionOptions.speculative_levels`` (see there; docs/DECISIONS.md 43)."""


@dataclass(frozen=True)
class SelectionOptions:
    """LOD policy. error_target_px: refine while a tile's screen-space error is above this
    (DESIGN.md default 2 px); max_level: deepest level asked for; prefetch_s: how far along
    each view's velocity the prefetch pose is; prefetch_fov_scale: prefetch views widen
    the field of view by this (turning heads see loaded tiles); plane_root_radius: on the
    plane, level-0 tiles within this many tiles of a camera are the roots (more when the
    camera's far_m reaches further, up to 3); horizon_culling: earth only;
    speculative_levels: tiles whose parent's data has not arrived are requested down to this
    many levels below the nearest known ancestor's children (0: only tiles whose parent is
    known; None: all the walk reaches). Unknown tiles are bounded by their ancestors'
    ranges grown by each level's error, so with nothing known the walk refines to
    ``max_level`` near the camera; those deep guesses are not asked for until their
    ancestors' data shows whether the view needs them. The column under a camera is
    exempt (the ground height under it is wanted at once)."""

    error_target_px: float = 2.0
    max_level: int = 20
    prefetch_s: float = 1.0
    prefetch_fov_scale: float = 1.3
    plane_root_radius: int = 1
    horizon_culling: bool = True
    speculative_levels: int | None = SPECULATIVE_LEVELS

    def __post_init__(self):
        if not self.error_target_px > 0:
            raise ValueError(f"error_target_px must be > 0, got {self.error_target_px}")
        if self.speculative_levels is not None and self.speculative_levels < 0:
            raise ValueError(f"speculative_levels must be >= 0 or None, got {self.speculative_levels}")
        if not 0 <= self.max_level <= MAX_LEVEL:
            raise ValueError(f"max_level must be in [0, {MAX_LEVEL}], got {self.max_level}")


@dataclass(frozen=True, eq=False)
class View:
    """One camera (a simulator may run several sensors) with its velocity, (3,) m/s."""

    camera: Camera
    velocity_mps: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self):
        v = np.asarray(self.velocity_mps, np.float64).reshape(-1)
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise ValueError(f"velocity_mps must be a finite 3-vector in m/s, got {self.velocity_mps!r}")
        object.__setattr__(self, "velocity_mps", v)


@dataclass(frozen=True)
class TileInfo:
    """What the data says about a tile: its height range and geometric error (metres)."""

    min_height_m: float
    max_height_m: float
    geometric_error_m: float


class Band:
    """Load priority bands (lower loads first)."""

    HOLE = 0        # wanted where nothing ready covers it yet (no ready ancestor): a hole
    WANTED = 1      # on the draw tree or under a camera
    PREFETCH = 2    # only seen from a prefetch view


@dataclass(frozen=True, order=True)
class LoadRequest:
    """A tile to fetch. ``priority``: lower is sooner; ``band``, ``steps`` (levels below
    the nearest ready ancestor), ``sse_px`` explain it."""

    priority: float
    key: TileKey = field(compare=False)
    band: int = field(compare=False, default=Band.WANTED)
    steps: int = field(compare=False, default=0)
    sse_px: float = field(compare=False, default=0.0)


@dataclass(frozen=True, eq=False)
class Selection:
    """The result of one frame's traversal.

    draw: keys to draw (ready, non-overlapping); load: requests sorted most urgent first;
    keep: keys the cache must keep; ideal: the tiles that meet the error target;
    holes: visible root regions that nothing ready covers; over_error: drawn keys whose
    screen-space error is above the target (coarser than the ideal: max_level tiles never
    count); max_sse_px: largest drawn visible error;
    under_camera: per view, the deepest walked key under it; expanded: walked keys whose
    children were walked (pass it to the next frame's ``select`` as a speed hint).
    """

    draw: tuple[TileKey, ...]
    load: tuple[LoadRequest, ...]
    keep: frozenset[TileKey]
    ideal: frozenset[TileKey]
    holes: tuple[TileKey, ...]
    over_error: tuple[TileKey, ...]
    max_sse_px: float
    under_camera: tuple[TileKey, ...]
    visited: int
    expanded: frozenset[TileKey] = frozenset()

    @property
    def complete(self) -> bool:
        """Nothing missing: no holes and every drawn tile within the error target."""
        return not self.holes and not self.over_error


# --- per-frame context --------------------------------------------------------------------


class _Node:
    """Per-frame traversal state of one tile. Flags default at class level: thousands of
    nodes are made per second and most keep most defaults."""

    draw_tree = False   # visible, and every ancestor was refined for drawing
    sse = 0.0           # screen-space error seen by the views that see it
    want_sse = 0.0      # largest error among the reasons it is wanted (priority)
    under = False       # under a camera
    prefetch = False    # seen by a prefetch view (wider or predicted)
    refine = False      # refined for drawing
    children: list = ()  # type: ignore[assignment]  # set when walked further
    pinned = False      # a root: always wanted and kept
    steps = 0           # levels below the nearest ready ancestor (roots: 0)
    covered = False     # some ancestor is ready (so a cover exists without this tile)
    known = False       # its data has arrived (height range and error from the data)
    unknown = 0         # 0 when known, else 1 + its parent's (levels below the nearest known
                        # ancestor; >= 2: its parent is not known either, a guess)
    guess: list = ()    # type: ignore[assignment]  # children made by _predict
    col = -1            # column in the _predict arrays (-1: not predicted)

    def __init__(self, key: TileKey, hmin: float, hmax: float, ge: float, absolute: bool):
        self.key = key
        self.hmin, self.hmax = hmin, hmax
        self.ge = ge              # geometric error, metres (data, else the level default)
        self.absolute = absolute  # height range is the world default (no padding needed)


class _Frame:
    """Arrays about the views, computed once per frame. Views 0..n_draw-1 draw; the rest
    (each camera widened by ``prefetch_fov_scale``, and moved along its velocity by
    ``prefetch_s``) only prefetch."""

    def __init__(self, geometry: WorldGeometry, views: Sequence[View], options: SelectionOptions):
        self.geometry = geometry
        self.options = options
        cams = [v.camera for v in views]
        self.n_draw = len(cams)
        # Views (frustum + pixel scale) and the distinct positions they stand at: a widened
        # view shares its camera's position, so distances and horizons are computed once.
        # The widened view keeps its camera's pixel size (same error per metre) and position.
        planes, ks = [c.frustum_planes() for c in cams], [c.sse_px(1.0, 1.0) for c in cams]
        pos_idx, positions = list(range(len(cams))), [c.position_m for c in cams]
        for i, (v, c) in enumerate(zip(views, cams, strict=True)):
            wide = c.frustum_planes(options.prefetch_fov_scale)
            if options.prefetch_fov_scale > 1.0:
                planes.append(wide)
                ks.append(ks[i])
                pos_idx.append(i)
            vel = np.asarray(v.velocity_mps, np.float64)
            if options.prefetch_s > 0 and np.any(vel != 0):
                planes.append(wide)  # frustum planes are camera-relative
                ks.append(ks[i])
                pos_idx.append(len(positions))
                positions.append(c.position_m + vel * options.prefetch_s)
        self.positions = np.array(positions)  # (U, 3); the first n_draw are the cameras
        self.pos_idx = np.array(pos_idx)  # (V,) view -> position
        self.forwards = np.array([c.forward for c in cams])
        self.far_m = [c.far_m for c in cams]
        planes = np.array(planes)  # (V, 6, 4)
        normals, offsets = planes[:, :, :3], planes[:, :, 3]
        self.n_views = len(planes)
        self.normals_flat = normals.reshape(-1, 3).T.copy()  # (3, V*6)
        # Planes moved to world space: n . p + (d - n . camera) (float64 keeps ~1e-9 m here).
        cam_pos = self.positions[self.pos_idx]  # (V, 3)
        self.offsets_world = (offsets - np.einsum("vpk,vk->vp", normals, cam_pos)).reshape(-1)  # (V*6,)
        self.k = np.array(ks)  # (V,) px per (m / m)
        self.horizon = geometry.is_earth and options.horizon_culling
        if self.horizon:
            self.scaled = self.positions / occluder_radii_m()
            self.cv2 = (self.scaled * self.scaled).sum(axis=1)[:, None]  # (U, 1)
            self.limb2 = self.cv2 - 1.0  # squared distance to the limb, scaled space
            self.inside_occluder = bool((self.limb2 < 0).any())
        # Global sample coordinates of each camera's nadir at max_level, for "under camera".
        r, c, _ = geometry.world_to_sample(options.max_level, self.positions[: self.n_draw])
        self.nadir = [(int(math.floor(rr)), int(math.floor(cc))) for rr, cc in zip(r, c, strict=True)]

    def under_xy(self, level: int) -> set[tuple[int, int]]:
        """(x, y) of the tiles of ``level`` under the cameras."""
        s = self.options.max_level - level
        out = set()
        for r, c in self.nadir:
            x, y = (c >> s) // T, (r >> s) // T
            if self.geometry.is_earth:
                x, y = min(max(x, 0), (2 << level) - 1), min(max(y, 0), (1 << level) - 1)
            out.add((x, y))
        return out

    def see(self, packed: np.ndarray):
        """For n packed boxes (n, 32): visible (V, n) bool (frustum and horizon) and
        pixels of error per metre of geometric error (V, n) from each view, whether it
        sees the box or not."""
        n = len(packed)
        centers, halves = packed[:, 0:3], packed[:, 3:12].reshape(n, 3, 3)
        units, lengths = packed[:, 12:21].reshape(n, 3, 3), packed[:, 21:24]
        # Frustum: a box is out when its centre is farther outside a plane than its reach.
        signed = centers @ self.normals_flat + self.offsets_world  # (n, V*6)
        reach = np.abs(halves.reshape(3 * n, 3) @ self.normals_flat).reshape(n, 3, -1).sum(axis=1)  # (n, V*6)
        vis = (signed + reach >= 0.0).reshape(n, self.n_views, 6).all(axis=2).T  # (V, n)
        if self.horizon:
            # Cesium EllipsoidalOccluder.isScaledSpacePointVisible for all positions, expanded
            # around hp . cv: vt = hp - cv, vt . vc = |cv|^2 - hp . cv.
            hp_cv = self.scaled @ packed[:, 24:27].T  # (U, n)
            vt_dot_vc = self.cv2 - hp_cv
            vt2 = packed[:, 27] + self.cv2 - 2.0 * hp_cv
            vh2 = self.limb2
            occluded = (vt_dot_vc > vh2) & (vt_dot_vc * vt_dot_vc > vh2 * vt2)
            if self.inside_occluder:  # only what is in front of the camera
                occluded = np.where(vh2 < 0, vt_dot_vc > 0, occluded)
            occluded &= packed[:, 28] > 0
            vis &= ~occluded[self.pos_idx]
        # Distance to the box: the camera in the box frame (centre's coordinates there minus
        # the camera's, ~1e-9 m in float64), clamped to the box.
        cam_local = (units.reshape(3 * n, 3) @ self.positions.T).reshape(n, 3, -1)  # (n, 3, U)
        excess = np.maximum(np.abs(packed[:, 29:32, None] - cam_local) - lengths[:, :, None], 0.0)
        dist = np.sqrt((excess * excess).sum(axis=1)).T  # (U, n)
        return vis, self.k[:, None] / np.maximum(dist, 1e-3)[self.pos_idx]

    def box_direction(self, packed: np.ndarray) -> np.ndarray:
        """n packed boxes (n, 32) -> (n,) 1 - cos(angle off the nearest drawing camera's
        forward) of each box's point nearest that camera; 0 for a box holding the camera.
        A tile's centre says little for a tile the camera is over: a level-5 earth tile
        (~300 km) under a camera at 500 m has its centre anywhere, often behind; ranked by
        the centre, the column under the camera (the ancestors of the nearest drawn tiles,
        the deepest chain of a teleport's view) loaded after far tiles straight ahead."""
        n = len(packed)
        units, lengths = packed[:, 12:21].reshape(n, 3, 3), packed[:, 21:24]
        pos = self.positions[: self.n_draw]
        cam_local = (units.reshape(3 * n, 3) @ pos.T).reshape(n, 3, -1)  # (n, 3, D)
        lo = packed[:, 29:32, None] - lengths[:, :, None]
        hi = packed[:, 29:32, None] + lengths[:, :, None]
        delta_local = np.clip(cam_local, lo, hi) - cam_local  # (n, 3, D): to the nearest point
        delta = np.einsum("nkd,nkj->dnj", delta_local, units)  # (D, n, 3) world axes
        length = np.sqrt((delta * delta).sum(axis=2))  # (D, n)
        cos = np.einsum("dnj,dj->dn", delta, self.forwards[: self.n_draw]) / np.maximum(length, 1e-9)
        return np.where(length > 1e-6, 1.0 - cos, 0.0).min(axis=0)


_PLANE_ROOT_M = spacing_m(0) * T  # width of a level-0 plane tile (20,037 km)


def _ring(key: TileKey, rad: int) -> list[TileKey]:
    span = range(-rad, rad + 1)
    return [TileKey(key.level, key.x + dx, key.y + dy) for dx in span for dy in span]


def _plane_roots(geometry: WorldGeometry, frame: _Frame, extra: int) -> list[TileKey]:
    """Level-0 tiles around each camera: enough rings that everything within the camera's
    far distance lies on a root (at least ``plane_root_radius``, at most 3: 60,000 km),
    plus ``extra``."""
    keys = set()
    for pos, far in zip(frame.positions[: frame.n_draw], frame.far_m, strict=True):
        rad = min(max(frame.options.plane_root_radius, math.ceil(far / _PLANE_ROOT_M)), 3)
        keys.update(_ring(geometry.key_at(0, pos), rad + extra))
    return sorted(keys)


def _roots(geometry: WorldGeometry, frame: _Frame) -> list[TileKey]:
    if geometry.is_earth:
        return [TileKey(0, 0, 0), TileKey(0, 1, 0)]
    return _plane_roots(geometry, frame, 0)


def _pinned_roots(geometry: WorldGeometry, frame: _Frame) -> list[TileKey]:
    """Roots loaded and kept ahead of need: on the plane one ring beyond the traversal roots,
    so a root that comes into view (or under a teleport) is already there."""
    if geometry.is_earth:
        return _roots(geometry, frame)
    return _plane_roots(geometry, frame, 1)


def root_keys(geometry: WorldGeometry, views, options: SelectionOptions = SelectionOptions()
              ) -> list[TileKey]:
    """The roots the traversal starts from (earth: the two level-0 tiles; plane: level-0
    tiles around each camera). Load and pin these first: they guarantee no holes."""
    return _roots(geometry, _Frame(geometry, _as_views(views), options))


def _packed_level(geo: WorldGeometry, nodes: list) -> np.ndarray:
    """(n, 32) packed bounds of the nodes' tiles and height ranges (memoised by geo)."""
    return geo.packed_tile_bounds([(n.key, n.hmin, n.hmax) for n in nodes])


_DEFAULT_GE = [level_error_m(level) for level in range(MAX_LEVEL + 1)]


def _node_for(key: TileKey, parent: _Node | None, known: Mapping[TileKey, TileInfo]) -> _Node:
    info = known.get(key)
    if info is not None:
        node = _Node(key, info.min_height_m, info.max_height_m, info.geometric_error_m, False)
        node.known = True
        return node
    ge = _DEFAULT_GE[key.level]
    if parent is None:
        node = _Node(key, DEFAULT_HEIGHT_RANGE_M[0], DEFAULT_HEIGHT_RANGE_M[1], ge, True)
        node.unknown = 1
        return node
    if parent.absolute:
        node = _Node(key, parent.hmin, parent.hmax, ge, True)
    else:
        node = _Node(key, parent.hmin - parent.ge, parent.hmax + parent.ge, ge, False)
    node.unknown = parent.unknown + 1
    return node


# --- pass 1: walk -------------------------------------------------------------------------


def _predict(frame: _Frame, root_nodes: list[_Node], known: Mapping[TileKey, TileInfo],
             expanded: Set[TileKey]) -> None:
    """Temporal coherence: make the nodes of last frame's tree (children of every key in
    ``expanded``) and test all their boxes in one vectorised call, instead of one call per
    level. The walk reuses these nodes and results; it tests only what the guess missed."""
    nodes, frontier = list(root_nodes), root_nodes
    while frontier:
        nxt = []
        for node in frontier:
            if node.key in expanded:
                node.guess = [_node_for(ck, node, known) for ck in frame.geometry.children(node.key)]
                nxt.extend(node.guess)
        nodes.extend(nxt)
        frontier = nxt
    vis, err = frame.see(_packed_level(frame.geometry, nodes))
    for i, node in enumerate(nodes):
        node.col = i
    frame.guess = _level_terms(frame, vis, err, nodes)


def _level_terms(frame: _Frame, vis: np.ndarray, err: np.ndarray, nodes: list) -> tuple[list, ...]:
    """What the walk reads per node from the views' visibility (V, n) bool and pixels per
    metre of error (V, n): lists (n,) of drawn-view visible, drawn-view error (visible
    views), nearest error (any drawn view), prefetch-view visible and prefetch error. Each
    column is computed on its own, so any set of nodes gives the same values per node."""
    nd = frame.n_draw
    ges = np.fromiter((n.ge for n in nodes), np.float64, len(nodes))
    err = err * ges[None, :]  # (V, n) screen-space error from each view
    draw_vis = vis[:nd].any(axis=0).tolist()
    draw_sse = np.where(vis[:nd], err[:nd], 0.0).max(axis=0).tolist()
    near_sse = err[:nd].max(axis=0).tolist()
    if len(vis) > nd:
        pre_vis = vis[nd:].any(axis=0).tolist()
        pre_sse = np.where(vis[nd:], err[nd:], 0.0).max(axis=0).tolist()
    else:
        pre_vis = pre_sse = [0.0] * len(nodes)
    return draw_vis, draw_sse, near_sse, pre_vis, pre_sse


def mark_used(frame: _Frame, roots: list[TileKey], known: Mapping[TileKey, TileInfo],
              ready: Set[TileKey], expanded: Set[TileKey] = frozenset()) -> dict[TileKey, _Node]:
    """Walk level by level; returns every walked node that is visible, under a camera,
    prefetched or a root, by key. ``expanded``: last frame's Selection.expanded (a guess
    that makes the walk cheaper; the result does not depend on it)."""
    geo, opt = frame.geometry, frame.options
    target = opt.error_target_px
    used: dict[TileKey, _Node] = {}
    root_nodes = []
    for k in roots:
        node = _node_for(k, None, known)
        node.pinned = True
        root_nodes.append(node)
    if expanded:
        _predict(frame, root_nodes, known, expanded)
    level_nodes = [(n, True) for n in root_nodes]
    while level_nodes:
        level = level_nodes[0][0].key.level
        under = frame.under_xy(level)
        nodes = [n for n, _ in level_nodes]
        cols = [n.col for n in nodes]
        if -1 in cols:  # not (all) guessed: test this level's boxes now
            vis, err = frame.see(_packed_level(geo, nodes))
            draw_vis, draw_sse, near_sse, pre_vis, pre_sse = _level_terms(frame, vis, err, nodes)
        else:  # all guessed: _predict's terms, made for every guessed node at once
            draw_vis, draw_sse, near_sse, pre_vis, pre_sse = ([t[c] for c in cols] for t in frame.guess)
        can_refine = level < opt.max_level
        next_nodes = []
        for i, (node, parent_refined) in enumerate(level_nodes):
            key = node.key
            node.under = under_here = (key.x, key.y) in under
            node.prefetch = pre = bool(pre_vis[i])
            node.draw_tree = drawn = parent_refined and draw_vis[i]
            if not (drawn or under_here or pre or node.pinned):
                continue  # culled: neither drawn nor wanted
            used[key] = node
            sse = draw_sse[i]
            node.sse = sse
            want = sse if drawn else 0.0
            if under_here and near_sse[i] > want:
                want = near_sse[i]
            if pre and pre_sse[i] > want:
                want = pre_sse[i]
            node.want_sse = want
            if not can_refine:
                continue
            node.refine = refine = drawn and sse > target
            if refine or (under_here and near_sse[i] > target) or (pre and pre_sse[i] > target):
                here = key in ready
                steps = 0 if here else node.steps + 1
                covered = here or node.covered
                kids = node.guess or [_node_for(ck, node, known) for ck in geo.children(key)]
                for child in kids:
                    child.steps = steps
                    child.covered = covered
                node.children = kids
                next_nodes.extend((child, refine) for child in kids)
        level_nodes = next_nodes
    return used


# --- pass 2: draw ---------------------------------------------------------------------------


def choose_draw(used: dict[TileKey, _Node], roots: list[TileKey], ready: Set[TileKey],
                drawn_last: Set[TileKey]) -> tuple[list[TileKey], list[TileKey]]:
    """Bottom-up cover of every visible root. Returns (draw, holes)."""
    last_ancestors: set[TileKey] | None = None

    def last_cover(key: TileKey) -> list[TileKey] | None:
        """Keys drawn last frame (still ready) that tile ``key`` completely, or None."""
        nonlocal last_ancestors
        if key in drawn_last and key in ready:
            return [key]
        if last_ancestors is None:
            last_ancestors = set()
            for k in drawn_last:
                for lv in range(k.level):
                    last_ancestors.add(k.ancestor(lv))
        if key not in last_ancestors:
            return None
        out = []
        for c in key.children():
            part = last_cover(c)
            if part is None:
                return None
            out.extend(part)
        return out

    def cover(node: _Node) -> tuple[list[TileKey], bool]:
        """(keys, complete): keys tile the visible part of ``node`` without overlap."""
        key = node.key
        parts: list[TileKey] = []
        if node.refine:
            complete = True
            for child in node.children:
                if child.draw_tree:  # children out of view need no cover
                    p, ok = cover(child)
                    parts.extend(p)
                    complete &= ok
            if complete:
                return parts, True
        if key in ready:
            return [key], True
        previous = last_cover(key)
        if previous is not None:
            return previous, True
        return parts, False  # best effort: what the children have; the caller covers the rest

    draw, holes = [], []
    for r in roots:
        node = used.get(r)
        if node is None or not node.draw_tree:
            continue
        keys, ok = cover(node)
        draw.extend(keys)
        if not ok:
            holes.append(r)
    return draw, holes


# --- pass 3 and 4: load and keep --------------------------------------------------------------


PINNED_PRIORITY = 1000.0 * Band.WANTED + 10.0 * 99
"""Load priority of pinned roots nobody walked: after the wanted tiles (steps are capped at
99), before the prefetch band."""


SPECULATIVE_PENALTY = 400.0
"""Added to the priority of a covered wanted tile whose parent's data has not arrived (a
guess: the parent's error and height range may show it is not needed): after every wanted
tile whose parent is known, before pinned roots and prefetch. Holes keep their band."""


def collect_loads(frame: _Frame, used: dict[TileKey, _Node], known: Mapping[TileKey, TileInfo],
                  pinned: list[TileKey], target_px: float) -> list[LoadRequest]:
    """Wanted, not-yet-known tiles, most urgent first.

    priority = 1000 * band + 10 * steps + 5 / (1 + sse / target) + 2.5 * (1 - cos angle):
    holes first (band HOLE: nothing ready above it), then ancestors first (``steps`` below
    the nearest ready ancestor: 0 blocks the refinement of a drawn tile), then larger error
    (nearer, coarser), then straight ahead (the angle to the tile box's point nearest the
    camera, 0 inside it: ``_Frame.box_direction``); prefetch last. A covered wanted tile whose
    parent's data has not arrived (speculative) adds ``SPECULATIVE_PENALTY``, except on the
    drawn column under a camera: every level of a view waits for the one above, and that
    column, the ancestors of the nearest drawn tiles, is the view's deepest chain (after a
    teleport the earth's levels 5-10 there came 1-2.5 s late behind shallower tiles; the
    column below what is drawn, wanted for the ground height, keeps the penalty); a tile more than
    ``options.speculative_levels`` + 1 levels below its nearest known ancestor is not asked
    for yet (the column under a camera and pinned roots always are). Pinned roots that were not
    walked (the plane's ring beyond the traversal roots: nothing in view needs them yet,
    they are there for the next teleport) load after every other wanted tile, before
    prefetch (priority ``PINNED_PRIORITY``): at ancestor priority, after a teleport across
    the plane five new ones (~70 ms of server CPU each) waited beside the view's own tiles.
    """
    out = []
    spec = frame.options.speculative_levels
    deepest = MAX_LEVEL + 2 if spec is None else spec + 1
    wanted = [node for node in used.values()
              if not node.known and (node.unknown <= deepest or node.under or node.pinned)]
    if wanted:
        direction = frame.box_direction(_packed_level(frame.geometry, wanted)).tolist()
    for node, d in zip(wanted, direction if wanted else [], strict=True):
        if node.draw_tree or node.under or node.pinned:
            band = Band.WANTED if node.covered else Band.HOLE
        else:
            band = Band.PREFETCH
        steps = min(node.steps, 99)
        pri = 1000.0 * band + 10.0 * steps + 5.0 / (1.0 + node.want_sse / target_px) + 2.5 * d
        if node.unknown >= 2 and band == Band.WANTED and not node.pinned and not (node.under and node.draw_tree):
            pri = min(pri + SPECULATIVE_PENALTY, PINNED_PRIORITY - 0.5)
        out.append(LoadRequest(pri, node.key, band, steps, node.want_sse))
    for key in pinned:
        if key not in known and key not in used:
            out.append(LoadRequest(PINNED_PRIORITY, key, Band.WANTED, 0, 0.0))
    out.sort()
    return out


def collect_keep(used: dict[TileKey, _Node], draw: list[TileKey], known: Mapping[TileKey, TileInfo],
                 pinned: list[TileKey]) -> frozenset[TileKey]:
    """Known tiles that are drawn, walked (ancestors, wanted children) or pinned roots."""
    keep = {k for k, n in used.items() if n.known}
    keep.update(draw)
    keep.update(r for r in pinned if r in known)
    return frozenset(keep)


# --- the entry function ---------------------------------------------------------------------


def select(
    views: Sequence[View] | View | Camera,
    geometry: WorldGeometry,
    known: Mapping[TileKey, TileInfo],
    ready: Set[TileKey],
    drawn_last: Set[TileKey] = frozenset(),
    options: SelectionOptions = SelectionOptions(),
    expanded_last: Set[TileKey] = frozenset(),
) -> Selection:
    """One frame of LOD selection for one or several views.

    known: tiles whose data has arrived (height range, geometric error); ready: tiles that
    can be drawn now (uploaded); drawn_last: what was drawn last frame; expanded_last: last
    frame's ``Selection.expanded`` (optional: only makes this call faster).
    """
    views = _as_views(views)
    frame = _Frame(geometry, views, options)
    roots = _roots(geometry, frame)
    pinned = _pinned_roots(geometry, frame)
    used = mark_used(frame, roots, known, ready, expanded_last)
    draw, holes = choose_draw(used, roots, ready, drawn_last)
    load = collect_loads(frame, used, known, pinned, options.error_target_px)
    keep = collect_keep(used, draw, known, pinned)
    ideal = frozenset(k for k, n in used.items() if n.draw_tree and not n.refine)
    drawn_nodes = [n for n in map(used.get, draw) if n is not None]
    over = tuple(n.key for n in drawn_nodes if n.refine)  # drawn coarser than wanted
    max_sse = max((n.sse for n in drawn_nodes if n.draw_tree), default=0.0)
    expanded = frozenset(k for k, n in used.items() if n.children)
    return Selection(tuple(draw), tuple(load), keep, ideal, tuple(holes), over, max_sse,
                     _deepest_under(frame, used), len(used), expanded)


def _deepest_under(frame: _Frame, used: dict[TileKey, _Node]) -> tuple[TileKey, ...]:
    out = []
    for r, c in frame.nadir:
        best = None
        for level in range(frame.options.max_level + 1):
            s = frame.options.max_level - level
            key = TileKey(level, (c >> s) // T, (r >> s) // T)
            if key not in used:
                break
            best = key
        out.append(best)
    return tuple(out)


def _as_views(views) -> list[View]:
    if isinstance(views, Camera):
        return [View(views)]
    if isinstance(views, View):
        return [views]
    out = [v if isinstance(v, View) else View(v) for v in views]
    if not out:
        raise ValueError("select needs at least one view (a Camera or View)")
    for v in out:
        if not isinstance(v.camera, Camera):
            raise ValueError(f"View.camera must be a runtime.lod.camera.Camera, got {type(v.camera).__name__}")
    return out
