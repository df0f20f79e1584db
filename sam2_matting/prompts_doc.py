"""The prompts file's document and the identities it holds (video, model, options).

    from sam2_matting.prompts_doc import PromptsDoc, model_identity, video_identity
    model = model_identity("large", adapter="adapters/matting")   # names and sha256s
    video = video_identity("clip.mp4", 1920, 1080, 240)          # content sha256, size, frames

The public API is :mod:`sam2_matting.prompts_file`; the format is docs/prompts-file.md.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam2_matting import __version__
from sam2_matting.errors import VideoError
from sam2_matting.prompts_validate import FORMAT, VERSION

_CHUNK = 1 << 20


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class PromptsDoc:
    """A prompts file in memory: identities, output-changing options and ordered events."""

    video: dict[str, Any]
    model: dict[str, Any]
    options: dict[str, Any]
    events: list[dict[str, Any]]
    generator: str = f"sam2-matting {__version__}"
    created: str = field(default_factory=_now)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "generator": self.generator,
            "created": self.created,
            "video": self.video,
            "model": self.model,
            "options": self.options,
            "events": self.events,
        }


# -- identities ------------------------------------------------------------------------------
_hash_cache: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def _folder_sha256(path: Path, names: Sequence[str]) -> str:
    """sha256 over ``name NUL sha256(content) LF`` of each file, in order."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\0{_file_sha256(path / name)}\n".encode())
    return digest.hexdigest()


def video_sha256(path: str | Path) -> str:
    """The content hash of a video file, or of a folder's frames in their reading order."""
    from sam2_matting.video import FRAME_EXTENSIONS, natural_sort_key

    p = Path(path)
    try:
        if p.is_dir():
            names = [
                e.name
                for e in p.iterdir()
                if e.suffix.lower() in FRAME_EXTENSIONS
                and not e.name.startswith(".")
                and e.is_file()
            ]
            return _folder_sha256(p, sorted(names, key=natural_sort_key))
        return _file_sha256(p)
    except FileNotFoundError:
        raise VideoError(f"video not found: {p}") from None
    except OSError as err:
        raise VideoError(f"cannot read {p}: {err.strerror}") from None


def video_identity(path: str | Path, width: int, height: int, frame_count: int) -> dict[str, Any]:
    """The ``video`` field: content hash, size and frame count (and the name, for people)."""
    return {
        "name": Path(path).name,
        "sha256": video_sha256(path),
        "width": int(width),
        "height": int(height),
        "frame_count": int(frame_count),
    }


def model_identity(
    model: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    adapter: str | os.PathLike[str] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The ``model`` field for the arguments of ``build_matting_predictor``: the config's file
    name (a size is named by its config, so ``--model tiny`` and ``--config`` of the same file
    agree), the checkpoint's file name and sha256, the adapter's folder name and sha256."""
    from sam2_matting.errors import CheckpointError, NotFoundError
    from sam2_matting.registry import get_model_spec, resolve_checkpoint

    ckpt = resolve_checkpoint(model, checkpoint, checkpoint_dir)
    try:
        config = Path(get_model_spec(str(model)).config).name
    except NotFoundError:
        config = Path(str(model)).name
    try:
        ident: dict[str, Any] = {
            "config": config,
            "checkpoint": ckpt.name,
            "checkpoint_sha256": _file_sha256(ckpt),
            "adapter": None,
        }
        if adapter is not None:
            folder = Path(adapter)
            if not folder.is_dir():
                raise CheckpointError(f"adapter folder not found: {folder}")
            files = sorted(e.name for e in folder.iterdir() if e.is_file() and e.name[0] != ".")
            ident["adapter"] = {"name": folder.name, "sha256": _folder_sha256(folder, files)}
    except OSError as err:
        raise CheckpointError(f"cannot read {err.filename}: {err.strerror}") from None
    return ident


def session_options(session: Any) -> dict[str, Any]:
    """The options of a session and its predictor that change the mattes: the autocast dtype,
    and ``memory_window`` when the session bounds its memory (as given to ``open``)."""
    options: dict[str, Any] = {"dtype": str(session.predictor.dtype).removeprefix("torch.")}
    window = getattr(session, "memory_window", None)
    if window is not None:
        options["memory_window"] = int(window) - 1  # the session keeps one frame more
    return options


def open_options(doc_options: dict[str, Any]) -> dict[str, Any]:
    """The ``predictor.open`` keyword arguments that reproduce a file's session options."""
    window = doc_options.get("memory_window")
    return {"memory_window": window} if isinstance(window, int) else {}
