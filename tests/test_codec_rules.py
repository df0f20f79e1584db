"""matte-rle/1: the exact rules of docs/matte-rle.md (length bounds, canonical varints and
base64, sizes as values, the pixel limit, the empty blob, the encoder's tie order, the size
check before decoding) and the streamed decoder across its chunk and batch boundaries."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sam2_matting.codec import (
    FORMAT,
    CodecError,
    decode_matte,
    encode_matte,
    peek_size,
    rle,
    rle_input,
)
from sam2_matting.codec import rle_decode as dec
from sam2_matting.codec.rle_input import encode_varint
from sam2_matting.codec.synthetic import soft_matte

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
WORKED = np.array([[0, 0, 0, 0], [0, 64, 255, 255], [0, 96, 255, 255]], dtype=np.uint8)


def _matte(size: list[Any], blob: bytes) -> dict[str, Any]:
    return {"format": FORMAT, "size": size, "counts": base64.b64encode(blob).decode()}


def _all_literals(alpha: np.ndarray) -> bytes:
    """``alpha`` as one-pixel literal tokens: the largest valid body for its size."""
    flat = alpha.reshape(-1).astype(np.int64)
    above = np.concatenate((np.zeros(alpha.shape[1], np.int64), flat[: -alpha.shape[1]]))
    return encode_varint(flat.size) + b"\x02" * flat.size + bytes(((flat - above) % 256).tolist())


# --------------------------------------------------------------------------- length bounds


@pytest.mark.parametrize("pixels", [1, 12, 127, 128, 16383, 16384, 2**21, 2**28, 2**31 - 1])
def test_length_bounds_are_the_stated_formula(pixels: int) -> None:
    v = len(encode_varint(pixels))
    assert dec.max_body_bytes(pixels) == 2 * pixels + v
    assert dec.max_blob_bytes(pixels) == 2 * pixels + v + 1
    assert dec.max_counts_chars(pixels) == 4 * -(-(2 * pixels + v + 1) // 3)


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (1, 64), (128, 1), (1, 200), (130, 130)])
def test_largest_valid_blob_is_accepted_and_one_more_byte_or_group_is_not(
    shape: tuple[int, int],
) -> None:
    count = shape[0] * shape[1]
    alpha = (np.arange(count) * 37 % 256).astype(np.uint8).reshape(shape)
    blob = b"\0" + _all_literals(alpha)
    assert len(blob) == dec.max_blob_bytes(alpha.size)
    largest = _matte(list(shape), blob)
    assert len(largest["counts"]) == dec.max_counts_chars(alpha.size)
    np.testing.assert_array_equal(decode_matte(largest), alpha)
    with pytest.raises(CodecError, match=r"(bytes|characters), more than the .* largest valid"):
        decode_matte(_matte(list(shape), blob + b"\0"))
    with pytest.raises(CodecError, match=r"characters, more than the .* largest valid"):
        decode_matte({**largest, "counts": largest["counts"] + "AAAA"})


def _padded_deflate(width: int, empty_blocks: int) -> dict[str, Any]:
    """A 1 x width matte of zeros, deflated as empty stored blocks then one stored block."""
    body = encode_varint(1) + encode_varint(4 * (width - 1))
    assert len(body) == 2
    final = b"\x01" + len(body).to_bytes(2, "little") + (0xFFFF ^ len(body)).to_bytes(2, "little")
    return _matte([1, width], b"\x01" + b"\0\0\0\xff\xff" * empty_blocks + final + body)


@pytest.mark.parametrize("over", [0, 1, 2])
def test_deflate_data_is_bounded_by_the_largest_blob_too(over: int) -> None:
    # 1 + 5k + 7 = 2w + 2 + over, w < 32: a valid deflate stream, any length we like.
    for width in range(2, 32):
        k, rest = divmod(2 * width + 2 + over - 8, 5)
        if k >= 1 and rest == 0:
            break
    matte = _padded_deflate(width, k)
    assert len(base64.b64decode(matte["counts"])) == dec.max_blob_bytes(width) + over
    if over == 0:
        assert not decode_matte(matte).any()
    else:
        with pytest.raises(CodecError, match="largest valid"):
            decode_matte(matte)


def test_inflating_stops_right_after_the_body_limit() -> None:
    data = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = data.compress(bytes(1 << 20)) + data.flush()
    reader = rle_input.InflateReader(
        rle_input.Base64Reader(base64.b64encode(stream).decode()), 1000
    )
    with pytest.raises(CodecError, match="inflates past 1000 bytes"):
        reader.read(2000)
    assert reader.total == 1001


# --------------------------------------------------------------------------- varints


@pytest.mark.parametrize(
    "raw",
    [
        b"\x80\x00",  # 0 in 2 bytes
        b"\x81\x00",  # 1 in 2 bytes
        b"\xff\x80\x00",  # 127 in 3 bytes
        b"\x80\x80\x80\x80\x00",  # 0 in 5 bytes
        b"\x85\x80\x80\x80\x00",  # 5 in 5 bytes
        b"\x80\x80\x80\x80\x10",  # 2**32
        b"\xff\xff\xff\xff\x7f",  # 2**35 - 1
        b"\x80\x80\x80\x80\x80\x00",  # 6 bytes
    ],
)
def test_non_canonical_or_too_big_varints_are_refused(raw: bytes) -> None:
    with pytest.raises(CodecError, match="varint"):
        dec.parse_varints(np.frombuffer(raw, np.uint8))
    with pytest.raises(CodecError, match="varint"):  # the header count is read one by one
        dec._read_varint(rle_input.Base64Reader(base64.b64encode(raw).decode()))
    # and inside a real matte: the worked example with its first header in that form
    headers = raw + bytes([2, 5, 6, 5])
    blob = b"\0" + encode_varint(len(headers)) + headers + bytes([64, 0, 32])
    with pytest.raises(CodecError, match="varint"):
        decode_matte(_matte([3, 4], blob))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40))
def test_every_value_below_2_to_the_32_has_one_form(values: list[int]) -> None:
    packed = rle._varints(np.array(values, dtype=np.int64))
    assert packed.tobytes() == b"".join(encode_varint(v) for v in values)
    parsed, used = dec.parse_varints(packed)
    assert used == packed.size and parsed.tolist() == values
    for cut in range(1, packed.size):  # any chunk boundary: the tail waits for the next chunk
        head, used = dec.parse_varints(packed[:cut], final=False)
        tail, _ = dec.parse_varints(packed[used:])
        assert head.tolist() + tail.tolist() == values


def test_the_encoder_cuts_runs_longer_than_the_token_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real limit is 2**30 pixels (headers below 2**32); a small one shows the cut.
    monkeypatch.setattr(rle, "MAX_TOKEN_PIXELS", 5)
    alpha = np.zeros((7, 9), np.uint8)
    alpha[2:5] = 255
    alpha[5, 1:8] = np.arange(1, 8)
    starts, lens, _kinds = rle._tokenize(alpha.reshape(-1))
    assert int(lens.max()) <= 5 and int(lens.sum()) == alpha.size
    np.testing.assert_array_equal(starts, np.cumsum(lens) - lens)
    np.testing.assert_array_equal(decode_matte(encode_matte(alpha, level=0)), alpha)


# --------------------------------------------------------------------------- base64


@pytest.mark.parametrize(
    "alpha", [WORKED, np.full((1, 1), 7, np.uint8), np.full((1, 4), 200, np.uint8)]
)
def test_non_zero_bits_before_the_padding_are_refused(alpha: np.ndarray) -> None:
    matte = encode_matte(alpha)
    counts = matte["counts"]
    pad = len(counts) - len(counts.rstrip("="))
    assert pad, counts
    i = len(counts) - pad - 1
    value = ALPHABET.index(counts[i])
    unused = 16 if pad == 2 else 4
    assert value % unused == 0
    for low in range(1, unused):
        loose = counts[:i] + ALPHABET[value + low] + counts[i + 1 :]
        assert base64.b64decode(loose) == base64.b64decode(counts)  # same bytes, not canonical
        with pytest.raises(CodecError, match="canonical base64"):
            decode_matte({**matte, "counts": loose})


@pytest.mark.parametrize("counts", ["", "A", "AA=A", "A===", "AA==AAAA", "AAU\u00e9", "AAU-"])
def test_malformed_base64_is_refused(counts: str) -> None:
    with pytest.raises(CodecError, match=r"empty|base64"):
        decode_matte({"format": FORMAT, "size": [3, 4], "counts": counts})


def test_the_empty_blob_has_its_own_message() -> None:
    with pytest.raises(CodecError, match="counts is empty: a blob has at least its method byte"):
        decode_matte({"format": FORMAT, "size": [3, 4], "counts": ""})


# --------------------------------------------------------------------------- size and limits


@pytest.mark.parametrize("size", [[3.0, 4], [3, 4.0], [3.0, 4.0], [np.float64(3), np.int32(4)]])
def test_a_size_is_a_value_so_3_0_is_3(size: list[Any]) -> None:
    matte = {"format": FORMAT, "size": size, "counts": "AAUQAgUGBUAAIA=="}
    np.testing.assert_array_equal(decode_matte(matte), WORKED)


@pytest.mark.parametrize("size", [[3.5, 4], [True, 4], [3, float("nan")], [-3.0, 4], [0.0, 4]])
def test_sizes_that_are_not_integers_at_least_1_are_refused(size: list[Any]) -> None:
    with pytest.raises(CodecError, match="size"):
        decode_matte({"format": FORMAT, "size": size, "counts": "AAUQAgUGBUAAIA=="})


@pytest.mark.parametrize("limit", [2**31, 2**40, 0, -1, 2.0**20, True])
def test_max_pixels_outside_1_to_2_31_minus_1_is_refused_not_clamped(limit: Any) -> None:
    matte = encode_matte(WORKED)
    with pytest.raises(CodecError, match="max_pixels must be"):
        decode_matte(matte, max_pixels=limit)
    with pytest.raises(CodecError, match="max_pixels must be"):
        encode_matte(WORKED, max_pixels=limit)
    np.testing.assert_array_equal(decode_matte(matte, max_pixels=2**31 - 1), WORKED)


def test_expected_shape_is_checked_before_anything_is_decoded() -> None:
    matte = encode_matte(WORKED)
    np.testing.assert_array_equal(decode_matte(matte, expected_shape=(3, 4)), WORKED)
    assert peek_size(matte) == (3, 4) and peek_size(matte, expected_shape=(3, 4)) == (3, 4)
    broken = {**matte, "counts": "AAAA" * 5}  # garbage would fail later; the shape fails first
    for call in (decode_matte, peek_size):
        with pytest.raises(CodecError, match=r"matte is 3x4 \(H x W\), expected 4x3"):
            call(broken, expected_shape=(4, 3))
    assert peek_size(broken) == (3, 4)  # well-formed base64 of the right length: only decoding
    with pytest.raises(CodecError, match="runs cover 0 pixels"):  # finds what is wrong
        decode_matte(broken)


# --------------------------------------------------------------------------- encoder choice


def test_tie_order_is_stored_then_deflated_then_raw() -> None:
    stored, deflate, raw = rle.METHOD_STORED, rle.METHOD_DEFLATE, rle.METHOD_RAW
    assert rle.choose_blob(10, 10, 10) == stored
    assert rle.choose_blob(11, 10, 10) == deflate
    assert rle.choose_blob(10, None, 10) == stored
    assert rle.choose_blob(11, None, 10) == raw
    assert rle.choose_blob(12, 11, 10) == raw
    assert rle.choose_blob(9, 11, 10) == stored


@settings(max_examples=150, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    seed=st.integers(0, 2**32 - 1),
    level=st.sampled_from([0, 1, 9]),
)
def test_the_encoder_sends_the_shortest_with_ties_to_the_earlier(
    shape: tuple[int, int], seed: int, level: int
) -> None:
    rng = np.random.default_rng(seed)
    alpha = rng.choice(np.array([0, 0, 255, 255, 9, 128], np.uint8), size=shape)
    body = rle._encode_body(alpha.reshape(-1), shape[1])
    deflated = zlib.compressobj(level, zlib.DEFLATED, -15) if level else None
    lengths = [len(body), alpha.size]
    if deflated is not None:
        lengths.insert(1, len(deflated.compress(body) + deflated.flush()))
    methods = [0, 2] if deflated is None else [0, 1, 2]
    expected = methods[lengths.index(min(lengths))]
    blob = base64.b64decode(encode_matte(alpha, level=level)["counts"])
    assert blob[0] == expected


# --------------------------------------------------------------------------- streaming


@settings(max_examples=120, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    seed=st.integers(0, 2**32 - 1),
    level=st.sampled_from([0, 1]),
    chunk=st.integers(1, 40),
    cap=st.integers(1, 30),
)
def test_every_chunk_and_batch_boundary_decodes_the_same(
    shape: tuple[int, int], seed: int, level: int, chunk: int, cap: int
) -> None:
    rng = np.random.default_rng(seed)
    alpha = rng.choice(
        np.array([0, 255, 3, 200, 17], np.uint8), size=shape, p=[0.3, 0.3, 0.2, 0.1, 0.1]
    )
    alpha[rng.random(shape) < 0.3] = 128  # runs of a mid value: value tokens
    matte = encode_matte(alpha, level=level)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rle_input, "CHUNK", chunk)
        patch.setattr(dec, "_PAYLOAD_CAP", cap)
        patch.setattr(dec, "_PIXEL_CAP", 2 * cap)
        np.testing.assert_array_equal(decode_matte(matte), alpha)
        np.testing.assert_array_equal(
            decode_matte(_matte(list(shape), b"\0" + _all_literals(alpha))), alpha
        )


def test_a_big_matte_crosses_many_chunks() -> None:
    alpha = soft_matte(700, 900, seed=3)
    alpha[::2, ::3] = 128
    assert len(rle._encode_body(alpha.reshape(-1), 900)) > 4 * rle_input.CHUNK
    for level in (0, 1):
        matte = encode_matte(alpha, level=level)
        assert base64.b64decode(matte["counts"])[0] == level
        np.testing.assert_array_equal(decode_matte(matte), alpha)
