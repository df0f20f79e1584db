"""Peak memory of decoding hostile matte-rle/1 mattes (docs/reliability.md, "Decoding memory").

    .venv/bin/python benchmarks/codec_memory.py                 # 8192x8192, the default limit
    .venv/bin/python benchmarks/codec_memory.py --size 4096 4096

Each matte is written to a file; a fresh Python process loads it, notes its peak RSS
(``ru_maxrss``), decodes it with ``decode_matte`` and reports how much the peak rose and what
the decoder said. The output of a successful decode is H*W bytes, the yardstick.

The mattes (``hostile_mattes``):

* ``zero_bomb``: a deflated body of 256 MiB of zero bytes (about 1.5 MB of text): more than
  the largest valid body at 8192x8192 (134 MB), and it says "no tokens" from its first byte.
* ``many_tokens``: a deflated body of H*W one-pixel full runs, one header byte each, then one
  stray payload byte: everything checks out until the very end.
* ``literal_then_junk``: one literal span over the whole matte, then its payload cut short.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

from sam2_matting.codec.rle_input import encode_varint

FORMAT = "matte-rle/1"

CHILD = """
import json, resource, sys, time
from sam2_matting.codec import CodecError, decode_matte
obj = json.load(open(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    decode_matte(obj)
    verdict = "decoded"
except CodecError as err:
    verdict = str(err)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rise_kib": after - before, "seconds": seconds, "verdict": verdict}))
"""


def _deflated(pieces: list[tuple[bytes, int]], tail: bytes = b"") -> bytes:
    """Raw deflate (level 1) of each (bytes, repeat) piece in turn, then ``tail``."""
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    out: list[bytes] = []
    for data, repeat in pieces:
        out.extend(packer.compress(data) for _ in range(repeat))
    out.append(packer.compress(tail))
    out.append(packer.flush())
    return b"".join(out)


def _matte(height: int, width: int, blob: bytes) -> dict[str, Any]:
    return {"format": FORMAT, "size": [height, width], "counts": base64.b64encode(blob).decode()}


def zero_bomb(height: int, width: int) -> dict[str, Any]:
    """256 MiB of zero bytes, deflated: "no tokens" from the first byte on."""
    return _matte(height, width, b"\x01" + _deflated([(bytes(1 << 24), 16)]))


def many_tokens(height: int, width: int) -> dict[str, Any]:
    """H*W one-pixel full runs, then one stray payload byte: wrong only at the very end."""
    n = height * width
    ones = b"\x01" * min(n, 1 << 24)
    pieces = [(encode_varint(n), 1), (ones, n // len(ones)), (ones[: n % len(ones)], 1)]
    return _matte(height, width, b"\x01" + _deflated(pieces, b"\7"))


def literal_then_junk(height: int, width: int) -> dict[str, Any]:
    """One literal span over the whole matte, with half the payload it needs."""
    n = height * width
    header = encode_varint(4 * (n - 1) + 2)
    payload = b"\x05" * min(n // 2, 1 << 24)
    pieces = [(encode_varint(len(header)) + header, 1), (payload, max(1, n // 2 // len(payload)))]
    return _matte(height, width, b"\x01" + _deflated(pieces))


def hostile_mattes(height: int, width: int) -> dict[str, dict[str, Any]]:
    """Name -> hostile matte of the declared size (see the module docstring)."""
    return {
        name: build(height, width)
        for name, build in (
            ("zero_bomb", zero_bomb),
            ("many_tokens", many_tokens),
            ("literal_then_junk", literal_then_junk),
        )
    }


def measure(obj: dict[str, Any], python: str = sys.executable) -> dict[str, Any]:
    """Decode ``obj`` in a fresh process: peak RSS rise (KiB), seconds, verdict."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "matte.json"
        path.write_text(json.dumps(obj))
        run = subprocess.run(
            [python, "-c", CHILD, str(path)], capture_output=True, text=True, check=True, cwd=tmp
        )
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[8192, 8192], metavar=("H", "W"))
    args = parser.parse_args()
    height, width = args.size
    print(f"declared {height}x{width}: output {height * width / 2**20:.0f} MiB")
    for name, obj in hostile_mattes(height, width).items():
        result = measure(obj)
        print(
            f"{name}: counts {len(obj['counts']) / 1e6:.2f} MB, peak RSS +"
            f"{result['rise_kib'] / 1024:.0f} MiB, {result['seconds']:.2f} s: {result['verdict']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
