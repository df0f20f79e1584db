"""Known-truth matting clips: real footage composited under a known full-resolution matte.

    from sam2_matting.metrics.known_truth import truth_clips, simulate_coarse
    for clip in truth_clips("heldout", size=(720, 1280), frames=8, seed=0):
        clip.frames     # uint8 (T, H, W, 3): I = a F + (1 - a) B, rounded to 8 bits
        clip.alpha      # float32 (T, H, W): the true matte
        clip.coarse     # float32 (T, H, W): the same matte as SAM 2's output reaches a session

Every clip is built on demand (one at a time in memory) from three shared videos of its split:
the **foreground** colour ``F`` is one frame of the first (flipped at random), moved with the
matte; the **background** ``B`` is ``T`` consecutive frames of the second (its own motion);
the **new background** used to score composites (``image_bg``) is a frame of the third. The
matte (:mod:`sam2_matting.metrics.truth_shapes`) moves by a smooth affine path; each frame's
matte is its average over the shutter (motion blur), and ``F`` is the matching average of
``aF`` divided by it, so ``I = aF + (1 - a)B`` holds exactly before rounding.

``static=True`` gives the same clips (matte, foreground, motion, names ending in ``-static``)
over a still background: the first frame of the moving clip's background held for every frame,
with fresh Gaussian sensor noise (:data:`STATIC_NOISE` levels) in each: a camera on a tripod,
for the background taken from other frames (:mod:`sam2_matting.export.background_plate`).

Splits (:data:`SPLIT_SOURCES`): the held-out clips take all their footage from
``04_coffee.mp4``, ``05_default_juggle.mp4`` (``../shared/data/videos``) and
``03_chelsea.mp4`` (``gallery/``), which no training clip uses; their mattes come from a
different seed stream as well.

The coarse matte (:func:`simulate_coarse`) follows SAM 2's path: the truth resized to the
model's square input (aspect ignored, as its frame loader), averaged onto the mask decoder's
output grid (a quarter of the input: 256x256 for 1024 px), turned into logits, stretched
bilinearly to the video (``align_corners=False``, as ``_get_orig_video_res_output``) and put
through a sigmoid (as the session). The logits are ``LOGIT_SCALE * (2p - 1)`` for a cell's
coverage ``p``: SAM 2 is trained on binary masks (focal and dice losses), so its decoder makes
a decision per cell, near zero where a cell is half covered and saturating a few units either
side. With 8, a cell 89 % covered is opaque in 8 bits (and 11 % transparent), an edge goes
from 0.02 to 0.98 within about half a cell, and a lone strand covering under a third of a cell
vanishes: the loss of fine structure the full-resolution refiner has to undo. This is the best
SAM 2 could do at its resolution (no tracking error), so it isolates the resolution gap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from PIL import Image

from sam2_matting.metrics.truth_shapes import KINDS, base_matte, blur_steps, clip_motion
from sam2_matting.training.layout import DataError

__all__ = [
    "DEFAULT_COUNTS",
    "LOGIT_SCALE",
    "SPLITS",
    "SPLIT_SOURCES",
    "TruthClip",
    "default_source_dirs",
    "resharpen",
    "simulate_coarse",
    "truth_clips",
]

SPLITS = ("train", "heldout")
SPLIT_SOURCES = {
    "train": (
        "01_dog.mp4", "02_cups.mp4", "03_blocks.mp4", "bedroom.mp4",
        "01_astronaut.mp4", "02_horse.mp4",
    ),
    "heldout": ("04_coffee.mp4", "05_default_juggle.mp4", "03_chelsea.mp4"),
}  # fmt: skip
DEFAULT_COUNTS = {"train": 24, "heldout": 6}
_SPLIT_IDS = {"train": 1, "heldout": 2}
LOGIT_SCALE = 8.0
STATIC_NOISE = 1.5  # levels (8-bit) of sensor noise on a held background, per frame
MAX_START = 60  # the first frame of a clip's background is drawn from 0..MAX_START-1

_REPO = Path(__file__).resolve().parents[2]


@dataclass
class TruthClip:
    """One known-truth clip (arrays described in the module docstring)."""

    name: str
    split: str  # "train" or "heldout"
    frames: np.ndarray  # uint8 (T, H, W, 3)
    alpha: np.ndarray  # float32 (T, H, W) in [0, 1]
    fg: np.ndarray  # uint8 (T, H, W, 3)
    bg: np.ndarray  # uint8 (T, H, W, 3)
    coarse: np.ndarray  # float32 (T, H, W) in [0, 1]
    kind: str = ""  # one of truth_shapes.KINDS
    image_bg: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.uint8))
    sources: dict[str, str] = field(default_factory=dict)  # role -> video file name


def default_source_dirs() -> list[Path]:
    """Where the footage is looked for: the shared videos next to the checkout, the gallery."""
    return [_REPO.parent / "shared" / "data" / "videos", _REPO / "gallery"]


def _find(name: str, dirs: Sequence[Path]) -> Path:
    for folder in dirs:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"known-truth footage {name} not found in {', '.join(map(str, dirs))}")


def _read(path: Path, start: int, count: int, size: tuple[int, int]) -> np.ndarray:
    """``count`` frames from ``start`` as uint8 (count, H, W, 3); a short video repeats its
    last frame."""
    out = np.empty((count, size[0], size[1], 3), np.uint8)
    got = 0
    last = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i < start:
                continue
            last = frame.reformat(width=size[1], height=size[0], format="rgb24").to_ndarray()
            out[got] = last
            got += 1
            if got == count:
                break
    if last is None:
        raise DataError(f"{path} has fewer than {start + 1} frames")
    out[got:] = last
    return out


def _warp(image: Image.Image, size: tuple[int, int], affine: np.ndarray) -> Image.Image:
    return image.transform(
        (size[1], size[0]), Image.Transform.AFFINE, tuple(affine), Image.Resampling.BILINEAR
    )


def _shifted_mean(array: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Mean of ``array`` (H, W, C) shifted by each (dx, dy), zeros shifted in."""
    if offsets == [(0, 0)]:
        return array
    h, w = array.shape[:2]
    acc = np.zeros_like(array)
    for dx, dy in offsets:
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        acc[yd, xd] += array[ys, xs]
    acc *= np.float32(1.0 / len(offsets))
    return acc


