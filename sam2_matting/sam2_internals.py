"""Everything this project reads or patches inside SAM 2 beyond its public API, in one room.

    from sam2_matting import sam2_internals as internals

    internals.read_memory_in_compute_dtype(model)     # once per loaded model
    with internals.frames_from(frames, height, width):
        state = model.init_state(video_path="clip.mp4")   # our lazy frames, not decord
    internals.object_ids(state), internals.prompted_frames(state, obj_id)

SAM 2's ``SAM2VideoPredictor`` keeps a session in a plain dict (``inference_state``) and reads
frames, draws progress bars and fills holes through module-level functions. This project uses
some of those private parts; they are named here and nowhere else, against the pinned
``sam2==1.1.0`` (``scripts/setup.sh``). ``tests/test_sam2_internals.py`` checks every
assumption below against the installed package and names the one that broke if the pin moves.

Memory dtype. SAM 2 stores each frame's memory features (``maskmem_features``) in bfloat16 to
halve the session's memory, and reads them back with ``.to(device)`` only. When object pointers
are concatenated to them the result is promoted to the compute dtype; when there are none (a
frame tracked before every prompted frame of its direction, such as a prompt on frame 3 and
propagation forward from frame 0) the memory stays bfloat16 and a float32 model fails in
``memory_attention`` (``mat1 and mat2 must have the same dtype``). We keep SAM 2's bfloat16
storage and read the memory in the compute dtype (:func:`read_memory_in_compute_dtype`): on
every frame SAM 2 could already run, that gives exactly its numbers (the promotion it did
anyway), and it defines the frames it could not.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "SAM2_PINNED",
    "STATE_KEYS",
    "click_lacks_memory",
    "conditioning_frames",
    "frames_from",
    "install_cpu_connected_components",
    "non_cond_outputs",
    "object_ids",
    "object_index",
    "objects_without_prompts",
    "prompted_frames",
    "quiet_progress_bars",
    "read_memory_in_compute_dtype",
    "tracked_frames",
]

log = logging.getLogger(__name__)

SAM2_PINNED = "1.1.0"

# The inference_state keys read here (SAM2VideoPredictor.init_state creates them).
STATE_KEYS = (
    "obj_ids",
    "obj_id_to_idx",
    "point_inputs_per_obj",
    "mask_inputs_per_obj",
    "output_dict_per_obj",
    "temp_output_dict_per_obj",
    "frames_tracked_per_obj",
)

_LOADER_LOCK = threading.Lock()


# -- module-level hooks -------------------------------------------------------------------------


@contextlib.contextmanager
def frames_from(frames: Any, height: int, width: int) -> Iterator[None]:
    """Make ``init_state`` take ``frames`` (a sequence of (3, S, S) tensors) for any path.

    ``SAM2VideoPredictor.init_state`` calls the module-level ``load_video_frames`` (decord for
    an mp4) and stores what it returns; inside this context it returns ``frames`` instead.
    Process-wide, so one context at a time.
    """
    import sam2.sam2_video_predictor as svp

    def load(*args: Any, **kwargs: Any) -> tuple[Any, int, int]:
        return frames, height, width

    with _LOADER_LOCK:
        original = svp.load_video_frames
        svp.load_video_frames = load
        try:
            yield
        finally:
            svp.load_video_frames = original


def quiet_progress_bars() -> None:
    """SAM 2's ``propagate_in_video`` draws a tqdm bar on stderr; a service must not."""
    import sam2.sam2_video_predictor as svp

    if getattr(svp.tqdm, "__module__", "") != __name__:
        svp.tqdm = _passthrough


def _passthrough(iterable: Any, *args: Any, **kwargs: Any) -> Any:
    return iterable


def read_memory_in_compute_dtype(model: Any) -> None:
    """Cast the memory SAM 2 stored in bfloat16 to the dtype of the frame being tracked.

    A forward pre-hook on ``model.memory_attention`` (idempotent): the storage stays bfloat16,
    the read follows the model's compute dtype (float32, or the autocast dtype inside it).
    """
    attention = model.memory_attention
    if getattr(attention, "_sam2_matting_memory_hook", False):
        return
    attention.register_forward_pre_hook(_memory_in_compute_dtype, with_kwargs=True)
    attention._sam2_matting_memory_hook = True


def _memory_in_compute_dtype(
    module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    curr = kwargs.get("curr", args[0] if args else None)
    reference = curr[0] if isinstance(curr, list | tuple) else curr
    if not isinstance(reference, torch.Tensor):
        return args, kwargs
    dtype = reference.dtype
    for key in ("memory", "memory_pos"):
        value = kwargs.get(key)
        if isinstance(value, torch.Tensor) and value.dtype != dtype:
            kwargs[key] = value.to(dtype)
    if len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].dtype != dtype:
        args = (args[0], args[1].to(dtype), *args[2:])
    return args, kwargs


