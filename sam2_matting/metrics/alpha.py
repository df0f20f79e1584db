"""Alpha-matte error metrics, per frame, as defined in docs/matting-evaluation.md.

    from sam2_matting.metrics.alpha import mad, mse, grad, conn, dtssd, sad, to_unit
    a, g = to_unit(pred_u8), to_unit(true_u8)      # float32 in [0, 1]
    mad(a, g)       # mean |a - g| x 1e3
    grad(a, g, normalize=True)    # RVM's low-resolution Grad (per-frame min-max first)

The standard (RVM) scales: ``mad``/``mse`` x1e3, ``dtssd`` x1e2, ``grad``/``conn``/``sad``
sums / 1000. So ``sad = mad * N / 1e6`` for N pixels. The course project's variants
(``course_mad``, ``course_mse``) divide by ``N + 1``, as its notebook did.

Precision: inputs are float32 (``uint8 / 255`` as RVM reads PNGs with OpenCV). ``conn``
runs in float32 so that threshold comparisons at exact multiples of 0.1 (51/255 = 0.2, ...)
fall the way RVM's NumPy did; ``grad`` filters in float64 (differences from OpenCV's float32
are in the 6th significant digit). SciPy is imported on first use (the CLI reads this module's
constants for its ``--help``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_MIN_DIFF = 0.15


def to_unit(alpha: np.ndarray) -> np.ndarray:
    """An alpha (H, W) as float32 in [0, 1]: uint8 / 255, floats clipped."""
    a = np.asarray(alpha)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


#: How a float alpha becomes 8 bits: ``round`` (ours, what the service returns) or ``truncate``
#: (RVM's writers: ``pha.mul(255).byte()`` on a float32 tensor).
ROUNDINGS = ("round", "truncate")


def quantize(alpha: np.ndarray, rounding: str = "round") -> np.ndarray:
    """A float alpha in [0, 1] as the 8-bit value a PNG would store.

    ``round``: ``rint(255 a)``; ``truncate``: ``floor(255 a)`` computed in float32, as RVM's
    ``mul(255).byte()`` does (so 0.999 -> 254, where rounding gives 255).
    """
    if rounding == "round":
        return np.clip(np.rint(np.asarray(alpha, np.float64) * 255.0), 0, 255).astype(np.uint8)
    if rounding == "truncate":
        scaled = np.asarray(alpha, np.float32) * np.float32(255.0)
        return np.clip(np.floor(scaled), 0, 255).astype(np.uint8)
    raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")


def _check(a: np.ndarray, g: np.ndarray) -> None:
    if a.shape != g.shape or a.ndim != 2:
        raise ValueError(f"prediction {a.shape} and truth {g.shape} must be the same (H, W)")


def mad(a: np.ndarray, g: np.ndarray) -> float:
    """Mean absolute difference x 1e3."""
    _check(a, g)
    return float(np.abs(a.astype(np.float64) - g).mean() * 1e3)


def mse(a: np.ndarray, g: np.ndarray) -> float:
    """Mean squared difference x 1e3."""
    _check(a, g)
    return float(((a.astype(np.float64) - g) ** 2).mean() * 1e3)


def sad(a: np.ndarray, g: np.ndarray) -> float:
    """Sum of absolute differences / 1000."""
    _check(a, g)
    return float(np.abs(a.astype(np.float64) - g).sum() / 1e3)


def course_mad(a: np.ndarray, g: np.ndarray) -> float:
    """The course notebook's MAD: sum |a - g| / (N + 1) x 1e3."""
    _check(a, g)
    return float(np.abs(a.astype(np.float64) - g).sum() / (a.size + 1) * 1e3)


def course_mse(a: np.ndarray, g: np.ndarray) -> float:
    """The course notebook's MSE: sum (a - g)^2 / (N + 1) x 1e3."""
    _check(a, g)
    return float(((a.astype(np.float64) - g) ** 2).sum() / (a.size + 1) * 1e3)


