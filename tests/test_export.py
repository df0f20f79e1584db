"""Exports, decoded back with PyAV/Pillow and compared to the mattes that went in.

Most tests use a small synthetic source made here with PyAV: 65x47 (odd on purpose), 12 frames
of lossless PNG-in-MOV video with irregular timestamps (variable frame rate) and an AAC track,
so colours, alpha, timestamps and audio can all be checked exactly. One test exports a real
shared video (01_dog.mp4, H.264 720p with AAC) to check frame rate and audio on a real file.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from sam2_matting.errors import CancelledError, FrameIndexError, InvalidInputError, VideoError
from sam2_matting.export import (
    EXPORT_FORMATS,
    export_video,
    frame_name,
    get_format,
    open_writer,
    parse_background,
    parse_colour,
)
from sam2_matting.export.render import composite_over, foreground, pad_to_even, premultiply
from sam2_matting.video import open_video

W, H, N = 65, 47, 12
TIME_BASE = Fraction(1, 50)
PTS = [0, 2, 4, 6, 10, 12, 14, 16, 18, 20, 24, 26]  # in 1/50 s: 25 fps with two gaps
MISSING = 3  # the frame the mattes leave out (alpha 0)
SAMPLE_RATE = 44100
# Alpha error bounds (8-bit levels) of the lossy formats. Measured here on these mattes (soft
# disc, 8 px ramp, 65x47): VP9 crf 32 max 15, 99th percentile 6, mean 0.53; grey H.264 crf 12
# max 9, p99 5, mean 0.55. On bedroom.mp4 (960x540, 12 px ramp): VP9 max 50, p99.9 4, mean 0.04;
# H.264 max 11, p99.9 4, mean 0.17. VP9's rare outliers sit on moving edges.
VP9_MAX, VP9_P99, VP9_MEAN = 32, 8, 1.0
H264_ALPHA_MAX, H264_ALPHA_P99, H264_ALPHA_MEAN = 24, 8, 1.0
COLOUR_MEAN = 4.0  # H.264 crf 18 4:2:0 on these noisy 65x47 frames: measured <= 3


def _rgb_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = []
    for i in range(N):  # smooth gradients plus a little noise: realistic for lossy codecs
        base = np.stack([(xx * 3 + i * 5) % 256, (yy * 5) % 256, (xx + yy + 40 * i) % 256], -1)
        frames.append((base + rng.integers(0, 8, base.shape)).clip(0, 255).astype(np.uint8))
    return frames


def _mattes() -> dict[int, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W]
    out = {}
    for i in range(N):
        if i == MISSING:
            continue
        distance = np.hypot(xx - 20 - 2 * i, yy - 23) - 14
        out[i] = np.clip(255 * (0.5 - distance / 8), 0, 255).round().astype(np.uint8)
    return out


RGB = _rgb_frames()
MATTES = _mattes()


def _alpha(i: int) -> np.ndarray:
    return MATTES.get(i, np.zeros((H, W), np.uint8))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """src.mov: PNG video (lossless RGB), 65x47, VFR timestamps, AAC stereo 44.1 kHz."""
    path = tmp_path_factory.mktemp("export-src") / "src.mov"
    with av.open(str(path), "w") as out:
        video = out.add_stream("png", rate=25)
        video.width, video.height, video.pix_fmt = W, H, "rgb24"
        video.time_base = video.codec_context.time_base = TIME_BASE
        audio = out.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "stereo"
        t = np.arange(int(SAMPLE_RATE * 0.56)) / SAMPLE_RATE
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        samples = np.stack([wave, wave])  # planar stereo
        for start in range(0, samples.shape[1], 1024):
            chunk = np.ascontiguousarray(samples[:, start : start + 1024])
            sound = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            sound.sample_rate, sound.pts = SAMPLE_RATE, start
            out.mux(audio.encode(sound))
        out.mux(audio.encode(None))
        for rgb, pts in zip(RGB, PTS, strict=True):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, TIME_BASE
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def _export(source: Path, out: Path, fmt: str, **kwargs: Any) -> Path:
    """Export with the source colour: these tests check the writers' fidelity to it."""
    kwargs.setdefault("foreground", "source")
    return export_video(source, MATTES, out, fmt, **kwargs)


