"""Layouts considered for matte-rle/1, measured side by side (the figures in docs/matte-rle.md).

    .venv/bin/python benchmarks/codec_alternatives.py

For each matte it prints the text size of each layout relative to the PNG of the same matte
(Pillow defaults) and the best-of-10 time to build it. All layouts share the tokenizer of
sam2_matting.codec.rle; they differ in how literal bytes are predicted, whether the body is
deflated (zlib level), and the text alphabet (base64: 4 chars per 3 bytes, base85: 5 per 4).
"""

from __future__ import annotations

import base64
import io
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam2_matting.codec import rle
from sam2_matting.codec.synthetic import noise_matte, soft_matte


def deflate(data: bytes, level: int) -> bytes:
    packer = zlib.compressobj(level, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def run_list(alpha: np.ndarray) -> bytes:
    """Plain run list: one value byte and a LEB128 length per run of equal pixels."""
    flat = alpha.reshape(-1)
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size))
    return flat[starts].tobytes() + rle._varints(lengths).tobytes()


def token_body(alpha: np.ndarray, predictor: str) -> bytes:
    """matte-rle tokens with literal bytes predicted from nothing, the left or the upper pixel."""
    flat, width = alpha.reshape(-1), alpha.shape[1]
    starts, lens, kinds = rle._tokenize(flat)
    lit = kinds == rle.KIND_LITERAL
    if predictor == "up":
        residuals = rle._literal_residuals(flat, width, starts[lit], lens[lit])
    else:
        idx = rle._span_indices(starts[lit], lens[lit], int(lens[lit].sum()))
        residuals = flat[idx]
        if predictor == "left":
            residuals = residuals - np.where(idx > 0, flat[np.maximum(idx - 1, 0)], 0).astype(
                np.uint8
            )
    val = kinds == rle.KIND_VALUE
    before = np.cumsum(np.where(lit, lens, 0))[val]
    payload = np.insert(residuals, before, flat[starts[val]])
    headers = rle._varints(((lens - 1) << 2) | kinds)
    count = rle._varints(np.array([headers.size], dtype=np.int64))
    return count.tobytes() + headers.tobytes() + payload.tobytes()


def up_filtered_image(alpha: np.ndarray) -> bytes:
    """PNG-like: the whole image with PNG's Up filter, no tokens."""
    up = alpha.copy()
    up[1:] -= alpha[:-1]
    return up.tobytes()


def b64_len(n: int) -> int:
    return 4 * -(-n // 3)


def b85_len(n: int) -> int:
    return 5 * (n // 4) + (n % 4 + 1 if n % 4 else 0)


LAYOUTS: list[tuple[str, Callable[[np.ndarray], bytes], int]] = [
    ("run list (value byte + varint length)", run_list, 0),
    ("run list, deflate 6", run_list, 6),
    ("tokens, literals as is", lambda a: token_body(a, "none"), 0),
    ("tokens, literals as is, deflate 1", lambda a: token_body(a, "none"), 1),
    ("tokens, literals as is, deflate 6", lambda a: token_body(a, "none"), 6),
    ("tokens, left-predicted, deflate 1", lambda a: token_body(a, "left"), 1),
    ("tokens, up-predicted (no deflate)", lambda a: token_body(a, "up"), 0),
    ("tokens, up-predicted, deflate 1 [chosen]", lambda a: token_body(a, "up"), 1),
    ("tokens, up-predicted, deflate 6", lambda a: token_body(a, "up"), 6),
    ("tokens, up-predicted, deflate 9", lambda a: token_body(a, "up"), 9),
    ("whole image, Up filter, deflate 1", up_filtered_image, 1),
    ("whole image, Up filter, deflate 6", up_filtered_image, 6),
]


def best_of(fn: Callable[[], bytes], repeats: int = 10) -> tuple[float, bytes]:
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3, out


def main() -> None:
    soft = soft_matte(1080, 1920, seed=0)
    wide = np.clip(np.rint(ndimage.gaussian_filter(soft.astype(float), 2.0)), 0, 255)
    mattes = {
        "soft 1080p": soft,
        "soft 720p": soft_matte(720, 1280, seed=0),
        "soft 1080p, edges blurred (sigma 2)": wide.astype(np.uint8),
        "noise 720p": noise_matte(720, 1280, seed=0),
    }
    for name, alpha in mattes.items():
        buf = io.BytesIO()
        Image.fromarray(alpha).save(buf, format="PNG")
        png = len(buf.getvalue())
        print(f"## {name}: PNG {png} bytes, raw {alpha.size} bytes")
        print()
        print("| layout | binary bytes | base64 / PNG | base85 / PNG | build ms |")
        print("|---|---:|---:|---:|---:|")
        for label, build, level in LAYOUTS:
            ms, data = best_of(lambda b=build, lv=level, a=alpha: deflate(b(a), lv) if lv else b(a))
            print(
                f"| {label} | {len(data)} | {b64_len(len(data)) / png:.3f}"
                f" | {b85_len(len(data)) / png:.3f} | {ms:.2f} |"
            )
        ours = rle.encode_matte(alpha)["counts"]
        ms, _ = best_of(lambda a=alpha: rle.encode_matte(a)["counts"].encode())
        binary = len(base64.b64decode(ours))
        print(f"| encode_matte (as shipped) | {binary} | {len(ours) / png:.3f} | | {ms:.2f} |")
        print()


if __name__ == "__main__":
    main()
