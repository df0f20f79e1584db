"""Propagation pipeline (issue 12): our propagate against the model alone and stock SAM 2.

    .venv/bin/python benchmarks/bench_pipeline.py [--frames 60] [--rounds 3] [--long 1000]

The stand-in for an accelerator: the model runs on ONE torch thread (``torch.set_num_threads(1)``),
the tiny RANDOM-weight model (``sam2_matting.tiny``, 1.35 M parameters) at 256 px, which leaves
the machine's second core to the pipeline. On the first ``--frames`` frames of a 720p source
(``01_dog.mp4``) and a 1080p one (the same frames scaled to 1920x1080 and encoded as H.264
here), interleaved, ``--rounds`` times, medians of propagate-only time per frame:

- model only: stock SAM 2's ``propagate_in_video`` on the frames decoded and resized before
  the clock starts (no conversion of its output);
- ours: ``MattingSession.propagate`` on the video file (decode ahead, post-processing on the
  device, uint8 alpha of every frame on the host), and the same with ``decode_ahead=0`` (each
  frame decoded when SAM 2 asks for it, as before);
- stock: ``SAM2VideoPredictor`` on a folder of the same decoded frames (PNG data, lossless; its
  ``init_state`` loads every frame before the clock starts), with the same sigmoid and uint8
  conversion per frame.

Overlap check, first: whether the second core the stand-in counts on is free at all.

Memory: peak RSS of a fresh process that opens a 100- and a ``--long``-frame 720p video and
propagates ``--frames`` frames, with and without decode ahead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import VIDEOS, _clip


def _scaled(src: Path, dest: Path, frames: int, size: tuple[int, int]) -> Path:
    """The first ``frames`` frames of ``src`` scaled to ``size``, as H.264 (veryfast, crf 20)."""
    with av.open(str(src)) as c, av.open(str(dest), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i, frame in enumerate(c.decode(video=0)):
            if i == frames:
                break
            img = frame.reformat(size[0], size[1], format="yuv420p")
            img.pts, img.time_base = i, Fraction(1, 30)
            out.mux(stream.encode(img))
        out.mux(stream.encode(None))
    return dest


def _cases(
    ours: Any, stock: Any, video: Path, folder: Path, preloaded: torch.Tensor, frames: int
) -> dict[str, Callable[[], float]]:
    """Each case: one propagation of ``frames`` frames; returns its seconds per frame."""
    from sam2_matting import sam2_internals as internals

    with ours.open(video, decode_ahead=0) as s:
        h, w = s.height, s.width
    click = [[w / 2, h / 2]]

    def timed(steps: Iterator[Any]) -> float:
        t = time.perf_counter()
        n = sum(1 for _ in steps)
        seconds = time.perf_counter() - t
        assert n == frames, n
        return seconds / n

    def model_only() -> float:
        with torch.inference_mode():
            with internals.frames_from(preloaded, h, w):
                st = stock.init_state(str(video))
            stock.add_new_points_or_box(st, 0, 1, points=click, labels=[1])
            return timed(stock.propagate_in_video(st, max_frame_num_to_track=frames - 1))

    def ours_run(depth: int) -> float:
        with ours.open(video, decode_ahead=depth) as s:
            s.add_points(0, 1, click, [1])
            per_frame = timed(r.alphas for r in s.propagate(0, max_frames=frames))
            if depth:
                waits.append(s._ahead.wait_s / frames)  # the model's wait for decoding
            return per_frame

    waits: list[float] = []

    def stock_run() -> float:
        def converted(st: Any) -> Iterator[np.ndarray]:
            for _, _, logits in stock.propagate_in_video(st):
                yield (torch.sigmoid(logits[:, 0]) * 255).round().to(torch.uint8).numpy()

        with torch.inference_mode():
            st = stock.init_state(str(folder))
            stock.add_new_points_or_box(st, 0, 1, points=click, labels=[1])
            return timed(converted(st))

    def decode_only() -> float:
        from sam2_matting.sam_frames import SamFrames

        with ours.open(video, decode_ahead=0) as s:
            sam_frames = SamFrames(s.source, ours.image_size, cache_size=0)
            return timed(sam_frames.prepare(s.source.get_frame(i)) for i in range(frames))

    cases: dict[str, Callable[[], float]] = {
        "decode + resize only": decode_only,
        "model only": model_only,
        "ours": lambda: ours_run(4),
        "ours, decode_ahead=0": lambda: ours_run(0),
        "stock SAM 2": stock_run,
    }
    cases_waits[id(cases)] = waits
    return cases


cases_waits: dict[int, list[float]] = {}  # per case table: the model's waits for frames


def speed(frames: int, rounds: int, tmp: Path) -> list[dict[str, float | str]]:
    from sam2.build_sam import build_sam2_video_predictor

    from sam2_matting import sam2_internals as internals
    from sam2_matting.predictor import build_matting_predictor
    from sam2_matting.sam_frames import SamFrames
    from sam2_matting.tiny import make_tiny_model
    from sam2_matting.video import open_video

    files = make_tiny_model(tmp / "tiny", image_size=256, seed=0)
    ours = build_matting_predictor(files.config, files.checkpoint, device="cpu")
    stock = build_sam2_video_predictor(f"/{files.config}", str(files.checkpoint), device="cpu")
    ours.model.fill_hole_area = stock.fill_hole_area = 0  # SAM 2's CPU fallback skips it too
    internals.quiet_progress_bars()
    sources = {
        "720p": VIDEOS / "01_dog.mp4",
        "1080p": _scaled(VIDEOS / "01_dog.mp4", tmp / "dog1080.mp4", frames, (1920, 1080)),
    }
    rows = []
    for name, video in sources.items():
        folder = tmp / f"png-{name}"
        folder.mkdir()
        with open_video(video) as source:
            w, h = source.width, source.height
            prepare = SamFrames(source, 256, cache_size=0).prepare
            rgb = [source.get_frame(i) for i in range(frames)]
        for i, f in enumerate(rgb):
            Image.fromarray(f).save(folder / f"{i:05d}.jpg", format="PNG")  # SAM 2 reads *.jpg
        preloaded = torch.stack([prepare(f) for f in rgb])
        del rgb
        cases = _cases(ours, stock, video, folder, preloaded, frames)
        times: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(rounds + 1):  # round 0 warms up
            for key, run in cases.items():
                per_frame = run()
                if r:
                    times[key].append(per_frame)
        med = {k: statistics.median(v) for k, v in times.items()}
        spread = {k: (min(v), max(v)) for k, v in times.items()}
        rows.append({"source": f"{name} {w}x{h}", **{k: med[k] for k in cases}})
        print(f"\n{name} ({w}x{h}), {frames} frames, {rounds} rounds, ms/frame median (min-max)")
        for k in cases:
            lo, hi = spread[k]
            print(f"  {k:<22} {med[k] * 1e3:7.1f}  ({lo * 1e3:.1f}-{hi * 1e3:.1f})"
                  f"  {1 / med[k]:6.1f} fps")  # fmt: skip
        waits = cases_waits[id(cases)][1:]  # round 0 warms up
        print(f"  ours: the model waited for a frame {statistics.median(waits) * 1e3:.1f} ms/frame")
        print(f"  ours / stock (time)     {med['ours'] / med['stock SAM 2']:.3f}  (goal <= 1.05)")
        print(f"  ours / model only       {med['ours'] / med['model only']:.3f}")
        print(f"  decode_ahead=0 / stock  {med['ours, decode_ahead=0'] / med['stock SAM 2']:.3f}")
    return rows


def _decode_frames(video: Path, frames: int) -> None:
    from sam2_matting.sam_frames import SamFrames
    from sam2_matting.video import open_video

    with open_video(video) as source:
        sam_frames = SamFrames(source, 256, cache_size=0)
        for i in range(frames):
            sam_frames.prepare(source.get_frame(i))


def _torch_loop(steps: int) -> None:
    a = torch.randn(256, 256)
    x = a
    for _ in range(steps):
        x = torch.tanh(x @ a)


def overlap(frames: int, rounds: int) -> None:
    """Is a second core free? Decoding and a one-thread torch loop alone, then at once."""
    import multiprocessing
    import threading

    video = VIDEOS / "01_dog.mp4"

    def timed(fn: Callable[[], None]) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    def threads() -> None:
        th = threading.Thread(target=_decode_frames, args=(video, frames))
        th.start()
        _torch_loop(steps)
        th.join()

    def processes() -> None:
        proc = multiprocessing.get_context("fork").Process(
            target=_decode_frames, args=(video, frames)
        )
        proc.start()
        _torch_loop(steps)
        proc.join()

    decode_s = timed(lambda: _decode_frames(video, frames))
    steps = 50
    per_step = timed(lambda: _torch_loop(steps)) / steps
    steps = max(1, int(decode_s / per_step))  # about as long as the decoding
    rows = []
    for _ in range(rounds):
        a = timed(lambda: _decode_frames(video, frames))
        b = timed(lambda: _torch_loop(steps))
        rows.append((a, b, timed(threads), timed(processes)))
    a, b, t, p = (statistics.median(r[i] for r in rows) for i in range(4))
    print(f"\noverlap check: decoding {frames} 720p frames (decode + resize) and a one-thread")
    print(f"  torch loop of about the same length, {rounds} rounds, median seconds")
    print(f"  decode alone {a:.2f}, torch alone {b:.2f}, sum {a + b:.2f}, max {max(a, b):.2f}")
    print(f"  together as two threads {t:.2f}, as two processes {p:.2f}")
    print("  (together near max: a second core was free; near sum: it was not)")


_MEMORY_CASE = """
import json, resource, sys, torch
torch.set_num_threads(1)
from sam2_matting.predictor import build_matting_predictor
config, ckpt, video, frames, depth = sys.argv[1:6]
p = build_matting_predictor(config, ckpt, device="cpu")
with p.open(video, decode_ahead=int(depth)) as s:
    s.add_points(0, 1, [[640, 360]], [1])
    n = sum(1 for _ in s.propagate(0, max_frames=int(frames)))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"frames": n, "peak_rss_mib": peak}))
