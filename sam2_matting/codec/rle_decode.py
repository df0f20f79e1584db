"""The ``matte-rle/1`` decoder (docs/matte-rle.md): streamed, in bounded memory.

    alpha = decode_matte(obj)                              # uint8 (H, W); CodecError if bad
    alpha = decode_matte(obj, expected_shape=(540, 960))   # refuse another size before decoding
    height, width = peek_size(obj)                         # all checks that need no decoding

Nothing is decoded, inflated or allocated for the pixels before the declared size passes
``max_pixels`` (and ``expected_shape``) and the text length fits that size (``rle_input``).
Then base64 is decoded and the body inflated in chunks of at most ``CHUNK`` bytes; tokens are
written straight into the one output array as they arrive. The token headers and the payload
are read by two cursors over the same blob (a deflated body is inflated twice, the second time
skipping the headers), so the body is never held whole: peak memory is the output plus a few
MiB, whatever the input declares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

import sam2_matting.codec.rle_input as rle_input
from sam2_matting.codec.limits import DEFAULT_MAX_PIXELS
from sam2_matting.codec.rle_input import (
    FORMAT,
    MAX_TOKEN_PIXELS,
    MAX_VARINT_BYTES,
    MAX_VARINT_VALUE,
    Base64Reader,
    InflateReader,
    Reader,
    check_header,
    max_blob_bytes,
    max_body_bytes,
    max_counts_chars,
    peek_size,
    varint_size,
)
from sam2_matting.errors import CodecError

__all__ = [
    "FORMAT",
    "MAX_TOKEN_PIXELS",
    "decode_matte",
    "max_blob_bytes",
    "max_body_bytes",
    "max_counts_chars",
    "parse_varints",
    "peek_size",
    "split_tokens",
    "undo_prediction",
    "varint_size",
]

METHOD_STORED, METHOD_DEFLATE, METHOD_RAW = 0, 1, 2
KIND_ZERO, KIND_FULL, KIND_LITERAL, KIND_VALUE = 0, 1, 2, 3
#: Bounds of one batch of tokens: payload bytes and pixels covered (runs longer than this are
#: filled in place, literal spans are cut into pieces of at most _PAYLOAD_CAP pixels).
_PAYLOAD_CAP = 1 << 18
_PIXEL_CAP = 1 << 22

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]


# ---------------------------------------------------------------------------------------------
# Decoder


def decode_matte(
    obj: Any,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    expected_shape: tuple[int, int] | None = None,
) -> NDArray[np.uint8]:
    """Decode ``{"format": "matte-rle/1", "size": [H, W], "counts": str}`` to uint8 (H, W).

    Raises :class:`CodecError` for anything malformed, inconsistent, with ``H*W`` over
    ``max_pixels`` or, when given, a size other than ``expected_shape`` (all checked before
    anything is decoded). Memory: the output plus a few MiB.
    """
    height, width, blob_len = check_header(obj, max_pixels, expected_shape)
    counts: str = obj["counts"]
    n = height * width
    head = Base64Reader(counts)
    method = head.read(1)[0]
    if method == METHOD_RAW:
        if blob_len - 1 != n:
            raise CodecError(f"raw matte has {blob_len - 1} bytes, size needs {n}")
        out = np.empty(n, dtype=np.uint8)
        for o in range(0, n, rle_input.CHUNK):
            piece = head.read(rle_input.CHUNK)
            out[o : o + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
        return out.reshape(height, width)
    if method == METHOD_STORED:
        headers: Reader = head
        n_headers, pos = _read_varint(headers)
        if n_headers > blob_len - 1 - pos:
            raise CodecError(
                f"token headers claim {n_headers} bytes, body has {blob_len - 1 - pos}"
            )
        _check_header_bytes(n_headers, n)
        payload = Base64Reader(counts, 1 + pos + n_headers)
        out = _decode_tokens(headers, n_headers, payload, height, width)
        if payload.read(1):
            raise CodecError("payload bytes left over after the tokens")
        return out
    if method == METHOD_DEFLATE:
        limit = max_body_bytes(n)
        headers = InflateReader(head, limit)
        n_headers, pos = _read_varint(headers)
        _check_header_bytes(n_headers, n)
        inflated = InflateReader(Base64Reader(counts, 1), limit)
        for skip in range(pos + n_headers, 0, -rle_input.CHUNK):
            if len(inflated.read(min(skip, rle_input.CHUNK))) < min(skip, rle_input.CHUNK):
                raise CodecError("body ends inside the token headers")
        out = _decode_tokens(headers, n_headers, inflated, height, width)
        if inflated.read(1):
            raise CodecError("payload bytes left over after the tokens")
        inflated.check_end()
        return out
    raise CodecError(f"unknown method byte {method}")


def _check_header_bytes(n_headers: int, pixels: int) -> None:
    # A token of L pixels has a header of at most L bytes: more header bytes than pixels is
    # always an error, found before anything is allocated.
    if n_headers > pixels:
        raise CodecError(f"token headers claim {n_headers} bytes for {pixels} pixels")


def _read_varint(source: Reader) -> tuple[int, int]:
    """One canonical varint from the front of ``source``: (value, bytes read)."""
    value = 0
    for k in range(MAX_VARINT_BYTES):
        got = source.read(1)
        if not got:
            raise CodecError("truncated varint")
        byte = got[0]
        value |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            if k and byte == 0:
                raise CodecError("overlong varint (not the shortest form of its value)")
            if value > MAX_VARINT_VALUE:
                raise CodecError(f"varint {value} is 2**32 or more")
            return value, k + 1
    raise CodecError(f"varint longer than {MAX_VARINT_BYTES} bytes")


def parse_varints(raw: U8, final: bool = True) -> tuple[I64, int]:
    """Canonical varints at the front of ``raw``: (values, bytes used).

    With ``final`` the bytes must hold whole varints only; otherwise an unfinished varint at
    the end is left for the next chunk (its bytes are not counted as used).
    """
    if raw.size == 0:
        return np.empty(0, dtype=np.int64), 0
    if int(raw.max()) < 0x80:
        return raw.astype(np.int64), raw.size
    ends = np.flatnonzero(raw < 0x80)
    used = int(ends[-1]) + 1 if ends.size else 0
    if raw.size - used >= MAX_VARINT_BYTES:
        raise CodecError(f"varint longer than {MAX_VARINT_BYTES} bytes in token headers")
    if final and used != raw.size:
        raise CodecError("truncated varint in token headers")
    if not ends.size:
        return np.empty(0, dtype=np.int64), 0
    starts = np.concatenate(([0], ends[:-1] + 1))
    sizes = ends - starts + 1
    if int(sizes.max()) > MAX_VARINT_BYTES:
        raise CodecError(f"varint longer than {MAX_VARINT_BYTES} bytes in token headers")
    last = raw[ends]
    if ((sizes > 1) & (last == 0)).any():
        raise CodecError("overlong varint in token headers (not the shortest form)")
    if ((sizes == MAX_VARINT_BYTES) & (last > 0x0F)).any():
        raise CodecError("varint of 2**32 or more in token headers")
    body = raw[:used]
    shift = 7 * (np.arange(used, dtype=np.int64) - np.repeat(starts, sizes))
    return np.add.reduceat((body & 0x7F).astype(np.int64) << shift, starts), used


class _Output:
    """The output pixels, allocated (zeroed) on the first non-zero write or at the end, so that
    a matte found inconsistent before then costs no memory of its declared size."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._array: U8 | None = None

    def array(self) -> U8:
        if self._array is None:
            self._array = np.zeros(self.size, dtype=np.uint8)
        return self._array


