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

import operator
import re
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar

import numpy as np
from PIL import Image

from sam2_matting.errors import FrameIndexError, InvalidInputError, VideoError
from sam2_matting.limits import DEFAULT_FOLDER_FPS

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_SIDE",
    "FRAME_EXTENSIONS",
    "CacheInfo",
    "DecodeStats",
    "FrameCache",
    "FrameFolderSource",
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

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
S = TypeVar("S", bound="VideoSource")


@dataclass(frozen=True)
class CacheInfo:
    """Counters of a :class:`FrameCache`: ``hits``, ``misses``, ``currsize``, ``maxsize``."""

    hits: int
    misses: int
    currsize: int
    maxsize: int


class FrameCache(Generic[K, V]):
    """A small LRU map, ``FrameCache(maxsize)``; ``get(key)`` / ``put(key, value)``.

    Not locked itself: its owner calls it under its own lock. ``maxsize=0`` caches nothing.
    """

    def __init__(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise InvalidInputError(f"cache size must be an integer >= 0, got {maxsize!r}")
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        self._hits = 0
        self._misses = 0

    def get(self, key: K) -> V | None:
        """The value for ``key`` (now the most recently used), or None on a miss."""
        value = self._items.get(key)
        if value is None:
            self._misses += 1
            return None
        self._hits += 1
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value``, evicting the least recently used entries beyond ``maxsize``."""
        if self.maxsize == 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        self._items.clear()

    def keys(self) -> list[K]:
        """The cached keys, least recently used first."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def info(self) -> CacheInfo:
        """Hit/miss counters and sizes."""
        return CacheInfo(self._hits, self._misses, len(self._items), self.maxsize)


@dataclass
class DecodeStats:
    """What a source's decoder has done: ``seeks``, ``reopens`` (the file opened again to
    restart from the beginning), ``frames_decoded`` (frames out of the decoder, cached or not),
    ``substituted`` (frames the decoder never produced, answered with the nearest decoded
    frame before them) and ``bad_packets`` (corrupt packets dropped)."""

    seeks: int = 0
    reopens: int = 0
    frames_decoded: int = 0
    substituted: int = 0
    bad_packets: int = 0


def normalize_rotation(degrees: float) -> int:
    """A display rotation in degrees (any sign) rounded to the nearest of 0, 90, 180, 270."""
    return (round(degrees / 90) % 4) * 90


def rotate_frame(image: np.ndarray, rotation: float) -> np.ndarray:
    """``image`` (H, W, ...) rotated ``rotation`` degrees counter-clockwise, contiguous.

    The convention is PyAV's ``VideoFrame.rotation`` (FFmpeg's display matrix): a phone clip
    shot in portrait usually reads -90, i.e. the stored frame turns 90° clockwise for display.
    """
    quarter_turns = normalize_rotation(rotation) // 90
    if quarter_turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns))


def natural_sort_key(name: str) -> tuple[tuple[int, str, int], ...]:
    """Sort key ordering names by the numbers in them: ``2.jpg`` before ``10.jpg``."""
    parts = re.split(r"(\d+)", name)
    # Odd positions are digit runs; a (kind, text, number) triple keeps every item comparable.
    return tuple(
        (1, "", int(part)) if i % 2 else (0, part.lower(), 0) for i, part in enumerate(parts)
    )


class VideoSource(ABC):
    """A video opened by :func:`open_video`: metadata plus lazily decoded RGB frames.

    Attributes: ``path``, ``frame_count`` (exact), ``fps``, ``width`` and ``height`` (after
    rotation), ``rotation`` (degrees counter-clockwise applied to the stored frames, one of
    0/90/180/270). Every method is safe to call from several threads (one lock per source).
    Frames returned are read-only arrays shared with the cache: copy one before writing to it.
    """

    path: Path
    frame_count: int
    fps: float
    width: int
    height: int
    rotation: int

    def __init__(self, path: Path, cache_size: int) -> None:
        self.path = path
        self.rotation = 0
        self._cache: FrameCache[int, np.ndarray] = FrameCache(cache_size)
        self._lock = threading.RLock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def get_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as a read-only (height, width, 3) uint8 RGB array.

        Raises FrameIndexError outside ``[0, frame_count)`` and VideoError if the source is
        closed or the frame cannot be decoded.
        """
        index = self._check_index(index)
        with self._lock:
            if self._closed:
                raise VideoError(f"video {self.path.name} is closed")
            frame = self._cache.get(index)
            if frame is None:
                frame = self._read_frame(index)
                frame.setflags(write=False)
                self._cache.put(index, frame)
            return frame

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Yield frames ``start, start+1, ... stop-1`` in order (``stop`` None: to the end).

        ``stop`` past the end is clipped, like a slice; ``start`` must lie in
        ``[0, frame_count]``. The decoder runs forward without seeking between frames.
        """
        start = self._check_index(start, allow_end=True)  # checked now, not at first next()
        stop = self.frame_count if stop is None else min(operator.index(stop), self.frame_count)
        return (self.get_frame(index) for index in range(start, stop))

    def cache_info(self) -> CacheInfo:
        """Hit/miss counters and the number of frames the cache holds now."""
        with self._lock:
            return self._cache.info()

    def cached_indices(self) -> list[int]:
        """Indices of the frames in the cache, least recently used first."""
        with self._lock:
            return self._cache.keys()

    def close(self) -> None:
        """Release the decoder and the cache. Safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._cache.clear()
                self._release()

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return self.frame_count

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, frames={self.frame_count}, "
            f"{self.width}x{self.height}, fps={self.fps:g}, rotation={self.rotation})"
        )

    def _check_index(self, index: int, allow_end: bool = False) -> int:
        try:
            if isinstance(index, bool):
                raise TypeError
            index = operator.index(index)
        except TypeError:
            raise FrameIndexError(f"frame index must be an integer, got {index!r}") from None
        end = self.frame_count + 1 if allow_end else self.frame_count
        if not 0 <= index < end:
            raise FrameIndexError(
                f"frame {index} is out of range: {self.path.name} has frames "
                f"0..{self.frame_count - 1}"
            )
        return index

    def _check_size(self, width: int, height: int, max_side: int) -> None:
        if width <= 0 or height <= 0:
            raise VideoError(f"{self.path.name}: video has no valid frame size ({width}x{height})")
        if max(width, height) > max_side:
            raise VideoError(
                f"{self.path.name}: frame size {width}x{height} is over the limit of "
                f"{max_side} pixels a side"
            )

    @abstractmethod
    def _read_frame(self, index: int) -> np.ndarray:
        """Decode frame ``index`` (RGB uint8, rotation applied); called under the lock."""

    @abstractmethod
    def _release(self) -> None:
        """Free the decoder's resources; called once, under the lock."""


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
    from sam2_matting.video_file import VideoFileSource

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
