"""The ``matte-rle/1`` codec (specified in docs/matte-rle.md): lossless, vectorised with NumPy.

    obj = encode_matte(alpha)            # alpha: uint8 (H, W) -> {"format", "size", "counts"}
    alpha2 = decode_matte(obj)           # -> uint8 (H, W); raises CodecError on bad input
    assert (alpha2 == alpha).all()

A matte is cut, in row-major order, into tokens: runs of 0, runs of 255, runs of another value,
and literal spans. A literal pixel is stored as its difference (mod 256) from the pixel directly
above it. Token headers (varints) and payload bytes form a body that is deflated when that
helps, then base64'd.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sam2_matting.codec.limits import DEFAULT_MAX_PIXELS, check_alpha, check_size
from sam2_matting.errors import CodecError

__all__ = ["FORMAT", "decode_matte", "encode_matte", "max_body_bytes"]

FORMAT = "matte-rle/1"

METHOD_STORED, METHOD_DEFLATE, METHOD_RAW = 0, 1, 2
KIND_ZERO, KIND_FULL, KIND_LITERAL, KIND_VALUE = 0, 1, 2, 3
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


def max_body_bytes(pixels: int) -> int:
    """Upper bound on a valid body for ``pixels`` pixels: ≤ 1 token per pixel × 5 bytes + 1 byte."""
    return 6 * pixels + _MAX_VARINT_BYTES


# ---------------------------------------------------------------------------------------------
# Encoder


def encode_matte(
    alpha: NDArray[np.uint8], *, level: int = DEFAULT_LEVEL, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, Any]:
    """Encode a uint8 (H, W) matte; return the JSON-ready ``{"format", "size", "counts"}``.

    ``level`` is the zlib level tried on the token body (0 = never deflate). The smallest of
    stored body, deflated body and raw pixels is sent, so ``counts`` is never longer than
    ``4 * ceil((H*W + 1) / 3)`` characters.
    """
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise CodecError(f"level must be an int in [0, 9], got {level!r}")
    alpha = check_alpha(alpha, max_pixels)
    height, width = alpha.shape
    flat = alpha.reshape(-1)
    body = _encode_body(flat, width)
    blob = bytes([METHOD_STORED]) + body
    if level > 0 and _worth_deflating(body, level):
        packer = zlib.compressobj(level, zlib.DEFLATED, -15)
        deflated = packer.compress(body) + packer.flush()
        if len(deflated) < len(body):
            blob = bytes([METHOD_DEFLATE]) + deflated
    if len(blob) > flat.size + 1:
        blob = bytes([METHOD_RAW]) + flat.tobytes()
    return {
        "format": FORMAT,
        "size": [height, width],
        "counts": base64.b64encode(blob).decode("ascii"),
    }


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
    return starts[present], lens[present], kinds[present]


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


def _span_indices(starts: I64, lens: I64, total: int) -> I64:
    """Concatenation of ``range(s, s + l)`` for each span (all l ≥ 1), vectorised."""
    steps = np.ones(total, dtype=np.int64)
    steps[0] = starts[0]
    steps[np.cumsum(lens[:-1])] = starts[1:] - (starts[:-1] + lens[:-1]) + 1
    return np.cumsum(steps)


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


# ---------------------------------------------------------------------------------------------
# Decoder


def decode_matte(obj: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Decode ``{"format": "matte-rle/1", "size": [H, W], "counts": str}`` to uint8 (H, W).

    Raises :class:`CodecError` for anything malformed, inconsistent, or with ``H*W`` over
    ``max_pixels`` (checked before any allocation; inflated data is capped at what H×W needs).
    """
    if not isinstance(obj, dict):
        raise CodecError(f"matte must be a JSON object, got {type(obj).__name__}")
    if obj.get("format") != FORMAT:
        raise CodecError(f"format must be {FORMAT!r}, got {obj.get('format')!r}")
    height, width = check_size(obj.get("size"), max_pixels)
    counts = obj.get("counts")
    if not isinstance(counts, str):
        raise CodecError(f"counts must be a string, got {type(counts).__name__}")
    n = height * width
    limit = max_body_bytes(n)
    if len(counts) > 4 * (limit // 3 + 2):
        raise CodecError(f"counts is {len(counts)} characters, more than a {height}x{width} needs")
    try:
        blob = base64.b64decode(counts, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CodecError(f"counts is not valid base64: {err}") from None
    if not blob:
        raise CodecError("counts is empty")
    method, data = blob[0], memoryview(blob)[1:]
    if method == METHOD_RAW:
        if len(data) != n:
            raise CodecError(f"raw matte has {len(data)} bytes, size needs {n}")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width).copy()
    if method == METHOD_DEFLATE:
        body = _inflate(data, limit)
    elif method == METHOD_STORED:
        body = bytes(data)
    else:
        raise CodecError(f"unknown method byte {method}")
    return _decode_body(body, height, width)


def _inflate(data: memoryview, limit: int) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        body = inflater.decompress(data, limit + 1)
    except zlib.error as err:
        raise CodecError(f"corrupt deflate stream: {err}") from None
    if len(body) > limit:
        raise CodecError(f"deflate stream inflates past {limit} bytes, more than the size needs")
    if not inflater.eof:
        raise CodecError("truncated deflate stream")
    if inflater.unused_data:
        raise CodecError(f"{len(inflater.unused_data)} stray bytes after the deflate stream")
    return body


def _read_varint(body: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for k in range(_MAX_VARINT_BYTES):
        if pos + k >= len(body):
            raise CodecError("truncated varint")
        byte = body[pos + k]
        value |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            return value, pos + k + 1
    raise CodecError(f"varint longer than {_MAX_VARINT_BYTES} bytes")


def _parse_varints(raw: U8) -> I64:
    """Vectorised inverse of :func:`_varints`; the bytes must hold whole varints only."""
    if raw.size == 0:
        return np.empty(0, dtype=np.int64)
    if int(raw.max()) < 0x80:
        return raw.astype(np.int64)
    if raw[-1] >= 0x80:
        raise CodecError("truncated varint in token headers")
    ends = np.flatnonzero(raw < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    sizes = ends - starts + 1
    if int(sizes.max()) > _MAX_VARINT_BYTES:
        raise CodecError(f"varint longer than {_MAX_VARINT_BYTES} bytes in token headers")
    shift = 7 * (np.arange(raw.size, dtype=np.int64) - np.repeat(starts, sizes))
    return np.add.reduceat((raw & 0x7F).astype(np.int64) << shift, starts)


def _decode_body(body: bytes, height: int, width: int) -> U8:
    n = height * width
    n_headers, pos = _read_varint(body, 0)
    if n_headers > len(body) - pos:
        raise CodecError(f"token headers claim {n_headers} bytes, body has {len(body) - pos}")
    raw = np.frombuffer(body, dtype=np.uint8)
    headers = _parse_varints(raw[pos : pos + n_headers])
    payload = raw[pos + n_headers :]
    if headers.size > n:
        raise CodecError(f"{headers.size} tokens for {n} pixels")
    kinds = headers & 3
    lens = (headers >> 2) + 1
    if lens.size and int(lens.max()) > n:
        raise CodecError(f"a run of {int(lens.max())} pixels in a {height}x{width} matte")
    covered = int(lens.sum())
    if covered != n:
        raise CodecError(f"runs cover {covered} pixels, size {height}x{width} needs {n}")
    lit = kinds == KIND_LITERAL
    val = kinds == KIND_VALUE
    per_token = np.where(lit, lens, val.astype(np.int64))
    needed = int(per_token.sum())
    if needed != payload.size:
        raise CodecError(f"tokens need {needed} payload bytes, body has {payload.size}")
    values = np.zeros(lens.size, dtype=np.uint8)
    values[kinds == KIND_FULL] = 255
    if val.any():
        values[val] = payload[(np.cumsum(per_token) - per_token)[val]]
        residuals = payload[np.repeat(lit, per_token)]
    else:
        residuals = payload
    out = np.repeat(values, lens)
    if residuals.size:
        starts = np.cumsum(lens) - lens
        _undo_prediction(out, width, starts[lit], lens[lit], residuals)
    return out.reshape(height, width)


def _undo_prediction(
    out: U8, width: int, starts: I64, lens: I64, residuals: U8, dense: bool | None = None
) -> None:
    """Write literal pixels into ``out`` (runs already filled): pixel = residual + pixel above.

    Sparse path (few literals): sort literal pixels by column, so each vertical chain of
    literals is contiguous, then a segmented cumulative sum. Dense path: one vectorised add per
    row. Both give the same result; ``dense`` forces one (for tests).
    """
    total = residuals.size
    height = out.size // width
    if dense is None:
        dense = total > 100 * height
    if dense:
        mask = _span_mask(starts, lens, out.size)
        out[mask] = residuals
        grid, lit_grid = out.reshape(-1, width), mask.reshape(-1, width)
        for row in range(1, grid.shape[0]):
            np.add(grid[row], grid[row - 1], out=grid[row], where=lit_grid[row])
        return
    idx = _span_indices(starts, lens, total)
    col = idx % width
    order = np.argsort(col.astype(np.uint16) if width <= 0xFFFF else col, kind="stable")
    chain_idx, chain_res = idx[order], residuals[order]
    begins = np.ones(total, dtype=bool)
    begins[1:] = chain_idx[1:] != chain_idx[:-1] + width
    heads = np.flatnonzero(begins)
    head_idx = chain_idx[heads]
    base = np.where(head_idx >= width, out[np.maximum(head_idx - width, 0)], 0).astype(np.uint8)
    seeded = chain_res.copy()
    seeded[heads] += base
    running = np.cumsum(seeded, dtype=np.uint8)
    before = np.zeros(heads.size, dtype=np.uint8)
    before[1:] = running[heads[1:] - 1]
    out[chain_idx] = running - np.repeat(before, np.diff(np.append(heads, total)))


def _span_mask(starts: I64, lens: I64, n: int) -> NDArray[np.bool_]:
    """Boolean mask of n pixels, True inside the given sorted, disjoint spans."""
    sizes = np.empty(2 * lens.size + 1, dtype=np.int64)
    sizes[1::2] = lens
    sizes[0::2] = np.concatenate((starts, [n])) - np.concatenate(([0], starts + lens))
    return np.repeat(np.arange(sizes.size) % 2 == 1, sizes)
