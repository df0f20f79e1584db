"""The ``matte-rle/1`` codec (specified in docs/matte-rle.md): lossless, vectorised with NumPy.

    obj = encode_matte(alpha)            # alpha: uint8 (H, W) -> {"format", "size", "counts"}
    alpha2 = decode_matte(obj)           # -> uint8 (H, W); raises CodecError on bad input
    assert (alpha2 == alpha).all()

A matte is cut, in row-major order, into tokens: runs of 0, runs of 255, runs of another value,
and literal spans. A literal pixel is stored as its difference (mod 256) from the pixel directly
above it. Token headers (varints) and payload bytes form a body that is deflated when that
helps, then base64'd. The decoder (streamed, in bounded memory) is ``rle_decode.py``; its
names are re-exported here.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sam2_matting.codec.limits import DEFAULT_MAX_PIXELS, check_alpha
from sam2_matting.codec.rle_decode import (
    FORMAT,
    KIND_FULL,
    KIND_LITERAL,
    KIND_VALUE,
    KIND_ZERO,
    MAX_TOKEN_PIXELS,
    METHOD_DEFLATE,
    METHOD_RAW,
    METHOD_STORED,
    _span_indices,
    _span_mask,
    decode_matte,
    max_blob_bytes,
    max_body_bytes,
    max_counts_chars,
    peek_size,
    split_tokens,
)
from sam2_matting.errors import CodecError

__all__ = [
    "FORMAT",
    "KIND_FULL",
    "KIND_LITERAL",
    "KIND_VALUE",
    "KIND_ZERO",
    "METHOD_DEFLATE",
    "METHOD_RAW",
    "METHOD_STORED",
    "choose_blob",
    "decode_matte",
    "encode_matte",
    "max_blob_bytes",
    "max_body_bytes",
    "max_counts_chars",
    "peek_size",
]
#: Encoder choice (not part of the format): a run of a value other than 0 / 255 becomes its own
#: token from this length on; shorter ones stay inside literal spans.
MIN_VALUE_RUN = 8
#: Default deflate level (1: measured ~2.5x faster than 6 for ~5 % more bytes; see the spec).
DEFAULT_LEVEL = 1
_MAX_VARINT_BYTES = 5
# Bodies longer than this get a sampled compressibility test before a full deflate.
_SAMPLE_FROM = 1 << 18
_SAMPLE_CHUNK = 1 << 13

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]


# ---------------------------------------------------------------------------------------------
# Encoder


def encode_matte(
    alpha: NDArray[np.uint8], *, level: int = DEFAULT_LEVEL, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, Any]:
    """Encode a uint8 (H, W) matte; return the JSON-ready ``{"format", "size", "counts"}``.

    ``level`` is the zlib level tried on the token body (0 = never deflate). The smallest of
    stored body, deflated body and raw pixels is sent (on a tie the first of them, in that
    order), so ``counts`` is never longer than ``4 * ceil((H*W + 1) / 3)`` characters.
    """
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise CodecError(f"level must be an int in [0, 9], got {level!r}")
    alpha = check_alpha(alpha, max_pixels)
    height, width = alpha.shape
    flat = alpha.reshape(-1)
    body = _encode_body(flat, width)
    deflated = None
    if level > 0 and _worth_deflating(body, level):
        packer = zlib.compressobj(level, zlib.DEFLATED, -15)
        deflated = packer.compress(body) + packer.flush()
    method = choose_blob(len(body), None if deflated is None else len(deflated), flat.size)
    if method == METHOD_STORED:
        blob = bytes([METHOD_STORED]) + body
    elif method == METHOD_DEFLATE:
        assert deflated is not None
        blob = bytes([METHOD_DEFLATE]) + deflated
    else:
        blob = bytes([METHOD_RAW]) + flat.tobytes()
    return {
        "format": FORMAT,
        "size": [height, width],
        "counts": base64.b64encode(blob).decode("ascii"),
    }


def choose_blob(stored: int, deflated: int | None, raw: int) -> int:
    """The method to send, given the candidates' data lengths: the shortest, and on a tie the
    first of stored, deflated, raw (``deflated`` is None when deflate was not tried)."""
    candidates = [(stored, METHOD_STORED), (raw, METHOD_RAW)]
    if deflated is not None:
        candidates.insert(1, (deflated, METHOD_DEFLATE))
    return min(candidates, key=lambda c: c[0])[1]  # min keeps the first of equal keys


def _worth_deflating(body: bytes, level: int) -> bool:
    """Cheap guard for big incompressible bodies (noise): deflate a few evenly spaced chunks."""
    if len(body) < _SAMPLE_FROM:
        return True
    step = (len(body) - _SAMPLE_CHUNK) // 7
    sample = b"".join(body[i * step : i * step + _SAMPLE_CHUNK] for i in range(8))
    return len(zlib.compress(sample, level)) < 0.9 * len(sample)


def _encode_body(flat: U8, width: int) -> bytes:
    """Token body: varint(len(A)) + A (token headers) + B (payload bytes)."""
    starts, lens, kinds = _tokenize(flat)
    lit = kinds == KIND_LITERAL
    val = kinds == KIND_VALUE
    residuals = _literal_residuals(flat, width, starts[lit], lens[lit])
    if val.any():  # each value-run token puts its value byte between the literal bytes
        residuals_before = np.cumsum(np.where(lit, lens, 0))[val]
        payload = np.insert(residuals, residuals_before, flat[starts[val]])
    else:
        payload = residuals
    headers = _varints(((lens - 1) << 2) | kinds)
    return (
        _varints(np.array([headers.size], dtype=np.int64)).tobytes()
        + headers.tobytes()
        + payload.tobytes()
    )


def _tokenize(flat: U8) -> tuple[I64, I64, I64]:
    """Cut pixels into tokens; return (start, length, kind) arrays in pixel order.

    Run tokens: every run of 0 or 255 of length ≥ 2 and every other run of length
    ≥ MIN_VALUE_RUN. Everything between two run tokens is one literal span. Works on the ends
    of "equal-neighbour" stretches only, so noise (millions of length-1 runs) stays cheap.
    """
    n = flat.size
    eq = flat[1:] == flat[:-1]  # eq[i]: pixels i and i+1 are equal
    edges = _sparse_nonzero(eq[1:] != eq[:-1]) + 1
    if eq.size and eq[0]:
        edges = np.concatenate(([0], edges))
    if eq.size and eq[-1]:
        edges = np.concatenate((edges, [eq.size]))
    run_start = edges[0::2]
    run_len = edges[1::2] - run_start + 1  # eq True on [s, e) -> pixels s..e
    run_val = flat[run_start]
    keep = (run_val == 0) | (run_val == 255) | (run_len >= MIN_VALUE_RUN)
    run_start, run_len, run_val = run_start[keep], run_len[keep], run_val[keep]
    gap_start = np.concatenate(([0], run_start + run_len))
    gap_len = np.concatenate((run_start, [n])) - gap_start
    count = 2 * run_start.size + 1
    starts = np.empty(count, dtype=np.int64)
    lens = np.empty(count, dtype=np.int64)
    kinds = np.empty(count, dtype=np.int64)
    starts[0::2], starts[1::2] = gap_start, run_start
    lens[0::2], lens[1::2] = gap_len, run_len
    kinds[0::2] = KIND_LITERAL
    kinds[1::2] = np.where(run_val == 0, KIND_ZERO, np.where(run_val == 255, KIND_FULL, KIND_VALUE))
    present = lens > 0
    starts, lens, kinds = starts[present], lens[present], kinds[present]
    if int(lens.max(initial=0)) > MAX_TOKEN_PIXELS:  # headers stay below 2**32
        lens, kinds = split_tokens(lens, kinds, np.ones(lens.size, bool), MAX_TOKEN_PIXELS)
        starts = np.cumsum(lens) - lens
    return starts, lens, kinds


def _sparse_nonzero(mask: NDArray[np.bool_]) -> I64:
    """``np.flatnonzero`` for a mostly-False mask: scan 8 bytes at a time, then the hits."""
    n8 = mask.size // 8 * 8
    words = mask[:n8].view(np.uint64)
    hit_words = np.flatnonzero(words != 0)
    hits = np.flatnonzero(words[hit_words].view(np.uint8) != 0)
    out = hit_words[hits >> 3] * 8 + (hits & 7)
    if n8 < mask.size:
        out = np.concatenate((out, np.flatnonzero(mask[n8:]) + n8))
    return out


def _literal_residuals(flat: U8, width: int, starts: I64, lens: I64) -> U8:
    """(pixel − pixel above) mod 256 for every literal pixel, in order; row 0 has above = 0."""
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, dtype=np.uint8)
    if 4 * total > flat.size:  # dense: one pass over the whole image beats index arithmetic
        up = flat.copy()
        up[width:] -= flat[:-width]
        return up[_span_mask(starts, lens, flat.size)]
    idx = _span_indices(starts, lens, total)
    above = np.zeros(total, dtype=np.uint8)
    first_below = int(np.searchsorted(idx, width))
    above[first_below:] = flat[idx[first_below:] - width]
    return flat[idx] - above


def _varints(values: I64) -> U8:
    """LEB128 (7 bits per byte, low group first, high bit = more) of non-negative int64s."""
    big = values >= 0x80
    if not big.any():
        return values.astype(np.uint8)
    nbytes = np.ones(values.size, dtype=np.int64)
    for k in range(1, _MAX_VARINT_BYTES):
        over = values >= (1 << (7 * k))
        if not over.any():
            break
        nbytes += over
    ends = np.cumsum(nbytes)
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    first = ends - nbytes
    out[first] = (values & 0x7F) | (big << 7)
    sel = np.flatnonzero(big)
    rest, pos = values[sel] >> 7, first[sel] + 1
    while rest.size:  # one more byte for the values that still have bits left
        more = rest >= 0x80
        out[pos] = (rest & 0x7F) | (more << 7)
        rest, pos = rest[more] >> 7, pos[more] + 1
    return out
