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


def _python_verdict(obj: dict[str, object]) -> str:
    try:
        return hashlib.sha1(decode_matte(obj).tobytes()).hexdigest()
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
