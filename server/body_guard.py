"""Request bodies that a request thread reads (uploads) keep a pace, and take a bounded share.

    app.wsgi_app = BodyGuard(app.wsgi_app, settings)      # in server.app.create_app

Under gunicorn, ``server.worker`` hands a request to a thread with its head and, up to
``SMALL_BODY`` bytes, its whole body already read. A larger body (an upload, a large
``addMask``, any chunked body) is read by the thread while the app runs. This middleware bounds
what a slow or stalled sender of such a body can hold:

- at most ``body_slots(threads)`` requests read large bodies at once (all threads but two, at
  least one); one more gets ``503 BUSY`` at once, so the other threads stay free for clicks,
  streams and probes;
- until the app has read the whole body, it must keep coming: each ``PIECE`` bytes within
  ``read_timeout`` seconds (about 1.6 KB/s at 10 s), all of it within ``body_timeout``
  seconds; a body that stalls (say, a ``Content-Length`` longer than what is sent) or crawls
  is cut: the socket's reading side is shut (a blocked read returns at once), the partial
  upload is deleted as any failed one, and the answer is ``408 REQUEST_TIMEOUT``, after which
  gunicorn closes the connection. What the app does after reading the body (a transcode) is
  not timed here.

A watchdog thread checks the deadlines four times a second, counting the bytes received at the
socket (:class:`CountingSocket`, which ``server.worker`` gives every connection; under another
worker, the bytes the app has read). Outside gunicorn (no ``gunicorn.socket`` in the environ:
the Flask test client, another server) it does nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from server.config import Settings

__all__ = [
    "PIECE",
    "SMALL_BODY",
    "BodyGuard",
    "CountingSocket",
    "SendTimeout",
    "body_slots",
    "large_body",
]

log = logging.getLogger(__name__)

SMALL_BODY = 64 * 1024  # read whole by the worker's event loop before a thread takes it
PIECE = 16 * 1024  # the unit of progress of a large body
CHECK_EVERY = 0.25
RESERVED_THREADS = 2  # never used to read large bodies


def body_slots(threads: int) -> int:
    """How many requests may read a large body at once with ``threads`` request threads."""
    return max(1, threads - RESERVED_THREADS)


def large_body(environ: dict[str, Any]) -> bool:
    """Whether the request's body is read by its thread (chunked, or over ``SMALL_BODY``)."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > SMALL_BODY
    except ValueError:
        return False  # the app refuses it before reading


class SendTimeout(BrokenPipeError):
    """The client read nothing for ``send_timeout`` seconds: for the server, it is gone (a
    broken pipe, which gunicorn's worker handles quietly by closing the connection)."""


