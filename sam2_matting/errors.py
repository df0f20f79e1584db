"""The one error hierarchy of sam2-matting.

Every error a user can cause is a :class:`MattingError` subclass with a stable ``code``. The
server maps ``code`` to a GraphQL error code and an HTTP status in one place; the CLI prints
``str(error)`` on one line and exits with ``exit_code``.
"""

from __future__ import annotations


class MattingError(Exception):
    """Base class: a clear, user-facing failure. ``str(err)`` is one readable line."""

    code = "MATTING_ERROR"
    http_status = 400
    exit_code = 2


class InvalidInputError(MattingError, ValueError):
    """An argument is malformed (bad points, labels, frame index, option value)."""

    code = "BAD_INPUT"


class VideoError(InvalidInputError):
    """A video cannot be opened or decoded (missing, empty, not a video, unsupported)."""

    code = "BAD_VIDEO"


class FrameIndexError(InvalidInputError, IndexError):
    """A frame index outside ``[0, frame_count)``."""

    code = "FRAME_OUT_OF_RANGE"


class CodecError(InvalidInputError):
    """A matte encoding is malformed, inconsistent or over a configured limit."""

    code = "BAD_MATTE"


class CheckpointError(MattingError):
    """A checkpoint, config or adapter is missing, corrupt or does not fit the model."""

    code = "BAD_CHECKPOINT"
    exit_code = 3


class DownloadError(MattingError):
    """A download failed (network error, HTTP error, checksum mismatch)."""

    code = "DOWNLOAD_FAILED"
    exit_code = 4


class NotFoundError(MattingError, KeyError):
    """A named thing (object id, session, model size) does not exist."""

    code = "NOT_FOUND"
    http_status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class CancelledError(MattingError):
    """An operation was cancelled by the caller."""

    code = "CANCELLED"
    http_status = 409
    exit_code = 130


class SessionBusyError(MattingError):
    """The session is propagating; prompts change only after it ends or is cancelled."""

    code = "SESSION_BUSY"
    http_status = 409


class LimitExceededError(InvalidInputError):
    """An input is over a configured limit (bytes, duration, resolution, frames, fps)."""

    code = "LIMIT_EXCEEDED"
    http_status = 413


class BusyError(MattingError):
    """No capacity right now (the live-session cap is reached); try again later."""

    code = "BUSY"
    http_status = 503
