"""The model options of every command that loads SAM 2 (``matte``, ``evaluate``, ``serve``).

    from sam2_matting.cli.model_options import add_model_options, predictor_kwargs
    add_model_options(parser)                    # --model/--config, --checkpoint, ... --dtype
    predictor = build_matting_predictor(**predictor_kwargs(args))

    add_model_options(parser, from_env=True)     # serve: unset options fall back to the
    kwargs = predictor_kwargs(args)              # environment, so their values stay None

Each default is stated here once, and the help of each option is the same in every command.
Where the checkpoint is looked up is :func:`sam2_matting.registry.resolve_checkpoint`.
"""

from __future__ import annotations

import argparse
from typing import Any

from sam2_matting.registry import CHECKPOINTS_ENV, DEFAULT_MODEL, MODELS

DEFAULT_DEVICE = "auto"
#: Shown as the value set of --device (``cuda:N`` picks a GPU).
DEVICES = ("auto", "cuda", "cuda:N", "mps", "cpu")
#: Shown as the value set of --dtype (fp32, bf16 and fp16 are accepted too).
DTYPES = ("float32", "bfloat16", "float16")

# option dest -> environment variable, for ``from_env`` (the service's settings)
ENV = {
    "model": "SAM2_MATTING_MODEL",
    "checkpoint": "SAM2_MATTING_CHECKPOINT",
    "checkpoint_dir": CHECKPOINTS_ENV,
    "adapter": "SAM2_MATTING_ADAPTER",
    "device": "SAM2_MATTING_DEVICE",
    "dtype": "SAM2_MATTING_DTYPE",
}


def value_set(values: tuple[str, ...] | list[str]) -> str:
    """A metavar that shows a fixed set of values, as argparse shows ``choices``."""
    return "{" + ",".join(values) + "}"


def add_model_options(parser: argparse.ArgumentParser, *, from_env: bool = False) -> Any:
    """Add the ``model`` option group to ``parser``; returns the group.

    ``from_env``: options left out stay ``None`` (the caller fills them from the environment,
    whose defaults are the same); the help names each variable.
    """
    group = parser.add_argument_group("model")

    def default(value: str) -> str | None:
        return None if from_env else value

    def tail(dest: str, value: str | None) -> str:
        said = f"default: {value}" if value is not None else ""
        if from_env:
            said = f"{said}, or ${ENV[dest]}" if said else f"default: ${ENV[dest]}"
        return f" ({said})" if said else ""

    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        metavar="NAME",
        default=default(DEFAULT_MODEL),
        help=f"model size {value_set(list(MODELS))} (aliases t, s, b+, l), a SAM 2 config name "
        "or a YAML file; a size finds its downloaded checkpoint" + tail("model", DEFAULT_MODEL),
    )
    which.add_argument(
        "--config",
        metavar="YAML",
        help="SAM 2 config name or YAML file, with --checkpoint (instead of --model)",
    )
    group.add_argument(
        "--checkpoint",
        metavar="PT",
        help="checkpoint file" + tail("checkpoint", "the downloaded one of the --model size"),
    )
    group.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help=f"where downloaded checkpoints are (default: ${CHECKPOINTS_ENV} or ./checkpoints)",
    )
    group.add_argument(
        "--adapter",
        metavar="DIR",
        help="LoRA matting adapter folder, merged into the weights"
        + (f" (default: ${ENV['adapter']})" if from_env else ""),
    )
    group.add_argument(
        "--device",
        metavar=value_set(DEVICES),
        default=default(DEFAULT_DEVICE),
        help="auto: cuda, then mps, then cpu" + tail("device", DEFAULT_DEVICE),
    )
    group.add_argument(
        "--dtype",
        metavar=value_set(DTYPES),
        help="autocast dtype; fp32, bf16, fp16 also accepted"
        + tail("dtype", "bfloat16 on CUDA, float32 elsewhere"),
    )
    return group


def predictor_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``build_matting_predictor`` from the parsed model options.

    Keys: ``model``, ``checkpoint``, ``adapter``, ``device``, ``dtype``, ``checkpoint_dir``
    (also the service's setting names). A config without a checkpoint is refused where the
    checkpoint is resolved (:func:`sam2_matting.registry.resolve_checkpoint`), for every command.
    """
    return {
        "model": args.config or args.model,
        "checkpoint": args.checkpoint,
        "adapter": args.adapter,
        "device": args.device,
        "dtype": args.dtype,
        "checkpoint_dir": args.checkpoint_dir,
    }
