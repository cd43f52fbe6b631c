"""The ``worldstream`` console script: the composition root.

The only package that imports both the generator and the viewer; every other module is
handed what it needs (a tile source, a pyramid opener, an HTTP handler). One module per
command family, each with ``register(subparsers)``:

- ``tile``: one tile's fields to an .npz (``cli/tile.py``);
- ``height``: ground height, water and normal at points (``cli/height.py``);
- ``serve``: websockets, plus Cesium terrain / 3D Tiles over HTTP with ``--http`` (``cli/serve.py``);
- ``fly``: the viewer (``cli/fly.py``);
- ``refine``, ``eval``, ``train``: the generator (``cli/generate.py``);
- ``bake``, ``export``: the tile store (``cli/bake.py``).

``cli/compose.py`` builds the pieces (``open_world``, ``build_server``); ``cli/args.py``
holds the argument types. Bad arguments exit with status 2 and one line that says what
was expected.
"""

from __future__ import annotations

import logging
import sys

from streaming.cli import bake, fly, generate, height, serve, tile
from streaming.cli.args import Parser
from streaming.cli.compose import build_server, open_world, pyramid_opener


def build_parser() -> Parser:
    p = Parser(prog="worldstream", description="World streaming runtime: generate, serve and fly terrain.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    tile.register(sub)
    height.register(sub)
    serve.register(sub)
    fly.register(sub)
    generate.register(sub)
    bake.register(sub)
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


__all__ = ["build_parser", "build_server", "main", "open_world", "pyramid_opener"]

if __name__ == "__main__":
    sys.exit(main())
