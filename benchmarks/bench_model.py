"""Model-core benchmarks: matting overhead, memory against video length, CPU bf16 autocast.

    .venv/bin/python benchmarks/bench_model.py overhead [--frames 12] [--rounds 3]
    .venv/bin/python benchmarks/bench_model.py memory [--long 1000]
    .venv/bin/python benchmarks/bench_model.py bf16 [--frames 6]
    .venv/bin/python benchmarks/bench_model.py all

All models have RANDOM weights (speed and memory do not depend on the values). ``overhead``
propagates with a merged LoRA adapter through our session against the stock
``SAM2VideoPredictor`` holding the same merged weights, on the same frames, interleaved.
``memory`` runs each case in a fresh process and reports its peak RSS after opening a 100- and
a long 720p video and propagating 20 frames with a 1024 px model, for our lazy loader and for
SAM 2's own loader (a JPEG folder: it holds every frame as a 1024x1024 float tensor). ``bf16``
compares CPU autocast to fp32 on hiera_t at 512 px.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"


def _clip(dest: Path, frames: int, size: tuple[int, int] = (1280, 720)) -> Path:
    """``frames`` frames of the shared 720p videos, one after another, as H.264."""
    sources = sorted(VIDEOS.glob("0*.mp4"))
    written = 0
    with av.open(str(dest), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        while written < frames:
            for src in sources:
                with av.open(str(src)) as c:
                    for frame in c.decode(video=0):
                        if written == frames:
                            break
                        img = frame.reformat(size[0], size[1], format="yuv420p")
                        img.pts, img.time_base = written, Fraction(1, 30)  # one timeline
                        for p in stream.encode(img):
                            out.mux(p)
                        written += 1
                if written == frames:
                    break
        for p in stream.encode():
            out.mux(p)
    return dest


def _tiny(tmp: Path, image_size: int) -> tuple[Path, Path]:
    from sam2_matting.tiny import make_tiny_model

    files = make_tiny_model(tmp / f"tiny{image_size}", image_size=image_size, seed=0)
    return files.config, files.checkpoint


# -- overhead ---------------------------------------------------------------------------------
def overhead(frames: int, rounds: int) -> None:
    from sam2.build_sam import build_sam2_video_predictor

    from sam2_matting.lora import add_adapter, save_adapter
    from sam2_matting.model import build_sam2_model
    from sam2_matting.predictor import build_matting_predictor

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        config, ckpt = _tiny(tmp, 256)
        peft = add_adapter(build_sam2_model(config, ckpt, device="cpu"))
        with torch.no_grad():
            for n, p in peft.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        save_adapter(peft, tmp / "adapter")
        ours = build_matting_predictor(config, ckpt, tmp / "adapter", device="cpu")
        merged_ckpt = tmp / "merged.pt"
        torch.save({"model": ours.model.state_dict()}, merged_ckpt)
        stock = build_sam2_video_predictor(f"/{config}", str(merged_ckpt), device="cpu")
        stock.fill_hole_area = 0
        ours.model.fill_hole_area = 0
        clip = _clip(tmp / "clip.mp4", frames, (960, 540))
        folder = tmp / "jpg"
        folder.mkdir()
        with av.open(str(clip)) as c:
            for i, f in enumerate(c.decode(video=0)):
                f.to_image().save(folder / f"{i:05d}.jpg", quality=95)

        def run_ours() -> tuple[float, float]:
            t0 = time.perf_counter()
            with ours.open(folder) as s:
                s.add_points(0, 1, [[300, 200]], [1])
                t = time.perf_counter()
                n = sum(1 for _ in s.propagate(0))
                end = time.perf_counter()
            return (end - t0) / n, (end - t) / n

        def run_stock() -> tuple[float, float]:
            t0 = time.perf_counter()
            with torch.inference_mode():
                st = stock.init_state(str(folder))
                stock.add_new_points_or_box(st, 0, 1, points=[[300, 200]], labels=[1])
                t = time.perf_counter()
                n = 0
                for _, _, logits in stock.propagate_in_video(st):
                    (torch.sigmoid(logits) * 255).round().to(torch.uint8).numpy()
                    n += 1
                end = time.perf_counter()
            return (end - t0) / n, (end - t) / n

        run_ours(), run_stock()  # warm-up
        ours_t, stock_t = [], []
        for _ in range(rounds):
            ours_t.append(run_ours())
            stock_t.append(run_stock())
        o_all = statistics.median(t[0] for t in ours_t)
        s_all = statistics.median(t[0] for t in stock_t)
        o_prop = statistics.median(t[1] for t in ours_t)
        s_prop = statistics.median(t[1] for t in stock_t)
        print(f"overhead: {frames} frames x {rounds} rounds, 960x540 JPEG folder, tiny 256 px, CPU")
        print("  per frame, median      open+click+propagate    propagate only")
        print(f"  stock (merged weights) {s_all * 1000:>10.1f} ms {s_prop * 1000:>14.1f} ms")
        print(f"  ours (merged adapter)  {o_all * 1000:>10.1f} ms {o_prop * 1000:>14.1f} ms")
        print(f"  ratio ours/stock       {o_all / s_all:>13.3f} {o_prop / s_prop:>17.3f}")
        print("  (stock decodes and resizes every frame in init_state; ours does it lazily")
        print("   during propagation, so 'propagate only' charges ours for decoding too)")


# -- memory -----------------------------------------------------------------------------------
def _memory_case(loader: str, video: Path, config: Path, ckpt: Path) -> dict:
    code = f"""
