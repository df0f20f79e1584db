"""Binary COCO RLE of a thresholded matte, for the stock SAM 2 demo frontend.

    obj = encode_coco_binary(alpha)          # {"size": [H, W], "counts": "<pycocotools string>"}
    mask = decode_coco_binary(obj)           # uint8 (H, W), 0 or 255

Encoding goes through ``pycocotools.mask.encode`` on ``alpha >= threshold`` (column-major, as
COCO requires); ``counts`` is pycocotools' compressed string decoded as UTF-8. Decoding parses
and validates that string here, vectorised, and never hands unchecked counts to pycocotools'
C decoder (which writes past its buffer when the runs add up to more than H×W).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pycocotools import mask as mask_utils

from sam2_matting.codec.limits import DEFAULT_MAX_PIXELS, check_alpha, check_size
from sam2_matting.errors import CodecError

__all__ = ["decode_coco_binary", "encode_coco_binary", "parse_coco_counts"]

_MAX_CHARS_PER_COUNT = 7  # 35 bits: enough for any count up to 2**31 and its sign


def encode_coco_binary(
    alpha: NDArray[np.uint8], *, threshold: int = 128, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, Any]:
    """Threshold (``alpha >= threshold``) and encode with pycocotools; JSON-ready dict."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= 256:
        raise CodecError(f"threshold must be an int in [0, 256], got {threshold!r}")
    alpha = check_alpha(alpha, max_pixels)
    binary = np.asfortranarray(alpha >= threshold, dtype=np.uint8)
    rle = mask_utils.encode(binary)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("utf-8")}


def decode_coco_binary(obj: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Decode ``{"size": [H, W], "counts": str}`` (compressed COCO RLE) to uint8 0/255 (H, W)."""
    if not isinstance(obj, dict):
        raise CodecError(f"mask must be a JSON object, got {type(obj).__name__}")
    height, width = check_size(obj.get("size"), max_pixels)
    counts = parse_coco_counts(obj.get("counts"), height * width)
    colour = np.where(np.arange(counts.size) % 2 == 1, 255, 0).astype(np.uint8)
    column_major = np.repeat(colour, counts)
    return np.ascontiguousarray(column_major.reshape(width, height).T)


def parse_coco_counts(counts: Any, pixels: int) -> NDArray[np.int64]:
    """Run lengths (0s first, column-major) of a pycocotools compressed string, validated.

    Mirrors pycocotools' ``rleFrString``: 6 bits per character from '0' (48); the low 5 bits
    are data, bit 0x20 means "more", bit 0x10 of the last character is the sign; from the
    fourth count on, each value is a difference from the count two places earlier.
    The counts must be ≥ 0 and add up to ``pixels``.
    """
    if isinstance(counts, str):
        try:
            raw = counts.encode("ascii")
        except UnicodeEncodeError:
            raise CodecError("counts must be ASCII characters '0'..'o'") from None
    elif isinstance(counts, bytes):
        raw = counts
    else:
        raise CodecError(f"counts must be a string, got {type(counts).__name__}")
    if len(raw) > _MAX_CHARS_PER_COUNT * (pixels + 1):
        raise CodecError(f"counts is {len(raw)} characters, more than {pixels} pixels need")
    if not raw:
        raise CodecError("counts is empty")
    code = np.frombuffer(raw, dtype=np.uint8) - np.uint8(48)
    if int(code.max()) > 63:
        raise CodecError("counts must contain only characters '0'..'o'")
    last = (code & 0x20) == 0
    if not last[-1]:
        raise CodecError("counts ends in the middle of a number")
    ends = np.flatnonzero(last)
    begins = np.concatenate(([0], ends[:-1] + 1))
    sizes = ends - begins + 1
    if int(sizes.max()) > _MAX_CHARS_PER_COUNT:
        raise CodecError(f"a count in counts is longer than {_MAX_CHARS_PER_COUNT} characters")
    if ends.size > pixels + 1:
        raise CodecError(f"{ends.size} runs in a {pixels}-pixel mask")
    shift = 5 * (np.arange(code.size, dtype=np.int64) - np.repeat(begins, sizes))
    values = np.add.reduceat((code & 0x1F).astype(np.int64) << shift, begins)
    negative = (code[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * sizes[negative])
    if int(np.abs(values).max()) > pixels:  # keeps the running sums below far from int64 limits
        raise CodecError(f"a count in counts is out of range for a {pixels}-pixel mask")
    out = values.copy()
    out[1::2] = np.cumsum(values[1::2])
    out[2::2] = np.cumsum(values[2::2])
    if int(out.min()) < 0:
        raise CodecError("counts decodes to a negative run length")
    if int(out.max()) > pixels:
        raise CodecError(f"a run of {int(out.max())} pixels in a {pixels}-pixel mask")
    covered = int(out.sum())
    if covered != pixels:
        raise CodecError(f"runs cover {covered} pixels, size needs {pixels}")
    return out
