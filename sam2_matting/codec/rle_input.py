"""What stands in front of the ``matte-rle/1`` decoder (docs/matte-rle.md): the format's
constants and exact length bounds, the checks that need no decoding, and the byte sources that
decode base64 and inflate in bounded chunks.

    peek_size(obj, expected_shape=(540, 960))   # (H, W), or CodecError before any decoding
    max_counts_chars(H * W)                     # 4 * ceil((2*H*W + v(H*W) + 1) / 3)
    Base64Reader(text, skip).read(n)            # blob bytes from byte ``skip`` on
    InflateReader(Base64Reader(text, 1), limit).read(n)
"""

from __future__ import annotations

import binascii
import zlib
from typing import Any, Protocol

from sam2_matting.codec.limits import DEFAULT_MAX_PIXELS, check_size
from sam2_matting.errors import CodecError

__all__ = [
    "CHUNK",
    "FORMAT",
    "MAX_TOKEN_PIXELS",
    "Base64Reader",
    "InflateReader",
    "Reader",
    "check_header",
    "encode_varint",
    "max_blob_bytes",
    "max_body_bytes",
    "max_counts_chars",
    "peek_size",
    "varint_size",
]

FORMAT = "matte-rle/1"
MAX_VARINT_BYTES = 5
#: Varints hold values below 2**32, so a token is at most 2**30 pixels long.
MAX_VARINT_VALUE = 2**32 - 1
MAX_TOKEN_PIXELS = 2**30
#: Bytes read, inflated or base64-decoded at a time.
CHUNK = 1 << 16
# The character before "==" (before "=") carries 4 (2) unused low bits: they must be zero.
_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_DELETE = (_B64_CHARS + "=").encode("ascii")
_PAD_OK = {1: frozenset(_B64_CHARS[::4]), 2: frozenset(_B64_CHARS[::16])}


