"""Foreground colour estimation: composite error on known-truth clips, and cost per frame.

    .venv/bin/python benchmarks/bench_foreground.py                 # 720p and 1080p, 3 rounds
    .venv/bin/python benchmarks/bench_foreground.py --sizes 720 --rounds 1 --pymatting

Clips: the known-truth clips of ``sam2_matting.metrics.known_truth`` (real footage composited
under a known matte with hair-like strands, thin gaps, a veil and motion blur; both splits,
``--count`` clips of each, ``--frames`` frames each; I rounded to 8 bits, as a decoded frame
is). Each clip is scored with two mattes: the true α (rounded to 8 bits) and the coarse one
(SAM 2's output as it reaches a session, simulated from the truth). The colour is the source
pixel (``source``) or ``estimate_foreground`` (``estimate``); ``true B`` is the colour solved
with the true background, ``F = (I - (1 - α)B) / α``: what the estimate would reach if it
recovered B exactly (the limit of the method's smoothness prior, not a usable method); ``true
F`` is the true foreground colour itself: with it the error left is the matte's own, the floor
no colour can go below for that matte (0 for the true α, up to rounding). Errors
(:func:`sam2_matting.metrics.truth_scores.composite_error`, x1e-3): the composite over pure
green and over a frame of unused footage against the true composite, over the pixels inside
either matte; the mean over the clip's frames.

Time per frame, wall and CPU (all threads of the process; steadier on a shared machine):
``estimate_foreground`` on the first clip's coarse matte (median of ``--rounds``; ``source``
costs nothing), next to the ProRes writer's per-frame cost at the same size (``open_writer``
writing ``--writer-frames`` frames to a temporary file, straight colour). ``--pymatting`` adds
``pymatting.estimate_foreground_ml`` (if installed) as a reference, its first call timed apart
(numba loads or compiles its kernels then).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam2_matting.export import open_writer  # noqa: E402
from sam2_matting.export.foreground import estimate_foreground  # noqa: E402
from sam2_matting.metrics.alpha import quantize  # noqa: E402
from sam2_matting.metrics.known_truth import TruthClip, truth_clips  # noqa: E402
from sam2_matting.metrics.truth_scores import composite_error  # noqa: E402

SIZES = {720: (720, 1280), 1080: (1080, 1920)}
GREEN = np.array([0, 255, 0], np.uint8)


def _colours(clip: TruthClip, t: int, matte: np.ndarray, reference: Any) -> dict[str, np.ndarray]:
    image = clip.frames[t]
    a = matte[..., None] / 255.0
    solved = (image - (1 - a) * clip.bg[t]) / np.maximum(a, 1 / 255)
    colours = {
        "source": image,
        "estimate": estimate_foreground(image, matte),
        "true B": np.clip(np.rint(solved), 0, 255).astype(np.uint8),
        "true F": clip.fg[t],
    }
    if reference is not None:
        colours["pymatting"] = reference(image, matte)
    return colours


def _score(clip: TruthClip, reference: Any) -> list[tuple[str, str, dict[str, list[float]]]]:
    """Per matte: {colour: [composite error over green, over the image]} (frame means)."""
    out = []
    for matte_name, mattes in (("true", clip.alpha), ("coarse", clip.coarse)):
        sums: dict[str, np.ndarray] = {}
        for t in range(mattes.shape[0]):
            matte = quantize(mattes[t])
            for name, colour in _colours(clip, t, matte, reference).items():
                errors = [composite_error(matte, colour, clip.alpha[t], clip.fg[t], g)
                          for g in (GREEN, clip.image_bg)]  # fmt: skip
                sums[name] = sums.get(name, np.zeros(2)) + np.array(errors)
        means = {name: list(v / mattes.shape[0]) for name, v in sums.items()}
        out.append((clip.name, matte_name, means))
    return out


def _median_time(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median wall and CPU seconds (all threads of this process) of ``rounds`` calls."""
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _prores_per_frame(image: np.ndarray, matte: np.ndarray, frames: int) -> tuple[float, float]:
    """Wall and CPU seconds per frame of the ProRes writer (straight colour, no estimation)."""
    h, w = matte.shape
    with tempfile.TemporaryDirectory() as tmp:
        writer = open_writer("prores", Path(tmp) / "x.mov", w, h, foreground="source")
        wall, cpu = time.perf_counter(), time.process_time()
        with writer:
            for _ in range(frames):
                writer.write(image, matte)
        return (time.perf_counter() - wall) / frames, (time.process_time() - cpu) / frames


