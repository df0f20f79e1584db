"""Ground-truth mattes with the structures matting is about, and their motion.

    from sam2_matting.metrics.truth_shapes import KINDS, base_matte, clip_motion, blur_steps
    alpha, colour = base_matte((720, 1280), "hair", rng, texture)   # float32, uint8
    motion = clip_motion((720, 1280), "motion", frames=8, rng=rng)

A matte is drawn once per clip at the full size, in a canonical pose, and moved per frame by an
affine transform (:class:`Motion`). Its parts:

- a **body**: a union of 2-4 ellipses with a 1-2.5 px soft edge;
- **thin gaps**: 1-3 slits 1-4 px wide cut through the body (an arm held close to the side,
  fingers), alpha 0 inside;
- **hair-like strands**: curves from the body's edge outwards, 0.5-2 px wide, opacity
  0.35-1, drawn 4x supersampled (a strand narrower than a pixel is a partial alpha), each of
  one colour (its root's);
- a **semi-transparent region**: a sheer veil (alpha 0.2-0.65, varying smoothly) attached to
  the body, its own soft edge, of a smooth colour;
- **motion-blurred edges**: made per frame by :mod:`sam2_matting.metrics.known_truth`, the
  average of the moving matte over the shutter (``blur_steps``).

The kind of clip sets the proportions: ``hair`` (many strands, slow motion), ``motion`` (fast
motion, so long blurs), ``sheer`` (a large veil, more gaps). Every draw comes from ``rng``, so a
matte is a function of the seed alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["KINDS", "Motion", "base_matte", "blur_steps", "clip_motion"]

KINDS = ("hair", "motion", "sheer")
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Motion:
    """Per-frame pose of a clip's matte: ``affine[t]`` maps output (x, y, 1) to the canonical
    pose (PIL's inverse convention), ``velocity[t]`` is the shift (px) during frame t's shutter."""

    affine: np.ndarray  # (T, 6)
    velocity: np.ndarray  # (T, 2): x, y pixels travelled while the shutter is open


def _ellipses(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = size
    yy, xx = np.ogrid[0:h, 0:w]
    side = min(h, w)
    softness = float(rng.uniform(1.0, 2.5))
    alpha = np.zeros((h, w), np.float32)
    cx0, cy0 = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.45, 0.6)
    for i in range(int(rng.integers(2, 5))):
        cx = cx0 + (rng.normal(0, 0.08) * w if i else 0.0)
        cy = cy0 + (rng.normal(0, 0.1) * h if i else 0.0)
        a = side * rng.uniform(0.12, 0.22)
        b = side * rng.uniform(0.15, 0.3)
        theta = rng.uniform(0, math.pi)
        c, s = math.cos(theta), math.sin(theta)
        dx, dy = (xx - cx).astype(np.float32), (yy - cy).astype(np.float32)
        u, v = (dx * c + dy * s) / a, (-dx * s + dy * c) / b
        dist = (1.0 - np.sqrt(u * u + v * v)) * min(a, b)  # ~ signed distance to the edge, px
        np.maximum(alpha, np.clip(0.5 + dist / softness, 0.0, 1.0), out=alpha)
    return alpha


def _canvas(size: tuple[int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (size[1] * SUPERSAMPLE, size[0] * SUPERSAMPLE), 0)
    return canvas, ImageDraw.Draw(canvas)


def _reduce(canvas: Image.Image) -> np.ndarray:
    return np.asarray(canvas.reduce(SUPERSAMPLE), np.float32) / np.float32(255.0)


def _edge_points(body: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points on the body's 0.5 contour and the outward direction there (x, y, dx, dy)."""
    step = 4  # the contour on a coarser lattice is plenty and much faster
    sub = body[::step, ::step]
    ys, xs = np.nonzero((sub > 0.2) & (sub < 0.8))
    if len(xs) == 0:
        ys, xs = np.nonzero(sub > 0.5)
    gy, gx = np.gradient(sub)
    return xs * step, ys * step, -gx[ys, xs], -gy[ys, xs]


def _strands(
    body: np.ndarray, count: int, texture: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, Image.Image, Image.Image]:
    """Strands' alpha (H, W) and their colour: an RGB image and the mask (1x) it covers.

    A strand keeps one colour along its length, the body's colour where it starts (the mean
    of ``texture`` over 7x7 pixels there), as hair has the colour of the hair at its root.
    """
    h, w = body.shape
    x0, y0, dx, dy = _edge_points(body)
    canvas, draw = _canvas((h, w))
    paint = Image.new("RGB", (w, h))
    painted = Image.new("L", (w, h), 0)
    draw_paint, draw_mask = ImageDraw.Draw(paint), ImageDraw.Draw(painted)
    side = min(h, w)
    picks = rng.integers(0, len(x0), size=count)
    for i in picks:
        direction = math.atan2(dy[i], dx[i]) + rng.normal(0, 0.35)
        length = rng.uniform(0.04, 0.16) * side
        bend = rng.normal(0, 0.7)
        width = rng.uniform(0.5, 2.0)
        opacity = int(rng.uniform(0.35, 1.0) * 255)
        # start inside the body so that the strand joins it without a gap
        x, y = x0[i] - 3 * math.cos(direction), y0[i] - 3 * math.sin(direction)
        pts = []
        for k in range(17):
            s = k / 16
            a = direction + bend * s
            pts.append((x + math.cos(a) * length * s, y + math.sin(a) * length * s))
        draw.line(
            [(px * SUPERSAMPLE, py * SUPERSAMPLE) for px, py in pts],
            fill=opacity,
            width=max(1, round(width * SUPERSAMPLE)),
            joint="curve",
        )
        root = texture[max(0, y0[i] - 3) : y0[i] + 4, max(0, x0[i] - 3) : x0[i] + 4]
        colour = tuple(int(v) for v in root.reshape(-1, 3).mean(axis=0))
        draw_paint.line(pts, fill=colour, width=math.ceil(width) + 2)
        draw_mask.line(pts, fill=255, width=math.ceil(width) + 2)
    return _reduce(canvas), paint, painted


def _gaps(body: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """A mask (float, 1 = gap) of thin slits across the body."""
    h, w = body.shape
    ys, xs = np.nonzero(body[::4, ::4] > 0.99)
    canvas, draw = _canvas((h, w))
    if len(xs) == 0:
        return _reduce(canvas)
    side = min(h, w)
    for i in rng.integers(0, len(xs), size=count):
        cx, cy = xs[i] * 4.0, ys[i] * 4.0
        angle = rng.uniform(0, math.pi)
        half = rng.uniform(0.08, 0.2) * side
        width = rng.uniform(1.0, 4.0)
        ex, ey = math.cos(angle) * half, math.sin(angle) * half
        pts = [((cx - ex) * SUPERSAMPLE, (cy - ey) * SUPERSAMPLE),
               ((cx + ex) * SUPERSAMPLE, (cy + ey) * SUPERSAMPLE)]  # fmt: skip
        draw.line(pts, fill=255, width=max(1, round(width * SUPERSAMPLE)))
    return _reduce(canvas)


def _veil(body: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A sheer region next to the body: alpha 0.2-0.65 varying smoothly, soft-edged."""
    h, w = body.shape
    x0, y0, dx, dy = _edge_points(body)
    i = int(rng.integers(0, len(x0)))
    norm = math.hypot(dx[i], dy[i]) or 1.0
    side = min(h, w)
    radius = side * scale * rng.uniform(0.8, 1.2)
    # centred a little outside the body, kept inside the frame
    cx = float(np.clip(x0[i] + dx[i] / norm * radius * 0.6, radius * 1.4, w - radius * 1.4))
    cy = float(np.clip(y0[i] + dy[i] / norm * radius * 0.6, radius, h - radius))
    yy, xx = np.ogrid[0:h, 0:w]
    r = np.sqrt(((xx - cx) / (radius * 1.4)) ** 2 + ((yy - cy) / radius) ** 2)
    shape = np.clip((1.0 - r) * radius / 2.0, 0.0, 1.0).astype(np.float32)  # 2 px edge
    lo, hi = rng.uniform(0.2, 0.35), rng.uniform(0.45, 0.65)
    level = lo + (hi - lo) * (0.5 + 0.5 * np.sin(xx / (side * 0.05) + yy / (side * 0.08)))
    return (shape * level).astype(np.float32)


def base_matte(
    size: tuple[int, int], kind: str, rng: np.random.Generator, texture: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The clip's matte in its canonical pose and its foreground colour (see the module).

    ``texture`` (H, W, 3) uint8 is the body's colour (real footage); strands take their
    root's colour, the veil a smooth colour (``texture`` averaged over 8x5 blocks, then
    interpolated), as a sheer fabric has. Returns alpha float32 (H, W) in [0, 1] and the
    colour uint8 (H, W, 3).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    h, w = size
    body = _ellipses(size, rng)
    gaps = _gaps(body, int(rng.integers(2, 4) if kind == "sheer" else rng.integers(1, 3)), rng)
    count = int(rng.integers(150, 260) if kind == "hair" else 40)
    strands, paint, painted = _strands(body, count, texture, rng)
    veil = _veil(body, 0.16 if kind == "sheer" else 0.07, rng)
    alpha = body * (1.0 - gaps)
    colour = texture.copy()
    small = Image.fromarray(texture).resize((8, 5), Image.Resampling.BOX)
    smooth = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))
    on_veil = veil > alpha
    colour[on_veil] = smooth[on_veil]
    np.maximum(alpha, veil, out=alpha)
    on_strand = (strands > alpha) & (np.asarray(painted) > 0)
    colour[on_strand] = np.asarray(paint)[on_strand]
    np.maximum(alpha, strands, out=alpha)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32), colour


def clip_motion(size: tuple[int, int], kind: str, frames: int, rng: np.random.Generator) -> Motion:
    """A smooth path for ``frames`` frames: drift, sway (rotation) and a slight zoom.

    Speeds are fractions of the width per frame: ``motion`` 1.5-3 %, the others 0.2-0.8 %;
    the shutter stays open for 50-100 % of the frame interval.
    """
    h, w = size
    fast = kind == "motion"
    speed = w * (rng.uniform(0.015, 0.03) if fast else rng.uniform(0.002, 0.008))
    heading = rng.uniform(0, 2 * math.pi)
    vx, vy = speed * math.cos(heading), speed * math.sin(heading) * 0.5
    spin = rng.uniform(-0.01, 0.01)  # radians per frame
    zoom = rng.uniform(-0.004, 0.004)  # per frame
    shutter = rng.uniform(0.5, 1.0)
    start = -0.5 * (frames - 1)  # centred path: the matte stays in view
    affine = np.empty((frames, 6))
    velocity = np.empty((frames, 2))
    cx, cy = w / 2.0, h / 2.0
    for t in range(frames):
        k = start + t
        tx, ty = vx * k, vy * k
        angle, scale = spin * k, 1.0 + zoom * k
        c, s = math.cos(angle) / scale, math.sin(angle) / scale
        # output -> canonical: rotate/scale about the centre, after undoing the shift
        ox, oy = cx + tx, cy + ty
        affine[t] = (c, s, cx - c * ox - s * oy, -s, c, cy + s * ox - c * oy)
        velocity[t] = (vx * shutter, vy * shutter)
    return Motion(affine=affine, velocity=velocity)


def blur_steps(velocity: np.ndarray) -> list[tuple[int, int]]:
    """Integer offsets (dx, dy) sampled evenly along the shutter's path, centred on 0.

    One sample per ~1.5 px travelled, at most 16 (a still frame gives [(0, 0)]).
    """
    length = float(np.hypot(*velocity))
    n = int(min(16, max(1, math.ceil(length / 1.5))))
    if n == 1:
        return [(0, 0)]
    ts = (np.arange(n) + 0.5) / n - 0.5
    return [(round(float(velocity[0] * t)), round(float(velocity[1] * t))) for t in ts]
