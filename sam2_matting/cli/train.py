"""Train a LoRA matting adapter on SAM 2 (Hydra config, overrides on the command line).

    sam2-matting train model=hiera_l data=videomatte data.root=DATA/VideoMatte240K_JPEG_SD \\
        data.backgrounds.images=DATA/Backgrounds optim.lr=1e-4 run.out_dir=runs/vm
    sam2-matting train --resume run.out_dir=runs/vm ...          # continue the newest checkpoint
    sam2-matting train --print-config data=synthetic               # show the composed config
    torchrun --nproc_per_node 4 -m sam2_matting train ...          # DDP, one GPU per process
    sam2-matting train --refiner steps=400 out_dir=runs/r init_from=runs/vm/adapter  # refiner

The configs and their groups (model/, adapter/, data/, optim/) are in
sam2_matting/training/conf/; see docs/training.md. The final adapter lands in
RUN_DIR/adapter, ready for `sam2-matting serve --adapter RUN_DIR/adapter`.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a LoRA matting adapter (Hydra overrides: key=value ...)",
        description="Train a LoRA matting adapter on SAM 2. Positional arguments are Hydra "
        "overrides of sam2_matting/training/conf/train.yaml, e.g. model=hiera_t optim.lr=1e-3.",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides: group=option or key=value")
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in run.out_dir"
    )
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    p.add_argument(
        "--refiner",
        action="store_true",
        help="train the full-resolution refiner instead (settings key=value, e.g. steps=400 "
        "out_dir=runs/r init_from=runs/vm/adapter; see docs/training.md)",
    )
    p.set_defaults(handler=_train)


def _train_refiner(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from sam2_matting.training.refiner_train import RefinerTrainer, parse_overrides

    overrides = list(args.overrides)
    if args.resume:
        overrides.append("resume=true")
    cfg = parse_overrides(overrides)
    if args.print_config:
        print(json.dumps(asdict(cfg), indent=2))
        return 0
    print(f"adapter: {RefinerTrainer(cfg).fit()}")
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.refiner:
        return _train_refiner(args)
    from omegaconf import OmegaConf

    from sam2_matting.training.config import compose_train_config

    overrides = list(args.overrides)
    if args.resume:
        overrides.append("run.resume=true")
    cfg = compose_train_config(overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg), end="")
        return 0
    from sam2_matting.training.trainer import Trainer

    trainer = Trainer(cfg)
    final = trainer.fit()
    if trainer.dist.is_main:
        print(f"adapter: {final}")
    return 0
