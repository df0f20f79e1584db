"""matte-rle/1: round trips, the spec's worked example, size bounds, fixtures and bad input."""

from __future__ import annotations

import base64
import importlib.util
import json
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sam2_matting.codec import (
    DEFAULT_MAX_PIXELS,
    FORMAT,
    CodecError,
    decode_matte,
    encode_matte,
    js_decoder_path,
    rle,
    rle_decode,
)
from sam2_matting.codec.synthetic import noise_matte, soft_matte
from sam2_matting.errors import InvalidInputError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "codec"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _blob(obj: dict[str, Any]) -> bytes:
    return base64.b64decode(obj["counts"])


# --------------------------------------------------------------------------- strategies

shapes = st.one_of(
    st.tuples(st.just(1), st.integers(1, 300)),  # 1xN
    st.tuples(st.integers(1, 300), st.just(1)),  # Nx1
    st.tuples(st.integers(1, 48), st.integers(1, 48)),
)


@st.composite
def mattes(draw: st.DrawFn) -> np.ndarray:
    """Constant, noisy, mostly-0/255 with sprinkles, blocky soft shapes, or runs of mid values."""
    shape = draw(shapes)
    style = draw(st.sampled_from(["constant", "noise", "binary", "sprinkled", "soft", "bands"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if style == "constant":
        return np.full(shape, draw(st.integers(0, 255)), dtype=np.uint8)
    if style == "noise":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if style == "binary":
        return (rng.random(shape) < draw(st.floats(0, 1))).astype(np.uint8) * 255
    if style == "sprinkled":
        out = rng.choice(np.array([0, 255], dtype=np.uint8), size=shape)
        mask = rng.random(shape) < 0.2
        out[mask] = rng.integers(0, 256, size=int(mask.sum()), dtype=np.uint8)
        return out
    if style == "bands":  # long runs of arbitrary values: value-run tokens
        values = rng.integers(0, 256, size=8, dtype=np.uint8)
        lengths = rng.integers(1, 40, size=8)
        row = np.repeat(values, lengths)
        return np.resize(row, shape).astype(np.uint8)
    # soft: a disc-ish shape with a linear ramp edge of random width
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
    radius = rng.uniform(1, max(shape))
    ramp = rng.uniform(0.5, 6)
    dist = np.hypot(yy - cy, xx - cx)
    return np.clip(np.rint((radius - dist) / ramp * 255 + 128), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- round trips


@FAST
@given(alpha=mattes(), level=st.sampled_from([0, 1, 9]))
def test_round_trip(alpha: np.ndarray, level: int) -> None:
    obj = encode_matte(alpha, level=level)
    assert obj["format"] == FORMAT and obj["size"] == list(alpha.shape)
    json.loads(json.dumps(obj))  # JSON-ready: plain str / list / int
    out = decode_matte(obj)
    assert out.dtype == np.uint8 and out.shape == alpha.shape
    np.testing.assert_array_equal(out, alpha)
    # Never longer than the raw fallback: 1 method byte + H*W bytes, base64'd.
    assert len(obj["counts"]) <= 4 * -(-(alpha.size + 1) // 3)


@settings(max_examples=60, deadline=None)
@given(alpha=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=24)))
def test_round_trip_arbitrary_arrays(alpha: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_matte(encode_matte(alpha)), alpha)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), height=st.integers(20, 120), width=st.integers(20, 160))
def test_round_trip_realistic_soft_mattes(seed: int, height: int, width: int) -> None:
    alpha = soft_matte(height, width, seed=seed)
    obj = encode_matte(alpha)
    np.testing.assert_array_equal(decode_matte(obj), alpha)


def test_round_trip_non_contiguous_input() -> None:
    alpha = soft_matte(60, 80, seed=3)
    view = alpha.T  # Fortran-ordered view
    np.testing.assert_array_equal(decode_matte(encode_matte(view)), view)


@pytest.mark.parametrize("shape", [(540, 960), (97, 301)])
def test_realistic_matte_is_deflated_and_beats_raw(shape: tuple[int, int]) -> None:
    alpha = soft_matte(*shape, seed=1)
    obj = encode_matte(alpha)
    assert _blob(obj)[0] == rle.METHOD_DEFLATE
    assert len(obj["counts"]) < alpha.size / 4  # a soft matte is mostly long runs
    np.testing.assert_array_equal(decode_matte(obj), alpha)


def test_noise_falls_back_to_raw_pixels_within_the_bound() -> None:
    alpha = noise_matte(300, 400, seed=9)
    obj = encode_matte(alpha)
    blob = _blob(obj)
    assert blob[0] == rle.METHOD_RAW and blob[1:] == alpha.tobytes()
    assert len(obj["counts"]) <= 1.34 * alpha.size


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_and_dense_prediction_paths_agree(seed: int) -> None:
    alpha = soft_matte(90, 130, seed=seed)
    alpha[10:30, 5:60] = np.random.default_rng(seed).integers(0, 256, (20, 55), dtype=np.uint8)
    flat = alpha.reshape(-1)
    starts, lens, kinds = rle._tokenize(flat)
    lit = kinds == rle.KIND_LITERAL
    residuals = rle._literal_residuals(flat, alpha.shape[1], starts[lit], lens[lit])
    runs_only = np.where(np.repeat(lit, lens), 0, flat).astype(np.uint8)
    results = []
    for dense in (False, True):
        out = runs_only.copy()
        rle_decode.undo_prediction(
            out, alpha.shape[1], starts[lit], lens[lit], residuals, dense=dense
        )
        results.append(out)
    np.testing.assert_array_equal(results[0], flat)
    np.testing.assert_array_equal(results[1], flat)


def test_varints_match_a_reference_leb128() -> None:
    values = np.array([0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**28 - 1, 2**32 - 1], np.int64)
    reference = bytearray()
    for value in values.tolist():
        while value >= 0x80:
            reference.append((value & 0x7F) | 0x80)
            value >>= 7
        reference.append(value)
    packed = rle._varints(values)
    assert packed.tobytes() == bytes(reference)
    values_back, used = rle_decode.parse_varints(packed)
    assert used == packed.size
    np.testing.assert_array_equal(values_back, values)


# --------------------------------------------------------------------------- the spec's example


def test_worked_example_from_the_spec() -> None:
    alpha = np.array([[0, 0, 0, 0], [0, 64, 255, 255], [0, 96, 255, 255]], dtype=np.uint8)
    obj = encode_matte(alpha)
    assert obj == {"format": "matte-rle/1", "size": [3, 4], "counts": "AAUQAgUGBUAAIA=="}
    # method 0 | 5 header bytes | Z×5, L×1, F×2, L×2, F×2 | residuals 64, 0, 96−64
    assert _blob(obj) == bytes([0, 5, 16, 2, 5, 6, 5, 64, 0, 32])
    np.testing.assert_array_equal(decode_matte(obj), alpha)
    spec = (REPO / "docs" / "matte-rle.md").read_text()
    assert "AAUQAgUGBUAAIA==" in spec and "00 05 10 02 05 06 05 40 00 20" in spec


# --------------------------------------------------------------------------- fixtures


def _fixture_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_codec_fixtures", REPO / "scripts" / "make_codec_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_fixtures_match_the_current_encoder() -> None:
    files = _fixture_module().render()
    on_disk = {p.name: p.read_text() for p in FIXTURES.glob("*.json")}
    assert sorted(on_disk) == sorted(files), "run scripts/make_codec_fixtures.py"
    for name, text in files.items():
        assert on_disk[name] == text, f"{name} is stale: run scripts/make_codec_fixtures.py"
    assert sum(len(text) for text in files.values()) < 200_000


@pytest.mark.parametrize("path", sorted(p for p in FIXTURES.glob("*.json") if p.name != "bad.json"))
def test_fixture_decodes_to_its_pixels(path: Path) -> None:
    fixture = json.loads(path.read_text())
    height, width = (int(v) for v in fixture["matte"]["size"])  # one is written [3.0, 4.0]
    if "pixels_b64" in fixture:
        expected = np.frombuffer(base64.b64decode(fixture["pixels_b64"]), np.uint8)
    else:
        pairs = [pair.split(":") for pair in fixture["pixels_runs"].split(",")]
        expected = np.repeat([int(v) for v, _ in pairs], [int(n) for _, n in pairs])
    out = decode_matte(fixture["matte"])
    np.testing.assert_array_equal(out, expected.reshape(height, width))
    assert _blob(fixture["matte"])[0] == fixture["method"]


def test_js_decoder_ships_with_the_package() -> None:
    source = js_decoder_path().read_text()
    assert "export function decodeMatte(" in source and "export class MatteCodecError" in source
    assert f'"{FORMAT}"' in source
    assert DEFAULT_MAX_PIXELS == 8192 * 8192 and "DEFAULT_MAX_PIXELS = 8192 * 8192" in source


# --------------------------------------------------------------------------- bad input

BAD = json.loads((FIXTURES / "bad.json").read_text())["cases"]


@pytest.mark.parametrize("case", BAD, ids=[case["name"] for case in BAD])
def test_bad_fixture_is_rejected(case: dict[str, Any]) -> None:
    kwargs = {"max_pixels": case["max_pixels"]} if "max_pixels" in case else {}
    with pytest.raises(CodecError):
        decode_matte(case["matte"], **kwargs)


@pytest.mark.parametrize(
    "size",
    [[3, 4.5], [float("nan"), 4], [float("inf"), 4], [3], "3,4", None, [3, None], [2**31, 1]],
)
def test_bad_sizes_python_only(size: Any) -> None:
    with pytest.raises(CodecError, match="size"):
        decode_matte({"format": FORMAT, "size": size, "counts": "AAUQAgUGBUAAIA=="})


def test_codec_error_is_the_project_error() -> None:
    assert issubclass(CodecError, InvalidInputError) and issubclass(CodecError, ValueError)
    with pytest.raises(CodecError) as info:
        decode_matte({"format": FORMAT, "size": [3, 4], "counts": "AAUQAgUGBUAA"})
    assert info.value.code == "BAD_MATTE"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("alpha", "kwargs"),
    [
        (np.zeros((3, 4), np.float32), {}),
        (np.zeros((3, 4, 1), np.uint8), {}),
        (np.zeros((0, 4), np.uint8), {}),
        ([[0, 1]], {}),
        (np.zeros((3, 4), np.uint8), {"level": 10}),
        (np.zeros((3, 4), np.uint8), {"max_pixels": 11}),
        (np.zeros((3, 4), np.uint8), {"max_pixels": 0}),
    ],
)
def test_encoder_rejects_bad_arguments(alpha: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        encode_matte(alpha, **kwargs)


def test_pixel_limit_is_checked_before_allocating() -> None:
    # 40000x40000 is under a raised limit, but these tiny strings must fail without
    # allocating anything close to 1.6 GB.
    size = [40_000, 40_000]
    tiny = {"format": FORMAT, "size": size, "counts": base64.b64encode(b"\0\x01\x00").decode()}
    bomb = zlib.compress(bytes(16 << 20), 9)[2:-4]  # raw deflate of 16 MiB of zeros
    bomb_obj = {
        "format": FORMAT,
        "size": [100, 100],
        "counts": base64.b64encode(b"\1" + bomb).decode(),
    }
    tracemalloc.start()
    try:
        for obj, limit in ((tiny, 2**31 - 1), (bomb_obj, DEFAULT_MAX_PIXELS)):
            with pytest.raises(CodecError):
                decode_matte(obj, max_pixels=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes"
    with pytest.raises(CodecError, match="pixel limit"):
        decode_matte({**tiny, "size": [8193, 8192]})


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_corrupted_streams_decode_or_raise_codec_error(data: st.DataObject) -> None:
    alpha = data.draw(mattes())
    blob = bytearray(_blob(encode_matte(alpha)))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= 1 << data.draw(st.integers(0, 7))
    obj = {"format": FORMAT, "size": list(alpha.shape), "counts": base64.b64encode(blob).decode()}
    try:
        out = decode_matte(obj)
    except CodecError:
        return
    assert out.shape == alpha.shape and out.dtype == np.uint8
