"""The ``worldstream`` console script: the one place that composes concrete pieces.

Subcommands: tile, serve, fly (the main job), plus refine/eval (generator) and train
(learned refiner) when those modules are present. Bad arguments exit with status 2
and one line that says what was expected.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from pathlib import Path

from runtime.tiles import MAX_LEVEL, TileKey, World, validate_key


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (no usage dump)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_in(lo: int | None, hi: int | None, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{what} must be in [{lo}, {hi}], got {v}")
        return v

    return parse


def _world(text: str) -> World:
    try:
        return World.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _float_in(lo: float, hi: float, what: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be in [{lo}, {hi}], got {v}")
        return v

    return parse


def _xyz(text: str) -> tuple[float, float, float]:
    try:
        x, y, z = (float(v) for v in text.split(","))
        if not all(map(lambda v: v == v and abs(v) < 1e12, (x, y, z))):
            raise ValueError
        return x, y, z
    except ValueError:
        raise argparse.ArgumentTypeError(f"teleport must be X,Y,ALT (three numbers), got {text!r}") from None


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if not (16 <= w <= 8192 and 16 <= h <= 8192):
            raise ValueError
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT with 16..8192 each, got {text!r}") from None


def open_world(world: World, seed: int, refiner: str | None = None):
    """The generator for ``world`` (imported here: only entry points compose torch in)."""
    from generator.pyramid import open_world as _open

    return _open(world.value, seed, refiner=refiner or "auto")


def cmd_tile(args) -> int:
    import numpy as np

    key = TileKey(args.level, args.x, args.y)
    try:
        validate_key(args.world, key)
    except ValueError as exc:
        print(f"worldstream tile: error: {exc}", file=sys.stderr)
        return 2
    pyr = open_world(args.world, args.seed, args.refiner)
    f = pyr.tile(key)
    out = {"height": f.height, "level": np.int64(key.level), "x": np.int64(key.x), "y": np.int64(key.y),
           "model": np.array(f.model)}
    if f.rgb is not None:
        out["rgb"] = f.rgb
    from generator.features import contract_fields

    out.update(contract_fields(pyr, key, f.height, f.rgb))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    print(f"wrote {path}: tile {key} of {args.world.value} seed {args.seed}, model {f.model}, "
          f"height {float(f.height.min()):.1f}..{float(f.height.max()):.1f} m")
    return 0


def build_server(world: World, seed: int, refiner: str | None = None, token: str | None = None,
                 origins=None, store_dir: str | None = None, service_config=None, limits=None,
                 gen_cache_bytes: int | None = None):
    """Compose generator -> tile service (LRU, optional disk store, batching) -> height
    service -> websocket server (not started). ``gen_cache_bytes`` bounds the generator's
    block cache (default: the generator's own)."""
    from streaming.heights import HeightConfig, HeightService
    from streaming.protocol import Limits
    from streaming.server import TileServer
    from streaming.session import ServerInfo
    from streaming.store import TileStore
    from streaming.tileservice import ServiceConfig, TileService

    if gen_cache_bytes is None:
        pyr = open_world(world, seed, refiner)
    else:
        from generator.pyramid import open_world as open_pyramid

        pyr = open_pyramid(world.value, seed, refiner=refiner or "auto", cache_bytes=gen_cache_bytes)
    limits = limits or Limits()
    store = None
    if store_dir:
        store = TileStore(store_dir, model=pyr.model_id, world=world.value, seed=seed)
        store.sweep()  # temporary files of writers killed long ago
    service = TileService(world, pyr.tiles, service_config or ServiceConfig(), store=store)
    heights = HeightService(world, service.fields, HeightConfig(max_level=limits.max_level,
                                                                max_tiles=limits.max_height_tiles))
    service.on_fields = heights.remember
    info = ServerInfo(world=world.value, seed=seed, model=pyr.model_id, token=token, limits=limits)
    return TileServer(info, service, heights=heights, allowed_origins=origins)


def cmd_serve(args) -> int:
    from streaming.server import serve_forever
    from streaming.tileservice import ServiceConfig

    cfg = ServiceConfig(max_batch=args.max_batch, batch_wait_s=args.batch_wait_ms / 1000.0,
                        cache_bytes=args.cache_mb << 20, workers=args.workers)
    server = build_server(args.world, args.seed, args.refiner, args.token, args.origin, args.store, cfg,
                          gen_cache_bytes=None if args.gen_cache_mb is None else args.gen_cache_mb << 20)
    asyncio.run(serve_forever(server, args.host, args.port))
    return 0


def cmd_fly(args) -> int:
    from viewer.app import FlyOptions, run_fly

    opts = FlyOptions(world=args.world.value, seed=args.seed, frames=args.frames, out_dir=Path(args.out),
                      headless=args.headless, size=args.size, path_file=args.path, token=args.token,
                      teleport=args.teleport, agl_m=args.agl, hud=args.hud, geomorph=not args.no_geomorph,
                      error_target_px=args.error_target_px)
    if args.server:
        return run_fly(opts, url=args.server)
    server = build_server(args.world, args.seed, args.refiner, args.token)
    return run_fly(opts, server=server)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="worldstream", description="World streaming runtime: generate, serve and fly terrain.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def world_args(sp, default_world: str):
        sp.add_argument("--world", type=_world, default=World(default_world), help="plane or earth")
        sp.add_argument("--seed", type=_int_in(0, 2**63 - 1, "seed"), default=0)
        sp.add_argument("--refiner", default=None, help="fractal or learned (default: best available)")

    sp = sub.add_parser("tile", help="write one tile's fields to an .npz")
    world_args(sp, "plane")
    sp.add_argument("--level", type=_int_in(0, MAX_LEVEL, "level"), required=True)
    sp.add_argument("--x", type=_int_in(-(2**62), 2**62, "x"), required=True)
    sp.add_argument("--y", type=_int_in(-(2**62), 2**62, "y"), required=True)
    sp.add_argument("--out", required=True, help="output .npz path")
    sp.set_defaults(func=cmd_tile)

    sp = sub.add_parser("serve", help="serve a world over websockets until interrupted")
    world_args(sp, "earth")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=_int_in(0, 65535, "port"), default=8765)
    sp.add_argument("--token", default=None, help="shared secret clients must send in hello")
    sp.add_argument("--origin", action="append", default=None, help="allowed Origin (repeatable)")
    sp.add_argument("--store", default=None, help="folder of the on-disk tile store (default: memory only)")
    sp.add_argument("--max-batch", type=_int_in(1, 1024, "max-batch"), default=16,
                    help="keys per generator call")
    sp.add_argument("--batch-wait-ms", type=_int_in(0, 1000, "batch-wait-ms"), default=4,
                    help="longest wait for a batch to fill (ms)")
    sp.add_argument("--cache-mb", type=_int_in(1, 1 << 20, "cache-mb"), default=256,
                    help="tile LRU size (MiB)")
    sp.add_argument("--workers", type=_int_in(1, 256, "workers"), default=2, help="mesh/encode threads")
    sp.add_argument("--gen-cache-mb", type=_int_in(1, 1 << 20, "gen-cache-mb"), default=None,
                    help="generator block cache (MiB; default: the generator's, 512)")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("fly", help="fly through a world (window if a display exists, else headless)")
    world_args(sp, "earth")
    sp.add_argument("--headless", action="store_true", help="render offscreen through EGL")
    sp.add_argument("--frames", type=_int_in(1, 1_000_000, "frames"), default=240)
    sp.add_argument("--out", default="out/fly", help="folder for PNG frames, MP4 and stats.json")
    sp.add_argument("--size", type=_size, default=(960, 540), help="WIDTHxHEIGHT")
    sp.add_argument("--path", default=None, help="scripted camera path (JSON, see docs/VIEWER.md)")
    sp.add_argument("--server", default=None, help="ws:// URL of a running server (default: in-process)")
    sp.add_argument("--teleport", type=_xyz, default=None,
                    help="start at X,Y,ALT (plane: east,north metres; earth: lon,lat degrees) in free flight")
    sp.add_argument("--agl", type=_float_in(0.0, 1e8, "agl"), default=None,
                    help="with --teleport: ALT is metres above ground (terrain following)")
    sp.add_argument("--hud", action=argparse.BooleanOptionalAction, default=None,
                    help="draw the HUD (default: in a window only, so recordings stay identical)")
    sp.add_argument("--no-geomorph", action="store_true", help="switch levels without blending")
    sp.add_argument("--error-target-px", type=_float_in(0.1, 64.0, "error target"), default=2.0,
                    help="refine while a tile's screen-space error exceeds this (pixels)")
    sp.add_argument("--token", default=None)
    sp.set_defaults(func=cmd_fly)

    for module in ("generator.commands", "generator.learned.train", "streaming.http", "streaming.bake"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, NotImplementedError) as exc:
        print(f"worldstream {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
