"""Build the trainable model and the training data from a composed training config.

    from sam2_matting.training.build import build_trainable_model, build_dataset
    peft_model = build_trainable_model(cfg, device)     # SAM 2 frozen, LoRA trainable, eval mode
    dataset = build_dataset(cfg, image_size=peft_model.image_size)

Everything that can be wrong with the data (missing folders, unpaired or unreadable clips) is
found here, before the first step, and raised as :class:`~sam2_matting.training.layout.DataError`
naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from sam2_matting.lora import ATTENTION_TARGETS, MLP_TARGETS, MattingLoraConfig
from sam2_matting.training.augment import Augment
from sam2_matting.training.config import ConfigError, build, require, section
from sam2_matting.training.datasets import (
    ClipDataset,
    ClipSpec,
    ImageMatteClips,
    SyntheticClips,
    VideoMatteClips,
)
from sam2_matting.training.layout import (
    DataError,
    require_dir,
    scan_backgrounds,
    scan_image_set,
    scan_videomatte,
)
from sam2_matting.training.prompts import TrainingPrompts

log = logging.getLogger(__name__)
DATA_KINDS = ("videomatte", "images", "synthetic")


def lora_config(cfg: Any) -> MattingLoraConfig:
    """The adapter section as a :class:`MattingLoraConfig` (null targets = the defaults)."""
    values = section(cfg, "adapter")
    values.pop("init_from", None)
    if values.get("mlp_targets") is None:
        values["mlp_targets"] = MLP_TARGETS
    if values.get("attention_targets") is None:
        values["attention_targets"] = ATTENTION_TARGETS
    try:
        return MattingLoraConfig(**values)
    except TypeError as err:
        raise ConfigError(f"adapter: {err}") from err


def model_checkpoint(cfg: Any) -> str:
    """``model.checkpoint``, or for a model size the file `sam2-matting download` writes."""
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg.model, "checkpoint"):
        raise ConfigError("model.checkpoint is not set: add `model.checkpoint=...`")
    if cfg.model.checkpoint is not None:
        return str(cfg.model.checkpoint)
    from sam2_matting.errors import NotFoundError
    from sam2_matting.registry import checkpoint_path, get_model_spec

    try:
        return str(checkpoint_path(get_model_spec(str(require(cfg, "model.config")))))
    except NotFoundError as err:
        raise ConfigError(
            f"model.checkpoint is not set and model.config={cfg.model.config} is not a size"
        ) from err


def model_image_size(cfg: Any) -> int:
    """The SAM 2 input size of ``model.config``, read from the config without building it."""
    from sam2_matting.model import compose_config

    return int(compose_config(str(require(cfg, "model.config"))).model.image_size)


def build_trainable_model(cfg: Any, device: torch.device) -> Any:
    """SAM 2 from ``model.*`` with LoRA from ``adapter.*``: base frozen, eval mode.

    The LoRA initialisation is seeded with ``run.seed``; ``adapter.init_from`` continues
    from a saved adapter instead of fresh LoRA. LoRA dropout layers (if any) are put in
    training mode; everything else stays in eval mode (see ``step.py``).
    """
    from sam2_matting.lora import add_adapter, load_adapter
    from sam2_matting.model import build_sam2_model

    config = str(require(cfg, "model.config"))
    sam = build_sam2_model(config, model_checkpoint(cfg), device=device, hole_filling=False)
    torch.manual_seed(int(cfg.run.seed))
    init_from = cfg.adapter.init_from
    model = (
        load_adapter(sam, init_from, trainable=True)
        if init_from
        else add_adapter(sam, lora_config(cfg))
    )
    model.eval()
    for name, module in model.named_modules():
        if name.endswith("lora_dropout.default") and getattr(module, "p", 0.0) > 0:
            module.train()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not trainable or any("lora_" not in n for n in trainable):
        raise ConfigError("only LoRA parameters may be trainable; check the adapter targets")
    return model.to(device)


def clip_spec(cfg: Any, image_size: int) -> ClipSpec:
    prompts = build(TrainingPrompts, cfg, "prompts")
    frames = int(require(cfg, "data.frames"))
    if frames == 1 and "mask" in prompts.kinds:
        # A mask prompt on a one-frame clip is returned as the output unchanged (SAM 2.1's
        # use_mask_input_as_output_without_sam), so it would give no gradient at all.
        kinds = {k: v for k, v in prompts.kinds.items() if k != "mask"}
        prompts = TrainingPrompts(**{**prompts.__dict__, "kinds": kinds})
    size = tuple(int(v) for v in require(cfg, "data.size"))
    if len(size) != 2:
        raise ConfigError("data.size must be [height, width]")
    return ClipSpec(
        num_frames=frames,
        size=(size[0], size[1]),
        image_size=image_size,
        prompts=prompts,
        augment=build(Augment, cfg, "data.augment"),
        seed=int(cfg.run.seed),
    )


def build_dataset(cfg: Any, image_size: int) -> ClipDataset:
    """The training clips of ``data.kind`` (videomatte, images or synthetic), checked."""
    kind = str(require(cfg, "data.kind"))
    spec = clip_spec(cfg, image_size)
    check = bool(cfg.data.get("check", True))
    if kind == "videomatte":
        clips = scan_videomatte(require(cfg, "data.root"), str(cfg.data.split), check=check)
        bg = cfg.data.backgrounds
        backgrounds = scan_backgrounds(bg.get("images"), bg.get("videos"), check=check)
        log.info(
            "VideoMatte240K: %d clips, %d background images, %d background videos",
            len(clips),
            len(backgrounds.images),
            len(backgrounds.videos),
        )
        return VideoMatteClips(
            spec,
            clips,
            backgrounds,
            stride=int(cfg.data.stride),
            video_background_prob=float(bg.get("video_prob", 0.5)),
        )
    if kind == "images":
        pairs = scan_image_set(
            require(cfg, "data.root"),
            image_dir=cfg.data.get("image_dir"),
            alpha_dir=cfg.data.get("alpha_dir"),
            check=check,
        )
        return ImageMatteClips(spec, pairs)
    if kind == "synthetic":
        folder = require_dir(require(cfg, "data.backgrounds.videos"), "background video folder")
        videos = scan_backgrounds(videos=folder, check=check).videos
        return SyntheticClips(spec, [Path(v) for v in videos])
    raise DataError(f"data.kind must be one of {', '.join(DATA_KINDS)}, got {kind!r}")
