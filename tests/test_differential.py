"""Every sequence of calls gives stock SAM 2's answer: random sequences against the oracle.

The harness (``tests/differential.py``) runs each operation on a MattingSession and through
SAM 2's own video predictor API on the same model and frames, and compares what each returns.
The default run tries ``CI_SEQUENCES`` sequences; ``-m slow`` tries ``LONG_SEQUENCES``. A failure
prints the shrunk sequence; keep it below as a regression test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from differential import (
    AddBox,
    AddMask,
    AddPoints,
    ClearFrame,
    ClearVideo,
    Op,
    OurSide,
    Propagate,
    RemoveObject,
    StockSide,
    assert_same,
    make_clip,
    sequence_st,
    write_frame_folder,
)
from hypothesis import HealthCheck, given, settings

from sam2_matting import build_matting_predictor
from sam2_matting.predictor import MattingPredictor

CI_SEQUENCES = 50
# SAM2_MATTING_DIFF_SEQUENCES overrides the long run's count (docs/reliability.md).
LONG_SEQUENCES = int(os.environ.get("SAM2_MATTING_DIFF_SEQUENCES", "2000"))


@pytest.fixture(scope="module")
def predictor(tiny_model) -> MattingPredictor:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu")


@pytest.fixture(scope="module")
def clip(
    tmp_path_factory: pytest.TempPathFactory, predictor: MattingPredictor
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("differential")
    video = make_clip(root / "clip.mp4")
    with predictor.open(video) as session:
        folder = write_frame_folder(session, root / "frames")
    return video, folder


def run_sequence(predictor: MattingPredictor, clip: tuple[Path, Path], ops: list[Op]) -> None:
    video, folder = clip
    stock = StockSide(predictor.model, folder)
    with predictor.open(video) as session:
        ours = OurSide(session)
        for step, op in enumerate(ops):
            assert_same(step, op, ours.apply(op), stock.apply(op))


def _explore(n: int):  # type: ignore[no-untyped-def]
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        print_blob=True,
    )


@_explore(CI_SEQUENCES)
@given(ops=sequence_st)
def test_random_sequences_match_stock_sam2(predictor, clip, ops) -> None:  # type: ignore[no-untyped-def]
    run_sequence(predictor, clip, ops)


@pytest.mark.slow
@settings(
    max_examples=LONG_SEQUENCES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(ops=sequence_st)
def test_many_random_sequences_match_stock_sam2(predictor, clip, ops) -> None:  # type: ignore[no-untyped-def]
    run_sequence(predictor, clip, ops)


# -- regression sequences (each was a failure once) ---------------------------------------------

REGRESSIONS: dict[str, list[Op]] = {
    # Memory of frames tracked before any prompted frame has no object pointers: SAM 2 left it
    # bfloat16 and a float32 model failed in memory_attention.
    "prompt on 3, forward from 0": [
        AddPoints(3, 1, ((30.0, 20.0),), (1,)),
        Propagate(0, "forward", None, None),
    ],
    "prompt on 0, backward from 8": [
        AddPoints(0, 1, ((30.0, 20.0),), (1,)),
        Propagate(8, "backward", None, None),
    ],
    "second object on 3, forward from 0": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        AddPoints(3, 2, ((55.0, 30.0),), (1,)),
        Propagate(0, "forward", None, None),
    ],
    "both from a frame between prompts": [
        AddPoints(2, 1, ((20.0, 20.0),), (1,)),
        AddMask(7, 2, (40, 20, 60, 40)),
        Propagate(5, "both", None, None),
    ],
    # An object whose only prompt was cleared: SAM 2 raises RuntimeError in its preflight.
    "object left without prompts": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        AddBox(4, 2, (40.0, 10.0, 70.0, 40.0)),
        ClearFrame(4, 2),
        Propagate(None, "forward", None, None),
    ],
    # A click on a tracked frame is decoded with the object's memory; SAM 2 asserts it holds a
    # merged prompt, and clearing the only one left the service answering INTERNAL.
    "click on a tracked frame after its only prompt was cleared": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        Propagate(None, "forward", None, None),
        ClearFrame(0, 1),
        AddPoints(3, 1, ((20.0, 20.0),), (1,)),
    ],
    "correction, then its base prompt cleared, then another click": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        Propagate(None, "forward", None, None),
        AddPoints(3, 1, ((20.0, 20.0),), (1,)),
        ClearFrame(0, 1),
        AddPoints(5, 1, ((20.0, 20.0),), (1,)),
        Propagate(3, "both", None, None),
        AddPoints(5, 1, ((22.0, 20.0),), (1,)),
    ],
    "edit after tracking, cancel, propagate again": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        Propagate(None, "forward", None, 4),
        AddPoints(6, 1, ((40.0, 20.0),), (1,)),
        AddPoints(6, 3, ((60.0, 30.0),), (1,)),
        Propagate(9, "both", 6, None),
        RemoveObject(1),
        Propagate(None, "forward", None, None),
        ClearVideo(),
        Propagate(None, "both", None, None),
    ],
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_sequences(predictor, clip, name: str) -> None:  # type: ignore[no-untyped-def]
    run_sequence(predictor, clip, REGRESSIONS[name])


def test_stock_sam2_raises_without_the_fix(tiny_model, clip) -> None:  # type: ignore[no-untyped-def]
    """The first regression is SAM 2's own behaviour on float32, not something we introduced."""
    from sam2.build_sam import build_sam2_video_predictor

    stock = build_sam2_video_predictor(
        f"/{tiny_model.config}", str(tiny_model.checkpoint), device="cpu"
    )
    with torch.inference_mode():
        state = stock.init_state(str(clip[1]))
        stock.add_new_points_or_box(state, 3, 1, points=[[30.0, 20.0]], labels=[1])
        with pytest.raises(RuntimeError, match="dtype"):
            for _ in stock.propagate_in_video(state, start_frame_idx=0):
                pass
