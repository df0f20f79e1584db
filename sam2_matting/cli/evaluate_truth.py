"""``sam2-matting evaluate --synthetic``: score mattes on known-truth clips.

    sam2-matting evaluate --synthetic                       # held-out clips, 720p, 8 frames
    sam2-matting evaluate --synthetic --split train --size 1080p --max-clips 3 --out eval/kt

The clips (:mod:`sam2_matting.metrics.known_truth`) are real footage composited under a known
full-resolution matte; the matte scored is SAM 2's output as it reaches a session, simulated
from the truth (no model runs, so no weights are needed and nothing here depends on them), and
every refiner :func:`refiners` returns, applied to it. Prints one line per clip and matte and
the means; with ``--out``, writes OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sam2_matting.errors import InvalidInputError

if TYPE_CHECKING:
    from sam2_matting.metrics.truth_scores import Refine

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}
DEFAULT_SIZE = "720p"
DEFAULT_SPLIT = "heldout"
DEFAULT_FRAMES = 8


def parse_size(text: str | None) -> tuple[int, int]:
    """``720p``, ``1080p`` or ``HxW`` (e.g. ``144x256``) as (height, width)."""
    value = (text or DEFAULT_SIZE).strip().lower()
    if value in SIZES:
        return SIZES[value]
    try:
        h, w = (int(v) for v in value.split("x"))
    except ValueError:
        raise InvalidInputError(f"--size must be 720p, 1080p or HxW, got {text!r}") from None
    if h < 16 or w < 16:
        raise InvalidInputError(f"--size must be at least 16x16, got {text!r}")
    return h, w


def refiners(args: argparse.Namespace) -> dict[str, Refine]:
    """The refiners to score next to the coarse matte, by name: the full-resolution refiner
    of ``--adapter`` when that folder holds one (docs/training.md, section 6)."""
    adapter = getattr(args, "adapter", None)
    if not adapter:
        return {}
    from sam2_matting.refiner import adapter_contents, load_refiner, refine_frames

    adapter_contents(adapter)  # a folder that is no adapter at all is refused in one line
    net = load_refiner(adapter)
    if net is None:
        return {}
    return {"refiner": lambda frames, coarse: refine_frames(net, frames, coarse)}


def run(args: argparse.Namespace) -> int:
    """The ``--synthetic`` mode of ``evaluate`` (module docstring)."""
    from sam2_matting.export.foreground import parse_foreground
    from sam2_matting.metrics.known_truth import SPLITS, truth_clips
    from sam2_matting.metrics.truth_scores import markdown_rows, mean_scores, score_clips

    split = args.split or DEFAULT_SPLIT
    if split not in SPLITS:
        raise InvalidInputError(f"--split for --synthetic must be train or heldout, got {split!r}")
    size = parse_size(args.size)
    frames = args.max_frames or DEFAULT_FRAMES
    foreground = parse_foreground(args.foreground)
    if args.max_clips is not None and args.max_clips < 1:
        raise InvalidInputError("--max-clips must be at least 1")
    started = time.time()
    clips = truth_clips(split, size=size, frames=frames, seed=args.seed, count=args.max_clips)
    rows = score_clips(
        clips,
        refiners(args),
        foreground=foreground,
        progress=lambda name: print(f"scored {name}", file=sys.stderr),
    )
    head = (
        f"Known-truth clips ({split}, {size[0]}x{size[1]}, {frames} frames, seed {args.seed}); "
        f"composite colour: {foreground}. MAD, MSE x1e3; Grad, Conn /1e3; dtSSD x1e2; "
        "composite errors x1e3 (docs/benchmarks.md, 'Known-truth matting benchmark').\n\n"
    )
    table = head + markdown_rows(rows)
    print(table, end="")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        methods = list(dict.fromkeys(r.method for r in rows))
        result = {
            "command": " ".join(sys.argv),
            "split": split,
            "size": list(size),
            "frames_per_clip": frames,
            "seed": args.seed,
            "foreground": foreground,
            "clips": [
                {
                    "clip": r.clip,
                    "kind": r.kind,
                    "matte": r.method,
                    "scores": r.scores,
                    "seconds": round(r.seconds, 3),
                }
                for r in rows
            ],
            "mean": {m: mean_scores([r.scores for r in rows if r.method == m]) for m in methods},
            "seconds": round(time.time() - started, 2),
        }
        (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "results.md").write_text(table)
        print(f"wrote {out / 'results.json'} (json)\nwrote {out / 'results.md'} (markdown)")
    return 0
