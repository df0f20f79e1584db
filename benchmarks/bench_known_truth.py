"""Known-truth matting benchmark: SAM 2's coarse matte, and refiners of it, against the truth.

    .venv/bin/python benchmarks/bench_known_truth.py                       # held-out, 720p+1080p
    .venv/bin/python benchmarks/bench_known_truth.py --sizes 720 --frames 4 --count 3
    .venv/bin/python benchmarks/bench_known_truth.py --refine my_module:refine   # score a refiner

Clips: :func:`sam2_matting.metrics.known_truth.truth_clips` (real footage from the shared
videos and the gallery composited under a known full-resolution matte with strands, gaps, a
veil and motion blur; the held-out split uses footage no training clip sees). The coarse
matte is SAM 2's output as it reaches a session, simulated from the truth (decoder grid
256x256, logits, bilinear stretch, sigmoid): the best SAM 2 could do at its resolution.

Scores (:mod:`sam2_matting.metrics.truth_scores`): MAD, MSE (x1e3), Grad, Conn (/1e3), dtSSD
(x1e2) of the 8-bit matte against the truth, and the composite error (x1e3) over pure green and
over a frame of unused footage, with the colour the exports write (``--foreground``).

``--refine MODULE:FUNCTION`` (repeatable) adds a matte: ``FUNCTION(frames, coarse) -> alpha``
with frames uint8 (T, H, W, 3), coarse and alpha float32 (T, H, W) in [0, 1]; its time per
frame is printed next to the time to decode a frame of the same size. One table per size: one
line per clip and matte, the means, and each refiner's change against the coarse matte.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam2_matting.metrics.known_truth import truth_clips  # noqa: E402
from sam2_matting.metrics.truth_scores import Refine, markdown_rows, score_clips  # noqa: E402

SIZES = {720: (720, 1280), 1080: (1080, 1920)}


def _load(spec: str) -> tuple[str, Refine]:
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--refine wants MODULE:FUNCTION, got {spec!r}")
    func = getattr(importlib.import_module(module), name)
    return name, func


def _decode_seconds(size: tuple[int, int], frames: int = 30) -> float:
    """Seconds to decode one H.264 frame at ``size`` to RGB (``frames`` of a shared video,
    re-encoded at ``size`` into a temporary file first)."""
    import av

    from sam2_matting.metrics.known_truth import default_source_dirs

    source = default_source_dirs()[0] / "04_coffee.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(source)) as src, av.open(str(path), "w") as dst:
            stream = dst.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
            for i, frame in enumerate(src.decode(video=0)):
                if i == frames:
                    break
                out = frame.reformat(width=size[1], height=size[0], format="yuv420p")
                dst.mux(stream.encode(out))
            dst.mux(stream.encode())
        started = time.perf_counter()
        with av.open(str(path)) as container:
            count = sum(1 for f in container.decode(video=0) if f.to_ndarray(format="rgb24").size)
        return (time.perf_counter() - started) / max(1, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="heldout", choices=("train", "heldout"))
    parser.add_argument("--sizes", default="720,1080", help="comma-separated: 720, 1080")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--count", type=int, help="clips (default: the split's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--foreground", default="estimate", choices=("source", "estimate"))
    parser.add_argument("--refine", action="append", default=[], metavar="MODULE:FUNCTION")
    args = parser.parse_args()
    refiners = dict(_load(spec) for spec in args.refine)
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    for key in (int(s) for s in args.sizes.split(",")):
        size = SIZES[key]
        started = time.perf_counter()
        clips = truth_clips(
            args.split, size=size, frames=args.frames, seed=args.seed, count=args.count
        )
        rows = score_clips(clips, refiners, foreground=args.foreground)
        print(
            f"\n### {key}p, {args.split}, {args.frames} frames per clip, seed {args.seed}, "
            f"colour {args.foreground} ({time.perf_counter() - started:.0f} s)\n"
        )
        print(markdown_rows(rows), end="")
        if refiners:
            decode = _decode_seconds(size)
            for name in refiners:
                per_frame = np.mean([r.seconds for r in rows if r.method == name]) / args.frames
                print(
                    f"\n{name}: {per_frame * 1e3:.0f} ms per {key}p frame; decoding a frame "
                    f"{decode * 1e3:.0f} ms; ratio {per_frame / decode:.2f}"
                )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
