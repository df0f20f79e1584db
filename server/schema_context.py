"""What GraphQL resolvers get as ``info.context`` (:class:`AppContext`), and the two lookups
every resolver starts with: ``ctx_of(info)`` and ``session_of(info, session_id)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry

from server.config import Settings
from server.session_entry import SessionEntry
from server.sessions import SessionStore


@dataclass
class AppContext:
    """What resolvers get as ``info.context``: the app's services, built once."""

    settings: Settings
    store: SessionStore
    library: Any  # server.media.MediaLibrary
    base_url: str
    exports: Any = None  # server.exports.ExportJobs
    request: Any = None
    response: Any = None
    principal: str | None = None  # the client's name with per-client tokens, else None
    uploads: Any = None  # server.upload_jobs.UploadJobs


def ctx_of(info: strawberry.Info) -> AppContext:
    ctx: AppContext = info.context
    return ctx


def session_of(info: strawberry.Info, session_id: str) -> SessionEntry:
    """The caller's live session (NotFoundError for an unknown id or another client's)."""
    ctx = ctx_of(info)
    entry: SessionEntry = ctx.store.get(session_id, owner=ctx.principal)
    return entry
