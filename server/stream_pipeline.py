"""The propagation stream as a pipeline: compute, encode beside it, write at the client's pace.

    pipeline = FramePipeline(frames, encode, token, pool=encoders)   # frames: session.propagate
    pipeline.start()
    for part in pipeline:          # the response generator only writes what comes out
        yield part
    pipeline.stop()                # always (finally): cancel, wait for the producer

A producer thread owns the propagation generator (SAM 2's steps run there, one frame after
another) and hands each frame to a small encoding pool (the matte codec and COCO encoding run
beside the next model step); encoded parts come out in frame order through a bounded buffer.
At most ``in_flight`` frames are being encoded and ``depth`` parts wait to be written, so a
client that reads slowly or not at all holds a bounded amount of memory: the producer waits
for room (the propagation pauses) and stops on ``token.cancel()`` at once, wherever it waits.

``producer_done`` is set once the propagation has stopped and let go of the session (its
generator closed): the session may then run another propagation even while this stream's
writer still blocks on a client that stopped reading.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

_END = object()
PRODUCER_SUFFIX = "-producer"  # the producer threads' names end so (a gauge counts them)
_POLL = 0.05  # seconds between checks of the cancel flag while waiting for room


class FramePipeline:
    """Propagated frames -> encoded parts, in order, bounded in flight and in the buffer."""

    def __init__(
        self,
        frames: Iterator[Any],
        encode: Callable[[int, Any], bytes],
        token: Any,
        *,
        pool: ThreadPoolExecutor | None = None,
        in_flight: int = 3,
        depth: int = 4,
        name: str = "stream",
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self._frames = frames
        self._encode = encode  # (position from 1, FrameMattes) -> the part's bytes
        self._token = token
        self._pool = pool
        self._in_flight = max(1, in_flight)
        self._buffer: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._thread = threading.Thread(
            target=self._run, name=f"{name}{PRODUCER_SUFFIX}", daemon=True
        )
        self._on_release = on_release  # called once the propagation let go of the session
        self.producer_done = threading.Event()
        self.error: BaseException | None = None
        self.produced = 0

    def start(self) -> None:
        self._thread.start()

    # -- the producer --------------------------------------------------------------------
    def _run(self) -> None:
        pending: deque[Future[bytes] | bytes] = deque()
        try:
            for result in self._frames:
                self.produced += 1
                if self._pool is None:
                    pending.append(self._encode(self.produced, result))
                else:
                    pending.append(self._pool.submit(self._encode, self.produced, result))
                while pending and (len(pending) >= self._in_flight or _ready(pending[0])):
                    if not self._put(_value(pending.popleft())):
                        return
                if self._token.cancelled:
                    break
            while pending and not self._token.cancelled:
                if not self._put(_value(pending.popleft())):
                    return
        except BaseException as err:  # handed to the writer, which ends with an error part
            self.error = err
        finally:
            for item in pending:  # encodings of frames nobody will write
                if isinstance(item, Future):
                    item.cancel()
            self._close_frames()
            self._released()
            self._put(_END, force=True)

    def _close_frames(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is None:
            return
        try:
            close()  # the propagation's finally runs here: the session is free again
        except Exception:
            log.exception("stopping the propagation failed")

    def _released(self) -> None:
        if self._on_release is not None:
            try:
                self._on_release()
            except Exception:
                log.exception("releasing the session failed")
        self.producer_done.set()

    def _put(self, item: Any, force: bool = False) -> bool:
        """Wait for room in the buffer; False when cancelled first (``force``: the end
        marker, which makes room by dropping parts nobody will write once cancelled)."""
        while True:
            try:
                self._buffer.put(item, timeout=_POLL)
                return True
            except queue.Full:
                if self._token.cancelled:
                    if not force:
                        return False
                    with contextlib.suppress(queue.Empty):
                        self._buffer.get_nowait()

    # -- the writer's side ---------------------------------------------------------------
    def __iter__(self) -> Iterator[bytes]:
        """The encoded parts in frame order; raises the producer's error after the parts
        before it."""
        while True:
            item = self._buffer.get()
            if item is _END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def stop(self, timeout: float = 30.0) -> bool:
        """Cancel and wait for the producer to let go of the session (True if it did)."""
        self._token.cancel()
        if not self._thread.is_alive() and not self._thread.ident:
            self._close_frames()  # never started
            self._released()
            return True
        return self.producer_done.wait(timeout)


def _ready(item: Future[bytes] | bytes) -> bool:
    return not isinstance(item, Future) or item.done()


def _value(item: Future[bytes] | bytes) -> bytes:
    return item.result() if isinstance(item, Future) else item
