"""The one error hierarchy of sam2-matting, and its one error table.

Every error a user can cause is a :class:`MattingError` subclass. Each class declares, once:

- ``code``: what a client sees, as the GraphQL ``extensions.code`` and as ``error.code`` in the
  HTTP JSON body ``{"error": {"code", "message"}}``;
- ``http_status``: the HTTP status of a plain HTTP answer (GraphQL answers stay 200);
- ``exit_code``: the CLI's exit status (the CLI prints ``str(error)`` on one line);
- ``public``: whether ``str(error)`` may be shown to a client. Errors of the server's own
  set-up (a checkpoint, a download) name server paths: a client gets ``public_message``
  instead and the server log gets the full error.

The server (``server/errors.py``) reads these attributes and keeps no table of its own; a new
class is covered by the tests as soon as it exists (``tests/test_errors.py``). The codes:

=====================  ==================  ======  ==========================================
class                  code                status  meaning
=====================  ==================  ======  ==========================================
MattingError           BAD_USER_INPUT      400     the client's mistake (base class)
InvalidInputError      BAD_USER_INPUT      400     a malformed argument
VideoError             BAD_USER_INPUT      400     a video that cannot be read
FrameIndexError        BAD_USER_INPUT      400     a frame index out of range
CodecError             BAD_MATTE           400     a malformed matte (the JS decoder's code too)
LimitExceededError     LIMIT_EXCEEDED      413     over a configured limit
NotFoundError          NOT_FOUND           404     no such session, object, video, job
CancelledError         CANCELLED           409     cancelled by the caller
SessionBusyError       SESSION_BUSY        409     the session is propagating
BusyError              BUSY                503     no capacity now (the session cap); retry
CheckpointError        BAD_CHECKPOINT      500     the server's model files are unusable
DownloadError          DOWNLOAD_FAILED     502     a download from upstream failed
=====================  ==================  ======  ==========================================

The last two are the server's problems, not the client's: they keep a 5xx status, but with
their own code rather than ``INTERNAL`` (which means a bug: an exception that is not a
``MattingError``), so an operator can tell a missing checkpoint from a crash.
"""

from __future__ import annotations


class MattingError(Exception):
    """Base class: a clear, user-facing failure. ``str(err)`` is one readable line."""

    code = "BAD_USER_INPUT"
    http_status = 400
    exit_code = 2
    public = True
    public_message = "the request failed"


class InvalidInputError(MattingError, ValueError):
    """An argument is malformed (bad points, labels, frame index, option value)."""


class VideoError(InvalidInputError):
    """A video cannot be opened or decoded (missing, empty, not a video, unsupported)."""


class FrameIndexError(InvalidInputError, IndexError):
    """A frame index outside ``[0, frame_count)``."""


class CodecError(InvalidInputError):
    """A matte encoding is malformed, inconsistent or over a configured limit."""

    code = "BAD_MATTE"


class CheckpointError(MattingError):
    """A checkpoint, config or adapter is missing, corrupt or does not fit the model."""

    code = "BAD_CHECKPOINT"
    http_status = 500
    exit_code = 3
    public = False
    public_message = "the server's model files are missing or unusable (see the server log)"


class DownloadError(MattingError):
    """A download failed (network error, HTTP error, checksum mismatch)."""

    code = "DOWNLOAD_FAILED"
    http_status = 502
    exit_code = 4
    public = False
    public_message = "a download on the server failed (see the server log)"


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
