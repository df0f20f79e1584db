"""Matte codec benchmark (issue 3): matte-rle/1 against the course project's pure-Python
codec, pycocotools and PNG, on 1080p and 720p soft and noise mattes, plus JS decode under Node.

    .venv/bin/python benchmarks/bench_codec.py              # full run (~2 min on 2 cores)
    .venv/bin/python benchmarks/bench_codec.py --quick      # fewer repeats, for a smoke test

Every time is the best of N runs (N in the table), measured side by side in one process.
Sizes: ``json`` is the whole streamed object (``json.dumps`` compact), ``counts`` its text.
The soft matte is ``sam2_matting.codec.synthetic.soft_matte(h, w, seed=0)``; noise is seed 0.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam2_matting.codec import (  # noqa: E402
    decode_legacy,
    decode_matte,
    encode_coco_binary,
    encode_legacy,
    encode_matte,
)
from sam2_matting.codec.synthetic import noise_matte, soft_matte  # noqa: E402


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in milliseconds (one untimed warm-up call first)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def course_encode(alpha: np.ndarray) -> str:
    """The course project's encoder, as its server ran it: ``itertools.groupby`` straight over
    the flattened NumPy matte (so over NumPy scalars), ``len(list(group))`` per run."""
    return ",".join(f"{v}:{len(list(g))}" for v, g in itertools.groupby(alpha.flatten()))


def loop_encode(alpha: np.ndarray) -> str:
    """The fastest plain-Python loop we could write for the same text (over a list of ints):
    a stricter baseline than the course's own encoder, reported alongside it."""
    pixels = alpha.ravel().tolist()
    pairs = []
    previous, count = pixels[0], 0
    for value in pixels:
        if value == previous:
            count += 1
        else:
            pairs.append(f"{previous}:{count}")
            previous, count = value, 1
    pairs.append(f"{previous}:{count}")
    return ",".join(pairs)


def groupby_encode(alpha: np.ndarray) -> str:
    """The same text through itertools.groupby over a list of ints."""
    return ",".join(f"{v}:{len(list(g))}" for v, g in itertools.groupby(alpha.ravel().tolist()))


def course_decode(counts: str, size: list[int]) -> np.ndarray:
    """A pure-Python decoder of the course form (the course project had none)."""
    pixels: list[int] = []
    for pair in counts.split(","):
        value, length = pair.split(":")
        pixels.extend([int(value)] * int(length))
    return np.array(pixels, dtype=np.uint8).reshape(size)


