"""SAM 2 input frames computed lazily from a :class:`~sam2_matting.video.VideoSource`.

    from sam2_matting.sam_frames import SamFrames
    from sam2_matting.video import open_video

    video = open_video("clip.mp4")
    frames = SamFrames(video, image_size=1024)
    frames[7]          # torch.float32 (3, 1024, 1024), normalized like SAM 2's loader
    len(frames)        # video.frame_count

SAM 2's ``SAM2VideoPredictor.init_state`` stores what ``load_video_frames`` returns as
``inference_state["images"]`` and afterwards only calls ``len(images)`` and
``images[frame_idx].to(device).float()``; a :class:`SamFrames` can stand in for that tensor
(with ``video_height``/``video_width`` from :attr:`SamFrames.video_height` / ``video_width``),
so a session never holds the whole resized video in memory.

The pixels match ``sam2.utils.misc.load_video_frames`` on a JPEG folder exactly: the RGB frame
is resized to ``image_size`` x ``image_size`` (aspect ratio ignored) with Pillow's default
filter for RGB (bicubic, antialiased when shrinking), scaled to [0, 1] in float64, cast to
float32, then normalized with the ImageNet mean and std.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from sam2_matting.errors import FrameIndexError, InvalidInputError
from sam2_matting.video import FrameCache, VideoSource

__all__ = ["DEFAULT_SAM_CACHE_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "FrameSupplier", "SamFrames"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# One 1024x1024 float32 frame is 12 MiB; SAM 2 caches backbone features itself, so a few
# frames cover the repeated reads of an interaction.
DEFAULT_SAM_CACHE_SIZE = 4


class FrameSupplier(Protocol):
    """Frames prepared elsewhere (:class:`sam2_matting.decode_ahead.DecodeAhead`)."""

    def take(self, index: int, *, need: bool = True) -> torch.Tensor | None: ...


class SamFrames:
    """A lazy sequence of SAM 2 input tensors: ``frames[i]`` -> (3, image_size, image_size).

    ``SamFrames(source, image_size, cache_size=4, dtype=torch.float32, mean=..., std=...)``.
    ``frames[i]`` resizes and normalizes ``source.get_frame(i)``; the last ``cache_size``
    tensors are kept (LRU). Indices outside ``[0, len)`` raise FrameIndexError, like the
    source. Thread-safe. Tensors are shared with the cache: do not modify them in place.
    """

    def __init__(
        self,
        source: VideoSource,
        image_size: int,
        cache_size: int = DEFAULT_SAM_CACHE_SIZE,
        dtype: torch.dtype = torch.float32,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise InvalidInputError(f"image_size must be a positive integer, got {image_size!r}")
        if not dtype.is_floating_point:
            raise InvalidInputError(f"dtype must be a floating point type, got {dtype}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise InvalidInputError("mean and std need 3 values each, std > 0")
        self.source = source
        self.image_size = image_size
        self.dtype = dtype
        self._mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self._cache: FrameCache[int, torch.Tensor] = FrameCache(cache_size)
        self._lock = threading.Lock()
        self._supplier: FrameSupplier | None = None

    def supply_from(self, supplier: FrameSupplier | None) -> None:
        """Take frames from ``supplier`` first (None: prepare every frame here again)."""
        self._supplier = supplier

    @property
    def video_height(self) -> int:
        """Height of the source frames (after rotation), as SAM 2's ``video_height``."""
        return self.source.height

    @property
    def video_width(self) -> int:
        """Width of the source frames (after rotation), as SAM 2's ``video_width``."""
        return self.source.width

    def __len__(self) -> int:
        return self.source.frame_count

    def __getitem__(self, index: int) -> torch.Tensor:
        """Frame ``index`` resized and normalized: (3, image_size, image_size) of ``dtype``."""
        try:
            if isinstance(index, bool):
                raise TypeError
            index = operator.index(index)  # 1.0 must not hit the cache entry of 1
        except TypeError:
            raise FrameIndexError(f"frame index must be an integer, got {index!r}") from None
        with self._lock:
            cached = self._cache.get(index)
        supplier = self._supplier
        supplied = None if supplier is None else supplier.take(index, need=cached is None)
        if cached is not None:
            return cached
        # The source validates the index and has its own lock; resizing runs unlocked so two
        # threads can prepare different frames at once.
        tensor = supplied if supplied is not None else self.prepare(self.source.get_frame(index))
        with self._lock:
            self._cache.put(index, tensor)
        return tensor

    def prepare(self, frame: np.ndarray) -> torch.Tensor:
        """Resize and normalize one (H, W, 3) uint8 RGB frame the way SAM 2's loader does."""
        size = (self.image_size, self.image_size)
        resized = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BICUBIC))
        # Same operations, in the same precision, as sam2.utils.misc._load_img_as_tensor
        # followed by load_video_frames_from_jpg_images: /255 in float64, float32, normalize.
        tensor = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
        tensor -= self._mean
        tensor /= self._std
        return tensor.to(self.dtype).contiguous()

    def cache_len(self) -> int:
        """How many tensors the cache holds now."""
        with self._lock:
            return len(self._cache)

    def __repr__(self) -> str:
        return (
            f"SamFrames({self.source!r}, image_size={self.image_size}, dtype={self.dtype}, "
            f"cache_size={self._cache.maxsize})"
        )
