"""Prompts drawn from a true alpha matte by stated, seeded rules (training and evaluation).

    import numpy as np
    from sam2_matting.training.prompts import PromptRule, sample_prompt

    rng = np.random.default_rng(0)
    prompt = sample_prompt(alpha0, PromptRule(kind="click", clicks=1), rng)  # alpha0: (H, W)
    prompt.points, prompt.labels        # (P, 2) x, y in pixels; (P,) 1 / 0 / 2 / 3

The rules (``alpha`` in [0, 1]; uint8 input is divided by 255):

- ``click``: ``clicks`` positive points drawn uniformly from the *confident foreground*
  (``alpha >= fg_threshold``) shrunk by ``margin`` pixels (Euclidean), so a click never sits
  on a soft edge; then ``negatives`` points from the confident background
  (``alpha <= bg_threshold``).
- ``center-click``: the course project's rule, seeded: one positive point drawn uniformly from
  the 5% of fully opaque pixels (``alpha == 1``) nearest the image centre.
- ``box``: the bounding box of ``alpha >= box_threshold`` (corners as SAM 2's labels 2 and 3),
  each side moved by up to ``box_jitter`` of the box size, plus optional negatives.
- ``mask``: the first-frame mask ``alpha >= mask_threshold`` (as a user's segmentation).

When a region is empty the rule falls back, in order, to the un-eroded region, to the pixels
within 10% of the frame's maximum alpha, and finally to the frame centre; the fallback used is
recorded in :attr:`Prompt.note`. Points are pixel indices (x = column, y = row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROMPT_KINDS = ("click", "center-click", "box", "mask")


@dataclass(frozen=True)
class PromptRule:
    """How to draw one prompt from a ground-truth alpha (see the module docstring)."""

    kind: str = "click"
    clicks: int = 1
    negatives: int = 0
    fg_threshold: float = 0.99
    bg_threshold: float = 0.01
    margin: int = 3
    box_threshold: float = 0.5
    box_jitter: float = 0.0
    mask_threshold: float = 0.5
    center_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in PROMPT_KINDS:
            raise ValueError(f"prompt kind must be one of {', '.join(PROMPT_KINDS)}")
        if self.clicks < 0 or self.negatives < 0 or self.margin < 0:
            raise ValueError("clicks, negatives and margin must be >= 0")
        if self.kind == "click" and self.clicks < 1:
            raise ValueError("a click prompt needs at least one positive click")


@dataclass(frozen=True)
class Prompt:
    """One first-frame prompt: points (x, y pixels) with SAM 2 labels, or a binary mask."""

    kind: str
    points: np.ndarray  # (P, 2) float32
    labels: np.ndarray  # (P,) int32: 1 positive, 0 negative, 2/3 box corners
    mask: np.ndarray | None = None  # (H, W) bool for kind "mask"
    note: str = ""

    @property
    def is_mask(self) -> bool:
        return self.mask is not None

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """The box (x0, y0, x1, y1) if the prompt has one."""
        if len(self.labels) >= 2 and self.labels[0] == 2 and self.labels[1] == 3:
            (x0, y0), (x1, y1) = self.points[0], self.points[1]
            return float(x0), float(y0), float(x1), float(y1)
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (a mask is summarised by its area and bounding box)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.mask is not None:
            ys, xs = np.nonzero(self.mask)
            out["mask_area"] = len(xs)
            if len(xs):
                out["mask_bbox"] = [
                    int(xs.min()),
                    int(ys.min()),
                    int(xs.max()) + 1,
                    int(ys.max()) + 1,
                ]
        else:
            out["points"] = [[float(x), float(y)] for x, y in self.points]
            out["labels"] = [int(v) for v in self.labels]
        if self.note:
            out["note"] = self.note
        return out


def as_unit_alpha(alpha: np.ndarray) -> np.ndarray:
    """A (H, W) alpha as float32 in [0, 1] (uint8 is divided by 255)."""
    a = np.asarray(alpha)
    if a.ndim != 2:
        raise ValueError(f"alpha must be (H, W), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def sample_prompt(alpha: np.ndarray, rule: PromptRule, rng: np.random.Generator) -> Prompt:
    """Draw one prompt from ``alpha`` (H, W) under ``rule`` with the generator ``rng``."""
    a = as_unit_alpha(alpha)
    notes: list[str] = []
    if rule.kind == "mask":
        return Prompt(
            "mask",
            np.zeros((0, 2), np.float32),
            np.zeros(0, np.int32),
            mask=a >= rule.mask_threshold,
        )
    if rule.kind == "center-click":
        pos = _center_click(a, rule.center_fraction, rng, notes)
        return _points_prompt("center-click", pos, np.zeros((0, 2)), None, notes)
    positives = np.zeros((0, 2))
    box = None
    if rule.kind == "click":
        positives = _draw(_confident_fg(a, rule, notes), rule.clicks, rng)
    else:
        box = _box(a, rule, rng, notes)
    negatives = _draw(a <= rule.bg_threshold, rule.negatives, rng) if rule.negatives else None
    if negatives is not None and len(negatives) < rule.negatives:
        notes.append("fewer negatives: little confident background")
    return _points_prompt(rule.kind, positives, negatives, box, notes)


def _points_prompt(
    kind: str,
    positives: np.ndarray,
    negatives: np.ndarray | None,
    box: np.ndarray | None,
    notes: list[str],
) -> Prompt:
    pts: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    if box is not None:
        pts.append(box.reshape(2, 2))
        labels.append(np.array([2, 3]))
    pts.append(positives.reshape(-1, 2))
    labels.append(np.ones(len(positives)))
    if negatives is not None:
        pts.append(negatives.reshape(-1, 2))
        labels.append(np.zeros(len(negatives)))
    return Prompt(
        kind,
        np.concatenate(pts).astype(np.float32),
        np.concatenate(labels).astype(np.int32),
        note="; ".join(notes),
    )


def _confident_fg(a: np.ndarray, rule: PromptRule, notes: list[str]) -> np.ndarray:
    from scipy import ndimage

    fg = a >= rule.fg_threshold
    if rule.margin and fg.any():
        # Pixels farther than `margin` (Euclidean) from anything that is not confident fg.
        padded = np.pad(fg, 1)  # the frame border counts as outside
        eroded = ndimage.distance_transform_edt(padded)[1:-1, 1:-1] > rule.margin
        if eroded.any():
            return np.asarray(eroded)
        notes.append("foreground thinner than the margin: margin ignored")
    if fg.any():
        return fg
    return _fallback_region(a, notes)


def _fallback_region(a: np.ndarray, notes: list[str]) -> np.ndarray:
    peak = float(a.max())
    if peak > 0:
        notes.append("no confident foreground: used the most opaque pixels")
        return np.asarray(a >= 0.9 * peak)
    notes.append("empty alpha: used the frame centre")
    region = np.zeros(a.shape, bool)
    region[a.shape[0] // 2, a.shape[1] // 2] = True
    return region


def _draw(region: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct pixels of ``region`` (fewer if it is smaller) as (x, y) rows."""
    ys, xs = np.nonzero(region)
    if count <= 0 or len(xs) == 0:
        return np.zeros((0, 2))
    idx = rng.choice(len(xs), size=min(count, len(xs)), replace=False)
    return np.stack([xs[idx], ys[idx]], axis=1).astype(np.float64)


