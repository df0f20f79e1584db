"""Evaluation protocols: which metrics, on what predictions, averaged how.

    from sam2_matting.metrics.protocols import get_protocol, FrameScorer, aggregate
    protocol = get_protocol("standard", resolution="lr", rounding="truncate")
    scorer = FrameScorer(protocol)
    for clip ...:
        scorer.start_clip()
        for pred, true in frames: values = scorer.score(pred, true)   # {metric: value}
    summary = aggregate(per_clip_values, protocol)

``standard`` is RVM's (reused by MatAnyone): predictions quantised to 8 bits, MAD, MSE, Grad
(low resolution: per-frame min-max normalisation first), Conn (low resolution only), dtSSD
(frame 0 counts as 0); the mean over clips of each frame index, then over frame indices (the
spreadsheet of ``evaluate_lr.py``). ``course`` is the course project's: the first 10 frames,
float predictions, SAD / MAD / MSE with its ``N + 1`` denominators; the mean of each clip, then
the mean over clips (its notebook).

Quantisation (``rounding``): ``round`` (default; what the service returns) or ``truncate``
(RVM's writers, ``mul(255).byte()``), to compare with RVM's published figures.

Aggregation (``aggregate``), from per-clip, per-frame values:

- ``frame-index``: at each frame index the mean over the clips that have that frame, then the
  mean over every index up to the longest clip. RVM's spreadsheet averages only over the first
  clip's frame indices; the two agree when no clip is longer than the first (RVM's sets: 100
  frames each). With clips of unequal length each clip's weight changes from index to index.
- ``clip``: the mean of each clip, then the mean over clips (every clip weighs the same).
- ``pooled``: the mean over every (clip, frame) pair (a long clip weighs more).

All three agree when every clip has the same number of frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from sam2_matting.errors import InvalidInputError
from sam2_matting.metrics import alpha as m


@dataclass(frozen=True)
class Protocol:
    """A scoring protocol (see the module docstring)."""

    name: str
    metrics: tuple[str, ...]
    quantize: bool
    max_frames: int | None
    prompt: str
    aggregate: str  # one of AGGREGATES
    resolution: str = "lr"  # "lr" or "hr": Grad normalisation and Conn
    description: str = ""
    rounding: str = "round"  # one of alpha.ROUNDINGS; used when ``quantize``

    @property
    def predictions(self) -> str:
        """How predictions are scored, in words (every report says it)."""
        if not self.quantize:
            return "float (the sigmoid, not quantised)"
        how = "rounded, round(255 a)" if self.rounding == "round" else "truncated, floor(255 a)"
        return f"8-bit, {how}"


#: Aggregations (see the module docstring), each with the words reports use.
AGGREGATES: Mapping[str, str] = {
    "frame-index": "mean over clips at each frame index, then over frame indices",
    "clip": "mean of each clip, then over clips",
    "pooled": "mean over all frames of all clips",
}


PROTOCOLS: Mapping[str, Protocol] = {
    "standard": Protocol(
        name="standard",
        metrics=("mad", "mse", "grad", "conn", "dtssd"),
        quantize=True,
        max_frames=None,
        prompt="mask",
        aggregate="frame-index",
        description="RVM evaluate_lr/hr.py: 8-bit predictions; MAD, MSE x1e3; Grad, Conn /1e3; "
        "dtSSD x1e2; mean over clips per frame index, then over frame indices",
    ),
    "course": Protocol(
        name="course",
        metrics=("sad", "mad", "mse"),
        quantize=False,
        max_frames=10,
        prompt="center-click",
        aggregate="clip",
        description="course project Metrics.ipynb, seeded: first 10 frames, one background and one "
        "click per clip, float predictions; SAD /1e3, MAD and MSE sum/(N+1) x1e3; mean of each "
        "clip, then over clips",
    ),
}

UNITS = {
    "mad": "x1e3",
    "mse": "x1e3",
    "grad": "/1e3",
    "conn": "/1e3",
    "dtssd": "x1e2",
    "sad": "/1e3",
}


def get_protocol(
    name: str,
    *,
    resolution: str = "auto",
    frame_height: int | None = None,
    aggregate: str | None = None,
    rounding: str | None = None,
) -> Protocol:
    """The protocol ``name``; for ``standard``, ``resolution`` lr/hr (auto: hr from 1080 lines).

    ``aggregate`` and ``rounding`` override the protocol's (``None``: keep them); ``rounding``
    applies only to a protocol that quantises (``standard``).
    """
    if name not in PROTOCOLS:
        raise InvalidInputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}")
    p = PROTOCOLS[name]
    if aggregate is not None:
        if aggregate not in AGGREGATES:
            raise InvalidInputError(
                f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}"
            )
        p = replace(p, aggregate=aggregate)
    if rounding is not None:
        if rounding not in m.ROUNDINGS:
            raise InvalidInputError(
                f"rounding must be one of {', '.join(m.ROUNDINGS)}, got {rounding!r}"
            )
        if not p.quantize:
            raise InvalidInputError(
                f"the {name} protocol scores float predictions: quantisation does not apply"
            )
        p = replace(p, rounding=rounding)
    if name != "standard":
        return p
    if resolution == "auto":
        resolution = "hr" if (frame_height or 0) >= 1080 else "lr"
    if resolution not in ("lr", "hr"):
        raise InvalidInputError(f"resolution must be auto, lr or hr, got {resolution!r}")
    metrics = p.metrics if resolution == "lr" else tuple(x for x in p.metrics if x != "conn")
    return replace(p, resolution=resolution, metrics=metrics)


@dataclass
class FrameScorer:
    """Scores frames of one clip after another; keeps per-metric time for the benchmarks."""

    protocol: Protocol
    seconds: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    _prev: tuple[np.ndarray, np.ndarray] | None = None

    def start_clip(self) -> None:
        self._prev = None

    def prediction(self, pred: np.ndarray) -> np.ndarray:
        """The prediction as scored: 8-bit quantised (standard) or float, in [0, 1]."""
        if self.protocol.quantize and pred.dtype != np.uint8:
            pred = m.quantize(pred, self.protocol.rounding)
        return m.to_unit(pred)

    def score(self, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
        """Every metric of the protocol on one frame (``pred`` uint8 or float, ``true`` uint8)."""
        a, g = self.prediction(pred), m.to_unit(true)
        prev_a, prev_g = self._prev if self._prev is not None else (None, None)
        course = self.protocol.name == "course"
        funcs: dict[str, Callable[[], float]] = {
            "mad": lambda: m.course_mad(a, g) if course else m.mad(a, g),
            "mse": lambda: m.course_mse(a, g) if course else m.mse(a, g),
            "sad": lambda: m.sad(a, g),
            "grad": lambda: m.grad(a, g, normalize=self.protocol.resolution == "lr"),
            "conn": lambda: m.conn(a, g),
            "dtssd": lambda: m.dtssd(a, prev_a, g, prev_g),
        }
        out: dict[str, float] = {}
        for name in self.protocol.metrics:
            t0 = time.perf_counter()
            out[name] = funcs[name]()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        self._prev = (a, g)
        self.frames += 1
        return out


def aggregate(
    per_clip: Sequence[Mapping[str, Sequence[float]]], protocol: Protocol
) -> dict[str, float]:
    """The reported figure of each metric from per-clip, per-frame values."""
    out: dict[str, float] = {}
    for name in protocol.metrics:
        series = [list(c[name]) for c in per_clip if len(c.get(name, ()))]
        if not series:
            out[name] = float("nan")
            continue
        if protocol.aggregate == "frame-index":
            out[name] = float(np.mean(per_frame_index(per_clip, name)))
        elif protocol.aggregate == "clip":
            out[name] = float(np.mean([np.mean(s) for s in series]))
        elif protocol.aggregate == "pooled":
            out[name] = float(np.mean([v for s in series for v in s]))
        else:
            raise InvalidInputError(f"unknown aggregate {protocol.aggregate!r}")
    return out


def per_frame_index(per_clip: Sequence[Mapping[str, Sequence[float]]], name: str) -> list[float]:
    """Mean of metric ``name`` over clips at each frame index (the curve that is plotted)."""
    series = [list(c[name]) for c in per_clip if len(c.get(name, ()))]
    if not series:
        return []
    longest = max(len(s) for s in series)
    return [float(np.mean([s[j] for s in series if j < len(s)])) for j in range(longest)]
