"""The course project's text form: ``"v:len,v:len,…"`` over the row-major pixels, vectorised.

    obj = encode_legacy(alpha)   # {"size": [H, W], "counts": "0:1234,17:1,255:80,…"}
    alpha2 = decode_legacy(obj)  # uint8 (H, W); raises CodecError on bad input

``counts`` is byte-identical to the pure-Python reference
``",".join(f"{v}:{len(list(g))}" for v, g in itertools.groupby(alpha.ravel().tolist()))``.
The decoder also accepts non-canonical input (leading zeros, two adjacent pairs with the same
value) but never a zero length, a value over 255, or runs that do not add up to H×W.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from sam2_matting.codec.limits import DEFAULT_MAX_PIXELS, check_alpha, check_size
from sam2_matting.errors import CodecError

__all__ = ["decode_legacy", "encode_legacy"]

_MAX_DIGITS = 10  # a run length is at most HARD_MAX_PIXELS < 10**10
_POW10 = 10 ** np.arange(_MAX_DIGITS, dtype=np.int64)
_ZERO, _COLON, _COMMA = ord("0"), ord(":"), ord(",")


def encode_legacy(
    alpha: NDArray[np.uint8], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, Any]:
    """Encode a uint8 (H, W) matte to ``{"size": [H, W], "counts": "v:len,…"}``."""
    alpha = check_alpha(alpha, max_pixels)
    flat = alpha.reshape(-1)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], starts))
    lengths = np.diff(np.append(starts, flat.size))
    numbers = np.empty(2 * starts.size, dtype=np.int64)
    numbers[0::2] = flat[starts]
    numbers[1::2] = lengths
    return {"size": list(alpha.shape), "counts": _format_numbers(numbers)}


def _format_numbers(numbers: NDArray[np.int64]) -> str:
    """Decimal digits of each number, joined alternately by ':' and ',' (vectorised).

    Numbers are grouped by digit count, then written one digit place at a time.
    """
    biggest = int(numbers.max())
    most = len(str(biggest))
    ndigits = np.ones(numbers.size, dtype=np.int64)
    for k in range(1, most):
        ndigits += numbers >= _POW10[k]
    ends = np.cumsum(ndigits + 1)  # each number is followed by one separator byte
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    out[ends[0::2] - 1] = _COLON
    out[ends[1::2] - 1] = _COMMA
    work = np.uint32 if biggest < 2**32 else np.int64  # 32-bit division is faster
    for digits in range(1, most + 1):
        sel = np.flatnonzero(ndigits == digits)
        rest = numbers[sel].astype(work)
        last = ends[sel] - 2  # position of the units digit
        for place in range(digits):
            quotient = np.floor_divide(rest, 10)
            out[last - place] = np.subtract(rest, quotient * 10) + _ZERO
            rest = quotient
    return out[:-1].tobytes().decode("ascii")  # drop the trailing ','


def decode_legacy(obj: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Decode ``{"size": [H, W], "counts": "v:len,…"}`` to a uint8 (H, W) matte."""
    if not isinstance(obj, dict):
        raise CodecError(f"matte must be a JSON object, got {type(obj).__name__}")
    height, width = check_size(obj.get("size"), max_pixels)
    counts = obj.get("counts")
    if not isinstance(counts, str):
        raise CodecError(f"counts must be a string, got {type(counts).__name__}")
    n = height * width
    # Each pixel is at most one pair "vvv:1," (6 bytes); a longer string cannot be valid.
    if len(counts) > 6 * n:
        raise CodecError(f"counts is {len(counts)} characters, more than a {height}x{width} needs")
    try:
        text = np.frombuffer(counts.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raise CodecError("counts must be ASCII digits, ':' and ','") from None
    numbers = _parse_numbers(text)
    values, lengths = numbers[0::2], numbers[1::2]
    if int(values.max()) > 255:
        raise CodecError(f"pixel value {int(values.max())} is over 255")
    if int(lengths.min()) < 1:
        raise CodecError("a run has length 0")
    if int(lengths.max()) > n:
        raise CodecError(f"a run of {int(lengths.max())} pixels in a {height}x{width} matte")
    covered = int(lengths.sum())
    if covered != n:
        raise CodecError(f"runs cover {covered} pixels, size {height}x{width} needs {n}")
    return np.repeat(values.astype(np.uint8), lengths).reshape(height, width)


def _parse_numbers(text: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Parse ``d+:d+(,d+:d+)*`` into [v0, len0, v1, len1, …] without a per-character loop."""
    if text.size == 0:
        raise CodecError("counts is empty")
    digit = text - np.uint8(_ZERO)
    seps = np.flatnonzero(digit > 9)
    sep_chars = text[seps]
    stray = np.flatnonzero((sep_chars != _COLON) & (sep_chars != _COMMA))
    if stray.size:
        where = int(seps[stray[0]])
        raise CodecError(f"unexpected character {chr(text[where])!r} at offset {where} in counts")
    expected = np.where(np.arange(seps.size) % 2 == 0, _COLON, _COMMA)
    if sep_chars.size % 2 == 0 or (sep_chars != expected).any():
        raise CodecError("counts must be 'value:length' pairs separated by ','")
    begins = np.concatenate(([0], seps + 1))
    ends = np.append(seps, text.size)
    sizes = ends - begins
    if int(sizes.min()) < 1:
        raise CodecError("empty number in counts")
    if int(sizes.max()) > _MAX_DIGITS:
        raise CodecError(f"a number in counts has more than {_MAX_DIGITS} digits")
    is_digit = np.ones(text.size, dtype=bool)
    is_digit[seps] = False
    owner_end = np.repeat(ends, sizes)  # for each digit, the end of its number
    place = owner_end - np.flatnonzero(is_digit) - 1
    weighted = digit[is_digit].astype(np.int64) * _POW10[place]
    return np.add.reduceat(weighted, begins - np.arange(begins.size))
