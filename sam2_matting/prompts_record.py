"""Recording a session's prompts: a wrapper that forwards each verb and logs it in order.

    from sam2_matting.prompts_record import RecordingSession
    session = RecordingSession(predictor.open("clip.mp4"), model=model_identity("large"))
    session.add_points(0, 1, [[640, 360]], [1])     # the session's verbs, unchanged
    doc = session.document()                         # a PromptsDoc, for prompts_file.dump

The public API is :mod:`sam2_matting.prompts_file`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from sam2_matting.codec import encode_matte
from sam2_matting.prompts_doc import PromptsDoc, session_options, video_identity


class RecordingSession:
    """A :class:`~sam2_matting.session.MattingSession` that logs each prompt it forwards.

    Only calls that succeed are logged, in the order they ran; a propagation is logged with
    the number of frames it yielded (a stopped one replays as far as it went). Any other
    attribute is the session's own.
    """

    def __init__(
        self,
        session: Any,
        *,
        model: dict[str, Any],
        options: dict[str, Any] | None = None,
        video: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.model = model
        self.options = session_options(session) if options is None else options
        self._video = video
        self._events: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def __enter__(self) -> RecordingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def _log(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._log_lock:
            self._events.append(event)
        return event

    def _unit(self, points: Any, normalized: bool) -> list[list[float]]:
        """``points`` as SAM 2 gets them: fractions of the frame in float64, clipped."""
        arr = np.asarray(points if points is not None else [], dtype=np.float64)
        if arr.size == 0:
            return []
        arr = arr.reshape(-1, 2)
        if not normalized:
            arr = arr / np.array([self.session.width, self.session.height], dtype=np.float64)
        return [[float(x), float(y)] for x, y in np.clip(arr, 0.0, 1.0)]

    @staticmethod
    def _labels(labels: Any) -> list[int]:
        raw = labels if labels is not None else []
        return [int(v) for v in np.asarray(raw, dtype=np.float64).reshape(-1)]

    def add_points(
        self,
        frame_index: int,
        object_id: int,
        points: Any,
        labels: Any,
        *,
        normalized: bool = False,
        clear_old_points: bool = True,
    ) -> Any:
        out = self.session.add_points(
            frame_index,
            object_id,
            points,
            labels,
            normalized=normalized,
            clear_old_points=clear_old_points,
        )
        self._log(
            {
                "op": "add_points",
                "frame": int(frame_index),
                "object": int(object_id),
                "points": self._unit(points, normalized),
                "labels": self._labels(labels),
                "clear_old_points": bool(clear_old_points),
            }
        )
        return out

    def add_box(
        self,
        frame_index: int,
        object_id: int,
        box: Sequence[float],
        *,
        points: Any = None,
        labels: Any = None,
        normalized: bool = False,
    ) -> Any:
        out = self.session.add_box(
            frame_index, object_id, box, points=points, labels=labels, normalized=normalized
        )
        corners = self._unit(box, normalized)
        event = {"op": "add_box", "frame": int(frame_index), "object": int(object_id)}
        event["box"] = corners[0] + corners[1]
        pts = self._unit(points, normalized)
        if pts:
            event.update(points=pts, labels=self._labels(labels))
        self._log(event)
        return out

    def add_mask(self, frame_index: int, object_id: int, mask: np.ndarray) -> Any:
        out = self.session.add_mask(frame_index, object_id, mask)
        m = np.asarray(mask)
        binary = m if m.dtype == np.bool_ else m >= 128
        encoded = encode_matte(binary.astype(np.uint8) * np.uint8(255))
        self._log(
            {"op": "add_mask", "frame": int(frame_index), "object": int(object_id), "mask": encoded}
        )
        return out

    def clear_points_in_frame(self, frame_index: int, object_id: int) -> Any:
        out = self.session.clear_points_in_frame(frame_index, object_id)
        self._log({"op": "clear_frame", "frame": int(frame_index), "object": int(object_id)})
        return out

    def clear_points_in_video(self) -> None:
        self.session.clear_points_in_video()
        self._log({"op": "clear_video"})

    def remove_object(self, object_id: int) -> Any:
        out = self.session.remove_object(object_id)
        self._log({"op": "remove_object", "object": int(object_id)})
        return out

    def propagate(
        self,
        start_frame: int | None = None,
        *,
        direction: str = "forward",
        max_frames: int | None = None,
        cancel: Any = None,
    ) -> Iterator[Any]:
        frames = self.session.propagate(
            start_frame, direction=direction, max_frames=max_frames, cancel=cancel
        )
        event = {
            "op": "propagate",
            "start_frame": None if start_frame is None else int(start_frame),
            "direction": str(direction),
            "max_frames": None if max_frames is None else int(max_frames),
            "frames": 0,
        }
        return self._counted(frames, event)

    def _counted(self, frames: Iterator[Any], event: dict[str, Any]) -> Iterator[Any]:
        self._log(event)  # on the first step: a propagation never iterated did nothing
        try:
            for result in frames:
                event["frames"] += 1
                yield result
        finally:  # a reader that stops (closes this) stops the session's propagation now
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def document(self) -> PromptsDoc:
        """The prompts so far, as a :class:`PromptsDoc` ready for :func:`dump`."""
        if self._video is None:
            s = self.session
            self._video = video_identity(s.source.path, s.width, s.height, s.frame_count)
        with self._log_lock:
            events = copy.deepcopy(self._events)
        return PromptsDoc(
            video=dict(self._video),
            model=copy.deepcopy(self.model),
            options=dict(self.options),
            events=events,
        )


def record(
    session: Any, *, model: dict[str, Any], options: dict[str, Any] | None = None
) -> RecordingSession:
    """Wrap ``session`` so that its prompts can be saved (see :class:`RecordingSession`)."""
    return RecordingSession(session, model=model, options=options)
