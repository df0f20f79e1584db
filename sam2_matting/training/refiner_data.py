"""Refiner training data from VideoMatte240K: (composite, SAM 2's coarse output, true alpha).

    from sam2_matting.training.refiner_data import DataSpec, build_refiner_data
    predictor = build_matting_predictor("large", refiner=False)
    spec = DataSpec(clips=200, frames=8, size=(1080, 1920), seed=0)
    build_refiner_data(predictor, sources, backgrounds, "data/refiner-vm", spec, provenance)
    # then RefinerTrainConfig(data="data/refiner-vm"): sam2_matting.training.refiner_folder

Output clip ``i`` composites source clip ``i mod len(sources)`` with the draws of
``numpy.random.default_rng([seed, i])`` (window, colour jitter, background), through
:meth:`VideoMatteClips.make_clip` (the LoRA training's reader and compositor), at ``size``
with the whole frame kept (no random crop, flip or motion: the refiner trainer crops and flips
itself, and resampling a foreground up would teach it blurred edges). SAM 2 is then prompted
as a careful user would from the true alpha, on the first frame whose ``alpha >= 0.5`` region
covers at least :data:`MIN_AREA` of the frame (the frames before it are dropped): a box around
that region (SAM 2 labels 2 and 3) plus one positive click at its interior point farthest from
its edge (the frame border counts as edge; ties go to the first in raster order). No
randomness, so the prompt is a function of the alpha. A :class:`MattingSession` opened on the
written composite frames then propagates forward, exactly as the service would; what is
stored as coarse is the session's float output, the sigmoid of SAM 2's video-size logits,
which is what the refiner receives in production.

On disk (one folder per output clip; see :mod:`sam2_matting.training.refiner_folder`)::

    OUT/settings.json                 what the folder is built from, checked on every re-run
    OUT/clips/00000/frames/00000.png  the composite, 8-bit RGB (lossless)
    OUT/clips/00000/alpha/00000.png   true alpha, 16-bit grey round(65535 a) (pha v -> 257 v)
    OUT/clips/00000/coarse/00000.png  coarse alpha, 16-bit grey round(65535 a)
    OUT/clips/00000/clip.json         source clip and frames, prompt (written last)
    OUT/manifest.json                 provenance and every clip: written last of all

A clip is built in ``clips/NNNNN.part`` and renamed when complete; a re-run skips finished
clips, rebuilds a half-written one and refuses other settings (``clips`` may grow).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam2_matting.errors import InvalidInputError
from sam2_matting.training.augment import Augment
from sam2_matting.training.datasets import ClipSpec, VideoMatteClips
from sam2_matting.training.layout import Backgrounds, DataError, MatteClip
from sam2_matting.training.prompts import PromptRule, sample_prompt
from sam2_matting.training.refiner_folder import (
    CLIP_FILE,
    FORMAT,
    MANIFEST,
    SETTINGS,
    VERSION,
    read_json,
)

#: The prompt frame's ``alpha >= 0.5`` region must cover this fraction of the frame.
MIN_AREA = 0.005
#: The whole frame, colour jitter only (see the module docstring).
DATA_AUGMENT = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0, motion_prob=0.0)
PROMPT_RULE = (
    "first frame whose alpha >= 0.5 region covers >= 0.5% of the frame; box around that region "
    "(x0, y0, x1 + 1, y1 + 1) plus a positive click at its interior point farthest from its edge"
)
OBJECT_ID = 1


@dataclass(frozen=True)
class DataSpec:
    """How many output clips, frames per clip, the size (H, W) and the seed."""

    clips: int
    frames: int = 8
    size: tuple[int, int] = (1080, 1920)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clips < 1 or self.frames < 1:
            raise InvalidInputError("refiner data: --clips and --frames must be at least 1")
        if min(self.size) < 16:
            raise InvalidInputError("refiner data: --size must be at least 16x16")


@dataclass(frozen=True)
class UserPrompt:
    """A box (x0, y0, x1, y1) and one positive click (x, y), in pixels, on one frame."""

    frame: int
    box: tuple[float, float, float, float]
    click: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        return {"frame": self.frame, "box": list(self.box), "click": list(self.click)}


def user_prompt(alphas: np.ndarray) -> UserPrompt | None:
    """The prompt of :data:`PROMPT_RULE` from the true alphas (T, H, W) float in [0, 1], or
    None when no frame shows enough foreground."""
    from scipy import ndimage

    height, width = alphas.shape[1:]
    for t, alpha in enumerate(alphas):
        region = alpha >= 0.5
        if region.sum() < MIN_AREA * height * width:
            continue
        box = sample_prompt(alpha, PromptRule(kind="box"), np.random.default_rng(0)).box
        assert box is not None  # the region is not empty
        dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        return UserPrompt(t, box, (float(x), float(y)))
    return None


def save_frame(path: Path, rgb: np.ndarray) -> None:
    """An RGB uint8 frame as PNG, zlib level 1: at 1080p about 3x faster to write than the
    default level for 18% more bytes (benchmarks/bench_refiner_data.py); still lossless."""
    Image.fromarray(rgb).save(path, compress_level=1)


def save_png16(path: Path, values: np.ndarray) -> None:
    """A float array in [0, 1] as a 16-bit grey PNG of ``round(65535 * value)``."""
    q = np.rint(np.clip(values.astype(np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    Image.fromarray(q).save(path)


def _settings(
    sources: Sequence[MatteClip], backgrounds: Backgrounds, spec: DataSpec, provenance: dict
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "frames": spec.frames,
        "size": list(spec.size),
        "seed": spec.seed,
        "sources": [c.name for c in sources],
        "background_files": {"images": len(backgrounds.images), "videos": len(backgrounds.videos)},
        **provenance,
    }


def _check_folder(out: Path, settings: dict[str, Any]) -> None:
    """A new or empty folder, or one this build made with the same settings."""
    file = out / SETTINGS
    if not file.is_file():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise DataError(f"{out} exists and is not a refiner data folder (no {SETTINGS})")
        out.mkdir(parents=True, exist_ok=True)
        part = file.with_name(SETTINGS + ".part")
        part.write_text(json.dumps(settings, indent=2) + "\n")
        part.replace(file)
        return
    old = read_json(file)
    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if changed:
        raise DataError(
            f"{out} was built with other settings ({', '.join(changed)} differ): "
            "use a new --out folder"
        )


def build_clip(
    predictor: Any,
    dataset: VideoMatteClips,
    source: MatteClip,
    index: int,
    spec: DataSpec,
    folder: Path,
) -> dict[str, Any]:
    """Build output clip ``index`` from ``source`` into ``folder`` (created); its record."""
    rng = np.random.default_rng([spec.seed, index])
    window, frames, alphas, idx = dataset.make_clip(source, rng)
    record: dict[str, Any] = {
        "name": folder.name.removesuffix(".part"),
        "source": source.name,
        "window": window,
    }
    prompt = user_prompt(alphas)
    folder.mkdir(parents=True)
    if prompt is None:
        record["skipped"] = "no frame shows enough foreground to prompt"
        return record
    keep = range(prompt.frame, len(frames))
    for sub in ("frames", "alpha", "coarse"):
        (folder / sub).mkdir()
    for j, t in enumerate(keep):
        save_frame(folder / "frames" / f"{j:05d}.png", frames[t])
        save_png16(folder / "alpha" / f"{j:05d}.png", alphas[t])
    written = 0
    with predictor.open(folder / "frames", keep_float=True) as session:
        session.add_box(0, OBJECT_ID, prompt.box, points=[prompt.click], labels=[1])
        for mattes in session.propagate(0, direction="forward"):
            assert mattes.soft is not None  # keep_float sessions always carry it
            save_png16(folder / "coarse" / f"{mattes.frame_index:05d}.png", mattes.soft[0])
            written += 1
    if written != len(keep):
        raise DataError(f"{folder}: SAM 2 returned {written} of {len(keep)} frames")
    record.update(
        frames=len(keep),
        source_frames=[int(idx[t]) for t in keep],
        prompt=prompt.to_json(),
    )
    return record


def build_refiner_data(
    predictor: Any,
    sources: Sequence[MatteClip],
    backgrounds: Backgrounds,
    out: str | Path,
    spec: DataSpec,
    provenance: dict[str, Any],
    progress: Callable[[str], None] = lambda line: None,
) -> Path:
    """Build (or finish) the folder ``out``; returns its manifest (written last)."""
    if not sources:
        raise DataError("no VideoMatte240K clips to build refiner data from")
    if getattr(predictor, "refiner", None) is not None:
        raise InvalidInputError(
            "the coarse input must be SAM 2's own output: load the model with refiner=False"
        )
    root = Path(out)
    settings = _settings(sources, backgrounds, spec, provenance)
    _check_folder(root, settings)
    clip_spec = ClipSpec(
        num_frames=spec.frames,
        size=spec.size,
        image_size=int(predictor.image_size),
        augment=DATA_AUGMENT,
        seed=spec.seed,
    )
    dataset = VideoMatteClips(clip_spec, sources, backgrounds)
    clips_dir = root / "clips"
    clips_dir.mkdir(exist_ok=True)
    records = []
    for i in range(spec.clips):
        final = clips_dir / f"{i:05d}"
        if (final / CLIP_FILE).is_file():
            records.append(read_json(final / CLIP_FILE))
            progress(f"done already {final.name}")
            continue
        (root / MANIFEST).unlink(missing_ok=True)  # the folder is no longer complete
        part = final.with_name(final.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        record = build_clip(predictor, dataset, sources[i % len(sources)], i, spec, part)
        tmp = part / (CLIP_FILE + ".part")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(part / CLIP_FILE)
        part.rename(final)
        records.append(record)
        said = record.get("skipped") or f"{record['frames']} frames"
        progress(f"built {final.name} ({record['window']}: {said})")
    built = [r for r in records if "skipped" not in r]
    if not built:
        raise DataError(f"no clip of {root} shows enough foreground to prompt")
    manifest = {
        **settings,
        "clips": spec.clips,
        "frames_total": sum(int(r["frames"]) for r in built),
        "complete": True,
        "prompt_rule": PROMPT_RULE,
        "stored": {
            "frames": "8-bit RGB PNG, the composite SAM 2 saw",
            "alpha": "16-bit grey PNG, round(65535 * true alpha)",
            "coarse": "16-bit grey PNG, round(65535 * sigmoid(SAM 2 logits at video size))",
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clip_records": records,
    }
    part_file = root / (MANIFEST + ".part")
    part_file.write_text(json.dumps(manifest, indent=2) + "\n")
    part_file.replace(root / MANIFEST)
    return root / MANIFEST