def png_bytes(alpha: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(alpha).save(buf, format="PNG")  # Pillow defaults
    return buf.getvalue()


def streamed(obj: dict[str, Any]) -> int:
    return len(json.dumps(obj, separators=(",", ":")).encode())


def measure(name: str, alpha: np.ndarray, quick: bool) -> dict[str, Any]:
    fast, slow = (3, 1) if quick else (30, 3)
    h, w = alpha.shape
    binary = np.asfortranarray(alpha >= 128, dtype=np.uint8)
    obj = encode_matte(alpha)
    legacy = encode_legacy(alpha)
    coco = mask_utils.encode(binary)
    png = png_bytes(alpha)
    assert (decode_matte(obj) == alpha).all()
    assert legacy["counts"] == course_encode(alpha) == loop_encode(alpha) == groupby_encode(alpha)
    t = {
        "ours_enc": best_of(lambda: encode_matte(alpha), fast),
        "ours_dec": best_of(lambda: decode_matte(obj), fast),
        "course_enc": best_of(lambda: course_encode(alpha), slow),
        "loop_enc": best_of(lambda: loop_encode(alpha), slow),
        "groupby_enc": best_of(lambda: groupby_encode(alpha), slow),
        "course_dec": best_of(lambda: course_decode(legacy["counts"], [h, w]), slow),
        "legacy_enc": best_of(lambda: encode_legacy(alpha), fast),
        "legacy_dec": best_of(lambda: decode_legacy(legacy), fast),
        "coco_enc": best_of(lambda: mask_utils.encode(binary), fast),
        "coco_dec": best_of(lambda: mask_utils.decode(coco), fast),
        "coco_path_enc": best_of(lambda: encode_coco_binary(alpha), fast),
        "png_enc": best_of(lambda: png_bytes(alpha), slow),
        "png_dec": best_of(lambda: np.asarray(Image.open(io.BytesIO(png))), fast),
    }
    sizes = {
        "counts": len(obj["counts"]),
        "json": streamed(obj),
        "png": len(png),
        "course_json": streamed(legacy),
        "coco_json": streamed(encode_coco_binary(alpha)),
        "raw": alpha.size,
    }
    return {"name": name, "shape": [h, w], "t": t, "size": sizes, "obj": obj, "n": (fast, slow)}


def run_node(results: list[dict[str, Any]], quick: bool) -> dict[str, dict[str, float]]:
    node = shutil.which("node")
    if node is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mattes.json"
        path.write_text(json.dumps({r["name"]: r["obj"] for r in results if r["shape"][0] == 1080}))
        script = REPO / "benchmarks" / "bench_codec_js.mjs"
        repeats = "10" if quick else "100"
        out = subprocess.run(
            [node, str(script), str(path), repeats], check=True, capture_output=True, text=True
        )
    parsed: dict[str, dict[str, float]] = json.loads(out.stdout)
    return parsed


def report(results: list[dict[str, Any]], js: dict[str, dict[str, float]], quick: bool) -> None:
    cpu = platform.processor() or platform.machine()
    print(f"# bench_codec: Python {platform.python_version()}, numpy {np.__version__}, {cpu},")
    print(f"#   {os.cpu_count()} CPUs; times: best of N, ms ({'--quick' if quick else 'full run'})")
    print()
    print("## Time per matte (ms)")
    print()
    cols = {
        "ours_enc": "matte-rle enc",
        "ours_dec": "matte-rle dec",
        "course_enc": "course enc (groupby, numpy)",
        "loop_enc": "list loop enc",
        "groupby_enc": "groupby list enc",
        "course_dec": "pure-Python dec",
        "legacy_enc": "course form, vectorised enc",
        "legacy_dec": "course form, vectorised dec",
        "coco_enc": "pycocotools enc",
        "coco_dec": "pycocotools dec",
        "coco_path_enc": "COCO from alpha",
        "png_enc": "PNG enc",
        "png_dec": "PNG dec",
    }
    print("| matte | N | " + " | ".join(cols.values()) + " |")
    print("|---|---|" + "---:|" * len(cols))
    for r in results:
        cells = " | ".join(f"{r['t'][c]:.2f}" for c in cols)
        print(f"| {r['name']} | {r['n'][0]}/{r['n'][1]} | {cells} |")
    print()
    print("N: repeats for the fast / slow (pure-Python, PNG encode) columns. COCO from alpha =")
    print("threshold + column-major copy + pycocotools encode + utf-8, i.e. encode_coco_binary.")
    print()
    print("## Bytes per matte")
    print()
    print(
        "| matte | counts | JSON streamed | PNG | raw H*W | course-form JSON | COCO binary JSON |"
    )
    print("|---|" + "---:|" * 6)
    for r in results:
        s = r["size"]
        print(
            f"| {r['name']} | {s['counts']} | {s['json']} | {s['png']} | {s['raw']} | "
            f"{s['course_json']} | {s['coco_json']} |"
        )
    print()
    print("## Against the goals")
    print()
    print("| goal | " + " | ".join(r["name"] for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    checks: list[tuple[str, Callable[[dict[str, Any]], float], str, float]] = [
        (
            "course enc / matte-rle enc (>= 100)",
            lambda r: r["t"]["course_enc"] / r["t"]["ours_enc"],
            ">=",
            100,
        ),
        (
            "list loop enc / matte-rle enc (stricter baseline)",
            lambda r: r["t"]["loop_enc"] / r["t"]["ours_enc"],
            ">=",
            100,
        ),
        (
            "pure-Python dec / matte-rle dec (>= 100)",
            lambda r: r["t"]["course_dec"] / r["t"]["ours_dec"],
            ">=",
            100,
        ),
        (
            "matte-rle enc / pycocotools enc (<= 2)",
            lambda r: r["t"]["ours_enc"] / r["t"]["coco_enc"],
            "<=",
            2,
        ),
        (
            "matte-rle enc / COCO from alpha (<= 2)",
            lambda r: r["t"]["ours_enc"] / r["t"]["coco_path_enc"],
            "<=",
            2,
        ),
        (
            "matte-rle dec / pycocotools dec (<= 2)",
            lambda r: r["t"]["ours_dec"] / r["t"]["coco_dec"],
            "<=",
            2,
        ),
        ("soft: JSON / PNG (<= 1.25)", lambda r: r["size"]["json"] / r["size"]["png"], "<=", 1.25),
        (
            "noise: JSON / raw H*W (<= 1.4)",
            lambda r: r["size"]["json"] / r["size"]["raw"],
            "<=",
            1.4,
        ),
    ]
    for label, value, op, bound in checks:
        cells = []
        for r in results:
            if label.startswith(("soft:", "noise:")) and not r["name"].startswith(label[:4]):
                cells.append("")
                continue
            v = value(r)
            ok = v >= bound if op == ">=" else v <= bound
            cells.append(f"{v:.{0 if bound >= 100 else 2}f} {'ok' if ok else 'MISS'}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print(
        "Course form is "
        + ", ".join(f"{r['size']['course_json'] / r['size']['json']:.1f}x" for r in results)
        + " the matte-rle JSON (same order as the columns)."
    )
    print()
    if js:
        print("## JavaScript decode under Node (benchmarks/bench_codec_js.mjs)")
        print()
        print("| matte | node | N | decodeMatte ms | decodeMatteInto (RGBA) ms |")
        print("|---|---|---:|---:|---:|")
        for name, row in js.items():
            print(
                f"| {name} | {row['node']} | {row['repeats']:.0f} | {row['decode_ms']:.2f}"
                f" | {row['into_ms']:.2f} |"
            )
    else:
        print("(node not found: JS decode not measured)")


def main() -> None:
    parser = argparse.ArgumentParser(description="matte codec benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    args = parser.parse_args()
    results = []
    for h, w in ((1080, 1920), (720, 1280)):
        label = f"{h}p"
        results.append(measure(f"soft {label}", soft_matte(h, w, seed=0), args.quick))
        results.append(measure(f"noise {label}", noise_matte(h, w, seed=0), args.quick))
    js = run_node(results, args.quick)
    report(results, js, args.quick)


if __name__ == "__main__":
    main()
