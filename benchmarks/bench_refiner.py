"""The full-resolution refiner against SAM 2's coarse matte on held-out known-truth clips.

    .venv/bin/python benchmarks/bench_refiner.py --adapter runs/refiner/adapter
    .venv/bin/python benchmarks/bench_refiner.py --train-steps 700 --out runs/refiner-bench

Quality: for every held-out clip of :func:`sam2_matting.metrics.known_truth.truth_clips` (their
footage and matte seeds are kept apart from the training clips), the coarse matte (simulated
SAM 2 output) and the refined matte, both quantised to 8 bits as the service returns them, are
scored against the true matte: MAD, MSE (x1e3), Grad (/1e3, not normalised: the HR variant),
dtSSD (x1e2), each the mean over the clip's frames. Goal per clip: Grad and MSE at least 30 %
lower, MAD and dtSSD not higher.

Speed (``--speed``): one 1080p known-truth clip is encoded to H.264 and decoded through the
project's own reader (``open_video``, PyAV), then the refiner runs on each frame with the
simulated coarse matte; the figure is refiner time per frame / decode time per frame, measured
side by side in one run on the CPU. The distribution is synthetic (real footage under known
mattes, not real people): see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam2_matting.metrics.alpha import dtssd, grad, mad, mse, quantize, to_unit
from sam2_matting.metrics.known_truth import resharpen, truth_clips
from sam2_matting.refiner import GuidedRefiner, load_refiner, parameter_count

METRICS = ("MAD", "MSE", "Grad", "dtSSD")


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Means over frames of 8-bit ``pred`` (T,H,W uint8) against float ``truth``."""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    prev_a = prev_g = None
    for a8, g in zip(pred, truth, strict=True):
        a = to_unit(a8)
        g = to_unit(quantize(g))
        out["MAD"].append(mad(a, g))
        out["MSE"].append(mse(a, g))
        out["Grad"].append(grad(a, g, normalize=False))
        out["dtSSD"].append(dtssd(a, prev_a, g, prev_g))
        prev_a, prev_g = a, g
    return {m: float(np.mean(v)) for m, v in out.items()}


