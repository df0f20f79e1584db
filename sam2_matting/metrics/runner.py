"""Run matting predictors over evaluation clips and score every frame.

    from sam2_matting.metrics.runner import EvalSettings, evaluate
    results, prompts = evaluate({"base": base, "adapter": tuned}, clip_refs, settings)
    results["adapter"].summary          # {"mad": ..., "mse": ..., ...}

Each clip is loaded once; its frame-0 prompt is drawn from the ground truth with the stated
rule and ``default_rng([seed, crc32(clip name)])``, so every model gets the same prompt and
two runs give the same prompts. The models run through the product's own inference path (a
:class:`~sam2_matting.session.MattingSession`: SAM 2's video predictor, hole filling and all),
forward from frame 0 over the clip. The session's 8-bit (rounded) mattes are scored by the
standard protocol; with ``rounding="truncate"`` the session's float sigmoid is truncated to 8
bits instead (RVM's writers), and the course protocol scores the float sigmoid itself. Saved
predictions are the 8-bit mattes that were scored.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam2_matting.metrics.alpha import quantize
from sam2_matting.metrics.evalsets import ClipRef, EvalClip, clip_seed
from sam2_matting.metrics.protocols import FrameScorer, Protocol, aggregate
from sam2_matting.predictor import MattingPredictor
from sam2_matting.session import MattingSession
from sam2_matting.training.prompts import Prompt, PromptRule, sample_prompt

THUMB_SIDE = 320


@dataclass(frozen=True)
class EvalSettings:
    """What to score and how: the protocol, the prompt rule, the seed and the outputs."""

    protocol: Protocol
    prompt: PromptRule
    seed: int = 0
    worst: int = 6  # frames kept for the worst-frames grid
    worst_metric: str = "mad"
    save_predictions: Path | None = None
    mask_dir: Path | None = None  # supplied first-frame masks (e.g. MatAnyone's) instead


def supplied_mask(mask_dir: Path, clip: EvalClip) -> Prompt:
    """The first-frame mask of ``clip`` from ``mask_dir``: ``<clip>.png`` or
    ``<clip>/<first frame name>.png`` (values >= 128 are inside)."""
    from sam2_matting.training.layout import DataError

    candidates = [
        mask_dir / f"{clip.name}.png",
        mask_dir / clip.name / f"{clip.frame_names[0]}.png",
    ]
    for path in candidates:
        if path.is_file():
            with Image.open(path) as im:
                mask = np.asarray(im.convert("L")) >= 128
            size = clip.truth(0).shape
            if mask.shape != size:
                raise DataError(
                    f"{path} is {mask.shape[1]}x{mask.shape[0]}, the clip {size[1]}x{size[0]}"
                )
            return Prompt(
                "mask",
                np.zeros((0, 2), np.float32),
                np.zeros(0, np.int32),
                mask=mask,
                note=f"supplied mask {path}",
            )
    raise DataError(
        f"no first-frame mask for clip {clip.name}: looked for {candidates[0]} and {candidates[1]}"
    )


@dataclass(order=True)
class WorstFrame:
    score: float
    clip: str = field(compare=False)
    frame: int = field(compare=False)
    image: np.ndarray = field(compare=False, repr=False)
    pred: np.ndarray = field(compare=False, repr=False)
    truth: np.ndarray = field(compare=False, repr=False)


@dataclass
class ModelResult:
    """Scores of one model: per clip and frame, the summary, timings, worst frames."""

    label: str
    per_clip: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    model_seconds: float = 0.0
    frames: int = 0
    metric_seconds: dict[str, float] = field(default_factory=dict)
    worst: list[WorstFrame] = field(default_factory=list)


def apply_prompt(session: MattingSession, prompt: Prompt, object_id: int = 1) -> None:
    """Give ``prompt`` to ``session`` on frame 0 through its public verbs."""
    if prompt.mask is not None:
        session.add_mask(0, object_id, prompt.mask)
        return
    box = prompt.box
    if box is not None:
        rest = slice(2, None)
        session.add_box(
            0,
            object_id,
            box,
            points=prompt.points[rest].tolist(),
            labels=prompt.labels[rest].tolist(),
        )
        return
    session.add_points(0, object_id, prompt.points, prompt.labels)


def _thumb(array: np.ndarray) -> np.ndarray:
    im = Image.fromarray(array)
    scale = THUMB_SIDE / max(im.size)
    if scale < 1:
        im = im.resize(
            (max(1, round(im.width * scale)), max(1, round(im.height * scale))),
            Image.Resampling.BILINEAR,
        )
    return np.asarray(im)


def _run_clip(
    predictor: MattingPredictor,
    clip: EvalClip,
    prompt: Prompt,
    settings: EvalSettings,
    result: ModelResult,
) -> None:
    scorer = FrameScorer(settings.protocol)
    scorer.start_clip()
    values: dict[str, list[float]] = {name: [] for name in settings.protocol.metrics}
    protocol = settings.protocol
    # The session's own 8-bit mattes are rounded; any other quantisation starts from the float.
    use_float = not protocol.quantize or protocol.rounding != "round"
    out_dir = None
    if settings.save_predictions is not None:
        out_dir = settings.save_predictions / result.label / clip.name / "pha"
        out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_time = 0.0
    session = MattingSession(predictor, clip.open_frames(), keep_float=use_float)
    with session:
        apply_prompt(session, prompt)
        model_time += time.perf_counter() - t0
        frames = session.propagate(0, max_frames=clip.num_frames)
        while True:
            t1 = time.perf_counter()
            mattes = next(frames, None)
            model_time += time.perf_counter() - t1
            if mattes is None:
                break
            i = mattes.frame_index
            pred_u8 = mattes.alphas[0]
            pred = mattes.soft[0] if mattes.soft is not None else pred_u8
            if protocol.quantize and pred.dtype != np.uint8:
                pred = pred_u8 = quantize(pred, protocol.rounding)
            truth = clip.truth(i)
            scores = scorer.score(pred, truth)
            for name, value in scores.items():
                values[name].append(value)
            if out_dir is not None:
                Image.fromarray(pred_u8).save(out_dir / f"{clip.frame_names[i]}.png")
            _keep_worst(result, settings, scores, clip, session, i, pred_u8, truth)
    result.per_clip[clip.name] = values
    result.model_seconds += model_time
    result.frames += scorer.frames
    for name, sec in scorer.seconds.items():
        result.metric_seconds[name] = result.metric_seconds.get(name, 0.0) + sec


def _keep_worst(
    result: ModelResult,
    settings: EvalSettings,
    scores: Mapping[str, float],
    clip: EvalClip,
    session: MattingSession,
    index: int,
    pred: np.ndarray,
    truth: np.ndarray,
) -> None:
    score = scores.get(settings.worst_metric)
    if settings.worst <= 0 or score is None:
        return
    if len(result.worst) >= settings.worst and score <= result.worst[0].score:
        return
    item = WorstFrame(
        score, clip.name, index, _thumb(session.frame(index)), _thumb(pred), _thumb(truth)
    )
    if len(result.worst) < settings.worst:
        heapq.heappush(result.worst, item)
    else:
        heapq.heapreplace(result.worst, item)


def evaluate(
    predictors: Mapping[str, MattingPredictor],
    clips: Sequence[ClipRef],
    settings: EvalSettings,
    progress: Any = None,
) -> tuple[dict[str, ModelResult], dict[str, dict[str, Any]]]:
    """Score every predictor on every clip; returns results by label and prompts by clip."""
    results = {label: ModelResult(label) for label in predictors}
    prompts: dict[str, dict[str, Any]] = {}
    for ref in clips:
        clip = ref.open()
        if settings.mask_dir is not None:
            prompt = supplied_mask(settings.mask_dir, clip)
        else:
            prompt = sample_prompt(
                clip.truth(0), settings.prompt, clip_seed(settings.seed, clip.name)
            )
        prompts[clip.name] = {**prompt.to_json(), **clip.info}
        for label, predictor in predictors.items():
            _run_clip(predictor, clip, prompt, settings, results[label])
        if progress is not None:
            progress(clip.name)
    for result in results.values():
        result.summary = aggregate(list(result.per_clip.values()), settings.protocol)
        result.worst.sort(reverse=True)
    return results, prompts
