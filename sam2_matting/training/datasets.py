"""Training clips: VideoMatte240K composites, image matting sets and synthetic clips.

    from sam2_matting.training.datasets import SyntheticClips, StepSampler, collate
    spec = ClipSpec(num_frames=4, size=(288, 512), image_size=1024, seed=0)
    data = SyntheticClips(spec, background_videos)
    sample = data[17]                  # the same clip for the same (seed, index), always
    loader = DataLoader(data, batch_size=2, sampler=StepSampler(2, start_batch=0),
                        collate_fn=collate)

Every sample is a pure function of ``(seed, index)``: all randomness (clip, window, crop,
colours, motion, background, prompt) comes from ``numpy.random.default_rng([seed, index])``.
With :class:`StepSampler` the index is derived from the optimiser step and the process rank,
so ``--resume`` sees exactly the batches an uninterrupted run would have seen, with any
number of data-loader workers. Frame sources are opened lazily and kept in a small per-worker
cache. A sample holds the composite at the training resolution ``size`` (H, W) (the "video
resolution" of the loss), its alpha, the frames resized for SAM 2 and the frame-0 prompt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from sam2_matting.errors import MattingError
from sam2_matting.training.augment import (
    Augment,
    apply_colour,
    center_crop,
    composite,
    crop_resize,
    resize_for_model,
    sample_colour,
    sample_crop,
    sample_motion,
    warp,
)
from sam2_matting.training.layout import Backgrounds, DataError, ImagePair, MatteClip
from sam2_matting.training.prompts import Prompt, TrainingPrompts
from sam2_matting.training.synthetic import synthetic_clip
from sam2_matting.video import VideoSource, open_video


@dataclass
class ClipSample:
    """One training clip: composite frames, true alpha, model input and prompt."""

    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8 at the training resolution
    alphas: np.ndarray  # (T, H, W) float32 in [0, 1]
    model_frames: np.ndarray  # (T, S, S, 3) uint8, resized like SAM 2's loader
    prompt: Prompt


@dataclass
class ClipBatch:
    """A collated batch: ``images`` (B, T, S, S, 3) uint8, ``alphas`` (B, T, H, W) float32."""

    names: list[str]
    images: torch.Tensor
    alphas: torch.Tensor
    prompts: list[Prompt]

    @property
    def video_size(self) -> tuple[int, int]:
        return int(self.alphas.shape[-2]), int(self.alphas.shape[-1])

    def to(self, device: torch.device) -> ClipBatch:
        return ClipBatch(
            self.names,
            self.images.to(device, non_blocking=True),
            self.alphas.to(device, non_blocking=True),
            self.prompts,
        )


def collate(samples: Sequence[ClipSample]) -> ClipBatch:
    """Stack samples of the same size into a :class:`ClipBatch`."""
    return ClipBatch(
        names=[s.name for s in samples],
        images=torch.from_numpy(np.stack([s.model_frames for s in samples])),
        alphas=torch.from_numpy(np.stack([s.alphas for s in samples])),
        prompts=[s.prompt for s in samples],
    )


class StepSampler(Sampler[int]):
    """Endless sample indices for one process: batch ``g`` of rank ``r`` is
    ``[(g * world + r) * B + b for b in range(B)]``, starting at batch ``start_batch``."""

    def __init__(self, batch_size: int, start_batch: int = 0, world: int = 1, rank: int = 0):
        self.batch_size, self.start_batch, self.world, self.rank = (
            batch_size,
            start_batch,
            world,
            rank,
        )

    def __iter__(self) -> Iterator[int]:
        g = self.start_batch
        while True:
            base = (g * self.world + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
            g += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


class SourceCache:
    """A few open frame sources (video files or folders), least recently used closed first."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._open: OrderedDict[Path, VideoSource] = OrderedDict()

    def get(self, path: Path) -> VideoSource:
        src = self._open.pop(path, None)
        if src is None:
            try:
                src = open_video(path, cache_size=2)
            except MattingError as err:
                raise DataError(f"{path}: {err}") from err
        self._open[path] = src
        while len(self._open) > self.size:
            self._open.popitem(last=False)[1].close()
        return src

    def read(self, path: Path, indices: Sequence[int]) -> list[np.ndarray]:
        src = self.get(path)
        try:
            return [src.get_frame(i) for i in indices]
        except MattingError as err:
            raise DataError(f"{path}: {err}") from err

    def __getstate__(self) -> dict[str, int]:  # worker processes open their own sources
        return {"size": self.size}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.size = state["size"]
        self._open = OrderedDict()


