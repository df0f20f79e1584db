"""Clip augmentations for matting: crop, flip, colour jitter, foreground motion, compositing.

    from sam2_matting.training.augment import Augment, sample_crop, crop_resize, composite
    aug = Augment()
    crop = sample_crop(src_w, src_h, out_w=512, out_h=288, aug=aug, rng=rng)
    fg = crop_resize(frame, crop, (512, 288))            # uint8 RGB or float32 alpha
    moves = sample_motion(num_frames, (512, 288), aug, rng)
    frames = composite(fgr, alpha, bgr)                  # uint8, fgr*alpha + bgr*(1-alpha)

One set of parameters is drawn per clip (the same crop, flip and colours on every frame), so
the clip stays temporally coherent; the foreground motion is an affine move (shift, zoom,
rotation) growing linearly from frame 0 to the last frame. Alphas are handled as float32
images (Pillow mode ``F``), so resampling keeps their soft values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Augment:
    """Augmentation ranges; a range of (1, 1) or a probability of 0 turns a part off."""

    scale: tuple[float, float] = (0.3, 1.0)  # crop area as a fraction of the source area
    ratio: tuple[float, float] = (0.8, 1.25)  # crop aspect relative to the output aspect
    flip: float = 0.5
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.15
    hue: float = 0.03  # fraction of a full turn
    motion_prob: float = 0.5
    motion_shift: float = 0.1  # fraction of the output size over the clip
    motion_zoom: float = 0.1
    motion_rotate: float = 5.0  # degrees over the clip


@dataclass(frozen=True)
class Crop:
    """A source box (x0, y0, x1, y1) in pixels, and whether to mirror it."""

    box: tuple[float, float, float, float]
    flip: bool


@dataclass(frozen=True)
class Colour:
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0


def sample_crop(
    src_w: int, src_h: int, out_w: int, out_h: int, aug: Augment, rng: np.random.Generator
) -> Crop:
    """A random resized crop with the output's aspect (times ``aug.ratio``)."""
    area = src_w * src_h
    target = out_w / out_h
    flip = bool(rng.random() < aug.flip)
    for _ in range(10):
        frac = rng.uniform(*aug.scale)
        aspect = target * math.exp(rng.uniform(math.log(aug.ratio[0]), math.log(aug.ratio[1])))
        w = math.sqrt(frac * area * aspect)
        h = math.sqrt(frac * area / aspect)
        if w <= src_w and h <= src_h:
            x0 = rng.uniform(0, src_w - w)
            y0 = rng.uniform(0, src_h - h)
            return Crop((x0, y0, x0 + w, y0 + h), flip)
    return center_crop(src_w, src_h, out_w, out_h, flip)


def center_crop(src_w: int, src_h: int, out_w: int, out_h: int, flip: bool = False) -> Crop:
    """The largest centred box with the output's aspect ratio (a "cover" resize)."""
    scale = min(src_w / out_w, src_h / out_h)
    w, h = out_w * scale, out_h * scale
    x0, y0 = (src_w - w) / 2, (src_h - h) / 2
    return Crop((x0, y0, x0 + w, y0 + h), flip)


def _to_image(array: np.ndarray) -> Image.Image:
    if array.dtype == np.uint8:
        return Image.fromarray(array)
    return Image.fromarray(np.ascontiguousarray(array, dtype=np.float32))


def crop_resize(array: np.ndarray, crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """Cut ``crop.box`` out of ``array`` and resize it to ``size`` (w, h), antialiased.

    ``array``: (H, W, 3) uint8 or (H, W) float32. Returns the same kind.
    """
    im = _to_image(array).resize(size, Image.Resampling.BILINEAR, box=crop.box)
    if crop.flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(im)


def sample_motion(
    num_frames: int,
    size: tuple[int, int],
    aug: Augment,
    rng: np.random.Generator,
    force: bool = False,
) -> list[np.ndarray] | None:
    """Per-frame 3x3 matrices moving output pixels of frame 0 to frame t, or None (no motion)."""
    if num_frames < 2 or not (force or rng.random() < aug.motion_prob):
        return None
    w, h = size
    shift = rng.uniform(-aug.motion_shift, aug.motion_shift, 2) * np.array([w, h])
    zoom = rng.uniform(-aug.motion_zoom, aug.motion_zoom)
    angle = math.radians(rng.uniform(-aug.motion_rotate, aug.motion_rotate))
    cx, cy = w / 2.0, h / 2.0
    out: list[np.ndarray] = []
    for t in range(num_frames):
        u = t / (num_frames - 1)
        s, a = 1.0 + zoom * u, angle * u
        c, si = math.cos(a) * s, math.sin(a) * s
        # Move to the centre, rotate and zoom, move back, then shift.
        m = np.array(
            [
                [c, -si, cx - c * cx + si * cy + shift[0] * u],
                [si, c, cy - si * cx - c * cy + shift[1] * u],
                [0.0, 0.0, 1.0],
            ]
        )
        out.append(m)
    return out


def warp(array: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a forward 3x3 affine ``matrix`` (pixels in -> out) to an image; outside is 0."""
    if np.allclose(matrix, np.eye(3)):
        return array
    inv = np.linalg.inv(matrix)
    im = _to_image(array)
    data = tuple(float(v) for v in inv[:2].reshape(-1))
    warped = im.transform(
        im.size, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR, fillcolor=0
    )
    return np.asarray(warped)


def sample_colour(aug: Augment, rng: np.random.Generator) -> Colour:
    def factor(j: float) -> float:
        return float(rng.uniform(1 - j, 1 + j)) if j > 0 else 1.0

    hue = float(rng.uniform(-aug.hue, aug.hue)) if aug.hue > 0 else 0.0
    return Colour(factor(aug.brightness), factor(aug.contrast), factor(aug.saturation), hue)


_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_FROM_YIQ = np.linalg.inv(_TO_YIQ)


def apply_colour(rgb: np.ndarray, colour: Colour) -> np.ndarray:
    """Brightness, contrast, saturation and hue on float RGB in [0, 1] (any leading shape)."""
    x = rgb.astype(np.float32) * colour.brightness
    gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if colour.contrast != 1.0:
        x = (x - gray.mean()) * colour.contrast + gray.mean()
        gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if colour.saturation != 1.0:
        x = gray[..., None] + (x - gray[..., None]) * colour.saturation
    if colour.hue:
        a = 2 * math.pi * colour.hue
        rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
        x = x @ (_FROM_YIQ @ rot @ _TO_YIQ).T.astype(np.float32)
    return np.clip(x, 0.0, 1.0)


def composite(fgr: np.ndarray, alpha: np.ndarray, bgr: np.ndarray) -> np.ndarray:
    """``round(255 * (fgr * alpha + bgr * (1 - alpha)))`` as uint8; fgr/bgr float in [0, 1].

    RVM's test-set scripts truncate (``uint8(...)``); rounding is the unbiased choice and
    differs by less than one level.
    """
    a = alpha[..., None].astype(np.float32)
    out = fgr.astype(np.float32) * a + bgr.astype(np.float32) * (1.0 - a)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def resize_for_model(frame: np.ndarray, image_size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (S, S, 3) uint8 with SAM 2's loader filter (bicubic, no aspect)."""
    size = (image_size, image_size)
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BICUBIC))
