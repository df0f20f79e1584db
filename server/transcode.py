"""Upload handling below the library: bounded copy, PyAV transcode to H.264 and JPEG posters.

    limits = UploadLimits.from_settings(settings)
    size = copy_limited(request_stream, Path("in.tmp"), limits.max_upload_bytes)
    info = transcode_h264(Path("in.tmp"), Path("out.mp4"), limits, start_time_sec=2.0)
    write_poster(first_frame_rgb, Path("poster.jpg"))

Everything here works on paths the caller chose (never on client-supplied names) and reports
failures as one-line :mod:`sam2_matting.errors` without server paths in the message. Limits are
enforced on what is actually decoded, not on what the container claims: a header can lie about
the duration, the frame count, the frame size and the frame rate (the checks, the frame-rate
choice and the constant-rate grid are in :mod:`server.upload_limits`). The video stream and its
frames are the ones a session reads (:mod:`sam2_matting.frame_index`: cover art skipped, frames
numbered by timestamp, a corrupt packet dropped and shown as the frame before), so a constant
rate upload keeps its frame ``i``; a variable rate one is re-timed onto the constant-rate grid.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from PIL import Image

from sam2_matting.errors import LimitExceededError, VideoError
from sam2_matting.frame_index import FrameSequence, choose_video_stream, numbered_frames
from sam2_matting.video import rotate_frame
from server.upload_limits import (
    FrameGrid,
    UploadLimits,
    check_side,
    check_window,
    frame_rate,
    human_bytes,
    scan_frames,
)

__all__ = [
    "OUTPUT_CRF",
    "OUTPUT_MAX_SIDE",
    "OUTPUT_PRESET",
    "Readable",
    "TranscodeInfo",
    "UploadLimits",
    "copy_limited",
    "ffmpeg_reason",
    "output_size",
    "transcode_h264",
    "write_poster",
]

# Longest side of a transcoded upload: 1080p stays sharp for matting, 4K is halved so that the
# browser, the session's frame decoder and the exported mattes stay light.
OUTPUT_MAX_SIDE = 1920
OUTPUT_CRF = 20  # a little better than x264's default 23: the matte is computed from these frames
OUTPUT_PRESET = "veryfast"  # the server transcodes while the user waits
KEYFRAME_SECONDS = 2.0  # short GOPs keep random frame access in a session cheap
COPY_CHUNK = 1024 * 1024


class Readable(Protocol):
    """Anything with ``read(size) -> bytes``: a file, ``request.stream``, a FileStorage."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class TranscodeInfo:
    """What :func:`transcode_h264` wrote: size, constant frame rate and frame count."""

    width: int
    height: int
    fps: Fraction
    frame_count: int
    source_frames: int  # frames decoded from the source inside the trim window


def ffmpeg_reason(err: BaseException) -> str:
    """A short one-line reason from an FFmpeg error, without the file name it may carry."""
    text = getattr(err, "strerror", None) or type(err).__name__
    return " ".join(str(text).split())


