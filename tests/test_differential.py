"""Every sequence of calls gives stock SAM 2's answer: random sequences against the oracle.

The harness (``tests/differential.py``) runs each operation on a MattingSession and through
SAM 2's own video predictor API on the same model and frames, and compares what each returns.
The default run tries ``CI_SEQUENCES`` sequences; ``-m slow`` tries ``LONG_SEQUENCES``. A failure
prints the shrunk sequence; keep it below as a regression test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from differential import (
    REGRESSIONS,
    Op,
    OurSide,
    StockSide,
    assert_same,
    make_clip,
    op_source,
    sequence_st,
    write_frame_folder,
)
from hypothesis import HealthCheck, given, settings

from sam2_matting.predictor import MattingPredictor
from sam2_matting.tiny import TinyModelFiles

CI_SEQUENCES = 50
# SAM2_MATTING_DIFF_SEQUENCES overrides the long run's count (docs/reliability.md).
LONG_SEQUENCES = int(os.environ.get("SAM2_MATTING_DIFF_SEQUENCES", "2000"))


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
            try:
                assert_same(step, op, ours.apply(op), stock.apply(op))
            except AssertionError as err:
                listing = "\n".join(f"    {op_source(o)}," for o in ops[: step + 1])
                raise AssertionError(f"{err}\nthe sequence:\n[\n{listing}\n]") from None


def _explore(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        print_blob=True,
    )


@_explore(CI_SEQUENCES)
@given(ops=sequence_st)
def test_random_sequences_match_stock_sam2(
    predictor: MattingPredictor, clip: tuple[Path, Path], ops: list[Op]
) -> None:
    run_sequence(predictor, clip, ops)


@pytest.mark.slow
@settings(
    max_examples=LONG_SEQUENCES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(ops=sequence_st)
def test_many_random_sequences_match_stock_sam2(
    predictor: MattingPredictor, clip: tuple[Path, Path], ops: list[Op]
) -> None:
    run_sequence(predictor, clip, ops)


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_sequences(
    predictor: MattingPredictor, clip: tuple[Path, Path], name: str
) -> None:
    run_sequence(predictor, clip, REGRESSIONS[name])


def test_stock_sam2_raises_without_the_fix(
    tiny_model: TinyModelFiles, clip: tuple[Path, Path]
) -> None:
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
