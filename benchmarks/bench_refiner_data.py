"""What one frame of a refiner data folder costs to write and store, per file, at 1080p.

    .venv/bin/python benchmarks/bench_refiner_data.py --frames 4

A refiner data folder (``sam2-matting refiner-data``) stores per frame an 8-bit RGB PNG (the
composite), a 16-bit PNG (true alpha) and a 16-bit PNG (SAM 2's coarse alpha). Here those are
written with the builder's own writers for known-truth train clips at 1080p (real footage
under a known soft matte; the coarse is the *simulated* SAM 2 output, so the coarse file's size
stands in for the real one), next to float16 ``.npy`` (the alternative not taken), in one run.
Prints the mean encode time and size of each, and the worst error of the stored coarse.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sam2_matting.metrics.known_truth import truth_clips
from sam2_matting.training.refiner_data import save_frame, save_png16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=4, help="frames per clip (default 4)")
    parser.add_argument("--clips", type=int, default=2, help="known-truth clips (default 2)")
    args = parser.parse_args()
    kinds = ("frame png", "alpha png", "coarse png", "coarse f16 npy")
    seconds = {k: 0.0 for k in kinds}
    sizes = {k: 0 for k in kinds}
    worst = {"coarse png": 0.0, "coarse f16 npy": 0.0}
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for clip in truth_clips("train", size=(1080, 1920), frames=args.frames, count=args.clips):
            for frame, alpha, coarse in zip(clip.frames, clip.alpha, clip.coarse, strict=True):
                files = {k: out / f"{n}-{k.replace(' ', '-')}.{k[-3:]}" for k in kinds}
                for kind in kinds:
                    t0 = time.perf_counter()
                    if kind == "frame png":
                        save_frame(files[kind], frame)
                    elif kind == "alpha png":
                        save_png16(files[kind], alpha)
                    elif kind == "coarse png":
                        save_png16(files[kind], coarse)
                    else:
                        np.save(files[kind], coarse.astype(np.float16))
                    seconds[kind] += time.perf_counter() - t0
                    sizes[kind] += files[kind].stat().st_size
                ref = coarse.astype(np.float64)
                with Image.open(files["coarse png"]) as im:
                    png = np.asarray(im) / 65535.0
                f16 = np.load(files["coarse f16 npy"]).astype(np.float64)
                for kind, back in (("coarse png", png), ("coarse f16 npy", f16)):
                    worst[kind] = max(worst[kind], float(np.abs(back - ref).max()))
                n += 1
    print(f"{n} frames of 1920x1080 (known-truth train clips, simulated coarse)")
    print("| file | encode ms / frame | MB / frame | worst error |")
    print("|---|---|---|---|")
    for kind in kinds:
        err = f"{worst[kind]:.2e}" if kind in worst else "exact"
        print(f"| {kind} | {1e3 * seconds[kind] / n:.0f} | {sizes[kind] / n / 1e6:.2f} | {err} |")
    stored = sum(sizes[k] for k in kinds[:3]) / n / 1e6
    print(f"stored per frame (the three PNGs): {stored:.2f} MB")


if __name__ == "__main__":
    main()
