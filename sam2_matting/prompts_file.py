"""Prompts as a file: record a session's prompts, save them, replay them on a fresh session.

    from sam2_matting import prompts_file as pf

    model = pf.model_identity("large", adapter="adapters/matting")
    with predictor.open("clip.mp4") as plain:
        session = pf.record(plain, model=model)          # forwards every verb, logs it
        session.add_points(0, 1, [[640, 360]], [1])
        session.add_box(12, 2, [100, 80, 400, 600])
        mattes = list(session.propagate(direction="both"))
        pf.dump(session.document(), "clip.prompts.json")

    doc = pf.load("clip.prompts.json")       # InvalidInputError naming the bad field
    pf.check_video(doc, "clip.mp4")          # a file of another video: InvalidInputError
    pf.check_model(doc, model)               # another model: refused, or warnings if allowed
    with predictor.open("clip.mp4") as session:
        render = pf.replay(doc, session)     # every event in order, but the last propagation
        mattes = list(render.run(session))   # ... which is returned: the same mattes, exactly

The format (``docs/prompts-file.md``) is an ordered list of events, since SAM 2's answer
depends on the order of prompts and on the propagations between them. Coordinates are fractions
of the frame, stored as SAM 2 receives them, so a replay feeds the model the same numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2_matting.codec import decode_matte
from sam2_matting.errors import InvalidInputError
from sam2_matting.prompts_doc import (
    PromptsDoc,
    model_identity,
    open_options,
    session_options,
    video_identity,
    video_sha256,
)
from sam2_matting.prompts_record import RecordingSession, record
from sam2_matting.prompts_validate import FORMAT, VERSION, validate_document
from sam2_matting.steps import CancelToken

__all__ = [
    "FORMAT",
    "VERSION",
    "PromptsDoc",
    "Propagation",
    "RecordingSession",
    "check_model",
    "check_session",
    "check_video",
    "dump",
    "dumps",
    "load",
    "loads",
    "model_identity",
    "open_options",
    "record",
    "replay",
    "session_options",
    "video_identity",
    "video_sha256",
]

MAX_FILE_BYTES = 512 * 1024 * 1024


# -- files -----------------------------------------------------------------------------------
def dumps(doc: PromptsDoc) -> str:
    """The document as JSON text: identities indented, one event per line."""
    head = doc.to_json()
    events = head.pop("events")
    text = json.dumps(head, indent=2, allow_nan=False)[:-2]
    lines = ",\n".join("    " + json.dumps(e, allow_nan=False) for e in events)
    return text + ',\n  "events": [' + (f"\n{lines}\n  " if events else "") + "]\n}\n"


def dump(doc: PromptsDoc, path: str | Path) -> Path:
    """Write ``doc`` to ``path`` (through a temporary file, renamed when complete)."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        tmp.write_text(dumps(doc), encoding="utf-8")
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write prompts file {out}: {err.strerror}") from None
    return out


def _no_constant(name: str) -> Any:
    raise InvalidInputError(f"prompts file: {name} is not a JSON number")


