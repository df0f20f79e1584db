"""A batch manifest: one clip per line, JSON lines (docs/batch.md).

    {"input": "shots/a.mp4", "prompts": "shots/a.prompts.json", "output": "out/a"}
    {"input": "shots/b.mp4", "prompts": "shots/b.prompts.json", "output": "out/b",
     "formats": ["prores", "alpha"], "foreground": "source"}

    jobs = parse_manifest("shots.jsonl", Defaults(formats=("prores",)))

Relative paths are relative to the manifest's folder, so a manifest travels with its clips.
Blank lines and lines starting with ``#`` are skipped. Every line is checked before any clip
runs; a bad one is refused with :class:`InvalidInputError` naming the file and the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2_matting.errors import InvalidInputError

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
REQUIRED = ("input", "prompts", "output")
OPTIONAL = (
    "name",
    "formats",
    "foreground",
    "background",
    "premultiplied",
    "export_objects",
    "direction",
    "max_frames",
)


@dataclass(frozen=True)
class Defaults:
    """The batch's options, which a line may override (``sam2-matting batch`` flags)."""

    formats: tuple[str, ...] = ("prores",)
    foreground: str = "estimate"
    background: str | None = None
    premultiplied: bool = False


@dataclass(frozen=True)
class ClipJob:
    """One clip of a batch, its paths absolute (the manifest's folder applied)."""

    line: int
    name: str
    input: Path
    prompts: Path
    output: Path
    formats: tuple[str, ...]
    foreground: str
    background: str | None = None
    premultiplied: bool = False
    export_objects: tuple[int, ...] | None = None
    direction: str | None = None
    max_frames: int | None = None

    def describe(self) -> dict[str, Any]:
        """What changes this clip's output, as JSON values (the resumability key's input)."""
        return {
            "input": str(self.input),
            "formats": list(self.formats),
            "foreground": self.foreground,
            "background": self.background,
            "premultiplied": self.premultiplied,
            "export_objects": None if self.export_objects is None else list(self.export_objects),
            "direction": self.direction,
            "max_frames": self.max_frames,
        }


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f'"{key}" must be a non-empty string')
    return value


def parse_formats(value: Any) -> tuple[str, ...]:
    from sam2_matting.export import get_format

    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInputError('"formats" must be a list of format names or "a,b"')
    names = tuple(get_format(v).name for v in value)
    if len(set(names)) != len(names):
        raise InvalidInputError('"formats" lists a format twice')
    return names


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f'"{key}" must be a positive integer')
    return value


def _job(obj: Any, line: int, base: Path, defaults: Defaults) -> ClipJob:
    from sam2_matting.export.foreground import parse_foreground
    from sam2_matting.limits import DIRECTIONS

    if not isinstance(obj, dict):
        raise InvalidInputError("expected a JSON object")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise InvalidInputError(f"missing {', '.join(repr(k) for k in missing)}")
    unknown = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        known = ", ".join(REQUIRED + OPTIONAL)
        raise InvalidInputError(f"unknown field {unknown[0]!r} (known: {known})")
    paths = {k: base / Path(_text(obj, k)).expanduser() for k in REQUIRED}
    formats = parse_formats(obj["formats"]) if "formats" in obj else defaults.formats
    foreground = parse_foreground(obj.get("foreground", defaults.foreground))
    background = obj.get("background", defaults.background)
    if background is not None and not isinstance(background, str):
        raise InvalidInputError('"background" must be a colour or a file path')
    if isinstance(background, str) and not background.startswith("#"):
        candidate = base / background
        background = str(candidate) if candidate.exists() else background
    premultiplied = obj.get("premultiplied", defaults.premultiplied)
    if not isinstance(premultiplied, bool):
        raise InvalidInputError('"premultiplied" must be true or false')
    objects = obj.get("export_objects")
    if objects is not None:
        if not isinstance(objects, list) or not objects:
            raise InvalidInputError('"export_objects" must be a list of object ids')
        objects = tuple(_positive(o, "export_objects") for o in objects)
    direction = obj.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise InvalidInputError(f'"direction" must be one of {", ".join(DIRECTIONS)}')
    max_frames = obj.get("max_frames")
    if max_frames is not None:
        max_frames = _positive(max_frames, "max_frames")
    name = obj.get("name", paths["input"].name)
    if not isinstance(name, str):
        raise InvalidInputError('"name" must be a string')
    return ClipJob(
        line, name, paths["input"], paths["prompts"], paths["output"], formats, foreground,
        background, premultiplied, objects, direction, max_frames,
    )  # fmt: skip


def parse_lines(text: str, where: str, base: Path, defaults: Defaults) -> list[ClipJob]:
    """The clips of manifest ``text``; ``where`` names it in errors, ``base`` anchors paths."""
    jobs: list[ClipJob] = []
    errors: list[str] = []
    outputs: dict[Path, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InvalidInputError(f"not JSON ({err.msg} at column {err.colno})") from None
            job = _job(obj, number, base, defaults)
            earlier = outputs.setdefault(job.output.resolve(), number)
            if earlier != number:
                raise InvalidInputError(f'"output" {job.output} is also line {earlier}\'s')
        except InvalidInputError as err:
            errors.append(f"{where} line {number}: {err}")
            continue
        jobs.append(job)
    if errors:
        more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
        raise InvalidInputError(errors[0] + more)
    if not jobs:
        raise InvalidInputError(f"{where}: no clips (one JSON object per line)")
    return jobs


def parse_manifest(path: str | Path, defaults: Defaults | None = None) -> list[ClipJob]:
    """The clips of the manifest file at ``path`` (see the module's docstring)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_MANIFEST_BYTES:
            raise InvalidInputError(f"manifest {p}: over {MAX_MANIFEST_BYTES >> 20} MiB")
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidInputError(f"cannot read manifest {p}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"manifest {p}: not UTF-8 text") from None
    return parse_lines(text, str(p), p.resolve().parent, defaults or Defaults())
