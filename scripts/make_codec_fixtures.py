"""Write the cross-language matte codec fixtures in tests/fixtures/codec/ from the Python encoder.

    .venv/bin/python scripts/make_codec_fixtures.py          # rewrite the fixtures
    .venv/bin/python scripts/make_codec_fixtures.py --check  # exit 1 if they are out of date

Each ``<name>.json`` holds a matte-rle/1 object (``matte``), the method byte it uses and the
expected pixels, as base64 of the raw row-major bytes (``pixels_b64``) or, for big simple
mattes, in the course project's ``"v:len,…"`` form (``pixels_runs``). ``bad.json`` lists inputs
every decoder must reject (Python: CodecError, JavaScript: MatteCodecError). Some fixtures are
built by hand from the encoder's internals to reach decoder paths the encoder never picks on
small inputs (deflate stored blocks, many small deflate blocks).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam2_matting.codec import CodecError, decode_matte, encode_legacy, encode_matte  # noqa: E402
from sam2_matting.codec.rle import FORMAT, _encode_body, max_blob_bytes  # noqa: E402
from sam2_matting.codec.rle_input import encode_varint  # noqa: E402
from sam2_matting.codec.synthetic import noise_matte, soft_matte  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "codec"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _body(tokens: list[tuple[int, int]], payload: bytes = b"") -> bytes:
    """A token body from (kind, length) pairs and payload bytes."""
    headers = b"".join(encode_varint(((length - 1) << 2) | kind) for kind, length in tokens)
    return encode_varint(len(headers)) + headers + payload


def _matte(size: list[Any], blob: bytes, loose: bool = False) -> dict[str, Any]:
    counts = _b64(blob)
    return {"format": FORMAT, "size": size, "counts": _loose_bits(counts) if loose else counts}


def _deflate(data: bytes, level: int = 6, mem_level: int = 8) -> bytes:
    packer = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level)
    return packer.compress(data) + packer.flush()


def _case(name: str, note: str, alpha: np.ndarray, matte: dict[str, Any] | None = None) -> dict:
    """A valid fixture; ``matte`` defaults to the encoder's output for ``alpha``."""
    matte = encode_matte(alpha) if matte is None else matte
    decoded = decode_matte(matte)  # every fixture must round-trip in Python first
    assert decoded.shape == alpha.shape and (decoded == alpha).all(), name
    case: dict[str, Any] = {"name": name, "note": note, "matte": matte}
    case["method"] = base64.b64decode(matte["counts"])[0]
    if alpha.size <= 16384:
        case["pixels_b64"] = _b64(alpha.tobytes())
    else:
        case["pixels_runs"] = encode_legacy(alpha)["counts"]
    return case


