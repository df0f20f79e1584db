"""Checkpoint download command.

    sam2-matting download tiny                         # -> ./checkpoints/sam2.1_hiera_tiny.pt
    sam2-matting download large --dir /models --force  # download again even if present
    sam2-matting download tiny --url http://mirror/sam2.1_hiera_tiny.pt --no-progress
    sam2-matting download --list                       # the model table, and what is present

The folder defaults to ``$SAM2_MATTING_CHECKPOINTS`` or ``./checkpoints``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sam2_matting.cli.model_options import value_set
from sam2_matting.errors import InvalidInputError
from sam2_matting.registry import MODELS


def register(sub: Any) -> None:
    """Add the ``download`` subcommand to an argparse ``subparsers`` object."""
    parser = sub.add_parser(
        "download",
        help="download an official SAM 2.1 checkpoint (resumable, SHA-256 checked)",
        description="Download an official SAM 2.1 checkpoint into the checkpoint folder. "
        "A broken download resumes; the file's SHA-256 is recorded in checksums.json on first "
        "download and checked on every later run.",
    )
    parser.add_argument(
        "model",
        nargs="?",
        metavar=value_set(list(MODELS)),
        help="model size (aliases t, s, b+, l, hiera_t, ... are accepted)",
    )
    parser.add_argument(
        "--dir",
        dest="directory",
        metavar="DIR",
        help="checkpoint folder (default: $SAM2_MATTING_CHECKPOINTS or ./checkpoints)",
    )
    parser.add_argument(
        "--force", action="store_true", help="download again even if the file is present"
    )
    parser.add_argument("--url", metavar="URL", help="download from this URL instead (a mirror)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--list", action="store_true", help="list the models and which are present locally"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``sam2-matting download``; return the exit code."""
    from sam2_matting.download import CHECKSUMS_FILE, download_model, read_checksums
    from sam2_matting.registry import checkpoint_path, get_model_spec

    if args.list:
        print(format_table(args.directory))
        return 0
    if not args.model:
        raise InvalidInputError("name a model (tiny, small, base_plus, large) or pass --list")

    spec = get_model_spec(args.model)
    target = checkpoint_path(spec, args.directory)
    present = target.exists() and not args.force
    was_recorded = spec.checkpoint_file in read_checksums(target.parent)
    path = download_model(
        spec.name,
        args.directory,
        force=args.force,
        url=args.url,
        progress=not args.no_progress,
    )
    digest = read_checksums(path.parent).get(spec.checkpoint_file, "?")
    record = path.parent / CHECKSUMS_FILE
    if present and was_recorded:
        print(f"{path} is already present (SHA-256 {digest} matches {record})")
    elif present:
        print(f"{path} is already present; recorded its SHA-256 {digest} in {record}")
    else:
        print(f"downloaded {path} (SHA-256 {digest}, recorded in {record})")
    return 0


def format_table(directory: str | None = None) -> str:
    """The model table: name, parameters, file, config and local state in ``directory``."""
    from sam2_matting.download import read_checksums
    from sam2_matting.registry import checkpoint_path, default_checkpoint_dir

    base = Path(directory).expanduser() if directory is not None else default_checkpoint_dir()
    recorded = read_checksums(base) if base.is_dir() else {}
    rows = [("MODEL", "PARAMS", "FILE", "CONFIG", "LOCAL")]
    for spec in MODELS.values():
        path = checkpoint_path(spec, base)
        if path.is_file():
            local = f"present, {path.stat().st_size / 2**20:.0f} MiB"
            if spec.checkpoint_file in recorded:
                local += ", checksum recorded"
        elif path.with_name(path.name + ".part").is_file():
            local = "partial download (run again to resume)"
        else:
            local = "-"
        params = f"{spec.params_millions:g}M" if spec.params_millions else "?"
        rows.append((spec.name, params, spec.checkpoint_file, spec.config, local))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    ]
    lines.append(f"checkpoint folder: {base}")
    return "\n".join(lines)
