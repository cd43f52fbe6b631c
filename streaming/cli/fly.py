"""``worldstream fly``: the viewer, against a running server or one composed in-process."""

from __future__ import annotations

import argparse
from pathlib import Path

import streaming.cli.args as A
from runtime.lod.selection import SPECULATIVE_LEVELS
from runtime.tiles import World
from streaming.cli.compose import build_server


def check_fly_args(args) -> None:
    """ValueError (exit 2) for options that only mean something together."""
    if args.teleport is None:
        given = [f for f, v in (("--agl", args.agl), ("--heading", args.heading is not None),
                                ("--pitch", args.pitch is not None)) if v]
        if given:
            raise ValueError(f"{', '.join(given)} needs --teleport LON,LAT,ALT (or X,Y,ALT on the plane)")
    elif args.path:
        raise ValueError("give --teleport or --path, not both")


def cmd_fly(args) -> int:
    from viewer.app import FlyOptions, run_fly

    check_fly_args(args)
    opts = FlyOptions(world=args.world.value, seed=args.seed, frames=args.frames, out_dir=Path(args.out),
                      headless=args.headless, size=args.size, path_file=args.path, token=args.token,
                      teleport=args.teleport, teleport_agl=args.agl,
                      teleport_heading_deg=90.0 if args.heading is None else args.heading,
                      teleport_pitch_deg=-10.0 if args.pitch is None else args.pitch,
                      hud=args.hud, geomorph=not args.no_geomorph, error_target_px=args.error_target_px,
                      realtime=args.realtime, loading_max_s=args.loading_max_s, place_procs=args.place_procs,
                      guess_levels=args.guess_levels)
    if args.server:  # a client-only install (no torch) flies this way
        return run_fly(opts, url=args.server)
    server = build_server(args.world, args.seed, args.refiner, args.token, features=args.features)
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
    sp.add_argument("--teleport", type=A.xyz, default=None, metavar="X,Y,ALT",
                    help="start at X,Y,ALT (plane: east,north metres; earth: lon,lat degrees; ALT metres above "
                         "the datum, or above ground with --agl); in a window, free flight from there")
    sp.add_argument("--heading", type=A.float_in(-360.0, 360.0, "heading"), default=None, metavar="DEG",
                    help="with --teleport: view heading, degrees clockwise from north (default 90: east)")
    sp.add_argument("--pitch", type=A.float_in(-89.9, 89.9, "pitch"), default=None, metavar="DEG",
                    help="with --teleport: view pitch, degrees, up positive (default -10)")
    sp.add_argument("--agl", action="store_true",
                    help="with --teleport: ALT is metres above ground (terrain following on)")
    sp.add_argument("--hud", action=argparse.BooleanOptionalAction, default=None,
                    help="draw the HUD (default: in a window only, so recordings stay identical)")
    sp.add_argument("--no-geomorph", action="store_true", help="switch levels without blending")
    sp.add_argument("--error-target-px", type=A.float_in(0.1, 64.0, "error target"), default=2.0,
                    help="refine while a tile's screen-space error exceeds this (pixels)")
    sp.add_argument("--realtime", action="store_true",
                    help="headless: fly on the wall clock (frames skip poses, tiles drawn as they arrive; "
                         "--frames/30 s of path); stats.json measures latency, teleport and stalls")
    sp.add_argument("--place-procs", type=A.int_in(0, 64, "place processes"), default=None, metavar="N",
                    help="with --realtime (and in a window): decode and place arriving tiles in N worker "
                         "processes (0: a thread of the viewer; default: none on 1-2 cores, else up to 4)")
    sp.add_argument("--loading-max-s", type=A.float_in(0.0, 600.0, "loading time"), default=10.0, metavar="S",
                    help="with --realtime: the loading screen holds the first pose until its view is complete "
                         "at the error target, at most S seconds, before the flight clock starts (default 10)")
    sp.add_argument("--guess-levels", type=A.int_in(0, 20, "guess levels"), default=SPECULATIVE_LEVELS, metavar="N",
                    help="ask for tiles down to N levels below the deepest ones whose heights have arrived "
                         f"(default {SPECULATIVE_LEVELS}; deeper fills a new view in fewer round trips where the "
                         "server has cores to spare, and asks for more tiles the view may not need)")
    sp.add_argument("--features", action="store_true",
                    help="in-process server: serve and draw the feature layer (land cover, buildings, trees)")
    sp.add_argument("--token", default=None)
    sp.set_defaults(func=cmd_fly)
