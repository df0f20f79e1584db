"""The differentiable clip forward through SAM 2, run the way its video predictor runs a clip.

    from sam2_matting.training.step import forward_clip, normalize_frames
    out = forward_clip(sam, normalize_frames(frames_u8), prompts, video_size=(H, W))
    out.logits[t]        # (B, 1, S/4, S/4) mask logits of frame t (S = sam.image_size)

SAM 2's own inference paths (``add_new_points_or_box``, ``propagate_in_video``) run under
``torch.inference_mode()``, so no gradient can pass through them. This module calls the
underlying ``SAM2Base`` methods directly, in the predictor's order:

1. frame 0: ``track_step`` with the prompt (points/box with SAM 2's labels, or a mask resized
   to ``image_size`` and thresholded like ``add_new_mask``) and no memory encoding; then, as
   ``propagate_in_video_preflight`` does, the low-res logits are resized to ``image_size`` and
   encoded into memory with ``is_mask_from_pts=True`` (binarised in eval mode);
2. frames 1..T-1: ``track_step`` conditioned on the memory bank (``cond_frame_outputs`` and
   ``non_cond_frame_outputs``), memory features stored in bf16 like the predictor does.

The model must be in eval mode (SAM 2 switches memory stride, binarisation and dropout on
``self.training``); gradients still flow into whatever parameters require them (the LoRA
adapters). The predictor's small-hole filling (non-differentiable post-processing on the
output only) is not applied. With ``backprop_through_memory=False`` the memory features and
object pointers are detached when stored: each frame's loss then trains only its own decoder
pass (cheaper, but the adapter no longer learns how its mattes feed the memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sam2_matting.training.prompts import Prompt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ClipOutput:
    """Per-frame outputs of :func:`forward_clip` (lists of length T)."""

    logits: list[torch.Tensor]  # (B, 1, s, s) low-res mask logits, s = image_size / 4
    object_scores: list[torch.Tensor]  # (B, 1) object-score logits


def unwrap_sam(model: Any) -> Any:
    """The ``SAM2Base`` inside a PEFT wrapper (LoRA layers live inside it), or ``model``."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (..., S, S, 3) already resized to the model size -> normalized (..., 3, S, S).

    The same arithmetic as SAM 2's loader (``/255`` then ImageNet mean and std), in float32.
    """
    x = frames.to(torch.float32).div(255.0).movedim(-1, -3)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def alpha_from_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Low-res logits (B, 1, s, s) -> alpha (B, H, W) at the video's size, as the predictor.

    Bilinear resize of the logits (``align_corners=False``), then the sigmoid.
    """
    up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    return torch.sigmoid(up[:, 0])


