"""Lazy video I/O: sam2_matting.video, sam2_matting.video_file and sam2_matting.sam_frames.

Every frame we return is checked against PyAV's own plain sequential decode of the same file
(``frame.to_ndarray(format="rgb24")``), compared by CRC-32 so no test holds a whole video.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from sam2_matting.errors import FrameIndexError, InvalidInputError, VideoError
from sam2_matting.sam_frames import SamFrames
from sam2_matting.video import (
    DEFAULT_CACHE_SIZE,
    FrameFolderSource,
    natural_sort_key,
    normalize_rotation,
    open_video,
    rotate_frame,
)
from sam2_matting.video_file import VideoFileSource

SHARED_NAMES = [
    "01_dog.mp4",
    "02_cups.mp4",
    "03_blocks.mp4",
    "04_coffee.mp4",
    "05_default_juggle.mp4",
    "bedroom.mp4",
]


@dataclass(frozen=True)
class Reference:
    """What PyAV's plain sequential decode of a file gives."""

    count: int
    crcs: dict[int, int]  # frame index (decode output order) -> CRC-32 of its rgb24 array
    fps: float
    width: int
    height: int
    rotations: set[int]

    def all_crcs(self) -> list[int]:
        assert len(self.crcs) == self.count, "reference made without every frame's CRC"
        return [self.crcs[i] for i in range(self.count)]


_REFERENCES: dict[Path, Reference] = {}
# Frames the random-access test reads on the long real videos (all have over 200 frames);
# converting and hashing only these, plus the last, keeps the full reference decode cheap.
SAMPLED = (0, 39, 40, 120)


def reference(path: Path, sample: bool = False) -> Reference:
    """Decode ``path`` once with plain PyAV (cached); ``sample``: hash only SAMPLED + last."""
    if path not in _REFERENCES:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # threading changes speed, never the pixels
            crcs: dict[int, int] = {}
            rotations, sizes = set(), set()
            count, last = 0, None
            for frame in container.decode(stream):
                if not sample or count in SAMPLED:
                    crcs[count] = zlib.crc32(frame.to_ndarray(format="rgb24"))
                rotations.add(frame.rotation)
                sizes.add((frame.width, frame.height))
                count, last = count + 1, frame
            assert last is not None and len(sizes) == 1
            crcs[count - 1] = zlib.crc32(last.to_ndarray(format="rgb24"))
            ((width, height),) = sizes
            _REFERENCES[path] = Reference(
                count, crcs, float(stream.average_rate), width, height, rotations
            )
    return _REFERENCES[path]


