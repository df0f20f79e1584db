"""What "frame i" of a video file means: one rule for sessions, exports and uploads.

    from sam2_matting.frame_index import choose_video_stream, numbered_frames, scan_file

    stream_index, index = scan_file("clip.mp4")    # one demux pass, nothing decoded
    print(index.count)                             # the exact frame count
    with av.open("clip.mp4") as container:
        for item in numbered_frames(container, container.streams[stream_index], index):
            item.index, item.frame, item.pts       # 0, 1, 2, ... index.count - 1

The rule (:class:`~sam2_matting.video_file.VideoFileSource`, the export reader and the upload
transcoder all follow it, so a matte made on frame ``i`` of a session lands on frame ``i`` of
every export):

1. **The stream** is the first video stream that is not an attached picture (the cover art of
   a music file or a podcast is a one-frame "video" stream, whatever its position).
2. **The frames** are that stream's packets that carry data and are not marked discard (an
   empty packet only flushes; a discarded one lies before an edit list's start and is never
   shown). The frame count is their number, never the container's claim.
3. **The numbering**: when every such packet has a timestamp (pts) of its own, frame ``i`` is
   the one with the ``i``-th smallest pts; otherwise (raw ``.h264``, repeated timestamps)
   frames are numbered in the order the decoder outputs them. A decoded frame whose pts is not
   in the index, or that comes after a later one, is not a frame of the video and is dropped.
4. **Damage**: a packet the decoder rejects as invalid is dropped and decoding goes on (like
   the ``ffmpeg`` tool). A frame the decoder never produced is answered with the last frame
   decoded before it, or, for frames before the first one decoded, with that first frame.

The pieces, for a reader with its own loop: :func:`choose_video_stream`,
:meth:`FrameIndex.scan`, :func:`is_frame_packet`, :func:`decode_packet` and
:meth:`FrameIndex.number`; :class:`FrameSequence` applies rules 3 and 4 to packets fed in
demux order (with other streams' packets interleaved, as an export does with audio).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from sam2_matting.errors import VideoError

__all__ = [
    "FrameIndex",
    "FrameSequence",
    "NumberedFrame",
    "choose_video_stream",
    "decode_packet",
    "is_frame_packet",
    "numbered_frames",
    "scan_file",
]


def choose_video_stream(container: Any, name: str | None = None) -> Any:
    """The video stream of an open ``av`` input container (rule 1).

    Raises VideoError "NAME: file has no video stream" (or "the file has no video stream"
    without ``name``) when there is none, an audio file with cover art included.
    """
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    what = f"{name}: file" if name else "the file"
    raise VideoError(f"{what} has no video stream")


def is_frame_packet(packet: Any) -> bool:
    """Whether a demuxed packet is one frame of the video (rule 2)."""
    return bool(packet.size) and not packet.is_discard


def decode_packet(packet: Any) -> list[Any] | None:
    """The frames decoding ``packet`` gives, or None when the decoder rejects it (rule 4).

    Every packet goes to the decoder, empty and discarded ones included: an empty packet
    flushes the frames it holds back, a discarded one may be a reference of a later frame.
    """
    try:
        return list(packet.decode())
    except av.InvalidDataError:
        return None


@dataclass(frozen=True)
class FrameIndex:
    """The frames of a stream as found by one demux pass (rules 2 and 3).

    ``count``: the number of frames. ``by_pts``: whether frames are numbered by timestamp.
    ``pts``: their timestamps in the stream's time base, sorted (empty unless ``by_pts``);
    frame ``i`` has ``pts[i]``. ``key_indices``: the numbers of the keyframes, sorted.
    """

    count: int
    by_pts: bool
    pts: np.ndarray = field(repr=False)
    key_indices: np.ndarray = field(repr=False)

    @classmethod
    def scan(cls, container: Any, stream: Any, max_frames: int | None = None) -> FrameIndex:
        """Demux ``stream`` of ``container`` from its current position, decoding nothing.

        With ``max_frames`` the pass stops after ``max_frames + 1`` frames: a ``count`` over
        ``max_frames`` means "too many" (the caller raises its own limit error).
        """
        pts: list[int | None] = []
        keyframes: list[int | None] = []
        for packet in container.demux(stream):
            if not is_frame_packet(packet):
                continue
            pts.append(packet.pts)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
            if max_frames is not None and len(pts) > max_frames:
                break
        known = [p for p in pts if p is not None]
        by_pts = len(known) == len(pts) and len(set(known)) == len(known)
        if not by_pts:
            empty = np.zeros(0, dtype=np.int64)
            return cls(len(pts), False, empty, empty)
        sorted_pts = np.array(sorted(known), dtype=np.int64)
        kf = np.array(sorted(p for p in keyframes if p is not None), dtype=np.int64)
        return cls(len(pts), True, sorted_pts, np.searchsorted(sorted_pts, kf))

    def number(self, pts: int | None, last: int) -> int | None:
        """The number of a decoded frame with timestamp ``pts`` that follows frame ``last``
        (-1 before the first); None if it is not a frame of the video (rule 3)."""
        if not self.by_pts:
            found = last + 1  # decoder output comes in presentation order
        else:
            if pts is None:
                return None
            pos = int(np.searchsorted(self.pts, pts))
            if pos >= len(self.pts) or self.pts[pos] != pts:
                return None
            found = pos
        return found if last < found < self.count else None

    def pts_of(self, index: int) -> int | None:
        """The timestamp of frame ``index`` (None unless frames are numbered by pts)."""
        return int(self.pts[index]) if self.by_pts else None

    def keyframe_before(self, index: int) -> int:
        """The number of the last keyframe at or before frame ``index`` (0 if none)."""
        pos = int(np.searchsorted(self.key_indices, index, side="right")) - 1
        return int(self.key_indices[pos]) if pos >= 0 else 0


def scan_file(path: str | Path, max_frames: int | None = None) -> tuple[int, FrameIndex]:
    """Open ``path``, choose its video stream and index it: ``(stream index, FrameIndex)``.

    Raises VideoError for a file PyAV cannot open or without a video stream; an FFmpeg error
    while demuxing propagates (``av.FFmpegError``), for the caller to word.
    """
    path = Path(path)
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise VideoError(f"{path.name}: not a readable video ({_reason(err)})") from None
    with container:
        stream = choose_video_stream(container, path.name)
        return stream.index, FrameIndex.scan(container, stream, max_frames)


@dataclass(frozen=True)
class NumberedFrame:
    """Frame ``index`` of the video: ``frame`` (an ``av.VideoFrame``), ``pts`` (the frame's
    timestamp by the index; for a video numbered in decoder order the decoded frame's own pts,
    None for a stand-in) and ``substituted`` (the picture of another frame, rule 4)."""

    index: int
    frame: Any
    pts: int | None
    substituted: bool = False


class FrameSequence:
    """Rules 3 and 4 over packets fed in demux order: every frame of ``index``, in order.

    ``seq.feed(packet)`` yields the frames that packet completes (with stand-ins for frames
    missing before them); after the last packet ``seq.finish()`` yields stand-ins for the
    missing frames at the end. ``from_start=False`` (decoding after a seek) starts at the
    first frame decoded, without stand-ins before it. Counters: ``decoded`` (frames of the
    video out of the decoder), ``substituted`` (stand-ins) and ``bad_packets`` (rejected).
    """

    def __init__(self, index: FrameIndex, *, from_start: bool = True) -> None:
        self.index = index
        self.decoded = 0
        self.substituted = 0
        self.bad_packets = 0
        self._from_start = from_start
        self._last = -1  # the number of the last frame yielded
        self._last_frame: Any = None

    def feed(self, packet: Any) -> Iterator[NumberedFrame]:
        """The frames decoding ``packet`` completes, numbered, stand-ins included."""
        frames = decode_packet(packet)
        if frames is None:
            self.bad_packets += 1
            return
        for frame in frames:
            found = self.index.number(frame.pts, self._last)
            if found is None:
                continue
            self.decoded += 1
            if self._last_frame is None and not self._from_start:
                self._last = found - 1  # after a seek: the first frame decoded starts it
            stand_in = self._last_frame if self._last_frame is not None else frame
            yield from self._stand_ins(found, stand_in)
            pts = self.index.pts_of(found) if self.index.by_pts else frame.pts
            yield NumberedFrame(found, frame, pts)
            self._last, self._last_frame = found, frame

    def finish(self) -> Iterator[NumberedFrame]:
        """Stand-ins for the frames after the last one decoded (none if nothing decoded)."""
        if self._last_frame is not None:
            yield from self._stand_ins(self.index.count, self._last_frame)

    def _stand_ins(self, stop: int, frame: Any) -> Iterator[NumberedFrame]:
        for missing in range(self._last + 1, stop):
            self.substituted += 1
            self._last = missing
            yield NumberedFrame(missing, frame, self.index.pts_of(missing), substituted=True)


def numbered_frames(
    container: Any, stream: Any, frames: FrameIndex | FrameSequence
) -> Iterator[NumberedFrame]:
    """Every frame of ``stream`` (see :class:`FrameSequence`), demuxing ``container`` from
    its current position. Pass a FrameSequence rather than its index to keep the counters."""
    sequence = frames if isinstance(frames, FrameSequence) else FrameSequence(frames)
    for packet in container.demux(stream):
        yield from sequence.feed(packet)
    yield from sequence.finish()


def _reason(err: BaseException) -> str:
    """A short one-line reason from an FFmpeg error (no path, no traceback)."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())