def _connected_components_cpu(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of (N, 1, H, W) binary masks: (labels, component area), int32."""
    import numpy as np
    from scipy import ndimage

    arr = mask.detach().to("cpu", torch.uint8).numpy()
    labels = np.zeros(arr.shape, dtype=np.int32)
    areas = np.zeros(arr.shape, dtype=np.int32)
    structure = np.ones((3, 3), dtype=bool)
    for i in range(arr.shape[0]):
        lab, n = ndimage.label(arr[i, 0], structure=structure)
        if n:
            sizes = np.bincount(lab.ravel()).astype(np.int32)
            sizes[0] = 0
            labels[i, 0] = lab
            areas[i, 0] = sizes[lab]
    return (
        torch.from_numpy(labels).to(mask.device),
        torch.from_numpy(areas).to(mask.device),
    )


def install_cpu_connected_components() -> bool:
    """Give SAM 2's hole filling a CPU path when its CUDA extension ``sam2._C`` is absent.

    Without it SAM 2 warns on every frame and skips hole filling. Returns True if installed.
    """
    try:
        from sam2 import _C  # noqa: F401

        return False
    except ImportError:
        pass
    import sam2.utils.misc as misc

    if getattr(misc.get_connected_components, "__module__", "") != __name__:
        misc.get_connected_components = _connected_components_cpu
        log.debug("installed the CPU connected-components path for SAM 2 hole filling")
    return True


# -- inference_state readers --------------------------------------------------------------------


def object_ids(state: dict[str, Any]) -> tuple[int, ...]:
    """The session's object ids in SAM 2's order (``()`` for a cleared state)."""
    return tuple(int(i) for i in state.get("obj_ids", ()))


def object_index(state: dict[str, Any], obj_id: int) -> int:
    """SAM 2's slot for ``obj_id`` (KeyError if it has none)."""
    return int(state["obj_id_to_idx"][obj_id])


def prompted_frames(state: dict[str, Any], obj_id: int) -> set[int]:
    """Frames holding the object's points or mask."""
    idx = object_index(state, obj_id)
    return set(state["point_inputs_per_obj"][idx]) | set(state["mask_inputs_per_obj"][idx])


def conditioning_frames(state: dict[str, Any]) -> set[int]:
    """Frames holding a conditioning output of any object, merged or pending.

    A first prompt on a frame conditions the object there; a correction click on a frame it was
    already tracked on does not (SAM 2 keeps it as a tracked output, unless the model sets
    ``add_all_frames_to_correct_as_cond``). ``propagate_in_video`` starts at the earliest of
    these by default.
    """
    frames: set[int] = set()
    for key in ("output_dict_per_obj", "temp_output_dict_per_obj"):
        for out in state.get(key, {}).values():
            frames |= set(out["cond_frame_outputs"])
    return frames


def objects_without_prompts(state: dict[str, Any]) -> list[int]:
    """Objects SAM 2 would refuse to propagate: no conditioning output, none pending either.

    ``propagate_in_video_preflight`` raises for an object whose ``cond_frame_outputs`` stay
    empty after the pending (temporary) outputs are merged in.
    """
    out = []
    for obj_id in object_ids(state):
        idx = object_index(state, obj_id)
        cond = state["output_dict_per_obj"][idx]["cond_frame_outputs"]
        pending = state["temp_output_dict_per_obj"][idx]["cond_frame_outputs"]
        if not cond and not pending:
            out.append(obj_id)
    return out


def click_lacks_memory(state: dict[str, Any], obj_id: int, frame: int) -> bool:
    """Whether SAM 2 would fail an assertion on a click (points or box) on ``frame``.

    A click on a frame the object was tracked on is decoded with the object's memory, which
    SAM 2 asserts holds at least one merged conditioning frame
    (``_prepare_memory_conditioned_features``). Clearing the object's prompts can leave it
    tracked but with none merged (a newer prompt waits in the temporary outputs until the next
    propagation).
    """
    idx = state["obj_id_to_idx"].get(obj_id)
    if idx is None or frame not in state["frames_tracked_per_obj"][idx]:
        return False
    return not state["output_dict_per_obj"][idx]["cond_frame_outputs"]


def tracked_frames(state: dict[str, Any]) -> list[set[int]]:
    """Per object, the frames SAM 2 has a tracked result for."""
    return [set(v) for v in state.get("frames_tracked_per_obj", {}).values()]


def non_cond_outputs(state: dict[str, Any]) -> list[dict[int, Any]]:
    """Per object, SAM 2's store of tracked (non-conditioning) frame outputs, by frame."""
    return [out["non_cond_frame_outputs"] for out in state["output_dict_per_obj"].values()]
