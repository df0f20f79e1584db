"""The Python and JavaScript decoders agree on corrupted input: same pixels, or both reject.

Runs the browser module under Node (skipped where ``node`` is missing; CI has it and also runs
tests/js/ with ``node --test``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sam2_matting.codec import FORMAT, CodecError, decode_matte, encode_matte, js_decoder_path
from sam2_matting.codec import rle_decode as dec
from sam2_matting.codec.rle_input import encode_varint
from sam2_matting.codec.synthetic import noise_matte, soft_matte

NODE = shutil.which("node")

SCRIPT = """
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
const { decodeMatte, MatteCodecError } = await import(process.argv[2]);
const verdicts = JSON.parse(readFileSync(process.argv[3], "utf8")).map((obj) => {
  try {
    return createHash("sha1").update(decodeMatte(obj).data).digest("hex");
  } catch (err) {
    return err instanceof MatteCodecError ? "error" : `unexpected ${err}`;
  }
});
console.log(JSON.stringify(verdicts));
"""


def _corrupted(rng: random.Random) -> list[dict[str, object]]:
    worked = np.array([[0, 0, 0, 0], [0, 64, 255, 255], [0, 96, 255, 255]], dtype=np.uint8)
    bases = [soft_matte(40, 60, seed=1), noise_matte(8, 9), np.full((5, 7), 77, np.uint8), worked]
    out = []
    for alpha in bases:
        for level in (0, 1):
            blob = base64.b64decode(encode_matte(alpha, level=level)["counts"])
            for _ in range(60):
                mutated = bytearray(blob)
                for _ in range(rng.randint(1, 3)):
                    i, op = rng.randrange(len(mutated)), rng.random()
                    if op < 0.6:
                        mutated[i] ^= 1 << rng.randrange(8)
                    elif op < 0.8:
                        mutated[i] = rng.randrange(256)
                    elif op < 0.9 and len(mutated) > 2:
                        del mutated[i]
                    else:
                        mutated.insert(i, rng.randrange(256))
                counts = base64.b64encode(bytes(mutated)).decode()
                out.append({"format": FORMAT, "size": list(alpha.shape), "counts": counts})
    text = encode_matte(worked)["counts"]
    for _ in range(60):  # text-level damage: padding, foreign and non-ASCII characters
        chars = list(text)
        chars[rng.randrange(len(chars))] = rng.choice("AZaz09+/=-_ .\u00e9\u0141")
        out.append({"format": FORMAT, "size": [3, 4], "counts": "".join(chars)})
    return out


def _python_verdict(obj: dict[str, object], max_pixels: int = dec.DEFAULT_MAX_PIXELS) -> str:
    try:
        return hashlib.sha1(decode_matte(obj, max_pixels=max_pixels).tobytes()).hexdigest()
    except CodecError:
        return "error"


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_python_and_js_decoders_agree_on_corrupted_streams(tmp_path: Path) -> None:
    cases = _corrupted(random.Random(20240))
    expected = [_python_verdict(obj) for obj in cases]
    assert 0.2 < expected.count("error") / len(expected) < 0.95  # both outcomes are exercised
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "run.mjs").write_text(SCRIPT)
    assert NODE is not None
    module = js_decoder_path().resolve().as_uri()
    run = subprocess.run(
        [NODE, str(tmp_path / "run.mjs"), module, str(tmp_path / "cases.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    actual = json.loads(run.stdout)
    disagreements = [
        (obj["counts"], py, js)
        for obj, py, js in zip(cases, expected, actual, strict=True)
        if py != js
    ]
    assert not disagreements, disagreements[:5]


LIMITS_SCRIPT = """
const { maxBodyBytes, maxBlobBytes, maxCountsChars } = await import(process.argv[2]);
const pixels = JSON.parse(process.argv[3]);
console.log(JSON.stringify(pixels.map((n) => [maxBodyBytes(n), maxBlobBytes(n), maxCountsChars(n)])));
"""

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _node(tmp_path: Path, script: str, *args: str) -> object:
    assert NODE is not None
    (tmp_path / "script.mjs").write_text(script)
    module = js_decoder_path().resolve().as_uri()
    run = subprocess.run(
        [NODE, str(tmp_path / "script.mjs"), module, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(run.stdout)


def _rule_cases() -> list[dict[str, object]]:
    """Inputs on both sides of every rule the spec states exactly."""
    worked = np.array([[0, 0, 0, 0], [0, 64, 255, 255], [0, 96, 255, 255]], dtype=np.uint8)
    out: list[dict[str, object]] = []

    def add(size: object, blob: bytes) -> None:
        out.append({"format": FORMAT, "size": size, "counts": base64.b64encode(blob).decode()})

    for shape in [(1, 1), (3, 4), (1, 127), (1, 128), (129, 1), (40, 50)]:
        n = shape[0] * shape[1]
        flat = (np.arange(n) * 91 % 256).astype(np.int64)
        above = np.concatenate((np.zeros(shape[1], np.int64), flat[: -shape[1]]))
        blob = b"\0" + encode_varint(n) + b"\x02" * n + bytes(((flat - above) % 256).tolist())
        for extra in (b"", b"\0", b"\0\0", b"\0\0\0"):  # at the limit, then past it
            add(list(shape), blob + extra)
    for first in (b"\x10", b"\x90\x00", b"\x90\x80\x00", b"\x90\x80\x80\x80\x00"):
        headers = first + bytes([2, 5, 6, 5])  # the worked example, first header overlong
        add([3, 4], b"\0" + encode_varint(len(headers)) + headers + bytes([64, 0, 32]))
        add(
            [3, 4],
            b"\0"
            + first.replace(b"\x10", b"\x05").replace(b"\x90", b"\x85")
            + bytes([16, 2, 5, 6, 5, 64, 0, 32]),
        )  # the header count written that way
    for last in range(0x0E, 0x12):  # 5-byte varints around 2**32 in a matte that needs them
        add([1, 2**31 - 1], b"\0\x05\xff\xff\xff\xff" + bytes([last]))
    for alpha in (worked, np.full((1, 1), 7, np.uint8), np.full((1, 4), 200, np.uint8)):
        counts = encode_matte(alpha)["counts"]
        pad = len(counts) - len(counts.rstrip("="))
        i = len(counts) - pad - 1
        for low in range(16 if pad == 2 else 4):
            loose = counts[:i] + B64[B64.index(counts[i]) + low] + counts[i + 1 :]
            out.append({"format": FORMAT, "size": list(alpha.shape), "counts": loose})
    example = encode_matte(worked)["counts"]
    for size in ([3.0, 4], [3, 4.0], [3.5, 4], [3, 4.000001], [1e300, 1], [True, 4]):
        out.append({"format": FORMAT, "size": size, "counts": example})
    out.append({"format": FORMAT, "size": [3, 4], "counts": ""})
    return out


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_both_decoders_compute_the_same_length_bounds(tmp_path: Path) -> None:
    pixels = [1, 2, 12, 127, 128, 16383, 16384, 2**21, 2**28 - 1, 2**28, 2**31 - 1]
    expected = [
        [dec.max_body_bytes(n), dec.max_blob_bytes(n), dec.max_counts_chars(n)] for n in pixels
    ]
    assert _node(tmp_path, LIMITS_SCRIPT, json.dumps(pixels)) == expected


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_python_and_js_decoders_agree_on_every_stated_rule(tmp_path: Path) -> None:
    cases = _rule_cases()
    # max_pixels 2**31 - 1 for both, so the 2**31 - 1 pixel cases reach the varint rule
    expected = [_python_verdict(obj, max_pixels=2**31 - 1) for obj in cases]
    assert expected.count("error") > len(cases) // 2 and "error" in expected[1:]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    actual = _node(
        tmp_path,
        SCRIPT.replace("decodeMatte(obj)", "decodeMatte(obj, { maxPixels: 2 ** 31 - 1 })"),
        str(tmp_path / "cases.json"),
    )
    disagreements = [
        (obj["size"], obj["counts"][:40], py, js)
        for obj, py, js in zip(cases, expected, actual, strict=True)  # type: ignore[call-overload]
        if py != js
    ]
    assert not disagreements, disagreements[:5]