def copy_limited(stream: Readable, dest: Path, max_bytes: int) -> int:
    """Copy ``stream`` into a new file ``dest`` in chunks; return the byte count.

    Stops as soon as more than ``max_bytes`` arrived (LimitExceededError) so an oversized
    upload never fills the disk; ``dest`` is removed on any failure.
    """
    total = 0
    try:
        with open(dest, "xb") as out:
            while True:
                chunk = stream.read(COPY_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise LimitExceededError(
                        f"the upload is larger than the limit of {human_bytes(max_bytes)}"
                    )
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return total


def output_size(width: int, height: int, max_side: int = OUTPUT_MAX_SIDE) -> tuple[int, int]:
    """(width, height) scaled down to fit ``max_side`` and rounded down to even numbers.

    H.264 in yuv420p needs even sides; the aspect ratio is kept to within a pixel.
    """
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def transcode_h264(
    src: Path,
    dst: Path,
    limits: UploadLimits,
    *,
    start_time_sec: float | None = None,
    duration_time_sec: float | None = None,
    max_side: int = OUTPUT_MAX_SIDE,
    progress: Callable[[float], None] | None = None,
) -> TranscodeInfo:
    """Decode ``src`` with PyAV and write ``dst`` as constant-frame-rate H.264 (yuv420p) MP4.

    The output keeps the source frame rate, is turned upright (display rotation applied) and
    scaled to fit ``max_side`` with even sides; audio is dropped. ``start_time_sec`` and
    ``duration_time_sec`` select a window (seconds from the start of the video). Frames are
    placed on the constant-rate grid by timestamp: a gap repeats the previous frame, a frame
    denser than the rate is dropped. Raises VideoError (unreadable, no video stream, truncated,
    nothing in the window), LimitExceededError (over ``limits`` while decoding) or
    InvalidInputError (bad window). ``dst`` may be left partial on error: the caller owns it.
    ``progress(fraction)`` is called as frames are written (0 < fraction <= 1).
    """
    start, window = check_window(start_time_sec, duration_time_sec)
    try:
        container = av.open(str(src), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise VideoError(f"not a readable video ({ffmpeg_reason(err)})") from None
    try:
        return _transcode(src, container, dst, limits, start, window, max_side, progress)
    except av.FFmpegError as err:
        raise VideoError(f"cannot decode the video ({ffmpeg_reason(err)})") from None
    finally:
        container.close()


def write_poster(rgb: np.ndarray, dest: Path, quality: int = 85) -> None:
    """Write an (H, W, 3) uint8 RGB image as a JPEG at ``dest``, atomically (temp + rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".poster-", suffix=".jpg", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            Image.fromarray(rgb).save(out, format="JPEG", quality=quality, optimize=True)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- internals ---------------------------------------------------------------------------------


def _display_size(frame: Any, sar: Fraction | None) -> tuple[int, int]:
    width, height = frame.width, frame.height
    if sar is not None and sar > 0 and sar != 1:
        # Anamorphic video: square the pixels so the browser and the mattes agree on shape.
        width = max(2, round(width * sar))
    if frame.rotation % 180:
        width, height = height, width
    return width, height


def _sample_aspect(stream: Any) -> Fraction | None:
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar else None


def _transcode(
    src: Path,
    container: Any,
    dst: Path,
    limits: UploadLimits,
    start: float,
    window: float | None,
    max_side: int,
    progress: Callable[[float], None] | None = None,
) -> TranscodeInfo:
    stream = choose_video_stream(container)
    ctx = stream.codec_context
    if ctx.width and ctx.height:
        check_side(ctx.width, ctx.height, limits)  # early, cheap; frames are checked again
    fps = frame_rate(stream, limits)
    index = scan_frames(src, stream.index, limits)
    sequence = FrameSequence(index, from_start=start <= 0)
    # Frames due: the window's slots, else the source's frames (a fraction, not a promise).
    due = max(1, math.ceil(window * float(fps)) if window else index.count)
    ctx.thread_type = "AUTO"
    sar = _sample_aspect(stream)
    grid = FrameGrid(fps, limits, window)
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if start > 0:
        # Land on the keyframe before the window; the frames before it are decoded and dropped.
        container.seek(int((origin + start) / stream.time_base), stream=stream, backward=True)
    half_frame = 0.5 / float(fps)
    t0: float | None = (origin + start) if start > 0 else None

    out: Any = None
    out_stream: Any = None
    size = (0, 0)
    previous: Any = None
    try:
        for item in numbered_frames(container, stream, sequence):
            frame = item.frame
            check_side(frame.width, frame.height, limits)
            time = None if item.pts is None else float(item.pts * stream.time_base)
            if start > 0 and time is not None and time < origin + start - half_frame:
                continue  # pre-roll from the keyframe before the window
            if t0 is None:
                t0 = time if time is not None else 0.0
            slot = grid.slot(None if time is None else time - t0)
            if grid.done(slot):
                break
            if slot <= grid.last_slot:
                continue  # denser than the output rate
            grid.check(slot)
            if out is None:
                size = output_size(*_display_size(frame, sar), max_side=max_side)
                out, out_stream = _open_output(dst, size, fps)
            picture = _to_output(frame, size)
            # Fill a timestamp gap by repeating the previous picture (constant frame rate).
            for gap_slot in range(grid.last_slot + 1, slot):
                _encode(out, out_stream, previous, gap_slot)
            _encode(out, out_stream, picture, slot)
            previous, grid.last_slot = picture, slot
            if progress is not None:
                progress(min(1.0, (slot + 1) / due))
        if out is None:
            what = "in the selected time range" if (start > 0 or window) else "in the file"
            if sequence.bad_packets:
                raise VideoError(f"cannot decode the video: no frame {what} could be read")
            raise VideoError(f"no video frames {what}")
        _check_complete(stream, sequence, start, window)
        out.mux(out_stream.encode(None))
    finally:
        if out is not None:
            out.close()
    return TranscodeInfo(size[0], size[1], fps, grid.last_slot + 1, grid.decoded)


def _check_complete(
    stream: Any, sequence: FrameSequence, start: float, window: float | None
) -> None:
    # A file cut short (say, half an upload) can still open when its index sits at the front;
    # the decoder then just runs out of data. Compare with the index when all was decoded:
    # the frames the decoder really gave, stand-ins for a few damaged ones not counted.
    expected = stream.frames or 0
    decoded = sequence.decoded
    if start > 0 or window is not None or expected <= 0:
        return
    if expected - decoded > max(2, expected // 50):
        what = "cannot decode the video, it is" if sequence.bad_packets else "the video is"
        raise VideoError(
            f"{what} truncated or damaged: {decoded} of {expected} frames could be read"
        )


def _open_output(dst: Path, size: tuple[int, int], fps: Fraction) -> tuple[Any, Any]:
    # faststart puts the index first, so a browser can start playing before the whole download.
    out = av.open(str(dst), mode="w", format="mp4", options={"movflags": "+faststart"})
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = 1 / fps  # one tick per frame: pts is the frame index
    stream.codec_context.gop_size = max(1, round(float(fps) * KEYFRAME_SECONDS))
    stream.options = {"crf": str(OUTPUT_CRF), "preset": OUTPUT_PRESET}
    return out, stream


def _to_output(frame: Any, size: tuple[int, int]) -> Any:
    rotation = frame.rotation % 360
    if rotation:
        rgb = rotate_frame(frame.to_ndarray(format="rgb24"), rotation)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return frame.reformat(width=size[0], height=size[1], format="yuv420p")


def _encode(out: Any, stream: Any, picture: Any, slot: int) -> None:
    picture.pts = slot
    picture.time_base = stream.codec_context.time_base
    out.mux(stream.encode(picture))
