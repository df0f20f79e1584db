"""``export_video``: the source video and its mattes in, one export format out.

    from sam2_matting.export import export_video

    def mattes():                                  # (frame_index, uint8 H x W) in order
        for result in session.propagate(direction="forward"):
            yield result.frame_index, result.alphas.max(axis=0)   # merge objects as you like
    export_video("clip.mp4", mattes(), "clip.mov", "prores", progress=print)

What it does, frame by frame: demux the source with PyAV, decode each video frame to RGB
(rotation metadata applied with ``frame.rotation``, so frames and mattes are in display
orientation), take the matte for that frame index, hand both to the format's writer; audio
packets go to the writer as they are demuxed (copied or re-encoded, see
:mod:`~sam2_matting.export.video_writer`). The reading of the source and of the mattes lives
in :mod:`~sam2_matting.export.source`; this module checks the options, opens the writer and
owns cancel, progress and the clean-up on error. Nothing is kept from frame to frame, so memory does
not grow with the video's length, and ``mattes`` is consumed lazily (a generator is fine); the one
exception is ``foreground="temporal"``, whose writer keeps a bounded window of 13 frames and their
mattes (:mod:`~sam2_matting.export.background_plate`: about 135 MB at 1080p).

Frame ``i`` is frame ``i`` of a session on the same file: the video stream, the frames and
their numbering follow :mod:`sam2_matting.frame_index` (cover art skipped, frames numbered by
timestamp, a corrupt packet dropped and its frame shown as the one before), so the output has
exactly the source's frame count. A frame without a matte is fully transparent
(alpha 0): cut out in the alpha formats, background only in ``composite``, black in
``foreground``. A source that is a folder of JPEG/PNG frames is read with
:func:`~sam2_matting.video.open_video`; it has no audio and plays at ``fps`` (default 30).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from sam2_matting.errors import CancelledError, InvalidInputError, VideoError
from sam2_matting.export.background import BackgroundSpec, BackgroundSpecLike, parse_background
from sam2_matting.export.foreground import parse_foreground
from sam2_matting.export.formats import ExportFormat, get_format
from sam2_matting.export.source import (
    FileReader,
    FolderReader,
    MattesLike,
    MatteStream,
    SourceReader,
)
from sam2_matting.export.video_writer import VideoWriter
from sam2_matting.export.writers import ExportWriter, PngSequenceWriter, PngZipWriter
from sam2_matting.limits import DEFAULT_FOLDER_FPS

__all__ = ["Cancellable", "MattesLike", "ProgressCallback", "export_video", "open_writer"]

MAX_FPS = 1000


class Cancellable(Protocol):
    """Anything with a boolean ``cancelled`` (e.g. :class:`sam2_matting.CancelToken`)."""

    @property
    def cancelled(self) -> bool: ...


ProgressCallback = Callable[[int, int], object]


def open_writer(
    fmt: str | ExportFormat,
    out_path: str | Path,
    width: int,
    height: int,
    *,
    fps: float | Fraction = 30,
    time_base: Fraction | None = None,
    premultiplied: bool = False,
    background: BackgroundSpecLike | BackgroundSpec = None,
    audio: Any = None,
    foreground: str | None = None,
) -> ExportWriter:
    """A streaming writer for ``fmt`` (see :mod:`~sam2_matting.export.writers`).

    ``width``/``height`` are the size of the frames you will :meth:`~ExportWriter.write`;
    ``fps`` the frame rate; ``time_base`` the unit of the pts you pass (default ``1/fps``);
    ``premultiplied`` for the formats that take it; ``background`` for ``composite`` only;
    ``audio`` an ``av.AudioStream`` of an open input whose packets you pass to
    :meth:`~ExportWriter.write_audio` (ignored by the PNG formats); ``foreground``
    ``"estimate"`` (None: the default), ``"temporal"`` or ``"source"``, see
    :func:`export_video`.
    """
    spec = get_format(fmt)
    _check_options(spec, premultiplied, background)
    mode = parse_foreground(foreground)
    writer: ExportWriter
    if spec.name == "png":
        writer = PngSequenceWriter(spec, out_path, width, height, premultiplied=premultiplied)
    elif spec.name == "png-zip":
        writer = PngZipWriter(spec, out_path, width, height, premultiplied=premultiplied)
    else:
        writer = _video_writer(
            spec, out_path, width, height, fps, time_base, premultiplied, background, audio
        )
    writer.foreground = mode
    return writer


def _video_writer(
    spec: ExportFormat,
    out_path: str | Path,
    width: int,
    height: int,
    fps: float | Fraction,
    time_base: Fraction | None,
    premultiplied: bool,
    background: BackgroundSpecLike | BackgroundSpec,
    audio: Any,
) -> VideoWriter:
    bg = parse_background(background) if spec.name == "composite" else None
    return VideoWriter(
        spec,
        out_path,
        width,
        height,
        rate=_parse_fps(fps),
        time_base=time_base,
        premultiplied=premultiplied,
        background=bg,
        audio=audio,
    )


def export_video(
    source_path: str | Path,
    mattes: MattesLike,
    out_path: str | Path,
    fmt: str | ExportFormat,
    *,
    background: BackgroundSpecLike | BackgroundSpec = None,
    premultiplied: bool = False,
    fps: float | Fraction | None = None,
    audio: bool = True,
    cancel: Cancellable | threading.Event | None = None,
    progress: ProgressCallback | None = None,
    foreground: str | None = None,
) -> Path:
    """Write ``source_path`` with its ``mattes`` as ``fmt`` to ``out_path``; returns the path.

    ``mattes``: ``(frame_index, alpha)`` pairs in increasing frame order (or a mapping from
    frame index to alpha), alpha (H, W) uint8 (bool is taken as 0/255) at the video's display
    size; frames without one get alpha 0. ``fmt``: a name in
    :data:`~sam2_matting.export.EXPORT_FORMATS`. ``background`` (``composite`` only): a colour,
    an image or a video file (see :mod:`~sam2_matting.export.background`); default green.
    ``premultiplied``: colour multiplied by alpha (png, png-zip, prores, webm, foreground);
    the default is straight alpha. ``fps``: None keeps the source's timestamps (variable rate
    included) and audio; a number re-times the frames to that constant rate from 0 and, since
    the source audio would no longer match, leaves the audio out. ``audio=False`` leaves it
    out too. ``cancel``: checked before every frame (``.cancelled`` or, for a
    ``threading.Event``, ``.is_set()``). ``progress(done, total)``: called after every frame,
    ``total`` being the source's frame count. ``foreground``: the colour of semi-transparent
    pixels (0 < alpha < 255) in every format but ``alpha``: ``"estimate"`` (None: the default)
    the object's own colour estimated from the frame and the matte, ``"temporal"`` the same
    with the background under the soft pixels taken from the frames around where they show it
    and agree with this one (:mod:`~sam2_matting.export.background_plate`; the single-frame
    estimate wherever they do not), ``"source"`` the source pixel (see
    :mod:`~sam2_matting.export.foreground`); other pixels are the source's in every mode.

    The output is written under a temporary name and renamed onto ``out_path`` at the end; on
    cancel (:class:`~sam2_matting.errors.CancelledError`) or any error the temporary output is
    deleted and ``out_path`` is left as it was. Raises InvalidInputError for a bad argument or
    matte, FrameIndexError for a matte past the last frame, VideoError for a source that
    cannot be read or an encoding failure.
    """
    spec = get_format(fmt)
    _check_options(spec, premultiplied, background)
    mode = parse_foreground(foreground)
    bg = parse_background(background) if spec.name == "composite" else None
    rate = _parse_fps(fps) if fps is not None else None
    source = Path(source_path)
    if not source.exists():
        raise VideoError(f"{source} does not exist")
    if Path(out_path).resolve() == source.resolve():
        raise InvalidInputError(f"the output {out_path} is the source video itself")
    reader: SourceReader = (
        FolderReader(source, rate or DEFAULT_FOLDER_FPS)
        if source.is_dir()
        else FileReader(source, audio and spec.audio and rate is None)
    )
    matte_stream = MatteStream(mattes)
    writer: ExportWriter | None = None
    pending_audio: list[Any] = []
    done = 0
    try:
        total = reader.frame_count
        for rgb, pts, packet in reader.events():
            if packet is not None:  # audio, before the writer exists only at the very start
                if writer is None:
                    pending_audio.append(packet)
                else:
                    writer.write_audio(packet)
                continue
            if _is_cancelled(cancel):
                raise CancelledError("export cancelled")
            assert rgb is not None
            height, width = rgb.shape[:2]
            if writer is None:
                writer = open_writer(
                    spec,
                    out_path,
                    width,
                    height,
                    fps=rate or reader.rate,
                    time_base=None if rate else reader.time_base,
                    premultiplied=premultiplied,
                    background=bg,
                    audio=reader.audio_stream,
                    foreground=mode,
                )
                for queued in pending_audio:
                    writer.write_audio(queued)
                pending_audio.clear()
            alpha = matte_stream.alpha_for(done, height, width)
            writer.write(rgb, alpha, index=done, pts=None if rate else pts)
            done += 1
            if progress is not None:
                progress(done, max(total, done))
        if writer is None:
            raise VideoError(f"{source.name}: no video frames")
        matte_stream.finish(done)
        if _is_cancelled(cancel):
            raise CancelledError("export cancelled")
        return writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        reader.close()


def _check_options(
    spec: ExportFormat, premultiplied: bool, background: BackgroundSpecLike | BackgroundSpec
) -> None:
    if premultiplied and not spec.premultipliable:
        raise InvalidInputError(f"premultiplied does not apply to the {spec.name} format")
    if background is not None and spec.name != "composite":
        raise InvalidInputError(f"a background applies to composite only, not {spec.name}")


def _parse_fps(fps: float | Fraction) -> Fraction:
    """``fps`` as a Fraction (floats to the nearest ratio with denominator <= 1001)."""
    if isinstance(fps, bool) or not isinstance(fps, int | float | Fraction):
        raise InvalidInputError(f"fps must be a number, got {fps!r}")
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise InvalidInputError(f"fps must be in (0, {MAX_FPS}], got {fps!r}")
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


def _is_cancelled(cancel: Cancellable | threading.Event | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel.cancelled)
