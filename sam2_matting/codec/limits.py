"""Size checks shared by every matte codec: run them before allocating anything.

``check_size(obj["size"], max_pixels)`` returns ``(H, W)`` or raises :class:`CodecError`;
``check_alpha(alpha, max_pixels)`` validates an array handed to an encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from sam2_matting.errors import CodecError

__all__ = ["DEFAULT_MAX_PIXELS", "HARD_MAX_PIXELS", "check_alpha", "check_max_pixels", "check_size"]

#: Default limit on H×W for every encoder and decoder (an 8192×8192 matte, 64 MiB decoded).
#: Pass ``max_pixels=`` to raise or lower it per call (the server passes its configured value).
DEFAULT_MAX_PIXELS = 8192 * 8192

#: Largest ``max_pixels`` a caller may configure (keeps all run arithmetic inside int64).
HARD_MAX_PIXELS = 2**31 - 1


def check_max_pixels(max_pixels: int) -> int:
    """Validate a configured pixel limit (a positive int no larger than ``HARD_MAX_PIXELS``)."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise CodecError(f"max_pixels must be an int, got {type(max_pixels).__name__}")
    if not 1 <= int(max_pixels) <= HARD_MAX_PIXELS:
        raise CodecError(f"max_pixels must be in [1, {HARD_MAX_PIXELS}], got {max_pixels}")
    return int(max_pixels)


def check_size(
    size: Any, max_pixels: int = DEFAULT_MAX_PIXELS, *, integral_floats: bool = False
) -> tuple[int, int]:
    """Validate a JSON ``size`` field ``[H, W]``; return ``(H, W)``.

    H and W must be integers ≥ 1 (not bools) with ``H * W <= max_pixels``. Floats are refused,
    or with ``integral_floats`` taken by value (``3.0`` is 3, as JavaScript's ``JSON.parse``
    sees it; ``3.5``, NaN and infinities are refused).
    """
    limit = check_max_pixels(max_pixels)
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise CodecError(f"size must be a list [H, W], got {_short(size)}")
    dims = []
    for name, value in zip(("height", "width"), size, strict=True):
        if integral_floats and isinstance(value, (float, np.floating)):
            value = int(value) if float(value).is_integer() else value
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise CodecError(f"size: {name} must be an integer, got {_short(value)}")
        if value < 1:
            raise CodecError(f"size: {name} must be at least 1, got {value}")
        if value > limit:
            raise CodecError(f"size: {name} {value} is over the pixel limit {limit}")
        dims.append(int(value))
    height, width = dims
    if height * width > limit:
        raise CodecError(
            f"size {height}x{width} = {height * width} pixels is over the pixel limit {limit}"
        )
    return height, width


def check_alpha(alpha: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Validate an encoder input: a 2-D uint8 array within the pixel limit; return it C-ordered."""
    if not isinstance(alpha, np.ndarray):
        raise CodecError(f"matte must be a numpy array, got {type(alpha).__name__}")
    if alpha.dtype != np.uint8:
        raise CodecError(f"matte must have dtype uint8, got {alpha.dtype}")
    if alpha.ndim != 2:
        raise CodecError(f"matte must be 2-D (H, W), got shape {alpha.shape}")
    check_size(list(alpha.shape), max_pixels)
    return np.ascontiguousarray(alpha)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
