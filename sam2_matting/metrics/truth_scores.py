"""Scores on known-truth clips: alpha metrics and the composite error over new backgrounds.

    from sam2_matting.metrics.truth_scores import score_clip, truth_protocol
    scores = score_clip(clip, clip.coarse)              # {"mad": ..., "comp_green": ...}
    scores = score_clip(clip, refine(clip.frames, clip.coarse), foreground="source")

Alpha metrics follow the standard protocol (:mod:`sam2_matting.metrics.protocols`): the
prediction is rounded to 8 bits (as the service returns it), scored against the float truth
frame by frame (MAD, MSE x1e3; Grad, Conn /1e3; dtSSD x1e2, frame 0 counting 0), Grad min-max
normalised below 1080 lines and not from 1080 (RVM's LR and HR); Conn is kept at every size
here (RVM skips it at HR for its cost: about a second per 1080p frame). A clip's score is
the mean over its frames.

**Composite error** (``comp_green``, ``comp_image``; x1e3): what an editor sees when the
matte and its colour are put over a new background ``G``. With the 8-bit prediction ``a``, the
colour ``C`` its export writes (``foreground``: the source pixel, or
:func:`~sam2_matting.export.foreground.estimate_foreground` of the frame under ``a``) and the
truth ``(a*, F)``::

    comp = mean over R and RGB of ((a C + (1 - a) G) - (a* F + (1 - a*) G))^2      (in [0, 1])
    R = the pixels where a > 0 or a* > 0 (inside either matte)

Outside ``R`` both composites are ``G`` exactly, so ``R`` keeps the figure independent of how
much of the frame is empty. ``G`` is pure green (0, 255, 0) or the clip's ``image_bg`` (a frame
of footage the clip does not otherwise use).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sam2_matting.export.foreground import DEFAULT_FOREGROUND, estimate_foreground
from sam2_matting.metrics.alpha import quantize
from sam2_matting.metrics.known_truth import TruthClip
from sam2_matting.metrics.protocols import FrameScorer, Protocol, get_protocol

__all__ = [
    "ALPHA_METRICS",
    "COMPOSITE_METRICS",
    "GREEN",
    "Refine",
    "TruthRow",
    "composite_error",
    "markdown_rows",
    "mean_scores",
    "score_clip",
    "score_clips",
    "truth_protocol",
]

#: ``refine(frames uint8 (T, H, W, 3), coarse float32 (T, H, W)) -> alpha float32 (T, H, W)``
Refine = Callable[[np.ndarray, np.ndarray], np.ndarray]

ALPHA_METRICS = ("mad", "mse", "grad", "conn", "dtssd")
COMPOSITE_METRICS = ("comp_green", "comp_image")
GREEN = np.array([0, 255, 0], np.uint8)


def truth_protocol(height: int) -> Protocol:
    """The standard protocol at ``height`` lines, with Conn at every size (module docstring)."""
    return replace(get_protocol("standard", frame_height=height), metrics=ALPHA_METRICS)


def composite_error(
    alpha8: np.ndarray,
    colour: np.ndarray,
    true_alpha: np.ndarray,
    true_fg: np.ndarray,
    background: np.ndarray,
) -> float:
    """The composite error x1e3 of one frame (module docstring).

    ``alpha8`` (H, W) uint8, ``colour`` and ``true_fg`` (H, W, 3) uint8, ``true_alpha`` (H, W)
    float in [0, 1], ``background`` (3,) or (H, W, 3) uint8.
    """
    inside = (alpha8 > 0) | (true_alpha > 0)
    if not inside.any():
        return 0.0
    g = np.broadcast_to(np.asarray(background, np.float32), colour.shape)[inside] / 255.0
    a = alpha8[inside].astype(np.float32)[:, None] / 255.0
    t = true_alpha[inside].astype(np.float32)[:, None]
    pred = a * (colour[inside] / np.float32(255.0)) + (1 - a) * g
    truth = t * (true_fg[inside] / np.float32(255.0)) + (1 - t) * g
    return float(np.mean((pred - truth) ** 2, dtype=np.float64) * 1e3)


def score_clip(
    clip: TruthClip,
    alpha: np.ndarray,
    *,
    foreground: str = DEFAULT_FOREGROUND,
    metrics: Sequence[str] = ALPHA_METRICS + COMPOSITE_METRICS,
) -> dict[str, float]:
    """Mean over the clip's frames of each of ``metrics`` for the prediction ``alpha``
    (T, H, W) float in [0, 1] or uint8; ``foreground``: ``source`` or ``estimate``."""
    if alpha.shape != clip.alpha.shape:
        raise ValueError(f"prediction {alpha.shape} and truth {clip.alpha.shape} differ")
    protocol = truth_protocol(clip.alpha.shape[1])
    wanted_alpha = tuple(m for m in metrics if m in ALPHA_METRICS)
    scorer = FrameScorer(replace(protocol, metrics=wanted_alpha))
    scorer.start_clip()
    values: dict[str, list[float]] = {m: [] for m in metrics}
    composite = [m for m in metrics if m in COMPOSITE_METRICS]
    for t in range(alpha.shape[0]):
        a8 = alpha[t] if alpha.dtype == np.uint8 else quantize(alpha[t], protocol.rounding)
        for name, value in scorer.score(a8, clip.alpha[t]).items():
            values[name].append(value)
        if not composite:
            continue
        colour = (
            estimate_foreground(clip.frames[t], a8) if foreground == "estimate" else clip.frames[t]
        )
        for name in composite:
            g = GREEN if name == "comp_green" else clip.image_bg
            values[name].append(composite_error(a8, colour, clip.alpha[t], clip.fg[t], g))
    return {name: float(np.mean(v)) for name, v in values.items()}


def mean_scores(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean over clips of each metric (every clip weighs the same)."""
    if not rows:
        return {}
    return {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}