def refine_clip(net: GuidedRefiner, frames: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    out = np.empty(coarse.shape, np.uint8)
    for t in range(len(frames)):
        alpha = net.refine(frames[t], torch.from_numpy(coarse[t][None]))
        out[t] = (alpha[0] * 255.0).round().to(torch.uint8).numpy()
    return out


def quality(net: GuidedRefiner, args: argparse.Namespace) -> bool:
    all_met = True
    print(
        f"\nheld-out clips at {args.size}, {args.frames} frames: coarse -> refined "
        "(change); goal Grad, MSE <= -30 %, MAD, dtSSD <= 0 %"
    )
    print("| clip | " + " | ".join(METRICS) + " | goal |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    h, w = (int(v) for v in args.size.split("x"))
    totals: dict[str, list[float]] = {m: [] for m in METRICS}
    if args.sharpness != 1.0:
        print(f"coarse logits scaled by {args.sharpness} (SAM 2's output steeper or flatter)")
    for clip in truth_clips("heldout", size=(h, w), frames=args.frames, count=args.clips):
        coarse = resharpen(clip.coarse, args.sharpness)
        base = scores(quantize(coarse), clip.alpha)
        ref = scores(refine_clip(net, clip.frames, coarse), clip.alpha)
        cells, met = [], True
        for m in METRICS:
            change = (ref[m] - base[m]) / base[m] * 100 if base[m] > 0 else 0.0
            totals[m].append(change)
            ok = change <= -30 if m in ("Grad", "MSE") else change <= 0
            met &= ok
            cells.append(f"{base[m]:.3g} -> {ref[m]:.3g} ({change:+.0f} %)")
        all_met &= met
        print(f"| {clip.name} | " + " | ".join(cells) + f" | {'met' if met else 'missed'} |")
    print("mean change: " + ", ".join(f"{m} {np.mean(v):+.1f} %" for m, v in totals.items()))
    print(f"goal on every clip: {'met' if all_met else 'missed'}")
    return all_met


def speed(net: GuidedRefiner, args: argparse.Namespace) -> None:
    clips = truth_clips(
        "heldout", size=(1080, 1920), frames=args.speed_frames, count=args.speed_clips
    )
    print(
        f"\n1080p, {args.speed_frames} frames a clip, best of {args.repeats}, torch threads "
        f"{torch.get_num_threads()} (CPU = all threads of the process); refiner: the compiled "
        "CPU kernels (the default on a CPU), torch ops: the same steps as torch operations "
        "(the path a GPU runs), here on the CPU:"
    )
    print(
        "| clip | soft coarse pixels | decode wall / CPU ms | refiner wall / CPU ms "
        "| refiner / decode, wall / CPU | torch ops wall / CPU ms | torch ops / decode, CPU |"
    )
    print("|---|---|---|---|---|---|---|")
    for clip in clips:
        (dw, dc), (rw, rc), (tw, tc) = _time_clip(net, clip, args.repeats)
        soft = float(((clip.coarse > 0.5 / 255) & (clip.coarse < 1 - 0.5 / 255)).mean()) * 100
        print(
            f"| {clip.name} | {soft:.1f} % | {dw * 1e3:.1f} / {dc * 1e3:.1f} "
            f"| {rw * 1e3:.1f} / {rc * 1e3:.1f} | {rw / dw:.2f} / {rc / dc:.2f} "
            f"| {tw * 1e3:.1f} / {tc * 1e3:.1f} | {tc / dc:.2f} |"
        )
    print("goal: refiner / decode <= 1.0")


def _time_clip(net: GuidedRefiner, clip, repeats: int):  # type: ignore[no-untyped-def]
    import av

    import sam2_matting.refiner as refiner_module
    from sam2_matting.video import open_video

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip1080.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
            stream.options = {"crf": "18"}
            for frame in clip.frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        # (wall, CPU of all the process's threads) per frame: decode, compiled, torch ops
        decode: list[tuple[float, float]] = []
        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(repeats):
            with open_video(path, cache_size=1) as source:
                t0, c0 = time.perf_counter(), time.process_time()
                frames = [source.get_frame(i) for i in range(source.frame_count)]
                n = len(frames)
                decode.append(((time.perf_counter() - t0) / n, (time.process_time() - c0) / n))
            for compiled in (True, False):
                refiner_module.COMPILED_CPU = compiled
                # fresh copies made before the clock starts (a session's sigmoid makes its own)
                coarse = [torch.from_numpy(c[None].copy()) for c in clip.coarse]
                t0, c0 = time.perf_counter(), time.process_time()
                for frame, c in zip(frames, coarse, strict=True):
                    net.refine(frame, c, inplace=True)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                runs[compiled].append((wall / n, cpu / n))
        refiner_module.COMPILED_CPU = True
    return min(decode), min(runs[True]), min(runs[False])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", help="adapter folder holding a trained refiner")
    p.add_argument("--train-steps", type=int, default=0, help="train a refiner first (steps)")
    p.add_argument("--out", default="runs/refiner-bench", help="run folder for --train-steps")
    p.add_argument("--set", nargs="*", default=[], help="more training settings key=value")
    p.add_argument("--clips", type=int, default=6, help="held-out clips")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", default="720x1280", help="HxW of the held-out clips")
    p.add_argument(
        "--sharpness", type=float, default=1.0, help="scale the coarse logits (robustness)"
    )
    p.add_argument("--speed", action="store_true", help="also time the refiner at 1080p")
    p.add_argument("--speed-frames", type=int, default=8)
    p.add_argument("--speed-clips", type=int, default=3, help="held-out 1080p clips to time")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train_steps:
        from sam2_matting.training.refiner_train import RefinerTrainer, parse_overrides

        cfg = parse_overrides([f"steps={args.train_steps}", f"out_dir={args.out}", *args.set])
        t0 = time.perf_counter()
        adapter = RefinerTrainer(cfg).fit()
        print(f"trained {cfg.steps} steps in {time.perf_counter() - t0:.0f} s: {adapter}")
        args.adapter = str(adapter)
    if not args.adapter:
        p.error("give --adapter or --train-steps")
    net = load_refiner(args.adapter)
    if net is None:
        p.error(f"{args.adapter} holds no refiner")
    print(f"refiner {args.adapter}: {parameter_count(net):,} parameters, {net.config}")
    quality(net, args)
    if args.speed:
        speed(net, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
