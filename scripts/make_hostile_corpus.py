"""Write the hostile and broken input corpus in tests/fixtures/hostile/ (and its manifest.json).

    .venv/bin/python scripts/make_hostile_corpus.py           # rewrite the corpus
    .venv/bin/python scripts/make_hostile_corpus.py --check   # exit 1 if manifest.json is stale

Every file is made here, from nothing: PyAV encodes small synthetic clips (a moving square on
a gradient, 64x48 unless the case needs otherwise), and the lying containers are valid MP4s
whose header boxes (``mvhd``, ``tkhd``, ``mdhd``, ``stsd``, ``stts``) are patched in place.
The two files that test what "frame i" means (``cover_art_first.mp4``, ``corrupt_packet.mp4``)
show frame ``i`` as the grey level of :func:`indexed_picture`, so a reader that numbers frames
differently is caught by the pixels (``tests/test_frame_index.py``).
Nothing is fetched. Every name ends in ``.mp4``, whatever the content, because that is what a
hostile client would send and what the gallery scan picks up.

``manifest.json`` says, for each file, what it is and the expected outcome on each path:

- ``upload``: ``uploadVideo`` through the service (default limits);
- ``session``: the file put in the gallery, then ``startSession`` on it;
- ``matte``: ``sam2-matting matte FILE --point …`` (``--max-frames 2``).

An outcome is ``{"ok": true, ...facts}`` or ``{"ok": false, "code": CODE}`` (the GraphQL
code, or ``"exit"`` for the CLI's exit status). The tests in ``tests/test_reliability_corpus.py``
check every file against it; ``docs/reliability.md`` lists the answers.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "fixtures" / "hostile"
W, H = 64, 48

OK: dict[str, Any] = {"ok": True}


def reject(code: str) -> dict[str, Any]:
    return {"ok": False, "code": code}


def accept(**facts: Any) -> dict[str, Any]:
    return {"ok": True, **facts}


# -- synthetic frames and encoding ---------------------------------------------------------------


def picture(i: int, width: int = W, height: int = H) -> np.ndarray:
    """Frame ``i``: a horizontal gradient with a white square moving right."""
    x = np.linspace(0, 200, width, dtype=np.float32)
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = x.astype(np.uint8)[None, :]
    rgb[..., 1] = 60
    rgb[..., 2] = (200 - x).astype(np.uint8)[None, :]
    side = max(2, min(width, height) // 3)
    x0 = (4 + 3 * i) % max(1, width - side)
    y0 = (height - side) // 2
    rgb[y0 : y0 + side, x0 : x0 + side] = 255
    return rgb


def indexed_picture(i: int, width: int = W, height: int = H) -> np.ndarray:
    """Frame ``i`` of the frame-numbering cases: grey level ``GREY0 + GREY_STEP * i`` with a
    white square moving right (something to click on)."""
    rgb = np.full((height, width, 3), GREY0 + GREY_STEP * i, np.uint8)
    side = max(2, min(width, height) // 3)
    x0 = (4 + 3 * i) % max(1, width - side)
    y0 = (height - side) // 2
    rgb[y0 : y0 + side, x0 : x0 + side] = 255
    return rgb


GREY0, GREY_STEP = 20, 20  # 10 frames: grey 20 .. 200, far apart after any lossy codec


def encode(
    path: Path,
    frames: int,
    *,
    size: tuple[int, int] = (W, H),
    rate: int | Fraction = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: float | None = None,
    fmt: str | None = None,
    options: dict[str, str] | None = None,
    audio: bool = False,
    draw: Callable[[int, int, int], np.ndarray] | None = None,
) -> Path:
    """Encode ``frames`` synthetic frames; ``pts`` (in ``time_base``) makes the rate variable;
    ``draw(i, width, height)`` makes frame ``i`` (default :func:`picture`)."""
    width, height = size
    # bitexact: no random ids or version strings, so the corpus is the same on every run.
    with av.open(str(path), "w", format=fmt or "mp4", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"threads": "1", **(options or {})}
        if codec == "libx264":
            stream.options.setdefault("preset", "veryfast")
            stream.options.setdefault("crf", "30")
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=8000, layout="mono")
        for i in range(frames):
            rgb = (draw or picture)(i, width, height)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            else:
                frame.pts = i
                frame.time_base = Fraction(1, 1) / Fraction(rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            _write_tone(out, sound, seconds=frames / float(rate))
    return path


def _write_tone(out: Any, stream: Any, seconds: float) -> None:
    samples = int(8000 * seconds)
    t = np.arange(samples, dtype=np.float32) / 8000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    step = 1024
    for start in range(0, samples, step):
        chunk = tone[None, start : start + step]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate = 8000
        frame.pts = start
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


# -- MP4 box patching ----------------------------------------------------------------------------

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta", b"dinf"}


def boxes(data: bytes | bytearray, start: int = 0, end: int | None = None) -> list[Any]:
    """(type, offset, size) of every box, depth first, descending into container boxes."""
    end = len(data) if end is None else end
    found = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            break
        found.append((kind, pos, size))
        if kind in CONTAINERS:
            found.extend(boxes(data, pos + header, pos + size))
        elif kind == b"stsd":
            found.extend(boxes(data, pos + 16, pos + size))  # version/flags + entry count
        pos += size
    return found


def find(data: bytes | bytearray, kind: bytes, nth: int = 0) -> int:
    """Offset of the ``nth`` box of ``kind`` (its size field)."""
    offsets = [pos for k, pos, _ in boxes(data) if k == kind]
    if len(offsets) <= nth:
        raise SystemExit(f"no {kind!r} box #{nth} to patch")
    return offsets[nth]


def patch_durations(data: bytearray, value: int) -> None:
    """Set the movie, track and media durations (version 0 boxes, 32-bit) to ``value``."""
    for kind, field in ((b"mvhd", 24), (b"mdhd", 24), (b"tkhd", 28)):
        for k, pos, _ in boxes(data):
            if k == kind:
                assert data[pos + 8] == 0, f"{kind!r} is not version 0"
                struct.pack_into(">I", data, pos + field, value)


def patch_size(data: bytearray, width: int, height: int) -> None:
    """Claim ``width``x``height`` in the track header and in the sample description."""
    tkhd = find(data, b"tkhd")
    struct.pack_into(">II", data, tkhd + 84, width << 16, height << 16)
    avc1 = find(data, b"avc1")
    struct.pack_into(">HH", data, avc1 + 32, width, height)


def patch_frame_count(data: bytearray, count: int) -> None:
    """Claim ``count`` samples in the time-to-sample table (its first entry)."""
    stts = find(data, b"stts")
    struct.pack_into(">I", data, stts + 16, count)


def move_udta_first(data: bytearray) -> None:
    """Reorder the children of ``moov``: ``mvhd``, then ``udta``, then the rest (same size)."""
    moov = find(data, b"moov")
    (size,) = struct.unpack_from(">I", data, moov)
    children = []
    pos = moov + 8
    while pos < moov + size:
        (child_size,) = struct.unpack_from(">I", data, pos)
        children.append((bytes(data[pos + 4 : pos + 8]), bytes(data[pos : pos + child_size])))
        pos += child_size
    rank = {b"mvhd": 0, b"udta": 1}
    children.sort(key=lambda child: rank.get(child[0], 2))  # stable: the traks keep their order
    data[moov + 8 : moov + size] = b"".join(body for _, body in children)


def patch_timescale(data: bytearray, factor: int) -> None:
    """Multiply the media timescale: every timestamp becomes ``factor`` times denser."""
    mdhd = find(data, b"mdhd")
    (scale,) = struct.unpack_from(">I", data, mdhd + 20)
    struct.pack_into(">I", data, mdhd + 20, scale * factor)


# -- the cases -------------------------------------------------------------------------------


def case_valid(path: Path) -> None:
    encode(path, 10)


def case_zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def case_truncated(path: Path) -> None:
    # Index (moov) at the end, cut in half: no index, nothing readable.
    tmp = encode(path.with_suffix(".tmp"), 20)
    data = tmp.read_bytes()
    tmp.unlink()
    path.write_bytes(data[: len(data) // 2])


def case_truncated_faststart(path: Path) -> None:
    # Index first, media data cut: the container promises 30 frames and holds about half.
    tmp = encode(path.with_suffix(".tmp"), 30, options={"movflags": "+faststart"})
    data = tmp.read_bytes()
    tmp.unlink()
    path.write_bytes(data[: len(data) * 55 // 100])


def case_text(path: Path) -> None:
    path.write_bytes(b"this is not a video, it is a text file renamed .mp4\n" * 20)


def case_html(path: Path) -> None:
    path.write_bytes(b"<!doctype html><html><body><script>alert(1)</script></body></html>\n")


def case_random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(8).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def case_png(path: Path) -> None:
    from PIL import Image

    Image.fromarray(picture(0)).save(path, format="PNG")


def case_jpeg(path: Path) -> None:
    from PIL import Image

    Image.fromarray(picture(0)).save(path, format="JPEG", quality=80)


def case_lie_duration(path: Path) -> None:
    encode(path, 10)
    data = bytearray(path.read_bytes())
    patch_durations(data, 0xFFFFFFF0)  # about 50 days at 1 kHz, 5 days at the media's 10 kHz
    path.write_bytes(bytes(data))


def case_lie_size(path: Path) -> None:
    encode(path, 10)
    data = bytearray(path.read_bytes())
    patch_size(data, 60000, 60000)
    path.write_bytes(bytes(data))


def case_lie_frame_count(path: Path) -> None:
    encode(path, 10)
    data = bytearray(path.read_bytes())
    patch_frame_count(data, 1_000_000)
    path.write_bytes(bytes(data))


def case_lie_fps(path: Path) -> None:
    # The same 10 frames, timestamps 1000x denser: 10,000 frames a second.
    encode(path, 10)
    data = bytearray(path.read_bytes())
    patch_timescale(data, 1000)
    path.write_bytes(bytes(data))


def case_huge_dimensions(path: Path) -> None:
    # Really 8192x16 pixels (over the 4096 limit): a flat picture compresses to nothing.
    encode(path, 2, size=(8192, 16))


def case_tiny_dimensions(path: Path) -> None:
    encode(path, 6, size=(2, 2), codec="libx264", pix_fmt="yuv444p")


def case_odd_dimensions(path: Path) -> None:
    encode(path, 6, size=(33, 17), pix_fmt="yuv444p")


def case_vfr(path: Path) -> None:
    tb = Fraction(1, 1000)
    pts = [0, 40, 80, 200, 210, 220, 500, 540, 1000, 1033, 1066, 1400]  # ms, irregular
    encode(path, len(pts), pts=pts, time_base=tb, rate=25)


def case_rotated(path: Path) -> None:
    encode(path, 8, size=(64, 48), rotation=-90)  # portrait phone clip: shows as 48x64


def case_10bit(path: Path) -> None:
    encode(path, 8, pix_fmt="yuv420p10le")


def case_yuv444(path: Path) -> None:
    encode(path, 8, pix_fmt="yuv444p")


def case_vp9_in_mp4_name(path: Path) -> None:
    encode(path, 8, codec="libvpx-vp9", fmt="webm", options={"deadline": "realtime"})


def case_with_audio(path: Path) -> None:
    encode(path, 10, audio=True)


def case_audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=8000, layout="mono")
        _write_tone(out, sound, seconds=1.0)


def case_single_frame(path: Path) -> None:
    encode(path, 1)


def case_very_long(path: Path) -> None:
    # 15 minutes at 2 fps: over the 600 s duration limit, 1800 frames of 16x16.
    encode(path, 1800, size=(16, 16), rate=2, options={"preset": "ultrafast", "crf": "51"})


def case_too_many_frames(path: Path) -> None:
    # 10,500 frames at 120 fps (87.5 s): under the duration limit, over the frame limit.
    encode(path, 10_500, size=(16, 16), rate=120, options={"preset": "ultrafast", "crf": "51"})


def case_corrupt_payload(path: Path) -> None:
    # A valid index over media data overwritten with noise: every frame is damaged.
    encode(path, 10, options={"movflags": "+faststart"})
    data = bytearray(path.read_bytes())
    mdat = find(data, b"mdat")
    size = struct.unpack_from(">I", data, mdat)[0]
    noise = np.random.default_rng(3).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    data[mdat + 8 : mdat + size] = noise
    path.write_bytes(bytes(data))


def case_raw_h264(path: Path) -> None:
    encode(path, 8, fmt="h264")  # an elementary stream: no container, no timestamps


def case_cover_art_first(path: Path) -> None:
    # Stream 0 is a JPEG cover (disposition attached_pic), stream 1 the 10-frame H.264 video.
    # FFmpeg's MP4 muxer stores a cover in moov/udta, after the tracks, and its demuxer numbers
    # streams in the order it meets them: moving udta before the trak boxes puts the cover first.
    from PIL import Image

    cover_rgb = np.zeros((32, 32, 3), np.uint8)
    cover_rgb[::4] = (255, 0, 255)  # magenta stripes: like no frame of the video
    buffer = io.BytesIO()
    Image.fromarray(cover_rgb).save(buffer, format="JPEG", quality=80)
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        # Intra frames only: x264's motion search on these flat pictures is not reproducible.
        video.options = {
            "threads": "1",
            "preset": "veryfast",
            "crf": "30",
            "x264-params": "keyint=1",
        }
        packet = av.Packet(buffer.getvalue())
        packet.stream, packet.pts, packet.dts = cover, 0, 0
        out.mux(packet)
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(indexed_picture(i), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    data = bytearray(path.read_bytes())
    move_udta_first(data)
    path.write_bytes(bytes(data))
    with av.open(str(path)) as check:
        assert check.streams[0].disposition & av.stream.Disposition.attached_pic, "cover not first"


def case_corrupt_packet(path: Path) -> None:
    # 10 intra frames (no frame depends on another); frame 5's packet gets an impossible NAL
    # length, so FFmpeg rejects that packet alone: frame 5 reads as frame 4.
    encode(path, 10, options={"x264-params": "keyint=1"}, draw=indexed_picture)
    with av.open(str(path)) as container:
        packets = sorted((p.pts or 0, p.pos or 0) for p in container.demux(video=0) if p.size)
    _pts, pos = packets[CORRUPT_FRAME]
    data = bytearray(path.read_bytes())
    data[pos : pos + 4] = b"\xff" * 4  # inside the packet: the length of its first NAL unit
    path.write_bytes(bytes(data))


CORRUPT_FRAME = 5


# name -> (builder, what it is, expected outcome per path)
CASES: dict[str, tuple[Callable[[Path], None], str, dict[str, Any]]] = {
    "valid.mp4": (
        case_valid,
        "a plain 10-frame 64x48 H.264 MP4 (the control)",
        {"upload": accept(frames=10, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "zero_bytes.mp4": (
        case_zero_bytes,
        "an empty file",
        {"upload": reject("BAD_USER_INPUT"), "session": reject("NOT_FOUND"), "matte": reject("2")},
    ),
    "truncated.mp4": (
        case_truncated,
        "the first half of an MP4 whose index (moov) is at the end",
        {"upload": reject("BAD_USER_INPUT"), "session": reject("NOT_FOUND"), "matte": reject("2")},
    ),
    "truncated_faststart.mp4": (
        case_truncated_faststart,
        "55 % of an MP4 whose index is first: it promises 30 frames, holds about half",
        {"upload": reject("BAD_USER_INPUT"), "session": reject("NOT_FOUND"), "matte": reject("2")},
    ),
    "text.mp4": (
        case_text,
        "a text file renamed .mp4",
        {"upload": reject("BAD_USER_INPUT"), "session": reject("NOT_FOUND"), "matte": reject("2")},
    ),
    "html.mp4": (
        case_html,
        "an HTML page with a script, renamed .mp4",
        {"upload": reject("BAD_USER_INPUT"), "session": reject("NOT_FOUND"), "matte": reject("2")},
    ),
    "random_bytes.mp4": (
        case_random_bytes,
        "4 KiB of random bytes",
        {"upload": reject("BAD_USER_INPUT"), "session": reject("NOT_FOUND"), "matte": reject("2")},
    ),
    "png_image.mp4": (
        case_png,
        "a PNG image renamed .mp4 (FFmpeg reads it as a one-frame video)",
        {"upload": accept(frames=1, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "jpeg_image.mp4": (
        case_jpeg,
        "a JPEG image renamed .mp4 (a one-frame video)",
        {"upload": accept(frames=1, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "lie_duration.mp4": (
        case_lie_duration,
        "10 frames; mvhd/tkhd/mdhd claim a duration of days",
        {"upload": accept(frames=10, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "lie_size.mp4": (
        case_lie_size,
        "64x48 frames; tkhd and the avc1 sample entry claim 60000x60000",
        {"upload": accept(frames=10, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "lie_frame_count.mp4": (
        case_lie_frame_count,
        "10 frames; the time-to-sample table claims 1,000,000",
        {"upload": reject("BAD_USER_INPUT"), "session": OK, "matte": OK},
    ),
    "lie_fps.mp4": (
        case_lie_fps,
        "10 frames whose timescale is patched 1000x: 10,000 frames a second",
        {"upload": reject("LIMIT_EXCEEDED"), "session": OK, "matte": reject("2")},
    ),
    "huge_dimensions.mp4": (
        case_huge_dimensions,
        "really 8192x16 pixels (over the 4096-pixel side limit)",
        {
            "upload": reject("LIMIT_EXCEEDED"),
            "session": reject("NOT_FOUND"),
            "matte": OK,
        },
    ),
    "tiny_dimensions.mp4": (
        case_tiny_dimensions,
        "2x2 pixels, yuv444p",
        {"upload": accept(frames=6, size=[2, 2]), "session": OK, "matte": OK},
    ),
    "odd_dimensions.mp4": (
        case_odd_dimensions,
        "33x17 pixels (odd sides), yuv444p",
        {"upload": accept(frames=6, size=[32, 16]), "session": OK, "matte": OK},
    ),
    "vfr.mp4": (
        case_vfr,
        "variable frame rate: 12 frames at irregular times over 1.4 s",
        {"upload": accept(size=[64, 48]), "session": OK, "matte": OK},
    ),
    "rotated.mp4": (
        case_rotated,
        "64x48 stored, display matrix rotated -90 degrees (shows as 48x64)",
        {"upload": accept(frames=8, size=[48, 64]), "session": OK, "matte": OK},
    ),
    "10bit.mp4": (
        case_10bit,
        "H.264 High 10, yuv420p10le",
        {"upload": accept(frames=8, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "yuv444.mp4": (
        case_yuv444,
        "H.264 High 4:4:4, yuv444p",
        {"upload": accept(frames=8, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "vp9_webm.mp4": (
        case_vp9_in_mp4_name,
        "a VP9 WebM renamed .mp4",
        {"upload": accept(frames=8, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "with_audio.mp4": (
        case_with_audio,
        "video plus an AAC track",
        {"upload": accept(frames=10, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "audio_only.mp4": (
        case_audio_only,
        "an AAC track only, no video",
        {"upload": reject("BAD_USER_INPUT"), "session": reject("NOT_FOUND"), "matte": reject("2")},
    ),
    "single_frame.mp4": (
        case_single_frame,
        "one frame",
        {"upload": accept(frames=1, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "very_long.mp4": (
        case_very_long,
        "15 minutes at 2 fps, 16x16 (over the 600 s limit)",
        {"upload": reject("LIMIT_EXCEEDED"), "session": OK, "matte": OK},
    ),
    "too_many_frames.mp4": (
        case_too_many_frames,
        "10,500 frames at 120 fps, 16x16 (over the 10,000-frame limit)",
        {"upload": reject("LIMIT_EXCEEDED"), "session": reject("NOT_FOUND"), "matte": OK},
    ),
    "corrupt_payload.mp4": (
        case_corrupt_payload,
        "a valid index over media data replaced by noise",
        {"upload": reject("BAD_USER_INPUT"), "session": reject("NOT_FOUND"), "matte": reject("2")},
    ),
    "raw_h264.mp4": (
        case_raw_h264,
        "an H.264 elementary stream (no container, no timestamps)",
        {"upload": accept(frames=8, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "cover_art_first.mp4": (
        case_cover_art_first,
        "stream 0 a 32x32 JPEG cover (attached picture), stream 1 the 10-frame H.264 video",
        {"upload": accept(frames=10, size=[64, 48]), "session": OK, "matte": OK},
    ),
    "corrupt_packet.mp4": (
        case_corrupt_packet,
        "10 intra frames; frame 5's packet is corrupt (dropped: it shows frame 4)",
        {"upload": accept(frames=10, size=[64, 48]), "session": OK, "matte": OK},
    ),
}


def build(dest: Path) -> dict[str, Any]:
    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    for name, (builder, what, expected) in CASES.items():
        path = dest / name
        path.unlink(missing_ok=True)
        builder(path)
        manifest[name] = {"what": what, "bytes": path.stat().st_size, "expected": expected}
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check manifest.json")
    parser.add_argument("--dest", type=Path, default=CORPUS)
    args = parser.parse_args(argv)
    if args.check:
        manifest = json.loads((args.dest / "manifest.json").read_text())
        stale = sorted(set(manifest) ^ set(CASES))
        stale += [n for n in CASES if n in manifest and manifest[n]["expected"] != CASES[n][2]]
        stale += [n for n in CASES if not (args.dest / n).is_file() and n not in stale]
        if stale:
            print(f"stale corpus entries: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    manifest = build(args.dest)
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    (args.dest / "manifest.json").write_text(text)
    total = sum(entry["bytes"] for entry in manifest.values())
    print(f"wrote {len(manifest)} files, {total / 1024:.0f} KiB, to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
