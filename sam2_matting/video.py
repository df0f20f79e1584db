"""Lazy, thread-safe video reading: decode a frame only when it is asked for.

    from sam2_matting.video import open_video

    with open_video("clip.mp4") as video:          # or a folder of 00000.jpg, 00001.jpg, ...
        print(video.frame_count, video.fps, video.width, video.height, video.rotation)
        frame = video.get_frame(42)                # (H, W, 3) uint8 RGB, rotation applied
        for frame in video.iter_frames(10, 20):    # sequential decode, no seek per frame
            ...

Opening a file demuxes its packets once, without decoding, to count the frames exactly and
to index their timestamps; a frame is then decoded on demand (seek to the keyframe before it,
decode forward) and kept in a small LRU cache, so memory does not grow with the video length.
A folder of JPEG/PNG frames, ordered by the number in each name, is read with Pillow.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from sam2_matting.errors import InvalidInputError, VideoError
from sam2_matting.limits import DEFAULT_FOLDER_FPS
from sam2_matting.video_file import VideoFileSource
from sam2_matting.video_source import (
    CacheInfo,
    DecodeStats,
    FrameCache,
    VideoSource,
    normalize_rotation,
    rotate_frame,
)

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_SIDE",
    "FRAME_EXTENSIONS",
    "CacheInfo",
    "DecodeStats",
    "FrameCache",
    "FrameFolderSource",
    "VideoFileSource",
    "VideoSource",
    "natural_sort_key",
    "normalize_rotation",
    "open_video",
    "rotate_frame",
]

DEFAULT_CACHE_SIZE = 8
DEFAULT_MAX_FRAMES = 100_000  # about 55 minutes at 30 fps
DEFAULT_MAX_SIDE = 8192
FRAME_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})


def natural_sort_key(name: str) -> tuple[tuple[int, str, int], ...]:
    """Sort key ordering names by the numbers in them: ``2.jpg`` before ``10.jpg``."""
    parts = re.split(r"(\d+)", name)
    # Odd positions are digit runs; a (kind, text, number) triple keeps every item comparable.
    return tuple(
        (1, "", int(part)) if i % 2 else (0, part.lower(), 0) for i, part in enumerate(parts)
    )


class FrameFolderSource(VideoSource):
    """A folder of JPEG/PNG frames ordered by the number in the name, decoded with Pillow.

    Open it with :func:`open_video`. Like SAM 2's own loader, EXIF orientation is not applied
    and every frame is converted to RGB; a frame whose size differs from the first raises
    VideoError when read.
    """

    def __init__(
        self, path: Path, *, cache_size: int, max_frames: int, max_side: int, fps: float
    ) -> None:
        super().__init__(path, cache_size)
        names = [
            entry.name
            for entry in path.iterdir()
            if entry.suffix.lower() in FRAME_EXTENSIONS
            and not entry.name.startswith(".")  # macOS "._0001.jpg" resource forks
            and entry.is_file()
        ]
        if not names:
            raise VideoError(f"{path.name}: folder has no JPEG or PNG frames")
        if len(names) > max_frames:
            raise VideoError(
                f"{path.name}: {len(names)} frames is over the limit of {max_frames} frames"
            )
        self._files = [path / name for name in sorted(names, key=natural_sort_key)]
        self.frame_count = len(self._files)
        self.fps = float(fps)
        try:
            with Image.open(self._files[0]) as first:  # reads the header only
                self.width, self.height = first.size
        except (OSError, Image.DecompressionBombError) as err:
            raise VideoError(f"{self._files[0].name}: cannot read image ({err})") from None
        self._check_size(self.width, self.height, max_side)

    def _read_frame(self, index: int) -> np.ndarray:
        file = self._files[index]
        try:
            with Image.open(file) as image:
                rgb = np.asarray(image.convert("RGB"))
        except (OSError, Image.DecompressionBombError) as err:
            raise VideoError(f"{file.name}: cannot read image ({err})") from None
        if rgb.shape[:2] != (self.height, self.width):
            raise VideoError(
                f"{file.name}: frame is {rgb.shape[1]}x{rgb.shape[0]}, but the first frame is "
                f"{self.width}x{self.height}"
            )
        return rgb

    def _release(self) -> None:
        pass


def open_video(
    path: str | Path,
    *,
    cache_size: int = DEFAULT_CACHE_SIZE,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int = DEFAULT_MAX_SIDE,
    folder_fps: float = float(DEFAULT_FOLDER_FPS),
    decoder_threads: bool = True,
) -> VideoSource:
    """Open a video file (anything PyAV demuxes with a video stream) or a frame folder.

    ``cache_size`` frames are kept decoded (LRU). ``max_frames`` and ``max_side`` (pixels on
    the longer side) reject oversized inputs with VideoError. ``folder_fps`` is the frame rate
    reported for a folder of frames. ``decoder_threads`` lets FFmpeg decode with frame and
    slice threads. Raises VideoError (one line) for a missing, empty, unreadable or
    audio-only file and for a folder without frames. Use as a context manager or call close().
    """
    for name, limit in (("max_frames", max_frames), ("max_side", max_side)):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {limit!r}")
    if not folder_fps > 0:
        raise InvalidInputError(f"folder_fps must be positive, got {folder_fps!r}")
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video not found: {path}")
    if path.is_dir():
        return FrameFolderSource(
            path, cache_size=cache_size, max_frames=max_frames, max_side=max_side, fps=folder_fps
        )
    if not path.is_file():
        raise VideoError(f"not a video file or folder of frames: {path}")
    if path.stat().st_size == 0:
        raise VideoError(f"video file is empty (0 bytes): {path}")
    return VideoFileSource(
        path,
        cache_size=cache_size,
        max_frames=max_frames,
        max_side=max_side,
        decoder_threads=decoder_threads,
    )
