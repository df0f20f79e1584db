"""The propagation pipeline of a session: decode ahead, step SAM 2, post-process on its device.

    for frame_idx, obj_ids, alphas in run_passes(model, state, plan, step_context, token,
                                                 on_step=..., ahead=...):
        ...

Stages, per frame: a :class:`~sam2_matting.decode_ahead.DecodeAhead` thread decodes and
resizes the next frames in the direction of travel (``plan.order``) while SAM 2 computes the
current one; SAM 2's ``propagate_in_video`` returns logits already resized to the video on
the model's device; :func:`logits_to_uint8` applies the sigmoid and quantises there, and only
the uint8 matte crosses to the host (:func:`to_host`: pinned memory and a non-blocking copy on
CUDA). The session (``session.py``) owns the locks, the state and the results; this module
holds the loop, so it imports nothing of the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sam2_matting import sam2_internals as internals
from sam2_matting.errors import InvalidInputError, NotFoundError
from sam2_matting.steps import CancelToken, iter_with_context, logits_to_alpha

__all__ = [
    "FrameMattes",
    "Pass",
    "Plan",
    "default_start",
    "logits_to_uint8",
    "make_plan",
    "release_old_memory",
    "run_passes",
    "to_host",
]

logits_to_uint8 = logits_to_alpha  # SAM 2 logits -> uint8 alpha, on the logits' device


@dataclass(frozen=True)
class FrameMattes:
    """The mattes of every object on one frame: ``alphas[i]`` belongs to ``object_ids[i]``."""

    frame_index: int
    object_ids: tuple[int, ...]
    alphas: np.ndarray  # uint8, (objects, H, W)
    # float32 sigmoid of the logits, (objects, H, W): only for sessions opened with
    # keep_float=True (evaluation protocols that score unquantised predictions)
    soft: np.ndarray | None = None

    def alpha(self, object_id: int) -> np.ndarray:
        try:
            return self.alphas[self.object_ids.index(object_id)]
        except ValueError:
            raise NotFoundError(f"object {object_id} is not on frame {self.frame_index}") from None


def default_start(state: dict[str, Any], direction: str) -> int:
    """Check the objects can be propagated; the frame SAM 2 would start from.

    As SAM 2: a frame the objects are conditioned on, the first (the last for ``backward``);
    a correction click on a tracked frame is not one (starting there would track over it).
    """
    prompted = sorted(
        {f for i in internals.object_ids(state) for f in internals.prompted_frames(state, i)}
    )
    if not prompted:
        raise InvalidInputError("add a point, box or mask before propagating")
    bare = internals.objects_without_prompts(state)
    if bare:
        names = ", ".join(map(str, bare))
        raise InvalidInputError(
            f"object {names} has no point, box or mask left: prompt it or remove it "
            "before propagating"
        )
    cond = sorted(internals.conditioning_frames(state)) or prompted
    return cond[-1] if direction == "backward" else cond[0]


@dataclass(frozen=True)
class Pass:
    """One call of SAM 2's ``propagate_in_video``."""

    reverse: bool
    limit: int | None  # SAM 2's max_frame_num_to_track


@dataclass(frozen=True)
class Plan:
    """The passes of one ``propagate`` and every frame index SAM 2 will visit, in order."""

    start: int
    direction: str
    passes: tuple[Pass, ...]
    order: tuple[int, ...]


def make_plan(start: int, direction: str, max_frames: int | None, frame_count: int) -> Plan:
    """SAM 2's passes and processing order for ``direction`` from ``start``.

    ``both`` is forward then backward (a reverse pass from frame 0 is skipped); ``backward``
    from frame 0 still yields the start frame (a forward pass of one frame, as SAM 2 would).
    """
    # SAM 2 counts max_frame_num_to_track from the start frame, inclusive.
    limit = None if max_frames is None else max_frames - 1
    wanted = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
    passes: list[Pass] = []
    order: list[int] = []
    for reverse in wanted:
        pass_limit = limit
        if reverse and start == 0:
            if direction == "both":
                continue  # the forward pass covered frame 0
            reverse, pass_limit = False, 0
        passes.append(Pass(reverse, pass_limit))
        track = frame_count if pass_limit is None else pass_limit
        if reverse:
            order.extend(range(start, max(start - track, 0) - 1, -1))
        else:
            order.extend(range(start, min(start + track, frame_count - 1) + 1))
    return Plan(start, direction, tuple(passes), tuple(order))


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """A device tensor as a NumPy array: pinned memory and a non-blocking copy on CUDA."""
    if tensor.device.type == "cpu":
        return tensor.numpy()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=tensor.is_cuda)
    host.copy_(tensor, non_blocking=True)
    if tensor.is_cuda:
        torch.cuda.current_stream(tensor.device).synchronize()  # the copy has landed
    return host.numpy()


def run_passes(
    model: Any,
    state: dict[str, Any],
    plan: Plan,
    step_context: Callable[[], Any],
    token: CancelToken,
    *,
    on_step: Callable[[int, bool], bool],
) -> Iterator[tuple[int, Any, torch.Tensor]]:
    """SAM 2's (frame index, object ids, video-size logits) of every pass of ``plan``.

    ``step_context()`` is entered around each model step; ``on_step(frame, reverse)`` runs
    after each and returns False to stop (the session was closed). The start frame of
    ``both`` is yielded once. Stops between frames on ``token``.
    """
    for p in plan.passes:
        gen = model.propagate_in_video(
            state, start_frame_idx=plan.start, max_frame_num_to_track=p.limit, reverse=p.reverse
        )
        for frame_idx, obj_ids, masks in iter_with_context(gen, step_context, token):
            if not on_step(frame_idx, p.reverse):
                return
            if p.reverse and plan.direction == "both" and frame_idx == plan.start:
                continue  # already yielded by the forward pass
            yield frame_idx, obj_ids, masks
        if token.cancelled:
            return


def release_old_memory(
    state: dict[str, Any], frame_idx: int, reverse: bool, window: int, prompted: list[int]
) -> None:
    """Drop tracked outputs this pass will not read again (``memory_window`` mode only).

    Frames near a prompted frame are kept: a later pass in the other direction reads them.
    """
    for store in internals.non_cond_outputs(state):
        stale = [
            t
            for t in store
            if (t > frame_idx + window if reverse else t < frame_idx - window)
            and all(abs(t - p) > window for p in prompted)
        ]
        for t in stale:
            del store[t]
