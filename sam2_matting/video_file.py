"""The PyAV-backed :class:`~sam2_matting.video.VideoSource` for video files.

Open files with :func:`sam2_matting.video.open_video`, which picks this class for a file.

Which stream, which frames and how they are numbered follow :mod:`sam2_matting.frame_index`,
the rule exports and uploads share. How a frame is found: at open, one pass over the packets
(no decoding) records every frame's presentation timestamp (pts), sorted, and which packets
are keyframes; frame ``i`` is the one with the ``i``-th smallest pts. To decode frame ``i``
the decoder either keeps going forward (when ``i`` is just ahead of the last frame it
produced, or no keyframe lies between them) or seeks to the last keyframe at or before ``i``
and decodes forward. On the way, packets of frames before the target that no other frame
references are not decoded at all (FFmpeg's ``skip_frame=NONREF``), which roughly halves the
cost of a long seek in H.264. A stream without usable timestamps (e.g. raw ``.h264``) falls
back to counting frames from the start.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import av
import numpy as np

from sam2_matting.errors import VideoError
from sam2_matting.frame_index import FrameIndex, choose_video_stream, decode_packet
from sam2_matting.video_source import DecodeStats, VideoSource, normalize_rotation, rotate_frame

__all__ = ["FORWARD_WINDOW", "VideoFileSource"]

# Decode forward instead of seeking when the wanted frame is at most this far ahead: a seek
# flushes the decoder and restarts from a keyframe, which costs more than a few frames.
FORWARD_WINDOW = 16


class VideoFileSource(VideoSource):
    """A video file decoded lazily with PyAV. Create it with :func:`open_video`.

    Besides the :class:`VideoSource` API it reports ``codec`` (e.g. "h264") and
    :meth:`decode_stats` (seeks, reopens, frames decoded).
    """

    codec: str
    _index: FrameIndex

    def __init__(
        self,
        path: Path,
        *,
        cache_size: int,
        max_frames: int,
        max_side: int,
        decoder_threads: bool = True,
    ) -> None:
        super().__init__(path, cache_size)
        self._threads = decoder_threads
        self._stats = DecodeStats()
        self._container: Any = None  # av.container.InputContainer
        # The live decoder's frames (av.VideoFrame); a generator is not thread-safe, but every use
        # runs under the source's lock.
        self._frames: Generator[Any, None, None] | None = None
        self._last_index = -1  # index of the last frame taken from the live decoder
        self._last_frame: Any = None  # that frame (stands in for a frame never produced)
        self._pending: tuple[int, Any] | None = None  # taken from the decoder, not yet asked for
        self._skip_below: int | None = None  # pts under which non-reference frames are skipped
        self._skipping = False
        try:
            self._open_container()
            self._scan(max_frames, max_side)
            self._reopen(count=False)
            # Decoding frame 0 now reads the rotation, checks the stream really decodes, and
            # caches the frame a user looks at first.
            first = self._decode(0)
            self.rotation = normalize_rotation(first.rotation)
            width, height = first.width, first.height
            if self.rotation in (90, 270):
                width, height = height, width
            self.width, self.height = width, height
            self._check_size(width, height, max_side)
            rgb = self._to_rgb(first)
        except av.FFmpegError as err:
            self._release()
            raise VideoError(f"{path.name}: cannot decode video ({_reason(err)})") from None
        except BaseException:
            self._release()
            raise
        rgb.setflags(write=False)
        self._cache.put(0, rgb)

    def decode_stats(self) -> DecodeStats:
        """A copy of the decoder counters (see :class:`~sam2_matting.video.DecodeStats`)."""
        with self._lock:
            return DecodeStats(**vars(self._stats))

    # -- opening and indexing -------------------------------------------------------------

    def _open_container(self) -> None:
        try:
            container = av.open(str(self.path), mode="r")
        except av.FFmpegError as err:
            raise VideoError(f"{self.path.name}: not a readable video ({_reason(err)})") from None
        self._container = container
        self._stream = choose_video_stream(container, self.path.name)
        self._stream_index = self._stream.index
        self.codec = self._stream.codec_context.name

    def _scan(self, max_frames: int, max_side: int) -> None:
        stream = self._stream
        width, height = stream.codec_context.width, stream.codec_context.height
        if width > 0 and height > 0:  # reject a huge video before reading it; 0 is "unknown"
            self._check_size(width, height, max_side)
        index = FrameIndex.scan(self._container, stream, max_frames)
        if index.count > max_frames:
            raise VideoError(f"{self.path.name}: more than {max_frames} frames, over the limit")
        if not index.count:
            raise VideoError(f"{self.path.name}: video stream has no frames")
        self._index = index
        self.frame_count = index.count
        # Timestamps identify frames only if every frame has its own; otherwise count frames.
        self._by_pts = index.by_pts
        self._pts = index.pts
        self._key_indices = index.key_indices
        self.fps = self._frame_rate()

    def _frame_rate(self) -> float:
        stream = self._stream
        for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
            if rate is not None and rate > 0:
                return float(rate)
        if self._by_pts and self.frame_count > 1 and stream.time_base:
            span = float((self._pts[-1] - self._pts[0]) * stream.time_base)
            if span > 0:
                return (self.frame_count - 1) / span
        return 0.0

    # -- decoding ---------------------------------------------------------------------------

    def _read_frame(self, index: int) -> np.ndarray:
        try:
            return self._to_rgb(self._decode(index))
        except av.FFmpegError as err:
            self._drop_decoder()
            raise VideoError(
                f"{self.path.name}: cannot decode frame {index} ({_reason(err)})"
            ) from None

    def _to_rgb(self, frame: Any) -> np.ndarray:
        rgb: np.ndarray = frame.to_ndarray(format="rgb24")
        return rotate_frame(rgb, self.rotation)

    def _decode(self, index: int) -> Any:
        """The av.VideoFrame of frame ``index``: continue forward if cheap, else seek."""
        if self._frames is not None and self._should_continue(index):
            frame = self._advance_to(index)
            if frame is not None:
                return frame
        for target in self._seek_targets(index):
            if target is None:
                self._reopen()
                from_start = True
            else:
                from_start = not self._seek(target)  # False: it reopened the file instead
            frame = self._advance_to(index, from_start=from_start)
            if frame is not None:
                return frame
        raise VideoError(f"{self.path.name}: frame {index} could not be decoded")

    def _should_continue(self, index: int) -> bool:
        if index <= self._last_index:
            return False
        if not self._by_pts:
            return True  # without timestamps a seek means decoding again from the start
        return (
            index - self._last_index <= FORWARD_WINDOW
            or self._keyframe_before(index) <= self._last_index
        )

    def _keyframe_before(self, index: int) -> int:
        """Index of the last keyframe at or before frame ``index`` (0 if none)."""
        return self._index.keyframe_before(index)

    def _seek_targets(self, index: int) -> list[int | None]:
        """Timestamps to seek to, in order of preference; None means reopen the file.

        A demuxer may land after the keyframe asked for (its index may go by decode time), so
        the keyframe before that one is tried next, then decoding from the very start.
        """
        if not self._by_pts:
            return [None]
        pos = int(np.searchsorted(self._key_indices, index, side="right")) - 1
        targets: list[int | None] = []
        for p in (pos, pos - 1):
            if p >= 0:
                targets.append(int(self._pts[self._key_indices[p]]))
        targets.append(None)
        return targets

    def _advance_to(self, index: int, *, from_start: bool = False) -> Any:
        """Run the live decoder up to frame ``index``; None when it cannot get there.

        Right after a seek (nothing consumed yet) a first frame already past the target means
        the seek landed too late: None, so the caller seeks earlier; ``from_start`` (the file
        was reopened) accepts it. A frame the decoder never produces (corrupt or cut data) is
        answered with the last decoded frame before it; the frame that showed it missing is
        kept for the next request.
        """
        assert self._frames is not None
        if self._by_pts:
            self._skip_below = int(self._pts[index])
        while True:
            if self._pending is not None:
                found, frame = self._pending
                self._pending = None
            else:
                frame = next(self._frames, None)
                if frame is None:
                    break
                maybe = self._index.number(frame.pts, self._last_index)
                if maybe is None:
                    continue  # no usable timestamp, or a duplicate: not a frame of ours
                found = maybe
            if found > index:
                if self._last_index < 0 and not from_start:
                    return None
                self._pending = (found, frame)
                self._stats.substituted += 1
                return self._last_frame if self._last_frame is not None else frame
            self._last_index, self._last_frame = found, frame
            if found == index:
                return frame
        self._frames = None  # end of stream: a later request must seek
        if self._last_frame is not None and self._last_index >= 0:
            self._stats.substituted += 1
            return self._last_frame
        return None

    def _decoded_frames(self) -> Generator[Any, None, None]:
        """Frames out of the decoder from the container's current position to the end."""
        codec = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            if packet.size:
                # Frames shown before the target are decoded only if later ones need them.
                skip = (
                    self._skip_below is not None
                    and packet.pts is not None
                    and packet.pts < self._skip_below
                )
            else:
                skip = False  # the final flush must return every buffered frame
            if skip != self._skipping:
                codec.skip_frame = "NONREF" if skip else "DEFAULT"
                self._skipping = skip
            frames = decode_packet(packet)
            if frames is None:
                # Like the ffmpeg tool, drop a corrupt packet and go on: one damaged frame
                # must not make the rest of the video unreadable.
                self._stats.bad_packets += 1
                continue
            for frame in frames:
                self._stats.frames_decoded += 1
                yield frame

    def _seek(self, pts: int) -> bool:
        """Seek to the keyframe at or before ``pts``; False if it had to reopen instead."""
        self._drop_iterator()
        if self._container is None:
            self._reopen()
            return False
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError:
            self._reopen()  # some demuxers (raw streams) cannot seek
            return False
        self._stats.seeks += 1
        self._start_iterator()
        return True

    def _reopen(self, count: bool = True) -> None:
        """Open the file again: the one reposition that works on every demuxer."""
        self._drop_iterator()
        if self._container is not None:
            self._container.close()
            self._container = None  # stays None if opening fails (file gone): next read retries
            self._stats.reopens += count
        self._container = av.open(str(self.path), mode="r")
        self._stream = self._container.streams[self._stream_index]
        if self._threads:
            self._stream.thread_type = "AUTO"  # frame + slice threads
        self._skipping = False
        self._start_iterator()

    def _start_iterator(self) -> None:
        self._drop_iterator()
        self._frames = self._decoded_frames()

    def _drop_iterator(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._frames = None
        self._last_index, self._last_frame, self._pending = -1, None, None

    def _drop_decoder(self) -> None:
        """After a decode error: forget the decoder's position, so the next read seeks (and
        a seek flushes the decoder)."""
        self._drop_iterator()

    def _release(self) -> None:
        self._drop_iterator()
        if self._container is not None:
            self._container.close()
            self._container = None


def _reason(err: BaseException) -> str:
    """A short one-line reason from an FFmpeg error (no path, no traceback)."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())
