"""A live session's entry: its :class:`MattingSession`, video, cached mattes and streams.

One :class:`SessionEntry` per ``startSession`` (kept by :class:`server.sessions.SessionStore`).
It owns the session, the video record, the mattes already computed (so clients can fetch them
again without recomputing) and the cancel tokens of its running streams. Prompts go through the
entry's verbs (:meth:`~SessionEntry.add_points`, ``add_box``, ``add_mask``, ``clear_frame``,
``clear_video``, ``remove_object``): each changes the session, drops the mattes the change made
stale and caches the fresh ones, all under the entry's lock, so no caller can forget a step and
serve stale mattes; readers (``cached``, ``snapshot``) take the same lock.

    entry.add_points(0, 1, [[0.5, 0.5]], [1])        # -> EncodedFrame(0, [EncodedMatte, ...])
    entry.encode_and_cache(result)                   # a propagated frame (the stream)
    entry.cached([0, 1]), entry.snapshot()           # for ``mattes`` and exports
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam2_matting.codec import decode_matte, encode_coco_binary, encode_matte
from sam2_matting.errors import SessionBusyError
from sam2_matting.predictor import CancelToken
from sam2_matting.session import FrameMattes, MattingSession

FIELDS = ("mask", "alpha")  # what a frame's matte can be encoded as (both: the default)
TAKEOVER_WAIT = 10.0  # seconds a takeover waits for the old propagation to stop


@dataclass(frozen=True)
class EncodedMatte:
    """One object's matte on one frame, encoded once for every client that asks.

    A stream encodes only the fields its client asked for (``server.stream``); a field not
    encoded is None. ``mask`` can be made from ``alpha`` later (:meth:`with_mask`), not the
    other way round."""

    object_id: int
    mask: dict[str, Any] | None  # binary COCO RLE {size, counts}: alpha >= 128
    alpha: dict[str, Any] | None  # the 0-255 matte in the codec's format

    def with_mask(self) -> EncodedMatte:
        if self.mask is not None or self.alpha is None:
            return self
        mask = encode_coco_binary(decode_matte(self.alpha))
        return EncodedMatte(self.object_id, mask, self.alpha)


@dataclass(frozen=True)
class EncodedFrame:
    """The encoded mattes of every object on one frame, as a prompt returns them."""

    frame_index: int
    mattes: list[EncodedMatte]


def encode_frame(result: FrameMattes, fields: Collection[str] = FIELDS) -> list[EncodedMatte]:
    return [
        EncodedMatte(
            obj_id,
            encode_coco_binary(alpha) if "mask" in fields else None,
            encode_matte(alpha) if "alpha" in fields else None,
        )
        for obj_id, alpha in zip(result.object_ids, result.alphas, strict=True)
    ]


@dataclass
class StreamSlot:
    """A stream registered on a session: its cancel token, its client, and whether its
    propagation has let go of the session (``released``)."""

    token: CancelToken
    client: str | None
    released: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None  # why it was stopped, if it was


@dataclass
class SessionEntry:
    id: str
    session: MattingSession
    video: Any  # server.media.VideoRecord
    ttl: float
    clock: Callable[[], float]
    created: float = 0.0
    last_used: float = 0.0
    closed: bool = False
    owner: str | None = None  # the client that started it (None: the service has no tokens)
    # why the streams were last cancelled: "cancelled" (a client), "closed", "shutdown"
    stop_reason: str = "cancelled"
    lock: threading.RLock = field(default_factory=threading.RLock)
    # frame index -> object id -> encoded matte, from clicks and propagation
    mattes: dict[int, dict[int, EncodedMatte]] = field(default_factory=dict)
    _streams: dict[CancelToken, StreamSlot] = field(default_factory=dict)
    _cancel_epoch: int = 0

    def touch(self) -> None:
        self.last_used = self.clock()

    @property
    def expires_at(self) -> float:
        """Monotonic-clock time at which the idle session expires (see ``expires_in``)."""
        return self.last_used + self.ttl

    def expires_in(self) -> float:
        return max(0.0, self.expires_at - self.clock())

    def expired(self) -> bool:
        return not self.streaming and self.clock() >= self.expires_at

    @property
    def streaming(self) -> bool:
        return bool(self._streams)

    # -- prompts: change the session, drop what it made stale, encode the fresh results ----
    # Every change of prompts goes through :meth:`_apply`, under the entry's lock: the
    # cached (propagated) mattes are dropped and the frames SAM 2 recomputed are cached.
    def add_points(
        self,
        frame_index: int,
        object_id: int,
        points: Sequence[Sequence[float]],
        labels: Sequence[int],
        *,
        normalized: bool = True,
        clear_old_points: bool = True,
    ) -> EncodedFrame:
        """Click points on a frame (see :meth:`MattingSession.add_points`); the service's
        coordinates are fractions of the width and height (``normalized``)."""
        return self._apply_one(
            lambda s: s.add_points(
                frame_index,
                object_id,
                points,
                labels,
                normalized=normalized,
                clear_old_points=clear_old_points,
            )
        )

    def add_box(
        self,
        frame_index: int,
        object_id: int,
        box: Sequence[float],
        *,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        normalized: bool = True,
    ) -> EncodedFrame:
        """Prompt with a box, optionally plus points (see :meth:`MattingSession.add_box`)."""
        return self._apply_one(
            lambda s: s.add_box(
                frame_index, object_id, box, points=points, labels=labels, normalized=normalized
            )
        )

    def add_mask(self, frame_index: int, object_id: int, mask: np.ndarray) -> EncodedFrame:
        """Prompt with a mask of the video's size (see :meth:`MattingSession.add_mask`)."""
        return self._apply_one(lambda s: s.add_mask(frame_index, object_id, mask))

    def clear_frame(self, frame_index: int, object_id: int) -> EncodedFrame:
        """Remove the object's prompts on one frame; every object's mattes there."""
        return self._apply_one(lambda s: s.clear_points_in_frame(frame_index, object_id))

    def clear_video(self) -> None:
        """Remove every prompt and object."""
        self._apply(lambda s: s.clear_points_in_video())

    def remove_object(self, object_id: int) -> list[EncodedFrame]:
        """Remove an object; the recomputed mattes of frames that still hold prompts. An
        unknown id changes nothing (as the SAM 2 demo) and returns no frames."""
        with self.lock:
            if object_id not in self.session.object_ids:
                return []
            return self._apply(lambda s: s.remove_object(object_id))

    def replay(self, change: Callable[[MattingSession], list[FrameMattes]]) -> list[EncodedFrame]:
        """Replay a prompts file (``change`` runs it on the session) under the same rule as
        every verb: the cache then holds exactly the mattes the replay returned."""
        return self._apply(change)

    def _apply_one(self, change: Callable[[MattingSession], FrameMattes]) -> EncodedFrame:
        (frame,) = self._apply(change)
        return frame

    def _apply(self, change: Callable[[MattingSession], Any]) -> list[EncodedFrame]:
        """Run ``change`` on the session; on success drop the stale mattes and cache the
        fresh ones it returned (a :class:`FrameMattes`, a list of them, or None)."""
        with self.lock:
            result = change(self.session)
            if result is None:
                result = []
            fresh = [result] if isinstance(result, FrameMattes) else result
            self.mattes.clear()
            return [EncodedFrame(r.frame_index, self.encode_and_cache(r)) for r in fresh]

    # -- mattes cache ------------------------------------------------------------------
    def encode_and_cache(
        self, result: FrameMattes, fields: Collection[str] = FIELDS
    ) -> list[EncodedMatte]:
        """Encode one frame's mattes (``fields`` of them) and remember them (for ``mattes``
        and exports)."""
        encoded = encode_frame(result, fields)
        with self.lock:
            self.mattes[result.frame_index] = {m.object_id: m for m in encoded}
        return encoded

    def cached(
        self, frames: Iterable[int], object_ids: Iterable[int] | None = None
    ) -> list[tuple[int, list[EncodedMatte]]]:
        """The cached mattes of ``frames`` with both fields: a mask not streamed is made from
        the alpha now; a frame streamed without alpha (masks only) is left out."""
        wanted = None if object_ids is None else set(object_ids)
        out = []
        with self.lock:
            for f in frames:
                per_obj = self.mattes.get(f)
                if per_obj is None or any(m.alpha is None for m in per_obj.values()):
                    continue
                picked = [m for oid, m in per_obj.items() if wanted is None or oid in wanted]
                out.append((f, [m.with_mask() for m in picked]))
        return out

    def cached_frames(self) -> list[int]:
        with self.lock:
            return sorted(self.mattes)

    def snapshot(self) -> dict[int, dict[int, EncodedMatte]]:
        """A consistent copy of the cached mattes (frame -> object id -> matte), taken under
        the lock: later prompts do not change it (the mattes themselves are immutable).
        Frames streamed without ``alpha`` (a client that asked for masks only) are kept, with
        ``alpha`` None: an export refuses them by name rather than leave them out silently."""
        with self.lock:
            return {f: dict(per_obj) for f, per_obj in self.mattes.items()}

    def forget_mattes(self) -> None:
        with self.lock:
            self.mattes.clear()

    # -- streams and cancellation --------------------------------------------------------
    def begin_stream(
        self, client: str | None = None, *, wait: float = TAKEOVER_WAIT
    ) -> tuple[CancelToken, int]:
        """Register a stream when its request arrives (before any frame is computed).

        One propagation per session at a time: another client's request is refused
        (``SessionBusyError``) before its headers. A new request of the same ``client``
        (not None) takes over: the running streams are cancelled (reason ``taken_over``) and
        this one starts once their propagation stopped (at most ``wait`` seconds)."""
        token = CancelToken()
        deadline = time.monotonic() + wait
        while True:
            with self.lock:
                busy = [s for s in self._streams.values() if not s.released.is_set()]
                if not busy and not self.session.is_propagating:
                    self._streams[token] = StreamSlot(token, client)
                    return token, self._cancel_epoch
                if not busy or client is None or any(s.client != client for s in busy):
                    raise SessionBusyError("this session is already streaming; cancel that first")
                for slot in busy:
                    slot.reason = "taken_over"
                    slot.token.cancel()
            for slot in busy:
                slot.released.wait(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                raise SessionBusyError("the running stream did not stop in time; try again")

    def release_stream(self, token: CancelToken) -> None:
        """The stream's propagation stopped: the session may run another one (the stream
        itself may still be writing its last parts)."""
        with self.lock:
            slot = self._streams.get(token)
        if slot is not None:
            slot.released.set()

    def end_stream(self, token: CancelToken) -> None:
        with self.lock:
            slot = self._streams.pop(token, None)
        if slot is not None:
            slot.released.set()
        self.touch()

    def stop_reason_of(self, token: CancelToken) -> str:
        """Why the stream of ``token`` was stopped: its own reason (``taken_over``) or the
        session's last cancel (``cancelled``, ``closed``, ``expired``, ``shutdown``)."""
        with self.lock:
            slot = self._streams.get(token)
            return (slot.reason if slot is not None else None) or self.stop_reason

    def cancel_streams(self, reason: str = "cancelled") -> int:
        """Cancel every registered stream. A stream registered but not yet started sees the
        epoch change and ends before its first frame, so a cancel is never lost to a race."""
        with self.lock:
            self.stop_reason = reason
            self._cancel_epoch += 1
            for slot in self._streams.values():
                slot.reason = None
                slot.token.cancel()
            return len(self._streams)

    def cancelled_since(self, epoch: int) -> bool:
        with self.lock:
            return self._cancel_epoch != epoch