def _pymatting() -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    try:
        from pymatting import estimate_foreground_ml
    except ImportError:
        return None

    def run(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        f = estimate_foreground_ml(image / 255.0, alpha / 255.0)
        out: np.ndarray = np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8)
        return out

    return run


def _timing(label: str, clip: TruthClip, args: argparse.Namespace, reference: Any) -> list[str]:
    image, matte = clip.frames[0], quantize(clip.coarse[0])
    soft = float(((matte > 0) & (matte < 255)).mean())
    est, est_cpu = _median_time(lambda: estimate_foreground(image, matte), args.rounds)
    prores, prores_cpu = _prores_per_frame(image, matte, args.writer_frames)
    entry = [label, f"{soft:.1%}"]
    entry += [f"{est * 1e3:.0f}", f"{prores * 1e3:.0f}", f"{est / prores:.2f}"]
    entry += [f"{est_cpu * 1e3:.0f}", f"{prores_cpu * 1e3:.0f}", f"{est_cpu / prores_cpu:.2f}"]
    if reference is not None:
        first = time.perf_counter()
        reference(image, matte)
        first_ms = (time.perf_counter() - first) * 1e3
        ref, ref_cpu = _median_time(lambda: reference(image, matte), args.rounds)
        entry += [f"{ref * 1e3:.0f}", f"{ref_cpu * 1e3:.0f}", f"{first_ms:.0f}"]
    return entry


def _row(size: int, clip: str, matte: str, means: dict[str, list[float]]) -> str:
    src, est = means["source"], means["estimate"]
    cells = [f"{size}p", clip, f"{matte} α"]
    for i in (0, 1):
        gain = src[i] / est[i] if est[i] else float("inf")
        cells += [f"{src[i]:.3f}", f"{est[i]:.3f}", f"{gain:.1f}×", f"{est[i] / src[i] - 1:+.0%}"]
    cells += [f"{means['true B'][0]:.4f}", f"{means['true F'][0]:.4f}"]
    if "pymatting" in means:
        cells.append(f"{means['pymatting'][0]:.3f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="720,1080", help="comma-separated: 720, 1080")
    parser.add_argument("--count", type=int, default=3, help="clips of each split")
    parser.add_argument("--frames", type=int, default=2, help="frames per clip")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument(
        "--writer-frames", type=int, default=10, help="frames the ProRes writer times"
    )
    parser.add_argument("--pymatting", action="store_true", help="add pymatting as a reference")
    args = parser.parse_args()
    reference = _pymatting() if args.pymatting else None
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    rows: list[str] = []
    times: list[list[str]] = []
    for key in (int(s) for s in args.sizes.split(",")):
        for split in ("heldout", "train"):
            for i, clip in enumerate(
                truth_clips(split, size=SIZES[key], frames=args.frames, count=args.count)
            ):
                rows += [_row(key, *entry) for entry in _score(clip, reference)]
                if split == "heldout" and i == 0:
                    times.append(_timing(f"{key}p", clip, args, reference))
    head = (
        "| size | clip | matte | green: source | estimate | ÷ | change | image: source | estimate"
        " | ÷ | change | green, true B | green, true F |"
    )
    if reference is not None:
        head += " green, pymatting |"
    print("\ncomposite error (×10⁻³)\n\n" + head)
    print("|---" * (head.count("|") - 1) + "|")
    print("\n".join(rows))
    head = (
        "| size | soft pixels (coarse α) | estimate wall ms | ProRes wall ms | ÷ wall"
        " | estimate CPU ms | ProRes CPU ms | ÷ CPU |"
    )
    if reference is not None:
        head += " pymatting wall ms | pymatting CPU ms | pymatting first call ms |"
    print("\n" + head)
    print("|---" * (head.count("|") - 1) + "|")
    for entry in times:
        print("| " + " | ".join(entry) + " |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
