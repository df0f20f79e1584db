"""Foreground colour estimation: error against a known foreground, and cost per frame.

    .venv/bin/python benchmarks/bench_foreground.py                 # 720p and 1080p, 3 rounds
    .venv/bin/python benchmarks/bench_foreground.py --sizes 720 --rounds 1 --pymatting

Scenes are composites ``I = αF + (1 - α)B`` with a known ``F`` and ``α``: ``F`` a frame of
``01_dog.mp4``, ``B`` a frame of ``02_cups.mp4`` (shared videos, scaled to the size), ``α``
``sam2_matting.codec.synthetic.soft_matte`` (a person with a soft body edge and hair strands;
"hair") and the same matte smeared over 2 % of the width ("motion", a motion-blurred edge).
``I`` is rounded to 8 bits, as a decoded frame is.

Each scene is scored with two mattes: the true ``α``, and a coarse one made the way SAM 2's
output reaches us (the true ``α`` averaged onto the decoder's 256×256 grid of a 1024-px input,
as logits, stretched bilinearly to the frame and put through a sigmoid). The colour is the
source pixel (``source``, what exports wrote before) or ``estimate_foreground``
(``estimate``). Errors, in [0, 1] units:

- F MAD: mean |F - F_true| over the pixels with 0 < α_true < 1;
- composite MSE (×10⁻³): ``αF + (1 - α)G`` against ``α_true F_true + (1 - α_true) G``, over the
  pixels inside either matte (α > 0), for G pure green and for G a frame of ``03_blocks.mp4``.

Time per frame, wall and CPU (all threads of the process; steadier on a shared machine):
``estimate_foreground`` on the hair scene with the coarse matte (median of ``--rounds``;
``source`` costs nothing), next to the ProRes writer's per-frame cost at the same size
(``open_writer`` writing ``--writer-frames`` frames to a temporary file, straight colour).
``--pymatting`` adds ``pymatting.estimate_foreground_ml`` (if installed) as a reference, its
first call timed apart (numba loads or compiles its kernels then).
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

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam2_matting.codec.synthetic import soft_matte  # noqa: E402
from sam2_matting.export import open_writer  # noqa: E402
from sam2_matting.export.foreground import estimate_foreground  # noqa: E402

VIDEOS = REPO.parent / "shared" / "data" / "videos"
SIZES = {720: (720, 1280), 1080: (1080, 1920)}
GRID = 256  # SAM 2's decoder output for a 1024-px input


def _frame(name: str, index: int, size: tuple[int, int]) -> np.ndarray:
    with av.open(str(VIDEOS / name)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                scaled = frame.reformat(width=size[1], height=size[0], format="rgb24")
                return np.asarray(scaled.to_ndarray())
    raise SystemExit(f"{name} has no frame {index}")


def _coarse(alpha: np.ndarray) -> np.ndarray:
    """``alpha`` (float, H x W) as SAM 2 would hand it back: 256x256 logits, stretched."""
    import torch
    import torch.nn.functional as nnf

    t = torch.from_numpy(alpha.astype(np.float32))[None, None]
    low = nnf.interpolate(t, size=(GRID, GRID), mode="area").clamp(1e-4, 1 - 1e-4)
    logits = torch.log(low / (1 - low))
    up = nnf.interpolate(logits, size=alpha.shape, mode="bilinear", align_corners=False)
    return torch.sigmoid(up)[0, 0].numpy().astype(np.float64)


def _scenes(size: tuple[int, int]) -> dict[str, dict[str, np.ndarray]]:
    from scipy import ndimage

    fg = _frame("01_dog.mp4", 30, size) / 255.0
    bg = _frame("02_cups.mp4", 60, size) / 255.0
    image_bg = _frame("03_blocks.mp4", 15, size) / 255.0
    hair = soft_matte(*size, seed=3) / 255.0
    motion = ndimage.uniform_filter1d(hair, size=max(3, size[1] // 50), axis=1)
    scenes = {}
    for name, alpha in (("hair", hair), ("motion", motion)):
        alpha8 = np.round(alpha * 255).astype(np.uint8)
        a = alpha8 / 255.0
        image = np.round((a[..., None] * fg + (1 - a[..., None]) * bg) * 255).astype(np.uint8)
        coarse8 = np.round(_coarse(a) * 255).astype(np.uint8)
        scenes[name] = {"fg": fg, "alpha": alpha8, "coarse": coarse8, "image": image,
                        "image_bg": image_bg}  # fmt: skip
    return scenes


def _errors(scene: dict[str, np.ndarray], matte: np.ndarray, colour: np.ndarray) -> list[float]:
    """[F MAD, composite MSE over green x1e3, over an image x1e3]."""
    fg, a_true = scene["fg"], scene["alpha"] / 255.0
    a = (matte / 255.0)[..., None]
    soft = (scene["alpha"] > 0) & (scene["alpha"] < 255)
    inside = (scene["alpha"] > 0) | (matte > 0)
    c = colour / 255.0
    out = [float(np.abs(c - fg)[soft].mean())]
    for g in (np.array([0.0, 1.0, 0.0]), scene["image_bg"]):
        truth = a_true[..., None] * fg + (1 - a_true[..., None]) * g
        out.append(float(((a * c + (1 - a) * g - truth) ** 2)[inside].mean() * 1e3))
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


def _prores_per_frame(scene: dict[str, np.ndarray], frames: int) -> tuple[float, float]:
    """Wall and CPU seconds per frame of the ProRes writer (straight colour, no estimation)."""
    h, w = scene["alpha"].shape
    with tempfile.TemporaryDirectory() as tmp:
        writer = open_writer("prores", Path(tmp) / "x.mov", w, h, foreground="source")
        wall, cpu = time.perf_counter(), time.process_time()
        with writer:
            for _ in range(frames):
                writer.write(scene["image"], scene["alpha"])
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


def _score(
    label: str, scene: dict[str, np.ndarray], matte: np.ndarray, reference: Any
) -> list[tuple[str, str, list[float]]]:
    image = scene["image"]
    colours = {"source": image, "estimate": estimate_foreground(image, matte)}
    if reference is not None:
        colours["pymatting"] = reference(image, matte)
    return [(label, method, _errors(scene, matte, c)) for method, c in colours.items()]


def _timing(
    label: str, scene: dict[str, np.ndarray], args: argparse.Namespace, reference: Any
) -> list[str]:
    image, matte = scene["image"], scene["coarse"]
    soft = float(((matte > 0) & (matte < 255)).mean())
    est, est_cpu = _median_time(lambda: estimate_foreground(image, matte), args.rounds)
    prores, prores_cpu = _prores_per_frame(scene, args.writer_frames)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="720,1080", help="comma-separated: 720, 1080")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument(
        "--writer-frames", type=int, default=10, help="frames the ProRes writer times"
    )
    parser.add_argument("--pymatting", action="store_true", help="add pymatting as a reference")
    args = parser.parse_args()
    reference = _pymatting() if args.pymatting else None
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    rows: list[tuple[str, str, list[float]]] = []
    times: list[list[str]] = []
    for key in (int(s) for s in args.sizes.split(",")):
        scenes = _scenes(SIZES[key])
        for name, scene in scenes.items():
            for matte_name in ("alpha", "coarse"):
                label = f"{key}p {name}, {'true' if matte_name == 'alpha' else 'coarse'} α"
                rows += _score(label, scene, scene[matte_name], reference)
        times.append(_timing(f"{key}p", scenes["hair"], args, reference))
    print(
        "\n| scene | colour | F MAD | composite MSE, green (×10⁻³) | composite MSE, image (×10⁻³) |"
    )
    print("|---|---|---:|---:|---:|")
    for label, method, (mad, green, image) in rows:
        print(f"| {label} | {method} | {mad:.4f} | {green:.3f} | {image:.3f} |")
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
