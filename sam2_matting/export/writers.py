"""Streaming writers: one frame in, one frame encoded; the file appears only when complete.

    from sam2_matting.export import open_writer

    with open_writer("prores", "out.mov", width, height, fps=Fraction(30000, 1001)) as writer:
        for rgb, alpha in frames:          # (H, W, 3) uint8 and (H, W) uint8
            writer.write(rgb, alpha)
    # leaving the block normally calls close(): out.mov now exists, complete;
    # an exception calls abort(): out.mov is left as it was and the partial output is gone.

Every writer writes to a hidden temporary name beside the output (``.NAME.<random>.partial``)
and renames it onto ``out_path`` in :meth:`ExportWriter.close` (``os.replace``, atomic on one
file system), so a reader never sees half a file and a failed or cancelled export leaves nothing
under the final name. An existing output file is replaced. An existing folder is replaced only
by a ``png`` export and only when it is empty or holds nothing but ``NNNNN.png`` files (a
previous sequence); any other folder is refused, never deleted.

Memory does not grow with the number of frames: each frame is converted, encoded and muxed
before the next (the encoders keep their usual small look-ahead; the muxer interleaves audio
with video as it comes). Video writers are in :mod:`sam2_matting.export.video_writer`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
import zipfile
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from sam2_matting.errors import InvalidInputError, VideoError
from sam2_matting.export.background_plate import TemporalForeground
from sam2_matting.export.foreground import DEFAULT_FOREGROUND, foreground_colour
from sam2_matting.export.formats import ExportFormat
from sam2_matting.export.render import rgba

__all__ = [
    "MAX_SIDE",
    "PNG_COMPRESSION_LEVEL",
    "ExportWriter",
    "PngSequenceWriter",
    "PngZipWriter",
]

MAX_SIDE = 16384
# zlib level for the PNGs: 1 encodes about 4x faster than FFmpeg's default for ~15% more bytes.
PNG_COMPRESSION_LEVEL = 1
_SEQUENCE_NAME = re.compile(r"^\d+\.png$")


class ExportWriter:
    """Base class of the writers; create one with :func:`sam2_matting.export.open_writer`.

    Attributes: ``format`` (:class:`ExportFormat`), ``path`` (the final output),
    ``temp_path`` (where it is written until :meth:`close`), ``width``/``height`` (of the
    frames passed to :meth:`write`), ``frames_written``, ``foreground`` (``"estimate"``,
    ``"source"`` or ``"temporal"``: the colour written where 0 < alpha < 255, for the formats
    that carry colour; see :mod:`~sam2_matting.export.foreground`). With ``"temporal"`` a
    frame is encoded once the frames after it that its background estimate looks at have
    arrived (:data:`~sam2_matting.export.background_plate.RADIUS`, or at :meth:`close`), from
    copies of the arrays: :meth:`write` may return before its frame is encoded and
    ``frames_written`` counts the frames encoded so far. Use it as a context manager, or call
    :meth:`close` at the end and :meth:`abort` on failure.
    """

    foreground: str = DEFAULT_FOREGROUND

    def __init__(self, fmt: ExportFormat, path: str | Path, width: int, height: int) -> None:
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
                raise InvalidInputError(f"{name} must be an integer 1-{MAX_SIDE}, got {value!r}")
        self.format = fmt
        self.path = Path(path)
        self.width, self.height = width, height
        self.frames_written = 0
        self._received = 0
        self._window: TemporalForeground[tuple[int, int | None]] = TemporalForeground()
        self._finished = False
        parent = self.path.parent
        if not parent.is_dir():
            raise InvalidInputError(f"output folder {parent} does not exist")
        if not self.path.name or self.path.name in (".", ".."):
            raise InvalidInputError(f"output path {self.path} has no file name")
        if fmt.directory:
            if self.path.exists() and not _replaceable_sequence(self.path):
                raise InvalidInputError(
                    f"{self.path} exists and is not a folder of NNNNN.png frames; not replacing it"
                )
        elif self.path.is_dir():
            raise InvalidInputError(f"{self.path} is a folder; {fmt.name} writes a file")
        self.temp_path = parent / f".{self.path.name}.{secrets.token_hex(4)}.partial"

    # -- the frame interface ---------------------------------------------------------------

    def write(
        self,
        rgb: np.ndarray,
        alpha: np.ndarray,
        *,
        index: int | None = None,
        pts: int | None = None,
    ) -> None:
        """Encode one frame: ``rgb`` (H, W, 3) uint8, ``alpha`` (H, W) uint8 (255 opaque).

        ``index`` names the frame in a PNG sequence (default: frames written so far); ``pts``
        is its timestamp in the writer's time base (default: evenly spaced at its frame rate)
        and must increase from frame to frame.
        """
        if self._finished:
            raise InvalidInputError("the writer is already closed")
        if rgb.dtype != np.uint8 or rgb.shape != (self.height, self.width, 3):
            raise InvalidInputError(
                f"frame must be uint8 ({self.height}, {self.width}, 3), got {rgb.dtype} {rgb.shape}"
            )
        if alpha.dtype != np.uint8 or alpha.shape != (self.height, self.width):
            raise InvalidInputError(
                f"alpha must be uint8 ({self.height}, {self.width}), "
                f"got {alpha.dtype} {alpha.shape}"
            )
        where = (self._received if index is None else index, pts)
        self._received += 1
        if self.format.carries_colour and self.foreground == "temporal":
            for colour, matte, (at, stamp) in self._window.push(rgb, alpha, where):
                self._encode(colour, matte, at, stamp)
            return
        if self.format.carries_colour:
            rgb = foreground_colour(rgb, alpha, self.foreground)
        self._encode(rgb, alpha, *where)

    def _encode(self, rgb: np.ndarray, alpha: np.ndarray, index: int, pts: int | None) -> None:
        self._write(rgb, alpha, index, pts)
        self.frames_written += 1

    def write_audio(self, packet: Any) -> None:
        """Pass one demuxed packet of the audio stream given at opening (an ``av.Packet``).

        Ignored by writers without audio. Feed packets in demux order, interleaved with the
        frames as the source has them, so the muxer need not buffer much.
        """

    @property
    def has_audio(self) -> bool:
        """Whether the output will carry the source's audio."""
        return False

    def close(self) -> Path:
        """Finish the output and rename it onto :attr:`path`; returns that path.

        On any failure the partial output is deleted and the error re-raised. Idempotent.
        """
        if self._finished:
            return self.path
        try:
            for colour, matte, (at, stamp) in self._window.flush():
                self._encode(colour, matte, at, stamp)
            if self.frames_written == 0:
                raise VideoError(f"{self.format.name} export: no frames were written")
            self._finish()
            self._commit()
        except BaseException:
            self.abort()
            raise
        self._finished = True
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the partial output; :attr:`path` is left untouched.

        Safe to call at any time, more than once, and after a failed :meth:`close`.
        """
        self._finished = True
        self._window.clear()
        try:
            self._release()
        finally:
            _remove(self.temp_path)

    def __enter__(self) -> ExportWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- what subclasses provide -----------------------------------------------------------

    def _write(self, rgb: np.ndarray, alpha: np.ndarray, index: int, pts: int | None) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush and close the temporary output (it is renamed afterwards)."""

    def _release(self) -> None:
        """Close whatever is open, ignoring errors (called by :meth:`abort`)."""

    def _commit(self) -> None:
        os.replace(self.temp_path, self.path)


