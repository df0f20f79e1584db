"""Defaults and rules that several rooms share, said once.

The session, the service's stream, the CLIs and the exports all take a propagation direction,
a ``max_frames`` bound, an object cap and a frame rate for folders of images: each rule and
each default lives here, and every caller imports it.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from sam2_matting.errors import InvalidInputError

Direction = Literal["forward", "backward", "both"]
DIRECTIONS: tuple[Direction, ...] = ("forward", "backward", "both")

DEFAULT_MAX_OBJECTS = 8
"""Objects one session tracks at most (each costs one SAM 2 pass per frame)."""

MAX_OBJECT_ID = 1_000_000
MAX_POINTS = 1_000

DEFAULT_FOLDER_FPS = Fraction(30)
"""The frame rate given to a folder of images, which carries none of its own."""


def check_direction(direction: object) -> Direction:
    """``direction`` if it is one of :data:`DIRECTIONS`, else :class:`InvalidInputError`."""
    for known in DIRECTIONS:
        if direction == known:
            return known
    raise InvalidInputError(f"direction must be one of {', '.join(DIRECTIONS)}")


def check_max_frames(max_frames: object) -> int | None:
    """``None`` (no bound) or a positive integer; anything else is :class:`InvalidInputError`."""
    if max_frames is None:
        return None
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise InvalidInputError("max_frames must be a positive integer")
    return max_frames
