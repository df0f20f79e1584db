"""One meaning of "frame i": sessions, exports and uploads agree on every frame.

The two corpus files made for this (scripts/make_hostile_corpus.py) show frame ``i`` as the
grey level ``20 + 20 * i`` of a flat picture (a white square aside): ``cover_art_first.mp4``
has a JPEG cover as stream 0 before its 10-frame H.264 video; in ``corrupt_packet.mp4`` (10
intra frames) the packet of frame 5 is corrupt, so by the rule frame 5 shows frame 4. Each
file is read as a session reads it (``open_video``), through ``export_video`` and through the
upload transcoder, and frame ``i`` must show the same picture in each, within codec tolerance.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from sam2_matting.errors import VideoError
from sam2_matting.export import export_video, frame_name
from sam2_matting.export.render import composite_over
from sam2_matting.frame_index import (
    FrameIndex,
    FrameSequence,
    choose_video_stream,
    numbered_frames,
    scan_file,
)
from sam2_matting.video import open_video
from server.transcode import UploadLimits, transcode_h264

CORPUS = Path(__file__).parent / "fixtures" / "hostile"
COVER, CORRUPT = CORPUS / "cover_art_first.mp4", CORPUS / "corrupt_packet.mp4"
N, W, H = 10, 64, 48
GREY0, GREY_STEP = 20, 20
# The picture each frame shows: frame 5 of the corrupt file is dropped and shows frame 4.
SHOWN = {COVER: list(range(N)), CORRUPT: [0, 1, 2, 3, 4, 4, 6, 7, 8, 9]}
LIMITS = UploadLimits(
    max_upload_bytes=10 * 1024**2, max_duration_sec=600, max_frames=10_000, max_side=4096,
    max_fps=120,
)  # fmt: skip
FILES = pytest.mark.parametrize("path", [COVER, CORRUPT], ids=["cover_art_first", "corrupt"])


def picture_of(rgb: np.ndarray) -> int:
    """Which frame's picture ``rgb`` is: its background grey (the median), as a frame number."""
    return round((float(np.median(rgb[..., :3])) - GREY0) / GREY_STEP)


def matte(i: int) -> np.ndarray:
    """The matte put on frame ``i``: opaque from the left edge to column ``16 + 4 * i``."""
    alpha = np.zeros((H, W), np.uint8)
    alpha[:, : 16 + 4 * i] = 255
    return alpha


def session_frames(path: Path) -> list[np.ndarray]:
    with open_video(path) as video:
        assert video.frame_count == N
        return [video.get_frame(i).copy() for i in range(N)]


# -- the rule's pieces -------------------------------------------------------------------------


def test_the_stream_is_the_video_not_the_cover_in_front_of_it() -> None:
    with av.open(str(COVER)) as container:
        first = container.streams[0]
        assert first.disposition & av.stream.Disposition.attached_pic  # the file is as meant
        assert choose_video_stream(container).codec_context.name == "h264"
    stream_index, index = scan_file(COVER)
    assert stream_index == 1 and index.count == N and index.by_pts


def test_audio_file_with_only_a_cover_has_no_video(tmp_path: Path) -> None:
    path = tmp_path / "song.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 16, 16, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        sound = out.add_stream("aac", rate=8000, layout="mono")
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), "red").save(buffer, format="JPEG")
        packet = av.Packet(buffer.getvalue())
        packet.stream, packet.pts, packet.dts = cover, 0, 0
        out.mux(packet)
        silence = np.zeros((1, 1024), np.float32)
        frame = av.AudioFrame.from_ndarray(silence, format="fltp", layout="mono")
        frame.sample_rate = 8000
        for i in range(4):
            frame.pts = i * 1024
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    with av.open(str(path)) as container, pytest.raises(VideoError, match="no video stream"):
        choose_video_stream(container)
    with pytest.raises(VideoError, match=r"song\.mp4: file has no video stream"):
        open_video(path)


