"""The session store: live matting sessions with an idle expiry, a cap, and safe cancellation.

One :class:`~server.session_entry.SessionEntry` per ``startSession`` (see there for what an
entry holds and how prompts change it). The store enforces ``max_sessions`` (``BusyError``),
expires sessions idle for ``ttl`` seconds, and frees a session's memory at once on close, even
while one of its streams runs (the stream stops at its next frame).

With per-client tokens a session belongs to the client (``owner``) that started it: another
client's id is answered as unknown (``NotFoundError``), so ids neither work nor leak across
clients. On shutdown (:meth:`SessionStore.begin_shutdown`) new sessions and streams are refused
and running streams are cancelled, so they end with a final part instead of being cut.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from sam2_matting.errors import BusyError, NotFoundError
from sam2_matting.limits import DEFAULT_MAX_OBJECTS
from sam2_matting.predictor import MattingPredictor
from sam2_matting.prompts_record import RecordingSession
from sam2_matting.session import MattingSession
from server.session_entry import SessionEntry

log = logging.getLogger(__name__)


class SessionStore:
    """Live sessions by id. Thread-safe; a reaper thread expires idle sessions."""

    def __init__(
        self,
        predictor: MattingPredictor,
        *,
        max_sessions: int,
        ttl: float,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        replica_id: str = "",
        clock: Callable[[], float] = time.monotonic,
        model: dict[str, Any] | None = None,
    ) -> None:
        self.replica_id = replica_id
        # the model identity: given, every session is recorded for its prompts file
        self.model = model
        self.on_close: list[Callable[[str], None]] = []
        self.predictor = predictor
        self.max_sessions = max_sessions
        self.ttl = ttl
        self.max_objects = max_objects
        self.clock = clock
        self._entries: dict[str, SessionEntry] = {}
        self._lock = threading.Lock()
        self._opening = 0
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._reaper: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start_reaper(self, interval: float = 5.0) -> None:
        if self._reaper is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                self.purge_expired()

        self._reaper = threading.Thread(target=run, name="session-reaper", daemon=True)
        self._reaper.start()

    @property
    def draining(self) -> bool:
        """True once :meth:`begin_shutdown` ran: no new sessions or streams."""
        return self._draining.is_set()

    def begin_shutdown(self) -> int:
        """Refuse new sessions and streams; cancel running streams (they end with a final
        part at their next frame). Sessions stay open until :meth:`shutdown`. Returns the
        number of streams cancelled."""
        self._draining.set()
        return sum(entry.cancel_streams("shutdown") for entry in self.entries())

    def shutdown(self) -> None:
        """Stop the reaper, cancel every stream and close every session."""
        self._draining.set()
        self._stop.set()
        for entry in self.entries():
            self.close(entry.id, reason="shutdown")

    # -- operations ----------------------------------------------------------------------
    def create(self, video: Any, owner: str | None = None) -> SessionEntry:
        """Open a session on a resolved video record for client ``owner``; ``BusyError`` at
        the cap or while shutting down."""
        if self.draining:
            raise BusyError("the server is shutting down; try again in a moment")
        self.purge_expired()
        with self._lock:
            if len(self._entries) + self._opening >= self.max_sessions:
                raise BusyError(
                    f"the server is at its limit of {self.max_sessions} live sessions; "
                    "close one or try again later"
                )
            self._opening += 1  # reserve the slot while the (slow) open runs unlocked
        try:
            session = self.predictor.open(video.file, max_objects=self.max_objects)
            if self.model is not None:
                # forwards every attribute, logs each prompt (server.prompts.prompts_text)
                session = cast(MattingSession, RecordingSession(session, model=self.model))
        finally:
            with self._lock:
                self._opening -= 1
        now = self.clock()
        entry = SessionEntry(
            id=f"{self.replica_id}-{uuid.uuid4()}" if self.replica_id else str(uuid.uuid4()),
            session=session,
            video=video,
            ttl=self.ttl,
            clock=self.clock,
            created=now,
            last_used=now,
            owner=owner,
        )
        with self._lock:
            self._entries[entry.id] = entry
        log.info("session %s opened on %s", entry.id, video.id)
        return entry

    def get(self, session_id: str, owner: str | None = None) -> SessionEntry:
        """The live session ``session_id`` of client ``owner`` (touched); ``NotFoundError`` if
        unknown, expired or another client's (the same answer, so ids do not leak)."""
        with self._lock:
            entry = self._entries.get(session_id)
        shown = session_id[:64]  # never echo a huge id back (or into the log)
        if entry is None or entry.closed or entry.owner != owner:
            raise NotFoundError(f"no session {shown!r} (it may have expired or been closed)")
        if entry.expired():
            self.close(session_id, reason="expired")
            raise NotFoundError(f"session {shown!r} expired")
        entry.touch()
        return entry

    def close(self, session_id: str, *, reason: str = "closed") -> bool:
        """Close a session now: cancel its streams and free its memory. False if unknown."""
        with self._lock:
            entry = self._entries.pop(session_id, None)
        if entry is None:
            return False
        entry.closed = True
        entry.cancel_streams(reason)
        entry.session.close()  # waits for the current frame, then frees the state
        entry.forget_mattes()
        for callback in self.on_close:
            callback(session_id)
        log.info("session %s closed", session_id)
        return True

    def purge_expired(self) -> int:
        expired = [e.id for e in self.entries() if e.expired()]
        for sid in expired:
            log.info("session %s expired", sid)
            self.close(sid, reason="expired")
        return len(expired)

    def entries(self) -> list[SessionEntry]:
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