def _center_click(
    a: np.ndarray, fraction: float, rng: np.random.Generator, notes: list[str]
) -> np.ndarray:
    opaque = a >= 1.0
    if not opaque.any():
        notes.append("no fully opaque pixel: used the confident foreground")
        opaque = a >= 0.99 if (a >= 0.99).any() else _fallback_region(a, notes)
    ys, xs = np.nonzero(opaque)
    h, w = a.shape
    dist = np.hypot(xs - (w - 1) / 2.0, ys - (h - 1) / 2.0)
    keep = max(1, int(np.ceil(fraction * len(xs))))
    # A stable sort keeps ties in raster order, so the candidate set is reproducible.
    nearest = np.argsort(dist, kind="stable")[:keep]
    pick = nearest[int(rng.integers(len(nearest)))]
    return np.array([[xs[pick], ys[pick]]], dtype=np.float64)


def _box(a: np.ndarray, rule: PromptRule, rng: np.random.Generator, notes: list[str]) -> np.ndarray:
    region = a >= rule.box_threshold
    if not region.any():
        region = a > 0
        notes.append("no pixel over the box threshold: box of any alpha > 0")
    h, w = a.shape
    if not region.any():
        notes.append("empty alpha: whole-frame box")
        return np.array([0.0, 0.0, float(w), float(h)])
    ys, xs = np.nonzero(region)
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    if rule.box_jitter > 0:
        bw, bh = x1 - x0, y1 - y0
        dx0, dx1 = rng.uniform(-rule.box_jitter, rule.box_jitter, 2) * bw
        dy0, dy1 = rng.uniform(-rule.box_jitter, rule.box_jitter, 2) * bh
        x0, x1 = np.clip([x0 + dx0, x1 + dx1], 0, w)
        y0, y1 = np.clip([y0 + dy0, y1 + dy1], 0, h)
        if x1 - x0 < 1 or y1 - y0 < 1:  # jitter collapsed the box: keep the exact one
            x0, y0, x1, y1 = (
                float(xs.min()),
                float(ys.min()),
                float(xs.max() + 1),
                float(ys.max() + 1),
            )
    return np.array([x0, y0, x1, y1], dtype=np.float64)


@dataclass(frozen=True)
class TrainingPrompts:
    """The mix of prompts used in training: ``kinds`` maps a kind to its probability."""

    kinds: Mapping[str, float] = field(
        default_factory=lambda: {"click": 0.5, "box": 0.25, "mask": 0.25}
    )
    max_clicks: int = 3
    negative_prob: float = 0.3
    max_negatives: int = 2
    box_jitter: float = 0.1
    margin: int = 3

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in PROMPT_KINDS]
        if bad:
            raise ValueError(f"unknown prompt kind {bad[0]!r}; use {', '.join(PROMPT_KINDS)}")
        total = sum(float(p) for p in self.kinds.values())
        if total <= 0 or any(float(p) < 0 for p in self.kinds.values()):
            raise ValueError("prompt kind probabilities must be >= 0 and not all 0")
        if self.max_clicks < 1 or self.max_negatives < 0:
            raise ValueError("max_clicks must be >= 1 and max_negatives >= 0")

    def draw(self, alpha: np.ndarray, rng: np.random.Generator) -> Prompt:
        """Pick a kind and counts with ``rng``, then draw the prompt from ``alpha``."""
        kinds = list(self.kinds)
        probs = np.array([float(self.kinds[k]) for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
        clicks = int(rng.integers(1, self.max_clicks + 1))
        negatives = 0
        if self.max_negatives and rng.random() < self.negative_prob:
            negatives = int(rng.integers(1, self.max_negatives + 1))
        rule = PromptRule(
            kind=kind,
            clicks=clicks,
            negatives=negatives if kind in ("click", "box") else 0,
            margin=self.margin,
            box_jitter=self.box_jitter,
        )
        return sample_prompt(alpha, rule, rng)
