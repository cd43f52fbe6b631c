"""Viewer frame time and sensor read-back throughput (docs/VIEWER.md, docs/BENCHMARKS.md).

The scene: the view of a 300 m AGL flight over the default start (``viewer.app.default_start``:
the most relief below the snow), streamed to completion at the error target for the
benchmark's resolution (1920x1080 by default) from an in-process fractal server.

Rows (same scene, same run):
- ``terrain``: the terrain pass (geomorph, water, MRT colour/normal/NIR) - the target row;
- ``terrain_no_morph``: baseline, the same pass with geomorphing off;
- ``terrain_rtin_face_order``: baseline, faces in decoded RTIN order (no Z-order for the vertex cache);
- ``frame``: sky + terrain (what a recording draws);
- ``sensor_*``: render + read back per channel set (RGB, depth in metres, normals, all).

Each render row reports ms/frame as latency (glFinish after every frame) and fps as
throughput (N frames queued, one glFinish). ``--capture FILE`` stores the scene as wire-
encoded tiles (msgpack), ``--scene FILE`` renders a stored scene without the generator
(how the GPU machine runs it). Ends with one JSON line.

    PYTHONPATH=. python bench/viewer.py [--size 1920x1080] [--frames 60]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# viewer package: drop it (``python -m bench.viewer`` needs no such care).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import msgpack  # noqa: E402
import numpy as np  # noqa: E402

from runtime import wire  # noqa: E402
from runtime.tiles import TileKey, World, neighbour, skirt_depth_for  # noqa: E402
from runtime.tin import stitch_edge_normals, tin_surface, tin_to_grid, with_morph  # noqa: E402
from viewer.paths import Pose, camera_for  # noqa: E402


def capture_scene(world: World, seed: int, size: tuple[int, int], agl_m: float, error_target_px: float) -> dict:
    """Stream the 300 m AGL view to completion; returns {meta, tiles: [wire payload dicts]}."""
    from streaming.cli import build_server
    from streaming.client import SyncTileClient
    from viewer.app import default_start
    from viewer.context import headless_context
    from viewer.flight import Flight, FlightOptions, start_in_process
    from viewer.renderer import TerrainRenderer

    server = build_server(world, seed)
    url, thread, loop = start_in_process(server)
    client = SyncTileClient(url)
    ctx = headless_context()
    r = TerrainRenderer(ctx, (64, 64))
    flight = Flight(world, client, r, FlightOptions(error_target_px=error_target_px, cache_bytes=4 << 30))
    x, y, _ = default_start(world, client)  # heading fixed at 80 deg: the recorded scene
    pose = Pose(x, y, agl_m, "agl", 80.0, -8.0)
    scene = settle_and_store(world, client, flight, pose, size, seed, agl_m, error_target_px, 600.0)
    r.close()
    client.close()
    import asyncio

    asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    ctx.release()
    return scene


def encode_client_tile(key: TileKey, t, model: str) -> dict:
    """A client tile (``viewer.flight.ClientTile``) back to its wire payload, its feature layer
    included when it has one (buildings and trees are on the level's quanta, the palette on
    bytes: the round trip is exact)."""
    rc = np.rint(t.tin.grid_rc).astype(np.int64)
    img = wire.encode_image(t.image / 255.0, quality=92) if t.image is not None else None
    p = wire.encode_tile(rc, t.tin.height_m, t.tin.faces, key=key, geometric_error_m=t.ge_m, model=model,
                         rgb_jpeg_or_png=img)
    layer = getattr(t, "layer", None)
    if layer is not None:
        from runtime.featurelayer import LAYER, encode_layer

        pal = {} if layer.albedo is None else {"albedo": layer.albedo / 255.0, "nir": layer.nir / 255.0}
        p[LAYER] = encode_layer(key.level, classes=layer.classes, buildings=layer.buildings, trees=layer.trees, **pal)
    return p


def settle_and_store(world: World, client, flight, pose: Pose, size, seed: int, agl_m: float,
                     error_target_px: float, settle_s: float, **meta_extra) -> dict:
    """Follow the terrain at ``pose`` until the view is complete, then store the drawn tiles and
    their parents (wire payloads) and the pose: {meta, tiles}."""
    fov = math.radians(60.0)
    ground = 0.0
    for _ in range(4):  # terrain following converges as finer tiles arrive
        cam = camera_for(world, pose, ground, fov, size)
        flight.settle([cam], settle_s)
        ground = flight.ground_m(pose.x, pose.y)
    cam = camera_for(world, pose, ground, fov, size)
    flight.settle([cam], settle_s)
    draw = list(flight.last.selection.draw)
    keys = set(draw) | {k.parent() for k in draw if k.level > 0}
    tiles = [encode_client_tile(k, flight.streamer.payload(k), client.hello.model)
             for k in sorted(keys) if flight.streamer.payload(k) is not None]
    meta = {"world": world.value, "seed": seed, "size": list(size), "agl_m": agl_m, "x": pose.x, "y": pose.y,
            "ground_m": ground, "pose": [pose.x, pose.y, pose.alt_m, pose.heading_deg, pose.pitch_deg],
            "error_target_px": error_target_px, "draw": [[k.level, k.x, k.y] for k in draw], **meta_extra}
    return {"meta": meta, "tiles": tiles}


def upload_scene(renderer, scene: dict, geomorph: bool = True, features: bool = True) -> list[TileKey]:
    """Decode a stored scene's tiles and upload them as the viewer does (stitched edge normals,
    morph targets toward the parent, and, where a tile carries the feature layer and
    ``features``, its classes and its buildings and trees placed on the drawn TIN);
    returns the keys to draw."""
    from viewer.features import place_features

    world = World(scene["meta"]["world"])
    decoded = {}
    for p in scene["tiles"]:
        t = wire.decode_tile(p)
        decoded[t.key] = t
    grids = {}
    surfaces = {k: tin_surface(world, k, t.grid_rc, t.height_m, t.faces, (t.west, t.south, t.east, t.north),
                               skirt_depth_for(t.geometric_error_m)) for k, t in decoded.items()}
    for k in sorted(surfaces):  # as the viewer does on arrival: exact normals on shared edges
        for dx, dy in ((1, 0), (0, 1)):
            nk = neighbour(world, k, dx, dy)
            if nk in surfaces:
                pair = stitch_edge_normals(world, surfaces[k], surfaces[nk])
                if pair is not None:
                    surfaces[k], surfaces[nk] = pair
    for k, t in decoded.items():
        s = surfaces[k]
        parent = decoded.get(k.parent()) if k.level > 0 and geomorph else None
        pge = 0.0
        if parent is not None:
            if parent.key not in grids:
                grids[parent.key] = tin_to_grid(parent.grid_rc, parent.height_m, parent.faces)
            s = with_morph(world, s, grids[parent.key], surfaces[parent.key])
            pge = parent.geometric_error_m
        img = wire.decode_image(t.image) if t.image is not None else None
        layer = t.features if features else None
        placed = None
        if layer is not None and (len(layer.buildings) or len(layer.trees)):
            placed = place_features(world, k, layer, tin_to_grid(t.grid_rc, t.height_m, t.faces),
                                    surfaces[k].center_m)
        renderer.upload(s, img, parent_ge_m=pge, layer=layer, placed=placed)
    return [TileKey(*k) for k in scene["meta"]["draw"]]


def _time(fn, frames: int, finish) -> tuple[float, float]:
    """(ms per frame with a finish after each, frames per second queued with one finish)."""
    fn()
    finish()
    lat = []
    for _ in range(frames):
        t0 = time.perf_counter()
        fn()
        finish()
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(frames):
        fn()
    finish()
    thr = frames / (time.perf_counter() - t0)
    return float(np.median(lat) * 1e3), thr


def run(scene: dict, frames: int, sensor_size: tuple[int, int], png: str | None = None, probe: bool = False) -> dict:
    from viewer.context import headless_context
    from viewer.renderer import MorphOptions, RenderTargets, TerrainRenderer
    from viewer.sensors import SensorRig, SensorSpec

    meta = scene["meta"]
    world = World(meta["world"])
    size = tuple(meta["size"])
    ctx = headless_context()
    gl = ctx.info.get("GL_RENDERER", "?")
    x, y, alt, hd, pt = meta["pose"]
    cam = camera_for(world, Pose(x, y, alt, "agl", hd, pt), meta["ground_m"], math.radians(60.0), size)
    up = np.array([0.0, 0.0, 1.0]) if world is World.PLANE else cam.up
    rows = []
    r = TerrainRenderer(ctx, size, morph=MorphOptions(error_target_px=meta["error_target_px"]))
    draw = upload_scene(r, scene)
    r.render(cam, draw, up)
    tris, gpu_mib = sum(r.tiles[k].triangles for k in draw if k in r.tiles), r.gpu_bytes / 2**20
    tris_culled = r.triangles_drawn
    if png:
        from PIL import Image

        Image.fromarray(r.read_rgb()).save(png)
    vp32 = (cam.projection() @ cam.view_rotation()).T.astype(np.float32).tobytes()

    def terrain():
        r.fbo.use()
        r.fbo.clear(depth=1.0)
        r.draw_terrain(cam, draw, vp32)

    ms, fps = _time(terrain, frames, ctx.finish)
    rows.append(("terrain", ms, fps, None))
    r.morph = MorphOptions(enabled=False)
    ms, fps = _time(terrain, frames, ctx.finish)
    rows.append(("terrain_no_morph", ms, fps, None))
    # Baseline: faces in decoded RTIN order (poor post-transform vertex-cache reuse).
    import viewer.renderer as vr

    vr.Z_ORDER_FACES = False
    r0 = TerrainRenderer(ctx, size, morph=MorphOptions(error_target_px=meta["error_target_px"]))
    draw0 = upload_scene(r0, scene)

    def terrain_rtin_order():
        r0.fbo.use()
        r0.fbo.clear(depth=1.0)
        r0.draw_terrain(cam, draw0, vp32)

    ms, fps = _time(terrain_rtin_order, frames, ctx.finish)
    rows.append(("terrain_rtin_face_order", ms, fps, None))
    r0.close()
    vr.Z_ORDER_FACES = True
    r.morph = MorphOptions(error_target_px=meta["error_target_px"])
    ms, fps = _time(lambda: r.render(cam, draw, up), frames, ctx.finish)
    rows.append(("frame", ms, fps, None))
    assert ctx.error == "GL_NO_ERROR", ctx.error
    if probe:
        # Where the time goes: Python submission alone, a tiny viewport (vertex-bound part),
        # back-face culling, and per-vertex log depth (early depth test kept).
        ctx.finish()
        sub = []
        for _ in range(frames):
            t0 = time.perf_counter()
            terrain()
            sub.append(time.perf_counter() - t0)
        ctx.finish()
        rows.append(("submit_cpu_only", float(np.median(sub) * 1e3), float("nan"), None))
        small = RenderTargets(ctx, (320, 180))
        scam = camera_for(world, Pose(x, y, alt, "agl", hd, pt), meta["ground_m"], math.radians(60.0), (320, 180))
        svp = (scam.projection() @ scam.view_rotation()).T.astype(np.float32).tobytes()

        def terrain_small():
            small.fbo.use()
            ctx.viewport = (0, 0, 320, 180)
            small.fbo.clear(depth=1.0)
            r.draw_terrain(scam, draw, svp)

        ms, fps = _time(terrain_small, frames, ctx.finish)
        rows.append(("terrain_320x180", ms, fps, None))
        small.release()
        r.chunk_culling = False
        ms, fps = _time(terrain, frames, ctx.finish)
        rows.append(("terrain_no_chunk_culling", ms, fps, None))
        r.chunk_culling = True
        r.cull_backfaces = True
        ms, fps = _time(terrain, frames, ctx.finish)
        rows.append(("terrain_cull", ms, fps, None))
        r.cull_backfaces = False
        rv = TerrainRenderer(ctx, size, morph=MorphOptions(error_target_px=meta["error_target_px"]),
                             fragment_depth=False)
        upload_scene(rv, scene)

        def terrain_v():
            rv.fbo.use()
            ctx.viewport = (0, 0, *size)
            rv.fbo.clear(depth=1.0)
            rv.draw_terrain(cam, draw, vp32)

        ms, fps = _time(terrain_v, frames, ctx.finish)
        rows.append(("terrain_vertex_depth", ms, fps, None))
        rv.cull_backfaces = True
        ms, fps = _time(terrain_v, frames, ctx.finish)
        rows.append(("terrain_vertex_depth_cull", ms, fps, None))
        rv.close()
        assert ctx.error == "GL_NO_ERROR", ctx.error

    sw, sh = sensor_size
    sensor_frames = max(5, frames // 2)
    for name, ch in (("rgb", {"rgb"}), ("depth", {"depth_m"}), ("normal", {"normal"}),
                     ("all", {"rgb", "depth_m", "normal"})):
        rig = SensorRig(r, [SensorSpec("cam", (sw, sh), 60.0, frozenset(ch))])
        scam = camera_for(world, Pose(x, y, alt, "agl", hd, pt), meta["ground_m"], math.radians(60.0), (sw, sh))
        nbytes = rig.capture({"cam": scam}, draw, lambda p: up)["cam"].nbytes
        ms, fps = _time(lambda rig=rig, scam=scam: rig.capture({"cam": scam}, draw, lambda p: up),
                        sensor_frames, ctx.finish)
        rows.append((f"sensor_{name}", ms, fps, nbytes * fps / 2**20))
        rig.release()
    r.close()
    return {"gl_renderer": gl, "size": list(size), "sensor_size": [sw, sh], "triangles": tris,
            "triangles_after_chunk_culling": tris_culled, "tiles": len(draw),
            "gpu_mib": round(gpu_mib, 1), "rows": rows, "frames": frames}


def add_scene_args(ap: argparse.ArgumentParser, seed: int) -> None:
    """The options of a stored or freshly streamed scene, shared by this bench and bench/cityview.py."""
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--sensor-size", default="640x480")
    ap.add_argument("--agl", type=float, default=300.0)
    ap.add_argument("--error-target-px", type=float, default=2.0)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--capture", default=None, help="stream the scene and store it here (msgpack), then bench")
    ap.add_argument("--scene", default=None, help="bench a stored scene (no generator needed)")
    ap.add_argument("--png", default=None, help="save the benchmarked frame here")
    ap.add_argument("--machine", default=platform.processor() or platform.machine())


def scene_from_args(a: argparse.Namespace, capture) -> tuple[dict, tuple[int, int], tuple[int, int], float]:
    """(scene, frame size, sensor size, seconds to get the scene): the stored ``--scene``, or
    ``capture(size)`` streamed now and written to ``--capture`` when that is given."""
    size = tuple(int(v) for v in a.size.lower().split("x"))
    ssize = tuple(int(v) for v in a.sensor_size.lower().split("x"))
    t0 = time.perf_counter()
    if a.scene:
        scene = msgpack.unpackb(Path(a.scene).read_bytes(), raw=False, strict_map_key=False)
    else:
        scene = capture(size)
        if a.capture:
            Path(a.capture).write_bytes(msgpack.packb(scene, use_bin_type=True))
            print(f"stored {len(scene['tiles'])} tiles in {a.capture} "
                  f"({Path(a.capture).stat().st_size / 2**20:.1f} MiB)", flush=True)
    return scene, size, ssize, time.perf_counter() - t0


def print_rows(rows: list) -> None:
    """The timing table both viewer benches print: (name, ms, fps, read-back MiB/s or None) rows."""
    print(f"{'row':<26} {'ms (finish each)':>16} {'fps (queued)':>14} {'read-back MiB/s':>16}")
    for name, ms, fps, mbs in rows:
        print(f"{name:<26} {ms:>16.3f} {fps:>14.1f} {'' if mbs is None else f'{mbs:.1f}':>16}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", default="plane")
    add_scene_args(ap, seed=3)
    ap.add_argument("--probe", action="store_true", help="extra rows: CPU submission, tiny viewport, culling, "
                    "vertex log depth")
    a = ap.parse_args(argv)
    scene, _, ssize, capture_s = scene_from_args(
        a, lambda size: capture_scene(World(a.world), a.seed, size, a.agl, a.error_target_px))
    res = run(scene, a.frames, ssize, a.png, a.probe)
    print(f"viewer bench: {res['gl_renderer']} | {a.machine} | scene {scene['meta']['world']} seed "
          f"{scene['meta']['seed']} at {scene['meta']['agl_m']:.0f} m AGL, {res['size'][0]}x{res['size'][1]}, "
          f"{res['tiles']} tiles, {res['triangles']:,} triangles ({res['triangles_after_chunk_culling']:,} after "
          f"chunk culling), {res['gpu_mib']} MiB on the GPU")
    print_rows(res["rows"])
    terrain = next(r for r in res["rows"] if r[0] == "terrain")
    out = {"bench": "viewer", "gl_renderer": res["gl_renderer"], "machine": a.machine, "size": res["size"],
           "sensor_size": res["sensor_size"], "tiles": res["tiles"], "triangles": res["triangles"],
           "triangles_after_chunk_culling": res["triangles_after_chunk_culling"],
           "gpu_mib": res["gpu_mib"], "terrain_fps": round(terrain[2], 1), "terrain_ms": round(terrain[1], 3),
           "target_terrain_fps": 240, "capture_s": round(capture_s, 1),
           "rows": {n: {"ms": round(ms, 3), "fps": None if fps != fps else round(fps, 1),
                        "mib_s": None if m is None else round(m, 1)}
                    for n, ms, fps, m in res["rows"]}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