def _compose(
    matte: np.ndarray, texture: np.ndarray, background: np.ndarray, motion_affine: np.ndarray,
    velocity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """One frame: (alpha float32, F uint8, I uint8) of the moved, motion-blurred matte."""
    size = matte.shape
    a = np.asarray(_warp(Image.fromarray(matte, mode="F"), size, motion_affine), np.float32)
    f = np.asarray(_warp(Image.fromarray(texture), size, motion_affine), np.float32)
    offsets = blur_steps(velocity)
    pad = max(max(abs(dx), abs(dy)) for dx, dy in offsets)
    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    alpha = np.zeros(size, np.float32)
    fg = f.copy()
    if rows.size:
        box = (slice(max(0, rows[0] - pad), rows[-1] + 1 + pad),
               slice(max(0, cols[0] - pad), cols[-1] + 1 + pad))  # fmt: skip
        ab = a[box]
        stack = np.concatenate((ab[..., None], ab[..., None] * f[box]), axis=2)
        mean = _shifted_mean(stack, offsets)
        a_mean = np.clip(mean[..., 0], 0.0, 1.0)
        alpha[box] = a_mean
        where = a_mean > 1e-6
        fg_box = fg[box]
        fg_box[where] = mean[..., 1:][where] / a_mean[where][:, None]
    fg8 = np.clip(np.rint(fg), 0, 255).astype(np.uint8)
    a3 = alpha[..., None]
    image = a3 * fg8 + (1.0 - a3) * background
    return alpha, fg8, np.clip(np.rint(image), 0, 255).astype(np.uint8)


def simulate_coarse(alpha: np.ndarray, image_size: int = 1024) -> np.ndarray:
    """``alpha`` (H, W) or (T, H, W) in [0, 1] as SAM 2's output reaches a session (module
    docstring): float32 of the same shape."""
    import torch
    import torch.nn.functional as nnf

    a = np.asarray(alpha, np.float32)
    squeeze = a.ndim == 2
    stack = a[None] if squeeze else a
    if stack.ndim != 3:
        raise ValueError(f"alpha must be (H, W) or (T, H, W), got {a.shape}")
    grid = image_size // 4
    h, w = stack.shape[1:]
    out = np.empty(stack.shape, np.float32)
    with torch.no_grad():
        for t in range(stack.shape[0]):  # one frame at a time: memory stays one frame's
            x = torch.from_numpy(np.ascontiguousarray(stack[t]))[None, None]
            x = nnf.interpolate(x, size=(image_size, image_size), mode="bicubic", antialias=True)
            low = nnf.interpolate(x.clamp_(0.0, 1.0), size=(grid, grid), mode="area")
            logits = (low * 2.0 - 1.0) * LOGIT_SCALE
            up = nnf.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            out[t] = torch.sigmoid(up)[0, 0].numpy()
    return out[0] if squeeze else out


def _held_still(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The first frame of ``background`` (T, H, W, 3) held for all T, with fresh sensor noise
    (Gaussian, :data:`STATIC_NOISE` levels) in each frame: the tripod case."""
    noise = rng.normal(0.0, STATIC_NOISE, background.shape).astype(np.float32)
    held = background[:1].astype(np.float32) + noise
    return np.clip(np.rint(held), 0, 255).astype(np.uint8)


def resharpen(coarse: np.ndarray, sharpness: float) -> np.ndarray:
    """A coarse matte (sigmoid of logits) with its logits scaled by ``sharpness``: SAM 2's
    logits are steeper or flatter from clip to clip, which one fixed :data:`LOGIT_SCALE` does
    not show. ``sharpness`` 1 returns the matte as it is."""
    c = np.asarray(coarse, np.float32)
    if sharpness == 1.0:
        return c
    eps = np.float32(1e-7)
    p = np.clip(c, eps, 1 - eps)
    logits = np.log(p) - np.log1p(-p)
    return (1.0 / (1.0 + np.exp(-sharpness * logits))).astype(np.float32)


def _clip(
    split: str,
    index: int,
    size: tuple[int, int],
    frames: int,
    seed: int,
    dirs: Sequence[Path],
    static: bool = False,
) -> TruthClip:
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    names = SPLIT_SOURCES[split]
    fg_name, bg_name, image_name = (names[i] for i in rng.choice(len(names), 3, replace=False))
    kind = KINDS[index % len(KINDS)]
    texture = _read(_find(fg_name, dirs), int(rng.integers(0, MAX_START)), 1, size)[0]
    if rng.random() < 0.5:
        texture = np.ascontiguousarray(texture[:, ::-1])
    background = _read(_find(bg_name, dirs), int(rng.integers(0, MAX_START)), frames, size)
    image_bg = _read(_find(image_name, dirs), int(rng.integers(0, MAX_START)), 1, size)[0]
    if static:  # its own noise stream: the draws below, and so the matte, are the moving clip's
        background = _held_still(
            background, np.random.default_rng([seed, _SPLIT_IDS[split], index, 1])
        )
    matte, texture = base_matte(size, kind, rng, texture)
    motion = clip_motion(size, kind, frames, rng)
    alpha = np.empty((frames, *size), np.float32)
    fg = np.empty((frames, *size, 3), np.uint8)
    image = np.empty_like(fg)
    for t in range(frames):
        alpha[t], fg[t], image[t] = _compose(
            matte, texture, background[t], motion.affine[t], motion.velocity[t]
        )
    return TruthClip(
        name=f"{split}-{index:02d}-{kind}" + ("-static" if static else ""),
        split=split,
        frames=image,
        alpha=alpha,
        fg=fg,
        bg=background,
        coarse=simulate_coarse(alpha),
        kind=kind,
        image_bg=image_bg,
        sources={"fg": fg_name, "bg": bg_name, "image_bg": image_name},
    )


def truth_clips(
    split: str,
    size: tuple[int, int] = (720, 1280),
    frames: int = 8,
    seed: int = 0,
    count: int | None = None,
    sources: Sequence[str | Path] | None = None,
    indices: Sequence[int] | None = None,
    static: bool = False,
) -> Iterator[TruthClip]:
    """``count`` clips of ``split`` (default :data:`DEFAULT_COUNTS`), built one at a time;
    ``indices`` picks which clips instead (e.g. every other one at each of two sizes).

    ``sources``: folders holding the videos of :data:`SPLIT_SOURCES` (default
    :func:`default_source_dirs`). Clip ``i`` depends only on (``seed``, ``split``, ``i``,
    ``size``, ``frames``). Kinds cycle through ``hair``, ``motion``, ``sheer``. ``static``: the
    same clips (matte, foreground, motion) over a still background, one frame of the moving
    clip's background held with fresh sensor noise each frame (a camera on a tripod); names
    end in ``-static``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    h, w = (int(v) for v in size)
    if h < 16 or w < 16 or frames < 1:
        raise ValueError(f"size must be at least 16x16 and frames at least 1, got {size}, {frames}")
    dirs = [Path(s) for s in sources] if sources is not None else default_source_dirs()
    total = DEFAULT_COUNTS[split] if count is None else count
    for index in range(total) if indices is None else indices:
        yield _clip(split, int(index), (h, w), frames, seed, dirs, static)


def soft_fraction(alpha: np.ndarray, low: float = 1 / 255, high: float = 254 / 255) -> float:
    """Share of pixels with ``low <= alpha <= high`` (the semi-transparent ones)."""
    return float(((alpha >= low) & (alpha <= high)).mean())


def grid_cell(size: tuple[int, int], image_size: int = 1024) -> tuple[float, float]:
    """Pixels of the video per cell of SAM 2's output grid: (rows, columns)."""
    grid = image_size / 4
    return size[0] / grid, size[1] / grid
