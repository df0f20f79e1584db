"""The ``temporal`` foreground mode against today's estimate, on moving and still backgrounds.

    .venv/bin/python benchmarks/bench_temporal_background.py                 # 720p and 1080p
    .venv/bin/python benchmarks/bench_temporal_background.py --sizes 720 --count 1

Clips: the known-truth clips of ``sam2_matting.metrics.known_truth``, both splits (held-out
first; ``--count`` of each, ``--frames`` frames each), in two variants: **moving**, the clips
as the other benchmarks use them (the background is real footage with its own motion), and
**static**, the same clips (matte, foreground, motion) over one frame of that background held
still with fresh sensor noise each frame (σ 1.5 levels: a camera on a tripod). Each clip is
scored with the true α (8-bit) and the coarse α (SAM 2's output as a session has it,
simulated). Colours: ``source`` (the source pixel), ``estimate`` (the single-frame
multilevel estimate) and ``temporal`` (the background from the other frames of the clip,
within ``RADIUS`` frames, where trusted; :mod:`sam2_matting.export.background_plate`).
Composite error x1e-3 over green and over a frame of unused footage
(:func:`sam2_matting.metrics.truth_scores.composite_error`), mean over the clip's frames;
``trusted`` is the share of the soft pixels whose background came from other frames and
``B err`` the mean error of that background (levels) against the true one.

``--closed-form`` compares, instead, the solve with B held (what the mode does) with the closed
form ``F = (I - (1 - α)B) / α`` at the trusted pixels (held-out clips only).

Time per frame (wall and CPU, mean over every scored frame of a size): ``estimate`` and
``temporal`` (plate plus solve), next to the ProRes writer's per-frame cost at that size
(``open_writer`` writing ``--writer-frames`` frames, straight colour), in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_foreground import _prores_per_frame  # noqa: E402

from sam2_matting.export import open_writer  # noqa: E402
from sam2_matting.export.background_plate import (  # noqa: E402
    RADIUS,
    background_from_frames,
    clear_background,
)
from sam2_matting.export.foreground import estimate_foreground  # noqa: E402
from sam2_matting.metrics.alpha import quantize  # noqa: E402
from sam2_matting.metrics.known_truth import TruthClip, truth_clips  # noqa: E402
from sam2_matting.metrics.truth_scores import composite_error  # noqa: E402

SIZES = {720: (720, 1280), 1080: (1080, 1920)}
GREEN = np.array([0, 255, 0], np.uint8)
COLOURS = ("source", "estimate", "temporal")
T = TypeVar("T")


def _timed(fn: Callable[[], T], clock: list[float]) -> T:
    """``fn()``, its wall and CPU seconds added to ``clock``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    clock[0] += time.perf_counter() - wall
    clock[1] += time.process_time() - cpu
    return out


