"""Score a matting adapter against base SAM 2 on a data set, offline.

    sam2-matting evaluate --data DATA/videomatte_512x288 --layout rvm --protocol standard \\
        --model large --adapter runs/vm/adapter --prompt mask --out eval/vm512
    sam2-matting evaluate --data DATA/VideoMatte240K_JPEG_SD --layout videomatte --split train \\
        --clips 200-299 --backgrounds DATA/Backgrounds --protocol course \\
        --model large --adapter runs/vm/adapter --out eval/course
    sam2-matting evaluate --synthetic --split heldout --size 1080p      # known truth, no model
    sam2-matting evaluate --data ../shared/data/videos --layout synthetic --max-clips 4 \\
        --model checkpoints/tiny-random/sam2.1_tiny_random.yaml \\
        --checkpoint checkpoints/tiny-random/sam2.1_tiny_random.pt --out eval/plumbing

Writes OUT/results.json (every figure and the exact settings), OUT/results.md (adapter against
base), OUT/per_frame.png and OUT/worst_frames.png. The base model is scored in the same run
unless --no-base. See docs/training.md for the protocols and layouts.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

from sam2_matting.cli.model_options import add_model_options, predictor_kwargs

LAYOUTS = ("rvm", "videomatte", "synthetic")


def register(sub: Any) -> None:
    from sam2_matting.metrics.alpha import ROUNDINGS
    from sam2_matting.metrics.protocols import AGGREGATES, PROTOCOLS

    p = sub.add_parser(
        "evaluate",
        help="score an adapter (and base SAM 2) under the standard or course protocol",
        description="Score a LoRA matting adapter (--adapter) and base SAM 2 (the same model "
        "without it) on a data set.",
    )
    p.add_argument("--data", metavar="DIR", help="data root (videos folder for synthetic)")
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="score SAM 2's simulated output on known-truth clips (real footage under a known "
        "full-resolution matte; no --data, no model): --split train|heldout (default heldout), "
        "--size 720p|1080p|HxW (default 720p), --max-clips, --max-frames (default 8), "
        "--foreground, --seed, --out optional",
    )
    p.add_argument("--layout", choices=LAYOUTS, default="rvm", help="data layout (default rvm)")
    p.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default="standard",
        help="standard (RVM's, default) or course (the course project's)",
    )
    p.add_argument(
        "--resolution",
        choices=("auto", "lr", "hr"),
        default="auto",
        help="standard protocol variant (auto: hr from 1080 lines)",
    )
    p.add_argument(
        "--quantize",
        choices=ROUNDINGS,
        help="how the standard protocol makes 8-bit predictions: round (default, what the service "
        "returns) or truncate (RVM's writers, to compare with RVM's published figures)",
    )
    p.add_argument(
        "--aggregate",
        choices=tuple(AGGREGATES),
        help="how frames are averaged: frame-index (RVM's spreadsheet; default for standard), "
        "clip (each clip's mean, then over clips; the course notebook, default for course) or "
        "pooled (all frames at once)",
    )
    p.add_argument("--no-base", action="store_true", help="score only the adapter")
    p.add_argument(
        "--prompt",
        choices=("mask", "click", "box", "center-click"),
        help="frame-0 prompt rule (default: mask for standard, center-click for course)",
    )
    p.add_argument(
        "--clicks", metavar="N", type=int, default=1, help="positive clicks for --prompt click"
    )
    p.add_argument(
        "--masks",
        metavar="DIR",
        help="folder of supplied first-frame masks (e.g. MatAnyone's): "
        "<clip>.png or <clip>/<first frame>.png; replaces --prompt",
    )
    p.add_argument(
        "--seed", metavar="N", type=int, default=0, help="seed of prompts, backgrounds, synthetic"
    )
    p.add_argument("--max-clips", metavar="N", type=int, help="score only the first N clips")
    p.add_argument(
        "--max-frames", metavar="N", type=int, help="frames per clip (course protocol: 10)"
    )
    p.add_argument(
        "--split",
        metavar="NAME",
        help="VideoMatte240K split (videomatte layout, default train); train or heldout "
        "(--synthetic, default heldout)",
    )
    p.add_argument(
        "--clips", metavar="FIRST-LAST", help="VideoMatte240K clip index range, e.g. 200-299"
    )
    p.add_argument(
        "--backgrounds", metavar="DIR", help="background image folder (videomatte layout)"
    )
    p.add_argument(
        "--size",
        metavar="HxW",
        help="HxW of synthetic-layout clips (default 144x256); 720p, 1080p or HxW with "
        "--synthetic (default 720p)",
    )
    p.add_argument(
        "--foreground",
        metavar="MODE",
        help="--synthetic: the colour composites use, source or estimate (default: the "
        "exports' default)",
    )
    p.add_argument(
        "--worst", metavar="N", type=int, default=6, help="frames in the worst-frames grid"
    )
    p.add_argument(
        "--save-predictions",
        action="store_true",
        help="also write OUT/predictions/<model>/<clip>/pha/<frame>.png",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (optional with --synthetic)")
    add_model_options(p)
    p.set_defaults(handler=_evaluate)


def _clip_refs(args: argparse.Namespace, frames: int | None) -> list[Any]:
    from sam2_matting.metrics import evalsets
    from sam2_matting.training.layout import DataError

    if args.layout == "rvm":
        refs = evalsets.rvm_clips(args.data, max_frames=frames)
    elif args.layout == "videomatte":
        if not args.backgrounds:
            raise DataError("--layout videomatte needs --backgrounds (a folder of images)")
        refs = evalsets.course_clips(
            args.data,
            args.backgrounds,
            split=args.split or "train",
            clip_range=evalsets.parse_range(args.clips),
            frames=frames or 10,
            seed=args.seed,
        )
    else:
        try:
            h, w = (int(v) for v in (args.size or "144x256").lower().split("x"))
        except ValueError:
            raise DataError(f"--size must look like 144x256, got {args.size!r}") from None
        refs = evalsets.synthetic_eval_clips(
            args.data, count=args.max_clips or 4, frames=frames or 10, size=(h, w), seed=args.seed
        )
    return refs[: args.max_clips] if args.max_clips else refs


def _first_height(refs: list[Any]) -> int:
    clip = refs[0].open()
    src = clip.open_frames()
    try:
        return int(src.height)
    finally:
        src.close()


def _evaluate(args: argparse.Namespace) -> int:
    if args.synthetic:
        from sam2_matting.cli import evaluate_truth

        return evaluate_truth.run(args)
    import torch

    import sam2_matting
    from sam2_matting.errors import InvalidInputError
    from sam2_matting.metrics.protocols import get_protocol
    from sam2_matting.metrics.report import RANDOM_WEIGHTS_NOTE, write_report
    from sam2_matting.metrics.runner import EvalSettings, evaluate
    from sam2_matting.predictor import build_matting_predictor
    from sam2_matting.training.prompts import PromptRule

    if not args.data or not args.out:
        raise InvalidInputError("evaluate needs --data DIR and --out DIR (or --synthetic)")
    if args.no_base and not args.adapter:
        raise InvalidInputError("--no-base needs --adapter: there would be nothing to score")
    # Checked before any data is read: a bad combination fails at once.
    base_protocol = get_protocol(
        args.protocol, resolution="lr", aggregate=args.aggregate, rounding=args.quantize
    )
    frames = args.max_frames or base_protocol.max_frames
    refs = _clip_refs(args, frames)
    protocol = get_protocol(
        args.protocol,
        resolution=args.resolution,
        frame_height=_first_height(refs),
        aggregate=args.aggregate,
        rounding=args.quantize,
    )
    try:
        rule = PromptRule(kind=args.prompt or protocol.prompt, clicks=max(1, args.clicks))
    except ValueError as err:
        raise InvalidInputError(str(err)) from err
    kwargs = predictor_kwargs(args)
    predictors = {}
    if not args.no_base:
        predictors["base"] = build_matting_predictor(**{**kwargs, "adapter": None})
    if args.adapter:
        predictors["adapter"] = build_matting_predictor(**kwargs)
    out = Path(args.out)
    settings = EvalSettings(
        protocol=protocol,
        prompt=rule,
        seed=args.seed,
        worst=args.worst,
        save_predictions=out / "predictions" if args.save_predictions else None,
        mask_dir=Path(args.masks) if args.masks else None,
    )
    started = time.time()
    results, prompts = evaluate(
        predictors, refs, settings, progress=lambda name: print(f"scored {name}", file=sys.stderr)
    )
    first = next(iter(predictors.values()))
    info = {
        "command": " ".join(sys.argv),
        "arguments": {k: v for k, v in vars(args).items() if k != "handler"},
        "prompt_rule": rule.__dict__,
        "clips": [r.name for r in refs],
        "frames_per_clip": frames,
        "device": str(first.device),
        "dtype": str(first.dtype).replace("torch.", ""),
        "versions": {
            "sam2_matting": sam2_matting.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 2),
    }
    note = RANDOM_WEIGHTS_NOTE if "random" in f"{kwargs['model']} {args.checkpoint}".lower() else ""
    paths = write_report(out, results, prompts, info, protocol, note)
    print(paths["markdown"].read_text(), end="")
    for key, path in paths.items():
        print(f"wrote {path} ({key})")
    return 0
