"""The service's gunicorn worker: gthread, with request heads read off the request threads.

    worker_class = "server.worker.HeadReadingWorker"      # server/gunicorn.conf.py

gunicorn's gthread worker gives a connection to a request thread as soon as its first byte
arrives; the thread then reads the request line and the headers from a blocking socket with no
deadline. Eleven clients sending their headers at 2 bytes a second held every thread, and
``/healthy`` got no answer. Here the worker's event loop (its main thread, which already
accepts connections and watches kept-alive ones) reads each request's head without blocking;
a connection goes to a request thread only once its head is complete, with its whole body when
that is at most ``server.body_guard.SMALL_BODY`` bytes (GraphQL operations, the stream's
request). A slow client then holds a buffer of at most ``MAX_HEAD + SMALL_BODY`` bytes, never a
thread. Larger bodies (uploads) are read by the thread, bounded by ``server.body_guard``.

A head (and small body) not complete ``read_timeout`` seconds (``SAM2_MATTING_READ_TIMEOUT``)
after the connection opened, or after its first byte on a kept-alive connection, is answered
``408 REQUEST_TIMEOUT`` and closed; a connection that sent nothing is closed silently; a head
over ``MAX_HEAD`` bytes gets ``431``. TLS and HTTP/2 connections (not used by the service) are
left to gunicorn as they are.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

from server.body_guard import SMALL_BODY, CountingSocket
from server.config import Settings

__all__ = ["MAX_HEAD", "HeadReadingWorker", "head_verdict"]

MAX_HEAD = 64 * 1024  # request line and headers
RECV = 64 * 1024
STOP_LINGER = 2.0  # a stopping worker keeps half-read connections this long at most
LINGER = 2.0  # a graceful close drains what the client still sends this long (as gunicorn)
LINGER_BYTES = 64 * 1024  # or this much
_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[ \t]*([0-9]{1,18})[ \t]*(?=\r?\n)")
_HANDS_OFF = (b"\ntransfer-encoding", b"\nexpect", b"\nupgrade")

READY, WAIT, TOO_LARGE = "ready", "wait", "too large"


def head_verdict(buf: bytes | bytearray) -> str:
    """Whether the bytes of a request so far can go to a thread: ``READY`` (the head is
    complete, and the body too when it is small; or the parser must decide), ``WAIT`` or
    ``TOO_LARGE`` (no end of the head within ``MAX_HEAD`` bytes)."""
    end = buf.find(b"\r\n\r\n")
    size = 4
    if end < 0:
        end, size = buf.find(b"\n\n"), 2  # bare LF: gunicorn's parser refuses it (400)
    if end < 0:
        return TOO_LARGE if len(buf) > MAX_HEAD else WAIT
    head = b"\n" + bytes(buf[:end]).lower() + b"\n"
    if any(name in head for name in _HANDS_OFF):
        # Chunked bodies are read by the thread; a client waiting for "100 Continue" sends
        # nothing more until it gets it; an upgrade is gunicorn's business.
        return READY
    match = _LENGTH.search(head)
    if match is None:
        return READY  # no body, or a malformed length that the parser refuses
    length = int(match.group(1))
    if length > SMALL_BODY or len(buf) - end - size >= length:
        return READY
    return WAIT


class _Pending:
    """A connection whose head is being read by the event loop."""

    __slots__ = ("buf", "conn", "deadline")

    def __init__(self, conn: Any, buf: bytes, deadline: float) -> None:
        self.conn, self.buf, self.deadline = conn, bytearray(buf), deadline


class _Linger:
    """A connection closed gracefully: its write side is shut, its read side drained."""

    __slots__ = ("deadline", "drained", "sock")

    def __init__(self, sock: Any, deadline: float) -> None:
        self.sock, self.deadline, self.drained = sock, deadline, 0


class HeadReadingWorker(ThreadWorker):
    """gunicorn's ThreadWorker reading request heads (and small bodies) in its event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = float(Settings.from_env().read_timeout)
        self.reading: dict[int, _Pending] = {}
        self.lingering: dict[int, _Linger] = {}

    # -- gunicorn's hooks ---------------------------------------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        """Every request passes here: a new connection, a kept-alive one that became readable,
        or one with a pipelined request already buffered."""
        if (
            self.cfg.is_ssl
            or conn.is_http2
            or negotiation.prior_knowledge_allowed(self.cfg, conn.client)
        ):
            super().enqueue_req(conn)
            return
        if not isinstance(conn.sock, CountingSocket):  # a new connection
            conn.sock = CountingSocket(conn.sock)
            conn.close = partial(self._close, conn)
        conn.sock.send_timeout = None  # a stream's send timeout ends with its response
        buffered = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        pending = _Pending(conn, buffered, time.monotonic() + self.read_timeout)
        if buffered and head_verdict(pending.buf) == READY:
            self._dispatch(pending)
            return
        conn.sock.setblocking(False)
        self.reading[id(conn)] = pending
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, pending))

    def murder_pending(self) -> None:
        """Also close the connections whose head did not arrive in time, and end lingering
        closes."""
        super().murder_pending()
        now = time.monotonic()
        for linger in list(self.lingering.values()):
            if linger.deadline <= now or not self.alive:
                self._end_linger(linger)
        for pending in list(self.reading.values()):
            if not self.alive:
                pending.deadline = min(pending.deadline, now + STOP_LINGER)
            if pending.deadline <= now:
                self._drop(pending, _timeout_answer(self.read_timeout) if pending.buf else b"")

    # -- the event loop's reading ------------------------------------------------------------

    def _on_readable(self, pending: _Pending, sock: Any) -> None:
        try:
            data = sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(pending)
            return
        if not data:  # the client went away
            self._drop(pending)
            return
        pending.buf += data
        verdict = head_verdict(pending.buf)
        if verdict == READY:
            self._forget(pending)
            self._dispatch(pending)
        elif verdict == TOO_LARGE:
            self._drop(pending, _answer(431, f"the request headers are over {MAX_HEAD} bytes"))

    def _close(self, conn: Any, graceful: bool = False) -> None:
        """TConn.close: a graceful close lingers in the event loop, not blocking it.

        gunicorn's graceful close (RFC 9112 section 9.6: FIN, then read until the peer closes,
        at most 2 s) reads with a blocking socket in the main thread: 30 clients that sent a
        whole ``Connection: close`` request and then kept the connection open stalled every
        other connection for 60 s.
        """
        if not graceful:
            util.close(conn.sock)
            return
        if threading.current_thread() is not threading.main_thread():
            util.close_graceful(conn.sock)  # not the event loop's thread: gunicorn's way
            return
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
        except OSError:
            util.close(sock)
            return
        linger = _Linger(sock, time.monotonic() + LINGER)
        self.lingering[id(sock)] = linger
        try:
            self.poller.register(sock, selectors.EVENT_READ, partial(self._on_linger, linger))
        except (KeyError, ValueError, OSError):
            self._end_linger(linger)

    def _on_linger(self, linger: _Linger, sock: Any) -> None:
        try:
            data = sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        linger.drained += len(data)
        if not data or linger.drained >= LINGER_BYTES:
            self._end_linger(linger)

    def _end_linger(self, linger: _Linger) -> None:
        self.lingering.pop(id(linger.sock), None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(linger.sock)
        util.close(linger.sock)

    def _dispatch(self, pending: _Pending) -> None:
        conn = pending.conn
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(pending.buf))
        conn.data_ready = True  # gunicorn's thread must not wait for data again
        super().enqueue_req(conn)

    def _forget(self, pending: _Pending) -> None:
        self.reading.pop(id(pending.conn), None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(pending.conn.sock)

    def _drop(self, pending: _Pending, answer: bytes = b"") -> None:
        self._forget(pending)
        if answer:
            try:
                pending.conn.sock.send(answer)  # best effort: the socket is non-blocking
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EPIPE, errno.ECONNRESET):
                    self.log.debug("answer to a slow client not sent: %s", err)
        self.nr_conns -= 1
        pending.conn.close()


def _timeout_answer(seconds: float) -> bytes:
    return _answer(408, f"the request did not arrive within {seconds:g} s")


def _answer(status: int, message: str) -> bytes:
    from server.errors import code_for_status

    reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
    body = json.dumps({"error": {"code": code_for_status(status), "message": message}})
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()