def _video_frames(path: Path) -> list[Any]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _times(frames: list[Any]) -> list[float]:
    return [float(f.pts * f.time_base) for f in frames]


def _audio_packets(path: Path) -> tuple[str, list[bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        data = [bytes(p) for p in container.demux(stream) if p.size]
        return stream.codec_context.name, data


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or ".old" in p.name)


# -- formats, options, pixel maths -------------------------------------------------------------


def test_format_table_names_extensions_and_mime_types() -> None:
    assert set(EXPORT_FORMATS) == {
        "png", "png-zip", "prores", "webm", "alpha", "composite", "foreground",
    }  # fmt: skip
    assert (get_format("PRORES").extension, get_format("prores").mime_type) == (
        ".mov",
        "video/quicktime",
    )
    assert get_format("webm").mime_type == "video/webm"
    assert get_format("png").directory and get_format("png-zip").mime_type == "application/zip"
    assert {f.mime_type for f in EXPORT_FORMATS.values() if f.extension == ".mp4"} == {"video/mp4"}
    with pytest.raises(InvalidInputError, match="unknown export format"):
        get_format("gif")


def test_colours_parse_in_every_documented_form() -> None:
    for text in ("#00ff00", "#0f0", "0,255,0", " 0 , 255 , 0 ", "rgb(0,255,0)", "lime"):
        assert parse_colour(text) == (0, 255, 0), text
    assert parse_background(None).colour == (0, 255, 0)
    assert parse_background((1, 2, 3)).colour == (1, 2, 3)
    for bad in ("0,256,0", "nonsense", "#12345"):
        with pytest.raises(InvalidInputError):
            parse_colour(bad)
    with pytest.raises(InvalidInputError):
        parse_background((0, 300, 0))


def test_pixel_maths_round_to_nearest() -> None:
    rgb = np.array([[[255, 128, 1]]], np.uint8)
    alpha = np.array([[128]], np.uint8)
    assert premultiply(rgb, alpha).tolist() == [[[128, 64, 1]]]
    background = np.array([[[0, 0, 255]]], np.uint8)
    assert composite_over(rgb, alpha, background).tolist() == [[[128, 64, 128]]]
    zero = np.zeros((1, 1), np.uint8)
    assert foreground(rgb, zero, premultiplied=False).tolist() == [[[0, 0, 0]]]
    assert foreground(rgb, alpha, premultiplied=False).tolist() == rgb.tolist()
    odd = np.arange(15, dtype=np.uint8).reshape(3, 5)
    padded = pad_to_even(odd)
    assert padded.shape == (4, 6)
    assert (padded[:3, :5] == odd).all() and (padded[3, :5] == odd[2]).all()
    assert (padded[:3, 5] == odd[:, 4]).all()


def test_options_that_do_not_apply_are_refused(source: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="premultiplied"):
        _export(source, tmp_path / "a.mp4", "composite", premultiplied=True)
    with pytest.raises(InvalidInputError, match="background"):
        _export(source, tmp_path / "a.mov", "prores", background="#ff0000")
    with pytest.raises(InvalidInputError, match="neither a colour"):
        _export(source, tmp_path / "a.mp4", "composite", background="no-such-file.png")
    with pytest.raises(VideoError):
        _export(tmp_path / "missing.mp4", tmp_path / "a.mov", "prores")
    with pytest.raises(InvalidInputError, match="source video itself"):
        _export(source, source, "prores")
    assert list(tmp_path.iterdir()) == []


# -- lossless: PNG -----------------------------------------------------------------------------


def test_png_sequence_is_exact(source: Path, tmp_path: Path) -> None:
    out = _export(source, tmp_path / "seq", "png")
    assert sorted(p.name for p in out.iterdir()) == [frame_name(i) for i in range(N)]
    for i in range(N):
        with Image.open(out / frame_name(i)) as image:
            assert image.mode == "RGBA"
            rgba = np.asarray(image)
        assert (rgba[..., :3] == RGB[i]).all(), i
        assert (rgba[..., 3] == _alpha(i)).all(), i
    assert (np.asarray(Image.open(out / frame_name(MISSING)))[..., 3] == 0).all()
    assert _leftovers(tmp_path) == []


def test_png_zip_premultiplied_is_exact(source: Path, tmp_path: Path) -> None:
    out = _export(source, tmp_path / "seq.zip", "png-zip", premultiplied=True)
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [frame_name(i) for i in range(N)]
        for i in range(N):
            rgba = np.asarray(Image.open(io.BytesIO(archive.read(frame_name(i)))))
            assert (rgba[..., :3] == premultiply(RGB[i], _alpha(i))).all(), i
            assert (rgba[..., 3] == _alpha(i)).all(), i


def test_png_export_replaces_a_sequence_but_not_other_folders(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "seq"
    target.mkdir()
    (target / "00999.png").write_bytes(b"old")
    _export(source, target, "png")
    assert len(list(target.iterdir())) == N and not (target / "00999.png").exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="not replacing"):
        _export(source, precious, "png")
    assert (precious / "notes.txt").read_text() == "keep me"
    assert _leftovers(tmp_path) == []


# -- ProRes 4444 -------------------------------------------------------------------------------


def _prores_alpha(frame: Any) -> np.ndarray:
    """The alpha plane of a yuva444p12le frame as 8 bits: round(a12 * 255 / 4095)."""
    assert frame.format.name == "yuva444p12le"
    plane = frame.planes[3]
    a12 = np.frombuffer(plane, np.uint16).reshape(frame.height, plane.line_size // 2)
    a12 = a12[:, : frame.width].astype(np.uint32)
    return ((a12 * 255 + 2047) // 4095).astype(np.uint8)


def test_prores_4444_alpha_within_one_level_with_audio_and_timestamps(
    source: Path, tmp_path: Path
) -> None:
    out = _export(source, tmp_path / "clip.mov", "prores")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "prores"
        assert stream.codec_context.profile == "4444"
        assert (stream.width, stream.height) == (W, H)  # odd size kept as is
    frames = _video_frames(out)
    assert len(frames) == N
    assert _times(frames) == [float(p * TIME_BASE) for p in PTS]
    for i, frame in enumerate(frames):
        alpha_error = np.abs(_prores_alpha(frame).astype(int) - _alpha(i))
        assert alpha_error.max() <= 1, i
        rgb = frame.to_ndarray(format="rgb24")
        assert np.abs(rgb.astype(int) - RGB[i]).mean() < 1.0, i
    assert _audio_packets(out) == _audio_packets(source)  # copied, not re-encoded


# -- VP9 WebM with alpha -----------------------------------------------------------------------


def _vp9_alpha_frames(path: Path) -> list[Any]:
    """Decode with libvpx-vp9, which (unlike FFmpeg's vp9 decoder) returns the alpha."""
    decoder = av.codec.CodecContext.create("libvpx-vp9", "r")
    frames = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            frames.extend(decoder.decode(packet))
    return frames


def test_webm_vp9_alpha_within_bound_with_opus_audio(source: Path, tmp_path: Path) -> None:
    out = _export(source, tmp_path / "clip.webm", "webm")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9"
        assert stream.metadata.get("ALPHA_MODE") == "1"
        assert (stream.width, stream.height) == (W, H)
        audio = container.streams.audio[0]
        assert (audio.codec_context.name, audio.codec_context.sample_rate) == ("opus", 48000)
        seconds = (
            sum(f.samples for p in container.demux(audio) for f in p.decode())
            / audio.codec_context.sample_rate
        )
    assert abs(seconds - 0.56) < 0.05  # the whole AAC track, transcoded
    frames = _vp9_alpha_frames(out)
    assert len(frames) == N
    assert _times(_video_frames(out)) == pytest.approx([float(p * TIME_BASE) for p in PTS])
    errors = []
    for i, frame in enumerate(frames):
        assert frame.format.name == "yuva420p"
        rgba = frame.to_ndarray(format="rgba")
        errors.append(np.abs(rgba[..., 3].astype(int) - _alpha(i)))
        assert np.abs(rgba[..., :3].astype(int) - RGB[i]).mean() < 6.0, i
    everything = np.concatenate([e.ravel() for e in errors])
    assert everything.max() <= VP9_MAX
    assert np.percentile(everything, 99) <= VP9_P99
    assert everything.mean() <= VP9_MEAN


# -- H.264: alpha, composite, foreground ---------------------------------------------------------


def test_alpha_mp4_is_the_matte_in_grey_padded_to_even(source: Path, tmp_path: Path) -> None:
    out = _export(source, tmp_path / "pha.mp4", "alpha")
    frames = _video_frames(out)
    assert len(frames) == N
    assert (frames[0].width, frames[0].height) == (W + 1, H + 1)  # odd: edge repeated
    assert _times(frames) == [float(p * TIME_BASE) for p in PTS]
    errors = []
    for i, frame in enumerate(frames):
        grey = frame.to_ndarray(format="gray").astype(int)
        errors.append(np.abs(grey[:H, :W] - _alpha(i)))
        assert np.abs(grey[:H, W] - grey[:H, W - 1]).max() <= H264_ALPHA_MAX  # copy of the edge
    everything = np.concatenate([e.ravel() for e in errors])
    assert everything.max() <= H264_ALPHA_MAX
    assert np.percentile(everything, 99) <= H264_ALPHA_P99
    assert everything.mean() <= H264_ALPHA_MEAN
    assert errors[MISSING].max() <= 2  # no matte: alpha 0
    assert _audio_packets(out) == _audio_packets(source)


def test_composite_over_a_colour(source: Path, tmp_path: Path) -> None:
    out = _export(source, tmp_path / "com.mp4", "composite", background="#0000ff")
    frames = _video_frames(out)
    assert len(frames) == N
    blue = np.zeros((H, W, 3), np.uint8)
    blue[..., 2] = 255
    for i, frame in enumerate(frames):
        rgb = frame.to_ndarray(format="rgb24")[:H, :W].astype(int)
        expected = composite_over(RGB[i], _alpha(i), blue)
        assert np.abs(rgb - expected).mean() < COLOUR_MEAN, i
        # well outside the object the picture is the flat background, BT.709 round trip
        assert np.abs(rgb[:4, -10:] - (0, 0, 255)).max() <= 6, i
    assert _audio_packets(out)[0] == "aac"


def test_foreground_premultiplied(source: Path, tmp_path: Path) -> None:
    out = _export(source, tmp_path / "fgr.mp4", "foreground", premultiplied=True, audio=False)
    frames = _video_frames(out)
    assert len(frames) == N
    with av.open(str(out)) as container:
        assert not container.streams.audio
    for i, frame in enumerate(frames):
        rgb = frame.to_ndarray(format="rgb24")[:H, :W].astype(int)
        assert np.abs(rgb - premultiply(RGB[i], _alpha(i))).mean() < COLOUR_MEAN, i


def test_backgrounds_cover_without_stretching_and_videos_loop(tmp_path: Path) -> None:
    wide = np.zeros((H, 2 * W, 3), np.uint8)
    wide[:, :W] = (255, 0, 0)
    wide[:, W:] = (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    spec = parse_background(str(tmp_path / "wide.png"))
    assert spec.kind == "image"
    with spec.open(W, H) as background:
        frame = background.next_frame()
    assert frame.shape == (H, W, 3)  # scale 1, centre crop: red left of centre, blue right
    assert tuple(frame[H // 2, 2]) == (255, 0, 0) and tuple(frame[H // 2, W - 3]) == (0, 0, 255)

    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    with av.open(str(tmp_path / "bg.mp4"), "w") as out:  # 3 frames, half the output size
        stream = out.add_stream("libx264", rate=10, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv444p"
        for colour in colours:
            image = np.empty((24, 32, 3), np.uint8)
            image[:] = colour
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    spec = parse_background(tmp_path / "bg.mp4")
    assert spec.kind == "video"
    with spec.open(W, H) as background:
        seen = [background.next_frame() for _ in range(7)]
    assert all(f.shape == (H, W, 3) for f in seen)
    for i, frame in enumerate(seen):  # loops: red, green, blue, red, ...
        expected = np.array(colours[i % 3])
        assert np.abs(frame[H // 2, W // 2].astype(int) - expected).max() <= 6, i


def test_composite_over_a_video_background(source: Path, tmp_path: Path) -> None:
    with av.open(str(tmp_path / "bg.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = W + 1, H + 1, "yuv444p"
        image = np.full((H + 1, W + 1, 3), (200, 30, 90), np.uint8)
        for _ in range(5):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    out = _export(source, tmp_path / "com.mp4", "composite", background=tmp_path / "bg.mp4")
    frames = _video_frames(out)
    assert len(frames) == N  # the 5-frame background looped
    rgb = frames[MISSING].to_ndarray(format="rgb24")[:H, :W].astype(int)
    assert np.abs(rgb - np.array([200, 30, 90])).mean() < COLOUR_MEAN


# -- timing, audio on a real video ------------------------------------------------------------


def test_fps_override_retimes_frames_and_drops_audio(source: Path, tmp_path: Path) -> None:
    out = _export(source, tmp_path / "pha.mp4", "alpha", fps=12)
    frames = _video_frames(out)
    assert _times(frames) == pytest.approx([i / 12 for i in range(N)])
    with av.open(str(out)) as container:
        assert container.streams.video[0].average_rate == 12
        assert not container.streams.audio


def test_opus_audio_is_transcoded_to_aac_for_mp4(source: Path, tmp_path: Path) -> None:
    webm = _export(source, tmp_path / "clip.webm", "webm")  # VP9 + Opus: a WebM source
    totals: list[int] = []
    out = export_video(
        webm, MATTES, tmp_path / "pha.mp4", "alpha", progress=lambda d, t: totals.append(t)
    )
    assert totals == [N] * N  # WebM stores no frame count: counted by a demux pass
    assert len(_video_frames(out)) == N
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        samples = sum(f.samples for p in container.demux(audio) for f in p.decode())
        seconds = samples / audio.codec_context.sample_rate
    assert abs(seconds - 0.56) < 0.06


def test_real_video_keeps_frame_rate_count_and_audio(shared_videos: Path, tmp_path: Path) -> None:
    source = shared_videos / "01_dog.mp4"
    with av.open(str(source)) as container:
        rate = container.streams.video[0].average_rate
        count = sum(1 for p in container.demux(video=0) if p.size)
    calls: list[tuple[int, int]] = []
    out = export_video(
        source, iter([]), tmp_path / "pha.mp4", "alpha", progress=lambda d, t: calls.append((d, t))
    )
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.average_rate) == (1280, 720, rate)
        assert rate == Fraction(30000, 1001)
        assert stream.frames == count == 289
    assert calls[-1] == (289, 289) and len(calls) == 289
    assert _audio_packets(out) == _audio_packets(source)


def test_frame_folder_source_is_read_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(RGB[i]).save(folder / f"{i}.png")
    out = export_video(folder, {1: MATTES[1]}, tmp_path / "seq.zip", "png-zip", foreground="source")
    with zipfile.ZipFile(out) as archive:
        rgba = [np.asarray(Image.open(io.BytesIO(archive.read(frame_name(i))))) for i in range(3)]
    assert all((rgba[i][..., :3] == RGB[i]).all() for i in range(3))
    assert (rgba[1][..., 3] == MATTES[1]).all() and (rgba[0][..., 3] == 0).all()


def test_rotation_metadata_is_applied_like_open_video(tmp_path: Path) -> None:
    source = tmp_path / "turned.mov"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
        stream.set_display_rotation(90)
        for i in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(RGB[i], format="rgb24")))
        container.mux(stream.encode(None))
    with open_video(source) as video:  # the frames a session computes its mattes on
        shown = [video.get_frame(i) for i in range(3)]
    assert shown[0].shape == (W, H, 3)  # portrait: turned by 90 degrees
    matte = np.full((W, H), 200, np.uint8)
    out = export_video(
        source, [(1, matte)], tmp_path / "turned.zip", "png-zip", foreground="source"
    )
    with zipfile.ZipFile(out) as archive:
        rgba = [np.asarray(Image.open(io.BytesIO(archive.read(frame_name(i))))) for i in range(3)]
    assert all((rgba[i][..., :3] == shown[i]).all() for i in range(3))
    assert (rgba[1][..., 3] == 200).all()
    pha = export_video(source, [(1, matte)], tmp_path / "turned.mp4", "alpha")
    frames = _video_frames(pha)
    assert (frames[0].width, frames[0].height, frames[0].rotation) == (H + 1, W + 1, 0)


# -- cancel and failure leave nothing ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "png-zip", "prores", "webm", "composite"])
def test_cancel_leaves_nothing_and_keeps_the_old_output(
    source: Path, tmp_path: Path, fmt: str
) -> None:
    spec = get_format(fmt)
    target = tmp_path / f"out{spec.extension}"
    if not spec.directory:
        target.write_bytes(b"previous export")
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        assert total == N
        if done == 4:
            cancel.set()

    with pytest.raises(CancelledError):
        _export(source, target, fmt, cancel=cancel, progress=progress)
    assert _leftovers(tmp_path) == []
    if spec.directory:
        assert not target.exists()
    else:
        assert target.read_bytes() == b"previous export"


class _Token:
    cancelled = True


def test_cancel_token_with_cancelled_property(source: Path, tmp_path: Path) -> None:
    with pytest.raises(CancelledError):
        _export(source, tmp_path / "x.webm", "webm", cancel=_Token())
    assert list(tmp_path.iterdir()) == []


def _bad_mattes() -> Iterator[tuple[int, np.ndarray]]:
    yield 0, MATTES[0]
    yield 1, np.zeros((H, W + 1), np.uint8)


@pytest.mark.parametrize(
    ("mattes", "error", "match"),
    [
        (_bad_mattes, InvalidInputError, "must be uint8"),
        (lambda: iter([(2, MATTES[2]), (1, MATTES[1])]), InvalidInputError, "increasing"),
        (lambda: iter([(N, MATTES[0])]), FrameIndexError, "has 12 frames"),
        (lambda: iter([(0, MATTES[0].astype(np.float32))]), InvalidInputError, "uint8"),
    ],
)
def test_bad_mattes_fail_and_leave_nothing(
    source: Path, tmp_path: Path, mattes: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        export_video(source, mattes(), tmp_path / "x.mov", "alpha")
    assert list(tmp_path.iterdir()) == []


def test_open_writer_streams_checks_pts_and_aborts_cleanly(tmp_path: Path) -> None:
    target = tmp_path / "w.mp4"
    writer = open_writer("composite", target, W, H, fps=10, background="black")
    writer.write(RGB[0], MATTES[0], pts=0)
    with pytest.raises(InvalidInputError, match="increase"):
        writer.write(RGB[1], MATTES[1], pts=0)
    with pytest.raises(InvalidInputError, match="uint8"):
        writer.write(RGB[1][:, :-1], MATTES[1])
    assert not target.exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == []

    with open_writer("composite", target, W, H, fps=10, background="black") as writer:
        for i in range(3):
            writer.write(RGB[i], _alpha(i))
    assert len(_video_frames(target)) == 3 and _leftovers(tmp_path) == []
    with pytest.raises(VideoError, match="no frames"), open_writer("png-zip", target, W, H):
        pass
    assert len(_video_frames(target)) == 3  # the earlier output survives a failed one