def _temporal(
    frames: list[np.ndarray], alphas: list[np.ndarray], clears: list[np.ndarray], t: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the ``temporal`` mode writes for frame ``t`` (as ``temporal_foreground``), with
    the plate and where it is trusted."""
    lo, hi = max(0, t - RADIUS), min(len(frames), t + RADIUS + 1)
    plate, trusted = background_from_frames(frames[lo:hi], alphas[lo:hi], t - lo, clears[lo:hi])
    if not trusted.any():
        return estimate_foreground(frames[t], alphas[t]), plate, trusted
    colour = estimate_foreground(frames[t], alphas[t], background=plate, known=trusted)
    return colour, plate, trusted


def _clears(alphas: list[np.ndarray]) -> list[np.ndarray]:
    return [clear_background(a) for a in alphas]


def _score(clip: TruthClip, mattes: np.ndarray, clocks: dict[str, list[float]]) -> list[float]:
    """[green, image] per colour (frame means), then trusted share and B error."""
    frames = list(clip.frames)
    alphas = [quantize(m) for m in mattes]
    sums = np.zeros((len(COLOURS), 2))
    trusted_share, b_err, b_frames = 0.0, 0.0, 0
    # once per frame, as the writers' window does (TemporalForeground)
    clears = _timed(partial(_clears, alphas), clocks["temporal"])
    for t in range(len(frames)):
        estimate = _timed(partial(estimate_foreground, frames[t], alphas[t]), clocks["estimate"])
        temporal = partial(_temporal, frames, alphas, clears, t)
        colour, plate, trusted = _timed(temporal, clocks["temporal"])
        clocks["frames"][0] += 1
        soft = (alphas[t] > 0) & (alphas[t] < 255)
        trusted_share += float(trusted[soft].mean()) if soft.any() else 0.0
        if trusted.any():
            b_err += float(np.abs(plate[trusted].astype(int) - clip.bg[t][trusted]).mean())
            b_frames += 1
        for i, c in enumerate((frames[t], estimate, colour)):
            for j, g in enumerate((GREEN, clip.image_bg)):
                sums[i, j] += composite_error(alphas[t], c, clip.alpha[t], clip.fg[t], g)
    means = list((sums / len(frames)).ravel())
    return [*means, trusted_share / len(frames), b_err / max(1, b_frames)]


def _writer_modes(size: tuple[int, int], frames: int) -> list[float]:
    """Wall and CPU ms per frame of the ProRes writer with each colour (``open_writer``, as an
    export runs it: ``temporal`` with its window of ``2 * RADIUS + 1`` frames), on ``frames``
    frames of the first held-out clip over a still background, its coarse α."""
    clip = next(truth_clips("heldout", size=size, frames=frames, count=1, static=True))
    alphas = [quantize(m) for m in clip.coarse]
    out = []
    for mode in COLOURS:
        with tempfile.TemporaryDirectory() as tmp:
            writer = open_writer("prores", Path(tmp) / "x.mov", size[1], size[0], foreground=mode)
            wall, cpu = time.perf_counter(), time.process_time()
            with writer:
                for rgb, alpha in zip(clip.frames, alphas, strict=True):
                    writer.write(rgb, alpha)
            out += [(time.perf_counter() - wall) / frames, (time.process_time() - cpu) / frames]
    return [v * 1e3 for v in out]


def _closed_form(size: tuple[int, int], count: int, frames: int) -> list[str]:
    """Rows: the solve with B held (the mode) against the closed form ``F = (I - (1 - α)B) / α``
    at the trusted pixels (today's estimate elsewhere); mean composite error of green and
    image, held-out clips, both backgrounds and mattes."""
    rows = []
    for static in (False, True):
        for clip in truth_clips("heldout", size=size, frames=frames, count=count, static=static):
            for matte_name, mattes in (("true", clip.alpha), ("coarse", clip.coarse)):
                frames_, alphas = list(clip.frames), [quantize(m) for m in mattes]
                clears = _clears(alphas)
                sums = np.zeros(2)
                for t in range(len(frames_)):
                    solved, plate, trusted = _temporal(frames_, alphas, clears, t)
                    a = alphas[t][..., None] / 255.0
                    closed = estimate_foreground(frames_[t], alphas[t])
                    direct = (frames_[t] - (1 - a) * plate) / np.maximum(a, 1 / 255)
                    closed[trusted] = np.clip(np.rint(direct), 0, 255).astype(np.uint8)[trusted]
                    for i, c in enumerate((solved, closed)):
                        for g in (GREEN, clip.image_bg):
                            sums[i] += composite_error(
                                alphas[t], c, clip.alpha[t], clip.fg[t], g
                            ) / (2 * len(frames_))
                rows.append(
                    f"| {size[0]}p | {clip.name} | {matte_name} α | {sums[0]:.4f} | {sums[1]:.4f}"
                    f" | {sums[1] / sums[0] - 1:+.1%} |"
                )
                print(rows[-1], flush=True)
    return rows


def _table(title: str, head: str, rows: list[str]) -> None:
    """A markdown table under its title: the head, the separator, the rows."""
    print(f"\n{title}\n\n{head}")
    print("|---" * (head.count("|") - 1) + "|")
    print("\n".join(rows))


def _row(size: int, variant: str, name: str, matte: str, v: list[float]) -> str:
    cells = [f"{size}p", variant, name, f"{matte} α"]
    for j in (0, 1):  # green, image
        src, est, tem = v[j], v[2 + j], v[4 + j]
        cells += [f"{src:.3f}", f"{est:.3f}", f"{tem:.3f}", f"{tem / est - 1:+.1%}"]
    cells += [f"{v[6]:.0%}", f"{v[7]:.1f}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="720,1080", help="comma-separated: 720, 1080")
    parser.add_argument("--count", type=int, default=3, help="clips of each split")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument(
        "--writer-frames", type=int, default=10, help="frames the ProRes writer times"
    )
    parser.add_argument(
        "--export-frames", type=int, default=24, help="frames of the writer timing by colour"
    )
    parser.add_argument("--writer-only", action="store_true", help="only the writer timing")
    parser.add_argument(
        "--closed-form", action="store_true", help="only: the solve against the closed form"
    )
    args = parser.parse_args()
    if args.closed_form:
        closed = [r for key in args.sizes.split(",") for r in
                  _closed_form(SIZES[int(key)], args.count, args.frames)]  # fmt: skip
        head = "| size | clip | matte | solve, B held | closed form | closed ÷ solve |"
        _table("solve with B held against the closed form", head, closed)
        return
    print(f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    rows: list[str] = []
    summary: list[str] = []
    times: list[str] = []
    writer_times: list[str] = []
    for key in (int(s) for s in args.sizes.split(",")):
        ms = _writer_modes(SIZES[key], args.export_frames)
        writer_times.append(
            f"| {key}p | "
            + " | ".join(f"{ms[2 * i]:.0f} | {ms[2 * i + 1]:.0f}" for i in range(3))
            + f" | {ms[2] / ms[0]:.2f} | {ms[4] / ms[0]:.2f} |"
        )
        print(writer_times[-1], flush=True)
        if args.writer_only:
            continue
        clocks = {"estimate": [0.0, 0.0], "temporal": [0.0, 0.0], "frames": [0.0]}
        first: TruthClip | None = None
        for variant in ("moving", "static"):
            ratios: dict[str, list[float]] = {"true": [], "coarse": []}
            for split in ("heldout", "train"):
                clips = truth_clips(
                    split,
                    size=SIZES[key],
                    frames=args.frames,
                    count=args.count,
                    static=variant == "static",
                )
                for clip in clips:
                    first = first or clip
                    for matte_name, mattes in (("true", clip.alpha), ("coarse", clip.coarse)):
                        v = _score(clip, mattes, clocks)
                        rows.append(_row(key, variant, clip.name, matte_name, v))
                        ratios[matte_name] += [v[4] / v[2], v[5] / v[3]]
                        print(rows[-1], flush=True)
            for matte_name, r in ratios.items():
                arr = np.array(r)
                summary.append(
                    f"| {key}p | {variant} | {matte_name} α | {np.exp(np.log(arr).mean()) - 1:+.1%}"
                    f" | {(arr < 0.995).sum()} | {(np.abs(arr - 1) <= 0.005).sum()}"
                    f" | {(arr > 1.005).sum()} | {arr.min() - 1:+.1%} | {arr.max() - 1:+.1%} |"
                )
        assert first is not None
        n = clocks["frames"][0]
        prores, prores_cpu = _prores_per_frame(
            first.frames[0], quantize(first.coarse[0]), args.writer_frames
        )
        est, tem = clocks["estimate"], clocks["temporal"]
        times.append(
            f"| {key}p | {est[0] / n * 1e3:.0f} | {tem[0] / n * 1e3:.0f} | {prores * 1e3:.0f}"
            f" | {tem[0] / est[0]:.2f} | {tem[0] / n / prores:.2f} | {est[1] / n * 1e3:.0f}"
            f" | {tem[1] / n * 1e3:.0f} | {prores_cpu * 1e3:.0f} | {tem[1] / n / prores_cpu:.2f} |"
        )
    _table(
        "composite error (×10⁻³); change: temporal against estimate",
        "| size | background | clip | matte | green: source | estimate | temporal | change"
        " | image: source | estimate | temporal | change | trusted | B err |",
        rows,
    )
    _table(
        "temporal against estimate, over green and over the image",
        "| size | background | matte | geometric mean change | better | same (±0.5 %) | worse"
        " | best | worst |",
        summary,
    )
    _table(
        "time per frame",
        "| size | estimate wall ms | temporal wall ms | ProRes wall ms | temporal ÷ estimate"
        " | temporal ÷ ProRes | estimate CPU ms | temporal CPU ms | ProRes CPU ms"
        " | temporal ÷ ProRes CPU |",
        times,
    )
    _table(
        f"ProRes writer per frame by colour ({args.export_frames} frames)",
        "| size | ProRes + source wall ms | CPU ms | + estimate wall ms | CPU ms"
        " | + temporal wall ms | CPU ms | estimate ÷ source (wall) | temporal ÷ source (wall) |",
        writer_times,
    )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
