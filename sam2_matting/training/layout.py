"""Data-set layouts on disk, checked before any training or evaluation starts.

    from sam2_matting.training.layout import scan_videomatte, scan_image_set, scan_backgrounds
    clips = scan_videomatte("data/VideoMatte240K_JPEG_SD", split="train")
    pairs = scan_image_set("data/RefMatte_RW_100")
    bgs = scan_backgrounds(images="data/Backgrounds", videos="data/BackgroundVideos")

Layouts accepted:

- **VideoMatte240K** as published: ``ROOT/SPLIT/fgr/<clip>`` and ``ROOT/SPLIT/pha/<clip>``,
  each clip a video file (``0000.mp4``) or a folder of frames (``0000/00000.jpg``, RVM's
  ``VideoMatte240K_JPEG_SD`` conversion); fgr and pha clips pair by name and must have the
  same frame count and size.
- **Image matting sets** (RefMatte-RW100 style): ``ROOT/<images>/<name>.jpg|png`` and
  ``ROOT/<alphas>/<name>.png``, pairing by file stem; ``<images>`` is the first of
  ``image, images, image_all, im, original`` that exists (or given), ``<alphas>`` of
  ``alpha, alphas, mask, matte, pha, gt``.
- **Backgrounds**: a folder of images (searched recursively) and/or a folder of videos
  (video files or frame folders).

Every problem raises :class:`DataError` naming the file or folder at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sam2_matting.errors import InvalidInputError, MattingError
from sam2_matting.video import FRAME_EXTENSIONS, natural_sort_key, open_video

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
IMAGE_DIRS = ("image", "images", "image_all", "im", "original")
ALPHA_DIRS = ("alpha", "alphas", "mask", "matte", "pha", "gt")


class DataError(InvalidInputError):
    """A data set is missing, malformed or inconsistent; the message names the file."""

    code = "BAD_DATA"


@dataclass(frozen=True)
class MatteClip:
    """A foreground clip and its alpha clip (video files or frame folders)."""

    name: str
    fgr: Path
    pha: Path
    frame_count: int
    width: int
    height: int


@dataclass(frozen=True)
class ImagePair:
    """One image and its alpha matte."""

    name: str
    image: Path
    alpha: Path


@dataclass(frozen=True)
class Backgrounds:
    """Background image files and background clips (video files or frame folders)."""

    images: tuple[Path, ...]
    videos: tuple[Path, ...]


def require_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{what} not found: {p}")
    if not p.is_dir():
        raise DataError(f"{what} is not a folder: {p}")
    return p


def _clip_entries(folder: Path) -> dict[str, Path]:
    """Clips in ``folder``: video files and frame folders, keyed by name without suffix."""
    out: dict[str, Path] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: natural_sort_key(e.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix.lower() in VIDEO_EXTENSIONS:
            out[entry.stem if entry.is_file() else entry.name] = entry
    return out


def probe_clip(path: Path) -> tuple[int, int, int]:
    """(frame_count, width, height) of a video file or frame folder; DataError if unreadable."""
    try:
        with open_video(path, cache_size=0) as src:
            return int(src.frame_count), int(src.width), int(src.height)
    except MattingError as err:
        raise DataError(f"{path}: {err}") from err


def scan_videomatte(
    root: str | Path, split: str = "train", *, check: bool = True, limit: int | None = None
) -> list[MatteClip]:
    """The clips of a VideoMatte240K split; ``check`` opens each clip to compare fgr and pha."""
    base = require_dir(root, "VideoMatte240K root")
    split_dir = base / split if split else base
    fgr_dir = require_dir(split_dir / "fgr", "VideoMatte240K foreground folder")
    pha_dir = require_dir(split_dir / "pha", "VideoMatte240K alpha folder")
    fgr, pha = _clip_entries(fgr_dir), _clip_entries(pha_dir)
    if not fgr:
        raise DataError(f"no clips (videos or frame folders) in {fgr_dir}")
    missing = [name for name in fgr if name not in pha]
    if missing:
        raise DataError(f"{fgr[missing[0]]} has no alpha clip in {pha_dir}")
    names = list(fgr)[:limit] if limit else list(fgr)
    clips: list[MatteClip] = []
    for name in names:
        count, width, height = 0, 0, 0
        if check:
            count, width, height = probe_clip(fgr[name])
            p_count, p_width, p_height = probe_clip(pha[name])
            if (count, width, height) != (p_count, p_width, p_height):
                raise DataError(
                    f"{pha[name]} ({p_count} frames, {p_width}x{p_height}) does not match "
                    f"{fgr[name]} ({count} frames, {width}x{height})"
                )
        clips.append(MatteClip(name, fgr[name], pha[name], count, width, height))
    return clips


def _pick_dir(base: Path, given: str | None, candidates: Sequence[str], what: str) -> Path:
    if given:
        return require_dir(base / given, what)
    for name in candidates:
        if (base / name).is_dir():
            return base / name
    raise DataError(f"no {what} in {base} (expected one of: {', '.join(candidates)})")


def _image_files(folder: Path, recursive: bool = False) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    files = [
        p
        for p in folder.glob(pattern)
        if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_sort_key(str(p.relative_to(folder))))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; DataError naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from err


def scan_image_set(
    root: str | Path,
    *,
    image_dir: str | None = None,
    alpha_dir: str | None = None,
    check: bool = True,
) -> list[ImagePair]:
    """Image/alpha pairs of an image matting set; ``check`` compares their sizes."""
    base = require_dir(root, "image matting set")
    images = _image_files(_pick_dir(base, image_dir, IMAGE_DIRS, "image folder"))
    alpha_folder = _pick_dir(base, alpha_dir, ALPHA_DIRS, "alpha folder")
    alphas = {p.stem: p for p in _image_files(alpha_folder)}
    if not images:
        raise DataError(f"no images in {base}")
    pairs: list[ImagePair] = []
    for img in images:
        alpha = alphas.get(img.stem)
        if alpha is None:
            raise DataError(f"{img} has no alpha matte {img.stem}.png in {alpha_folder}")
        if check and image_size(img) != image_size(alpha):
            raise DataError(
                f"{alpha} {image_size(alpha)} is not the size of {img} {image_size(img)}"
            )
        pairs.append(ImagePair(img.stem, img, alpha))
    return pairs


def scan_backgrounds(
    images: str | Path | None = None, videos: str | Path | None = None, *, check: bool = True
) -> Backgrounds:
    """Background images (recursive) and clips; at least one kind must be given and non-empty."""
    image_files: list[Path] = []
    video_files: list[Path] = []
    if images:
        folder = require_dir(images, "background image folder")
        image_files = _image_files(folder, recursive=True)
        if not image_files:
            raise DataError(f"no JPEG or PNG images in background folder {folder}")
        if check:
            for p in image_files[:1]:
                image_size(p)
    if videos:
        folder = require_dir(videos, "background video folder")
        video_files = list(_clip_entries(folder).values())
        if not video_files:
            raise DataError(f"no videos or frame folders in background folder {folder}")
        if check:
            for p in video_files:
                probe_clip(p)
    if not image_files and not video_files:
        raise DataError("no backgrounds: give a background image folder or video folder")
    return Backgrounds(tuple(image_files), tuple(video_files))
