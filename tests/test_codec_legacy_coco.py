"""The course project's text form and binary COCO RLE: reference agreement and bad input."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from test_codec import mattes

from sam2_matting.codec import (
    CodecError,
    decode_coco_binary,
    decode_legacy,
    encode_coco_binary,
    encode_legacy,
)
from sam2_matting.codec.coco import parse_coco_counts
from sam2_matting.codec.synthetic import soft_matte


def groupby_reference(alpha: np.ndarray) -> str:
    """The course project's pure-Python encoder."""
    return ",".join(f"{v}:{len(list(g))}" for v, g in itertools.groupby(alpha.ravel().tolist()))


# --------------------------------------------------------------------------- course form


@settings(max_examples=250, deadline=None)
@given(alpha=mattes())
def test_legacy_matches_groupby_byte_for_byte(alpha: np.ndarray) -> None:
    obj = encode_legacy(alpha)
    assert obj == {"size": list(alpha.shape), "counts": groupby_reference(alpha)}
    np.testing.assert_array_equal(decode_legacy(obj), alpha)


def test_legacy_on_a_realistic_matte_and_big_numbers() -> None:
    alpha = soft_matte(180, 320, seed=4)
    assert encode_legacy(alpha)["counts"] == groupby_reference(alpha)
    big = np.zeros((1000, 1200), np.uint8)
    big[-1, -1] = 100
    assert encode_legacy(big)["counts"] == "0:1199999,100:1"
    np.testing.assert_array_equal(decode_legacy(encode_legacy(big)), big)


def test_legacy_decoder_accepts_non_canonical_pairs() -> None:
    out = decode_legacy({"size": [2, 3], "counts": "007:2,7:1,255:3"})
    np.testing.assert_array_equal(out, [[7, 7, 7], [255, 255, 255]])


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"size": [2, 2], "counts": "0:3"}, "cover 3"),
        ({"size": [2, 2], "counts": "0:5"}, "run of 5"),
        ({"size": [2, 2], "counts": "256:4"}, "over 255"),
        ({"size": [2, 2], "counts": "0:0,1:4"}, "length 0"),
        ({"size": [2, 2], "counts": ""}, "empty"),
        ({"size": [2, 2], "counts": "0:4,"}, "pairs"),
        ({"size": [2, 2], "counts": "0,4"}, "pairs"),
        ({"size": [2, 2], "counts": "0:2:2"}, "pairs"),
        ({"size": [2, 2], "counts": "0:2,2,2"}, "pairs"),
        ({"size": [2, 2], "counts": "0:2,,1:2"}, "pairs"),
        ({"size": [2, 2], "counts": ":4"}, "empty number"),
        ({"size": [2, 2], "counts": "0:-4"}, "unexpected character '-'"),
        ({"size": [2, 2], "counts": "0: 4"}, "unexpected character ' '"),
        ({"size": [2, 2], "counts": "0:４"}, "ASCII"),
        ({"size": [2, 2], "counts": "0:00000000004"}, "more than 10 digits"),
        ({"size": [2, 2], "counts": 4}, "string"),
        ({"size": [2, -2], "counts": "0:4"}, "at least 1"),
        ({"size": [100000, 100000], "counts": "0:10000000000"}, "pixel limit"),
        ({"size": [1, 1], "counts": "0:1," * 10}, "more than a 1x1"),
        ([["0:4"]], "JSON object"),
    ],
)
def test_legacy_bad_input(obj: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_legacy(obj)


# --------------------------------------------------------------------------- COCO binary


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@settings(max_examples=100, deadline=None)
@given(alpha=mattes(), threshold=st.sampled_from([128, 1, 255]))
def test_coco_agrees_with_pycocotools(alpha: np.ndarray, threshold: int) -> None:
    obj = encode_coco_binary(alpha, threshold=threshold)
    binary = np.asfortranarray(alpha >= threshold, dtype=np.uint8)
    reference = mask_utils.encode(binary)
    assert obj == {"size": list(alpha.shape), "counts": reference["counts"].decode("utf-8")}
    expected = mask_utils.decode(reference) * 255
    out = decode_coco_binary(obj)
    assert out.flags.c_contiguous and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    # our parser of the compressed string agrees with pycocotools' area (sum of the 1-runs)
    assert parse_coco_counts(obj["counts"], alpha.size)[1::2].sum() == mask_utils.area(reference)


def test_coco_counts_may_start_or_end_with_zero_runs() -> None:
    np.testing.assert_array_equal(decode_coco_binary({"size": [2, 2], "counts": "40"}), 0)
    np.testing.assert_array_equal(decode_coco_binary({"size": [2, 2], "counts": "04"}), 255)


def test_coco_demo_frontend_shape_on_a_realistic_matte() -> None:
    alpha = soft_matte(270, 480, seed=2)
    obj = encode_coco_binary(alpha)
    assert set(obj) == {"size", "counts"} and isinstance(obj["counts"], str)
    np.testing.assert_array_equal(decode_coco_binary(obj), np.where(alpha >= 128, 255, 0))


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ("", "empty"),
        ("0\x7f", "'0'..'o'"),
        ("é", "ASCII"),
        ("222", "cover 6"),  # runs past 2x2: pycocotools' decoder would write past its buffer
        ("2", "cover 2"),
        ("6", "out of range"),
        ("3O", "negative"),  # 3 zeros, then -1 ones
        ("h", "middle of a number"),  # continuation bit set on the last character
        ("Pooooooo0", "longer than 7"),
        ("3o0", "out of range"),
    ],
)
def test_coco_bad_counts(counts: str, message: str) -> None:
    obj = {"size": [2, 2], "counts": counts}
    with pytest.raises(CodecError, match=message):
        decode_coco_binary(obj)


@pytest.mark.parametrize(
    "obj",
    [
        {"size": [2, 2], "counts": [4]},
        {"size": [0, 2], "counts": "0"},
        {"size": [8193, 8192], "counts": "0"},
        {"counts": "4"},
        "4",
    ],
)
def test_coco_bad_objects(obj: Any) -> None:
    with pytest.raises(CodecError):
        decode_coco_binary(obj)


def test_coco_encoder_checks_its_arguments() -> None:
    with pytest.raises(CodecError, match="threshold"):
        encode_coco_binary(np.zeros((2, 2), np.uint8), threshold=300)
    with pytest.raises(CodecError, match="uint8"):
        encode_coco_binary(np.zeros((2, 2), np.int32))
