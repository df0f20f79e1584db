"""The base of every video reader: :class:`VideoSource`, its frame cache and rotation helpers.

    from sam2_matting.video_source import VideoSource, rotate_frame

Readers (:class:`~sam2_matting.video_file.VideoFileSource`,
:class:`~sam2_matting.video.FrameFolderSource`) subclass :class:`VideoSource` and implement
``_read_frame`` and ``_release``; users open them with :func:`sam2_matting.video.open_video`,
which re-exports every name here. This module imports no reader, so readers can import it.
"""

from __future__ import annotations

import operator
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar

import numpy as np

from sam2_matting.errors import FrameIndexError, InvalidInputError, VideoError

__all__ = [
    "CacheInfo",
    "DecodeStats",
    "FrameCache",
    "VideoSource",
    "normalize_rotation",
    "rotate_frame",
]

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


class VideoSource(ABC):
    """A video opened by :func:`~sam2_matting.video.open_video`: metadata plus lazy RGB frames.

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
