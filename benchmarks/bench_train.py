"""Training throughput and memory against a forward-only pass; metric speed for evaluation.

    .venv/bin/python benchmarks/bench_train.py [--model hiera_t] [--image-size 256]
        [--clips 1] [--frames 4] [--size 288x512] [--steps 3] [--threads 2] [--device cpu]
    .venv/bin/python benchmarks/bench_train.py --metrics-only

Part 1, training: the same clips (synthetic, over real video frames) go through
:func:`sam2_matting.training.step.forward_clip` plus the L1 loss in three modes, each in its
own process so that peak memory is the mode's own:

* ``forward``: no gradients (what evaluation costs);
* ``train``: forward, backward through SAM 2's memory (the default training step) and AdamW;
* ``train-detached``: the same with ``train.backprop_through_memory=false``.

Clips/s is the median over ``--steps`` timed steps after one warm-up step. Peak memory is, on
the CPU, the process's peak RSS (each mode builds the same model and batch, so the difference
to ``forward`` is what the step adds; allocator noise is a few tens of MiB); on CUDA, the
allocator's peak during the steps above what was allocated before them. "Saved for backward"
is exact: the bytes of the tensors autograd keeps for the backward pass (weights excluded),
counted in one extra, untimed step.
The model is SAM 2.1 of ``--model`` at ``--image-size`` with RANDOM weights and the course
project's LoRA adapter: speed and memory do not depend on the weights.

Part 2, evaluation: frames/s of each metric function on synthetic alpha pairs at 512x288 (LR)
and 1920x1080 (HR), Conn in particular (RVM skips it at HR as too expensive).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VIDEOS = REPO.parent / "shared" / "data" / "videos"
MODES = ("forward", "train", "train-detached")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One mode in this process; returns its figures."""
    import resource

    import torch

    from sam2_matting.lora import add_adapter, lora_parameter_count
    from sam2_matting.model import build_sam2_model, count_parameters
    from sam2_matting.tiny import size_overrides
    from sam2_matting.training.datasets import ClipSpec, SyntheticClips, collate
    from sam2_matting.training.losses import LossWeights
    from sam2_matting.training.trainer import ClipLossModule

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    sam = build_sam2_model(
        args.model,
        None,
        device=device,
        overrides=size_overrides(args.image_size),
        hole_filling=False,
    )
    model = add_adapter(sam).to(device)
    model.eval()
    detached = args.mode == "train-detached"
    module = ClipLossModule(model, LossWeights(), torch.bfloat16, through_memory=not detached)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4)
    h, w = (int(v) for v in args.size.split("x"))
    spec = ClipSpec(num_frames=args.frames, size=(h, w), image_size=args.image_size, seed=0)
    data = SyntheticClips(spec, sorted(VIDEOS.glob("*.mp4")))
    batch = collate([data[i] for i in range(args.clips)]).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None

    frozen = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in frozen:  # weights are saved by reference, not a cost of the step
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    def step(count_saved: bool = False) -> None:
        ctx = autocast or torch.autocast("cpu", enabled=False)
        if args.mode == "forward":
            with torch.no_grad(), ctx:
                module(batch)
            return
        optim.zero_grad(set_to_none=True)
        hooks = (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
            if count_saved
            else contextlib.nullcontext()
        )
        with hooks, ctx:
            loss, _ = module(batch)
        loss.backward()
        optim.step()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
    step()  # warm-up (allocates the optimiser state)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20 - base
    else:  # the whole process: every mode builds the same model and batch
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step(count_saved=True)  # untimed: the hooks cost Python calls per tensor
    median = statistics.median(times)
    soft = (batch.alphas > 0.02) & (batch.alphas < 0.98)
    return {
        "mode": args.mode,
        "params": count_parameters(sam),
        "lora_params": lora_parameter_count(model),
        "step_s": median,
        "clips_per_s": args.clips / median,
        "frames_per_s": args.clips * args.frames / median,
        "peak_mib": peak,
        "saved_mib": sum(saved.values()) / 2**20,
        "all_steps_s": [round(t, 3) for t in times],
        "soft_alpha": float(soft.float().mean()),
    }


def run_modes(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for mode in MODES:
        cmd = [sys.executable, __file__, "--worker", "--mode", mode]
        for key in ("model", "image_size", "clips", "frames", "size", "steps", "threads", "device"):
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def bench_metrics(repeat: int) -> list[tuple[str, str, float]]:
    import numpy as np

    from sam2_matting.metrics import alpha as m
    from sam2_matting.training.synthetic import synthetic_foreground

    rows = []
    for label, (h, w) in (("LR 512x288", (288, 512)), ("HR 1920x1080", (1080, 1920))):
        _, g = synthetic_foreground(h, w, np.random.default_rng(0))
        rng = np.random.default_rng(1)
        a = m.to_unit(m.quantize(np.clip(g + rng.normal(0, 0.05, g.shape), 0, 1)))
        g = m.to_unit(m.quantize(g))
        funcs = {
            "mad": lambda a, g: m.mad(a, g),
            "mse": lambda a, g: m.mse(a, g),
            "sad": lambda a, g: m.sad(a, g),
            "dtssd": lambda a, g: m.dtssd(a, g, g, a),
            "grad (normalised, LR)": lambda a, g: m.grad(a, g, normalize=True),
            "grad (HR)": lambda a, g: m.grad(a, g, normalize=False),
            "conn": lambda a, g: m.conn(a, g),
        }
        for name, fn in funcs.items():
            n = 1 if ("conn" in name and h > 1000) else repeat
            t0 = time.perf_counter()
            for _ in range(n):
                fn(a, g)
            rows.append((label, name, n / (time.perf_counter() - t0)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="tiny", help="SAM 2 size or config (random weights)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--clips", type=int, default=1, help="clips per batch")
    p.add_argument("--frames", type=int, default=4, help="frames per clip")
    p.add_argument("--size", default="288x512", help="HxW of the clips (the loss resolution)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--metrics-only", action="store_true")
    p.add_argument("--metric-repeat", type=int, default=5)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, default="train", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"command: {' '.join(sys.argv)}")
    if not args.metrics_only:
        res = run_modes(args)
        r0 = res[0]
        print(
            f"\nSAM 2.1 {args.model} at {args.image_size} px, RANDOM weights, "
            f"{r0['params'] / 1e6:.2f} M params, LoRA {r0['lora_params']:,}; "
            f"{args.clips} clip(s) x {args.frames} frames at {args.size}, {args.device}, "
            f"{args.threads} thread(s), median of {args.steps} steps"
        )
        cuda = args.device.startswith("cuda")
        peak_name = "peak CUDA MiB (step)" if cuda else "peak RSS MiB"
        print(
            f"\n| mode | step s | clips/s | time vs forward | {peak_name} | vs forward "
            "| saved for backward MiB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in res:
            print(
                f"| {r['mode']} | {r['step_s']:.3f} | {r['clips_per_s']:.3f} "
                f"| {r['step_s'] / r0['step_s']:.2f}x | {r['peak_mib']:.0f} "
                f"| {r['peak_mib'] - r0['peak_mib']:+.0f} | {r['saved_mib']:.1f} |"
            )
        print("\nper-step seconds:", {r["mode"]: r["all_steps_s"] for r in res})
    print(f"\nmetric speed (frames/s, best effort, {args.metric_repeat} frames; HR Conn: 1 frame)")
    print("\n| resolution | metric | frames/s |")
    print("|---|---|---:|")
    for label, name, fps in bench_metrics(args.metric_repeat):
        print(f"| {label} | {name} | {fps:.1f} |")


if __name__ == "__main__":
    main()
