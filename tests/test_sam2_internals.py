"""The SAM 2 internals this project relies on are still there in the installed SAM 2.

``sam2_matting/sam2_internals.py`` is the one module that reads or patches SAM 2 beyond its
public API. Each test names the assumption it checks, so a moved pin fails with a message that
says what to revisit there.
"""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

import pytest
import torch

from sam2_matting import sam2_internals as internals
from sam2_matting.model import build_sam2_model
from sam2_matting.tiny import TinyModelFiles


def _relied_on(what: str) -> str:
    return f"{what}: sam2_matting/sam2_internals.py relies on it (pinned sam2=={internals.SAM2_PINNED})"


@pytest.fixture(scope="module")
def model(tiny_model: TinyModelFiles) -> Any:
    torch.manual_seed(0)
    return build_sam2_model(tiny_model.config, tiny_model.checkpoint, device="cpu")


def test_the_installed_sam2_is_the_pinned_one() -> None:
    assert metadata.version("sam2") == internals.SAM2_PINNED, _relied_on("the sam2 version")


def test_module_level_hooks_exist() -> None:
    import sam2.sam2_video_predictor as svp
    import sam2.utils.misc as misc

    assert callable(getattr(svp, "load_video_frames", None)), _relied_on(
        "sam2.sam2_video_predictor.load_video_frames, looked up at call time by init_state"
    )
    assert hasattr(svp, "tqdm"), _relied_on("sam2.sam2_video_predictor.tqdm")
    assert "get_connected_components(" in inspect.getsource(misc.fill_holes_in_mask_scores), (
        _relied_on("fill_holes_in_mask_scores calling the module's get_connected_components")
    )


def test_init_state_takes_our_frames_and_has_the_keys_we_read(model: Any) -> None:
    frames = torch.zeros(3, 3, model.image_size, model.image_size)
    with internals.frames_from(frames, 48, 80), torch.inference_mode():
        state = model.init_state(video_path="unused.mp4")
    assert state["images"] is frames, _relied_on("init_state storing load_video_frames' result")
    assert (state["num_frames"], state["video_height"], state["video_width"]) == (3, 48, 80)
    missing = [k for k in internals.STATE_KEYS if k not in state]
    assert not missing, _relied_on(f"inference_state keys {missing}")
    with torch.inference_mode():
        model.add_new_points_or_box(state, 1, 7, points=[[10.0, 10.0]], labels=[1])
    assert internals.object_ids(state) == (7,)
    assert internals.prompted_frames(state, 7) == {1}
    assert internals.objects_without_prompts(state) == []
    assert internals.tracked_frames(state) == [set()], _relied_on("frames_tracked_per_obj")
    with torch.inference_mode():
        model.clear_all_prompts_in_frame(state, 1, 7)
    assert internals.objects_without_prompts(state) == [7], _relied_on(
        "cond_frame_outputs / temp_output_dict_per_obj as the preflight checks them"
    )


def test_memory_is_stored_in_bfloat16_and_read_through_memory_attention(model: Any) -> None:
    from sam2.modeling.sam2_base import SAM2Base
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    stored = inspect.getsource(SAM2VideoPredictor._run_memory_encoder)
    assert "torch.bfloat16" in stored, _relied_on("maskmem_features stored in bfloat16")
    reader = inspect.getsource(SAM2Base._prepare_memory_conditioned_features)
    assert "self.memory_attention(" in reader and "memory=memory" in reader, _relied_on(
        "memory passed to memory_attention by keyword"
    )
    params = inspect.signature(type(model.memory_attention).forward).parameters
    assert {"curr", "memory", "memory_pos"} <= set(params), _relied_on("memory_attention.forward")
    assert getattr(model.memory_attention, "_sam2_matting_memory_hook", False)


def test_the_memory_hook_casts_to_the_dtype_of_the_frame(model: Any) -> None:
    seen: dict[str, torch.dtype] = {}

    def spy(module: Any, args: Any, kwargs: Any) -> None:
        seen.update({k: v.dtype for k, v in kwargs.items() if isinstance(v, torch.Tensor)})

    handle = model.memory_attention.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        d = model.memory_attention.d_model
        kv = model.memory_attention.layers[0].cross_attn_image.kv_in_dim
        curr = [torch.zeros(16, 1, d)]
        memory = torch.zeros(16, 1, kv, dtype=torch.bfloat16)
        with torch.inference_mode():
            model.memory_attention(
                curr=curr, curr_pos=[torch.zeros(16, 1, d)], memory=memory,
                memory_pos=torch.zeros(16, 1, kv, dtype=torch.bfloat16),
            )  # fmt: skip
    finally:
        handle.remove()
    assert seen == {"memory": torch.float32, "memory_pos": torch.float32}