@lru_cache(maxsize=4)
def _gaussian_1d(sigma: float, eps: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D Gaussian and its derivative -x G / sigma^2, each L2-normalised.

    Half size ``ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma eps)))``: 9 taps for sigma 1.4.
    """
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    dgauss = -x * gauss / sigma**2
    return gauss / np.sqrt((gauss**2).sum()), dgauss / np.sqrt((dgauss**2).sum())


def gaussian_derivative_filters(sigma: float = GRAD_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The x and y Gaussian-derivative filters of RVM's Grad (2-D, each L2-normalised).

    The x filter is G(row) * G'(column); the y filter is its transpose. Being an outer product,
    its L2 norm is the product of the 1-D norms, so :func:`gradient_magnitude` applies it as
    two 1-D passes.
    """
    gauss, dgauss = _gaussian_1d(sigma)
    fx = np.outer(gauss, dgauss)
    return fx, fx.T.copy()


def _minmax(x: np.ndarray) -> np.ndarray:
    """OpenCV ``normalize(NORM_MINMAX)`` to [0, 1]; a constant image becomes 0."""
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= np.finfo(np.float64).eps:
        return np.zeros_like(x, dtype=np.float64)
    return (x.astype(np.float64) - lo) / (hi - lo)


def gradient_magnitude(x: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """sqrt(gx^2 + gy^2) with the Gaussian-derivative filters, replicated borders.

    Replicate padding is separable too, so the two 1-D passes equal the 2-D correlation.
    """
    from scipy import ndimage

    gauss, dgauss = _gaussian_1d(sigma)
    img = x.astype(np.float64)
    gx = ndimage.correlate1d(
        ndimage.correlate1d(img, gauss, 0, mode="nearest"), dgauss, 1, mode="nearest"
    )
    gy = ndimage.correlate1d(
        ndimage.correlate1d(img, dgauss, 0, mode="nearest"), gauss, 1, mode="nearest"
    )
    return np.sqrt(gx * gx + gy * gy)


def grad(a: np.ndarray, g: np.ndarray, *, normalize: bool = True) -> float:
    """sum (|grad g| - |grad a|)^2 / 1000; ``normalize``: min-max each frame first (LR)."""
    _check(a, g)
    pa, pg = (_minmax(a), _minmax(g)) if normalize else (a, g)
    return float(((gradient_magnitude(pg) - gradient_magnitude(pa)) ** 2).sum() / 1e3)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (the first one in raster order on ties)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)  # default structure: 4-connectivity
    if count == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    return np.asarray(labels == int(np.argmax(sizes)) + 1)


def conn(a: np.ndarray, g: np.ndarray, step: float = CONN_STEP) -> float:
    """Connectivity error / 1000 (thresholds step..1 every ``step``)."""
    _check(a, g)
    a32, g32 = a.astype(np.float32), g.astype(np.float32)
    thresholds = np.arange(0, 1 + step, step).astype(np.float32)
    # round_down[p]: the last threshold before p first leaves the largest common component.
    round_down = np.full(g32.shape, -1.0, np.float32)
    for i in range(1, len(thresholds)):
        omega = _largest_component((g32 >= thresholds[i]) & (a32 >= thresholds[i]))
        round_down[(round_down == -1) & ~omega] = thresholds[i - 1]
    round_down[round_down == -1] = 1.0
    dg, da = g32 - round_down, a32 - round_down
    phi_g = 1 - dg * (dg >= CONN_MIN_DIFF)
    phi_a = 1 - da * (da >= CONN_MIN_DIFF)
    return float(np.abs(phi_g - phi_a).astype(np.float64).sum() / 1e3)


def dtssd(
    a: np.ndarray, a_prev: np.ndarray | None, g: np.ndarray, g_prev: np.ndarray | None
) -> float:
    """Temporal coherence x 1e2: sqrt(sum((a_t - a_t-1) - (g_t - g_t-1))^2 / N); frame 0 -> 0."""
    _check(a, g)
    if a_prev is None or g_prev is None:
        return 0.0
    diff = (a.astype(np.float64) - a_prev) - (g.astype(np.float64) - g_prev)
    return float(math.sqrt((diff**2).sum() / g.size) * 1e2)
