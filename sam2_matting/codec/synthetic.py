"""Synthetic alpha mattes for tests and benchmarks (deterministic for a given seed).

Call ``soft_matte(1080, 1920, seed=0)`` for a realistic matte: a person-sized silhouette whose
body edge is a few pixels of soft ramp with a fractal wobble, and whose head carries a broad,
hair-like band of thin semi-transparent strands; everything else is exactly 0 or 255.
``noise_matte(h, w, seed)`` is the worst case (uniform random bytes).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = ["noise_matte", "soft_matte"]


def _fractal_2d(
    rng: np.random.Generator, height: int, width: int, scales: tuple[int, ...]
) -> NDArray[np.float64]:
    """Sum of smooth random fields, one per scale (cell size in pixels), amplitude ∝ scale."""
    out = np.zeros((height, width))
    for scale in scales:
        gh, gw = height // scale + 2, width // scale + 2
        grid = rng.standard_normal((gh, gw))
        field = ndimage.zoom(grid, (height / (gh - 1), width / (gw - 1)), order=1)
        out += field[:height, :width] * (scale / max(scales))
    return out


def _periodic_1d(
    rng: np.random.Generator, n: int, theta: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Smooth periodic noise of ``n`` cells sampled at angles ``theta`` (radians)."""
    knots = rng.standard_normal(n + 1)
    knots[-1] = knots[0]
    pos = (theta % (2 * np.pi)) / (2 * np.pi) * n
    return np.interp(pos, np.arange(n + 1), knots)


def soft_matte(height: int, width: int, seed: int = 0) -> NDArray[np.uint8]:
    """A realistic soft matte: person silhouette, soft body edge, hair-like fractal head band."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    unit = min(h, w / 0.8)  # person height scale in pixels
    cx = w * 0.5
    head_cy, head_r = h * 0.22, unit * 0.11
    head = (xx - cx) ** 2 / 0.8 + (yy - head_cy) ** 2 <= head_r**2
    torso_top = head_cy + head_r * 0.9
    half = unit * (0.07 + 0.12 * np.clip((yy - torso_top) / (unit * 0.12), 0, 1))
    torso = (yy >= torso_top) & (np.abs(xx - cx) <= half)
    arm = (yy >= torso_top + unit * 0.08) & (np.abs(np.abs(xx - cx) - unit * 0.235) <= unit * 0.035)
    body = head | torso | arm
    # Signed distance (positive outside), wobbled by fractal noise of a few pixels.
    sd = ndimage.distance_transform_edt(~body) - ndimage.distance_transform_edt(body)
    wobble = _fractal_2d(rng, h, w, (max(4, h // 8), max(2, h // 40), max(1, h // 200)))
    sd = sd + wobble * unit * 0.006
    edge = max(1.0, unit * 0.0015)
    alpha = np.clip(0.5 - sd / edge, 0.0, 1.0)
    # Hair: thin strands radiating from the head, of varying length and density.
    theta = np.arctan2(yy - head_cy, xx - cx)
    dist = np.hypot((xx - cx) / np.sqrt(0.8), yy - head_cy) - head_r
    upper = np.clip((head_cy + head_r * 0.4 - yy) / (head_r * 0.6), 0.0, 1.0)
    wave = theta + 0.03 * np.sin(dist / max(1.0, unit * 0.02))
    strands = sum(_periodic_1d(rng, n, wave) for n in (int(unit * 2.5), int(unit * 1.2), 64))
    density = np.clip(strands / 2.0, 0.0, 1.0) ** 0.7
    length = unit * 0.06 * (0.4 + np.clip(0.5 + 0.4 * _periodic_1d(rng, 48, theta), 0.0, 1.0))
    falloff = np.clip(1.0 - np.maximum(dist, 0.0) / length, 0.0, 1.0)
    hair = np.where(dist > 0, density * falloff * upper, 0.0)
    alpha = np.maximum(alpha, hair)
    alpha = ndimage.gaussian_filter(alpha, sigma=max(0.6, unit * 0.0008))
    # Snap the fully opaque / transparent areas exactly (blur leaves 0.9999… and 1e-9 tails).
    return np.asarray(np.clip(np.rint(alpha * 255.0), 0, 255), dtype=np.uint8)


def noise_matte(height: int, width: int, seed: int = 0) -> NDArray[np.uint8]:
    """Worst case: independent uniform random bytes."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)
