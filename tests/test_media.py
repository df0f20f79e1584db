"""The media layer: gallery scan, posters, id resolution, uploads and the static routes.

Every video here is a real file: small clips written with PyAV, the committed gallery, and
bedroom.mp4 from the shared test videos (read in place).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.datastructures import FileStorage

from sam2_matting.errors import (
    InvalidInputError,
    LimitExceededError,
    MattingError,
    NotFoundError,
    VideoError,
)
from server.config import Settings
from server.media import MediaLibrary, VideoRecord
from server.media_routes import init_app

REPO = Path(__file__).resolve().parents[1]
HEX64 = "0123456789abcdef" * 4


def write_clip(
    path: Path,
    frames: int,
    width: int = 64,
    height: int = 48,
    fps: int = 20,
    *,
    rotation: int | None = None,
    container: str = "mp4",
    pts: Callable[[int], int] | None = None,
) -> Path:
    """An H.264 clip whose frame i is flat grey level 8 * i with a white top-left marker."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "crf": "10"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            rgb = np.full((height, width, 3), 8 * i, np.uint8)
            rgb[:8, :8] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = pts(i) if pts else i
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def read_frames(path: Path) -> tuple[av.video.stream.VideoStream, list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return stream, frames


def grey_level(rgb: np.ndarray) -> int:
    """The frame index a clip of :func:`write_clip` encoded (marker excluded)."""
    return round(float(rgb[rgb.shape[0] // 2 :, rgb.shape[1] // 2 :].mean()) / 8)


def library(tmp: Path, gallery: Path | None = None, **limits: Any) -> MediaLibrary:
    """A library with its data under ``tmp`` and the given Settings limits."""
    gallery = gallery or tmp / "no-gallery"
    return MediaLibrary(Settings(data=str(tmp / "data"), gallery=str(gallery), **limits))


def leftovers(lib: MediaLibrary) -> list[str]:
    """Files an upload may have left in uploads/, posters/ or tmp/."""
    return sorted(
        p.name for d in (lib.uploads_dir, lib.posters_dir, lib.tmp_dir) for p in d.iterdir()
    )


@pytest.fixture(scope="module")
def gallery_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gallery")
    write_clip(folder / "b_second.mp4", 10, 64, 48, 20)
    write_clip(folder / "a_first.mp4", 6, 80, 60, 25)
    (folder / "broken.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("ignored")
    write_clip(folder / ".hidden.mp4", 2)
    return folder


@pytest.fixture(scope="module")
def uploaded(
    tmp_path_factory: pytest.TempPathFactory, gallery_dir: Path, bedroom_video: Path
) -> tuple[MediaLibrary, VideoRecord]:
    """A library with the synthetic gallery and the first 40 frames of bedroom.mp4 uploaded."""
    lib = library(tmp_path_factory.mktemp("media"), gallery_dir)
    with open(bedroom_video, "rb") as f:
        record = lib.ingest_upload(f, "bedroom.mp4", duration_time_sec=40 / 30)
    return lib, record


# -- gallery --------------------------------------------------------------------------------


def test_gallery_is_sorted_probed_and_has_posters(
    uploaded: tuple[MediaLibrary, VideoRecord],
) -> None:
    lib, _ = uploaded
    records = lib.gallery()
    assert [r.id for r in records] == ["gallery/a_first.mp4", "gallery/b_second.mp4"]
    first, second = records
    assert (first.width, first.height, first.frame_count, first.fps) == (80, 60, 6, 25.0)
    assert (second.width, second.height, second.frame_count, second.fps) == (64, 48, 10, 20.0)
    assert second.duration == pytest.approx(0.5)
    for record in records:
        poster = lib.data_dir / record.poster
        assert record.poster.startswith("posters/") and record.poster.endswith(".jpg")
        with Image.open(poster) as image:
            assert image.format == "JPEG"
            assert image.size == (record.width, record.height)
    assert lib.default_video() == first
    assert lib.resolve("gallery/b_second.mp4") == second


def test_posters_are_reused_and_default_video_is_configurable(
    tmp_path: Path, gallery_dir: Path
) -> None:
    lib = library(tmp_path, gallery_dir)
    poster = lib.data_dir / lib.gallery()[0].poster
    made = poster.stat().st_mtime_ns
    again = MediaLibrary(Settings(data=str(tmp_path / "data"), gallery=str(gallery_dir)))
    assert again.gallery() == lib.gallery()
    assert poster.stat().st_mtime_ns == made  # reused, not rewritten

    for name in ("b_second.mp4", "gallery/b_second.mp4"):
        settings = Settings(data=str(tmp_path / "data"), gallery=str(gallery_dir))
        settings.default_video = name
        assert MediaLibrary(settings).default_video().id == "gallery/b_second.mp4"
    settings.default_video = "missing.mp4"
    with pytest.raises(NotFoundError):
        MediaLibrary(settings).default_video()
    empty = library(tmp_path, tmp_path / "empty-gallery")
    assert empty.gallery() == []
    with pytest.raises(NotFoundError, match="empty"):
        empty.default_video()


def test_committed_gallery(tmp_path: Path) -> None:
    lib = library(tmp_path, REPO / "gallery")
    records = lib.gallery()
    assert 2 <= len(records) <= 3
    assert [r.id for r in records] == sorted(r.id for r in records)
    readme = (REPO / "gallery" / "README.md").read_text()
    total = 0
    for record in records:
        assert record.file.name in readme
        assert 24 <= record.fps <= 30 and 3 <= record.duration <= 5
        assert (record.width, record.height) in {(640, 360), (960, 540)}
        with av.open(str(record.file)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
        assert (lib.data_dir / record.poster).is_file()
        total += record.file.stat().st_size
    assert total < 2 * 1024**2


# -- resolve --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("video_id", "error"),
    [
        ("../etc/passwd", InvalidInputError),
        ("/etc/passwd", InvalidInputError),
        ("gallery/../x", InvalidInputError),
        ("gallery/../../etc/passwd", InvalidInputError),
        ("gallery\\a_first.mp4", InvalidInputError),
        ("gallery//a_first.mp4", InvalidInputError),
        ("gallery/a_first.mp4\x00", InvalidInputError),
        ("", InvalidInputError),
        ("x" * 600, InvalidInputError),
        ("gallery/broken.mp4", NotFoundError),
        ("gallery/notes.txt", NotFoundError),
        ("gallery/.hidden.mp4", NotFoundError),
        ("a_first.mp4", NotFoundError),
        ("uploads/notahash.mp4", NotFoundError),
        (f"uploads/{HEX64}.mp4", NotFoundError),
        (f"uploads/{HEX64.upper()}.mp4", NotFoundError),
        ("posters/x.jpg", NotFoundError),
        ("data/uploads", NotFoundError),
    ],
)
def test_resolve_refuses_unknown_and_traversal(
    uploaded: tuple[MediaLibrary, VideoRecord], video_id: str, error: type[Exception]
) -> None:
    lib, _ = uploaded
    with pytest.raises(error) as caught:
        lib.resolve(video_id)
    assert str(lib.data_dir) not in str(caught.value)


# -- uploads --------------------------------------------------------------------------------


def test_upload_is_transcoded_stored_and_deduplicated(
    uploaded: tuple[MediaLibrary, VideoRecord], bedroom_video: Path
) -> None:
    lib, record = uploaded
    digest = record.id.removeprefix("uploads/").removesuffix(".mp4")
    assert len(digest) == 64 and record.file == lib.uploads_dir / f"{digest}.mp4"
    assert (record.width, record.height, record.frame_count, record.fps) == (960, 540, 40, 30.0)
    stream, frames = read_frames(record.file)
    assert stream.codec_context.name == "h264"
    assert stream.codec_context.pix_fmt == "yuv420p"
    assert stream.average_rate == 30 and len(frames) == 40
    assert record.poster == f"posters/{digest}.jpg"
    assert (lib.data_dir / record.poster).is_file()
    assert lib.video_url(record) == f"/uploads/{digest}.mp4"
    assert lib.poster_url(record) == f"/posters/{digest}.jpg"

    stored = record.file.stat()
    with open(bedroom_video, "rb") as f:  # as Flask hands over a multipart file
        again = lib.ingest_upload(FileStorage(f), "copy.mp4", duration_time_sec=40 / 30)
    assert again == record
    # Keyed on the bytes sent, not on the (non-deterministic) encoder output: the stored file
    # is reused as it is, not transcoded again.
    assert record.file.stat().st_ino == stored.st_ino
    assert record.file.stat().st_mtime_ns == stored.st_mtime_ns
    assert [p.name for p in lib.uploads_dir.iterdir()] == [record.file.name]
    assert list(lib.tmp_dir.iterdir()) == []
    # A fresh library (a restart, another worker) finds the upload by its id.
    fresh = MediaLibrary(lib.settings)
    assert fresh.resolve(record.id) == record
    # ... with the sha256 of the bytes sent, which its prompts files name
    sent = hashlib.sha256(bedroom_video.read_bytes()).hexdigest()
    assert record.upload_sha256 == sent == fresh.resolve(record.id).upload_sha256


def test_upload_trims_and_keeps_a_constant_frame_rate(tmp_path: Path) -> None:
    lib = library(tmp_path)
    # 20 fps with one frame dropped after frame 9: the gap repeats frame 9.
    src = write_clip(tmp_path / "gappy.mp4", 30, fps=20, pts=lambda i: i if i < 10 else i + 1)
    whole = lib.ingest_upload(src.open("rb"), "gappy.mp4")
    _, frames = read_frames(whole.file)
    assert whole.frame_count == 31 and whole.fps == 20
    assert [grey_level(f) for f in frames[8:13]] == [8, 9, 9, 10, 11]

    trimmed = lib.ingest_upload(
        src.open("rb"), "gappy.mp4", start_time_sec=1.0, duration_time_sec=0.5
    )
    _, frames = read_frames(trimmed.file)
    assert trimmed.frame_count == 10
    assert [grey_level(f) for f in frames] == list(range(19, 29))
    # The same bytes trimmed differently are a different video.
    assert trimmed.id != whole.id
    again = lib.ingest_upload(
        src.open("rb"), "again.mp4", start_time_sec=1.0, duration_time_sec=0.5
    )
    assert again == trimmed
    # A stored file that was damaged (a crash, a full disk) is transcoded again, not served.
    trimmed.file.write_bytes(b"not a video")
    lib._uploads.clear()
    repaired = lib.ingest_upload(
        src.open("rb"), "gappy.mp4", start_time_sec=1.0, duration_time_sec=0.5
    )
    assert repaired.id == trimmed.id and repaired.frame_count == 10


def test_upload_applies_display_rotation(tmp_path: Path) -> None:
    lib = library(tmp_path)
    src = write_clip(tmp_path / "phone.mp4", 3, 64, 48, rotation=90)
    record = lib.ingest_upload(src.open("rb"), "phone.mp4")
    assert (record.width, record.height) == (48, 64)
    _, frames = read_frames(record.file)
    assert frames[0].shape == (64, 48, 3)
    # Stored top-left marker, turned 90° counter-clockwise for display: now bottom-left.
    assert frames[0][-6:, :6].mean() > 200 and frames[0][:6, :6].mean() < 100


def test_upload_scales_odd_sizes_to_even(tmp_path: Path) -> None:
    lib = library(tmp_path)
    src = write_clip(tmp_path / "odd.mkv", 3, 66, 50, container="matroska")
    record = lib.ingest_upload(src.open("rb"), "odd.mkv")
    assert record.width % 2 == 0 and record.height % 2 == 0


def _faststart_clip(tmp: Path) -> Path:
    """A 30-frame upload's transcoded file: its index (moov) is at the front."""
    lib = library(tmp / "faststart")
    return lib.ingest_upload(write_clip(tmp / "fs.mp4", 30).open("rb"), "fs.mp4").file


def _cut_mid_packet(tmp: Path) -> bytes:
    data = _faststart_clip(tmp).read_bytes()
    return data[: len(data) // 2]


def _cut_at_packet(tmp: Path) -> bytes:
    # Cut exactly where frame 15's data starts: the demuxer just ends, no decoder error.
    path = _faststart_clip(tmp)
    with av.open(str(path)) as container:
        positions = [p.pos for p in container.demux(video=0) if p.size]
    return path.read_bytes()[: positions[15]]


def _raw_h264(tmp: Path) -> bytes:
    # A raw H.264 stream has no header with a duration or frame count: only decoding tells.
    return write_clip(tmp / "raw.h264", 12, container="h264").read_bytes()


def _audio_only(tmp: Path) -> bytes:
    path = tmp / "audio.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        for i in range(4):
            frame.pts = i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path.read_bytes()


BAD_UPLOADS: dict[str, tuple[Callable[[Path, bytes], bytes], dict[str, Any], type, str]] = {
    "empty": (lambda t, b: b"", {}, VideoError, "empty"),
    "text": (lambda t, b: b"just some text\n" * 50, {}, VideoError, "not a readable video"),
    "truncated": (lambda t, b: b[: len(b) // 2], {}, VideoError, "not a readable video"),
    "cut-mid-packet": (lambda t, b: _cut_mid_packet(t), {}, VideoError, "cannot decode"),
    "cut-at-packet": (lambda t, b: _cut_at_packet(t), {}, VideoError, "truncated"),
    "audio-only": (lambda t, b: _audio_only(t), {}, VideoError, "no video stream"),
    "bytes": (lambda t, b: b, {"max_upload_bytes": 100_000}, LimitExceededError, "larger"),
    "frames": (lambda t, b: b, {"max_frames": 10}, LimitExceededError, "more than 10 frames"),
    "frames-raw": (lambda t, b: _raw_h264(t), {"max_frames": 5}, LimitExceededError, "5 frames"),
    "duration": (lambda t, b: b, {"max_duration_sec": 0.5}, LimitExceededError, "longer"),
    "side": (lambda t, b: b, {"max_side": 640}, LimitExceededError, "960x540"),
    "fps": (lambda t, b: b, {"max_fps": 24}, LimitExceededError, "frame rate"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_upload_is_refused_and_leaves_nothing(
    tmp_path: Path, bedroom_video: Path, case: str
) -> None:
    make, limits, error, words = BAD_UPLOADS[case]
    payload = make(tmp_path, bedroom_video.read_bytes())
    lib = library(tmp_path, **limits)
    with pytest.raises(error, match=words) as caught:
        lib.ingest_upload(io.BytesIO(payload), "upload.mp4")
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) not in message and "/tmp" not in message
    assert leftovers(lib) == []


@pytest.mark.parametrize(
    ("start", "duration", "error"),
    [
        (-1.0, None, InvalidInputError),
        (None, 0.0, InvalidInputError),
        (float("nan"), None, InvalidInputError),
        (None, float("inf"), InvalidInputError),
        (60.0, 1.0, VideoError),
    ],
)
def test_bad_trim_window(
    tmp_path: Path, start: float | None, duration: float | None, error: type[MattingError]
) -> None:
    lib = library(tmp_path)
    src = write_clip(tmp_path / "clip.mp4", 10)
    with pytest.raises(error):
        lib.ingest_upload(
            src.open("rb"), "clip.mp4", start_time_sec=start, duration_time_sec=duration
        )
    assert leftovers(lib) == []


# -- routes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(uploaded: tuple[MediaLibrary, VideoRecord]) -> FlaskClient:
    app = Flask(__name__)
    init_app(app, uploaded[0])
    return app.test_client()


def test_routes_serve_files_with_types_and_ranges(
    client: FlaskClient, uploaded: tuple[MediaLibrary, VideoRecord]
) -> None:
    lib, record = uploaded
    first = lib.gallery()[0]
    for url, file, mimetype in [
        (lib.video_url(first), first.file, "video/mp4"),
        (lib.poster_url(first), lib.data_dir / first.poster, "image/jpeg"),
        (lib.video_url(record), record.file, "video/mp4"),
        (lib.poster_url(record), lib.data_dir / record.poster, "image/jpeg"),
    ]:
        whole = client.get(url)
        assert whole.status_code == 200 and whole.mimetype == mimetype
        assert whole.data == file.read_bytes()
        part = client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.data == file.read_bytes()[100:200]
        assert part.headers["Content-Range"] == f"bytes 100-199/{file.stat().st_size}"


@pytest.mark.parametrize(
    "url",
    [
        "/gallery/missing.mp4",
        "/gallery/broken.mp4",
        "/gallery/notes.txt",
        "/gallery/../../etc/passwd",
        "/gallery/%2e%2e/%2e%2e/etc/passwd",
        "/gallery/..%2f..%2fetc%2fpasswd",
        "/posters/../../etc/passwd",
        "/posters/missing.jpg",
        "/posters/.poster-x.jpg",
        "/uploads/notahash.mp4",
        f"/uploads/{HEX64}.mp4",
        "/uploads/%2e%2e/uploads",
    ],
)
def test_routes_answer_404_for_missing_and_traversal(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert response.mimetype == "application/json" and len(response.data) < 400
    assert response.get_json()["error"]["code"] == "NOT_FOUND"


def test_upload_served_after_its_file_is_gone(tmp_path: Path, bedroom_video: Path) -> None:
    lib = library(tmp_path)
    record = lib.ingest_upload(write_clip(tmp_path / "c.mp4", 3).open("rb"), "c.mp4")
    app = Flask(__name__)
    init_app(app, lib)
    os.remove(record.file)
    assert app.test_client().get(lib.video_url(record)).status_code == 404
    with pytest.raises(NotFoundError):
        MediaLibrary(lib.settings).resolve(record.id)
