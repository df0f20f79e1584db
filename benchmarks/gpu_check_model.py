"""Model-only speed and memory of one SAM 2 variant, in a process of its own (for gpu_check.py).

    python benchmarks/gpu_check_model.py --config C.yaml --checkpoint C.pt --device cuda \\
        --dtype bfloat16 [--vos-optimized] --video 01_dog.mp4 --warmup 8 --frames 40 \\
        --budget 120 --out result.json

The model is built by ``build_matting_predictor`` (``vos_optimized``: SAM 2's
``SAM2VideoPredictorVOS``, every component under ``torch.compile``). The first
``warmup + frames`` frames of the video are decoded and resized before the clock starts and
put on the model's device (pinned memory, non-blocking copy on CUDA); they replace the
session's lazy SAM 2 input frames, so what is timed is the model: our ``MattingSession``
propagating with SAM 2's ``propagate_in_video``, sigmoid and uint8 quantisation on the device,
and the uint8 matte's copy to the host. fps counts the frames after the warm-up ones (the
warm-up holds the session's open, the click and, with ``vos_optimized``, the compilation).

GPU memory per session (CUDA only): ``torch.cuda.max_memory_allocated`` over the session
(open, click, propagation) less what was allocated before it (weights and the pre-loaded
frames), the memory it still holds after the last frame, and what is left after ``close``.

``--budget`` seconds bound the session's run (compilation included): past it the process
writes ``{"status": "skipped"}`` and exits with status 3. Results (``status`` ok, skipped or
failed) go to ``--out`` as JSON; SAM 2 prints to stdout, so stdout is not the channel.
``make_random_model`` writes random-weight SAM 2.1 configs and checkpoints for the driver.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

SAM2_CONFIGS = {
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
SKIPPED_EXIT = 3


def make_random_model(
    out_dir: Path, name: str, image_size: int, seed: int = 0
) -> tuple[Path, Path]:
    """A SAM 2.1 config (``hiera_t`` or ``hiera_l``) at ``image_size`` with RANDOM weights,
    written as ``sam2_matting.tiny`` writes the tiny model: a standalone YAML and an
    official-format ``{"model": state_dict}`` checkpoint. Reused when both files exist."""
    import sam2  # noqa: F401  (initialises Hydra's config module "sam2")
    import torch
    from hydra import compose
    from omegaconf import OmegaConf

    from sam2_matting.model import build_sam2_model
    from sam2_matting.tiny import OBJECT_PRESENT_BIAS, _object_score_bias, size_overrides

    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / f"sam2.1_{name}_random_{image_size}.yaml"
    checkpoint = config.with_suffix(".pt")
    if config.is_file() and checkpoint.is_file():
        return config, checkpoint
    cfg = compose(config_name=SAM2_CONFIGS[name], overrides=size_overrides(image_size))
    header = f"# @package _global_\n# SAM 2.1 {name} at {image_size} px. RANDOM WEIGHTS.\n"
    config.write_text(header + OmegaConf.to_yaml(cfg))
    torch.manual_seed(seed)
    model = build_sam2_model(config, None, device="cpu")
    with torch.no_grad():  # keep the object present, so every frame runs the tracking path
        _object_score_bias(model).fill_(OBJECT_PRESENT_BIAS)
    part = checkpoint.with_name(checkpoint.name + ".part")
    torch.save({"model": model.state_dict()}, part)
    part.replace(checkpoint)
    return config, checkpoint


class _Preloaded:
    """SAM 2's ``images`` for one session: frames already on the device, lazy ones after."""

    def __init__(self, ready: Any, lazy: Any) -> None:
        self.ready = ready
        self.lazy = lazy

    def __len__(self) -> int:
        return len(self.lazy)

    def __getitem__(self, index: int) -> Any:
        return self.ready[index] if index < len(self.ready) else self.lazy[index]


def _write(path: Path, result: dict[str, Any]) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(result))
    part.replace(path)


def _watchdog(seconds: float, out: Path, what: str) -> threading.Timer:
    def fire() -> None:
        reason = f"{what} did not finish within its budget of {seconds:g} s"
        _write(out, {"status": "skipped", "reason": reason})
        os._exit(SKIPPED_EXIT)  # a compilation cannot be interrupted otherwise

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    return timer


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from sam2_matting.predictor import build_matting_predictor
    from sam2_matting.sam_frames import SamFrames
    from sam2_matting.video import open_video

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    predictor = build_matting_predictor(
        args.config,
        args.checkpoint,
        device=args.device,
        dtype=args.dtype,
        vos_optimized=args.vos_optimized,
    )
    device = predictor.device
    cuda = device.type == "cuda"
    n = args.warmup + args.frames
    with open_video(args.video) as source:
        if n > source.frame_count:
            raise ValueError(f"{args.video} has {source.frame_count} frames, {n} are needed")
        width, height = source.width, source.height
        prepare = SamFrames(source, predictor.image_size, cache_size=0).prepare
        host = torch.stack([prepare(source.get_frame(i)) for i in range(n)])
    if cuda:
        host = host.pin_memory()
    frames = host.to(device, non_blocking=True)
    if cuda:
        torch.cuda.synchronize(device)
    del host
    load_s = time.perf_counter() - started

    base = 0
    if cuda:
        gc.collect()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    timer = _watchdog(args.budget, args.out, "the session (compilation included)")
    timer.start()
    t_open = time.perf_counter()
    session = predictor.open(args.video, decode_ahead=0)  # frames come preloaded
    try:
        session.state["images"] = _Preloaded(frames, session.state["images"])
        session.add_points(0, 1, [[width / 2, height / 2]], [1])
        stamps = [time.perf_counter() for _ in session.propagate(0, max_frames=n)]
        if cuda:
            torch.cuda.synchronize(device)
        timer.cancel()
        peak = held = None
        if cuda:
            peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
            held = (torch.cuda.memory_allocated(device) - base) / 2**20
    finally:
        timer.cancel()
        session.close()
    del session
    left = None
    if cuda:
        gc.collect()
        left = (torch.cuda.memory_allocated(device) - base) / 2**20
    if len(stamps) != n:
        raise RuntimeError(f"propagation yielded {len(stamps)} frames, expected {n}")
    result: dict[str, Any] = {
        "status": "ok",
        "device": str(device),
        "dtype": str(predictor.dtype).removeprefix("torch."),
        "vos_optimized": bool(args.vos_optimized),
        "image_size": predictor.image_size,
        "video": f"{Path(args.video).name} {width}x{height}",
        "frames": args.frames,
        "warmup_frames": args.warmup,
        "load_s": load_s,
        "warmup_s": stamps[args.warmup - 1] - t_open,
        "fps": args.frames / (stamps[-1] - stamps[args.warmup - 1]),
        "peak_mib": peak,
        "held_mib": held,
        "left_after_close_mib": left,
    }
    if cuda:
        props = torch.cuda.get_device_properties(device)
        result["gpu"] = props.name
        result["gpu_total_mib"] = props.total_memory / 2**20
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--vos-optimized", action="store_true")
    p.add_argument("--video", required=True)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--budget", type=float, default=120.0, help="seconds for the session")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.warmup < 1 or args.frames < 1:
        p.error("--warmup and --frames must be at least 1")
    try:
        result = measure(args)
    except Exception as err:  # one readable line for the table; the log has the rest
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        _write(args.out, {"status": "failed", "reason": f"{type(err).__name__}: {first[:200]}"})
        raise
    _write(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
