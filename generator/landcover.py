"""Land cover as a modality of the pyramid: one class per sample, pure, nested and seamless.

``landcover(world, seed, level, rows, cols, heights_m, far_heights)`` -> (H, W)
uint8 class ids (:data:`CLASS_NAMES`, index = id) for a window of level-``level``
global samples (rows (H,) and cols (W,) consecutive int64) whose heights are
``heights_m`` (H, W). :func:`tile_landcover` does it for one pyramid tile.

Why it nests (a child's even samples keep the parent's class): a class is
``rule(location, height, birth slope)`` where every input is the same at every
level at which the sample exists:

- *location*: a sample's lon/lat (earth) or east/north metres (plane) is
  computed as ``row * spacing``; an even child sample (2r, 2c) with half the
  spacing gives the same float bits (scaling by 2 is exact), so the context
  channels, the MODIS/Koppen lookups and the value noise (keyed by location,
  not by sample index) read identical values;
- *height*: the pyramid is nested, so a sample's height never changes below the
  level where it appears;
- *birth slope*: the slope is measured once, at the sample's *birth level*
  B = L - min(ctz(row), ctz(col)) (the coarsest level where it exists), from
  its neighbours at that level along the direction(s) in which it is odd
  (the parents it was refined from). At level L those neighbours are the samples
  ``2**(L-B)`` away, which lie inside the same tile for every sample but the four
  tile corners (k = L - B >= 8); those few points are read through
  ``far_heights`` (:func:`tile_landcover` asks the pyramid). Samples born at
  or above the anchor level use no slope (their spacing, >= 9.8 km, says nothing).

The rules, in order (later ones override): the context's land-cover group at
the (slightly warped) location -> class (earth: the MODIS IGBP class itself,
so forests split into broadleaf/needleleaf; plane: its synthetic groups split by
climate); water where the real water is (earth: 30" land fraction < 0.5, or
a lake where the terrain is flat at its surface: lake fraction >= 0.5, the
anchor's lake rule (:mod:`generator.anchors.lakes`); MODIS water elsewhere on
land (a lake's shore ramp, rivers, ponds) is dry: urban if >= 5 of its 8
neighbouring cells are (rivers between built-up banks), else its neighbours'
most common land class; plane: the continent's sea); beach sand on land below 3 m next to the
sea; snow above the snowline (earth 5,500 m within 20 deg of the equator,
falling 110 m per degree of latitude beyond, +-200 m noise; plane: the
continent's snowline); bare rock where the birth slope exceeds 35 deg (except
in towns: the refiner's metre-scale roughness is not a cliff). The plane's
continent has no urban group: towns are farmland or grassland where a 30 km
value noise exceeds 0.65 (:func:`plane_city`).

Cost (the served layer computes this for every tile of level >= 6): a few
milliseconds a tile. The noises are :func:`grid_noise` (separable, keyed by
location); the earth reads MODIS without a warp where every cell within reach is
one class, and the 30" mask from the window's small box of cells; the plane
decides classes per context node (a few dozen under a deep tile) with anchor
nodes memoised; the birth slope is computed per birth group as strided views and
only where rock could form. Each shortcut gives the values of the plain rule
(tests/generator/test_landcover_speed.py).
"""

from __future__ import annotations

import numpy as np

from generator.birthslope import FarHeights, _ctz, _slope_at, birth_groups_from, birth_slope  # noqa: F401
from generator.landcover_lakes import lake_water, land_neighbour_class
from generator.landcover_noise import grid_noise, point_noise, value_noise  # noqa: F401 (re-exported)
from generator.plane_nodes import (  # noqa: F401 (re-exported)
    _AREAS,
    ANCHOR_AREA_NODES,
    ANCHOR_AREAS_KEPT,
    _anchor_area,
    _anchor_box,
    _anchor_nodes,
    anchor_memo_clear,
)
from runtime.tiles import ANCHOR_LEVEL, T, TileKey, World, spacing_deg, spacing_m

CLASS_NAMES = ("water", "snow_ice", "bare_rock", "sand", "grassland", "shrubland", "broadleaf_forest",
               "needleleaf_forest", "cropland", "wetland", "urban", "building", "road", "tree", "sky")
"""The fixed class table (index = class id). building .. sky are for features and sensors."""
(WATER, SNOW_ICE, BARE_ROCK, SAND, GRASSLAND, SHRUBLAND, BROADLEAF, NEEDLELEAF, CROPLAND, WETLAND,
 URBAN, BUILDING, ROAD, TREE, SKY) = range(len(CLASS_NAMES))

