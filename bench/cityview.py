"""Viewer frame time over a city, with the feature layer (issue 16: >= 120 fps at 1080p on one H200).

The scene: 300 m above the ground over the plane-world city core (seed 0, x -3,717,400 m,
y -157,000 m, heading 45, pitch -20: the view of docs/figures/city_300m_plane.png), or with
``--earth`` over Paris (lon 2.352, lat 48.857; needs the shared data), streamed to completion
at the error target for the benchmark's resolution (1920x1080 by default) from an in-process
fractal server with ``--features`` (land-cover classes, buildings, trees).

Rows (same scene, same run; ms = median with a glFinish after each frame, fps = N frames
queued with one glFinish):
- ``terrain_features``: the terrain pass with the land-cover ground and the instanced buildings
  and trees (``viewer/features.py``) - the target row;
- ``terrain_only``: baseline, the same pass without the instances (land-cover ground kept);
- ``terrain_no_layer``: baseline, the same tiles uploaded without the layer (the plain terrain);
- ``frame``: sky + terrain + features (what a recording draws);
- ``sensor_segmentation``: render + read back the segmentation at the sensor size (640x480);
  ``sensor_segmentation_full``: the same at the benchmark's size; ``sensor_rgb_seg_depth``:
  RGB + segmentation + depth at the sensor size.

``--capture FILE`` stores the scene (wire-encoded tiles with their feature layer, msgpack);
``--scene FILE`` renders a stored scene without the generator or a server (needs numpy, msgpack,
moderngl and glcontext only: how the GPU machine runs it). Prints a table and one JSON line.

    PYTHONPATH=. python bench/cityview.py [--earth] [--size 1920x1080] [--frames 60]
        [--capture FILE | --scene FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: bench.viewer

import numpy as np  # noqa: E402

from bench.viewer import _time, add_scene_args, print_rows, scene_from_args, settle_and_store, upload_scene  # noqa: E402
from runtime.tiles import World  # noqa: E402
from viewer.paths import Pose, camera_for  # noqa: E402

PLACES = {  # world -> (x, y, heading_deg, pitch_deg): plane east/north metres, earth lon/lat degrees
    "plane": (-3_717_400.0, -157_000.0, 45.0, -20.0),
    "earth": (2.352, 48.857, 45.0, -20.0),
}
TARGET_FPS = 120


def capture_city(world: World, seed: int, size: tuple[int, int], agl_m: float, error_target_px: float) -> dict:
    """Stream the city view to completion with the feature layer; {meta, tiles: [payload dicts]}."""
    from runtime.featurelayer import LAYER
    from streaming.cli import build_server
    from streaming.client import SyncTileClient
    from viewer.context import headless_context
    from viewer.flight import Flight, FlightOptions, start_in_process, stop_in_process
    from viewer.renderer import TerrainRenderer

    server = build_server(world, seed, "fractal", features=True)
    url, thread, loop = start_in_process(server)
    client = SyncTileClient(url, expect={"layers": [LAYER]})
    if LAYER not in client.hello.layers:
        raise RuntimeError(f"the server does not serve the {LAYER!r} layer (hello layers {client.hello.layers})")
    ctx = headless_context()
    r = TerrainRenderer(ctx, (64, 64))
    flight = Flight(world, client, r, FlightOptions(error_target_px=error_target_px, cache_bytes=4 << 30))
    x, y, heading, pitch = PLACES[world.value]
    pose = Pose(x, y, agl_m, "agl", heading, pitch)
    scene = settle_and_store(world, client, flight, pose, size, seed, agl_m, error_target_px, 900.0,
                             features=True)
    r.close()
    client.close()
    stop_in_process(server, thread, loop)
    ctx.release()
    return scene


def run(scene: dict, frames: int, sensor_size: tuple[int, int], png: str | None = None) -> dict:
    from viewer.context import headless_context
    from viewer.renderer import MorphOptions, TerrainRenderer
    from viewer.sensors import SensorRig, SensorSpec

    meta = scene["meta"]
    world = World(meta["world"])
    size = tuple(meta["size"])
    ctx = headless_context()
    gl = ctx.info.get("GL_RENDERER", "?")
    x, y, alt, hd, pt = meta["pose"]
    fov = math.radians(60.0)
    cam = camera_for(world, Pose(x, y, alt, "agl", hd, pt), meta["ground_m"], fov, size)
    up = np.array([0.0, 0.0, 1.0]) if world is World.PLANE else cam.up
    morph = MorphOptions(error_target_px=meta["error_target_px"])
    r = TerrainRenderer(ctx, size, morph=morph)
    t0 = time.perf_counter()
    draw = upload_scene(r, scene)
    upload_s = time.perf_counter() - t0
    r.render(cam, draw, up)
    ctx.finish()
    drawn_instances = r.features.drawn
    buildings = sum(g.counts[0] for k, g in r.features.tiles.items() if k in set(draw))
    trees = sum(g.counts[1] for k, g in r.features.tiles.items() if k in set(draw))
    tris, tris_culled = sum(r.tiles[k].triangles for k in draw if k in r.tiles), r.triangles_drawn
    gpu_mib = r.gpu_bytes / 2**20
    if png:
        from PIL import Image

        Image.fromarray(r.read_rgb()).save(png)
    vp32 = (cam.projection() @ cam.view_rotation()).T.astype(np.float32).tobytes()

    def pass_of(rr):
        def terrain():
            rr.fbo.use()
            ctx.viewport = (0, 0, *size)
            rr.fbo.clear(depth=1.0)
            rr.draw_terrain(cam, draw, vp32)
        return terrain

    rows = []
    ms, fps = _time(pass_of(r), frames, ctx.finish)
    rows.append(("terrain_features", ms, fps, None))
    saved, r.features.tiles = r.features.tiles, {}
    ms, fps = _time(pass_of(r), frames, ctx.finish)
    rows.append(("terrain_only", ms, fps, None))
    r.features.tiles = saved
    r0 = TerrainRenderer(ctx, size, morph=morph)
    upload_scene(r0, scene, features=False)
    r0.render(cam, draw, up)
    ms, fps = _time(pass_of(r0), frames, ctx.finish)
    rows.append(("terrain_no_layer", ms, fps, None))
    r0.close()
    ms, fps = _time(lambda: r.render(cam, draw, up), frames, ctx.finish)
    rows.append(("frame", ms, fps, None))
    assert ctx.error == "GL_NO_ERROR", ctx.error
    seg_share = None
    sensor_frames = max(3, frames // 2)
    for name, ssize, ch in (("segmentation", sensor_size, {"segmentation"}),
                            ("segmentation_full", size, {"segmentation"}),
                            ("rgb_seg_depth", sensor_size, {"rgb", "segmentation", "depth_m"})):
        rig = SensorRig(r, [SensorSpec("cam", tuple(ssize), 60.0, frozenset(ch))])
        scam = camera_for(world, Pose(x, y, alt, "agl", hd, pt), meta["ground_m"], fov, tuple(ssize))
        f = rig.capture({"cam": scam}, draw, lambda p: up)["cam"]
        if seg_share is None:
            from runtime.featurelayer import CLASS_NAMES

            share = np.bincount(f.segmentation.ravel(), minlength=256) / f.segmentation.size
            seg_share = {CLASS_NAMES[i] if i < len(CLASS_NAMES) else str(i): round(float(share[i]), 4)
                         for i in np.flatnonzero(share)}
        ms, fps = _time(lambda rig=rig, scam=scam: rig.capture({"cam": scam}, draw, lambda p: up),
                        sensor_frames, ctx.finish)
        rows.append((f"sensor_{name}", ms, fps, f.nbytes * fps / 2**20))
        rig.release()
    assert ctx.error == "GL_NO_ERROR", ctx.error
    r.close()
    return {"gl_renderer": gl, "size": list(size), "sensor_size": list(sensor_size), "tiles": len(draw),
            "triangles": tris, "triangles_after_chunk_culling": tris_culled, "buildings": buildings,
            "trees": trees, "instances_drawn": drawn_instances, "gpu_mib": round(gpu_mib, 1),
            "upload_s": round(upload_s, 2), "segmentation_share": seg_share, "rows": rows, "frames": frames}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--earth", action="store_true", help="Paris instead of the plane city (needs the shared data)")
    add_scene_args(ap, seed=0)
    ap.add_argument("--capture-only", action="store_true", help="with --capture: store the scene, no bench")
    ap.add_argument("--json", default=None, help="also write the JSON line to this file")
    a = ap.parse_args(argv)
    scene, _, ssize, capture_s = scene_from_args(
        a, lambda size: capture_city(World.EARTH if a.earth else World.PLANE, a.seed, size, a.agl, a.error_target_px))
    if a.capture and a.capture_only and not a.scene:
        return 0
    m = scene["meta"]
    if not any(p.get("features") for p in scene["tiles"]):
        raise SystemExit("the scene carries no feature layer (capture it with this script)")
    res = run(scene, a.frames, ssize, a.png)
    print(f"city view bench: {res['gl_renderer']} | {a.machine} | {m['world']} seed {m['seed']} at "
          f"{m['agl_m']:.0f} m AGL, {res['size'][0]}x{res['size'][1]}, {res['tiles']} tiles, "
          f"{res['triangles']:,} triangles ({res['triangles_after_chunk_culling']:,} after chunk culling), "
          f"{res['buildings']:,} buildings + {res['trees']:,} trees on drawn tiles "
          f"({res['instances_drawn']:,} within draw distance), {res['gpu_mib']} MiB on the GPU")
    print_rows(res["rows"])
    target = next(r for r in res["rows"] if r[0] == "terrain_features")
    out = {"bench": "cityview", "gl_renderer": res["gl_renderer"], "machine": a.machine, "world": m["world"],
           "seed": m["seed"], "size": res["size"], "sensor_size": res["sensor_size"], "tiles": res["tiles"],
           "triangles": res["triangles"], "triangles_after_chunk_culling": res["triangles_after_chunk_culling"],
           "buildings": res["buildings"], "trees": res["trees"], "instances_drawn": res["instances_drawn"],
           "gpu_mib": res["gpu_mib"], "frames": res["frames"], "target_fps": TARGET_FPS,
           "terrain_features_fps": round(target[2], 1), "terrain_features_ms": round(target[1], 3),
           "meets_target": bool(target[2] >= TARGET_FPS), "capture_s": round(capture_s, 1),
           "upload_s": res["upload_s"], "segmentation_share": res["segmentation_share"],
           "rows": {n: {"ms": round(ms, 3), "fps": round(fps, 1), "mib_s": None if mb is None else round(mb, 1)}
                    for n, ms, fps, mb in res["rows"]}}
    line = json.dumps(out)
    print(line)
    if a.json:
        Path(a.json).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
