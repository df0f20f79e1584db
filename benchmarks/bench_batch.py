"""Batch rendering benchmark (issue 14): N clips rendered from their prompts files by N
separate ``matte --prompts`` runs, by one ``batch`` (local runner, the model loaded once) and
by ``batch --ray local --workers 2`` (a private Ray instance, two CPU worker actors, one
torch thread each); the ``matte`` runs and the local ``batch`` also with ``OMP_NUM_THREADS=1``
(the workers' thread count).

    .venv/bin/python benchmarks/bench_batch.py               # 6 clips of 8 frames
    .venv/bin/python benchmarks/bench_batch.py --clips 4 --frames 4 --no-ray

Clips: ``--frames`` frames of ``bedroom.mp4`` from N different starts, scaled to 320x180 and
re-encoded (H.264); each gets a prompts file of one click (recorded in process). The model is
the tiny RANDOM-weight SAM 2.1 of ``sam2-matting dev make-tiny-model``: the figures are speed
only, its mattes are noise. Outputs are PNG sequences. Every run is a fresh child process,
timed wall-clock from start to exit, with its CPU time (user + system, ``os.wait4``: the
driver's only for Ray); its peak memory is the child's ``ru_maxrss``
(``os.wait4``): for the N ``matte`` runs the largest of them, for Ray the driver's only (the
workers are Ray's processes). "render" is the sum of the clips' own seconds as ``batch``
reports them (``--report``). The alpha of every PNG is compared between the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VIDEOS = REPO.parent / "shared" / "data" / "videos"


def make_clips(folder: Path, count: int, frames: int) -> list[Path]:
    clips = []
    for k in range(count):
        first = k * 25
        dest = folder / f"clip{k}.mp4"
        with av.open(str(VIDEOS / "bedroom.mp4")) as src, av.open(str(dest), "w") as dst:
            out = dst.add_stream("libx264", rate=30)
            out.width, out.height, out.pix_fmt = 320, 180, "yuv420p"
            for i, frame in enumerate(src.decode(video=0)):
                if i == first + frames:
                    break
                if i >= first:
                    for packet in out.encode(frame.reformat(320, 180, format="yuv420p")):
                        dst.mux(packet)
            for packet in out.encode():
                dst.mux(packet)
        clips.append(dest)
    return clips


def make_prompts(clips: list[Path], model: Any) -> list[Path]:
    import torch

    from sam2_matting import prompts_file as pf
    from sam2_matting.predictor import build_matting_predictor

    torch.manual_seed(0)
    predictor = build_matting_predictor(model.config, model.checkpoint, device="cpu")
    identity = pf.model_identity(model.config, model.checkpoint)
    out = []
    for clip in clips:
        with predictor.open(clip) as plain:
            session = pf.record(plain, model=identity)
            session.add_points(0, 1, [[160, 90]], [1])
            out.append(pf.dump(session.document(), clip.with_suffix(".prompts.json")))
    return out


def timed(cmd: list[str], **env_vars: str) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) and stdout of ``cmd`` as a child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", **env_vars}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read()
    if child.returncode not in (0,):
        raise SystemExit(f"{' '.join(cmd[:5])}... exited {child.returncode}:\n{text[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024, text


def alphas(folder: Path) -> list[bytes]:
    return [np.asarray(Image.open(f))[..., 3].tobytes() for f in sorted(folder.glob("*.png"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    from sam2_matting.tiny import make_tiny_model

    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_tiny_model(root / "tiny", seed=0)
        clips = make_clips(root, args.clips, args.frames)
        prompts = make_prompts(clips, model)
        py = [sys.executable, "-m", "sam2_matting"]
        margs = ["--config", str(model.config), "--checkpoint", str(model.checkpoint),
                 "--device", "cpu", "--no-progress"]  # fmt: skip
        rows: list[tuple[str, float, float, int, float | None]] = []

        for threads in (None, "1"):
            wall, cpu, peak = 0.0, 0.0, 0
            env = {"OMP_NUM_THREADS": threads} if threads else {}
            folder = root / ("matte1" if threads else "matte")
            for clip, p in zip(clips, prompts, strict=True):
                cmd = [*py, "matte", str(clip), "--prompts", str(p), "--format", "png",
                       "--out", str(folder / clip.stem), *margs]  # fmt: skip
                w, c, rss, _ = timed(cmd, **env)
                wall, cpu, peak = wall + w, cpu + c, max(peak, rss)
            label = f"{args.clips} x matte --prompts" + (
                f", OMP_NUM_THREADS={threads}" if threads else ""
            )
            rows.append((label, wall, cpu, peak, None))

        def batch(name: str, *extra: str, threads: str | None = None) -> None:
            manifest = root / f"{name}.jsonl"
            manifest.write_text("".join(
                json.dumps({"input": c.name, "prompts": p.name, "output": f"{name}/{c.stem}",
                            "formats": "png"}) + "\n"
                for c, p in zip(clips, prompts, strict=True)
            ))  # fmt: skip
            report = root / f"{name}.report.json"
            env = {"OMP_NUM_THREADS": threads} if threads else {}
            w, c, rss, _ = timed([*py, "batch", str(manifest), "--report", str(report), *extra,
                               *margs], **env)  # fmt: skip
            render = sum(e["seconds"] for e in json.loads(report.read_text())["clips"])
            label = f"batch{' ' + ' '.join(extra) if extra else ''}"
            label += f", OMP_NUM_THREADS={threads}" if threads else ""
            rows.append((label, w, c, rss, render))

        batch("local")
        batch("local1", threads="1")
        if not args.no_ray:
            batch("ray", "--ray", "local", "--workers", "2")

        def same(a: str, b: str) -> bool:
            return all(alphas(root / a / c.stem) == alphas(root / b / c.stem) for c in clips)

        print(f"PNG alpha, batch = matte --prompts: {same('local', 'matte')}")
        print(f"PNG alpha, 1 thread: batch = matte --prompts: {same('local1', 'matte1')}")
        print(f"PNG alpha, 1 thread = 2 threads: {same('matte1', 'matte')}")
        if not args.no_ray:
            print(f"PNG alpha, ray workers = matte --prompts of 1 thread: {same('ray', 'matte1')}")
    print(f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    base = rows[0][1]
    print(f"\n{args.clips} clips of {args.frames} frames, 320x180, tiny random model, CPU")
    print("| run | wall s | clips/s | ÷ matte wall | CPU s (driver) | peak RSS MiB | render s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, wall, cpu, rss, render in rows:
        r = "-" if render is None else f"{render:.1f}"
        print(f"| {name} | {wall:.1f} | {args.clips / wall:.3f} | {base / wall:.2f} | {cpu:.1f} "
              f"| {rss} | {r} |")  # fmt: skip
    print(f"batch / matte runs, wall: {rows[0][1] / rows[2][1]:.2f} (2 threads), "
          f"{rows[1][1] / rows[3][1]:.2f} (1 thread)")  # fmt: skip
    if len(rows) == 5:
        print(f"ray 2 workers / local runner throughput: {rows[2][1] / rows[4][1]:.2f}")
        print(f"ray 2 workers / local runner of 1 thread: {rows[3][1] / rows[4][1]:.2f}")


if __name__ == "__main__":
    main()
