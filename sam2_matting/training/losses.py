"""Matting losses on alpha at the video's resolution.

    from sam2_matting.training.losses import LossWeights, matting_loss
    total, parts = matting_loss(pred_alpha, true_alpha, LossWeights(l1=1.0, laplacian=0.5))

``pred`` and ``true`` are (B, H, W) alphas in [0, 1]. The terms:

- ``l1``: mean |pred - true| (the course project's loss);
- ``gradient``: mean L1 between the finite-difference gradients (x and y) of pred and true;
- ``laplacian``: L1 between Laplacian pyramids (5x5 binomial kernel, ``levels`` levels),
  level ``i`` weighted by ``2**i`` and the sum divided by ``levels``, so that coarse
  structure counts as much as fine detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (0 turns a term off) and the pyramid depth."""

    l1: float = 1.0
    gradient: float = 0.0
    laplacian: float = 0.0
    levels: int = 5


def l1_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    return (pred - true).abs().mean()


def gradient_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean L1 between horizontal and vertical finite differences."""
    dx = (pred.diff(dim=-1) - true.diff(dim=-1)).abs().mean()
    dy = (pred.diff(dim=-2) - true.diff(dim=-2)).abs().mean()
    return dx + dy


def _binomial_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    k2 = torch.outer(k, k)
    return (k2 / k2.sum()).view(1, 1, 5, 5)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid of (B, H, W) images: ``levels - 1`` band-pass maps + the residual."""
    kernel = _binomial_kernel(x.device, x.dtype)
    current = x[:, None]
    out: list[torch.Tensor] = []
    for _ in range(levels - 1):
        if min(current.shape[-2:]) < 4:
            break
        blurred = F.conv2d(F.pad(current, (2, 2, 2, 2), mode="replicate"), kernel)
        down = blurred[..., ::2, ::2]
        up = F.interpolate(down, size=current.shape[-2:], mode="bilinear", align_corners=False)
        out.append(current - up)
        current = down
    out.append(current)
    return out


def laplacian_loss(pred: torch.Tensor, true: torch.Tensor, levels: int = 5) -> torch.Tensor:
    pp, tp = laplacian_pyramid(pred, levels), laplacian_pyramid(true, levels)
    total = sum(
        ((2.0**i) * (a - b).abs().mean() for i, (a, b) in enumerate(zip(pp, tp, strict=True))),
        start=pred.new_zeros(()),
    )
    return total / len(pp)


def matting_loss(
    pred: torch.Tensor, true: torch.Tensor, weights: LossWeights
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the enabled terms and each term (detached) for logging."""
    parts: dict[str, torch.Tensor] = {}
    total = pred.new_zeros(())
    if weights.l1:
        parts["l1"] = l1_loss(pred, true)
        total = total + weights.l1 * parts["l1"]
    if weights.gradient:
        parts["gradient"] = gradient_loss(pred, true)
        total = total + weights.gradient * parts["gradient"]
    if weights.laplacian:
        parts["laplacian"] = laplacian_loss(pred, true, weights.levels)
        total = total + weights.laplacian * parts["laplacian"]
    return total, {k: v.detach() for k, v in parts.items()}
