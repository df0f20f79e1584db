"""Command line of sam2-matting.

    sam2-matting --help
    sam2-matting download tiny
    sam2-matting dev make-tiny-model checkpoints/tiny-random
    sam2-matting adapter import-legacy legacy.pt out_dir

Each subcommand lives in its own module with ``register(subparsers)``; the handler returns an
exit code. A :class:`~sam2_matting.errors.MattingError` is printed as one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from sam2_matting import __version__
from sam2_matting.errors import MattingError

PLUGIN_GROUP = "sam2_matting.commands"
# Subcommand modules, each with ``register(subparsers)``.
SUBCOMMANDS = (
    "sam2_matting.cli.download",
    "sam2_matting.cli.dev",
    "sam2_matting.cli.adapter",
    "sam2_matting.cli.matte",
    "sam2_matting.cli.batch",
    "sam2_matting.cli.train",
    "sam2_matting.cli.refiner_data",
    "sam2_matting.cli.evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam2-matting",
        description="Interactive video matting on SAM 2: soft 0-255 alpha mattes for every frame.",
    )
    parser.add_argument("--version", action="version", version=f"sam2-matting {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    # Commands of other installed packages (the web service registers `serve` this way, so
    # this package never imports the server).
    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except MattingError as err:
        print(f"sam2-matting: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("sam2-matting: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
