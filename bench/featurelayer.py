"""The feature layer on the wire: bytes per tile (urban against rural), payload growth, and the
CPU it costs (server: land cover + features + coding; client: decoding + placing instances).

    python -m bench.featurelayer [--quick] [--earth]
    python -m bench.featurelayer --cpu [--earth] [--levels 6,7,8,10,12,13,14,15,16,17]

Tiles: a plane-world (seed 0) city core at levels 12-17 (12: merged blocks), its farmland and
forest surroundings, and with ``--earth`` Paris (needs the shared data). For each: the ``tile``
frame without the layer (what every client gets today) and with it, the growth, the layer's
parts, the number of buildings and trees, and times (``time.process_time``, per tile, heights
already generated): ``layer ms`` (``generator.layer.tile_layer``: land cover, streets,
buildings, trees; after one untimed call, so assets are loaded and the plane's anchor nodes of
the tile's 157 km area are memoised), ``code ms`` (``encode_layer``), ``decode ms``
(``decode_layer``) and ``place ms`` (``viewer.features.place_features`` on the drawn TIN).
Prints a table and one JSON line.

``--cpu``: only ``tile_layer``'s CPU per tile over levels, for the plane city core and forest
(and with ``--earth`` Paris, Tokyo and New York): warm = the least of 7 calls after one untimed
(robust on a shared machine), cold = one call after clearing the plane's anchor-node memo (the
first tile of a 157 km area; in a descent its level-7 ancestor pays that).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from runtime.tiles import T, TileKey, World

PLANE = {  # name -> level-13 tile of plane seed 0 and the levels to measure there
    "plane city core": (TileKey(13, -1520, 64), "urban"),
    "plane farmland": (TileKey(13, -1504, 64), "rural"),
    "plane forest": (TileKey(13, -960, 32), "rural"),
}
PARIS = (48.857, 2.352)


def _descend(key: TileKey, level: int) -> TileKey:
    while key.level < level:  # the child one in from the north-west corner (inside the parent)
        key = TileKey(key.level + 1, 2 * key.x + 1, 2 * key.y + 1)
    return key


def _process_s(fn, *args, repeat: int = 1):
    t0 = time.process_time()
    for _ in range(repeat):
        out = fn(*args)
    return out, (time.process_time() - t0) / repeat


def measure(pyramid, world: World, key: TileKey, repeat: int = 1) -> dict:
    from generator.layer import tile_layer
    from runtime.featurelayer import LAYER, decode_layer, encode_layer
    from runtime.wire import decode_tile
    from streaming import protocol as P
    from streaming.tileservice import mesh_encoder
    from viewer.features import place_features
    from viewer.flight import client_tile

    f = pyramid.tile(key)
    plain = mesh_encoder()(world, key, f)
    tile_layer(pyramid, key, f.height)  # warm: context assets loaded, anchor nodes memoised (see the cold note)
    arrays, t_layer = _process_s(tile_layer, pyramid, key, f.height, repeat=repeat)
    layer, t_code = _process_s(lambda: encode_layer(key.level, **arrays), repeat=repeat)
    msg = P.unpack(plain, 1 << 26)
    msg["tile"][LAYER] = layer
    full = P.pack(msg)
    decoded, t_dec = _process_s(decode_layer, layer, T, repeat=repeat)
    ct = client_tile(world, key, decode_tile(msg["tile"]))
    grid = ct.grid()
    _, t_place = _process_s(place_features, world, key, decoded, grid, ct.surface.center_m, repeat=repeat)
    part = {name: len(P.pack(layer[name])) if name in layer else 0 for name in ("classes", "buildings", "trees")}
    return {"key": f"{key.level}/{key.x}/{key.y}", "frame_b": len(plain), "with_layer_b": len(full),
            "growth_pct": 100.0 * (len(full) - len(plain)) / len(plain), "classes_b": part["classes"],
            "buildings_b": part["buildings"], "trees_b": part["trees"], "buildings": len(decoded.buildings),
            "trees": len(decoded.trees), "layer_ms": 1e3 * t_layer, "code_ms": 1e3 * t_code,
            "decode_ms": 1e3 * t_dec, "place_ms": 1e3 * t_place}


SEG_COLOURS = np.array([  # segmentation false colour per class id (255: black)
    [30, 80, 160], [240, 240, 250], [120, 110, 100], [220, 200, 140], [150, 200, 90], [170, 160, 90],
    [40, 120, 40], [20, 80, 50], [210, 190, 80], [80, 130, 110], [160, 160, 160], [220, 60, 50],
    [60, 60, 60], [30, 170, 60], [140, 190, 240]], np.uint8)


def figure(path: str, world: str = "plane", size=(640, 360)) -> dict:
    """A 300 m pass over a city through the real pipeline (in-process server with ``--features``,
    websocket, client, renderer): RGB beside the segmentation, written to ``path`` (PNG); returns
    the capture's timings and class shares."""
    from PIL import Image

    from streaming.cli import build_server
    from viewer.sensors import SensorSession, SensorSpec

    if world == "plane":  # inside the plane city core (level 13 tile -1520, 64), looking north-east
        x, y = -3_717_400.0, -157_000.0
    else:
        y, x = PARIS
    server = build_server(World.parse(world), 0, "fractal", features=True)
    t0 = time.perf_counter()
    with SensorSession([SensorSpec("front", size, 60.0)], server=server) as s:
        cam = s.camera("front", (x, y, 300.0), heading_deg=45.0, pitch_deg=-20.0, alt_mode="agl")
        f = s.capture({"front": cam}, timeout_s=900.0)["front"]
        wall = time.perf_counter() - t0
        r = s.renderer
        draw = s.flight.last.selection.draw
        up = s.flight.streamer.geometry.up(cam.position_m[None])[0]
        ms = {}
        for name, dist in (("with_features", r.features.options), ("terrain_only", None)):
            saved = r.features.tiles
            if dist is None:
                r.features.tiles = {}
            t = time.perf_counter()
            for _ in range(5):
                r.render(cam, draw, up, targets=s.rig.targets["front"])
                r.ctx.finish()
            ms[name] = (time.perf_counter() - t) / 5 * 1e3
            if dist is not None:
                ms["instances"] = r.features.drawn
            r.features.tiles = saved
    seg = SEG_COLOURS[np.minimum(f.segmentation, len(SEG_COLOURS) - 1)]
    seg[f.segmentation == 255] = 0
    img = Image.fromarray(np.concatenate([f.rgb, seg], axis=1))
    img.quantize(colors=128, dither=Image.Dither.NONE).save(path, optimize=True)  # a small PNG for docs/
    share = np.bincount(f.segmentation.ravel(), minlength=256) / f.segmentation.size
    from runtime.featurelayer import CLASS_NAMES

    return {"figure": path, "capture_s": wall, "render_ms": ms, "size": list(size),
            "class_share": {CLASS_NAMES[i]: round(float(share[i]), 4) for i in range(len(CLASS_NAMES)) if share[i]}}


