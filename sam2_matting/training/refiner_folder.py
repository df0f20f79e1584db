"""Reading a refiner data folder (built by :mod:`sam2_matting.training.refiner_data`).

    from sam2_matting.training.refiner_folder import read_refiner_data
    clips = read_refiner_data("data/refiner-vm")     # frames, coarse, alpha, names
    RefinerTrainer(RefinerTrainConfig(data="data/refiner-vm")).fit()   # what training reads

Only a folder whose ``manifest.json`` exists (it is written last, so a half-built folder has
none) and says ``complete`` is read; every clip it lists must be there with the frame count
and size it states. Coarse and true alpha stay 16-bit in memory (``value / 65535``; the
trainer converts each crop), half the memory of float32 at the same precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam2_matting.jsonfile import read_object
from sam2_matting.training.layout import DataError, require_dir

FORMAT = "sam2-matting-refiner-data"
VERSION = 1
MANIFEST = "manifest.json"
SETTINGS = "settings.json"
CLIP_FILE = "clip.json"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; DataError naming the file otherwise."""
    return read_object(path, DataError)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a complete refiner data folder; DataError saying why not otherwise."""
    root = require_dir(folder, "refiner data folder")
    file = root / MANIFEST
    if not file.is_file():
        raise DataError(
            f"{root} has no {MANIFEST}: not a complete refiner data folder (build or finish "
            "it with `sam2-matting refiner-data ... --out` this folder)"
        )
    manifest = read_json(file)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise DataError(f"{file} is not a refiner data manifest (format {FORMAT} v{VERSION})")
    if manifest.get("complete") is not True or not isinstance(manifest.get("clip_records"), list):
        raise DataError(f"{file} does not describe a complete build")
    return manifest


def _read_png(path: Path, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from None
    if arr.dtype != dtype or arr.shape != shape:
        raise DataError(f"{path} is {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} {shape}")
    return arr


def read_clip(folder: Path, frames: int, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """(frames uint8 (T,H,W,3), coarse uint16 (T,H,W), alpha uint16 (T,H,W)) of one clip."""
    h, w = size
    names = [f"{j:05d}.png" for j in range(frames)]
    rgb = np.stack([_read_png(folder / "frames" / n, np.uint8, (h, w, 3)) for n in names])
    coarse = np.stack([_read_png(folder / "coarse" / n, np.uint16, (h, w)) for n in names])
    alpha = np.stack([_read_png(folder / "alpha" / n, np.uint16, (h, w)) for n in names])
    return rgb, coarse, alpha


@dataclass
class RefinerClips:
    """The built clips of a folder: frames uint8 (T,H,W,3), coarse and alpha uint16 (T,H,W)."""

    frames: list[np.ndarray]
    coarse: list[np.ndarray]
    alpha: list[np.ndarray]
    names: list[str]


def read_refiner_data(folder: str | Path) -> RefinerClips:
    """Every built clip of a complete folder (the refiner trainer's ``data=DIR``)."""
    manifest = read_manifest(folder)
    root = Path(folder)
    size = manifest.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise DataError(f"{root / MANIFEST}: size must be [height, width]")
    frames, coarse, alpha, names = [], [], [], []
    for record in manifest["clip_records"]:
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            raise DataError(f"{root / MANIFEST}: a clip record has no name")
        if "skipped" in record:
            continue
        count = record.get("frames")
        if not isinstance(count, int) or count < 1:
            raise DataError(f"{root / MANIFEST}: clip {record['name']} has no frame count")
        rgb, co, al = read_clip(root / "clips" / record["name"], count, (size[0], size[1]))
        frames.append(rgb)
        coarse.append(co)
        alpha.append(al)
        names.append(f"{record['name']}:{record.get('window', '')}")
    if not frames:
        raise DataError(f"{root / MANIFEST} lists no built clip")
    return RefinerClips(frames, coarse, alpha, names)
