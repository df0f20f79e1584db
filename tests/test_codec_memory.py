"""Decoding memory: a hostile matte costs at most its declared output plus a few MiB, and the
service's ``addMask`` refuses a matte of another size than the video before decoding it.

The hostile mattes are those of ``benchmarks/codec_memory.py`` (figures: docs/reliability.md).
"""

from __future__ import annotations

import importlib.util
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from sam2_matting.codec import CodecError, decode_matte

REPO = Path(__file__).resolve().parents[1]
SLACK = 16 << 20  # what a decode may need besides its output


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location(
        "codec_memory", REPO / "benchmarks" / "codec_memory.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


def _peak_of_decode(obj: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
    tracemalloc.start()
    try:
        try:
            decode_matte(obj, **kwargs)
            verdict = "decoded"
        except CodecError as err:
            verdict = str(err)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, verdict


@pytest.mark.parametrize(
    ("name", "shape", "message", "output_allocated"),
    [
        ("zero_bomb", (8192, 8192), "runs cover 0 pixels", False),
        ("many_tokens", (4096, 4096), "payload bytes left over", True),
        ("literal_then_junk", (4096, 4096), "payload too short", True),
    ],
)
def test_a_hostile_decode_needs_no_more_than_its_output(
    name: str, shape: tuple[int, int], message: str, output_allocated: bool
) -> None:
    obj = getattr(BENCH, name)(*shape)
    output = shape[0] * shape[1]
    peak, verdict = _peak_of_decode(obj)
    assert message in verdict
    # Before: 8192x8192 zero_bomb peaked at +495 MiB RSS, many_tokens at +2.7 GiB.
    bound = (output if output_allocated else 0) + SLACK
    assert peak < bound, f"{name}: peak {peak / 2**20:.1f} MiB, bound {bound / 2**20:.1f} MiB"


def test_expected_shape_refuses_before_inflating_anything() -> None:
    obj = BENCH.zero_bomb(8192, 8192)
    peak, verdict = _peak_of_decode(obj, expected_shape=(180, 320))
    assert verdict == "matte is 8192x8192 (H x W), expected 180x320"
    assert peak < 1 << 20


def test_add_mask_checks_the_size_against_the_video_first(client: FlaskClient) -> None:
    def gql(query: str, variables: dict[str, Any]) -> Any:
        return client.post("/graphql", json={"query": query, "variables": variables}).get_json()

    sid = gql(
        "mutation($p: String!) { startSession(input: {path: $p}) { sessionId } }",
        {"p": "gallery/clip.mp4"},
    )["data"]["startSession"]["sessionId"]
    query = """mutation M($input: AddMaskInput!) { addMask(input: $input) { frameIndex } }"""
    bomb = BENCH.zero_bomb(8192, 8192)
    tracemalloc.start()
    try:
        body = gql(
            query, {"input": {"sessionId": sid, "frameIndex": 0, "objectId": 1, "alpha": bomb}}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_MATTE", body  # CodecError, in the one error table
    assert "matte is 8192x8192 (H x W), expected 48x80" in error["message"]
    assert peak < 64 << 20  # the request's JSON (1.6 MB of text) and GraphQL, no inflating
