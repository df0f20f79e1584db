"""The caps an upload must respect, checked on what is decoded rather than on the header.

    limits = UploadLimits.from_settings(settings)
    start, window = check_window(start_time_sec, duration_time_sec)   # InvalidInputError
    fps = frame_rate(stream, limits)             # the output's constant rate, within max_fps
    index = scan_frames(src, stream.index, limits)
    grid = FrameGrid(fps, limits, window)        # per frame: slot(), done(), check()

A header can lie about the duration, the frame count, the frame size and the frame rate, so
:func:`check_side` is called on every decoded frame and :class:`FrameGrid` counts the frames
really decoded against ``max_fps``, ``max_frames`` and ``max_duration_sec``. Every failure is a
one-line :class:`~sam2_matting.errors.LimitExceededError` (or InvalidInputError for a bad trim
window) without server paths in the message. Used by :mod:`server.transcode`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from sam2_matting.errors import InvalidInputError, LimitExceededError
from sam2_matting.frame_index import FrameIndex
from server.config import Settings

__all__ = [
    "FALLBACK_FPS",
    "FrameGrid",
    "UploadLimits",
    "check_side",
    "check_window",
    "frame_rate",
    "human_bytes",
    "scan_frames",
]

log = logging.getLogger(__name__)

FALLBACK_FPS = Fraction(25)


@dataclass(frozen=True)
class UploadLimits:
    """The caps an upload must respect (see ``server.config.Settings``)."""

    max_upload_bytes: int
    max_duration_sec: float
    max_frames: int
    max_side: int
    max_fps: float

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        """Take the five limit fields of a :class:`server.config.Settings`."""
        return cls(
            max_upload_bytes=int(settings.max_upload_bytes),
            max_duration_sec=float(settings.max_duration_sec),
            max_frames=int(settings.max_frames),
            max_side=int(settings.max_side),
            max_fps=float(settings.max_fps),
        )


def human_bytes(n: int) -> str:
    """``n`` bytes for a message: ``"12.0 MB"``, ``"3.5 KB"`` or ``"100 bytes"``."""
    if n >= 1024**2:
        return f"{n / 1024**2:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


def check_window(start: float | None, duration: float | None) -> tuple[float, float | None]:
    """``(start, duration)`` of a trim window, start 0 when None; InvalidInputError if bad."""
    if start is not None and not (math.isfinite(start) and start >= 0):
        raise InvalidInputError(f"startTimeSec must be a number >= 0, got {start!r}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise InvalidInputError(f"durationTimeSec must be a number > 0, got {duration!r}")
    return (start or 0.0), duration


def scan_frames(src: Path, stream_index: int, limits: UploadLimits) -> FrameIndex:
    """The frames of the chosen stream, by one demux pass over a second opening of ``src``."""
    # Bounded: the densest video the limits allow; decoding enforces the exact limits.
    cap = max(limits.max_frames, math.ceil(limits.max_fps * limits.max_duration_sec))
    with av.open(str(src), mode="r") as container:
        index = FrameIndex.scan(container, container.streams[stream_index], max_frames=cap)
    if index.count > cap:
        raise LimitExceededError(f"the video has more than {limits.max_frames} frames")
    return index


def frame_rate(stream: Any, limits: UploadLimits) -> Fraction:
    """The constant output rate for a PyAV video ``stream``; LimitExceededError over max_fps."""
    average = Fraction(stream.average_rate) if stream.average_rate else None
    nominal = Fraction(stream.guessed_rate) if stream.guessed_rate else None
    if average and nominal and abs(nominal - average) <= average / 20:
        # Near-constant rate (a few dropped frames): keep the exact nominal rate, fill gaps.
        rate = nominal
    elif average:
        # Truly variable rate: the average keeps the duration and about the frame count.
        rate = average
    elif nominal:
        rate = nominal
    else:
        log.warning("upload declares no frame rate; using %s fps", FALLBACK_FPS)
        rate = FALLBACK_FPS
    # 29.97 stays 30000/1001; odd averages of variable-rate files get a small denominator.
    rate = rate.limit_denominator(1001)
    if rate > limits.max_fps:
        raise LimitExceededError(
            f"the frame rate {float(rate):.4g} fps is over the limit of {limits.max_fps:g} fps"
        )
    return rate


def check_side(width: int, height: int, limits: UploadLimits) -> None:
    """LimitExceededError when the longer side is over ``limits.max_side``."""
    if max(width, height) > limits.max_side:
        raise LimitExceededError(
            f"the frame size {width}x{height} is over the limit of {limits.max_side} pixels"
        )


class FrameGrid:
    """Places source frames on the output's constant-rate grid and enforces the limits."""

    def __init__(self, fps: Fraction, limits: UploadLimits, window: float | None) -> None:
        self.fps = fps
        self.limits = limits
        self.end_slot = math.ceil(window * fps - 1e-6) if window is not None else None
        self.max_slots = min(limits.max_frames, math.ceil(limits.max_duration_sec * fps - 1e-6))
        self.last_slot = -1
        self.decoded = 0

    def slot(self, elapsed: float | None) -> int:
        """The output slot of a frame ``elapsed`` seconds into the window (or the next one)."""
        self.decoded += 1
        if elapsed is None:
            return self.last_slot + 1
        # A header can claim a low rate while the timestamps are dense: count real frames.
        if self.decoded > self.limits.max_fps * (max(elapsed, 0.0) + 1.0):
            raise LimitExceededError(
                f"the video has more than {self.limits.max_fps:g} frames per second"
            )
        return max(0, round(elapsed * self.fps))

    def done(self, slot: int) -> bool:
        """Whether ``slot`` is past the end of the trim window."""
        return self.end_slot is not None and slot >= self.end_slot

    def check(self, slot: int) -> None:
        """LimitExceededError when ``slot`` is over the frame or duration limit."""
        if slot < self.max_slots:
            return
        if slot >= self.limits.max_frames:
            raise LimitExceededError(f"the video has more than {self.limits.max_frames} frames")
        raise LimitExceededError(
            f"the video is longer than the limit of {self.limits.max_duration_sec:g} seconds"
        )