def varint_size(value: int) -> int:
    """Bytes in the (canonical) LEB128 form of ``value`` (0 <= value < 2**35)."""
    return max(1, -(-int(value).bit_length() // 7))


def encode_varint(value: int) -> bytes:
    """The canonical LEB128 form of ``value`` (0 <= value), one value at a time: for fixtures,
    tests and benchmarks that build bodies by hand (the encoder has its own vectorised form)."""
    if value < 0:
        raise ValueError(f"a varint is not negative, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def max_body_bytes(pixels: int) -> int:
    """Largest valid body: one 1-byte header and one payload byte per pixel, plus the count."""
    return 2 * pixels + varint_size(pixels)


def max_blob_bytes(pixels: int) -> int:
    """Largest valid blob: the method byte and the largest body."""
    return 1 + max_body_bytes(pixels)


def max_counts_chars(pixels: int) -> int:
    """Length of the base64 of the largest valid blob: ``4 * ceil(max_blob_bytes / 3)``."""
    return 4 * -(-max_blob_bytes(pixels) // 3)


# ---------------------------------------------------------------------------------------------
# Checks that need no decoding


def peek_size(
    obj: Any,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    expected_shape: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """Return the declared ``(H, W)`` after every check that decodes nothing.

    Checks: a JSON object, the format, the size (and ``max_pixels``, ``expected_shape``), that
    ``counts`` is a string of canonical base64 shape (length, padding, unused bits) and that
    it holds at least 1 and at most :func:`max_blob_bytes` bytes.
    """
    height, width, _ = check_header(obj, max_pixels, expected_shape)
    return height, width


def check_header(
    obj: Any, max_pixels: int, expected_shape: tuple[int, int] | None
) -> tuple[int, int, int]:
    """(H, W, blob length) of a matte that passes every check short of decoding."""
    if not isinstance(obj, dict):
        raise CodecError(f"matte must be a JSON object, got {type(obj).__name__}")
    if obj.get("format") != FORMAT:
        raise CodecError(f"format must be {FORMAT!r}, got {obj.get('format')!r}")
    height, width = check_size(obj.get("size"), max_pixels, integral_floats=True)
    if expected_shape is not None and (height, width) != tuple(expected_shape):
        want = "x".join(str(v) for v in expected_shape)
        raise CodecError(f"matte is {height}x{width} (H x W), expected {want}")
    counts = obj.get("counts")
    if not isinstance(counts, str):
        raise CodecError(f"counts must be a string, got {type(counts).__name__}")
    n = height * width
    limit = max_blob_bytes(n)
    if len(counts) > max_counts_chars(n):
        raise CodecError(
            f"counts is {len(counts)} characters, more than the {max_counts_chars(n)} "
            f"of the largest valid {height}x{width} blob"
        )
    if not counts:
        raise CodecError("counts is empty: a blob has at least its method byte")
    if len(counts) % 4:
        raise CodecError("counts is not valid base64: length is not a multiple of 4")
    pad = 2 if counts.endswith("==") else 1 if counts.endswith("=") else 0
    if counts.find("=", 0, len(counts) - pad) != -1:
        raise CodecError("counts is not valid base64: '=' anywhere but in the last two places")
    if pad and counts[-pad - 1] in _B64_CHARS and counts[-pad - 1] not in _PAD_OK[pad]:
        raise CodecError("counts is not canonical base64: unused bits before '=' are not zero")
    blob_len = len(counts) // 4 * 3 - pad
    if blob_len > limit:
        raise CodecError(
            f"counts holds {blob_len} bytes, more than the {limit} of the largest valid "
            f"{height}x{width} blob"
        )
    return height, width, blob_len


# ---------------------------------------------------------------------------------------------
# Byte sources


class Reader(Protocol):
    def read(self, size: int) -> bytes: ...


class Base64Reader:
    """Blob bytes from the (shape-checked) base64 text, from byte ``skip`` on, in chunks."""

    def __init__(self, text: str, skip: int = 0) -> None:
        self.text = text
        self.pos = skip // 3 * 4
        self.buf = b""
        self.off = 0
        self.drop = skip % 3

    def read(self, size: int) -> bytes:
        """``size`` bytes, or fewer at the end of the blob (b"": nothing left)."""
        if self.off + size <= len(self.buf):  # the common case: no copy of the buffer
            self.off += size
            return self.buf[self.off - size : self.off]
        parts, have = [], 0
        while True:
            part = self.buf[self.off : self.off + size - have]
            self.off += len(part)
            parts.append(part)
            have += len(part)
            if have >= size or self.pos >= len(self.text):
                return b"".join(parts)
            self._decode_next()

    def _decode_next(self) -> None:
        end = min(len(self.text), self.pos + max(4, CHUNK // 3 * 4))
        try:
            chunk = self.text[self.pos : end].encode("ascii")
        except UnicodeEncodeError:
            chunk = b"?"
        # "=" is only at the very end (checked before): delete the alphabet and it, and
        # anything left is a foreign character.
        if chunk.translate(None, _B64_DELETE):
            raise CodecError("counts is not valid base64: a character outside A-Z a-z 0-9 + /")
        self.buf = binascii.a2b_base64(chunk)
        self.off = self.drop
        self.drop = 0
        self.pos = end


class InflateReader:
    """The raw deflate stream in ``source``, inflated in bounded pieces, at most ``limit``."""

    def __init__(self, source: Base64Reader, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.total = 0
        self.inflater = zlib.decompressobj(-15)
        self.pending = b""

    def read(self, size: int) -> bytes:
        """``size`` inflated bytes, or fewer where the stream ends."""
        parts, have = [], 0
        while have < size and not self.inflater.eof:
            fresh = False
            if not self.pending:
                self.pending = self.source.read(CHUNK)
                fresh = True
            # Never more than the limit allows plus one byte, so a bomb stops right there.
            want = min(size - have, self.limit + 1 - self.total)
            try:
                part = self.inflater.decompress(self.pending, want)
            except zlib.error as err:
                raise CodecError(f"corrupt deflate stream: {err}") from None
            if not part and fresh and not self.pending and not self.inflater.eof:
                raise CodecError("truncated deflate stream")
            self.pending = self.inflater.unconsumed_tail
            self.total += len(part)
            if self.total > self.limit:
                raise CodecError(
                    f"deflate stream inflates past {self.limit} bytes, more than the size needs"
                )
            parts.append(part)
            have += len(part)
        return b"".join(parts)

    def check_end(self) -> None:
        """The stream ended exactly at the end of the blob."""
        if not self.inflater.eof:
            raise CodecError("deflate stream continues past the body the tokens describe")
        stray = len(self.inflater.unused_data) + len(self.pending) + len(self.source.read(CHUNK))
        if stray:
            raise CodecError("stray bytes after the deflate stream")
