"""The propagation pipeline: decode-ahead frames equal SAM 2's, every stage stops, no thread leaks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sam2_matting.decode_ahead import DecodeAhead
from sam2_matting.errors import VideoError
from sam2_matting.predictor import MattingPredictor
from sam2_matting.propagation import make_plan, to_host
from sam2_matting.sam_frames import SamFrames
from sam2_matting.session import MattingSession
from sam2_matting.video import VideoSource, open_video

THREAD = "sam2-matting-decode"


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 frames of 96x64 H.264 with a keyframe every 8 frames: a moving disc over a ramp."""
    import av

    path = tmp_path_factory.mktemp("pipeline-clip") / "clip.mp4"
    yy, xx = np.mgrid[0:64, 0:96]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"g": "8", "keyint_min": "8"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(48):
            img = np.zeros((64, 96, 3), np.uint8)
            img[..., 1] = (xx * 2 + i).astype(np.uint8)
            img[(xx - 10 - i) ** 2 + (yy - 30) ** 2 <= 100] = (230, 40, 40)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    # One torch thread: the model's two would fight the decode thread on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    assert _decode_threads() == []
    yield
    torch.set_num_threads(threads)
    assert _decode_threads() == [], "a decode-ahead thread outlived its propagation"


class Recording(VideoSource):
    """A real video read through a wrapper that records which thread asked for which frame,
    and can fail or hold a frame (only in the decode-ahead thread, or in any thread)."""

    def __init__(self, path: Path, *, fail: int | None = None) -> None:
        self.inner = open_video(path)
        super().__init__(path, cache_size=8)
        self.frame_count, self.fps = self.inner.frame_count, self.inner.fps
        self.width, self.height = self.inner.width, self.inner.height
        self.fail = fail
        self.reads: list[tuple[str, int]] = []
        self.hold: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()

    def _read_frame(self, index: int) -> np.ndarray:
        name = threading.current_thread().name
        self.reads.append((name, index))
        if index == self.hold and name == THREAD:
            self.holding.set()
            self.release.wait(30)
        if index == self.fail:
            raise VideoError(f"{self.path.name}: cannot decode frame {index} (corrupt)")
        return self.inner.get_frame(index).copy()

    def _release(self) -> None:
        self.inner.close()


def _alphas(session: MattingSession, **kwargs) -> list[tuple[int, bytes]]:
    return [(r.frame_index, r.alphas.tobytes()) for r in session.propagate(**kwargs)]


def test_plan_follows_sam2_processing_order() -> None:
    assert make_plan(3, "forward", None, 6).order == (3, 4, 5)
    assert make_plan(3, "backward", 2, 6).order == (3, 2)
    assert make_plan(2, "both", None, 5).order == (2, 3, 4, 2, 1, 0)
    assert make_plan(0, "both", None, 3).order == (0, 1, 2)  # no reverse pass from frame 0
    backward_from_0 = make_plan(0, "backward", None, 3)
    assert backward_from_0.order == (0,) and backward_from_0.passes[0].reverse is False


@pytest.mark.parametrize("order", [range(0, 12), range(30, 18, -1), [5, 6, 7, 5, 4, 3]])
def test_prepared_frames_equal_frames_prepared_on_demand(clip: Path, order) -> None:
    with open_video(clip) as plain_src, open_video(clip) as ahead_src:
        plain = SamFrames(plain_src, 64, cache_size=0)
        frames = SamFrames(ahead_src, 64, cache_size=0)
        ahead = DecodeAhead(frames, list(order), depth=3)
        frames.supply_from(ahead)
        try:
            for i in order:
                got = frames[i]
                assert got.dtype == torch.float32
                assert torch.equal(got, plain[i])  # tolerance 0
                held = ahead.held_rgb(i)
                assert held is not None and np.array_equal(held, plain_src.get_frame(i))
        finally:
            ahead.close()
        assert not ahead.alive


@pytest.mark.parametrize("direction", ["forward", "backward", "both"])
def test_propagation_equals_propagation_without_decode_ahead(
    predictor: MattingPredictor, clip: Path, direction: str
) -> None:
    results = []
    for depth in (0, 4):
        with predictor.open(clip, decode_ahead=depth) as s:
            s.add_points(6, 1, [[30, 30]], [1])
            s.add_points(6, 2, [[70, 40]], [1])
            results.append(_alphas(s, start_frame=6, direction=direction, max_frames=4))
    assert results[0] == results[1]
    expected = {"forward": 4, "backward": 4, "both": 7}[direction]
    assert len(results[1]) == expected