"""


def memory(frames: int, long: int, tmp: Path) -> None:
    from sam2_matting.tiny import make_tiny_model

    files = make_tiny_model(tmp / "tiny-mem", image_size=256, seed=0)
    print(f"\nmemory: peak RSS of a fresh process, 720p video, {frames} frames propagated")
    print(f"  {'video frames':>12} {'decode ahead MiB':>17} {'decode_ahead=0 MiB':>19}")
    peaks = []
    for length in (100, long):
        clip = _clip(tmp / f"clip{length}.mp4", length)
        row = []
        for depth in (4, 0):
            args = [str(files.config), str(files.checkpoint), str(clip), str(frames), str(depth)]
            out = subprocess.run(
                [sys.executable, "-c", _MEMORY_CASE, *args],
                capture_output=True,
                text=True,
                check=True,
            )
            row.append(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"])
        peaks.append(row)
        print(f"  {length:>12} {row[0]:>17.0f} {row[1]:>19.0f}")
    growth = 100 * (peaks[1][0] / peaks[0][0] - 1)
    print(f"  growth 100 -> {long} frames with decode ahead: {growth:+.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, model on {torch.get_num_threads()} torch thread, CPU")
    print("tiny model at 256 px, RANDOM weights (speed does not depend on them)")
    overlap(args.frames, args.rounds)
    with tempfile.TemporaryDirectory() as d:
        speed(args.frames, args.rounds, Path(d))
        if not args.skip_memory:
            memory(args.frames, args.long, Path(d))


if __name__ == "__main__":
    main()
