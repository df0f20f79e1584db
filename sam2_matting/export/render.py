"""Per-pixel operations of the exports, on uint8 arrays, rounded to nearest.

All work in the video's (gamma-encoded sRGB / BT.709) values, as editors composite by default;
none converts to linear light. ``rgb`` is (H, W, 3) uint8, ``alpha`` (H, W) uint8 with 255
opaque; every function returns a new array and leaves its inputs untouched.
"""

from __future__ import annotations

import numpy as np

__all__ = ["composite_over", "foreground", "pad_to_even", "premultiply", "rgba"]


def premultiply(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``round(rgb * alpha / 255)``: colour premultiplied by (associated with) alpha."""
    scaled = rgb.astype(np.uint16) * alpha[..., None]
    scaled += 127
    out: np.ndarray = (scaled // 255).astype(np.uint8)
    return out


def composite_over(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``round((rgb * alpha + background * (255 - alpha)) / 255)``; background (H, W, 3)."""
    a = alpha[..., None].astype(np.uint16)
    mixed = rgb.astype(np.uint16) * a
    mixed += background.astype(np.uint16) * (255 - a)  # at most 255 * 255: fits in uint16
    mixed += 127
    out: np.ndarray = (mixed // 255).astype(np.uint8)
    return out


def foreground(rgb: np.ndarray, alpha: np.ndarray, *, premultiplied: bool) -> np.ndarray:
    """The "fgr" colour: premultiplied, ``rgb * alpha``; straight, ``rgb`` where alpha > 0
    and black where alpha is 0 (those pixels carry no colour)."""
    if premultiplied:
        return premultiply(rgb, alpha)
    out = rgb.copy()
    out[alpha == 0] = 0
    return out


def rgba(rgb: np.ndarray, alpha: np.ndarray, *, premultiplied: bool) -> np.ndarray:
    """(H, W, 4) RGBA: straight colour, or premultiplied when asked."""
    colour = premultiply(rgb, alpha) if premultiplied else rgb
    return np.dstack((colour, alpha))


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """``image`` (H, W[, C]) grown to even H and W by repeating its last row and column.

    H.264 in 4:2:0 needs even sizes; an odd-sized video gains one column on the right and/or
    one row at the bottom (a copy of the edge), so no source pixel is lost or resampled.
    Returns ``image`` itself when both sizes are already even.
    """
    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
    if not (pad_h or pad_w):
        return image
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="edge")
