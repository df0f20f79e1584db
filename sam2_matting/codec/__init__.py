"""Alpha-matte codecs shared by the server, the CLI, the web page and the tests.

    from sam2_matting.codec import encode_matte, decode_matte
    obj = encode_matte(alpha)        # uint8 (H, W) -> {"format": "matte-rle/1", "size", "counts"}
    alpha = decode_matte(obj)        # CodecError on malformed input or H*W over max_pixels
    alpha = decode_matte(obj, expected_shape=(H, W))  # another size is refused before decoding
    H, W = peek_size(obj)            # every check that needs no decoding

* ``matte-rle/1`` (``encode_matte`` / ``decode_matte``): the streamed, lossless format,
  specified in docs/matte-rle.md; a browser decoder ships as ``matte_rle.mjs`` next to this file.
* ``encode_legacy`` / ``decode_legacy``: the course project's ``"v:len,…"`` text form.
* ``encode_coco_binary`` / ``decode_coco_binary``: compressed COCO RLE of ``alpha >= 128`` for
  the stock SAM 2 demo frontend (binary masks only).

Every decoder takes ``max_pixels`` (default ``DEFAULT_MAX_PIXELS`` = 8192×8192) and checks it
before allocating; errors are :class:`sam2_matting.errors.CodecError`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sam2_matting.codec.coco import decode_coco_binary, encode_coco_binary
from sam2_matting.codec.legacy import decode_legacy, encode_legacy
from sam2_matting.codec.limits import DEFAULT_MAX_PIXELS, HARD_MAX_PIXELS
from sam2_matting.codec.rle import FORMAT, decode_matte, encode_matte, peek_size
from sam2_matting.errors import CodecError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT",
    "HARD_MAX_PIXELS",
    "CodecError",
    "decode_coco_binary",
    "decode_legacy",
    "decode_matte",
    "encode_coco_binary",
    "encode_legacy",
    "encode_matte",
    "js_decoder_path",
    "peek_size",
]


def js_decoder_path() -> Path:
    """Path of the browser decoder ``matte_rle.mjs`` (an ES module, no dependencies)."""
    return Path(str(resources.files("sam2_matting.codec").joinpath("matte_rle.mjs")))
