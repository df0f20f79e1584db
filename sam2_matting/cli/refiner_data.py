"""``sam2-matting refiner-data``: the full-resolution refiner's training data from VideoMatte240K.

    sam2-matting refiner-data --videomatte DATA/VideoMatte240K --split train \\
        --backgrounds DATA/Backgrounds --background-videos DATA/BackgroundVideos \\
        --out data/refiner-vm --frames 8 --size 1080p --seed 0 --model large
    sam2-matting train --refiner data=data/refiner-vm out_dir=runs/refiner-vm

Each output clip is a VideoMatte240K window composited over a background, SAM 2 prompted from
the true alpha (a box and the click farthest inside it) and propagated by a matting session
(the service's code path); stored per frame: the composite, the true alpha and SAM 2's coarse
alpha as the refiner receives it (docs/training.md, section 6;
:mod:`sam2_matting.training.refiner_data`). Re-running the same command finishes or extends
(``--clips``) the folder; OUT/manifest.json is written last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sam2_matting.cli.model_options import add_model_options, predictor_kwargs
from sam2_matting.errors import InvalidInputError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "refiner-data",
        help="build refiner training data: VideoMatte240K composites, SAM 2's coarse output",
        description="Composite VideoMatte240K clips over backgrounds, prompt SAM 2 from the "
        "true alpha, propagate, and store (composite, SAM 2's coarse alpha, true alpha) per "
        "frame for `sam2-matting train --refiner data=OUT`.",
    )
    p.add_argument("--videomatte", metavar="ROOT", help="VideoMatte240K root (ROOT/SPLIT/fgr, pha)")
    p.add_argument("--split", metavar="NAME", default="train", help="split (default: train)")
    p.add_argument("--backgrounds", metavar="DIR", help="background image folder (recursive)")
    p.add_argument(
        "--background-videos", metavar="DIR", help="background video folder (videos or frames)"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (new, or one to finish)")
    p.add_argument(
        "--clips",
        metavar="N",
        type=int,
        help="output clips (default: one per source clip); clip i uses source i mod count",
    )
    p.add_argument("--frames", metavar="T", type=int, default=8, help="frames per clip (8)")
    p.add_argument(
        "--size", metavar="HxW", default="1080p", help="720p, 1080p or HxW (default: 1080p)"
    )
    p.add_argument("--seed", metavar="S", type=int, default=0, help="data seed (default: 0)")
    add_model_options(p)
    p.set_defaults(handler=_refiner_data)


def _adapter_files(adapter: str | None) -> dict[str, str] | None:
    """SHA-256 of each file of the adapter folder (None without one)."""
    if not adapter:
        return None
    from sam2_matting.download import file_sha256

    folder = Path(adapter)
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _model_provenance(kwargs: dict[str, Any], predictor: Any, checkpoint: Path) -> dict[str, Any]:
    from sam2_matting.download import file_sha256
    from sam2_matting.errors import NotFoundError
    from sam2_matting.registry import get_model_spec

    name = str(kwargs["model"])
    try:
        config = get_model_spec(name).config
    except NotFoundError:
        config = name  # a config name or YAML file
    return {
        "model": name,
        "config": config,
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": file_sha256(checkpoint),
        "adapter": str(Path(kwargs["adapter"]).resolve()) if kwargs["adapter"] else None,
        "adapter_sha256": _adapter_files(kwargs["adapter"]),
        "adapter_refiner": (
            "not applied: the coarse input is SAM 2's own output" if kwargs["adapter"] else None
        ),
        "device": str(predictor.device),
        "dtype": str(predictor.dtype).replace("torch.", ""),
        "image_size": int(predictor.image_size),
    }


def _refiner_data(args: argparse.Namespace) -> int:
    from sam2_matting.cli.evaluate_truth import parse_size
    from sam2_matting.predictor import build_matting_predictor
    from sam2_matting.registry import resolve_checkpoint
    from sam2_matting.training.layout import scan_backgrounds, scan_videomatte
    from sam2_matting.training.refiner_data import DataSpec, build_refiner_data

    if not args.videomatte or not args.out:
        raise InvalidInputError("refiner-data needs --videomatte ROOT and --out DIR")
    if not (args.backgrounds or args.background_videos):
        raise InvalidInputError("refiner-data needs --backgrounds DIR or --background-videos DIR")
    size = parse_size(args.size)
    # The data is checked before the model loads: a bad folder fails at once.
    sources = scan_videomatte(args.videomatte, args.split)
    backgrounds = scan_backgrounds(images=args.backgrounds, videos=args.background_videos)
    spec = DataSpec(
        clips=len(sources) if args.clips is None else args.clips,
        frames=args.frames,
        size=size,
        seed=args.seed,
    )
    kwargs = predictor_kwargs(args)
    checkpoint = resolve_checkpoint(kwargs["model"], kwargs["checkpoint"], kwargs["checkpoint_dir"])
    predictor = build_matting_predictor(**{**kwargs, "checkpoint": checkpoint}, refiner=False)
    provenance = {
        "videomatte": str(Path(args.videomatte).resolve()),
        "split": args.split,
        "background_images": str(Path(args.backgrounds).resolve()) if args.backgrounds else None,
        "background_videos": (
            str(Path(args.background_videos).resolve()) if args.background_videos else None
        ),
        "sam2": _model_provenance(kwargs, predictor, checkpoint),
    }
    manifest = build_refiner_data(
        predictor,
        sources,
        backgrounds,
        args.out,
        spec,
        provenance,
        progress=lambda line: print(line, file=sys.stderr),
    )
    if "random" in f"{kwargs['model']} {checkpoint}".lower():
        print("note: random weights: this data is for plumbing only", file=sys.stderr)
    print(f"wrote {manifest}")
    return 0
