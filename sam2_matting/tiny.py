"""A tiny, randomly initialised SAM 2.1 model for tests, benchmarks and plumbing demos.

    sam2-matting dev make-tiny-model checkpoints/tiny-random

writes ``sam2.1_tiny_random.yaml`` (a standalone Hydra config that both our loader and
``sam2.build_sam.build_sam2_video_predictor("//abs/path.yaml", ckpt)`` accept) and
``sam2.1_tiny_random.pt`` (the official ``{"model": state_dict}`` format). It has the classes and
code path of hiera_t with about 1.35 M parameters at 256 px. **Its weights are random: its
mattes are noise, never a result.**
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sam2_matting.errors import InvalidInputError

TINY_NAME = "sam2.1_tiny_random"
BASE_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"

# Shrinks hiera_t while keeping every class and code path. Dimension rules: the neck's
# backbone_channel_list is embed_dim * [8, 4, 2, 1]; every "hidden" width equals neck.d_model;
# kv_in_dim equals memory_encoder.out_dim; a global-attention block must not be the first
# (q-pool) block of a stage.
TINY_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.d_model=64",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "++model.memory_attention.d_model=64",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=64",
    "++model.memory_attention.layer.dim_feedforward=256",
    "++model.memory_attention.layer.self_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=32",
    "++model.memory_encoder.in_dim=64",
    "++model.memory_encoder.out_dim=32",
    "++model.memory_encoder.position_encoding.num_pos_feats=32",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "++model.memory_encoder.fuser.layer.dim=64",
    "++model.memory_encoder.fuser.num_layers=1",
)

# Random weights often predict "object absent" (SAM 2 then writes -1024 into the whole mask),
# depending on the seed. A positive bias on the object-score head keeps the object present so
# the tiny model exercises the tracking path on every frame.
OBJECT_PRESENT_BIAS = 4.0


@dataclass(frozen=True)
class TinyModelFiles:
    config: Path
    checkpoint: Path
    parameters: int


def size_overrides(image_size: int) -> list[str]:
    """Overrides for another input size (a multiple of 32); RoPE feature sizes follow it."""
    if image_size <= 0 or image_size % 32:
        raise InvalidInputError(f"image size must be a positive multiple of 32, got {image_size}")
    feat = image_size // 16
    return [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ]


def make_tiny_model(out_dir: str | Path, *, image_size: int = 256, seed: int = 0) -> TinyModelFiles:
    """Write the tiny random config and checkpoint into ``out_dir``; return their paths."""
    import sam2  # noqa: F401  (initialises Hydra's config module "sam2")
    from hydra import compose
    from omegaconf import OmegaConf

    from sam2_matting.model import build_sam2_model, count_parameters

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*TINY_OVERRIDES, *size_overrides(image_size)]
    cfg = compose(config_name=BASE_CONFIG, overrides=overrides)
    config_path = out / f"{TINY_NAME}.yaml"
    header = (
        "# @package _global_\n"
        "# sam2-matting tiny model: hiera_t classes, shrunk. RANDOM WEIGHTS: output is noise.\n"
    )
    _write_atomic_text(config_path, header + OmegaConf.to_yaml(cfg))

    torch.manual_seed(seed)
    model = build_sam2_model(config_path, None, device="cpu")
    with torch.no_grad():
        _object_score_bias(model).fill_(OBJECT_PRESENT_BIAS)
    ckpt_path = out / f"{TINY_NAME}.pt"
    tmp = ckpt_path.with_name(ckpt_path.name + ".part")
    torch.save({"model": model.state_dict()}, tmp)
    tmp.replace(ckpt_path)
    return TinyModelFiles(config_path, ckpt_path, count_parameters(model))


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    tmp.replace(path)


def _object_score_bias(model: Any) -> torch.Tensor:
    """The output bias of the mask decoder's object-score head (a Linear or an MLP)."""
    head = model.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    bias: torch.Tensor = last.bias
    return bias