def _decode_tokens(headers: Reader, n_headers: int, payload: Reader, height: int, width: int) -> U8:
    """Read ``n_headers`` header bytes and the payload they need; write pixels as they come."""
    n = height * width
    out = _Output(n)
    done, left, carry = 0, n_headers, b""
    while left:
        chunk = headers.read(min(left, rle_input.CHUNK))
        if not chunk:
            raise CodecError("body ends inside the token headers")
        left -= len(chunk)
        raw = np.frombuffer(carry + chunk, dtype=np.uint8)
        values, used = parse_varints(raw, final=not left)
        carry = raw[used:].tobytes()
        if values.size:
            done = _write_tokens(out, done, values, payload, width)
    if done != n:
        raise CodecError(f"runs cover {done} pixels, size {height}x{width} needs {n}")
    return out.array().reshape(height, width)


def split_tokens(lens: I64, kinds: I64, which: NDArray[np.bool_], cap: int) -> tuple[I64, I64]:
    """Cut the tokens marked ``which`` into pieces of at most ``cap`` pixels (same pixels)."""
    pieces = np.where(which, -(-lens // cap), 1)
    if int(pieces.max(initial=1)) == 1:
        return lens, kinds
    first = np.cumsum(pieces) - pieces
    new_kinds = np.repeat(kinds, pieces)
    new_lens = np.repeat(np.where(which, cap, lens), pieces)
    last = first + pieces - 1
    new_lens[last] = lens - (pieces - 1) * np.where(which, cap, 0)
    return new_lens, new_kinds


def _write_tokens(out: _Output, done: int, values: I64, payload: Reader, width: int) -> int:
    """Write one chunk of tokens, in batches of bounded size; return pixels written so far."""
    kinds = values & 3
    lens = (values >> 2) + 1
    covered = int(lens.sum())
    if covered > out.size - done:
        raise CodecError(f"runs cover more than the {out.size} pixels of the matte")
    lens, kinds = split_tokens(lens, kinds, kinds == KIND_LITERAL, _PAYLOAD_CAP)
    per_token = np.where(kinds == KIND_LITERAL, lens, (kinds == KIND_VALUE).astype(np.int64))
    pay_end = np.cumsum(per_token)
    pix_end = np.cumsum(lens)
    i = 0
    while i < lens.size:
        pay0 = int(pay_end[i] - per_token[i])
        pix0 = int(pix_end[i] - lens[i])
        j = min(
            int(np.searchsorted(pay_end, pay0 + _PAYLOAD_CAP, "right")),
            int(np.searchsorted(pix_end, pix0 + _PIXEL_CAP, "right")),
        )
        j = max(j, i + 1)
        need = int(pay_end[j - 1]) - pay0
        got = payload.read(need) if need else b""
        if len(got) < need:
            raise CodecError("payload too short for the tokens")
        start = done + pix0
        if j == i + 1 and lens[i] > _PIXEL_CAP:  # one long run: fill in place
            fill = {KIND_FULL: 255, KIND_VALUE: got[0] if got else 0}.get(int(kinds[i]), 0)
            if fill:
                out.array()[start : start + int(lens[i])] = fill
        else:
            _write_batch(out, start, lens[i:j], kinds[i:j], per_token[i:j], got, width)
        i = j
    return done + covered


def _write_batch(
    out: _Output, start: int, lens: I64, kinds: I64, per_token: I64, got: bytes, width: int
) -> None:
    pay = np.frombuffer(got, dtype=np.uint8)
    lit = kinds == KIND_LITERAL
    val = kinds == KIND_VALUE
    fills = np.where(kinds == KIND_FULL, 255, 0).astype(np.uint8)
    if val.any():
        fills[val] = pay[(np.cumsum(per_token) - per_token)[val]]
        residuals = pay[np.repeat(lit, per_token)]
    else:
        residuals = pay
    end = start + int(lens.sum())
    if fills.any():
        out.array()[start:end] = np.repeat(fills, lens)
    if residuals.size:
        starts = start + np.cumsum(lens) - lens
        undo_prediction(out.array(), width, starts[lit], lens[lit], residuals)


def undo_prediction(
    out: U8, width: int, starts: I64, lens: I64, residuals: U8, dense: bool | None = None
) -> None:
    """Write literal pixels into ``out``: pixel = residual + pixel above (mod 256).

    Every pixel before the first span, and every non-literal pixel after it, must be final.
    Sparse path (few literals): sort literal pixels by column, so each vertical chain of
    literals is contiguous, then a segmented cumulative sum. Dense path: one vectorised add per
    row the spans touch. Both give the same result; ``dense`` forces one (for tests).
    """
    total = residuals.size
    lo = int(starts[0])
    hi = int(starts[-1] + lens[-1])
    rows = (hi - 1) // width - lo // width + 1
    if dense is None:
        dense = total > 100 * rows
    if dense:
        mask = _span_mask(starts - lo, lens, hi - lo)
        out[lo:hi][mask] = residuals
        for row in range(max(1, lo // width), (hi - 1) // width + 1):
            a, b = max(lo, row * width), min(hi, (row + 1) * width)
            np.add(out[a:b], out[a - width : b - width], out=out[a:b], where=mask[a - lo : b - lo])
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


def _span_indices(starts: I64, lens: I64, total: int) -> I64:
    """Concatenation of ``range(s, s + l)`` for each span (all l ≥ 1), vectorised."""
    steps = np.ones(total, dtype=np.int64)
    steps[0] = starts[0]
    steps[np.cumsum(lens[:-1])] = starts[1:] - (starts[:-1] + lens[:-1]) + 1
    return np.cumsum(steps)


def _span_mask(starts: I64, lens: I64, n: int) -> NDArray[np.bool_]:
    """Boolean mask of n pixels, True inside the given sorted, disjoint spans."""
    sizes = np.empty(2 * lens.size + 1, dtype=np.int64)
    sizes[1::2] = lens
    sizes[0::2] = np.concatenate((starts, [n])) - np.concatenate(([0], starts + lens))
    return np.repeat(np.arange(sizes.size) % 2 == 1, sizes)
