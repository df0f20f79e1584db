"""Matting sessions on the tiny random model and the shared videos: prompts, propagation, cancel."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam2_matting import build_matting_predictor
from sam2_matting.errors import (
    CheckpointError,
    FrameIndexError,
    InvalidInputError,
    NotFoundError,
    SessionBusyError,
    VideoError,
)
from sam2_matting.predictor import CancelToken, MattingPredictor
from sam2_matting.session import MattingSession


@pytest.fixture
def session(predictor: MattingPredictor, bedroom_video: Path) -> Iterator[MattingSession]:
    with predictor.open(bedroom_video) as s:
        yield s


def _click_two_objects(session: MattingSession) -> None:
    session.add_points(0, 1, [[300, 200]], [1])
    session.add_points(0, 2, [[0.8, 0.7], [0.1, 0.1]], [1, 0], normalized=True)


def test_session_reports_the_video(session) -> None:
    assert (session.frame_count, session.width, session.height) == (200, 960, 540)
    assert session.fps == pytest.approx(30, abs=1)
    assert session.frame(199).shape == (540, 960, 3)
    assert session.object_ids == ()


def test_click_returns_soft_mattes_of_every_object(session) -> None:
    first = session.add_points(3, 1, [[300, 200]], [1])
    assert first.frame_index == 3 and first.object_ids == (1,)
    assert first.alphas.shape == (1, 540, 960) and first.alphas.dtype == np.uint8
    second = session.add_points(3, 2, [[700, 400]], [1])
    assert second.object_ids == (1, 2)
    assert second.alphas.shape == (2, 540, 960)
    # Soft output, not a binary mask: random weights give logits near 0, so values sit mid-range.
    values = np.unique(second.alphas)
    assert len(values) > 10 and not set(values) <= {0, 255}
    assert np.array_equal(second.alpha(1), first.alpha(1))
    assert session.prompted_frames() == {1: [3], 2: [3]}


@pytest.mark.parametrize(
    ("direction", "start", "max_frames", "expected"),
    [
        ("forward", 0, 4, [0, 1, 2, 3]),
        ("backward", 6, 3, [6, 5, 4]),
        ("both", 5, 3, [5, 6, 7, 4, 3]),
        ("backward", 0, None, [0]),
    ],
)
def test_propagation_directions_with_two_objects(
    session, direction, start, max_frames, expected
) -> None:
    session.add_points(start, 1, [[300, 200]], [1])
    session.add_points(start, 2, [[700, 400]], [1])
    results = list(session.propagate(start, direction=direction, max_frames=max_frames))
    assert [r.frame_index for r in results] == expected
    for r in results:
        assert r.object_ids == (1, 2)
        assert r.alphas.shape == (2, 540, 960) and r.alphas.dtype == np.uint8
    assert set(expected) <= set(session.tracked_frames())


def test_propagation_to_the_end_and_default_start(predictor, tmp_path, bedroom_video) -> None:
    with predictor.open(bedroom_video) as s:
        s.add_points(195, 1, [[300, 200]], [1])
        frames = [r.frame_index for r in s.propagate()]
    assert frames == [195, 196, 197, 198, 199]


def test_cancel_stops_between_frames(session) -> None:
    _click_two_objects(session)
    seen = []
    for r in session.propagate(0, max_frames=50):
        seen.append(r.frame_index)
        if len(seen) == 3:
            session.cancel()
    assert seen == [0, 1, 2]
    assert not session.is_propagating
    # A new propagation after a cancel runs normally.
    assert len(list(session.propagate(0, max_frames=4))) == 4


def test_cancel_from_another_thread_with_a_token(session) -> None:
    _click_two_objects(session)
    token = CancelToken()
    seen: list[int] = []
    started = threading.Event()

    def consume() -> None:
        for r in session.propagate(0, cancel=token):
            seen.append(r.frame_index)
            started.set()
            if len(seen) >= 5:
                threading.Event().wait(0.05)  # give the other thread time to cancel

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(30)
    token.cancel()
    t.join(30)
    assert not t.is_alive()
    assert 1 <= len(seen) < 200


def test_prompts_are_refused_while_propagating(session) -> None:
    _click_two_objects(session)
    gen = session.propagate(0, max_frames=10)
    next(gen)
    with pytest.raises(SessionBusyError):
        session.add_points(5, 1, [[10, 10]], [1])
    gen.close()
    assert not session.is_propagating
    session.add_points(5, 1, [[10, 10]], [1])


def test_box_mask_clear_and_remove(session) -> None:
    boxed = session.add_box(0, 1, [100, 100, 400, 300])
    assert boxed.object_ids == (1,)
    mask = np.zeros((540, 960), dtype=np.uint8)
    mask[200:400, 500:800] = 255
    masked = session.add_mask(0, 2, mask)
    assert masked.object_ids == (1, 2)
    session.add_points(4, 2, [[600, 300]], [1])
    cleared = session.clear_points_in_frame(4, 2)
    assert cleared.frame_index == 4 and cleared.object_ids == (1, 2)
    assert session.prompted_frames() == {1: [0], 2: [0]}
    updated = session.remove_object(1)
    assert session.object_ids == (2,)
    assert [u.frame_index for u in updated] == [0]
    assert updated[0].object_ids == (2,)
    with pytest.raises(NotFoundError):
        session.remove_object(1)
    session.clear_points_in_video()
    assert session.object_ids == ()
    with pytest.raises(InvalidInputError, match="before propagating"):
        session.propagate()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.add_points(200, 1, [[1, 1]], [1]), FrameIndexError),
        (lambda s: s.add_points(-1, 1, [[1, 1]], [1]), FrameIndexError),
        (lambda s: s.add_points(0, 1, [[1, 1], [2, 2]], [1]), InvalidInputError),
        (lambda s: s.add_points(0, 1, [[float("nan"), 1]], [1]), InvalidInputError),
        (lambda s: s.add_points(0, 1, [[1, 1]], [7]), InvalidInputError),
        (lambda s: s.add_points(0, 1, [[1, 1, 1]], [1]), InvalidInputError),
        (lambda s: s.add_points(0, 1, [], []), InvalidInputError),
        (lambda s: s.add_points(0, 1, [[5000, 1]], [1]), InvalidInputError),
        (lambda s: s.add_points(0, 1, [[1.5, 0.5]], [1], normalized=True), InvalidInputError),
        (lambda s: s.add_points(0, -3, [[1, 1]], [1]), InvalidInputError),
        (lambda s: s.add_points(0, 1, "abc", [1]), InvalidInputError),
        (lambda s: s.add_box(0, 1, [400, 100, 100, 300]), InvalidInputError),
        (lambda s: s.add_mask(0, 1, np.zeros((10, 10), np.uint8)), InvalidInputError),
        (lambda s: s.clear_points_in_frame(0, 9), NotFoundError),
        (lambda s: s.propagate(0, direction="sideways"), InvalidInputError),
        (lambda s: s.frame(10_000), FrameIndexError),
    ],
)
def test_bad_input_is_a_clear_error(session, call, error) -> None:
    with pytest.raises(error) as info:
        call(session)
    assert "\n" not in str(info.value) and str(info.value)


def test_object_cap(predictor, bedroom_video) -> None:
    with predictor.open(bedroom_video, max_objects=2) as s:
        s.add_points(0, 1, [[10, 10]], [1])
        s.add_points(0, 2, [[20, 20]], [1])
        with pytest.raises(InvalidInputError, match="at most 2 objects"):
            s.add_points(0, 3, [[30, 30]], [1])


@pytest.mark.parametrize("content", [None, b"", b"just some text, not a video\n"])
def test_bad_videos_are_clear_errors(predictor, tmp_path, content) -> None:
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError):
        predictor.open(path)


def test_tracking_memory_is_bounded_with_a_memory_window(predictor, bedroom_video) -> None:
    with predictor.open(bedroom_video, memory_window=4) as session:
        session.add_points(0, 1, [[300, 200]], [1])
        for _ in session.propagate(0, max_frames=60):
            pass
        stored = session.state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
        assert session.memory_window is not None
        assert len(stored) <= 2 * session.memory_window + 1
        assert 59 in stored  # the most recent frames stay
    with predictor.open(bedroom_video) as session:  # by default every frame is kept, as SAM 2
        session.add_points(0, 1, [[300, 200]], [1])
        for _ in session.propagate(0, max_frames=60):
            pass
        assert len(session.state["output_dict_per_obj"][0]["non_cond_frame_outputs"]) == 59


def test_no_warning_per_frame_and_hole_filling_on(session) -> None:
    assert session.model.fill_hole_area > 0
    session.add_points(0, 1, [[300, 200]], [1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(session.propagate(0, max_frames=3))) == 3


def test_matches_stock_sam2_on_a_frame_folder(
    predictor, tiny_model, bedroom_video, tmp_path
) -> None:
    """Without an adapter the session gives SAM 2's own soft output (sigmoid of its logits)."""
    from sam2.build_sam import build_sam2_video_predictor

    folder = tmp_path / "frames"
    folder.mkdir()
    with predictor.open(bedroom_video) as s:
        for i in range(6):
            Image.fromarray(s.frame(i)).save(folder / f"{i:05d}.jpg", quality=95)
    stock = build_sam2_video_predictor(
        f"/{tiny_model.config}", str(tiny_model.checkpoint), device="cpu"
    )
    stock.fill_hole_area = predictor.model.fill_hole_area
    with torch.inference_mode():
        state = stock.init_state(str(folder))
        stock.add_new_points_or_box(state, 0, 1, points=[[300, 200]], labels=[1])
        expected = [
            (torch.sigmoid(m[0, 0]) * 255).round().to(torch.uint8).numpy()
            for _, _, m in stock.propagate_in_video(state)
        ]
    with predictor.open(folder) as s:
        s.add_points(0, 1, [[300, 200]], [1])
        ours = [r.alphas[0] for r in s.propagate(0)]
    assert len(ours) == len(expected) == 6
    for a, b in zip(ours, expected, strict=True):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 2, diff.max()


def test_predictor_without_checkpoint_says_how_to_get_one(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="sam2-matting download tiny"):
        build_matting_predictor("tiny", checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="--checkpoint"):
        build_matting_predictor(Path(tmp_path / "x.yaml"))


def test_bf16_autocast_on_cpu_runs_close_to_fp32(tiny_model, bedroom_video) -> None:
    results = {}
    for dtype in ("float32", "bfloat16"):
        p = build_matting_predictor(
            tiny_model.config, tiny_model.checkpoint, device="cpu", dtype=dtype
        )
        with p.open(bedroom_video) as s:
            s.add_points(0, 1, [[300, 200]], [1])
            results[dtype] = [r.alphas[0].astype(int) for r in s.propagate(0, max_frames=3)]
    diffs = [
        np.abs(a - b).max() for a, b in zip(results["float32"], results["bfloat16"], strict=True)
    ]
    assert max(diffs) <= 40  # bf16 keeps 8 bits of mantissa; random weights, small tiny model