def window(count: int, num_frames: int, stride: int, rng: np.random.Generator) -> list[int]:
    """``num_frames`` indices ``stride`` apart in a clip of ``count`` frames (held at the end)."""
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, max(1, count - span + 1)))
    return [min(start + k * stride, count - 1) for k in range(num_frames)]


@dataclass(frozen=True)
class ClipSpec:
    """What every sample looks like: ``num_frames`` frames of ``size`` (H, W), the model's
    ``image_size``, the prompt mix, the augmentations and the data seed."""

    num_frames: int
    size: tuple[int, int]
    image_size: int
    prompts: TrainingPrompts = field(default_factory=TrainingPrompts)
    augment: Augment = field(default_factory=Augment)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_frames < 1 or min(self.size) < 8:
            raise DataError(f"need at least one frame of at least 8x8 pixels, got {self.size}")


class ClipDataset(Dataset[ClipSample]):
    """Base: ``make(rng)`` builds (name, frames, alphas); prompt and model input are added."""

    def __init__(self, spec: ClipSpec) -> None:
        self.spec = spec
        self.num_frames, self.size, self.image_size = spec.num_frames, spec.size, spec.image_size
        self.augment = spec.augment
        self.sources = SourceCache()

    def make(self, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> ClipSample:
        rng = np.random.default_rng([self.spec.seed, int(index)])
        name, frames, alphas = self.make(rng)
        prompt = self.spec.prompts.draw(alphas[0], rng)
        model = np.stack([resize_for_model(f, self.image_size) for f in frames])
        return ClipSample(name, frames, alphas.astype(np.float32), model, prompt)

    def background(
        self, backgrounds: Backgrounds, video_prob: float, rng: np.random.Generator
    ) -> np.ndarray:
        """(T, H, W, 3) float32 background frames in [0, 1]: a clip window or a still image."""
        h, w = self.size
        use_video = backgrounds.videos and (not backgrounds.images or rng.random() < video_prob)
        if use_video:
            path = backgrounds.videos[int(rng.integers(len(backgrounds.videos)))]
            src = self.sources.get(path)
            idx = window(src.frame_count, self.num_frames, 1, rng)
            raw = self.sources.read(path, idx)
        else:
            path = backgrounds.images[int(rng.integers(len(backgrounds.images)))]
            raw = [read_rgb(path)] * self.num_frames
        crop = sample_crop(raw[0].shape[1], raw[0].shape[0], w, h, self.augment, rng)
        colour = sample_colour(self.augment, rng)
        return np.stack([apply_colour(crop_resize(f, crop, (w, h)) / 255.0, colour) for f in raw])


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from err


def read_alpha(path: Path) -> np.ndarray:
    """An alpha image as float32 in [0, 1] (a colour matte uses its first channel)."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "F") else im)
    except (OSError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read alpha ({err})") from err
    scale = 65535.0 if arr.dtype == np.uint16 or arr.max(initial=0) > 255 else 255.0
    return (arr.astype(np.float32) / np.float32(scale)) if arr.dtype != np.float32 else arr


class VideoMatteClips(ClipDataset):
    """VideoMatte240K foreground/alpha clips composited over backgrounds, augmented."""

    def __init__(
        self,
        spec: ClipSpec,
        clips: Sequence[MatteClip],
        backgrounds: Backgrounds,
        *,
        stride: int = 1,
        video_background_prob: float = 0.5,
    ) -> None:
        super().__init__(spec)
        if not clips:
            raise DataError("no VideoMatte240K clips to train on")
        self.clips, self.backgrounds = list(clips), backgrounds
        self.stride, self.video_background_prob = stride, video_background_prob

    def __len__(self) -> int:
        return len(self.clips)

    def make(self, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        clip = self.clips[int(rng.integers(len(self.clips)))]
        name, frames, alphas, _ = self.make_clip(clip, rng)
        return name, frames, alphas

    def make_clip(
        self, clip: MatteClip, rng: np.random.Generator
    ) -> tuple[str, np.ndarray, np.ndarray, list[int]]:
        """A window of ``clip`` composited with ``rng``'s draws: (name, frames uint8, alphas
        float32, the source frame indices). ``make`` is this on a clip drawn first."""
        count = clip.frame_count or self.sources.get(clip.fgr).frame_count
        idx = window(count, self.num_frames, self.stride, rng)
        fgr = self.sources.read(clip.fgr, idx)
        pha = [f[..., 0].astype(np.float32) / 255.0 for f in self.sources.read(clip.pha, idx)]
        h, w = self.size
        crop = sample_crop(fgr[0].shape[1], fgr[0].shape[0], w, h, self.augment, rng)
        moves = sample_motion(self.num_frames, (w, h), self.augment, rng)
        colour = sample_colour(self.augment, rng)
        bgr = self.background(self.backgrounds, self.video_background_prob, rng)
        frames, alphas = [], []
        for t in range(self.num_frames):
            f, a = crop_resize(fgr[t], crop, (w, h)), crop_resize(pha[t], crop, (w, h))
            if moves is not None:
                f, a = warp(f, moves[t]), warp(a, moves[t])
            a = np.clip(a, 0.0, 1.0)
            frames.append(composite(apply_colour(f / 255.0, colour), a, bgr[t]))
            alphas.append(a)
        return f"{clip.name}@{idx[0]}", np.stack(frames), np.stack(alphas), idx


class ImageMatteClips(ClipDataset):
    """Image/alpha pairs (RefMatte-RW100 style) as one-frame clips: crop, flip, colour."""

    def __init__(self, spec: ClipSpec, pairs: Sequence[ImagePair]) -> None:
        super().__init__(replace(spec, num_frames=1))
        if not pairs:
            raise DataError("no image/alpha pairs to train on")
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def make(self, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        pair = self.pairs[int(rng.integers(len(self.pairs)))]
        image, alpha = read_rgb(pair.image), read_alpha(pair.alpha)
        if image.shape[:2] != alpha.shape[:2]:
            raise DataError(f"{pair.alpha} is not the size of {pair.image}")
        h, w = self.size
        crop = sample_crop(image.shape[1], image.shape[0], w, h, self.augment, rng)
        colour = sample_colour(self.augment, rng)
        f = apply_colour(crop_resize(image, crop, (w, h)) / 255.0, colour)
        frame = np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
        a = np.clip(crop_resize(alpha, crop, (w, h)), 0.0, 1.0)
        return pair.name, frame[None], a[None]


class SyntheticClips(ClipDataset):
    """Synthetic soft shapes with hair-like strands moving over real video frames."""

    def __init__(self, spec: ClipSpec, backgrounds: Sequence[Path]) -> None:
        super().__init__(spec)
        if not backgrounds:
            raise DataError("synthetic data needs at least one background video")
        self.videos = list(backgrounds)

    def __len__(self) -> int:
        return len(self.videos)

    def make(self, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        h, w = self.size
        path = self.videos[int(rng.integers(len(self.videos)))]
        src = self.sources.get(path)
        idx = window(src.frame_count, self.num_frames, 1, rng)
        raw = self.sources.read(path, idx)
        flip = bool(rng.random() < 0.5)
        crop = center_crop(raw[0].shape[1], raw[0].shape[0], w, h, flip)
        bgs = np.stack([crop_resize(f, crop, (w, h)) for f in raw])
        frames, alphas = synthetic_clip(bgs, rng)
        return f"synthetic:{path.stem}@{idx[0]}", frames, alphas
