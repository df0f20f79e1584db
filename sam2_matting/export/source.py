"""The two streams :func:`~sam2_matting.export.export_video` walks in step: source and mattes.

    reader = FileReader(Path("clip.mp4"), with_audio=True)   # or FolderReader(path, Fraction(30))
    mattes = MatteStream(pairs)                                # (frame_index, alpha), in order
    try:
        done = 0
        for rgb, pts, packet in reader.events():               # packet: audio, rgb: a frame
            if rgb is not None:
                alpha = mattes.alpha_for(done, *rgb.shape[:2])
                done += 1
        mattes.finish(done)
    finally:
        reader.close()

A video file is read by the shared frame rule of :mod:`sam2_matting.frame_index` (cover art
skipped, frames numbered by timestamp, a corrupt packet dropped and its frame shown as the one
before), each frame decoded to RGB in display orientation; audio packets are passed through as
demuxed. A folder of JPEG/PNG frames is read with :func:`~sam2_matting.video.open_video`.
:class:`MatteStream` pulls the mattes lazily and answers zeros for a frame without one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from sam2_matting.errors import FrameIndexError, InvalidInputError, VideoError
from sam2_matting.frame_index import FrameSequence, NumberedFrame, scan_file
from sam2_matting.video import open_video, rotate_frame

__all__ = ["FileReader", "FolderReader", "MatteStream", "MattesLike", "SourceReader"]

MattesLike = Iterable[tuple[int, np.ndarray]] | Mapping[int, np.ndarray]


class MatteStream:
    """Pulls ``(index, alpha)`` pairs lazily and answers the alpha of each frame in turn."""

    def __init__(self, mattes: MattesLike) -> None:
        pairs = (
            sorted(mattes.items(), key=lambda item: item[0])
            if isinstance(mattes, Mapping)
            else mattes
        )
        self._iter: Iterator[tuple[int, np.ndarray]] = iter(pairs)
        self._pending: tuple[int, Any] | None = None
        self._last = -1
        self._zeros: np.ndarray | None = None

    def _pull(self) -> tuple[int, Any] | None:
        if self._pending is None:
            item = next(self._iter, None)
            if item is None:
                return None
            try:
                index, alpha = item
            except (TypeError, ValueError):
                raise InvalidInputError("mattes must be (frame_index, alpha) pairs") from None
            if isinstance(index, bool) or not isinstance(index, int | np.integer):
                raise InvalidInputError(f"matte frame index must be an integer, got {index!r}")
            if index <= self._last:
                raise InvalidInputError(
                    f"mattes must be in increasing frame order: {index} after {self._last}"
                )
            self._last = int(index)
            self._pending = (int(index), alpha)
        return self._pending

    def alpha_for(self, index: int, height: int, width: int) -> np.ndarray:
        """The matte of frame ``index`` (called with 0, 1, 2, ...), or zeros if it has none."""
        pending = self._pull()
        if pending is None or pending[0] > index:
            if self._zeros is None or self._zeros.shape != (height, width):
                self._zeros = np.zeros((height, width), np.uint8)
            return self._zeros
        self._pending = None
        alpha = np.asarray(pending[1])
        if alpha.dtype == np.bool_:
            alpha = alpha.astype(np.uint8) * np.uint8(255)
        if alpha.dtype != np.uint8 or alpha.shape != (height, width):
            raise InvalidInputError(
                f"matte of frame {index} must be uint8 ({height}, {width}), "
                f"got {alpha.dtype} {alpha.shape}"
            )
        return alpha

    def finish(self, frame_count: int) -> None:
        """Raise FrameIndexError if a matte is left for a frame the video does not have."""
        pending = self._pull()
        if pending is not None:
            raise FrameIndexError(
                f"matte for frame {pending[0]}, but the video has {frame_count} frames"
            )


class SourceReader:
    """The source: frames (RGB, pts) and audio packets in demux order."""

    rate: Fraction
    time_base: Fraction | None = None
    audio_stream: Any = None
    frame_count: int

    def events(self) -> Iterator[tuple[np.ndarray | None, int | None, Any]]:
        """``(rgb, pts, None)`` per frame, ``(None, None, packet)`` per audio packet."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class FileReader(SourceReader):
    """A video file read by the shared frame rule; audio packets passed through as demuxed."""

    def __init__(self, path: Path, with_audio: bool) -> None:
        self._path = path
        try:
            stream_index, self._index = scan_file(path)
            self._container: Any = av.open(str(path))
        except av.FFmpegError as err:
            raise VideoError(f"{path.name}: cannot open video ({err})") from None
        try:
            self._video: Any = cast(Any, self._container.streams[stream_index])
            self._video.thread_type = "AUTO"
            audio = self._container.streams.audio
            self.audio_stream = audio[0] if with_audio and audio else None
            rate = self._video.average_rate or self._video.guessed_rate or Fraction(30)
            self.rate = Fraction(rate)
            self.time_base = self._video.time_base or 1 / self.rate
            self.frame_count = self._index.count
        except BaseException:
            self.close()
            raise
        self._step = max(1, round(1 / (self.rate * self.time_base)))

    def events(self) -> Iterator[tuple[np.ndarray | None, int | None, Any]]:
        streams = [self._video] + ([self.audio_stream] if self.audio_stream is not None else [])
        sequence = FrameSequence(self._index)
        last: int | None = None
        shown: tuple[Any, np.ndarray] | None = None  # a stand-in reuses the frame's pixels

        def event(item: NumberedFrame) -> tuple[np.ndarray, int, None]:
            nonlocal last, shown
            pts = item.pts
            if pts is None or (last is not None and pts <= last):
                pts = 0 if last is None else last + self._step
            last = pts
            if shown is None or shown[0] is not item.frame:
                frame = item.frame
                shown = (frame, rotate_frame(frame.to_ndarray(format="rgb24"), frame.rotation))
            return shown[1], pts, None

        try:
            for packet in self._container.demux(streams):
                if packet.stream.type == "audio":
                    yield None, None, packet
                    continue
                for item in sequence.feed(packet):
                    yield event(item)
            for item in sequence.finish():
                yield event(item)
        except av.FFmpegError as err:
            raise VideoError(f"{self._path.name}: cannot decode ({err})") from None

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()


class FolderReader(SourceReader):
    """A folder of JPEG/PNG frames, played at ``rate``; no audio, no timestamps."""

    def __init__(self, path: Path, rate: Fraction) -> None:
        self._source = open_video(path)
        self.rate = rate
        self.frame_count = self._source.frame_count

    def events(self) -> Iterator[tuple[np.ndarray | None, int | None, Any]]:
        for rgb in self._source.iter_frames():
            yield rgb, None, None

    def close(self) -> None:
        self._source.close()
