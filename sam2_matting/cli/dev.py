"""Developer commands.

sam2-matting dev make-tiny-model OUT_DIR [--image-size 256] [--seed 0]
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    dev = sub.add_parser("dev", help="developer tools (tiny random models for tests)")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="DEV_COMMAND", required=True)
    tiny = dev_sub.add_parser(
        "make-tiny-model",
        help="write a tiny RANDOMLY INITIALISED SAM 2.1 config + checkpoint (output is noise)",
    )
    tiny.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder to write sam2.1_tiny_random.{yaml,pt} into"
    )
    tiny.add_argument(
        "--image-size", metavar="PX", type=int, default=256, help="input size, multiple of 32"
    )
    tiny.add_argument(
        "--seed", metavar="N", type=int, default=0, help="seed of the random initialisation"
    )
    tiny.set_defaults(handler=_make_tiny)


def _make_tiny(args: argparse.Namespace) -> int:
    from sam2_matting.tiny import make_tiny_model

    files = make_tiny_model(args.out_dir, image_size=args.image_size, seed=args.seed)
    print(f"wrote {files.config}")
    print(f"wrote {files.checkpoint}")
    print(
        f"RANDOM WEIGHTS: a {files.parameters:,}-parameter SAM 2.1 model at {args.image_size} px "
        "for tests and plumbing; its mattes are noise, not results."
    )
    return 0
