"""Evaluation data: RVM's composites, VideoMatte240K composited per the course protocol, synthetic.

    from sam2_matting.metrics.evalsets import rvm_clips, course_clips, synthetic_eval_clips
    for ref in rvm_clips("data/videomatte_512x288"):
        clip = ref.open()          # clip.open_frames() -> VideoSource; clip.truth(i) -> uint8

- :func:`rvm_clips`: RVM's released test sets, ``ROOT/{videomatte_motion,videomatte_static}/
  <clip>/{com,pha}/<frame>.png|jpg`` (or ``ROOT/<clip>/{com,pha}``); every ``com`` frame needs
  a ``pha`` frame of the same name.
- :func:`course_clips`: the course project's protocol, seeded: VideoMatte240K clips (e.g.
  ``train`` 200-299), the first ``frames`` frames, each clip over one background image drawn
  with ``default_rng([seed, crc32(clip name)])``, resized to cover the frame and centre-cropped.
- :func:`synthetic_eval_clips`: seeded synthetic clips over real video frames (plumbing only).

Clips are opened one at a time (:class:`ClipRef`), so memory does not grow with the set.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from sam2_matting.errors import MattingError
from sam2_matting.training.augment import center_crop, composite, crop_resize
from sam2_matting.training.layout import (
    DataError,
    _image_files,
    require_dir,
    scan_backgrounds,
    scan_videomatte,
)
from sam2_matting.video import VideoSource, open_video

RVM_SUBSETS = ("videomatte_motion", "videomatte_static")


class ArrayVideoSource(VideoSource):
    """A clip held in memory, (T, H, W, 3) uint8, readable by a matting session."""

    def __init__(self, name: str, frames: np.ndarray, fps: float = 30.0) -> None:
        super().__init__(Path(name), cache_size=0)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise DataError(f"{name}: frames must be (T, H, W, 3) uint8")
        self._frames = frames
        self.frame_count, self.height, self.width = frames.shape[:3]
        self.fps = fps

    def _read_frame(self, index: int) -> np.ndarray:
        return np.array(self._frames[index])

    def _release(self) -> None:
        self._frames = np.zeros((0, 1, 1, 3), np.uint8)


@dataclass
class EvalClip:
    """A loaded evaluation clip.

    ``open_frames()`` gives a fresh :class:`VideoSource` of its frames (each matting session
    closes its own), ``truth(i)`` the uint8 ground truth of frame ``i``, ``frame_names`` the
    file stems predictions are saved under (RVM's scripts match files by name).
    """

    name: str
    open_frames: Callable[[], VideoSource]
    truth: Callable[[int], np.ndarray]
    num_frames: int
    frame_names: list[str]
    info: dict[str, str]


@dataclass(frozen=True)
class ClipRef:
    """A named clip not yet loaded; ``open()`` loads it."""

    name: str
    open: Callable[[], EvalClip]


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except (OSError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read alpha ({err})") from err


def _rvm_clip(name: str, folder: Path, max_frames: int | None, subset: str) -> EvalClip:
    com, pha = folder / "com", folder / "pha"
    frames = _image_files(com)[:max_frames] if max_frames else _image_files(com)
    alphas = {p.stem: p for p in _image_files(pha)}
    truth_files = []
    for f in frames:
        if f.stem not in alphas:
            raise DataError(f"{f} has no ground truth {f.stem}.png in {pha}")
        truth_files.append(alphas[f.stem])
    return EvalClip(
        name,
        partial(_open_first, com, len(frames)),
        lambda i: _read_gray(truth_files[i]),
        len(frames),
        [f.stem for f in frames],
        {"subset": subset, "frames_dir": str(com)},
    )


def _open_first(folder: Path, count: int) -> VideoSource:
    """The frame folder as a clip of its first ``count`` frames."""
    try:
        source = open_video(folder)
    except MattingError as err:
        raise DataError(f"{folder}: {err}") from err
    # Evaluating the first N frames means treating the clip as N frames long (SAM 2 reads
    # the clip length, e.g. for its object-pointer window).
    source.frame_count = min(source.frame_count, count)
    return source


def rvm_clips(root: str | Path, *, max_frames: int | None = None) -> list[ClipRef]:
    """The clips of an RVM composites set (see the module docstring), checked for layout."""
    base = require_dir(root, "RVM composites folder")
    subsets = [(s, base / s) for s in RVM_SUBSETS if (base / s).is_dir()] or [("", base)]
    refs: list[ClipRef] = []
    for subset, folder in subsets:
        for clip in sorted(p for p in folder.iterdir() if p.is_dir()):
            for part in ("com", "pha"):
                require_dir(clip / part, f"'{part}' folder of clip {clip.name}")
            if not _image_files(clip / "com"):
                raise DataError(f"no frames in {clip / 'com'}")
            name = f"{subset}/{clip.name}" if subset else clip.name
            refs.append(ClipRef(name, partial(_rvm_clip, name, clip, max_frames, subset)))
    if not refs:
        raise DataError(f"no clips with com/ and pha/ folders in {base}")
    return refs


def clip_seed(seed: int, name: str) -> np.random.Generator:
    """The generator of one clip: stable under adding or removing other clips."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def parse_range(text: str | None) -> tuple[int, int] | None:
    """``"200-299"`` -> (200, 299) inclusive; ``None`` -> None."""
    if not text:
        return None
    try:
        lo, _, hi = text.partition("-")
        return int(lo), int(hi or lo)
    except ValueError as err:
        raise DataError(f"clip range must look like 200-299, got {text!r}") from err


def course_clips(
    root: str | Path,
    backgrounds: str | Path,
    *,
    split: str = "train",
    clip_range: tuple[int, int] | None = None,
    frames: int = 10,
    seed: int = 0,
) -> list[ClipRef]:
    """VideoMatte240K clips composited over one seeded background image each."""
    clips = scan_videomatte(root, split, check=False)
    if clip_range is not None:
        lo, hi = clip_range
        clips = [c for i, c in enumerate(clips) if lo <= i <= hi]
        if not clips:
            raise DataError(f"no VideoMatte240K clips with index {lo}-{hi} in {root}/{split}")
    bg_files = scan_backgrounds(images=backgrounds).images

    def load(clip_name: str, fgr: Path, pha: Path) -> EvalClip:
        from sam2_matting.training.datasets import read_rgb

        rng = clip_seed(seed, clip_name)
        bg_path = bg_files[int(rng.integers(len(bg_files)))]
        fg = _read_frames(fgr, frames)
        truth = np.stack([a[..., 0] for a in _read_frames(pha, len(fg))])
        h, w = fg[0].shape[:2]
        bg_img = read_rgb(bg_path)
        crop = center_crop(bg_img.shape[1], bg_img.shape[0], w, h)
        bg = crop_resize(bg_img, crop, (w, h)) / 255.0
        comp = np.stack(
            [composite(f / 255.0, t / 255.0, bg) for f, t in zip(fg, truth, strict=True)]
        )
        return EvalClip(
            clip_name,
            partial(ArrayVideoSource, clip_name, comp),
            truth.__getitem__,
            len(fg),
            [f"{i:04d}" for i in range(len(fg))],
            {"background": str(bg_path), "fgr": str(fgr)},
        )

    return [ClipRef(c.name, partial(load, c.name, c.fgr, c.pha)) for c in clips]


def _read_frames(path: Path, count: int) -> list[np.ndarray]:
    try:
        with open_video(path, cache_size=0) as src:
            return list(src.iter_frames(0, count))
    except MattingError as err:
        raise DataError(f"{path}: {err}") from err


def synthetic_eval_clips(
    videos: str | Path,
    *,
    count: int = 4,
    frames: int = 10,
    size: Sequence[int] = (144, 256),
    seed: int = 0,
) -> list[ClipRef]:
    """``count`` seeded synthetic clips over frames of the videos in ``videos``."""
    from sam2_matting.training.datasets import ClipSpec, SyntheticClips

    paths = [Path(p) for p in scan_backgrounds(videos=videos).videos]
    spec = ClipSpec(num_frames=frames, size=(int(size[0]), int(size[1])), image_size=32, seed=seed)
    data = SyntheticClips(spec, paths)

    def load(i: int) -> EvalClip:
        name, comp, alphas = data.make(np.random.default_rng([seed, i]))
        truth = np.clip(np.rint(alphas * 255.0), 0, 255).astype(np.uint8)
        return EvalClip(
            f"{i:03d}",
            partial(ArrayVideoSource, name, comp),
            truth.__getitem__,
            len(comp),
            [f"{j:04d}" for j in range(len(comp))],
            {"source": name},
        )

    return [ClipRef(f"{i:03d}", partial(load, i)) for i in range(count)]
