"""A session opened from a prompts file (docs/prompts-file.md): ``startSession(input: {path,
prompts})`` replays the file's events on the new session before its id is returned.

    entry = store.create(record, owner=principal)
    replay_prompts(entry, prompts_json, record.file, settings)   # InvalidInputError if refused

The file must be for this video (its content hash) and this service's model and options. The
session is left as the recorded one was, its last propagation included, whose mattes are kept
as propagated frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sam2_matting import prompts_file as pf
from server.config import Settings


def replay_prompts(entry: Any, text: str, video_file: str | Path, settings: Settings) -> None:
    """Check the prompts file ``text`` against the video and the model, then replay it."""
    doc = pf.loads(text)
    pf.check_video(doc, video_file)
    model = pf.model_identity(
        settings.model, settings.checkpoint, settings.adapter, settings.checkpoint_dir
    )
    pf.check_model(doc, model, pf.session_options(entry.session), override=None)

    def run(session: Any) -> list[Any]:
        last = pf.replay(doc, session)
        # the session ends as the recorded one did, its last propagation's mattes kept
        return list(last.as_recorded(session)) if last is not None else []

    entry.replay(run)