# class -> index in generator.anchors.context.COVER_GROUPS (-1: water), for agreement with MODIS
CLASS_TO_GROUP = np.array([-1, 5, 6, 6, 1, 1, 0, 0, 3, 2, 4, -1, -1, 0, -1], dtype=np.int8)
# MODIS IGBP class -> class id (before the mixed-forest / barren splits)
IGBP_TO_CLASS = np.full(256, WATER, dtype=np.uint8)
IGBP_TO_CLASS[[1, 3]] = NEEDLELEAF  # evergreen / deciduous needleleaf
IGBP_TO_CLASS[[2, 4, 5]] = BROADLEAF  # evergreen / deciduous broadleaf, mixed (split by noise)
IGBP_TO_CLASS[[6, 7, 8]] = SHRUBLAND  # closed, open shrublands, woody savannas
IGBP_TO_CLASS[[9, 10]] = GRASSLAND  # savannas, grasslands
IGBP_TO_CLASS[11] = WETLAND
IGBP_TO_CLASS[[12, 14]] = CROPLAND  # croplands, cropland/natural mosaic
IGBP_TO_CLASS[13] = URBAN
IGBP_TO_CLASS[15] = SNOW_ICE
IGBP_TO_CLASS[16] = BARE_ROCK  # barren (sand where the climate is arid)

ROCK_SLOPE = float(np.tan(np.radians(35.0)))
ROCK_TAIL_K = 3  # birth groups from here up (1 sample in 64 of a window) are measured pointwise
SNOW_EQUATOR_M, SNOW_FALL_M_PER_DEG, SNOW_NOISE_M = 5500.0, 110.0, 200.0
BEACH_M = 3.0
PLANE_CITY_WAVE_M = 30000.0
PLANE_CONTEXT_LEVEL = 9  # the plane's context lattice (153 m)
WARP_DEG, WARP_WAVELENGTH_DEG = 0.012, 0.05  # MODIS cells read at a warped point: no 5 km squares