def valid_cases() -> list[dict[str, Any]]:
    rng = np.random.default_rng(2024)
    worked = np.array([[0, 0, 0, 0], [0, 64, 255, 255], [0, 96, 255, 255]], dtype=np.uint8)
    row = rng.choice(
        np.array([0, 255, 3, 200], dtype=np.uint8), size=(1, 40), p=[0.4, 0.4, 0.1, 0.1]
    )
    col = rng.choice(np.array([0, 255, 9], dtype=np.uint8), size=(33, 1), p=[0.45, 0.45, 0.1])
    value_runs = np.zeros((12, 20), dtype=np.uint8)
    value_runs[2:10, 3:17] = 255
    value_runs[4:8, :] = 128  # runs of a mid value: kind-3 tokens between literals
    value_runs[4:8, 9] = rng.integers(1, 255, size=4, dtype=np.uint8)
    sparse = np.zeros((1024, 1024), dtype=np.uint8)
    sparse[600, 400:410] = 255
    sparse[900, 10] = 17
    sparse[1023, 1023] = 255
    stored = np.array([[0, 0, 9, 255, 255, 7, 0, 0, 1], [2, 0, 0, 255, 255, 8, 0, 0, 3]], np.uint8)
    soft = soft_matte(72, 128, seed=5)
    soft_body = _body_of(soft)
    cases = [
        _case("worked_example", "the 3x4 example of docs/matte-rle.md, stored body", worked),
        _case("single_zero", "1x1 matte of 0 (a one-pixel literal)", np.zeros((1, 1), np.uint8)),
        _case("single_full", "1x1 matte of 255", np.full((1, 1), 255, np.uint8)),
        _case("single_mid", "1x1 matte of 200", np.full((1, 1), 200, np.uint8)),
        _case("row_1x40", "one row: literals have nothing above", row),
        _case("column_33x1", "one column: every literal predicts from the pixel above", col),
        _case("const_zero", "16x16 of 0: one token", np.zeros((16, 16), np.uint8)),
        _case("const_full", "16x16 of 255: one token", np.full((16, 16), 255, np.uint8)),
        _case("const_mid", "16x16 of 77: one value-run token", np.full((16, 16), 77, np.uint8)),
        _case("value_runs", "value-run payload bytes interleaved with literals", value_runs),
        _case("stored_body", "method 0: deflate would not shrink this body", stored),
        _case("noise_24x32", "uniform noise: method 2, raw pixels", noise_matte(24, 32, seed=1)),
        _case("soft_72x128", "synthetic soft matte: deflated body", soft),
        _case("sparse_1024", "long runs: 3- and 4-byte varint headers", sparse),
        _case(
            "size_written_as_float",
            "the worked example with the size written [3.0, 4.0]: a size is a value, 3.0 is 3",
            worked,
            _with(size=[3.0, 4.0]),
        ),
        _case(
            "largest_valid_blob",
            "3x4 as 12 one-pixel literals: the largest valid blob, 2*12 + 1 + 1 = 26 bytes",
            worked,
            _matte([3, 4], b"\0" + _all_literals(worked)),
        ),
        _case(
            "deflate_at_length_limit",
            "deflate padded with empty stored blocks to exactly the largest valid blob length",
            np.zeros(_DEFLATE_AT_LIMIT[1], np.uint8),
            _padded_deflate(_DEFLATE_AT_LIMIT),
        ),
        _case(
            "deflate_many_blocks",
            "deflate with memLevel 1: many small fixed and dynamic Huffman blocks",
            soft,
            _matte([72, 128], b"\x01" + _deflate(soft_body, 9, 1)),
        ),
        _case(
            "deflate_stored_blocks",
            "deflate level 0: stored blocks inside a deflate stream",
            soft,
            _matte([72, 128], b"\x01" + _deflate(soft_body, 0)),
        ),
    ]
    methods = {case["method"] for case in cases}
    assert methods == {0, 1, 2}, methods
    return cases


def _all_literals(alpha: np.ndarray) -> bytes:
    """The body of ``alpha`` as one-pixel literal tokens: 2 bytes a pixel, the largest body."""
    flat = alpha.reshape(-1).astype(np.int16)
    above = np.concatenate((np.zeros(alpha.shape[1], np.int16), flat[: -alpha.shape[1]]))
    return _body([(2, 1)] * flat.size, bytes(((flat - above) % 256).astype(np.uint8)))


def _padded_shape(over: int) -> tuple[int, tuple[int, int]]:
    """(empty stored blocks, shape 1xW) for which an all-zero matte deflated as stored blocks
    is ``over`` bytes past the largest valid blob (0: exactly at it)."""
    for width in range(2, 200):
        body = _body([(0, width)])
        room = max_blob_bytes(width) + over - 1 - (5 + len(body))  # final stored block
        if room >= 0 and room % 5 == 0:
            return room // 5, (1, width)
    raise AssertionError("no shape found")


_DEFLATE_AT_LIMIT = _padded_shape(0)
_DEFLATE_OVER_LIMIT = _padded_shape(1)


def _padded_deflate(spec: tuple[int, tuple[int, int]]) -> dict[str, Any]:
    empty, (height, width) = spec
    body = _body([(0, width)])
    final = b"\x01" + len(body).to_bytes(2, "little") + (0xFFFF ^ len(body)).to_bytes(2, "little")
    data = b"\x00\x00\x00\xff\xff" * empty + final + body
    return _matte([height, width], b"\x01" + data)


