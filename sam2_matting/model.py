"""Build SAM 2 video models from a config and an official checkpoint.

    from sam2_matting.model import build_sam2_model
    model = build_sam2_model("tiny", "checkpoints/sam2.1_hiera_tiny.pt", device="cpu")
    model = build_sam2_model("checkpoints/tiny-random/sam2.1_tiny_random.yaml",
                             "checkpoints/tiny-random/sam2.1_tiny_random.pt")

``config`` is a registry size (``tiny``, ``small``, ``base_plus``, ``large``), a config name
inside the ``sam2`` package (``configs/sam2.1/sam2.1_hiera_t.yaml``) or a path to a standalone
YAML file (as written by ``sam2-matting dev make-tiny-model``). Checkpoints are read with
``torch.load(weights_only=True)``: no pickle from a user's file is ever executed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sam2_matting.errors import CheckpointError
from sam2_matting.sam2_internals import (
    install_cpu_connected_components,
    read_memory_in_compute_dtype,
)

log = logging.getLogger(__name__)

# The post-processing overrides that sam2.build_sam.build_sam2_video_predictor applies; we apply
# the same ones so that our models behave exactly like the stock video predictor.
VIDEO_PREDICTOR_OVERRIDES = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
)
VIDEO_PREDICTOR_TARGET = "sam2.sam2_video_predictor.SAM2VideoPredictor"
VOS_OPTIMIZED_TARGET = "sam2.sam2_video_predictor.SAM2VideoPredictorVOS"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if str(device) != "auto":
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise CheckpointError(f"unknown device {device!r}") from err
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise CheckpointError(f"device {device!r} requested but CUDA is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def compose_config(config: str | Path, overrides: Sequence[str] = ()) -> Any:
    """Return the resolved OmegaConf config for ``config`` with Hydra ``overrides`` applied.

    A file path is loaded with OmegaConf and the overrides merged as dotlists; a package config
    name goes through Hydra's ``compose`` like ``sam2.build_sam`` does.
    """
    import sam2  # noqa: F401  (initialises Hydra's config module "sam2")
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    text = str(config)
    if not Path(text).is_file() and not text.startswith("configs/"):
        from sam2_matting.errors import NotFoundError
        from sam2_matting.registry import get_model_spec

        try:
            text = get_model_spec(text).config
        except NotFoundError as err:
            raise CheckpointError(
                f"config {text!r} is neither a model size, a SAM 2 config name "
                f"(configs/sam2.1/...) nor an existing YAML file ({err})"
            ) from err
    try:
        if Path(text).is_file():
            cfg = OmegaConf.load(text)
            if not isinstance(cfg, DictConfig) or "model" not in cfg:
                raise CheckpointError(f"config {text!r} has no 'model' section: not a SAM 2 config")
            dotlist = [o.lstrip("+") for o in overrides]
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
        else:
            cfg = compose(config_name=text, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, OSError, ValueError) as err:
        raise CheckpointError(f"cannot load SAM 2 config {text!r}: {err}") from err
    if "model" not in cfg:
        raise CheckpointError(f"config {text!r} has no 'model' section: not a SAM 2 config")
    return cfg


def load_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """Read an official-format checkpoint (``{"model": state_dict}``) safely."""
    from sam2_matting.registry import require_checkpoint_file

    path = require_checkpoint_file(checkpoint)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or hostile file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first[:200]}") from err
    if not isinstance(obj, Mapping) or "model" not in obj or not isinstance(obj["model"], Mapping):
        raise CheckpointError(
            f"{path} is not a SAM 2 checkpoint: expected a dict with a 'model' state dict"
        )
    state = dict(obj["model"])
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entry {bad[0]!r} is not a tensor")
    return state


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, as SAM 2 does, with a readable error on any mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of another shape (e.g. {k}: "
                f"{tuple(state[k].shape)} vs {tuple(own[k].shape)})"
            )
        raise CheckpointError(f"checkpoint {source} does not fit this config: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def build_sam2_model(
    config: str | Path,
    checkpoint: str | Path | None = None,
    *,
    device: str | torch.device = "auto",
    overrides: Sequence[str] = (),
    vos_optimized: bool = False,
    hole_filling: bool = True,
) -> Any:
    """Build a ``SAM2VideoPredictor`` in eval mode, optionally with weights from ``checkpoint``.

    With ``checkpoint=None`` the weights are random (only for tests and shape checks).
    ``hole_filling`` keeps SAM 2's small-hole filling working on machines without its CUDA
    extension (see :func:`install_cpu_connected_components`); ``False`` turns it off cleanly.
    """
    from hydra.utils import instantiate

    target = VOS_OPTIMIZED_TARGET if vos_optimized else VIDEO_PREDICTOR_TARGET
    all_overrides = [f"++model._target_={target}", *overrides, *VIDEO_PREDICTOR_OVERRIDES]
    if vos_optimized:
        all_overrides.append("++model.compile_image_encoder=true")
    cfg = compose_config(config, all_overrides)
    dev = resolve_device(device)
    try:
        model = instantiate(cfg.model, _recursive_=True)
    except Exception as err:  # Hydra wraps constructor errors of a malformed config
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"cannot build a SAM 2 model from {config}: {detail}") from err
    if checkpoint is not None:
        load_weights(model, load_state_dict(checkpoint), str(checkpoint))
    if hole_filling:
        install_cpu_connected_components()
    else:
        model.fill_hole_area = 0
    read_memory_in_compute_dtype(model)
    model = model.to(dev)
    model.eval()
    return model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
