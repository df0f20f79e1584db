"""Strict validation of a prompts file (``docs/prompts-file.md``): every field, one-line errors.

    from sam2_matting.prompts_validate import validate_document
    fields = validate_document(json.loads(text))   # InvalidInputError naming the bad field

Used by :func:`sam2_matting.prompts_file.loads`; returns the document's parts checked and
normalised (``video``, ``model``, ``options``, ``events``, and the informational fields).
"""

from __future__ import annotations

import math
import re
from typing import Any

from sam2_matting.codec import decode_matte
from sam2_matting.errors import CodecError, InvalidInputError
from sam2_matting.limits import DIRECTIONS, MAX_OBJECT_ID, MAX_POINTS

FORMAT = "sam2-matting-prompts"
VERSION = 1
SUPPORTED_VERSIONS = (1,)

OPS = (
    "add_points",
    "add_box",
    "add_mask",
    "clear_frame",
    "remove_object",
    "clear_video",
    "propagate",
)
_TOP = {"format", "version", "video", "model", "options", "events", "generator", "created"}
_REQUIRED_TOP = ("format", "version", "video", "model", "options", "events")
_EVENT_FIELDS: dict[str, tuple[set[str], set[str]]] = {  # op -> (required, optional)
    "add_points": ({"frame", "object", "points", "labels", "clear_old_points"}, set()),
    "add_box": ({"frame", "object", "box"}, {"points", "labels"}),
    "add_mask": ({"frame", "object", "mask"}, set()),
    "clear_frame": ({"frame", "object"}, set()),
    "remove_object": ({"object"}, set()),
    "clear_video": (set(), set()),
    "propagate": ({"start_frame", "direction", "max_frames", "frames"}, set()),
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _fail(where: str, what: str) -> InvalidInputError:
    return InvalidInputError(f"prompts file: {where}: {what}")


def _object(value: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "expected an object")
    unknown = sorted(set(value) - required - optional)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", "unknown field")
    missing = sorted(required - set(value))
    if missing:
        raise _fail(f"{where}.{missing[0]}", "missing")
    return value


def _int(value: Any, where: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {_show(value)}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise _fail(where, f"{value} is out of range {bound}")
    return value


def _str(value: Any, where: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(where, f"expected a non-empty string, got {_show(value)}")
    return value


def _sha(value: Any, where: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not _SHA256.match(value):
        raise _fail(where, "expected a sha256 as 64 lowercase hex digits")
    return value


def _unit(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, f"expected a number in [0, 1], got {_show(value)}")
    if not 0.0 <= value <= 1.0:
        raise _fail(where, f"{value} is outside [0, 1] (coordinates are fractions of the frame)")
    return float(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _points(value: Any, where: str, *, allow_empty: bool) -> list[list[float]]:
    if not isinstance(value, list):
        raise _fail(where, "expected a list of [x, y] pairs")
    if not value and not allow_empty:
        raise _fail(where, "needs at least one point")
    if len(value) > MAX_POINTS:
        raise _fail(where, f"at most {MAX_POINTS} points per prompt")
    out = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _fail(f"{where}[{i}]", "expected an [x, y] pair")
        out.append([_unit(pair[0], f"{where}[{i}][0]"), _unit(pair[1], f"{where}[{i}][1]")])
    return out


def _labels(value: Any, where: str, count: int) -> list[int]:
    if not isinstance(value, list):
        raise _fail(where, "expected a list of 0/1 labels")
    if len(value) != count:
        raise _fail(where, f"{len(value)} labels for {count} points")
    for i, label in enumerate(value):
        if isinstance(label, bool) or label not in (0, 1):
            raise _fail(f"{where}[{i}]", f"expected 1 (positive) or 0 (negative), got {label!r}")
    return [int(v) for v in value]


def _video(value: Any) -> dict[str, Any]:
    optional = {"name", "path", "upload_sha256"}
    v = _object(value, "video", {"sha256", "width", "height", "frame_count"}, optional)
    out = {
        "sha256": _sha(v["sha256"], "video.sha256"),
        "width": _int(v["width"], "video.width", 1),
        "height": _int(v["height"], "video.height", 1),
        "frame_count": _int(v["frame_count"], "video.frame_count", 1),
    }
    for key in ("name", "path"):  # for people and the page; never compared
        if key in v:
            out[key] = _str(v[key], f"video.{key}")
    if "upload_sha256" in v:  # the upload the service transcoded into this video
        out["upload_sha256"] = _sha(v["upload_sha256"], "video.upload_sha256")
    return out


def _model(value: Any) -> dict[str, Any]:
    m = _object(value, "model", {"config", "checkpoint", "checkpoint_sha256", "adapter"}, set())
    adapter = m["adapter"]
    if adapter is not None:
        a = _object(adapter, "model.adapter", {"name", "sha256"}, set())
        adapter = {
            "name": _str(a["name"], "model.adapter.name"),
            "sha256": _sha(a["sha256"], "model.adapter.sha256"),
        }
    return {
        "config": _str(m["config"], "model.config"),
        "checkpoint": _str(m["checkpoint"], "model.checkpoint", nullable=True),
        "checkpoint_sha256": _sha(m["checkpoint_sha256"], "model.checkpoint_sha256", nullable=True),
        "adapter": adapter,
    }


def _options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail("options", "expected an object")
    for key, item in value.items():
        if not (item is None or isinstance(item, str | bool | int | float)):
            raise _fail(f"options.{key}", "expected a string, number, boolean or null")
    if value.get("memory_window") is not None:
        _int(value["memory_window"], "options.memory_window", 1)
    if "dtype" in value:
        _str(value["dtype"], "options.dtype")
    return dict(value)


def _event(value: Any, where: str, video: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "expected an object")
    op = value.get("op")
    if op not in _EVENT_FIELDS:
        raise _fail(f"{where}.op", f"expected one of {', '.join(OPS)}, got {_show(op)}")
    required, optional = _EVENT_FIELDS[op]
    e = _object(value, where, required | {"op"}, optional)
    last = video["frame_count"] - 1
    out: dict[str, Any] = {"op": op}
    if "frame" in e:
        out["frame"] = _int(e["frame"], f"{where}.frame", 0, last)
    if "object" in e:
        out["object"] = _int(e["object"], f"{where}.object", 0, MAX_OBJECT_ID)
    if op == "add_points" or "points" in e or "labels" in e:
        points = _points(e.get("points", []), f"{where}.points", allow_empty=op == "add_box")
        out["points"] = points
        out["labels"] = _labels(e.get("labels", []), f"{where}.labels", len(points))
    if op == "add_points":
        if not isinstance(e["clear_old_points"], bool):
            raise _fail(f"{where}.clear_old_points", "expected true or false")
        out["clear_old_points"] = e["clear_old_points"]
    elif op == "add_box":
        box = e["box"]
        if not isinstance(box, list) or len(box) != 4:
            raise _fail(f"{where}.box", "expected [x0, y0, x1, y1]")
        b = [_unit(c, f"{where}.box[{i}]") for i, c in enumerate(box)]
        if not (b[0] < b[2] and b[1] < b[3]):
            raise _fail(f"{where}.box", "needs x0 < x1 and y0 < y1")
        out["box"] = b
    elif op == "add_mask":
        try:
            decode_matte(e["mask"], expected_shape=(video["height"], video["width"]))
        except CodecError as err:
            raise _fail(f"{where}.mask", str(err)) from None
        out["mask"] = e["mask"]
    elif op == "propagate":
        if e["direction"] not in DIRECTIONS:
            raise _fail(f"{where}.direction", f"expected one of {', '.join(DIRECTIONS)}")
        out["direction"] = e["direction"]
        start = e["start_frame"]
        out["start_frame"] = None if start is None else _int(start, f"{where}.start_frame", 0, last)
        limit = e["max_frames"]
        out["max_frames"] = None if limit is None else _int(limit, f"{where}.max_frames", 1)
        out["frames"] = _int(e["frames"], f"{where}.frames", 0)
    return out


def validate_document(obj: Any) -> dict[str, Any]:
    """The parts of a parsed prompts file, checked; :class:`InvalidInputError` otherwise."""
    if not isinstance(obj, dict):
        raise InvalidInputError("prompts file: expected a JSON object at the top")
    if obj.get("format") != FORMAT:
        raise InvalidInputError(
            f"prompts file: format: expected {FORMAT!r}, got {_show(obj.get('format'))} "
            "(not a sam2-matting prompts file)"
        )
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _fail("version", f"expected an integer, got {_show(version)}")
    if version not in SUPPORTED_VERSIONS:
        newer = " (newer than this sam2-matting: upgrade it)" if version > VERSION else ""
        raise _fail("version", f"unknown version {version}{newer}; this one reads {VERSION}")
    top = _object(obj, "document", set(_REQUIRED_TOP), _TOP - set(_REQUIRED_TOP))
    video = _video(top["video"])
    events = top["events"]
    if not isinstance(events, list):
        raise _fail("events", "expected a list")
    return {
        "video": video,
        "model": _model(top["model"]),
        "options": _options(top["options"]),
        "events": [_event(e, f"events[{i}]", video) for i, e in enumerate(events)],
        "generator": _str(top.get("generator", "unknown"), "generator"),
        "created": _str(top.get("created", "unknown"), "created"),
    }
