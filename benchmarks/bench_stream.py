"""Stream fps over HTTP (the real gunicorn service) against model-only fps, side by side.

    .venv/bin/python benchmarks/bench_stream.py [--frames 40] [--warmup 8] [--rounds 3]

On this CPU machine an accelerator is stood in for by the model on one torch thread
(``OMP_NUM_THREADS=1`` in the service and the model-only process; the tiny random-weight model
at 256 px), leaving the other core to the pipeline (decoding, encoding, HTTP). For a 720p and
a 1080p source, each round measures in turn:

- **model only**: ``benchmarks/gpu_check_model.py`` on CPU, one thread: the first
  ``warmup + frames`` frames decoded and resized before the clock starts and fed to the
  session, which runs SAM 2's steps and post-processes (resize to video size, sigmoid, uint8);
- **HTTP, both fields**: one NDJSON propagation of ``warmup + frames`` frames through the
  service, every frame carrying its encoded matte and its COCO mask (the default superset);
- **HTTP, alpha only**: the same with ``"fields": ["alpha"]`` (what the project's page asks);
- **HTTP, encoded inline**: both fields from a second service with
  ``SAM2_MATTING_ENCODE_WORKERS=0`` (each frame encoded in the model's thread after its step:
  the serial path, for comparison).

fps counts the frames after the warm-up ones, by their arrival at the client. Medians over
``rounds``; the ratio is HTTP fps / model-only fps (goal: >= 0.90). Random weights: speed,
not quality. The machine may be shared: the figures are measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_model import _clip  # noqa: E402
from gpu_check_http import (  # noqa: E402
    ORIGIN,
    close_session,
    launch,
    ndjson_lines,
    open_session,
    stop,
)

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def model_only(config: Path, ckpt: Path, video: Path, warmup: int, frames: int, tmp: Path) -> float:
    out = tmp / "model.json"
    cmd = [
        sys.executable, str(HERE / "gpu_check_model.py"), "--config", str(config),
        "--checkpoint", str(ckpt), "--device", "cpu", "--dtype", "float32", "--threads", "1",
        "--video", str(video), "--warmup", str(warmup), "--frames", str(frames),
        "--budget", "600", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=_one_thread())
    result = json.loads(out.read_text())
    if result.get("status") != "ok":
        raise RuntimeError(f"model-only run failed: {result}")
    return float(result["fps"])


def _one_thread() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def http_fps(service: Any, warmup: int, frames: int, fields: list[str] | None) -> float:
    sid = open_session(service)
    try:
        body: dict[str, Any] = {
            "session_id": sid,
            "start_frame_index": 0,
            "direction": "forward",
            "max_frames": warmup + frames,
        }
        if fields is not None:
            body["fields"] = fields
        stamps = read_stream(service.url, body)
    finally:
        close_session(service, sid)
    if len(stamps) != warmup + frames:
        raise RuntimeError(f"got {len(stamps)} frames, expected {warmup + frames}")
    return frames / (stamps[-1] - stamps[warmup - 1])


def read_stream(url: str, body: dict[str, Any]) -> list[float]:
    """The arrival time of every frame line of one NDJSON propagation (complete, or raises)."""
    headers = {"Origin": ORIGIN, "Accept": "application/x-ndjson"}
    stamps: list[float] = []
    end: dict[str, Any] | None = None
    with requests.post(
        f"{url}/propagate_in_video", json=body, headers=headers, stream=True, timeout=(10, 600)
    ) as r:
        r.raise_for_status()
        for line in ndjson_lines(r.iter_content(chunk_size=1 << 20)):
            if line.startswith(b'{"type": "frame"'):
                stamps.append(time.perf_counter())
            elif line.strip():
                end = json.loads(line)
    if end is None or end.get("type") != "end" or end.get("cancelled"):
        raise RuntimeError(f"the stream did not end complete: {str(end)[:200]}")
    return stamps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", default="720p,1080p")
    args = p.parse_args()
    from sam2_matting.tiny import make_tiny_model

    os.environ.update(_one_thread())  # the service inherits it: the model on one thread
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tiny = make_tiny_model(tmp / "tiny", image_size=256, seed=0)
        for name in args.sizes.split(","):
            video = _clip(tmp / f"clip-{name}.mp4", args.warmup + args.frames + 2, SIZES[name])
            service = launch(
                tiny.config, tiny.checkpoint, device="cpu", dtype="float32", video=video,
                root=tmp / f"svc-{name}", max_sessions=4,
            )  # fmt: skip
            os.environ["SAM2_MATTING_ENCODE_WORKERS"] = "0"
            try:
                serial = launch(
                    tiny.config, tiny.checkpoint, device="cpu", dtype="float32", video=video,
                    root=tmp / f"serial-{name}", max_sessions=4,
                )  # fmt: skip
            finally:
                del os.environ["SAM2_MATTING_ENCODE_WORKERS"]
            runs: dict[str, list[float]] = {"model": [], "both": [], "alpha": [], "inline": []}
            try:
                http_fps(service, 2, 2, None)  # warm the services (first session, first click)
                http_fps(serial, 2, 2, None)
                for _ in range(args.rounds):
                    fps = model_only(
                        tiny.config, tiny.checkpoint, video, args.warmup, args.frames, tmp
                    )
                    runs["model"].append(fps)
                    runs["both"].append(http_fps(service, args.warmup, args.frames, None))
                    runs["alpha"].append(http_fps(service, args.warmup, args.frames, ["alpha"]))
                    runs["inline"].append(http_fps(serial, args.warmup, args.frames, None))
            finally:
                stop(service)
                stop(serial)
            med = {k: statistics.median(v) for k, v in runs.items()}
            rows.append((name, med, runs))
    print(
        f"stream over HTTP vs model only: tiny 256 px, random weights, CPU, torch on 1 thread; "
        f"{args.frames} frames after {args.warmup} warm-up, median of {args.rounds}"
    )
    print("  fps (ratio to model only)   model only   HTTP both   HTTP alpha   HTTP inline")
    for name, med, _ in rows:
        cells = [f"{med[k]:.2f} ({med[k] / med['model']:.3f})" for k in ("both", "alpha", "inline")]
        print(f"  {name:<26} {med['model']:>11.2f}   " + "   ".join(cells))
    for name, _, runs in rows:
        each = "; ".join(f"{k} {[round(x, 2) for x in v]}" for k, v in runs.items())
        print(f"  {name} runs: {each}")


if __name__ == "__main__":
    main()
