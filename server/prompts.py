"""Prompts files on the service (docs/prompts-file.md): every session is recorded, so
``sessionPrompts(sessionId)`` gives its file, and ``startSession(input: {path, prompts})``
replays one on the new session before its id is returned.

    model = service_model(settings)                      # the model identity, once
    store = SessionStore(predictor, ..., model=model)    # sessions open recorded
    prompts_text(entry)                                  # the session's prompts file (JSON)
    replay_prompts(entry, prompts_json, record.file, settings)   # InvalidInputError if refused

A file to replay must be for this video (its content hash) and this service's model and
options. The session is left as the recorded one was, its last propagation included, whose
mattes are kept as propagated frames. The file of a session made on an upload names the
service's transcoded copy (``video.path``, the id the page downloads it by) and the sha256 of
the bytes the client sent (``video.upload_sha256``), so ``matte`` tells one from the other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sam2_matting import prompts_file as pf
from sam2_matting.errors import InvalidInputError, MattingError
from server.config import Settings

log = logging.getLogger(__name__)


def service_model(settings: Settings) -> dict[str, Any] | None:
    """The service's model identity (the checkpoint hashed once per process); ``None`` with a
    warning when it cannot be made (the service then gives no prompts files)."""
    try:
        return pf.model_identity(
            settings.model, settings.checkpoint, settings.adapter, settings.checkpoint_dir
        )
    except (MattingError, OSError) as err:
        log.warning("sessions are not recorded as prompts files: %s", err)
        return None


def prompts_text(entry: Any) -> str:
    """The prompts file of a live session, as JSON text (what the page downloads)."""
    session = entry.session
    if not isinstance(session, pf.RecordingSession):
        raise InvalidInputError("this service does not record its sessions' prompts")
    video = entry.video
    pf.video_sha256(video.file)  # hashed (once per file) before the lock is taken
    with entry.lock:  # between two prompts, never in the middle of one
        doc = session.document()
    doc.video["path"] = video.id
    if getattr(video, "upload_sha256", None):
        doc.video["upload_sha256"] = video.upload_sha256
    return pf.dumps(doc)


def replay_prompts(entry: Any, text: str, video_file: str | Path, settings: Settings) -> None:
    """Check the prompts file ``text`` against the video and the model, then replay it."""
    doc = pf.loads(text)
    pf.check_video(doc, video_file)
    model = service_model(settings)
    if model is None:
        raise InvalidInputError("this service cannot tell its model's identity: no replay")
    pf.check_model(doc, model, pf.session_options(entry.session), override=None)

    def run(session: Any) -> list[Any]:
        last = pf.replay(doc, session)
        # the session ends as the recorded one did, its last propagation's mattes kept
        return list(last.as_recorded(session)) if last is not None else []

    entry.replay(run)