def _key_at(k13: TileKey, level: int) -> TileKey:
    """The level-``level`` tile of the column under k13's north-west child path (ancestor above 13)."""
    return _descend(k13, level) if level >= 13 else TileKey(level, k13.x >> (13 - level), k13.y >> (13 - level))


def cpu_table(levels, earth: bool = False) -> dict:
    """{place: {level: [warm ms, cold ms]}} of ``generator.layer.tile_layer`` (module docstring)."""
    import generator.landcover as LC
    from generator.layer import tile_layer
    from generator.pyramid import open_world

    def one(pyr, key) -> list[float]:
        h = pyr.tile(key).height
        tile_layer(pyr, key, h)
        warm = min(_process_s(tile_layer, pyr, key, h)[1] for _ in range(7))
        LC.anchor_memo_clear()
        return [round(1e3 * warm, 2), round(1e3 * _process_s(tile_layer, pyr, key, h)[1], 2)]

    out: dict = {}
    plane = open_world("plane", 0, refiner="fractal")
    for name in ("plane city core", "plane forest"):
        out[name] = {level: one(plane, _key_at(PLANE[name][0], level)) for level in levels}
    if earth:
        from bench.cities import PLACES, earth_key

        pyr = open_world("earth", 0, refiner="fractal")
        for name in ("Paris", "Tokyo", "New York"):
            out[name] = {level: one(pyr, earth_key(*PLACES[name], level)) for level in levels}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="levels 12, 13 and 15 only, one repeat")
    ap.add_argument("--earth", action="store_true", help="also Paris (needs ../shared/data)")
    ap.add_argument("--figure", default=None, metavar="PNG",
                    help="instead: render a 300 m pass over the plane city (Paris with --earth) to PNG")
    ap.add_argument("--cpu", action="store_true", help="instead: tile_layer CPU per tile over levels, warm and cold")
    ap.add_argument("--levels", default="6,7,8,10,12,13,14,15,16,17", help="--cpu: levels")
    a = ap.parse_args(argv)
    if a.cpu:
        import torch

        torch.set_num_threads(1)
        t = cpu_table([int(v) for v in a.levels.split(",")], a.earth)
        for name, row in t.items():
            print(f"| {name} | " + " | ".join(f"{w:.1f} / {c:.1f}" for w, c in row.values()) + " |")
        warm = [w for row in t.values() for w, _ in row.values()]
        print(json.dumps({"bench": "featurelayer_cpu", "ms_warm_cold": t, "median_warm_ms": float(np.median(warm)),
                          "max_warm_ms": max(warm), "over_5ms": sum(w > 5.0 for w in warm), "tiles": len(warm)}))
        return 0
    if a.figure:
        print(json.dumps(figure(a.figure, "earth" if a.earth else "plane")))
        return 0
    import torch

    torch.set_num_threads(1)  # docs/DECISIONS.md: busy 2-core machines
    from generator.pyramid import open_world

    levels = (12, 13, 15) if a.quick else (12, 13, 14, 15, 16, 17)
    repeat = 1 if a.quick else 3
    rows = []
    plane = open_world("plane", 0, refiner="fractal")
    for name, (k13, kind) in PLANE.items():
        for level in levels:
            rows.append({"place": name, "kind": kind, **measure(plane, World.PLANE, _key_at(k13, level), repeat)})
    if a.earth:
        from bench.cities import earth_key

        earth = open_world("earth", 0, refiner="fractal")
        for level in levels:
            rows.append({"place": "Paris", "kind": "urban",
                         **measure(earth, World.EARTH, earth_key(*PARIS, level), repeat)})
    cols = ("place", "key", "frame_b", "with_layer_b", "growth_pct", "classes_b", "buildings_b", "trees_b",
            "buildings", "trees", "layer_ms", "code_ms", "decode_ms", "place_ms")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    urban = [r["growth_pct"] for r in rows if r["kind"] == "urban"]
    summary = {"bench": "featurelayer", "rows": rows, "max_urban_growth_pct": max(urban),
               "mean_urban_growth_pct": float(np.mean(urban)),
               "mean_layer_ms": float(np.mean([r["layer_ms"] for r in rows]))}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
