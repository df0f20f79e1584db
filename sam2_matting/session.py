"""A matting session: one video, its prompts and SAM 2's tracking state, owned in one object.

Use :meth:`sam2_matting.predictor.MattingPredictor.open` to make one. Verbs follow SAM 2's:
``add_points``, ``add_box``, ``add_mask``, ``clear_points_in_frame``, ``clear_points_in_video``,
``remove_object``, ``propagate``. Every result is a :class:`FrameMattes` holding uint8 alpha
mattes at the video's resolution. Frames are decoded lazily. Every sequence of calls gives
stock SAM 2's answer (``tests/test_differential.py`` checks random sequences against it): like
SAM 2, a session keeps every frame's tracking memory, which a later prompt or propagation may
read. ``memory_window=N`` bounds it instead (older outputs are dropped as tracking goes), at the
price of exactness when a later call reads a dropped frame.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam2_matting import prompt_input
from sam2_matting import sam2_internals as internals
from sam2_matting.decode_ahead import DEFAULT_DECODE_AHEAD, DecodeAheadStage
from sam2_matting.errors import (
    InvalidInputError,
    NotFoundError,
    SessionBusyError,
)
from sam2_matting.limits import (
    DEFAULT_MAX_OBJECTS,
    Direction,
    check_direction,
    check_max_frames,
)
from sam2_matting.propagation import (
    FrameMattes,
    default_start,
    logits_to_uint8,
    make_plan,
    release_old_memory,
    run_passes,
    to_host,
)
from sam2_matting.refiner import refined_alphas
from sam2_matting.sam_frames import SamFrames
from sam2_matting.steps import CancelToken, ModelHost
from sam2_matting.video import VideoSource, open_video


class MattingSession:
    """One video being matted. Thread-safe: every call holds the session's lock."""

    def __init__(
        self,
        predictor: ModelHost,
        video: str | Path | VideoSource,
        *,
        cache_size: int = 8,
        memory_window: int | None = None,
        offload_state_to_cpu: bool = False,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        keep_float: bool = False,
        decode_ahead: int = DEFAULT_DECODE_AHEAD,
    ) -> None:
        self.predictor = predictor
        self.keep_float = keep_float
        self.model = predictor.model
        self.source: VideoSource = video if isinstance(video, VideoSource) else open_video(video)
        self.max_objects = max_objects
        self._lock = threading.RLock()
        self._closed = False
        self._propagating = False
        self._cancel = CancelToken()
        # Within one pass SAM 2 reads at most num_maskmem frames of mask memory (with a stride)
        # and max_obj_ptrs_in_encoder frames of object pointers behind the current frame.
        self.memory_window: int | None = None
        if memory_window is not None:
            needed = max(
                int(self.model.num_maskmem) * int(self.model.memory_temporal_stride_for_eval),
                int(self.model.max_obj_ptrs_in_encoder),
            )
            self.memory_window = max(needed, int(memory_window)) + 1
        frames = SamFrames(self.source, predictor.image_size, cache_size=cache_size)
        pin = torch.device(self.model.device).type == "cuda"  # where a frame crosses
        self._ahead = DecodeAheadStage(frames, decode_ahead, pin_memory=pin)
        with self._model_context():
            self.state: dict[str, Any] = self._init_state(frames, offload_state_to_cpu)

    # -- properties ----------------------------------------------------------------------
    @property
    def frame_count(self) -> int:
        return int(self.source.frame_count)

    @property
    def fps(self) -> float:
        return float(self.source.fps)

    @property
    def width(self) -> int:
        return int(self.source.width)

    @property
    def height(self) -> int:
        return int(self.source.height)

    @property
    def object_ids(self) -> tuple[int, ...]:
        return internals.object_ids(self.state)  # () once closed

    @property
    def is_propagating(self) -> bool:
        return self._propagating

    def prompted_frames(self) -> dict[int, list[int]]:
        """Object id -> sorted frames holding its points or mask."""
        return {i: sorted(internals.prompted_frames(self.state, i)) for i in self.object_ids}

    def tracked_frames(self) -> list[int]:
        """Frames every object has a result for since the prompts last changed."""
        per_obj = internals.tracked_frames(self.state)
        return sorted(set.intersection(*per_obj)) if per_obj else []

    def frame(self, index: int) -> np.ndarray:
        """The RGB frame ``index`` (H, W, 3) uint8."""
        self._check_frame(index)
        return self.source.get_frame(index)

    # -- prompts ---------------------------------------------------------------------------
    def add_points(
        self,
        frame_index: int,
        object_id: int,
        points: Sequence[Sequence[float]] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        *,
        normalized: bool = False,
        clear_old_points: bool = True,
    ) -> FrameMattes:
        """Click ``points`` (x, y) with ``labels`` (1 positive, 0 negative) on a frame.

        Coordinates are pixels, or fractions of width and height with ``normalized=True``.
        Returns the mattes of every object on that frame.
        """
        pts = self._check_points(points, normalized)
        lab = prompt_input.check_labels(labels, len(pts))
        if len(pts) == 0:
            raise InvalidInputError("add_points needs at least one point")
        return self._prompt(
            frame_index,
            object_id,
            click=True,
            call=lambda: self.model.add_new_points_or_box(
                self.state,
                frame_idx=frame_index,
                obj_id=object_id,
                points=pts,
                labels=lab,
                clear_old_points=clear_old_points,
                normalize_coords=False,
            ),
        )

    def add_box(
        self,
        frame_index: int,
        object_id: int,
        box: Sequence[float],
        *,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        normalized: bool = False,
    ) -> FrameMattes:
        """Prompt with a box (x0, y0, x1, y1), optionally plus points; replaces old prompts."""
        b = self._check_points(np.asarray(box, dtype=np.float64).reshape(-1, 2), normalized)
        if b.shape != (2, 2) or not (b[0, 0] < b[1, 0] and b[0, 1] < b[1, 1]):
            raise InvalidInputError("box must be x0,y0,x1,y1 with x0 < x1 and y0 < y1")
        pts = self._check_points(points if points is not None else [], normalized)
        lab = prompt_input.check_labels(labels if labels is not None else [], len(pts))
        return self._prompt(
            frame_index,
            object_id,
            click=True,
            call=lambda: self.model.add_new_points_or_box(
                self.state,
                frame_idx=frame_index,
                obj_id=object_id,
                points=pts if len(pts) else None,
                labels=lab if len(pts) else None,
                box=b.reshape(-1),
                clear_old_points=True,
                normalize_coords=False,
            ),
        )

    def add_mask(self, frame_index: int, object_id: int, mask: np.ndarray) -> FrameMattes:
        """Prompt with a mask of the video's size: bool, or uint8 alpha (>= 128 is inside)."""
        binary = prompt_input.check_mask(mask, self.height, self.width)
        tensor = torch.from_numpy(np.ascontiguousarray(binary))
        return self._prompt(
            frame_index,
            object_id,
            call=lambda: self.model.add_new_mask(self.state, frame_index, object_id, tensor),
        )

    def clear_points_in_frame(self, frame_index: int, object_id: int) -> FrameMattes:
        """Remove the object's prompts on one frame; returns every object's mattes there."""
        self._check_frame(frame_index)
        self._check_known(object_id)
        with self._lock, self._model_context():
            self._check_idle()
            out = self.model.clear_all_prompts_in_frame(
                self.state, frame_index, object_id, need_output=True
            )
            return self._result(*out)

    def clear_points_in_video(self) -> None:
        """Remove every prompt and object (SAM 2's ``reset_state``)."""
        with self._lock:
            self._check_idle()
            self.model.reset_state(self.state)

    def remove_object(self, object_id: int) -> list[FrameMattes]:
        """Remove an object; returns the recomputed mattes of frames that still hold prompts."""
        self._check_known(object_id)
        with self._lock, self._model_context():
            self._check_idle()
            obj_ids, updated = self.model.remove_object(
                self.state, object_id, strict=True, need_output=True
            )
            return [self._result(f, obj_ids, masks) for f, masks in updated]

    # -- propagation -----------------------------------------------------------------------
    def propagate(
        self,
        start_frame: int | None = None,
        *,
        direction: Direction = "forward",
        max_frames: int | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[FrameMattes]:
        """Track every object through the video; yields one :class:`FrameMattes` per frame.

        ``forward`` runs from ``start_frame`` to the end, ``backward`` to frame 0, ``both``
        does forward then backward (the start frame is yielded once). ``start_frame``
        defaults to the first frame an object is conditioned on (the last one for
        ``backward``): a frame of a first prompt, not a correction click on a tracked frame.
        ``max_frames`` bounds the frames processed in each direction. Stops between frames on
        ``cancel()``.
        """
        if self._closed:
            raise NotFoundError("this session is closed")
        direction = check_direction(direction)
        max_frames = check_max_frames(max_frames)
        first = default_start(self.state, direction)  # checks the objects can propagate
        start_frame = first if start_frame is None else start_frame
        self._check_frame(start_frame)
        token = cancel or self._cancel
        return self._propagate(start_frame, direction, max_frames, token)

    def cancel(self) -> None:
        """Stop a running propagation at its next frame (safe from any thread)."""
        self._cancel.cancel()

    def _propagate(
        self, start: int, direction: str, max_frames: int | None, token: CancelToken
    ) -> Iterator[FrameMattes]:
        with self._lock:
            self._check_idle()
            self._propagating = True
            plan = make_plan(start, direction, max_frames, self.frame_count)
            self._ahead.start(plan.order)
        if token is self._cancel:
            token.reset()
        try:
            steps = run_passes(
                self.model, self.state, plan, self._step_context, token, on_step=self._on_step
            )
            try:
                for frame_idx, obj_ids, masks in steps:
                    yield self._result(frame_idx, obj_ids, masks)
            except _SessionClosed:
                return
        finally:
            self._ahead.stop()
            self._propagating = False

    def _on_step(self, frame_idx: int, reverse: bool) -> bool:
        """After each model step: False once the session is closed (its state is gone)."""
        with self._lock:
            if self._closed:
                return False
            if self.memory_window is not None:
                prompted = [f for fs in self.prompted_frames().values() for f in fs]
                release_old_memory(self.state, frame_idx, reverse, self.memory_window, prompted)
            return True

    def frame_rgb(self, index: int) -> np.ndarray:
        """The decoded RGB frame ``index``: during propagation the one the decode-ahead stage
        holds for the frame being produced (no second decode), else from the source."""
        held = self._ahead.held_rgb(index)
        return held if held is not None else self.frame(index)

    # -- helpers ---------------------------------------------------------------------------
    def _init_state(self, frames: SamFrames, offload_state_to_cpu: bool) -> dict[str, Any]:
        """Run SAM 2's own ``init_state`` on our lazy frames instead of its eager loader."""
        with internals.frames_from(frames, self.height, self.width):
            return dict(
                self.model.init_state(
                    video_path=str(self.source.path),
                    offload_state_to_cpu=offload_state_to_cpu,
                )
            )

    def _prompt(
        self, frame_index: int, object_id: int, *, call: Any, click: bool = False
    ) -> FrameMattes:
        self._check_frame(frame_index)
        self._check_object_id(object_id)
        with self._lock, self._model_context():
            self._check_idle()
            if object_id not in self.object_ids and len(self.object_ids) >= self.max_objects:
                raise InvalidInputError(f"at most {self.max_objects} objects per session")
            if click and internals.click_lacks_memory(self.state, object_id, frame_index):
                raise InvalidInputError(
                    f"object {object_id} was tracked from prompts that are now cleared: "
                    "propagate from its remaining prompts first, or remove the object and "
                    "prompt it again"
                )
            return self._result(*call())

    def _result(self, frame_idx: int, obj_ids: Sequence[int], masks: torch.Tensor) -> FrameMattes:
        """A frame's mattes from SAM 2's video-size logits (on the model's device): sigmoid and
        quantisation run there, only uint8 crosses to the host. With the predictor's refiner,
        the full-resolution frame (``self.frame_rgb``, decoded once) refines them first."""
        refiner = getattr(self.predictor, "refiner", None)
        if refiner is not None:
            rgb = self.frame_rgb(frame_idx)
            alphas, soft = refined_alphas(refiner, rgb, masks, self.keep_float)
        else:
            alphas = to_host(logits_to_uint8(masks))
            soft = to_host(torch.sigmoid(masks.float()[:, 0])) if self.keep_float else None
        return FrameMattes(int(frame_idx), tuple(int(i) for i in obj_ids), alphas, soft)

    @contextlib.contextmanager
    def _model_context(self, *, locked: bool = False) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if locked:
                stack.enter_context(self._lock)
            stack.enter_context(self.predictor.model_lock)
            stack.enter_context(torch.inference_mode())
            stack.enter_context(self.predictor.autocast())
            yield

    @contextlib.contextmanager
    def _step_context(self) -> Iterator[None]:
        """One propagation step: the locks, and a stop if the session was closed meanwhile."""
        with self._model_context(locked=True):
            if self._closed:
                raise _SessionClosed
            yield

    def _check_idle(self) -> None:
        if self._closed:
            # A call that was waiting for the lock while another thread closed the session.
            raise NotFoundError("this session is closed")
        if self._propagating:
            raise SessionBusyError("the session is propagating; cancel it or wait for the end")

    def _check_frame(self, index: int) -> None:
        prompt_input.check_frame(index, self.frame_count)

    def _check_object_id(self, object_id: int) -> None:
        prompt_input.check_object_id(object_id)

    def _check_known(self, object_id: int) -> None:
        self._check_object_id(object_id)
        if object_id not in self.object_ids:
            raise NotFoundError(f"no object {object_id} in this session")

    def _check_points(self, points: Any, normalized: bool) -> np.ndarray:
        return prompt_input.check_points(points, normalized, self.width, self.height)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop any propagation and release the frames and tracking state."""
        self.cancel()
        self._ahead.stop()
        with self._lock:
            self._closed = True
            self.state.clear()
            self.source.close()

    def __enter__(self) -> MattingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SessionClosed(Exception):
    """Raised inside a propagation step when the session was closed before it."""