def test_decode_ahead_stays_a_bounded_number_of_frames_ahead(
    predictor: MattingPredictor, clip: Path
) -> None:
    source = Recording(clip)
    with predictor.open(source, decode_ahead=2) as s:
        s.add_points(0, 1, [[30, 30]], [1])
        for r in s.propagate(0, max_frames=12):
            asked = max(i for _, i in source.reads)
            assert asked <= r.frame_index + 3  # the frame being produced + depth + the next
        assert s.frame_rgb(11) is not None
    decoded_by = {i: name for name, i in source.reads if i > 0}
    assert set(decoded_by) == set(range(1, 12))
    assert set(decoded_by.values()) == {THREAD}  # the model's thread decoded nothing itself


def test_backward_walk_decodes_in_forward_blocks(predictor: MattingPredictor, clip: Path) -> None:
    stats = []
    for depth in (0, 3):
        with predictor.open(clip, decode_ahead=depth) as s:
            s.add_points(30, 1, [[30, 30]], [1])
            before = s.source.decode_stats().seeks  # type: ignore[attr-defined]
            n = sum(1 for _ in s.propagate(30, direction="backward", max_frames=12))
            stats.append(s.source.decode_stats().seeks - before)  # type: ignore[attr-defined]
            assert n == 12
    assert stats[1] * 3 <= stats[0], stats  # one seek per block of frames, not per frame


def test_only_uint8_crosses_to_the_host(
    predictor: MattingPredictor, small_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sam2_matting.session as session_module

    dtypes = []

    def recording_to_host(tensor: torch.Tensor) -> np.ndarray:
        dtypes.append(tensor.dtype)
        return to_host(tensor)

    monkeypatch.setattr(session_module, "to_host", recording_to_host)
    with predictor.open(small_clip) as s:
        s.add_points(0, 1, [[20, 20]], [1])
        results = list(s.propagate())
    assert len(results) == 10 and all(r.soft is None for r in results)
    assert set(dtypes) == {torch.uint8}
    with predictor.open(small_clip, keep_float=True) as s:  # the explicit opt-in
        s.add_points(0, 1, [[20, 20]], [1])
        soft = next(iter(s.propagate())).soft
    assert soft is not None and soft.dtype == np.float32


def test_cancel_mid_propagation_stops_every_stage(predictor: MattingPredictor, clip: Path) -> None:
    with predictor.open(clip) as s:
        s.add_points(0, 1, [[30, 30]], [1])
        seen = []
        for r in s.propagate(0):
            seen.append(r.frame_index)
            if len(seen) == 3:
                assert len(_decode_threads()) == 1
                s.cancel()
        assert seen == [0, 1, 2]
        assert _decode_threads() == [] and not s.is_propagating
        assert len(_alphas(s, start_frame=0, max_frames=2)) == 2  # still usable


def test_consumer_abandoning_the_generator_stops_every_stage(
    predictor: MattingPredictor, clip: Path
) -> None:
    with predictor.open(clip) as s:
        s.add_points(10, 1, [[30, 30]], [1])
        for direction in ("forward", "backward", "both"):
            gen = s.propagate(10, direction=direction)
            assert next(gen).frame_index == 10 and next(gen).frame_index in (9, 11)
            assert len(_decode_threads()) == 1
            gen.close()  # what a disconnected stream does
            assert _decode_threads() == [] and not s.is_propagating


def test_close_from_another_thread_while_a_frame_is_being_decoded(
    predictor: MattingPredictor, clip: Path
) -> None:
    source = Recording(clip)
    s = predictor.open(source, decode_ahead=2)
    s.add_points(0, 1, [[30, 30]], [1])
    source.hold = 3
    gen = s.propagate(0)
    assert [next(gen).frame_index for _ in range(2)] == [0, 1]
    assert source.holding.wait(30)  # the decode thread is inside frame 3
    closer = threading.Thread(target=s.close)
    closer.start()
    source.release.set()
    closer.join(30)
    assert not closer.is_alive()
    assert list(gen) == []  # the propagation ends at its next frame
    assert _decode_threads() == [] and source.closed


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_a_frame_that_fails_to_decode_raises_the_same_error(
    predictor: MattingPredictor, clip: Path, direction: str
) -> None:
    errors = []
    for depth in (0, 3):
        source = Recording(clip, fail=13 if direction == "forward" else 7)
        with predictor.open(source, decode_ahead=depth) as s:
            s.add_points(10, 1, [[30, 30]], [1])
            got = []
            with pytest.raises(VideoError) as err:
                for r in s.propagate(10, direction=direction):
                    got.append(r.frame_index)
            errors.append((type(err.value), str(err.value), got))
            assert not s.is_propagating
            assert _decode_threads() == []
            assert len(_alphas(s, start_frame=10, max_frames=2)) == 2  # the session goes on
    assert errors[0] == errors[1]
    assert "cannot decode frame" in errors[1][1]
