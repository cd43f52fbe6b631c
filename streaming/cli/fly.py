"""``worldstream fly``: the viewer, against a running server or one composed in-process."""

from __future__ import annotations

import argparse
from pathlib import Path

import streaming.cli.args as A
from runtime.tiles import World
from streaming.cli.compose import build_server


def cmd_fly(args) -> int:
    from viewer.app import FlyOptions, run_fly

    opts = FlyOptions(world=args.world.value, seed=args.seed, frames=args.frames, out_dir=Path(args.out),
                      headless=args.headless, size=args.size, path_file=args.path, token=args.token,
                      teleport=args.teleport, agl_m=args.agl, hud=args.hud, geomorph=not args.no_geomorph,
                      error_target_px=args.error_target_px, realtime=args.realtime)
    if args.server:  # a client-only install (no torch) flies this way
        return run_fly(opts, url=args.server)
    server = build_server(args.world, args.seed, args.refiner, args.token)
    return run_fly(opts, server=server)


def register(sub) -> None:
    sp = sub.add_parser("fly", help="fly through a world (window if a display exists, else headless)")
    A.world_args(sp, World.EARTH)
    sp.add_argument("--headless", action="store_true", help="render offscreen through EGL")
    sp.add_argument("--frames", type=A.int_in(1, 1_000_000, "frames"), default=240)
    sp.add_argument("--out", default="out/fly", help="folder for PNG frames, MP4 and stats.json")
    sp.add_argument("--size", type=A.size, default=(960, 540), help="WIDTHxHEIGHT")
    sp.add_argument("--path", default=None, help="scripted camera path (JSON, see docs/VIEWER.md)")
    sp.add_argument("--server", default=None, help="ws:// URL of a running server (default: in-process)")
    sp.add_argument("--teleport", type=A.xyz, default=None,
                    help="start at X,Y,ALT (plane: east,north metres; earth: lon,lat degrees) in free flight")
    sp.add_argument("--agl", type=A.float_in(0.0, 1e8, "agl"), default=None,
                    help="with --teleport: ALT is metres above ground (terrain following)")
    sp.add_argument("--hud", action=argparse.BooleanOptionalAction, default=None,
                    help="draw the HUD (default: in a window only, so recordings stay identical)")
    sp.add_argument("--no-geomorph", action="store_true", help="switch levels without blending")
    sp.add_argument("--error-target-px", type=A.float_in(0.1, 64.0, "error target"), default=2.0,
                    help="refine while a tile's screen-space error exceeds this (pixels)")
    sp.add_argument("--realtime", action="store_true",
                    help="headless: fly on the wall clock (frames skip poses, tiles drawn as they arrive; "
                         "--frames/30 s of path); stats.json measures latency, teleport and stalls")
    sp.add_argument("--token", default=None)
    sp.set_defaults(func=cmd_fly)