import json, resource, torch
torch.set_num_threads(2)
loader, video, config, ckpt = {loader!r}, {str(video)!r}, {str(config)!r}, {str(ckpt)!r}
if loader == "ours":
    from sam2_matting.predictor import build_matting_predictor
    p = build_matting_predictor(config, ckpt, device="cpu")
    s = p.open(video)
    s.add_points(0, 1, [[600, 300]], [1])
    n = sum(1 for _ in s.propagate(0, max_frames=20))
else:
    from sam2.build_sam import build_sam2_video_predictor
    p = build_sam2_video_predictor("/" + config, ckpt, device="cpu")
    p.fill_hole_area = 0
    with torch.inference_mode():
        st = p.init_state(video)
        p.add_new_points_or_box(st, 0, 1, points=[[600, 300]], labels=[1])
        n = sum(1 for _ in p.propagate_in_video(st, max_frame_num_to_track=19))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"frames": n, "peak_rss_mib": peak}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def memory(long: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        config, ckpt = _tiny(tmp, 1024)
        rows = []
        for frames in (100, long):
            clip = _clip(tmp / f"clip{frames}.mp4", frames)
            folder = tmp / f"jpg{frames}"
            folder.mkdir()
            with av.open(str(clip)) as c:
                for i, f in enumerate(c.decode(video=0)):
                    f.to_image().save(folder / f"{i:05d}.jpg", quality=90)
            ours = _memory_case("ours", clip, config, ckpt)
            sam2 = _memory_case("sam2", folder, config, ckpt)
            rows.append((frames, ours["peak_rss_mib"], sam2["peak_rss_mib"]))
        print("memory: peak RSS after opening a 720p video and propagating 20 frames")
        print("  (tiny model at 1024 px, random weights, CPU; each case in a fresh process)")
        print(f"  {'frames':>7} {'ours MiB':>10} {'SAM 2 loader MiB':>17}")
        for frames, o, s in rows:
            print(f"  {frames:>7} {o:>10.0f} {s:>17.0f}")
        (f0, o0, s0), (f1, o1, s1) = rows
        print(f"  growth {f0} -> {f1} frames: ours {100 * (o1 / o0 - 1):+.1f}% (goal <= 30%), "
              f"SAM 2 loader {100 * (s1 / s0 - 1):+.1f}%")  # fmt: skip


# -- bf16 -------------------------------------------------------------------------------------
def bf16(frames: int) -> None:
    from sam2_matting.model import build_sam2_model
    from sam2_matting.predictor import MattingPredictor

    torch.manual_seed(0)
    model = build_sam2_model(
        "tiny",
        None,
        device="cpu",
        overrides=[
            "++model.image_size=512",
            "++model.memory_attention.layer.self_attention.feat_sizes=[32,32]",
            "++model.memory_attention.layer.cross_attention.feat_sizes=[32,32]",
        ],
    )
    with torch.no_grad():  # keep the random object present on every frame
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
    video = VIDEOS / "bedroom.mp4"
    results: dict[str, tuple[float, list[np.ndarray]]] = {}
    for _ in range(2):
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            p = MattingPredictor(model, dtype=dtype)
            with p.open(video) as s:
                s.add_points(0, 1, [[300, 200]], [1])
                t = time.perf_counter()
                alphas = [r.alphas[0].astype(np.int16) for r in s.propagate(0, max_frames=frames)]
                results[name] = ((time.perf_counter() - t) / frames, alphas)
    (t32, a32), (t16, a16) = results["fp32"], results["bf16"]
    diff = max(int(np.abs(x - y).max()) for x, y in zip(a32, a16, strict=True))
    mean = statistics.mean(float(np.abs(x - y).mean()) for x, y in zip(a32, a16, strict=True))
    print(f"bf16: hiera_t at 512 px (random weights), bedroom.mp4, {frames} frames, CPU")
    print(f"  fp32 {t32:.3f} s/frame, bf16 autocast {t16:.3f} s/frame, speed-up {t32 / t16:.2f}x")
    print(f"  largest alpha difference {diff}/255, mean {mean:.2f}/255")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("overhead", "memory", "bf16", "all"))
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=1000)
    args = parser.parse_args()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, peak RSS {rss} MiB")
    if args.what in ("overhead", "all"):
        overhead(args.frames or 12, args.rounds)
    if args.what in ("memory", "all"):
        memory(args.long)
    if args.what in ("bf16", "all"):
        bf16(args.frames or 6)


if __name__ == "__main__":
    main()
