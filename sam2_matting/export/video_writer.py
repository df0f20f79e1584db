"""The video writers (prores, webm, alpha, composite, foreground), encoded with PyAV.

========== ========= ============ ============= ===================================== ========
format     container encoder      pixel format  settings                              audio
========== ========= ============ ============= ===================================== ========
prores     mov       prores_ks    yuva444p10le  profile 4444, alpha 16 bits           copy/AAC
webm       webm      libvpx-vp9   yuva420p      crf 32, realtime, cpu-used 8; alpha_mode copy/Opus
alpha      mp4       libx264      yuv420p       crf 12, veryfast; grey: Y = alpha     copy/AAC
composite  mp4       libx264      yuv420p       crf 18, veryfast                      copy/AAC
foreground mp4       libx264      yuv420p       crf 18, veryfast                      copy/AAC
========== ========= ============ ============= ===================================== ========

Colour: RGB is converted with the BT.709 matrix to limited ("TV") range and the streams are
tagged BT.709 / limited range, as HD video usually is. The grey ``alpha`` video puts the matte
in luma (chroma neutral), limited range, so a player shows alpha 255 as white and 0 as black.

Odd sizes: VP9 and ProRes take any size. H.264 4:2:0 needs even sizes, so ``alpha``,
``composite`` and ``foreground`` of an odd-sized video are one pixel wider and/or taller: the
last column/row is repeated on the right/bottom (:func:`~sam2_matting.export.render.pad_to_even`).

Timestamps: :meth:`ExportWriter.write` takes each frame's ``pts`` in the writer's
``time_base`` (pass the source stream's time base and the source pts to keep them, variable
frame rate included), or leaves it to the writer (frame ``n`` at ``n / fps``). ``fps`` is also
given to the encoder as the nominal rate.

Audio: given the source's audio stream, the writer copies its packets unchanged when the
container accepts the codec (AAC, MP3, ALAC, AC-3 into mp4/mov; Opus, Vorbis into WebM) and
otherwise decodes and re-encodes them (to AAC for mp4/mov, to Opus 48 kHz for WebM). Packet
timestamps are kept, so audio stays aligned with video frames that keep theirs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from sam2_matting.errors import InvalidInputError, VideoError
from sam2_matting.export.background import Background, BackgroundSpec, parse_background
from sam2_matting.export.formats import ExportFormat
from sam2_matting.export.render import composite_over, foreground, pad_to_even, rgba
from sam2_matting.export.writers import ExportWriter

__all__ = ["AUDIO_BITRATE", "VIDEO_SETTINGS", "VideoSettings", "VideoWriter"]

AUDIO_BITRATE = 160_000
_BT709 = 1  # AVCOL_SPC / AVCOL_PRI / AVCOL_TRC_BT709
_MPEG_RANGE = 1  # AVCOL_RANGE_MPEG: limited range
_MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3"})
_MOV_AUDIO = _MP4_AUDIO | {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_f32le"}
_WEBM_AUDIO = frozenset({"opus", "vorbis"})
# swscale is run single-threaded: with slice threads, rgba -> yuva444p10le was seen here to write
# wrong values (alpha 512/1023 in the first 8 pixels of row 16, ...) for widths such as 65-72 or
# 1080, which ProRes then faithfully encoded. One thread costs ~7 ms a 1080p frame.
_SWSCALE_THREADS = 1
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


@dataclass(frozen=True)
class VideoSettings:
    """How one format is encoded: container, encoder, pixel format, encoder options,
    the array layout handed to swscale (``rgba``, ``rgb24`` or ``gray``), whether sizes must
    be even, stream metadata, container options, and the audio policy."""

    container: str
    codec: str
    pix_fmt: str
    options: dict[str, str]
    layout: str
    even: bool
    audio_copy: frozenset[str]
    audio_codec: str
    metadata: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)


_H264 = {"crf": "18", "preset": "veryfast", "profile": "high"}
VIDEO_SETTINGS: dict[str, VideoSettings] = {
    "prores": VideoSettings(
        "mov", "prores_ks", "yuva444p10le", {"profile": "4444", "alpha_bits": "16"},
        "rgba", even=False, audio_copy=_MOV_AUDIO, audio_codec="aac",
    ),
    "webm": VideoSettings(
        "webm", "libvpx-vp9", "yuva420p",
        {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
        "rgba", even=False, audio_copy=_WEBM_AUDIO, audio_codec="libopus",
        metadata={"alpha_mode": "1"},  # tells players and browsers the VP9 carries alpha
    ),
    "alpha": VideoSettings(
        "mp4", "libx264", "yuv420p", {**_H264, "crf": "12"}, "gray", even=True,
        audio_copy=_MP4_AUDIO, audio_codec="aac", container_options={"movflags": "faststart"},
    ),
    "composite": VideoSettings(
        "mp4", "libx264", "yuv420p", dict(_H264), "rgb24", even=True,
        audio_copy=_MP4_AUDIO, audio_codec="aac", container_options={"movflags": "faststart"},
    ),
    "foreground": VideoSettings(
        "mp4", "libx264", "yuv420p", dict(_H264), "rgb24", even=True,
        audio_copy=_MP4_AUDIO, audio_codec="aac", container_options={"movflags": "faststart"},
    ),
}  # fmt: skip


class VideoWriter(ExportWriter):
    """One encoded video (plus audio) written with PyAV; see the module docstring.

    Create it with :func:`sam2_matting.export.open_writer`. ``rate`` is the nominal frame rate,
    ``time_base`` the unit of the pts passed to :meth:`write` (default ``1 / rate``),
    ``audio`` the source's audio stream (an ``av.AudioStream``) whose packets will be fed to
    :meth:`write_audio`, or None for no audio.
    """

    def __init__(
        self,
        fmt: ExportFormat,
        path: str | Path,
        width: int,
        height: int,
        *,
        rate: Fraction,
        time_base: Fraction | None = None,
        premultiplied: bool = False,
        background: BackgroundSpec | None = None,
        audio: Any = None,
    ) -> None:
        super().__init__(fmt, path, width, height)
        self.settings = VIDEO_SETTINGS[fmt.name]
        self.premultiplied = premultiplied
        self.rate = rate
        self.time_base = time_base or 1 / rate
        self._last_pts: int | None = None
        self._container: Any = None
        self._video: Any = None
        self._audio_out: Any = None
        self._audio_copy = False
        self._background: Background | None = None
        try:
            if fmt.name == "composite":
                self._background = parse_background(background).open(width, height)
            self._open(audio)
        except av.FFmpegError as err:
            self.abort()
            raise VideoError(f"{fmt.name} export: cannot open the encoder ({err})") from None
        except BaseException:
            self.abort()
            raise

    def _open(self, audio: Any) -> None:
        s = self.settings
        self._container = av.open(
            str(self.temp_path), "w", format=s.container, options=s.container_options
        )
        video = self._container.add_stream(s.codec, rate=self.rate, options=dict(s.options))
        width, height = self.width, self.height
        if s.even:
            width, height = width + width % 2, height + height % 2
        video.width, video.height = width, height
        video.pix_fmt = s.pix_fmt
        video.time_base = self.time_base
        cc = video.codec_context
        cc.time_base = self.time_base
        cc.framerate = self.rate
        cc.colorspace = cc.color_primaries = cc.color_trc = _BT709
        cc.color_range = _MPEG_RANGE
        if s.codec in ("libx264", "libvpx-vp9"):
            cc.thread_count = 0  # one per core
        video.metadata.update(s.metadata)
        self._video = video
        if audio is not None:
            self._add_audio(audio)

    def _add_audio(self, source: Any) -> None:
        s = self.settings
        name = source.codec_context.name
        if name in s.audio_copy:
            self._audio_out = self._container.add_stream_from_template(source)
            self._audio_copy = True
            return
        channels = source.codec_context.channels
        if s.audio_codec == "libopus":
            rate = 48000
            layout = "mono" if channels == 1 else "stereo"
        else:
            rate = source.codec_context.sample_rate
            rate = rate if rate in _AAC_RATES else 48000
            layout = source.codec_context.layout.name if channels <= 2 else "stereo"
        out = self._container.add_stream(s.audio_codec, rate=rate)
        out.layout = layout
        out.bit_rate = AUDIO_BITRATE
        self._audio_out = out

    @property
    def has_audio(self) -> bool:
        return self._audio_out is not None

    def _image(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        name = self.format.name
        if name == "alpha":
            return alpha
        if name == "composite":
            assert self._background is not None
            return composite_over(rgb, alpha, self._background.next_frame())
        if name == "foreground":
            return foreground(rgb, alpha, premultiplied=self.premultiplied)
        return rgba(rgb, alpha, premultiplied=self.premultiplied)

    def _write(self, rgb: np.ndarray, alpha: np.ndarray, index: int, pts: int | None) -> None:
        if pts is None:
            pts = round(self.frames_written / (self.rate * self.time_base))
        if self._last_pts is not None and pts <= self._last_pts:
            raise InvalidInputError(f"frame pts must increase: {pts} after {self._last_pts}")
        self._last_pts = pts
        image = self._image(rgb, alpha)
        if self.settings.even:
            image = pad_to_even(image)
        frame = av.VideoFrame.from_ndarray(image, format=self.settings.layout)
        frame = frame.reformat(
            format=self.settings.pix_fmt,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
            threads=_SWSCALE_THREADS,
        )
        frame.pts = pts
        frame.time_base = self.time_base
        try:
            self._container.mux(self._video.encode(frame))
        except av.FFmpegError as err:
            raise VideoError(f"{self.format.name} export: encoding failed ({err})") from None

    def write_audio(self, packet: Any) -> None:
        if self._audio_out is None or self._finished:
            return
        try:
            if self._audio_copy:
                if packet.dts is None or packet.size == 0:  # a demuxer flush packet
                    return
                packet.stream = self._audio_out
                self._container.mux(packet)
            else:
                for frame in packet.decode():
                    self._container.mux(self._audio_out.encode(frame))
        except av.FFmpegError as err:
            raise VideoError(f"{self.format.name} export: audio failed ({err})") from None

    def _finish(self) -> None:
        try:
            self._container.mux(self._video.encode(None))
            if self._audio_out is not None and not self._audio_copy:
                self._container.mux(self._audio_out.encode(None))
            container, self._container = self._container, None
            container.close()
        except av.FFmpegError as err:
            raise VideoError(f"{self.format.name} export: finishing failed ({err})") from None
        self._close_background()

    def _release(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
        self._close_background()

    def _close_background(self) -> None:
        if self._background is not None:
            self._background.close()
            self._background = None
