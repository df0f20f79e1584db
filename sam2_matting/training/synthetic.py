"""Synthetic matting clips: soft shapes with hair-like strands moving over real video frames.

    import numpy as np
    from sam2_matting.training.synthetic import synthetic_foreground, synthetic_clip
    rng = np.random.default_rng(0)
    fgr, alpha = synthetic_foreground(288, 512, rng)         # uint8 (H, W, 3), float32 (H, W)
    frames, alphas = synthetic_clip(background_frames, rng)  # background_frames: (T, H, W, 3)

The foreground is a union of 2-4 rotated ellipses whose edge ramps from 0 to 1 over a few
pixels (like a defocused or motion-blurred edge), with 20-80 thin curved strands growing out
of its boundary. Strands are drawn 4x supersampled with a sub-pixel width and box-filtered
down, so they carry the partial alpha values of hair. Its colour is a smooth random field with
fine noise. Over the clip the foreground moves (shift, zoom, rotation) in front of
consecutive frames of a real video, which gives the background its own motion. This lets
training and evaluation run with no download; numbers measured on it are not results.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from sam2_matting.training.augment import Augment, composite, sample_motion, warp

SUPERSAMPLE = 4
SYNTHETIC_MOTION = Augment(motion_prob=1.0, motion_shift=0.2, motion_zoom=0.15, motion_rotate=10.0)


def _ellipse_field(h: int, w: int, rng: np.random.Generator, softness: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    side = min(h, w)
    cx = rng.uniform(0.35, 0.65) * w
    cy = rng.uniform(0.35, 0.65) * h
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 5))):
        ex = cx + rng.uniform(-0.12, 0.12) * side
        ey = cy + rng.uniform(-0.12, 0.12) * side
        a = rng.uniform(0.12, 0.3) * side
        b = rng.uniform(0.12, 0.3) * side
        th = rng.uniform(0, math.pi)
        dx, dy = xs - ex, ys - ey
        u = (dx * math.cos(th) + dy * math.sin(th)) / a
        v = (-dx * math.sin(th) + dy * math.cos(th)) / b
        # (1 - r) * min(a, b) approximates the signed distance (pixels) to the ellipse edge.
        dist = (1.0 - np.sqrt(u * u + v * v)) * min(a, b)
        alpha = np.maximum(alpha, np.clip(0.5 + dist / softness, 0.0, 1.0))
    return alpha


def _strands(core: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """Thin curves from the edge of ``core`` outwards, as a float alpha (H, W)."""
    h, w = core.shape
    edge_y, edge_x = np.nonzero((core > 0.4) & (core < 0.6))
    if len(edge_x) == 0:
        return np.zeros_like(core)
    gy, gx = np.gradient(core)
    canvas = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    side = min(h, w)
    for i in rng.choice(len(edge_x), size=min(count, len(edge_x)), replace=False):
        x, y = float(edge_x[i]), float(edge_y[i])
        # Outward is down the gradient of the core alpha.
        direction = math.atan2(-gy[edge_y[i], edge_x[i]], -gx[edge_y[i], edge_x[i]])
        direction += rng.normal(0, 0.4)
        length = rng.uniform(0.05, 0.2) * side
        bend = rng.normal(0, 0.8)
        opacity = int(rng.uniform(0.5, 1.0) * 255)
        pts = []
        steps = 12
        for k in range(steps + 1):
            s = k / steps
            a = direction + bend * s
            pts.append(
                (
                    (x + math.cos(a) * length * s) * SUPERSAMPLE,
                    (y + math.sin(a) * length * s) * SUPERSAMPLE,
                )
            )
        # Start a little inside the shape so the strand joins it without a gap.
        draw.line(pts, fill=opacity, width=int(rng.integers(1, 3)))
    small = canvas.reduce(SUPERSAMPLE)
    return np.asarray(small, dtype=np.float32) / 255.0


def _colour_field(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    grid = rng.uniform(0, 255, (3, 4, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    noise = rng.normal(0, 12, (h, w, 3)).astype(np.float32)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def synthetic_foreground(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random foreground: colour (H, W, 3) uint8 and alpha (H, W) float32 in [0, 1]."""
    softness = float(rng.uniform(1.0, 4.0))
    core = _ellipse_field(h, w, rng, softness)
    hair = _strands(core, rng, int(rng.integers(20, 81)))
    alpha = np.maximum(core, hair).astype(np.float32)
    colour = _colour_field(h, w, rng)
    # Strands get their own (hair) colour where they extend past the core.
    hair_colour = rng.uniform(0, 255, 3).astype(np.float32)
    mix = np.clip(hair - core, 0, 1)[..., None]
    colour = (colour * (1 - mix) + hair_colour * mix).astype(np.uint8)
    return colour, alpha


def synthetic_clip(
    backgrounds: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Composite a moving synthetic foreground over ``backgrounds`` (T, H, W, 3) uint8.

    Returns frames (T, H, W, 3) uint8 and alphas (T, H, W) float32.
    """
    t, h, w = backgrounds.shape[:3]
    colour, alpha = synthetic_foreground(h, w, rng)
    moves = sample_motion(t, (w, h), SYNTHETIC_MOTION, rng, force=True)
    frames = np.empty_like(backgrounds)
    alphas = np.empty((t, h, w), np.float32)
    bg = backgrounds.astype(np.float32) / 255.0
    for i in range(t):
        m = moves[i] if moves is not None else np.eye(3)
        a = np.clip(warp(alpha, m), 0.0, 1.0)
        f = warp(colour, m).astype(np.float32) / 255.0
        frames[i] = composite(f, a, bg[i])
        alphas[i] = a
    return frames, alphas