def point_inputs(
    prompts: Sequence[Prompt], video_size: tuple[int, int], image_size: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """SAM 2 ``point_inputs`` for prompts with the same number of points.

    Pixel coordinates are normalised by the video's width and height and scaled to
    ``image_size``, exactly as ``add_new_points_or_box(normalize_coords=True)`` does.
    """
    h, w = video_size
    coords = np.stack([p.points for p in prompts]).astype(np.float32)
    labels = np.stack([p.labels for p in prompts]).astype(np.int32)
    pts = torch.from_numpy(coords) / torch.tensor([w, h], dtype=torch.float32) * image_size
    return {
        "point_coords": pts.to(device),
        "point_labels": torch.from_numpy(labels).to(device),
    }


def mask_inputs(prompts: Sequence[Prompt], image_size: int, device: torch.device) -> torch.Tensor:
    """(B, 1, S, S) mask inputs resized and thresholded exactly like ``add_new_mask``."""
    masks = torch.from_numpy(np.stack([np.asarray(p.mask, bool) for p in prompts]))
    m = masks[:, None].float().to(device)
    if m.shape[-2:] != (image_size, image_size):
        m = F.interpolate(
            m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
        m = (m >= 0.5).float()
    return m


def _prompt_groups(prompts: Sequence[Prompt]) -> dict[tuple[bool, int], list[int]]:
    """Batch indices grouped by (is mask, number of points): each group runs as one batch.

    Grouping keeps every clip's frame 0 identical to a single-object predictor run (SAM 2's
    multimask choice depends on the number of points, padding included).
    """
    groups: dict[tuple[bool, int], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault((p.is_mask, 0 if p.is_mask else len(p.labels)), []).append(i)
    return groups


def _frame_features(
    sam: Any, images: torch.Tensor, with_grad: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]:
    with torch.set_grad_enabled(with_grad and torch.is_grad_enabled()):
        backbone_out = sam.forward_image(images)
        _, feats, pos, sizes = sam._prepare_backbone_features(backbone_out)
    return feats, pos, sizes


def _first_frame(
    sam: Any,
    feats: list[torch.Tensor],
    pos: list[torch.Tensor],
    sizes: list[tuple[int, int]],
    prompts: Sequence[Prompt],
    video_size: tuple[int, int],
    num_frames: int,
) -> dict[str, Any]:
    """Prompted frame 0 of every clip, plus its memory, merged back into batch order."""
    image_size = int(sam.image_size)
    device = feats[-1].device
    parts: list[tuple[list[int], dict[str, Any]]] = []
    for (is_mask, _), idx in _prompt_groups(prompts).items():
        sel = torch.tensor(idx, device=device)
        sub_feats = [f.index_select(1, sel) for f in feats]
        sub_pos = [p.index_select(1, sel) for p in pos]
        group = [prompts[i] for i in idx]
        out = sam.track_step(
            frame_idx=0,
            is_init_cond_frame=True,
            current_vision_feats=sub_feats,
            current_vision_pos_embeds=sub_pos,
            feat_sizes=sizes,
            point_inputs=None if is_mask else point_inputs(group, video_size, image_size, device),
            mask_inputs=mask_inputs(group, image_size, device) if is_mask else None,
            output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
            num_frames=num_frames,
            track_in_reverse=False,
            run_mem_encoder=False,
        )
        # As propagate_in_video_preflight: memory from the low-res logits resized to S.
        high_res = F.interpolate(
            out["pred_masks"], size=(image_size, image_size), mode="bilinear", align_corners=False
        )
        mem, mem_pos = sam._encode_new_memory(
            current_vision_feats=sub_feats,
            feat_sizes=sizes,
            pred_masks_high_res=high_res,
            object_score_logits=out["object_score_logits"],
            is_mask_from_pts=True,
        )
        out["maskmem_features"], out["maskmem_pos_enc"] = mem, mem_pos
        parts.append((idx, out))
    if len(parts) == 1:
        return parts[0][1]
    order = torch.tensor(
        np.argsort(np.concatenate([idx for idx, _ in parts]), kind="stable"), device=device
    )
    merged: dict[str, Any] = {}
    for key in ("pred_masks", "obj_ptr", "object_score_logits", "maskmem_features"):
        merged[key] = torch.cat([o[key] for _, o in parts]).index_select(0, order)
    batch = len(prompts)
    merged["maskmem_pos_enc"] = [
        x[0:1].expand(batch, *x.shape[1:]) for x in parts[0][1]["maskmem_pos_enc"]
    ]
    return merged


def _stored(out: dict[str, Any], memory_dtype: torch.dtype, detach: bool) -> dict[str, Any]:
    """The compact per-frame record the predictor keeps in its memory bank."""
    mem = out["maskmem_features"]
    ptr = out["obj_ptr"]
    if detach:
        mem = mem.detach() if mem is not None else None
        ptr = ptr.detach()
    return {
        "maskmem_features": mem.to(memory_dtype) if mem is not None else None,
        "maskmem_pos_enc": out["maskmem_pos_enc"],
        "pred_masks": out["pred_masks"],
        "obj_ptr": ptr,
        "object_score_logits": out["object_score_logits"],
    }


def forward_clip(
    model: Any,
    images: torch.Tensor,
    prompts: Sequence[Prompt],
    video_size: tuple[int, int],
    *,
    memory_dtype: torch.dtype = torch.bfloat16,
    backprop_through_memory: bool = True,
) -> ClipOutput:
    """Run SAM 2 over a batch of clips prompted on frame 0; returns per-frame logits.

    ``images``: (B, T, 3, S, S) normalized model input (see :func:`normalize_frames`).
    ``prompts``: one :class:`~sam2_matting.training.prompts.Prompt` per clip, in pixels of
    ``video_size`` (H, W). ``model``: a SAM 2 video model or its PEFT wrapper, in eval mode.
    """
    sam = unwrap_sam(model)
    if sam.training:
        raise RuntimeError("forward_clip needs the SAM 2 model in eval mode (see module doc)")
    if images.dim() != 5 or images.shape[0] != len(prompts):
        raise ValueError(f"images must be (B, T, 3, S, S) with B = {len(prompts)} prompts")
    batch, num_frames = int(images.shape[0]), int(images.shape[1])
    encoder_grad = any(p.requires_grad for p in sam.image_encoder.parameters())
    output_dict: dict[str, dict[int, Any]] = {
        "cond_frame_outputs": {},
        "non_cond_frame_outputs": {},
    }
    detach = not backprop_through_memory
    logits: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    for t in range(num_frames):
        feats, pos, sizes = _frame_features(sam, images[:, t], encoder_grad)
        if t == 0:
            out = _first_frame(sam, feats, pos, sizes, prompts, video_size, num_frames)
            output_dict["cond_frame_outputs"][0] = _stored(out, memory_dtype, detach)
        else:
            out = sam.track_step(
                frame_idx=t,
                is_init_cond_frame=False,
                current_vision_feats=feats,
                current_vision_pos_embeds=pos,
                feat_sizes=sizes,
                point_inputs=None,
                mask_inputs=None,
                output_dict=output_dict,
                num_frames=num_frames,
                track_in_reverse=False,
                run_mem_encoder=t < num_frames - 1,  # the last frame's memory is never read
            )
            if t < num_frames - 1:
                output_dict["non_cond_frame_outputs"][t] = _stored(out, memory_dtype, detach)
        logits.append(out["pred_masks"])
        scores.append(out["object_score_logits"].reshape(batch, -1)[:, :1])
    return ClipOutput(logits=logits, object_scores=scores)
