"""Backgrounds for the ``composite`` export: a colour, an image or a video.

    spec = parse_background("#00ff00")         # or "lime", "0,255,0", (0, 255, 0),
    spec = parse_background("beach.jpg")       # an image file,
    spec = parse_background("waves.mp4")       # or a video file
    with spec.open(width, height) as background:
        frame = background.next_frame()        # (height, width, 3) uint8 RGB, read-only

Colours: ``#rgb``/``#rrggbb``, ``r,g,b`` (0–255 each), ``rgb(r, g, b)`` and CSS names as Pillow
knows them (note CSS ``green`` is ``#008000``; pure green is ``lime``). ``None`` means the
default, pure green ``#00ff00``. A string that names an existing file is an image (anything
Pillow opens) or else a video (anything PyAV decodes).

Sizes: an image or video is scaled to *cover* the output (aspect ratio kept, the overflow
cropped equally from both sides), never stretched. A video background plays from its first
frame, one frame per output frame, and loops when it ends; it is decoded sequentially, so
memory does not depend on its length. Rotation metadata of a background video is applied.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from PIL import Image, ImageColor, UnidentifiedImageError

from sam2_matting.errors import InvalidInputError, VideoError
from sam2_matting.frame_index import choose_video_stream
from sam2_matting.video import normalize_rotation, rotate_frame

__all__ = [
    "DEFAULT_BACKGROUND",
    "Background",
    "BackgroundSpec",
    "BackgroundSpecLike",
    "parse_background",
    "parse_colour",
]

DEFAULT_BACKGROUND = (0, 255, 0)

BackgroundSpecLike = str | Path | tuple[int, int, int] | None
_TRIPLE = re.compile(r"^\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*$")


def parse_colour(text: str) -> tuple[int, int, int]:
    """``text`` as an RGB triple: ``#00ff00``, ``#0f0``, ``0,255,0``, ``rgb(0,255,0)``, ``lime``.

    Raises InvalidInputError for anything else.
    """
    match = _TRIPLE.match(text)
    if match:
        values = tuple(int(v) for v in match.groups())
        if all(v <= 255 for v in values):
            return values[0], values[1], values[2]
        raise InvalidInputError(f"colour {text!r}: each component must be 0-255")
    try:
        rgb = ImageColor.getrgb(text.strip())
    except ValueError:
        raise InvalidInputError(
            f"background {text!r} is neither a colour (#00ff00, 0,255,0, lime) nor an existing file"
        ) from None
    return rgb[0], rgb[1], rgb[2]


@dataclass(frozen=True)
class BackgroundSpec:
    """A checked background: ``kind`` is "colour", "image" or "video"; ``colour`` or ``path``."""

    kind: str
    colour: tuple[int, int, int] | None = None
    path: Path | None = None

    def open(self, width: int, height: int) -> Background:
        """A :class:`Background` giving (height, width, 3) frames; close it after use."""
        if self.kind == "colour":
            assert self.colour is not None
            return _ColourBackground(self.colour, width, height)
        assert self.path is not None
        if self.kind == "image":
            return _ImageBackground(self.path, width, height)
        return _VideoBackground(self.path, width, height)


def parse_background(spec: BackgroundSpecLike | BackgroundSpec) -> BackgroundSpec:
    """Check a background argument without decoding it (see the module docstring).

    A file is classified by trying Pillow first, then PyAV (reading the header only).
    Raises InvalidInputError for a malformed colour, VideoError for a file neither opens.
    """
    if isinstance(spec, BackgroundSpec):
        return spec
    if spec is None:
        return BackgroundSpec("colour", colour=DEFAULT_BACKGROUND)
    if isinstance(spec, tuple):
        if len(spec) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in spec
        ):
            raise InvalidInputError(f"background colour must be 3 integers 0-255, got {spec!r}")
        return BackgroundSpec("colour", colour=(spec[0], spec[1], spec[2]))
    path = Path(spec)
    if isinstance(spec, str) and not path.is_file():
        return BackgroundSpec("colour", colour=parse_colour(spec))
    if not path.is_file():
        raise InvalidInputError(f"background file {path} does not exist")
    try:
        with Image.open(path) as image:
            image.verify()
        return BackgroundSpec("image", path=path)
    except (UnidentifiedImageError, OSError, SyntaxError):
        pass
    try:
        with av.open(str(path)) as container:
            choose_video_stream(container, f"background {path.name}")  # VideoError if none
    except av.FFmpegError:
        raise VideoError(f"background {path.name} is neither an image nor a video") from None
    return BackgroundSpec("video", path=path)


def _cover_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    """The smallest size with ``src``'s aspect ratio that covers ``width`` x ``height``."""
    scale = max(width / src_w, height / src_h)
    return max(width, math.ceil(src_w * scale - 1e-9)), max(height, math.ceil(src_h * scale - 1e-9))


def _crop_centre(image: np.ndarray, width: int, height: int) -> np.ndarray:
    top = (image.shape[0] - height) // 2
    left = (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width]


class Background:
    """Frames to composite over, one per call of :meth:`next_frame`; a context manager."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height

    def next_frame(self) -> np.ndarray:
        """The next (height, width, 3) uint8 RGB frame (read-only; do not modify it)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files; idempotent."""

    def __enter__(self) -> Background:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _ColourBackground(Background):
    def __init__(self, colour: tuple[int, int, int], width: int, height: int) -> None:
        super().__init__(width, height)
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = colour
        frame.flags.writeable = False
        self._frame = frame

    def next_frame(self) -> np.ndarray:
        return self._frame


class _ImageBackground(Background):
    def __init__(self, path: Path, width: int, height: int) -> None:
        super().__init__(width, height)
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, ValueError) as err:
            raise VideoError(f"background {path.name}: cannot read image ({err})") from None
        size = _cover_size(rgb.width, rgb.height, width, height)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        frame = np.ascontiguousarray(_crop_centre(np.asarray(rgb), width, height))
        frame.flags.writeable = False
        self._frame = frame

    def next_frame(self) -> np.ndarray:
        return self._frame


class _VideoBackground(Background):
    """Decodes sequentially and reopens at the end (loop); each frame scaled by swscale."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        super().__init__(width, height)
        self._path = path
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._open()

    def _open(self) -> None:
        self.close()
        try:
            self._container = av.open(str(self._path))
            stream = choose_video_stream(self._container)  # the sources' rule: no cover art
            stream.thread_type = "AUTO"
        except (av.FFmpegError, VideoError):
            self.close()
            raise VideoError(f"background {self._path.name}: cannot open video") from None
        self._frames = self._container.decode(stream)

    def _decode_next(self) -> Any:
        assert self._frames is not None
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as err:
            raise VideoError(f"background {self._path.name}: cannot decode ({err})") from None

    def next_frame(self) -> np.ndarray:
        frame = self._decode_next()
        if frame is None:  # end of the video: loop
            self._open()
            frame = self._decode_next()
            if frame is None:
                raise VideoError(f"background {self._path.name} has no frames")
        rotation = normalize_rotation(frame.rotation)
        turned = rotation in (90, 270)
        src_w, src_h = (frame.height, frame.width) if turned else (frame.width, frame.height)
        out_w, out_h = _cover_size(src_w, src_h, self.width, self.height)
        if turned:
            out_w, out_h = out_h, out_w
        rgb = frame.to_ndarray(width=out_w, height=out_h, format="rgb24")
        rgb = rotate_frame(rgb, rotation)
        return _crop_centre(rgb, self.width, self.height)

    def close(self) -> None:
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None
