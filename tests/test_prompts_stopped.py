"""A propagation stopped before its first frame, recorded and replayed (tiny random model).

SAM 2 consolidates a session's new prompts into its tracking memory in
``propagate_in_video_preflight``, which runs with the first frame of a propagation. A
propagation stopped before that frame leaves the state as it was; the replay must do the same
(and not, say, run the preflight), or later prompts track differently. The mattes of the tiny
random model are noise: only their equality is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sam2_matting import prompts_file as pf
from sam2_matting.steps import CancelToken


@pytest.fixture(scope="module")
def predictor(tiny_model: Any) -> Any:
    from sam2_matting.predictor import build_matting_predictor

    torch.manual_seed(0)
    return build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu")


def _first_prompt(s: Any) -> None:
    s.add_points(0, 1, [[0.3, 0.45]], [1], normalized=True)


def _stopped(s: Any) -> None:
    token = CancelToken()
    token.cancel()  # as the page's Cancel before the first frame arrived
    assert list(s.propagate(direction="forward", cancel=token)) == []


def _then(s: Any) -> list[bytes]:
    """A correction that reads the tracking memory: the first frame's prompt cleared, a
    click on another frame, a propagation over both."""
    s.clear_points_in_frame(0, 1)
    s.add_points(2, 1, [[0.6, 0.3]], [1], normalized=True)
    return [r.alphas.tobytes() for r in s.propagate(direction="forward", max_frames=4)]


def test_a_propagation_stopped_before_its_first_frame_replays_as_recorded(
    predictor: Any, tiny_model: Any, small_clip: Path, tmp_path: Path
) -> None:
    model = pf.model_identity(tiny_model.config, tiny_model.checkpoint)
    with predictor.open(small_clip) as plain:
        recorded = pf.record(plain, model=model)
        _first_prompt(recorded)
        _stopped(recorded)
        doc = pf.load(pf.dump(recorded.document(), tmp_path / "stopped.prompts.json"))
        original = _then(recorded)
    assert [e["op"] for e in doc.events] == ["add_points", "propagate"]
    assert doc.events[1]["frames"] == 0

    with predictor.open(small_clip) as plain:
        again = pf.record(plain, model=model)
        last = pf.replay(doc, again)
        assert last is not None and last.as_recorded(again) == []
        # the replay started and stopped it as the recorded session did: the same file
        assert again.document().events == doc.events
        assert _then(again) == original

    # The check can fail: had SAM 2's preflight run (the replay computing a first frame and
    # dropping it, say), the correction would track from other memory.
    with predictor.open(small_clip) as session:
        _first_prompt(session)
        with session._model_context(locked=True):
            session.model.propagate_in_video_preflight(session.state)
        preflighted = _then(session)
    assert len(preflighted) == len(original) and preflighted != original
