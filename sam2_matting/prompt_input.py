"""Checks of prompt input, in the session's terms: frame indices, object ids, points, labels, masks.

    pts = check_points([[640, 360]], normalized=False, width=1280, height=720)  # float32 in [0, 1]
    lab = check_labels([1], len(pts))                                         # int32
    inside = check_mask(alpha, height=720, width=1280)                        # bool (H, W)

Each raises :class:`~sam2_matting.errors.InvalidInputError` (``FrameIndexError`` for a frame
outside the video) with a message a client can act on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sam2_matting.errors import FrameIndexError, InvalidInputError
from sam2_matting.limits import MAX_OBJECT_ID, MAX_POINTS

__all__ = ["check_frame", "check_labels", "check_mask", "check_object_id", "check_points"]


def check_frame(index: Any, frame_count: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise InvalidInputError(f"frame index must be an integer, got {index!r}")
    if not 0 <= index < frame_count:
        raise FrameIndexError(
            f"frame index {index} out of range: the video has {frame_count} frames"
        )


def check_object_id(object_id: Any) -> None:
    if isinstance(object_id, bool) or not isinstance(object_id, int | np.integer):
        raise InvalidInputError(f"object id must be an integer, got {object_id!r}")
    if not 0 <= object_id <= MAX_OBJECT_ID:
        raise InvalidInputError(f"object id must be in [0, {MAX_OBJECT_ID}], got {object_id}")


def check_points(points: Any, normalized: bool, width: int, height: int) -> np.ndarray:
    """(N, 2) float32 model coordinates in [0, 1] from pixels or (``normalized``) fractions."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError("points must be a list of [x, y] numbers") from None
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidInputError("points must be a list of [x, y] pairs")
    if len(arr) > MAX_POINTS:
        raise InvalidInputError(f"at most {MAX_POINTS} points per prompt")
    if not np.isfinite(arr).all():
        raise InvalidInputError("points must be finite numbers (no NaN or infinity)")
    # Model coordinates are always normalised to [0, 1]; allow half a pixel of slack.
    if not normalized:
        arr = arr / np.array([width, height], dtype=np.float64)
    slack = 0.5 / max(width, height)
    if (arr < -slack).any() or (arr > 1 + slack).any():
        raise InvalidInputError("points must lie inside the frame")
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def check_labels(labels: Any, n: int) -> np.ndarray:
    """``n`` labels, each 1 (positive) or 0 (negative), as int32."""
    try:
        lab = np.asarray(labels, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError("labels must be a list of 0/1") from None
    if len(lab) != n:
        raise InvalidInputError(f"got {n} points but {len(lab)} labels")
    if not np.isin(lab, (0, 1)).all():
        raise InvalidInputError("labels must be 1 (positive) or 0 (negative)")
    return lab.astype(np.int32)


def check_mask(mask: Any, height: int, width: int) -> np.ndarray:
    """A bool (H, W) mask from a bool mask or a uint8 alpha (>= 128 is inside)."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape != (height, width):
        raise InvalidInputError(
            f"mask must be {height}x{width} (H x W), got {'x'.join(map(str, m.shape))}"
        )
    if m.dtype == np.bool_:
        return m
    if m.dtype == np.uint8:
        return m >= 128
    raise InvalidInputError(f"mask must be bool or uint8, got {m.dtype}")