def loads(text: str | bytes) -> PromptsDoc:
    """Parse and validate a prompts file; :class:`InvalidInputError` (one line) otherwise."""
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise InvalidInputError(
            f"prompts file: not JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    except UnicodeDecodeError:
        raise InvalidInputError("prompts file: not UTF-8 text") from None
    except RecursionError:
        raise InvalidInputError("prompts file: nested too deeply") from None
    return PromptsDoc(**validate_document(obj))


def load(path: str | Path) -> PromptsDoc:
    """Read and validate the prompts file at ``path``; errors name the file and the field."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInputError(f"prompts file {p}: over {MAX_FILE_BYTES >> 20} MiB")
        data = p.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"cannot read prompts file {p}: {err.strerror}") from None
    try:
        return loads(data)
    except InvalidInputError as err:
        raise InvalidInputError(str(err).replace("prompts file", f"prompts file {p}", 1)) from None


# -- checks ----------------------------------------------------------------------------------
def _describe(video: dict[str, Any]) -> str:
    name = f"{video['name']}, " if video.get("name") else ""
    return (
        f"{name}{video['width']}x{video['height']}, {video['frame_count']} frames, "
        f"sha256 {video['sha256'][:12]}"
    )


def check_video(doc: PromptsDoc, path: str | Path) -> None:
    """Refuse ``path`` unless its content is the video the prompts were made on."""
    sha = video_sha256(path)
    if sha != doc.video["sha256"] and sha == doc.video.get("upload_sha256"):
        where = doc.video.get("path")
        get = f", or GET /{where} from the service" if where else ""
        raise InvalidInputError(
            f"{Path(path).name} is the upload the prompts were made from, but the service "
            f"matted its H.264 copy ({where or doc.video.get('name', 'its own file')}, sha256 "
            f"{doc.video['sha256'][:12]}), whose frames differ: download that copy (the "
            f'page\'s "Download this video"{get}) and give it to matte instead'
        )
    if sha != doc.video["sha256"]:
        raise InvalidInputError(
            f"the prompts file is for another video ({_describe(doc.video)}), "
            f"not {Path(path).name} (sha256 {sha[:12]})"
        )


def check_session(doc: PromptsDoc, session: Any) -> None:
    """Refuse a session whose video has another size or frame count than the file's."""
    mine = (session.width, session.height, session.frame_count)
    theirs = (doc.video["width"], doc.video["height"], doc.video["frame_count"])
    if mine != theirs:
        raise InvalidInputError(
            f"the prompts file is for a {theirs[0]}x{theirs[1]} video of {theirs[2]} frames; "
            f"this one is {mine[0]}x{mine[1]} with {mine[2]} frames"
        )


def _differences(kind: str, theirs: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(theirs) | set(mine)):
        a, b = theirs.get(key), mine.get(key)
        if a != b:
            show = [
                (v.get("name", "?") + " " + v.get("sha256", "")[:12]) if isinstance(v, dict)
                else (v[:12] if isinstance(v, str) and key.endswith("sha256") else v)
                for v in (a, b)
            ]  # fmt: skip
            out.append(f"{kind}{key} {show[0]} in the file, {show[1]} here")
    return out


def check_model(
    doc: PromptsDoc,
    model: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    *,
    allow_other: bool = False,
    override: str | None = "--allow-other-model",
) -> list[str]:
    """Compare the file's model identity and options with ours (each when given).

    Differences refuse the file with :class:`InvalidInputError`, or with ``allow_other`` are
    returned as warning lines (the mattes will then differ from the recorded session's).
    ``override`` is named in the refusal as the way to allow it (``None``: no way).
    """
    diffs = [] if model is None else _differences("", doc.model, model)
    if options is not None:
        diffs += _differences("option ", doc.options, options)
    if diffs and not allow_other:
        hint = f"; {override} uses it anyway" if override else ""
        raise InvalidInputError(
            f"the prompts file was made with another model ({'; '.join(diffs)}){hint}"
        )
    return [f"the prompts file was made with another model: {d}" for d in diffs]


# -- replay ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Propagation:
    """A recorded propagation. ``run(session)`` does it again to the end, yielding every
    frame's mattes (the render); ``as_recorded(session)`` stops where the recorded one did."""

    start_frame: int | None
    direction: str
    max_frames: int | None
    frames: int | None = None  # how many frames the recorded one yielded

    @classmethod
    def of(cls, event: dict[str, Any]) -> Propagation:
        return cls(event["start_frame"], event["direction"], event["max_frames"], event["frames"])

    def run(self, session: Any, **overrides: Any) -> Iterator[Any]:
        args = {"direction": self.direction, "max_frames": self.max_frames, **overrides}
        return session.propagate(self.start_frame, **args)

    def as_recorded(self, session: Any) -> list[Any]:
        """The frames the recorded propagation yielded, computed again (then it stops).

        One stopped before its first frame is started and stopped the same way: SAM 2 had not
        begun it (its preflight, which consolidates the prompts into tracking memory, runs with
        the first frame), so the session is left exactly as the recorded one was."""
        if self.frames == 0:
            stopped = CancelToken()
            stopped.cancel()
            for _ in self.run(session, cancel=stopped):
                pass  # none: the session stops before SAM 2's first step
            return []
        frames = self.run(session)
        out: list[Any] = []
        try:
            while self.frames is None or len(out) < self.frames:
                result = next(frames, None)
                if result is None:
                    break
                out.append(result)
        finally:
            frames.close()  # type: ignore[attr-defined]
        return out


def _apply(session: Any, e: dict[str, Any], shape: tuple[int, int]) -> None:
    op = e["op"]
    if op == "add_points":
        session.add_points(
            e["frame"],
            e["object"],
            e["points"],
            e["labels"],
            normalized=True,
            clear_old_points=e["clear_old_points"],
        )
    elif op == "add_box":
        pts = e.get("points") or None
        labels = e.get("labels") if pts else None
        session.add_box(
            e["frame"], e["object"], e["box"], points=pts, labels=labels, normalized=True
        )
    elif op == "add_mask":
        session.add_mask(e["frame"], e["object"], decode_matte(e["mask"], expected_shape=shape))
    elif op == "clear_frame":
        session.clear_points_in_frame(e["frame"], e["object"])
    elif op == "remove_object":
        session.remove_object(e["object"])
    elif op == "clear_video":
        session.clear_points_in_video()
    else:  # propagate, as far as it went
        Propagation.of(e).as_recorded(session)


def replay(doc: PromptsDoc, session: Any) -> Propagation | None:
    """Apply the file's events to ``session`` in order, all but a last propagation, which is
    returned (``None`` if the file does not end with one): running it gives the mattes the
    recorded session got from it (``run``), or, to leave the session as the recorded one was,
    ``as_recorded``. A session of another size is refused."""
    check_session(doc, session)
    events = doc.events
    last = None
    if events and events[-1]["op"] == "propagate":
        e = events[-1]
        last = Propagation.of(e)
        events = events[:-1]
    shape = (doc.video["height"], doc.video["width"])
    for i, e in enumerate(events):
        try:
            _apply(session, e, shape)
        except InvalidInputError as err:
            raise InvalidInputError(f"prompts file: events[{i}] ({e['op']}): {err}") from None
    return last