class CountingSocket:
    """A socket that counts the bytes it received: ``server.worker`` gives every connection
    one, so the watchdog sees a body's progress while a read blocks, at no extra copy.

    With ``send_timeout`` set (seconds; ``server.stream`` sets it for a stream's response),
    ``sendall`` raises :class:`SendTimeout` once the peer has taken no byte for that long,
    instead of blocking forever on a client that stopped reading. A client that reads slowly
    but steadily is never cut: the clock restarts with every byte it takes."""

    __slots__ = ("_sock", "received", "send_timed_out", "send_timeout")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.received = 0
        self.send_timeout: float | None = None
        self.send_timed_out = False

    def sendall(self, data: bytes, flags: int = 0) -> None:
        timeout = self.send_timeout
        if timeout is None:
            self._sock.sendall(data, flags)
            return
        view = memoryview(data).cast("B")
        poller = select.poll()
        poller.register(self._sock, select.POLLOUT)
        while view:
            try:
                sent = self._sock.send(view, flags | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent:
                view = view[sent:]
                continue
            if not poller.poll(timeout * 1000):  # no room freed in ``timeout`` s
                self.send_timed_out = True
                raise SendTimeout(errno.EPIPE, f"the client read nothing for {timeout:g} s")

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = self._sock.recv(size, flags)
        self.received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Reading:
    """One large body being read: its socket and its progress."""

    def __init__(self, sock: Any, length: int | None) -> None:
        self.sock = sock
        self.length = length
        self.through = 0  # bytes the app has read
        self.done = False  # the whole body was read
        self.cut: str | None = None  # why the watchdog cut it
        self.started = self.mark_at = time.monotonic()
        self.base = self._counted()
        self.mark = 0  # bytes received at mark_at

    def _counted(self) -> int:
        # At the socket under the service's worker; else what the app has read.
        received = getattr(self.sock, "received", None)
        return received if isinstance(received, int) else self.through

    def received(self) -> int:
        return self._counted() - self.base

    def cut_off(self, reason: str) -> None:
        self.cut = reason
        _shut_reading(self.sock)  # a read blocked on it returns b"" now


class _CountedInput:
    """``wsgi.input``, telling when the whole body has been read (the pace no longer applies:
    a long transcode is not a slow client)."""

    def __init__(self, stream: Any, reading: _Reading) -> None:
        self._stream = stream
        self._reading = reading

    def _count(self, data: bytes, asked: int | None) -> bytes:
        r = self._reading
        r.through += len(data)
        if (not data and asked != 0) or (r.length is not None and r.through >= r.length):
            r.done = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._count(self._stream.read(size), size)

    def readline(self, size: int | None = None) -> bytes:
        return self._count(self._stream.readline(size), size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines = self._stream.readlines(hint)
        self._count(b"".join(lines), None if lines else -1)
        return list(lines)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


class BodyGuard:
    """WSGI middleware enforcing the pace and the share of large bodies (see the module)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], settings: Settings) -> None:
        self.app = app
        self.read_timeout = float(settings.read_timeout)
        self.body_timeout = float(settings.body_timeout)
        self.slots = body_slots(settings.threads)
        self._free = threading.BoundedSemaphore(self.slots)
        self._lock = threading.Lock()
        self._readings: set[_Reading] = set()
        self._watchdog: threading.Thread | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        sock = environ.get("gunicorn.socket")
        if sock is None or not large_body(environ):
            return self.app(environ, start_response)
        if not self._free.acquire(blocking=False):
            _shut_reading(sock)  # gunicorn then closes instead of draining the body
            log.info("refused a large body: %d request(s) are already reading one", self.slots)
            message = (
                f"{self.slots} uploads (or other bodies over {SMALL_BODY} bytes) are being"
                " received; retry in a few seconds"
            )
            return _answer(start_response, "503 Service Unavailable", "BUSY", message)
        reading: _Reading | None = None
        try:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0) or None
            except ValueError:
                length = None
            reading = _Reading(sock, length)
            environ["wsgi.input"] = _CountedInput(environ["wsgi.input"], reading)
            self._watch(reading)
            return self._run(environ, start_response, reading)
        finally:
            if reading is not None:
                with self._lock:
                    self._readings.discard(reading)
            if reading is None or not reading.done:
                # The app answered without reading the whole body (401, 413, ...): gunicorn
                # would drain the rest for up to 5 s on this thread, the slot already free.
                _shut_reading(sock)
            self._free.release()

    def _run(
        self, environ: dict[str, Any], start_response: Callable[..., Any], reading: _Reading
    ) -> Any:
        held: list[Any] = []

        def hold(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            if held and held[0] is None:  # the app returned already: pass straight on
                return start_response(status, headers, exc_info)
            held[:] = [(status, headers, exc_info)]
            return _no_write

        result = self.app(environ, hold)
        if reading.cut is not None:
            if hasattr(result, "close"):
                result.close()
            log.info("cut off a request body: %s", reading.cut)
            return _answer(start_response, "408 Request Timeout", "REQUEST_TIMEOUT", reading.cut)
        if held:
            start_response(*held[0])
        held[:] = [None]
        return result

    def _watch(self, reading: _Reading) -> None:
        with self._lock:
            self._readings.add(reading)
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._patrol, name="body-watchdog", daemon=True
                )
                self._watchdog.start()

    def _patrol(self) -> None:
        while True:
            time.sleep(CHECK_EVERY)
            now = time.monotonic()
            with self._lock:
                readings = [r for r in self._readings if r.cut is None and not r.done]
            for r in readings:
                got = r.received()
                of = f" of {r.length}" if r.length else ""
                if now - r.started > self.body_timeout:
                    r.cut_off(
                        f"the request body took over {self.body_timeout:g} s"
                        f" ({got}{of} bytes arrived)"
                    )
                elif got - r.mark >= PIECE:
                    r.mark, r.mark_at = got, now
                elif now - r.mark_at > self.read_timeout:
                    r.cut_off(
                        f"the request body is too slow: less than {PIECE} bytes came in"
                        f" {self.read_timeout:g} s (after {got}{of} bytes)"
                    )


def _no_write(data: bytes) -> None:
    raise RuntimeError("the app used WSGI's write(); the service's apps return iterables")


def _shut_reading(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)


def _answer(
    start_response: Callable[..., Any], status: str, code: str, message: str
) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Retry-After", "5") if code == "BUSY" else ("Cache-Control", "no-store"),
    ]
    start_response(status, headers)
    return [body]
