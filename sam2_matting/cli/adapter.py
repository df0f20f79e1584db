"""Adapter commands.

sam2-matting adapter import-legacy LEGACY.pt OUT_DIR [--config large]
sam2-matting adapter info ADAPTER_DIR
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    adapter = sub.add_parser("adapter", help="LoRA matting adapters")
    adapter_sub = adapter.add_subparsers(dest="adapter_command", metavar="ADAPTER_COMMAND")
    adapter_sub.required = True
    imp = adapter_sub.add_parser(
        "import-legacy",
        help="turn a course-project LoRA checkpoint into base weights + a PEFT adapter",
    )
    imp.add_argument(
        "legacy", metavar="LEGACY.pt", help="course-project checkpoint (.pt, full state dict)"
    )
    imp.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder for base_model.pt and the adapter files"
    )
    imp.add_argument(
        "--config",
        metavar="NAME",
        default="large",
        help="SAM 2 model size, config name or YAML file the checkpoint was trained on "
        "(default: large, i.e. sam2.1_hiera_l as in the course project)",
    )
    imp.set_defaults(handler=_import_legacy)
    info = adapter_sub.add_parser(
        "info", help="print an adapter's targets and ranks (and its refiner)"
    )
    info.add_argument("adapter_dir", metavar="ADAPTER_DIR", help="a PEFT adapter folder")
    info.set_defaults(handler=_info)


def _import_legacy(args: argparse.Namespace) -> int:
    from sam2_matting.legacy_adapter import import_legacy

    base, out = import_legacy(args.legacy, args.out_dir, args.config)
    print(f"wrote base weights {base}")
    print(f"wrote PEFT adapter {out} (adapter_config.json + adapter_model.safetensors)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    from sam2_matting.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_adapter_dir
    from sam2_matting.refiner import adapter_contents, load_refiner, parameter_count

    has_lora, has_refiner = adapter_contents(args.adapter_dir)
    if has_refiner:
        net = load_refiner(args.adapter_dir)
        assert net is not None
        print(f"refiner: {parameter_count(net):,} parameters, {net.config}")
    if not has_lora:
        print(f"adapter: {args.adapter_dir} (refiner only: runs with base SAM 2)")
        return 0
    path = check_adapter_dir(args.adapter_dir)
    cfg = json.loads((path / ADAPTER_CONFIG).read_text())
    with safe_open(str(path / ADAPTER_WEIGHTS), framework="pt") as f:
        n = sum(f.get_slice(k).get_shape()[0] * f.get_slice(k).get_shape()[1] for k in f.keys())  # noqa: SIM118
    print(f"adapter: {path}")
    print(f"base model: {cfg.get('base_model_name_or_path')}")
    print(f"default rank {cfg.get('r')}, alpha {cfg.get('lora_alpha')}")
    print(f"rank pattern: {cfg.get('rank_pattern') or {}}")
    print(f"targets: {cfg.get('target_modules')}")
    print(f"LoRA parameters: {n:,}")
    return 0