def _replaceable_sequence(path: Path) -> bool:
    """Whether ``path`` is a folder a png export may replace (empty or only NNNNN.png)."""
    if not path.is_dir() or path.is_symlink():
        return False
    return all(entry.is_file() and _SEQUENCE_NAME.match(entry.name) for entry in path.iterdir())


def _remove(path: Path) -> None:
    """Delete a file or folder if it exists; errors are ignored (best effort)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


class _PngEncoder:
    """PyAV's png encoder: one RGBA frame in, the bytes of one complete PNG file out."""

    def __init__(self, width: int, height: int) -> None:
        self._codec: Any = av.CodecContext.create("png", "w")
        self._codec.width, self._codec.height = width, height
        self._codec.pix_fmt = "rgba"
        self._codec.time_base = Fraction(1, 1)
        self._codec.options = {"compression_level": str(PNG_COMPRESSION_LEVEL)}

    def encode(self, image: np.ndarray) -> bytes:
        frame = av.VideoFrame.from_ndarray(image, format="rgba")
        try:
            packets = self._codec.encode(frame)
        except av.FFmpegError as err:
            raise VideoError(f"png encoding failed ({err})") from None
        return b"".join(bytes(packet) for packet in packets)


def frame_name(index: int) -> str:
    """The file name of frame ``index`` in a PNG sequence: ``00042.png`` (5+ digits)."""
    return f"{index:05d}.png"


class PngSequenceWriter(ExportWriter):
    """RGBA PNG files ``NNNNN.png`` (the source frame index) in a folder; lossless.

    Straight alpha unless ``premultiplied``. The folder is built under a temporary name and
    renamed into place at :meth:`close`.
    """

    def __init__(
        self, fmt: ExportFormat, path: str | Path, width: int, height: int, *, premultiplied: bool
    ) -> None:
        super().__init__(fmt, path, width, height)
        self.premultiplied = premultiplied
        self._encoder = _PngEncoder(width, height)
        self.temp_path.mkdir()

    def _write(self, rgb: np.ndarray, alpha: np.ndarray, index: int, pts: int | None) -> None:
        data = self._encoder.encode(rgba(rgb, alpha, premultiplied=self.premultiplied))
        (self.temp_path / frame_name(index)).write_bytes(data)

    def _commit(self) -> None:
        old: Path | None = None
        if self.path.exists():  # checked at opening: a previous sequence or an empty folder
            old = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.old"
            os.replace(self.path, old)
        os.replace(self.temp_path, self.path)
        if old is not None:
            _remove(old)


class PngZipWriter(ExportWriter):
    """The PNG sequence as entries ``NNNNN.png`` of one zip (stored: PNG is compressed)."""

    def __init__(
        self, fmt: ExportFormat, path: str | Path, width: int, height: int, *, premultiplied: bool
    ) -> None:
        super().__init__(fmt, path, width, height)
        self.premultiplied = premultiplied
        self._encoder = _PngEncoder(width, height)
        self._zip: zipfile.ZipFile | None = zipfile.ZipFile(
            self.temp_path, "x", compression=zipfile.ZIP_STORED, allowZip64=True
        )
        self._date = time.localtime()[:6]

    def _write(self, rgb: np.ndarray, alpha: np.ndarray, index: int, pts: int | None) -> None:
        assert self._zip is not None
        data = self._encoder.encode(rgba(rgb, alpha, premultiplied=self.premultiplied))
        info = zipfile.ZipInfo(frame_name(index), date_time=self._date)
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data)

    def _finish(self) -> None:
        assert self._zip is not None
        self._zip.close()
        self._zip = None

    def _release(self) -> None:
        if self._zip is not None:
            with contextlib.suppress(OSError, ValueError):
                self._zip.close()
            self._zip = None