def _loose_bits(counts: str) -> str:
    """The same base64 with the lowest unused bit before the padding set."""
    pad = len(counts) - len(counts.rstrip("="))
    i = len(counts) - pad - 1
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return counts[:i] + alphabet[alphabet.index(counts[i]) + 1] + counts[i + 1 :]


def _body_of(alpha: np.ndarray) -> bytes:
    return _encode_body(np.ascontiguousarray(alpha).reshape(-1), alpha.shape[1])


def bad_cases() -> list[dict[str, Any]]:
    worked = np.array([[0, 0, 0, 0], [0, 64, 255, 255], [0, 96, 255, 255]], dtype=np.uint8)
    ok = _body([(0, 5), (2, 1), (1, 2), (2, 2), (1, 2)], bytes([64, 0, 32]))  # the 3x4 example
    good = _deflate(_body_of(soft_matte(24, 32, seed=2)))
    cases: list[tuple[str, Any, int | None]] = [
        ("not_an_object", [3, 4], None),
        ("null", None, None),
        (
            "wrong_format",
            {"format": "matte-rle/2", "size": [3, 4], "counts": _b64(b"\0" + ok)},
            None,
        ),
        ("missing_size", {"format": FORMAT, "counts": _b64(b"\0" + ok)}, None),
        ("size_not_list", _with(size="3x4"), None),
        ("size_three_numbers", _with(size=[3, 4, 1]), None),
        ("size_negative", _with(size=[-3, -4]), None),
        ("size_zero", _with(size=[0, 4]), None),
        ("size_string", _with(size=["3", 4]), None),
        ("size_bool", _with(size=[True, 4]), None),
        ("size_absurd", _with(size=[10**30, 1]), None),
        ("size_over_limit", _matte([100000, 100000], b"\0" + _body([(0, 1)])), None),
        ("size_over_configured_limit", _matte([3, 4], b"\0" + ok), 11),
        ("counts_missing", {"format": FORMAT, "size": [3, 4]}, None),
        ("counts_number", _with(counts=1234), None),
        ("counts_empty", _with(counts=""), None),
        ("counts_bad_character", _with(counts="AAUQ*gUGBUAAIA=="), None),
        ("counts_bad_padding", _with(counts="AAUQAgUGBUAAIA="), None),
        ("counts_inner_padding", _with(counts="AA=QAgUGBUAAIA=="), None),
        ("counts_whitespace", _with(counts="AAUQ AgUGBUAAIA="), None),
        ("counts_three_pads", _with(counts="AAUQAgUGBUAAI==="), None),
        ("counts_non_ascii", _with(counts="AAUQ\u00e9gUGBUAAIA=="), None),
        ("counts_char_aliasing_A", _with(counts="AAUQ\u0141gUGBUAAIA=="), None),
        ("counts_too_long_for_size", _matte([1, 1], b"\0" * 300), None),
        (
            "counts_one_group_over_largest",
            _matte([3, 4], b"\0" + _all_literals(worked) + b"\0" * 3),
            None,
        ),
        ("blob_one_byte_over_largest", _matte([3, 4], b"\0" + _all_literals(worked) + b"\0"), None),
        ("deflate_one_byte_over_length_limit", _padded_deflate(_DEFLATE_OVER_LIMIT), None),
        ("base64_loose_bits_before_two_pads", _with(counts=_loose_bits("AAUQAgUGBUAAIA==")), None),
        ("base64_loose_bits_before_one_pad", _matte([1, 1], b"\x02\x07", loose=True), None),
        ("varint_count_overlong_2_bytes", _matte([3, 4], b"\0\x85\x00" + ok[1:]), None),
        ("varint_count_overlong_5_bytes", _matte([3, 4], b"\0\x85\x80\x80\x80\x00" + ok[1:]), None),
        (
            "varint_header_overlong_2_bytes",
            _matte([3, 4], b"\0\x06\x90\x00" + ok[2:]),
            None,
        ),
        (
            "varint_header_overlong_5_bytes_zero",
            _matte([3, 4], b"\0\x06\x80\x80\x80\x80\x00\x28"),
            None,
        ),
        (
            "varint_header_2_to_the_32",
            _matte([1, 2**31 - 1], b"\0\x05" + encode_varint(4 * (2**31 - 2))),
            2**31 - 1,
        ),
        ("unknown_method", _matte([3, 4], b"\x03" + ok), None),
        ("raw_short", _matte([3, 4], b"\x02" + bytes(11)), None),
        ("raw_long", _matte([3, 4], b"\x02" + bytes(13)), None),
        ("no_tokens", _matte([3, 4], b"\0" + _body([])), None),
        ("runs_short", _matte([3, 4], b"\0" + _body([(0, 11)])), None),
        ("runs_long", _matte([3, 4], b"\0" + _body([(0, 5), (1, 8)])), None),
        ("run_far_too_long", _matte([3, 4], b"\0" + _body([(1, 2**30)])), None),
        ("payload_short", _matte([3, 4], b"\0" + ok[:-1]), None),
        ("payload_extra", _matte([3, 4], b"\0" + ok + b"\x07"), None),
        ("value_run_without_value", _matte([3, 4], b"\0" + _body([(3, 12)])), None),
        ("headers_past_body", _matte([3, 4], b"\0" + b"\x09\x2c"), None),
        ("body_empty", _matte([3, 4], b"\0"), None),
        ("truncated_varint", _matte([3, 4], b"\0" + b"\x01\x80"), None),
        ("varint_six_bytes", _matte([3, 4], b"\0" + b"\x06\x80\x80\x80\x80\x80\x00"), None),
        ("deflate_bad_block_type", _matte([3, 4], b"\x01\x07\x00"), None),
        ("deflate_truncated", _matte([24, 32], b"\x01" + good[: len(good) // 2]), None),
        ("deflate_trailing_bytes", _matte([24, 32], b"\x01" + good + b"\0"), None),
        ("deflate_empty", _matte([3, 4], b"\x01"), None),
        ("deflate_bomb", _matte([1000, 1000], b"\x01" + _deflate(bytes(1 << 22), 9)), None),
    ]
    out = []
    for name, matte, max_pixels in cases:
        kwargs: dict[str, Any] = {} if max_pixels is None else {"max_pixels": max_pixels}
        try:
            decode_matte(matte, **kwargs)
        except CodecError:
            pass
        else:
            raise AssertionError(f"bad case {name} decodes in Python")
        case: dict[str, Any] = {"name": name, "matte": matte}
        if max_pixels is not None:
            case["max_pixels"] = max_pixels
        out.append(case)
    return out


def _with(**fields: Any) -> dict[str, Any]:
    """The worked example with some fields replaced."""
    matte = {"format": FORMAT, "size": [3, 4], "counts": "AAUQAgUGBUAAIA=="}
    matte.update(fields)
    return matte


def render() -> dict[str, str]:
    """File name -> JSON text for every fixture."""
    files = {f"{case['name']}.json": _dump(case) for case in valid_cases()}
    files["bad.json"] = _dump({"cases": bad_cases()})
    return files


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=1) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    files = render()
    stale = sorted(
        name
        for name, text in files.items()
        if not (FIXTURES / name).is_file() or (FIXTURES / name).read_text() != text
    )
    extra = sorted(p.name for p in FIXTURES.glob("*.json") if p.name not in files)
    if args.check:
        for name in stale + extra:
            print(f"out of date: {name}")
        return 1 if stale or extra else 0
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in extra:
        (FIXTURES / name).unlink()
    for name in stale:
        (FIXTURES / name).write_text(files[name])
    total = sum(len(text) for text in files.values())
    where = FIXTURES.relative_to(REPO)
    print(f"{len(files)} fixtures in {where}, {total} bytes; {len(stale)} written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