def test_frame_numbers_follow_the_index() -> None:
    index = FrameIndex(
        3, True, np.array([0, 512, 1024], np.int64), np.array([0], np.int64)
    )  # fmt: skip
    assert [index.number(p, -1) for p in (0, 512, 1024, 100, None)] == [0, 1, 2, None, None]
    assert index.number(512, 1) is None  # not after the last frame given: a duplicate
    by_order = FrameIndex(2, False, np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert [by_order.number(None, -1), by_order.number(7, 0), by_order.number(7, 1)] == [0, 1, None]


def test_a_corrupt_packet_is_dropped_and_its_frame_shows_the_one_before() -> None:
    _stream_index, index = scan_file(CORRUPT)
    sequence = FrameSequence(index)
    with av.open(str(CORRUPT)) as container:
        items = list(numbered_frames(container, container.streams.video[0], sequence))
        pictures = [picture_of(item.frame.to_ndarray(format="rgb24")) for item in items]
    assert [item.index for item in items] == list(range(N))
    assert [item.substituted for item in items] == [i == 5 for i in range(N)]
    assert [item.pts for item in items] == [index.pts_of(i) for i in range(N)]
    assert pictures == SHOWN[CORRUPT]
    assert (sequence.decoded, sequence.substituted, sequence.bad_packets) == (9, 1, 1)


# -- every reader shows the same frame i -------------------------------------------------------


@FILES
def test_session_export_and_upload_show_the_same_frame_i(path: Path, tmp_path: Path) -> None:
    session = session_frames(path)
    assert [picture_of(rgb) for rgb in session] == SHOWN[path]
    # export: a PNG sequence keeps the decoded colours exactly
    out = export_video(path, {}, tmp_path / "seq", "png")
    assert sorted(p.name for p in out.iterdir()) == [frame_name(i) for i in range(N)]
    for i in range(N):
        rgba = np.asarray(Image.open(out / frame_name(i)))
        np.testing.assert_array_equal(rgba[..., :3], session[i], err_msg=f"frame {i}")
    # upload: the transcoded file, read back as a session would (x264 again: within tolerance)
    info = transcode_h264(path, tmp_path / "upload.mp4", LIMITS)
    assert (info.frame_count, info.width, info.height) == (N, W, H)
    with open_video(tmp_path / "upload.mp4") as uploaded:
        assert uploaded.frame_count == N
        for i in range(N):
            frame = uploaded.get_frame(i).astype(int)
            assert picture_of(frame) == SHOWN[path][i], i
            assert np.abs(frame - session[i]).mean() < 3, i


@FILES
@pytest.mark.parametrize("fmt", ["png-zip", "alpha", "composite"])
def test_mattes_keyed_by_frame_land_on_the_frames_the_session_numbered(
    path: Path, fmt: str, tmp_path: Path
) -> None:
    session = session_frames(path)
    mattes = {i: matte(i) for i in range(N)}
    blue = np.zeros((H, W, 3), np.uint8)
    blue[..., 2] = 255
    # What export frame i must look like: session frame i under matte i, in the format.
    if fmt == "png-zip":
        out = export_video(path, mattes, tmp_path / "seq.zip", fmt)
        with zipfile.ZipFile(out) as archive:
            got = [np.asarray(Image.open(io.BytesIO(archive.read(n)))) for n in archive.namelist()]
        want = [np.dstack([session[i], mattes[i]]) for i in range(N)]
    elif fmt == "alpha":
        out = export_video(path, mattes, tmp_path / "pha.mp4", fmt)
        with av.open(str(out)) as container:
            got = [f.to_ndarray(format="gray")[:H, :W] for f in container.decode(video=0)]
        want = [mattes[i] for i in range(N)]
    else:
        out = export_video(path, mattes, tmp_path / "com.mp4", fmt, background="#0000ff")
        with av.open(str(out)) as container:
            got = [f.to_ndarray(format="rgb24")[:H, :W] for f in container.decode(video=0)]
        want = [composite_over(session[i], mattes[i], blue) for i in range(N)]
    assert len(got) == N
    for i, image in enumerate(got):
        errors = [np.abs(image.astype(int) - w.astype(int)).mean() for w in want]
        assert int(np.argmin(errors)) == i, (i, [round(e, 1) for e in errors])
        assert errors[i] < (0.01 if fmt == "png-zip" else 4), (i, errors[i])


@pytest.fixture(scope="module")
def predictor(tiny_model: Any) -> Any:
    from sam2_matting import build_matting_predictor

    return build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu")


@FILES
def test_a_real_session_matte_lands_on_its_frame_in_the_export(
    predictor: Any, path: Path, tmp_path: Path
) -> None:
    # A click on frame 4, tracked over frames 4..6 (the corrupt file's frame 5 shows frame 4).
    with predictor.open(path) as session:
        session.add_points(4, object_id=1, points=[[0.5, 0.5]], labels=[1], normalized=True)
        results = list(session.propagate(start_frame=4, direction="forward", max_frames=3))
        mattes = {r.frame_index: r.alpha(1).copy() for r in results}
        frames = [session.source.get_frame(i).copy() for i in range(N)]
    assert sorted(mattes) == [4, 5, 6]
    out = export_video(path, mattes, tmp_path / "seq", "png", foreground="source")
    for i in range(N):
        rgba = np.asarray(Image.open(out / frame_name(i)))
        np.testing.assert_array_equal(rgba[..., :3], frames[i], err_msg=f"frame {i}")
        alpha = mattes.get(i, np.zeros((H, W), np.uint8))
        np.testing.assert_array_equal(rgba[..., 3], alpha, err_msg=f"matte {i}")


# -- the whole corpus: an export shows the frames a session numbered ----------------------------

MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
READABLE = sorted(
    name
    for name, entry in MANIFEST.items()
    if entry["expected"]["matte"]["ok"] and entry["bytes"] < 20_000  # the long ones: skipped
)


@pytest.mark.parametrize("name", READABLE)
def test_every_readable_corpus_file_exports_the_session_frames(name: str, tmp_path: Path) -> None:
    path = CORPUS / name
    with open_video(path, max_side=8192) as video:
        session = [video.get_frame(i).copy() for i in range(video.frame_count)]
    out = export_video(path, {}, tmp_path / "seq.zip", "png-zip")
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert names == [frame_name(i) for i in range(len(session))]
        for i, member in enumerate(names):
            rgba = np.asarray(Image.open(io.BytesIO(archive.read(member))))
            np.testing.assert_array_equal(rgba[..., :3], session[i], err_msg=f"{name} frame {i}")


def test_export_progress_counts_the_frames_not_the_container_claim(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    path = CORPUS / "lie_frame_count.mp4"  # its stts claims 1,000,000 frames; it has 10
    export_video(path, {}, tmp_path / "seq", "png", progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 10) for i in range(1, 11)]