@dataclass
class TruthRow:
    """The scores of one matte (``method``: ``coarse`` or a refiner's name) on one clip."""

    clip: str
    kind: str
    method: str
    scores: dict[str, float]
    seconds: float = 0.0  # the refiner's time for the clip (0 for the coarse matte)


def score_clips(
    clips: Iterable[TruthClip],
    refiners: Mapping[str, Refine] | None = None,
    *,
    foreground: str = DEFAULT_FOREGROUND,
    progress: Callable[[str], None] | None = None,
) -> list[TruthRow]:
    """Score each clip's coarse matte as is, then each of ``refiners`` applied to it."""
    rows: list[TruthRow] = []
    for clip in clips:
        coarse = score_clip(clip, clip.coarse, foreground=foreground)
        rows.append(TruthRow(clip.name, clip.kind, "coarse", coarse))
        for name, refine in (refiners or {}).items():
            started = time.perf_counter()
            alpha = np.asarray(refine(clip.frames, clip.coarse))
            seconds = time.perf_counter() - started
            if alpha.shape != clip.alpha.shape:
                raise ValueError(
                    f"refiner {name} returned {alpha.shape} for a clip of {clip.alpha.shape}"
                )
            if alpha.dtype != np.uint8:
                alpha = np.clip(alpha.astype(np.float32), 0.0, 1.0)
            scores = score_clip(clip, alpha, foreground=foreground)
            rows.append(TruthRow(clip.name, clip.kind, name, scores, seconds))
        if progress is not None:
            progress(clip.name)
    return rows


_HEADS = {
    "mad": "MAD", "mse": "MSE", "grad": "Grad", "conn": "Conn", "dtssd": "dtSSD",
    "comp_green": "comp. green", "comp_image": "comp. image",
}  # fmt: skip


def markdown_rows(rows: Sequence[TruthRow]) -> str:
    """A Markdown table: one line per clip and matte, then the mean of each matte over clips
    (and, for a refiner, its change against the coarse matte in %)."""
    if not rows:
        return ""
    names = list(rows[0].scores)
    lines = [
        "| clip | matte | " + " | ".join(_HEADS.get(n, n) for n in names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for row in rows:
        cells = " | ".join(f"{row.scores[n]:.3f}" for n in names)
        lines.append(f"| {row.clip} | {row.method} | {cells} |")
    methods = list(dict.fromkeys(r.method for r in rows))
    means = {m: mean_scores([r.scores for r in rows if r.method == m]) for m in methods}
    for method in methods:
        cells = " | ".join(f"{means[method][n]:.3f}" for n in names)
        lines.append(f"| **mean** | {method} | {cells} |")
        if method != "coarse":
            base = means["coarse"]
            change = " | ".join(
                f"{(means[method][n] / base[n] - 1) * 100:+.0f} %" if base[n] else "-"
                for n in names
            )
            lines.append(f"| change | {method} vs coarse | {change} |")
    return "\n".join(lines) + "\n"
