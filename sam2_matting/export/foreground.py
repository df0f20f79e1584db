"""Foreground colour estimation: the object's own colour where the matte is semi-transparent.

    from sam2_matting.export.foreground import estimate_foreground, parse_foreground

    fgr = estimate_foreground(rgb, alpha)      # (H, W, 3) uint8; rgb except where 0 < alpha < 255
    parse_foreground("estimate")               # "estimate"; InvalidInputError for anything else
    # "temporal": sam2_matting.export.background_plate (needs the frames around)

A semi-transparent pixel of the source is a mix ``I = αF + (1 - α)B`` of the object's colour
``F`` and the old background ``B``. Using ``I`` itself as the colour (``foreground="source"``)
brings a share of the old background into every composite: halos and colour spill along hair
and soft edges. ``"estimate"`` solves for ``F`` (and ``B``) from the frame and the matte with
multilevel foreground estimation (Germer, Uelwer, Conrad, Harmeling: "Fast Multi-Level
Foreground Estimation", ICPR 2020), which minimises

    Σ_i |α_i F_i + (1 - α_i) B_i - I_i|²
      + Σ_i Σ_{j ∈ N(i)} (ε + γ |α_i - α_j|) (|F_i - F_j|² + |B_i - B_j|²)

over a pyramid from 1×1 up to the full size (4-neighbourhood, each level started from the one
below, a few sweeps per level). This is our own NumPy implementation, written from the paper:
no JIT, no compilation at start-up, so the first frame costs what every frame costs.

``"temporal"`` is the same solve with the background under the soft pixels taken from the
frames around where they show it and agree with this frame, B held fixed there
(:mod:`~sam2_matting.export.background_plate`; the writers keep a window of 13 frames for it).
It is not the default: on the known-truth clips it lowers the composite error by 31-34 % with
the true matte over a still background and by 6 % over moving footage, but by only 0.5-2.5 %
with SAM 2's coarse matte, is not lower on every figure (within +0.3 %), and costs about three
times the single-frame estimate per frame (``docs/benchmarks.md``,
``benchmarks/bench_temporal_background.py``). Ask for it for footage from a still camera.

Only pixels with ``0 < α < 255`` change; every other pixel is the source pixel. The work is
restricted to them: the frame is cropped to the box around the soft pixels (plus
:data:`MARGIN`), and at the levels of the pyramid larger than :data:`DENSE_PIXELS` only the soft
pixels and a ring of :data:`RING` pixels around them are updated (opaque pixels hold ``F = I``,
transparent ones ``B = I``; updating every pixel gives the same result to three digits). A frame
without soft pixels costs one scan of the matte. ``pymatting.estimate_foreground_ml`` is the
same method compiled with numba; it was measured and not taken: its first import compiled for
66 s here, and it works on the whole frame (3-4x our CPU time per frame). Figures (error against a
known foreground, time per frame at 720p and 1080p) are in ``docs/benchmarks.md``
(``benchmarks/bench_foreground.py``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from sam2_matting.errors import InvalidInputError

__all__ = [
    "DEFAULT_FOREGROUND",
    "FOREGROUND_MODES",
    "estimate_foreground",
    "foreground_colour",
    "parse_foreground",
]

FOREGROUND_MODES = ("source", "estimate", "temporal")
# chosen by benchmarks/bench_foreground.py (docs/benchmarks.md): on the known-truth clips, lower
# composite error on 22 of 24 rows (true and coarse mattes, 720p and 1080p), at 0.56-0.77x the
# ProRes writer's per-frame cost. Not "temporal": see the module docstring and
# benchmarks/bench_temporal_background.py.
DEFAULT_FOREGROUND = "estimate"

MARGIN = 32  # pixels of context kept around the soft pixels' box
RING = 2  # pixels around the soft ones updated at the fine levels
EPSILON = 1e-5  # ε: smoothness everywhere
GAMMA = 1.0  # γ: smoothness across alpha edges
SMALL_SIZE = 32  # levels with a side up to this get SMALL_ITERATIONS sweeps
SMALL_ITERATIONS = 10
MID_ITERATIONS = 6  # sweeps of the levels between those and the full size
ITERATIONS = 2  # sweeps at the full size
DENSE_PIXELS = 128 * 128  # levels up to this size are updated everywhere


def parse_foreground(value: object) -> str:
    """``value`` as one of :data:`FOREGROUND_MODES` (case-insensitive, None is the default)."""
    if value is None:
        return DEFAULT_FOREGROUND
    text = str(value).strip().lower()
    if text not in FOREGROUND_MODES:
        raise InvalidInputError(
            f"foreground must be one of {', '.join(FOREGROUND_MODES)}, got {str(value)[:40]!r}"
        )
    return text


def foreground_colour(rgb: np.ndarray, alpha: np.ndarray, mode: str) -> np.ndarray:
    """The colour an export writes for ``mode`` from this one frame: ``rgb`` itself, or its
    estimate. ``"temporal"`` needs the frames around this one
    (:class:`~sam2_matting.export.background_plate.TemporalForeground`); from one frame alone
    it is the single-frame estimate."""
    return rgb if mode == "source" else estimate_foreground(rgb, alpha)


def estimate_foreground(
    rgb: np.ndarray,
    alpha: np.ndarray,
    *,
    iterations: int = ITERATIONS,
    epsilon: float = EPSILON,
    gamma: float = GAMMA,
    background: np.ndarray | None = None,
    known: np.ndarray | None = None,
) -> np.ndarray:
    """The foreground colour of ``rgb`` (H, W, 3) uint8 under ``alpha`` (H, W) uint8.

    Returns a new (H, W, 3) uint8 array equal to ``rgb`` except where ``0 < alpha < 255``,
    where it holds the estimated ``F`` (rounded, within 0-255); ``rgb`` itself when no pixel
    is soft. ``iterations``, ``epsilon``, ``gamma``: sweeps at the full size and the two
    smoothness weights (ε, γ) of the cost above. ``background`` (H, W, 3) uint8 with
    ``known`` (H, W) bool: a background colour known from elsewhere (e.g. other frames, see
    :mod:`~sam2_matting.export.background_plate`); at the ``known`` pixels B is held at it at
    every level and only F is solved for (the cost above with B fixed), elsewhere both are.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidInputError(f"rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if alpha.dtype != np.uint8 or alpha.shape != rgb.shape[:2]:
        raise InvalidInputError(
            f"alpha must be uint8 {rgb.shape[:2]}, got {alpha.dtype} {alpha.shape}"
        )
    soft = (alpha > 0) & (alpha < 255)
    rows = np.flatnonzero(soft.any(axis=1))
    if rows.size == 0:
        return rgb
    cols = np.flatnonzero(soft[rows[0] : rows[-1] + 1].any(axis=0))
    height, width = alpha.shape
    top, bottom = max(0, rows[0] - MARGIN), min(height, rows[-1] + 1 + MARGIN)
    left, right = max(0, cols[0] - MARGIN), min(width, cols[-1] + 1 + MARGIN)
    box = (slice(top, bottom), slice(left, right))
    image = rgb[box].astype(np.float32) * np.float32(1 / 255)
    fixed = None
    if background is not None and known is not None and known[box].any():
        fixed = (background[box].astype(np.float32) * np.float32(1 / 255), known[box])
    fg = _multilevel(
        image,
        alpha[box].astype(np.float32) * np.float32(1 / 255),
        iterations,
        epsilon,
        gamma,
        fixed,
    )
    out = rgb.copy()
    crop = out[box]
    inner = soft[box]
    crop[inner] = np.clip(fg[inner] * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _multilevel(
    image: np.ndarray,
    alpha: np.ndarray,
    iterations: int,
    epsilon: float,
    gamma: float,
    fixed: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """F (h, w, 3) float32 for ``image`` (h, w, 3) and ``alpha`` (h, w), both in [0, 1];
    ``fixed``: (B (h, w, 3) in [0, 1], where it is known (h, w) bool) or None."""
    height, width = alpha.shape
    levels = max(1, math.ceil(math.log2(max(height, width))))
    mean = image.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
    fb = np.concatenate((mean, mean))[None, None, :]  # F and B side by side: (h, w, 6)
    for level in range(levels + 1):
        h = max(1, round(height ** (level / levels)))
        w = max(1, round(width ** (level / levels)))
        ys = _nearest(h, height)
        xs = _nearest(w, width)
        img = image if level == levels else _resize(image, ys, xs)
        a = alpha if level == levels else _resize(alpha, ys, xs)
        fb = _resize(fb, _nearest(h, fb.shape[0]), _nearest(w, fb.shape[1]))
        known = None
        if fixed is not None:
            known = fixed[1] if level == levels else _resize(fixed[1], ys, xs)
            b = fixed[0] if level == levels else _resize(fixed[0], ys, xs)
            np.copyto(fb[..., 3:], b, where=known[..., None])
        sweeps = (
            iterations
            if level == levels
            else SMALL_ITERATIONS
            if min(h, w) <= SMALL_SIZE
            else MID_ITERATIONS
        )
        if h * w <= DENSE_PIXELS:
            active = np.ones((h, w), bool)
        else:  # opaque pixels hold F = I, transparent ones B = I; the others are solved for
            opaque, clear = a >= 1.0, a <= 0.0
            np.copyto(fb[..., :3], img, where=opaque[..., None])
            np.copyto(fb[..., 3:], img, where=clear[..., None])
            active = ndimage.binary_dilation(~(opaque | clear), iterations=RING)
        _sweep(fb, img, a, active, sweeps, epsilon, gamma, known)
    return fb[..., :3]


def _resize(array: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``array`` sampled at rows ``ys`` and columns ``xs`` (nearest neighbour)."""
    return np.take(np.take(array, ys, axis=0), xs, axis=1)


def _nearest(size: int, source: int) -> np.ndarray:
    """Indices of the nearest source sample for each of ``size`` samples over ``source``."""
    return np.minimum(((np.arange(size) + 0.5) * (source / size)).astype(np.intp), source - 1)


def _sweep(
    fb: np.ndarray,
    image: np.ndarray,
    alpha: np.ndarray,
    active: np.ndarray,
    sweeps: int,
    epsilon: float,
    gamma: float,
    known: np.ndarray | None = None,
) -> None:
    """``sweeps`` red-black Gauss-Seidel sweeps over the ``active`` pixels of ``fb``, in place.

    Per pixel, with neighbour weights ``w_j = ε + γ|α - α_j|`` and ``W = Σ w_j``, the cost's
    minimum over (F, B) with the neighbours held solves the 2x2 system
    ``[[α² + W, α(1-α)], [α(1-α), (1-α)² + W]] [F, B] = [αI + Σ w_j F_j, (1-α)I + Σ w_j B_j]``.
    Where ``known`` (h, w) bool is set, B stays as ``fb`` holds it and only F moves:
    ``F = (α(I - (1-α)B) + Σ w_j F_j) / (α² + W)``.
    """
    h, w = alpha.shape
    ys, xs = np.nonzero(active)
    flat = fb.reshape(-1, 6)
    flat_i, flat_a = image.reshape(-1, 3), alpha.reshape(-1)
    groups = []
    for parity in (0, 1):
        pick = ((ys + xs) & 1) == parity
        y, x = ys[pick], xs[pick]
        index = y * w + x
        # neighbours up, down, left, right; one outside the frame is the pixel itself
        # (a damping term, which keeps the 2x2 systems of the 1-pixel levels regular)
        nbrs = np.stack(
            (
                np.where(y > 0, index - w, index),
                np.where(y < h - 1, index + w, index),
                np.where(x > 0, index - 1, index),
                np.where(x < w - 1, index + 1, index),
            )
        )  # (4, K)
        a = flat_a[index]
        weight = np.float32(epsilon) + np.float32(gamma) * np.abs(a - flat_a[nbrs])
        total = weight.sum(axis=0)
        a1 = 1 - a
        det = total * (a * a + a1 * a1 + total)  # the system's determinant, without cancelling
        pixel = flat_i[index]
        rhs0 = np.concatenate((a[:, None] * pixel, a1[:, None] * pixel), axis=1)
        d_ff, d_bb, d_fb = (a * a + total) / det, (a1 * a1 + total) / det, a * a1 / det
        offset = None
        if known is not None and known.reshape(-1)[index].any():
            # B known: F = (r_F - α(1-α)B) / (α² + W) and B stays, as coefficients of the
            # same update plus a constant per pixel (no indexing inside the sweeps)
            k = known.reshape(-1)[index]
            b = flat[index[k], 3:]
            ak = a[k]
            d_bb[k] = 1 / (ak * ak + total[k])
            d_fb[k] = 0
            d_ff[k] = 0
            offset = np.zeros((index.size, 6), np.float32)
            offset[k, :3] = -(ak * (1 - ak) * d_bb[k])[:, None] * b
            offset[k, 3:] = b
        groups.append(
            (index, nbrs, weight[..., None], d_ff[:, None], d_bb[:, None], d_fb[:, None], rhs0,
             offset)
        )  # fmt: skip
    for _ in range(sweeps):
        for index, nbrs, weight, d_ff, d_bb, d_fb, rhs0, offset in groups:
            near = np.take(flat, nbrs, axis=0)  # (4, K, 6)
            near *= weight
            rhs = near.sum(axis=0)
            rhs += rhs0
            r_f, r_b = rhs[:, :3], rhs[:, 3:]
            out = np.empty_like(rhs)
            np.subtract(d_bb * r_f, d_fb * r_b, out=out[:, :3])
            np.subtract(d_ff * r_b, d_fb * r_f, out=out[:, 3:])
            if offset is not None:
                out += offset
            np.clip(out, 0, 1, out=out)
            flat[index] = out