def crc(frame: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(frame))


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """A synthetic RGB frame that differs per index: gradients plus a moving square."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
    image[..., 1] = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
    image[..., 2] = (index * 37) % 256
    x0 = (index * 5) % max(width - 16, 1)
    image[8:24, x0 : x0 + 16] = 255
    return image


def write_video(
    path: Path,
    frames: int = 40,
    size: tuple[int, int] = (96, 64),
    codec: str = "libx264",
    container_format: str | None = None,
    gop: int = 10,
    rotation: float | None = None,
) -> Path:
    """Encode ``frames`` synthetic frames with PyAV (B-frames on by default for x264)."""
    width, height = size
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def assert_one_line_video_error(path: Path, match: str) -> None:
    with pytest.raises(VideoError, match=match) as caught:
        open_video(path)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message


# -- the real videos -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHARED_NAMES)
def test_metadata_matches_a_full_pyav_decode(shared_videos: Path, name: str) -> None:
    path = shared_videos / name
    ref = reference(path, sample=name != "bedroom.mp4")
    with open_video(path) as video:
        assert isinstance(video, VideoFileSource)
        assert video.frame_count == ref.count == len(video)
        assert video.fps == pytest.approx(ref.fps)
        assert (video.width, video.height) == (ref.width, ref.height)
        assert video.rotation == 0 and ref.rotations == {0}
        assert video.codec == "h264"


@pytest.mark.parametrize("name", SHARED_NAMES)
def test_random_access_equals_sequential_decode(shared_videos: Path, name: str) -> None:
    path = shared_videos / name
    ref = reference(path, sample=name != "bedroom.mp4")
    # A middle frame, the last, back to an earlier one, one step back, and frame 0 (which
    # open_video decoded).
    order = [120, ref.count - 1, 40, 39, 0]
    with open_video(path) as video:
        for index in order:
            frame = video.get_frame(index)
            assert frame.shape == (video.height, video.width, 3) and frame.dtype == np.uint8
            assert crc(frame) == ref.crcs[index], f"frame {index} differs"
        assert video.decode_stats().seeks >= 2  # going back must have sought
        assert video.decode_stats().substituted == 0


def test_sequential_iteration_keeps_only_cache_size_frames(bedroom_video: Path) -> None:
    crcs = reference(bedroom_video).all_crcs()
    with open_video(bedroom_video) as video:
        assert isinstance(video, VideoFileSource)
        matched = 0
        for index, frame in enumerate(video.iter_frames()):
            assert crc(frame) == crcs[index], f"frame {index} differs"
            assert len(video.cached_indices()) <= DEFAULT_CACHE_SIZE
            matched += 1
        assert matched == video.frame_count == 200
        assert video.cached_indices() == list(range(200 - DEFAULT_CACHE_SIZE, 200))
        stats = video.decode_stats()
        # One pass: no seek at all (frame 0 was decoded at open), each frame decoded once.
        assert stats.seeks == 0 and stats.reopens == 0
        assert stats.frames_decoded == 200


def test_get_frame_in_order_continues_without_seeking(bedroom_video: Path) -> None:
    ref = reference(bedroom_video)
    with open_video(bedroom_video) as video:
        assert isinstance(video, VideoFileSource)
        video.get_frame(100)
        seeks = video.decode_stats().seeks
        for index in [101, 102, 105, 110, 111, 130]:  # small jumps ahead: decode forward
            assert crc(video.get_frame(index)) == ref.crcs[index]
        assert video.decode_stats().seeks == seeks


def test_iter_frames_range_and_bounds(bedroom_video: Path) -> None:
    crcs = reference(bedroom_video).all_crcs()
    with open_video(bedroom_video) as video:
        assert [crc(f) for f in video.iter_frames(60, 66)] == crcs[60:66]
        assert [crc(f) for f in video.iter_frames(197, 10_000)] == crcs[197:]
        assert list(video.iter_frames(200)) == []
        with pytest.raises(FrameIndexError):
            video.iter_frames(-1)
        with pytest.raises(FrameIndexError):
            video.iter_frames(201)


def test_frames_are_read_only_and_cached(bedroom_video: Path) -> None:
    with open_video(bedroom_video, cache_size=2) as video:
        first = video.get_frame(3)
        with pytest.raises(ValueError):
            first[0, 0, 0] = 1
        assert video.get_frame(3) is first
        video.get_frame(4)
        video.get_frame(5)
        assert video.cached_indices() == [4, 5]
        assert video.cache_info().hits >= 1


# -- other containers and codecs -------------------------------------------------------------

FORMATS = [
    ("clip.mp4", "libx264", None),
    ("clip.mov", "libx264", None),
    ("clip.mkv", "libx264", None),
    ("clip.webm", "libvpx-vp9", None),
    ("clip.avi", "mpeg4", None),
    ("clip.ts", "libx264", "mpegts"),
    ("clip.h264", "libx264", "h264"),  # raw stream: no timestamps, no seeking
]


@pytest.mark.parametrize(("name", "codec", "container_format"), FORMATS)
def test_containers_random_access_and_iteration(
    tmp_path: Path, name: str, codec: str, container_format: str | None
) -> None:
    path = write_video(tmp_path / name, codec=codec, container_format=container_format)
    ref = reference(path)
    assert ref.count == 40
    with open_video(path) as video:
        assert video.frame_count == 40
        assert (video.width, video.height) == (96, 64)
        assert video.fps == pytest.approx(25.0)
        for index in [20, 39, 5, 0, 33, 12, 13, 38]:
            assert crc(video.get_frame(index)) == ref.crcs[index], f"frame {index} differs"
        assert [crc(f) for f in video.iter_frames()] == ref.all_crcs()
        assert video.decode_stats().substituted == 0


# -- rotation --------------------------------------------------------------------------------


def test_rotation_helpers() -> None:
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)  # [[0 1 2] [3 4 5]]
    assert rotate_frame(image, 0) is image
    # Counter-clockwise: the top-right corner becomes the top-left one.
    assert rotate_frame(image, 90).tolist() == [[2, 5], [1, 4], [0, 3]]
    assert rotate_frame(image, -90).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert rotate_frame(image, 180).tolist() == [[5, 4, 3], [2, 1, 0]]
    assert rotate_frame(image, 90).flags.c_contiguous
    assert [normalize_rotation(d) for d in (0, 90, -90, 180, -180, 270, 360, 89.6)] == [
        0,
        90,
        270,
        180,
        180,
        270,
        0,
        90,
    ]


@pytest.mark.parametrize(("degrees", "expected"), [(90, 90), (-90, 270), (180, 180)])
def test_display_matrix_rotation_is_applied(tmp_path: Path, degrees: int, expected: int) -> None:
    path = write_video(tmp_path / "rotated.mp4", frames=12, size=(96, 64), rotation=degrees)
    ref = reference(path)
    # PyAV wrote the display matrix and reads it back (180 may come back as -180).
    assert {normalize_rotation(r) for r in ref.rotations} == {expected}
    with open_video(path) as video:
        assert video.rotation == expected
        swapped = expected in (90, 270)
        assert (video.width, video.height) == ((64, 96) if swapped else (96, 64))
        with av.open(str(path)) as container:
            stored = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        for index in [7, 2, 11]:
            frame = video.get_frame(index)
            assert frame.shape == (video.height, video.width, 3)
            np.testing.assert_array_equal(frame, np.rot90(stored[index], k=expected // 90))


def test_rotation_puts_the_top_edge_where_a_player_shows_it(tmp_path: Path) -> None:
    # The square of `pattern` sits near the top edge of the stored frame. With a display
    # rotation of -90 (the stored picture turns clockwise, as for a portrait phone clip),
    # the top edge must end up on the right.
    path = write_video(tmp_path / "portrait.mp4", frames=3, size=(96, 64), rotation=-90)
    with open_video(path) as video:
        bright = video.get_frame(0).min(axis=2) > 200
        _rows, cols = np.nonzero(bright)
        assert cols.min() > video.width // 2


# -- folders of frames -----------------------------------------------------------------------


def test_folder_is_ordered_by_the_number_in_the_name(tmp_path: Path) -> None:
    for i in range(12):  # f0.png ... f11.png: plain sorting would put f10 before f2
        Image.fromarray(np.full((20, 30, 3), i * 10, np.uint8)).save(tmp_path / f"f{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "._f3.png").write_bytes(b"macOS resource fork")
    with open_video(tmp_path, folder_fps=12.5) as video:
        assert isinstance(video, FrameFolderSource)
        assert (video.frame_count, video.width, video.height) == (12, 30, 20)
        assert video.fps == 12.5 and video.rotation == 0
        assert [int(video.get_frame(i)[0, 0, 0]) for i in (11, 2, 10, 0)] == [110, 20, 100, 0]
        assert [int(f[5, 5, 1]) for f in video.iter_frames(9)] == [90, 100, 110]
    assert sorted(["a10.jpg", "a9.jpg", "a010b.jpg", "B1.png"], key=natural_sort_key) == [
        "a9.jpg",
        "a10.jpg",
        "a010b.jpg",
        "B1.png",
    ]


def test_folder_bad_frames_raise_video_error(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(tmp_path / "1.png")
    (tmp_path / "2.jpg").write_bytes(b"not a jpeg")
    with open_video(tmp_path) as video:
        assert video.frame_count == 3
        with pytest.raises(VideoError, match="30x21, but the first frame is 30x20"):
            video.get_frame(1)
        with pytest.raises(VideoError, match="cannot read image"):
            video.get_frame(2)


# -- bad inputs ------------------------------------------------------------------------------


def test_bad_inputs_raise_one_line_video_errors(tmp_path: Path) -> None:
    assert_one_line_video_error(tmp_path / "missing.mp4", "not found")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert_one_line_video_error(tmp_path / "empty.mp4", "empty")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    assert_one_line_video_error(tmp_path / "text.mp4", "not a readable video")
    (tmp_path / "frames").mkdir()
    assert_one_line_video_error(tmp_path / "frames", "no JPEG or PNG frames")
    (tmp_path / "frames" / "readme.txt").write_text("no frames here")
    assert_one_line_video_error(tmp_path / "frames", "no JPEG or PNG frames")


def test_audio_only_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert_one_line_video_error(path, "no video stream")


def test_truncated_video_still_reads_every_frame_it_has(tmp_path: Path) -> None:
    # An interrupted upload of a "faststart" mp4: the index (moov) is complete, the data ends
    # early. Frames whose packets survive decode; the cut packet is skipped, not fatal.
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(pattern(i, 96, 64), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with open_video(cut) as video:
        assert 0 < video.frame_count < 30
        frames = list(video.iter_frames())
        assert len(frames) == video.frame_count
        np.testing.assert_array_equal(frames[3], video.get_frame(3))


@pytest.mark.parametrize("threads", [False, True])
def test_corrupt_packet_is_dropped_and_its_frame_repeats_the_one_before(
    tmp_path: Path, threads: bool
) -> None:
    intact = write_video(tmp_path / "intra.mp4", frames=12, gop=1)  # every frame a keyframe
    crcs = reference(intact).all_crcs()
    with av.open(str(intact)) as container:
        packets = sorted((p.pts, p.pos) for p in container.demux(video=0) if p.size)
    data = bytearray(intact.read_bytes())
    _pts, pos = packets[5]
    data[pos : pos + 4] = b"\xff" * 4  # an impossible NAL length: FFmpeg rejects the packet
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    # Plain PyAV gives up on the whole video.
    with pytest.raises(av.InvalidDataError), av.open(str(broken)) as container:
        list(container.decode(video=0))
    with open_video(broken, decoder_threads=threads) as video:  # in order
        assert [crc(video.get_frame(i)) for i in (3, 4, 5, 6, 11)] == [
            crcs[3],
            crcs[4],
            crcs[4],  # frame 5 is gone: the frame before stands in
            crcs[6],
            crcs[11],
        ]
        stats = video.decode_stats()
        assert (stats.bad_packets, stats.substituted, stats.seeks) == (1, 1, 0)
    with open_video(broken, decoder_threads=threads) as video:  # straight to the bad frame
        assert crc(video.get_frame(5)) == crcs[4]
        assert crc(video.get_frame(6)) == crcs[6]


def test_limits_on_size_and_length(tmp_path: Path, bedroom_video: Path) -> None:
    with pytest.raises(VideoError, match="over the limit of 512 pixels"):
        open_video(bedroom_video, max_side=512)
    with pytest.raises(VideoError, match="more than 100 frames"):
        open_video(bedroom_video, max_frames=100)
    Image.new("RGB", (9000, 2)).save(tmp_path / "0.png")  # tiny file, absurd width
    with pytest.raises(VideoError, match="9000x2 is over the limit of 8192"):
        open_video(tmp_path)
    with pytest.raises(InvalidInputError, match="cache size"):
        open_video(bedroom_video, cache_size=-1)


def test_frame_index_errors(bedroom_video: Path) -> None:
    with open_video(bedroom_video) as video:
        for bad in (-1, 200, 10**9):
            with pytest.raises(FrameIndexError, match="out of range"):
                video.get_frame(bad)
        for not_int in (1.5, "3", True):
            with pytest.raises(FrameIndexError, match="integer"):
                video.get_frame(not_int)  # type: ignore[arg-type]
        assert crc(video.get_frame(np.int64(199))) == reference(bedroom_video).crcs[199]  # type: ignore[arg-type]
    with pytest.raises(VideoError, match="closed"):
        video.get_frame(0)
    video.close()  # a second close is harmless


# -- threads ---------------------------------------------------------------------------------


def test_two_threads_read_different_frames_correctly(tmp_path: Path) -> None:
    path = write_video(tmp_path / "threads.mp4", frames=120, size=(160, 96), gop=12)
    ref = reference(path)
    errors: list[str] = []
    barrier = threading.Barrier(2)

    def read(video: object, indices: list[int]) -> None:
        assert isinstance(video, VideoFileSource)
        barrier.wait()
        for index in indices:
            if crc(video.get_frame(index)) != ref.crcs[index]:
                errors.append(f"frame {index}")

    # cache_size=0: every read decodes, so the two threads fight over one decoder.
    with open_video(path, cache_size=0) as video:
        threads = [
            threading.Thread(target=read, args=(video, list(range(0, 120, 2)))),
            threading.Thread(target=read, args=(video, list(range(119, 0, -2)))),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


# -- SAM 2 frames ----------------------------------------------------------------------------


def _bedroom_frames(bedroom_video: Path, indices: list[int]) -> list[np.ndarray]:
    with open_video(bedroom_video) as video:
        return [video.get_frame(i) for i in indices]


def test_sam_frames_match_sam2_jpeg_loader(tmp_path: Path, bedroom_video: Path) -> None:
    from sam2.utils.misc import load_video_frames

    for i, frame in enumerate(_bedroom_frames(bedroom_video, [0, 7, 30])):
        Image.fromarray(frame).save(tmp_path / f"{i:05d}.jpg", quality=90)
    images, height, width = load_video_frames(
        str(tmp_path), 256, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    with open_video(tmp_path) as video:
        frames = SamFrames(video, 256)
        assert (frames.video_height, frames.video_width) == (height, width) == (540, 960)
        assert len(frames) == len(images) == 3
        for i in range(3):
            ours = frames[i]
            assert ours.shape == (3, 256, 256) and ours.dtype == torch.float32
            assert torch.equal(ours, images[i])  # same operations, same precision


def test_sam_frames_from_a_video_equal_those_from_lossless_frames(
    tmp_path: Path, bedroom_video: Path
) -> None:
    indices = [10, 60]
    for name, frame in zip(indices, _bedroom_frames(bedroom_video, indices), strict=True):
        Image.fromarray(frame).save(tmp_path / f"{name}.png")
    with open_video(bedroom_video) as video, open_video(tmp_path) as folder:
        from_video = SamFrames(video, 128, cache_size=1)
        from_folder = SamFrames(folder, 128)
        for pos, index in enumerate(indices):
            assert torch.equal(from_video[index], from_folder[pos])
        # Normalized values: roughly zero-mean, well outside [0, 1].
        assert from_video[10].min() < -1 and from_video[10].max() > 1
        assert from_video.cache_len() == 1
        assert from_video[120] is from_video[120]
        half = SamFrames(video, 64, dtype=torch.float16)[5]
        assert half.dtype == torch.float16 and half.shape == (3, 64, 64)
        for bad in (200, -1, 10.0):
            with pytest.raises(FrameIndexError):
                from_video[bad]  # type: ignore[index]
        with pytest.raises(InvalidInputError):
            SamFrames(video, 0)
        with pytest.raises(InvalidInputError):
            SamFrames(video, 64, dtype=torch.int64)