def locations(world: World, level: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact, level-invariant positions (H, W) float64: earth (lon, lat) degrees, plane (east, south) m."""
    x1, y1 = axis_locations(world, level, rows, cols)
    return np.broadcast_to(x1[None, :], (rows.size, cols.size)), np.broadcast_to(y1[:, None], (rows.size, cols.size))


def axis_locations(world: World, level: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`locations` as the grid's axes: (x (W,), y (H,)) float64."""
    if world is World.EARTH:
        d = spacing_deg(level)
        return -180.0 + np.mod(cols * d, 360.0), 90.0 - rows * d
    s = spacing_m(level)
    return cols * s, rows * s


def base_classes(world: World, seed: int, level: int, rows: np.ndarray, cols: np.ndarray) -> tuple:
    """Classes from the context alone -> (classes (H, W) uint8, land (H, W) bool, coast (H, W) bool:
    land where beaches may form). A pure function of each sample's location."""
    if world is World.EARTH:
        return _earth_base(seed, level, rows, cols)
    return _plane_base(seed, level, rows, cols)


def _earth_base(seed: int, level: int, rows: np.ndarray, cols: np.ndarray) -> tuple:
    from generator.anchors.context import EarthContext, _nearest

    ctx = EarthContext.shared()
    lon1, lat1 = axis_locations(World.EARTH, level, rows, cols)
    shape = (rows.size, cols.size)
    lon, lat = np.broadcast_to(lon1[None, :], shape), np.broadcast_to(lat1[:, None], shape)
    frac = _land_fraction(ctx.landwater, lat1, lon1)
    land = frac >= 0.5
    warped = []

    def cells():  # the MODIS cell (row, col) each point reads: moved by up to WARP_DEG (organic patches)
        if not warped:
            wl = lat + WARP_DEG * grid_noise(seed, 1, lon1, lat1, WARP_WAVELENGTH_DEG)
            wo = lon + WARP_DEG * grid_noise(seed, 2, lon1, lat1, WARP_WAVELENGTH_DEG)
            per = ctx.modis.shape[0] / 180.0  # the expressions of context._nearest
            warped.append((np.clip(np.floor((90.0 - wl) * per).astype(np.int64), 0, ctx.modis.shape[0] - 1),
                           np.mod(np.floor((wo + 180.0) * per).astype(np.int64), ctx.modis.shape[1])))
        return warped[0]

    one = _uniform_cell(ctx.modis, lat1, lon1, WARP_DEG)
    igbp = np.full(shape, one, np.uint8) if one is not None else ctx.modis[cells()]
    cls = IGBP_TO_CLASS[igbp]
    if one is None or one == 5:
        mixed = igbp == 5
        if mixed.any():  # mixed forest: a 2 km split into needleleaf and broadleaf
            cls = np.where(mixed & (grid_noise(seed, 3, lon1, lat1, 0.02) > 0.0), np.uint8(NEEDLELEAF), cls)
    lake = lake_water(lat1, lon1)
    wet = land & (cls == WATER)
    if wet.any():
        cls = _city_river_cells(ctx.modis, cls, wet, *cells())
        dry = land & (cls == WATER) & ~lake
        if dry.any():  # MODIS water where the terrain is not a lake: shore ramps, rivers, ponds
            cls = np.where(dry, land_neighbour_class(ctx.modis, *cells(), IGBP_TO_CLASS, URBAN, WETLAND), cls)
    if lake.any():
        cls = np.where(lake, np.uint8(WATER), cls)
    rock = cls == BARE_ROCK
    if rock.any():  # barren is sand where Koppen says arid (group B)
        arid = np.zeros(shape, bool)
        arid[rock] = _nearest(ctx.koppen, lat[rock], lon[rock]) == 2
        cls = np.where(arid, np.uint8(SAND), cls)
    cls = np.where(land, cls, np.uint8(WATER))
    return cls, land & (cls != WATER), land & (cls != WATER) & (frac < 0.8)


def _uniform_cell(grid: np.ndarray, lat1: np.ndarray, lon1: np.ndarray, margin_deg: float):
    """The value of ``grid`` (pixel-registered, row 0 at 90 N) if it is the same over the window's
    box widened by ``margin_deg`` (and one cell), else None: then no warped point can read another."""
    per = grid.shape[0] / 180.0
    i0 = max(int(np.floor((90.0 - float(lat1.max()) - margin_deg) * per)) - 1, 0)
    i1 = min(int(np.floor((90.0 - float(lat1.min()) + margin_deg) * per)) + 1, grid.shape[0] - 1)
    j0 = int(np.floor((float(lon1.min()) - margin_deg + 180.0) * per)) - 1
    j1 = int(np.floor((float(lon1.max()) + margin_deg + 180.0) * per)) + 1
    if (i1 - i0 + 1) * (j1 - j0 + 1) > 64:
        return None
    box = grid[i0 : i1 + 1][:, np.mod(np.arange(j0, j1 + 1), grid.shape[1])]
    return int(box.flat[0]) if (box == box.flat[0]).all() else None


def _land_fraction(lw, lat1: np.ndarray, lon1: np.ndarray) -> np.ndarray:
    """(H, W) float32 30" land fraction on the grid lat1 (H,) x lon1 (W,): the expressions of
    ``LandWater.land_fraction`` with the cells read once for the window's small box. A box that is
    all land (or all water) gives 1 (0) everywhere: the same decisions (>= 0.5, < 0.8) as the
    bilinear mix, whose float32 value can miss 1 by an ulp."""
    fi, fj, i0, j0, ia, ja, ni, nj = lw.grid_box(lat1, lon1)
    if ni * nj > 4 * i0.size * j0.size:  # the window wraps the antimeridian: per point
        shape = (lat1.size, lon1.size)
        return lw.land_fraction(np.broadcast_to(lat1[:, None], shape), np.broadcast_to(lon1[None, :], shape))
    cells = _land_box(lw, np.arange(ia, ia + ni), np.arange(ja, ja + nj))  # (ni, nj)
    if cells.min() == cells.max():
        return np.full((lat1.size, lon1.size), cells.flat[0], np.float32)
    return lw.mix_cells(cells, fi, fj, i0, j0, ia, ja)


def _land_box(lw, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(len(i), len(j)) float32 ``lw.land_cells`` of the box rows i x cols j (consecutive 30" cell
    indices; rows clipped to the globe, cols wrapped), read per 64-cell block of the mask: a whole
    land or water block is one value, only mixed (coastal) blocks unpack their bits."""
    from generator.anchors.landwater import BLOCK, LAND, MIXED, N_COLS, N_ROWS

    i, j = np.clip(i, 0, N_ROWS - 1), np.mod(j, N_COLS)
    bi, bj = i // BLOCK, j // BLOCK
    ri = np.flatnonzero(np.diff(bi, prepend=-1))  # first row / col of each run of one block
    cj = np.flatnonzero(np.diff(bj, prepend=-1))
    st = lw.state[np.ix_(bi[ri], bj[cj])]
    nr, nc = np.diff(np.append(ri, i.size)), np.diff(np.append(cj, j.size))
    out = np.repeat(np.repeat((st == LAND).astype(np.float32), nr, axis=0), nc, axis=1)
    for a, b in zip(*np.nonzero(st == MIXED)):
        r0, r1, c0, c1 = ri[a], ri[a] + nr[a], cj[b], cj[b] + nc[b]
        bits = np.unpackbits(lw.bits[lw.slot[bi[r0], bj[c0]]]).reshape(BLOCK, BLOCK)
        out[r0:r1, c0:c1] = bits[(i[r0:r1] % BLOCK)[:, None], (j[c0:c1] % BLOCK)[None, :]]
    return out


def _city_river_cells(grid: np.ndarray, cls: np.ndarray, wet: np.ndarray, wi: np.ndarray, wj: np.ndarray) -> np.ndarray:
    """MODIS water on the 30" mask's land (``wet``) is a lake the mask does not know (it counts most
    lakes as land), except where at least 5 of the 8 neighbouring 0.05 deg cells are urban: then it
    is a river or harbour cell between built-up banks (midtown Manhattan's cell is water in MODIS),
    and the point is urban. A heuristic: 5 km cells cannot say more. (wi, wj): the MODIS cell each
    point reads (``grid`` (rows, cols) IGBP); neighbours are counted once for the window's box."""
    i0, i1, j0, j1 = int(wi.min()), int(wi.max()), int(wj.min()), int(wj.max())
    if j1 - j0 > grid.shape[1] // 2:  # the window straddles the antimeridian: unwrap its columns
        wj = np.where(wj < grid.shape[1] // 2, wj + grid.shape[1], wj)
        j0, j1 = int(wj.min()), int(wj.max())
    box = IGBP_TO_CLASS[grid[np.clip(np.arange(i0 - 1, i1 + 2), 0, grid.shape[0] - 1)][
        :, np.mod(np.arange(j0 - 1, j1 + 2), grid.shape[1])]] == URBAN
    n = box[:-2, :-2].astype(np.int64) + box[:-2, 1:-1] + box[:-2, 2:] + box[1:-1, :-2] + box[1:-1, 2:] + \
        box[2:, :-2] + box[2:, 1:-1] + box[2:, 2:]  # urban neighbours of each cell of the box
    return np.where(wet & (n[wi - i0, wj - j0] >= 5), np.uint8(URBAN), cls)


def _plane_base(seed: int, level: int, rows: np.ndarray, cols: np.ndarray) -> tuple:
    """The plane's context class: each sample reads the nearest node of the fixed level-
    :data:`PLANE_CONTEXT_LEVEL` lattice (153 m) after a warp of up to half a node; samples that are
    nodes (every sample of levels <= 9) read their own node. Classes are decided per node
    (:func:`_plane_node_codes`: a few dozen nodes under a deep tile), then gathered."""
    s = spacing_m(PLANE_CONTEXT_LEVEL)
    k = PLANE_CONTEXT_LEVEL - level
    if k >= 0:
        code = _plane_node_codes(seed, rows << k, cols << k)
    else:
        x1, y1 = axis_locations(World.PLANE, level, rows, cols)
        # the nodes any warped sample can reach (|warp| <= half a node): one class there needs no warp
        r0, r1 = int(np.floor(y1.min() / s - 0.5 - 1e-9)), int(np.ceil(y1.max() / s + 0.5 + 1e-9))
        c0, c1 = int(np.floor(x1.min() / s - 0.5 - 1e-9)), int(np.ceil(x1.max() / s + 0.5 + 1e-9))
        box = _plane_node_codes(seed, np.arange(r0, r1 + 1, dtype=np.int64), np.arange(c0, c1 + 1, dtype=np.int64))
        if (box == box.flat[0]).all():
            code = np.full((rows.size, cols.size), box.flat[0], np.uint8)
            land = code >= 16
            return code & np.uint8(15), land, land
        # a sample at u = y / s reaches the nodes round(u - 0.5) .. round(u + 0.5) (round is monotone;
        # 2 nodes, 3 on a node's own row or column): where all it reaches agree it needs no warp, and
        # the warp noise is evaluated on the rows x cols of the rest
        rlo, rhi = _reach(y1 / s, r0), _reach(y1 / s, r0, 1)
        clo, chi = _reach(x1 / s, c0), _reach(x1 / s, c0, 1)
        lo = _window(_window(box, rlo, rhi, np.minimum).T, clo, chi, np.minimum).T  # (H, W) least code reached
        hi = _window(_window(box, rlo, rhi, np.maximum).T, clo, chi, np.maximum).T
        code = lo
        todo = lo != hi
        if todo.any():
            ur, uc = np.flatnonzero(todo.any(axis=1)), np.flatnonzero(todo.any(axis=0))
            xs, ys = x1[uc], y1[ur]
            ri = np.round((ys[:, None] + 0.5 * s * grid_noise(seed, 7, xs, ys, 4.0 * s)) / s).astype(np.int64)
            ci = np.round((xs[None, :] + 0.5 * s * grid_noise(seed, 6, xs, ys, 4.0 * s)) / s).astype(np.int64)
            m = 1 << -k
            nr, nc = np.nonzero(rows[ur] % m == 0)[0], np.nonzero(cols[uc] % m == 0)[0]
            ri[np.ix_(nr, nc)] = (rows[ur][nr] >> -k)[:, None]  # a node stays on itself (|warp| <= half a node)
            ci[np.ix_(nr, nc)] = (cols[uc][nc] >> -k)[None, :]
            sub = np.ix_(ur, uc)
            code[sub] = np.where(todo[sub], box[ri - r0, ci - c0], code[sub])
    land = code >= 16
    cls = code & np.uint8(15)
    return cls, land, land


def _reach(u: np.ndarray, first: int, up: int = 0) -> np.ndarray:
    """Lowest (``up`` 0) or highest (1) node index, minus ``first``, that a point at u (in nodes)
    can round to after a warp of at most half a node (1e-6 margin for the float expressions)."""
    return np.round(u + (0.5 + 1e-6) * (2 * up - 1)).astype(np.int64) - first


def _window(a: np.ndarray, lo: np.ndarray, hi: np.ndarray, fn) -> np.ndarray:
    """(len(lo), ...) ``fn`` (np.minimum / np.maximum) of a's rows lo[i] .. hi[i] (2 or 3 rows)."""
    last = a.shape[0] - 1
    two = fn(a[lo], a[np.minimum(lo + 1, last)])
    return np.where((hi - lo == 1)[:, None], two, fn(two, a[np.minimum(lo + 2, last)]))


def _plane_node_codes(seed: int, ur: np.ndarray, uc: np.ndarray) -> np.ndarray:
    """(len(ur), len(uc)) uint8 class + 16 x land of level-PLANE_CONTEXT_LEVEL lattice nodes.

    The context is ``PlaneAnchor.context`` (bilinear between anchor nodes, whose channels are 0/1):
    inside an anchor cell whose four corners agree on land, aridity, cold and cover group every
    point decides as its corners do, so only cells with differing corners are interpolated (with
    the same float32 expressions). Forest splits into needleleaf (cold climates or a 3 km noise)
    and broadleaf, grass into grass / shrub; towns on farmland where :func:`plane_city` > 0; all
    noise read at the node (the town noise is the rotated :func:`value_noise`: cities stay where they were)."""
    k = PLANE_CONTEXT_LEVEL - ANCHOR_LEVEL
    r0, c0 = ur >> k, uc >> k
    nr, nc = np.union1d(r0, r0 + 1), np.union1d(c0, c0 + 1)
    n = _anchor_nodes(seed, int(nr[0]), int(nr[-1]), int(nc[0]), int(nc[-1]))  # (11, h, w)
    n = n[:, nr - nr[0]][:, :, nc - nc[0]]
    i, j = np.searchsorted(nr, r0), np.searchsorted(nc, c0)

    def decide(c):  # channels (11, ...) -> (land, arid, cold, cover group or -1)
        cover = c[4:]
        return (c[0] >= 0.5, c[1] > 0.5, (c[2] + c[3]) > 0.5,
                np.where(cover.max(axis=0) > 0.5, cover.argmax(axis=0), -1))

    land_n, arid_n, cold_n, grp_n = decide(n)
    sig = ((grp_n + 1) * 8 + land_n * 4 + arid_n * 2 + cold_n).astype(np.uint8)  # (h, w) per anchor node
    same = (sig[:-1, :-1] == sig[1:, :-1]) & (sig[:-1, :-1] == sig[:-1, 1:]) & (sig[:-1, :-1] == sig[1:, 1:])
    sig_p = sig[i[:, None], j[None, :]]  # corner's decision everywhere
    mixed = ~same[np.minimum(i, same.shape[0] - 1)[:, None], np.minimum(j, same.shape[1] - 1)[None, :]]
    if mixed.any():
        pr, pc = np.nonzero(mixed)
        one = np.float32(1)
        tr = ((ur - (r0 << k)) / float(1 << k)).astype(np.float32)[pr]
        tc = ((uc - (c0 << k)) / float(1 << k)).astype(np.float32)
        cols_mix = np.flatnonzero(mixed.any(axis=0))
        along = np.zeros((n.shape[0], n.shape[1], uc.size), np.float32)  # along the columns at each anchor row
        along[:, :, cols_mix] = n[:, :, j[cols_mix]] * (one - tc[cols_mix]) + n[:, :, j[cols_mix] + 1] * tc[cols_mix]
        ii = i[pr]  # then across the rows: PlaneAnchor.context's float32 expressions, in its order
        c = (along[:, ii, pc] * (one - tr) + along[:, ii + 1, pc] * tr).astype(np.float32)
        la, ar, co, gr = decide(c)
        sig_p[pr, pc] = (gr + 1) * 8 + la * 4 + ar * 2 + co
    code = _SIG_CODE[sig_p]  # class + 16 x land, before the noise-driven splits and towns
    s = spacing_m(PLANE_CONTEXT_LEVEL)
    xs, ys = uc * s, ur * s
    broad, grass = code == BROADLEAF + 16, code == GRASSLAND + 16
    if broad.any() or grass.any():
        split = grid_noise(seed, 4, xs, ys, 3000.0)
        code = np.where(broad & (split > 0.45), np.uint8(NEEDLELEAF + 16), code)
        code = np.where(grass & (split < -0.3), np.uint8(SHRUBLAND + 16), code)
    farm = (code == CROPLAND + 16) | (code == GRASSLAND + 16)  # no urban group: towns on farmland
    if farm.any():
        code = np.where(farm & _town(seed, xs, ys, farm), np.uint8(URBAN + 16), code)
    return code


def _town(seed: int, xs: np.ndarray, ys: np.ndarray, want: np.ndarray, block: int = 8) -> np.ndarray:
    """(H, W) bool: :func:`plane_city` > 0 on the grid xs (W,) x ys (H,) where ``want`` (elsewhere
    False). Exact but cheap: the noise is bilinear in the faded fractions, and the fade is
    monotone, so over any sub-rectangle of a lattice cell it lies between its values at the
    sub-rectangle's corners. The lattice is cut into S x S sub-cells about a block of samples wide;
    a block whose sub-cells are all above (or all below) 0.65 at every corner is decided without
    evaluating it; only blocks on a city's edge are evaluated point by point."""
    from generator import noise

    key, ca, sa, off = noise.lattice_frame(seed, 2000 + 8)  # value_noise(seed, 8, ...): plane_city's lattice
    H, W = want.shape
    ext = block * float(abs(xs[1] - xs[0])) if W > 1 else PLANE_CITY_WAVE_M
    S = int(min(max(PLANE_CITY_WAVE_M // ext, 1), 32))  # sub-cells per lattice cell side
    r0 = np.arange(0, H, block)
    c0 = np.arange(0, W, block)
    yb = np.stack([ys[r0], ys[np.minimum(r0 + block - 1, H - 1)]])[:, :, None]  # (2, nbr, 1)
    xb = np.stack([xs[c0], xs[np.minimum(c0 + block - 1, W - 1)]])[:, None, :]  # (2, 1, nbc)
    u = np.stack([((ca * x - sa * y) / PLANE_CITY_WAVE_M + off) * S for x in xb for y in yb])  # sub-cell units
    v = np.stack([((sa * x + ca * y) / PLANE_CITY_WAVE_M - off) * S for x in xb for y in yb])
    p_lo, p_hi = np.floor(u.min(axis=0) - 1e-6).astype(np.int64), np.floor(u.max(axis=0) + 1e-6).astype(np.int64)
    q_lo, q_hi = np.floor(v.min(axis=0) - 1e-6).astype(np.int64), np.floor(v.max(axis=0) + 1e-6).astype(np.int64)
    pa, qa = int(p_lo.min()), int(q_lo.min())
    P = np.arange(pa, int(p_hi.max()) + 2, dtype=np.int64)  # sub-nodes along u and v
    Q = np.arange(qa, int(q_hi.max()) + 2, dtype=np.int64)
    li, lj = P // S, Q // S
    fu, fv = (P - li * S) / S, (Q - lj * S) / S
    fu = fu * fu * fu * (fu * (fu * 6.0 - 15.0) + 10.0)
    fv = fv * fv * fv * (fv * (fv * 6.0 - 15.0) + 10.0)
    nodes = noise.uniform_from_hash(noise.lattice_hash(
        key, np.arange(li[0], li[-1] + 2)[:, None], np.arange(lj[0], lj[-1] + 2)[None, :])) * 2.0 - 1.0
    top, bot = nodes[li - li[0]], nodes[li - li[0] + 1]  # (len(P), lattice cols)
    a, b = top[:, lj - lj[0]], bot[:, lj - lj[0]]
    c, d = top[:, lj - lj[0] + 1], bot[:, lj - lj[0] + 1]
    fu, fv = fu[:, None], fv[None, :]
    val = (a + (b - a) * fu) + ((c + (d - c) * fu) - (a + (b - a) * fu)) * fv  # noise at the sub-nodes
    quad = np.stack([val[:-1, :-1], val[1:, :-1], val[:-1, 1:], val[1:, 1:]])
    above = np.pad((quad.min(axis=0) > 0.65 + 1e-9).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    below = np.pad((quad.max(axis=0) < 0.65 - 1e-9).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def count(table):  # sub-cells of each block's index box that satisfy the test
        a0, a1, b0, b1 = p_lo - pa, p_hi - pa + 1, q_lo - qa, q_hi - qa + 1
        return table[a1, b1] - table[a0, b1] - table[a1, b0] + table[a0, b0]

    area = (p_hi - p_lo + 1) * (q_hi - q_lo + 1)
    state = np.where(count(above) == area, 1, np.where(count(below) == area, -1, 0))  # (nbr, nbc)
    full = np.repeat(np.repeat(state, block, axis=0), block, axis=1)[:H, :W]
    out = full == 1
    todo = want & (full == 0)
    if todo.any():
        fr, fc = np.nonzero(todo)
        out[fr, fc] = plane_city(seed, xs[fc], ys[fr]) > 0.0
    return out & want


def _sig_codes() -> np.ndarray:
    """(64,) uint8: class + 16 x land of a node from its signature (cover group + 1) x 8 + 4 land
    + 2 arid + cold (the context's decisions): cold forest is needleleaf, arid barren is sand."""
    table = np.array([BROADLEAF, GRASSLAND, WETLAND, CROPLAND, URBAN, SNOW_ICE, BARE_ROCK], dtype=np.uint8)
    out = np.zeros(64, np.uint8)
    for sig in range(64):
        grp, land, arid, cold = sig // 8 - 1, bool(sig & 4), bool(sig & 2), bool(sig & 1)
        cls = int(table[grp]) if 0 <= grp < len(table) else WATER
        cls = NEEDLELEAF if cls == BROADLEAF and cold else SAND if cls == BARE_ROCK and arid else cls
        out[sig] = cls + 16 if land else WATER
    return out


_SIG_CODE = _sig_codes()


def plane_city(seed: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Plane-world city field at (east, south) m: > 0 inside a city, rising to ~1 in its core
    (a 30 km value noise above 0.65, rescaled; about 6 % of the land)."""
    return (value_noise(seed, 8, x, y, PLANE_CITY_WAVE_M) - 0.65) / 0.35


def snowline_m(world: World, seed: int, lat_or_none: np.ndarray | None) -> np.ndarray | float:
    """Snowline altitude (m): earth by latitude (module docstring), plane the continent's."""
    if world is World.EARTH:
        return SNOW_EQUATOR_M - SNOW_FALL_M_PER_DEG * np.maximum(np.abs(lat_or_none) - 20.0, 0.0)
    from generator.anchors.plane import PlaneConfig

    return PlaneConfig().snowline_m


BEACH_CLASSES = np.zeros(256, bool)
BEACH_CLASSES[[GRASSLAND, SHRUBLAND, CROPLAND, BARE_ROCK, BROADLEAF, NEEDLELEAF]] = True


def landcover(world: World | str, seed: int, level: int, rows: np.ndarray, cols: np.ndarray,
              heights_m: np.ndarray, far_heights: FarHeights | None = None) -> np.ndarray:
    """Class ids (H, W) uint8 of level-``level`` samples rows (H,) x cols (W,) with heights (H, W) m."""
    world = World.parse(world) if not isinstance(world, World) else world
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    h = np.asarray(heights_m, dtype=np.float32)
    if h.shape != (rows.size, cols.size):
        raise ValueError(f"heights must be (len(rows), len(cols)) = {(rows.size, cols.size)}, got {h.shape}")
    if rows.size > 1 and not (np.diff(rows) == 1).all() or cols.size > 1 and not (np.diff(cols) == 1).all():
        raise ValueError("rows and cols must be consecutive global samples")
    cls, land, coast = base_classes(world, seed, level, rows, cols)
    x1, y1 = axis_locations(world, level, rows, cols)
    if world is World.EARTH:
        line = snowline_m(world, seed, y1)[:, None]
        wave = 0.02
    else:
        line = snowline_m(world, seed, None)
        wave = 2000.0
    beach = coast & (h < BEACH_M)
    if beach.any():
        cls = np.where(beach & BEACH_CLASSES[cls], np.uint8(SAND), cls)
    high = land & (h > line - SNOW_NOISE_M)
    if high.any():
        snow = high & (h > line + SNOW_NOISE_M * grid_noise(seed, 5, x1, y1, wave))
        cls = np.where(snow, np.uint8(SNOW_ICE), cls)
    cand = land & (cls != URBAN)  # towns keep their class: metre-scale roughness is not a cliff
    if cand.any() or far_heights is None:  # (without far_heights: say so if the window needs them)
        # screen in float32, then the float64 definition only where the screen comes within 2 %
        # groups born >= ROCK_TAIL_K levels up are few samples in many groups: measured pointwise below;
        # groups the window's relief cannot make steep are skipped (birth_slope's at_most)
        rough = birth_slope(world, level, rows, cols, h, far_heights, cand if far_heights is not None else None,
                            np.float32, max_k=ROCK_TAIL_K, at_most=0.98 * ROCK_SLOPE)
        screen = cand & (rough > np.float32(0.98 * ROCK_SLOPE))  # NaN compares False
        tail = birth_groups_from(level, rows, cols, ROCK_TAIL_K)
        pr, pc = np.nonzero(screen | (tail & cand if far_heights is not None else tail))
        if pr.size:
            steep = (_slope_at(world, level, rows, cols, h, far_heights, pr, pc) > ROCK_SLOPE) & cand[pr, pc]
            cls = cls.copy()
            cls[pr[steep], pc[steep]] = BARE_ROCK
    return cls.astype(np.uint8)


def tile_landcover(pyramid, key: TileKey, heights_m: np.ndarray | None = None) -> np.ndarray:
    """(T+1, T+1) uint8 classes of one pyramid tile; corner samples' far neighbours come from
    ``pyramid.region`` at their birth level (blocks the tile's ancestors mostly computed already)."""
    h = pyramid.tile(key).height if heights_m is None else heights_m
    rows = key.y * T + np.arange(T + 1, dtype=np.int64)
    cols = key.x * T + np.arange(T + 1, dtype=np.int64)

    seen: dict = {}  # the slope is screened, then measured: each corner is read once

    def far(level: int, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        todo = [(int(a), int(b)) for a, b in zip(r, c) if (level, int(a), int(b)) not in seen]
        if todo:  # a corner's birth parents are neighbours at their level: one small box
            ra, ca = min(a for a, _ in todo), min(b for _, b in todo)
            hh, ww = max(a for a, _ in todo) - ra + 1, max(b for _, b in todo) - ca + 1
            if hh * ww <= 16:
                box = pyramid.region(level, ra, ca, hh, ww)[0]
                for a, b in todo:
                    seen[level, a, b] = box[a - ra, b - ca]
            for a, b in todo:
                if (level, a, b) not in seen:
                    seen[level, a, b] = pyramid.region(level, a, b, 1, 1)[0, 0, 0]
        return np.array([seen[level, int(a), int(b)] for a, b in zip(r, c)], dtype=np.float32)

    return landcover(pyramid.world, pyramid.seed, key.level, rows, cols, h, far)
