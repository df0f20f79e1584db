"""Render many clips from their prompts files: one manifest, the model loaded once per worker.

    sam2-matting batch shots.jsonl --model large
    sam2-matting batch shots.jsonl --format prores,alpha --report report.json
    sam2-matting batch shots.jsonl --ray auto            # on the Ray cluster of this machine

The manifest has one clip per line, JSON (docs/batch.md): "input" (a video or a folder of
frames), "prompts" (its prompts file), "output" (a base path, as ``matte --out``), and
optionally "formats", "foreground", "background", "premultiplied", "export_objects",
"direction", "max_frames" and "name", which override the options below for that clip. Relative
paths are relative to the manifest's folder. Each clip is rendered as ``matte INPUT --prompts
PROMPTS --out OUTPUT`` would, to the same mattes.

A rerun skips the clips whose outputs are complete (their OUTPUT.batch.json record matches) and
renders the others again; ``--force`` renders all. A failing clip is reported with its reason
and the others go on. Exit status: 0 when no clip failed, 1 when one or more did, 2 for a bad
manifest or option (nothing is rendered then).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sam2_matting.cli.model_options import add_model_options, predictor_kwargs, value_set
from sam2_matting.errors import InvalidInputError


def register(sub: Any) -> None:
    from sam2_matting.export.foreground import DEFAULT_FOREGROUND, FOREGROUND_MODES
    from sam2_matting.export.formats import EXPORT_FORMATS

    p = sub.add_parser(
        "batch",
        help="render many clips from their prompts files (a JSON-lines manifest)",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", help="JSON lines: input, prompts, output[, formats, ...]")
    out = p.add_argument_group("output (the defaults of the manifest's lines)")
    out.add_argument(
        "--format",
        metavar=value_set(list(EXPORT_FORMATS)) + "[,...]",
        default="prores",
        help='formats of a clip whose line has no "formats" (default: prores)',
    )
    out.add_argument(
        "--foreground",
        metavar=value_set(FOREGROUND_MODES),
        default=DEFAULT_FOREGROUND,
        help=f"colour where 0 < alpha < 255 (default: {DEFAULT_FOREGROUND})",
    )
    out.add_argument("--background", metavar="COLOUR|IMAGE|VIDEO", help="of composite")
    out.add_argument("--premultiplied", action="store_true", help="premultiplied alpha")
    run = p.add_argument_group("run")
    run.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on Ray: auto (this machine's cluster), local (a private instance here) or "
        "the head's address; without it the clips run here, one after the other",
    )
    run.add_argument(
        "--workers",
        metavar="N",
        type=int,
        help="Ray worker actors, each with the model (default: the cluster's GPUs, or 1)",
    )
    run.add_argument(
        "--cpus-per-worker",
        metavar="N",
        type=int,
        default=1,
        help="CPUs each Ray worker holds, and its torch threads (default: 1)",
    )
    run.add_argument("--force", action="store_true", help="render complete clips again too")
    run.add_argument(
        "--verify",
        action="store_true",
        help="a complete clip's outputs must also have their recorded sha256 (reads them)",
    )
    run.add_argument(
        "--allow-other-model",
        action="store_true",
        help="render prompts files made with another model or options (with a warning)",
    )
    run.add_argument("--report", metavar="JSON", help="also write the results as JSON here")
    add_model_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_batch)


def run_batch(args: argparse.Namespace) -> int:
    from sam2_matting.batch.manifest import Defaults, parse_formats, parse_manifest
    from sam2_matting.batch.report import Reporter
    from sam2_matting.export.foreground import parse_foreground
    from sam2_matting.prompts_file import model_identity

    try:
        formats = parse_formats(args.format)
    except InvalidInputError as err:
        raise InvalidInputError(f"--format: {err}") from None
    try:
        foreground = parse_foreground(args.foreground)
    except InvalidInputError as err:
        raise InvalidInputError(f"--{err}") from None
    defaults = Defaults(formats, foreground, args.background, args.premultiplied)
    for option, value in (("--workers", args.workers), ("--cpus-per-worker", args.cpus_per_worker)):
        if value is not None and value < 1:
            raise InvalidInputError(f"{option} must be a positive number")
    if not args.ray and (args.workers is not None or args.cpus_per_worker != 1):
        raise InvalidInputError("--workers and --cpus-per-worker need --ray")
    if args.ray:
        from sam2_matting.batch.runner_ray import import_ray

        import_ray()  # a missing Ray is said before anything runs
    jobs = parse_manifest(args.manifest, defaults)
    if args.report:
        _check_writable(Path(args.report))
    kwargs = predictor_kwargs(args)
    model = model_identity(
        kwargs["model"], kwargs["checkpoint"], kwargs["adapter"], kwargs["checkpoint_dir"]
    )
    reporter = Reporter(len(jobs), out=sys.stdout)
    options = {"allow_other_model": args.allow_other_model, "force": args.force}
    try:
        if args.ray:
            from sam2_matting.batch.runner_ray import run_ray

            run_ray(jobs, kwargs, model, reporter, address=args.ray, workers=args.workers,
                    cpus_per_worker=args.cpus_per_worker, verify=args.verify,
                    **options)  # fmt: skip
        else:
            from sam2_matting.batch.runner_local import run_local

            run_local(jobs, kwargs, model, reporter, progress=not args.no_progress,
                      verify=args.verify, **options)  # fmt: skip
    finally:
        if reporter.results:  # nothing when the runner could not start
            print(reporter.table(), flush=True)
        if args.report:
            reporter.write_json(args.report)
    return reporter.exit_code()


def _check_writable(path: Path) -> None:
    """The folder of ``--report`` exists (created) and takes a file, or a one-line error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = f"cannot create {path.parent} ({err.strerror})"
        raise InvalidInputError(f"--report {path}: {reason}") from None
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        raise InvalidInputError(f"--report {path}: cannot write there")
