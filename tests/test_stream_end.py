"""The end of a propagation stream, byte for byte, from the real gunicorn server.

Read on a raw socket (HTTP/1.1): the body is chunked and ends with the terminating zero-length
chunk right after the last part, with no closing ``--frame--`` delimiter (the stock SAM 2
frontend rejects one); on keep-alive the same connection then serves the next request, and
with ``Connection: close`` the server closes it cleanly (FIN, never a reset) only after the
terminator. A stream cancelled midway ends the same way. And Chromium, reading the stream as
the stock frontend does (a ReadableStream reader), reports it finished, not ``ERR_ABORTED``.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from savi_stream import parse_savi_stream
from service import CANCEL, Server, launch, stop

from sam2_matting.tiny import TinyModelFiles

TERMINATOR = b"0\r\n\r\n"


@dataclass
class RawResponse:
    status_line: str
    headers: dict[str, str]
    chunks: list[bytes]  # the body's chunks, without the terminating one
    rest: bytes  # bytes read after the terminator (must be none: nothing follows it)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class RawConnection:
    """One HTTP/1.1 connection, read and written by hand."""

    def __init__(self, server: Server) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.host = f"{host}:{port}"
        self._buf = b""

    def send(self, method: str, path: str, body: bytes = b"", headers: str = "") -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode("ascii") + b"\r\n" + body)

    def _fill(self, what: str) -> None:
        data = self.sock.recv(65536)  # a reset raises ConnectionResetError here
        if not data:
            raise AssertionError(f"the server closed the connection {what}")
        self._buf += data

    def _line(self, what: str) -> bytes:
        while b"\r\n" not in self._buf:
            self._fill(what)
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def response(self) -> RawResponse:
        status = self._line("before the status line").decode("latin-1")
        headers: dict[str, str] = {}
        while line := self._line("in the headers"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        chunks = []
        if headers.get("transfer-encoding") == "chunked":
            while size := int(self._line("before the terminating chunk"), 16):
                while len(self._buf) < size + 2:
                    self._fill("inside a chunk")
                chunk, crlf, self._buf = (
                    self._buf[:size],
                    self._buf[size : size + 2],
                    self._buf[size + 2 :],
                )
                assert crlf == b"\r\n", "a chunk not followed by CRLF"
                chunks.append(chunk)
            assert self._line("after the terminating chunk") == b"", "trailers after the body"
        else:
            length = int(headers.get("content-length", "0"))
            while len(self._buf) < length:
                self._fill("inside the body")
            chunks, self._buf = [self._buf[:length]], self._buf[length:]
        rest, self._buf = self._buf, b""
        return RawResponse(status, headers, chunks, rest)

    def closed_cleanly(self) -> bool:
        """True when the server closed with a FIN (no reset) and sent nothing more."""
        self.sock.settimeout(30)
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(tiny_model, shared_videos, tmp_path_factory.mktemp("stream-end"))
    yield s
    stop(s)


@pytest.fixture
def session_id(server: Server) -> Iterator[str]:
    sid = server.start("gallery/small.mp4")
    server.click(sid)
    yield sid
    server.close_session(sid)


def _propagate(sid: str, **extra: object) -> bytes:
    return json.dumps({"session_id": sid, "start_frame_index": 0, **extra}).encode()


@pytest.mark.parametrize("accept", ["multipart", "ndjson"])
def test_a_finished_stream_ends_with_the_terminating_chunk_and_the_connection_lives_on(
    server: Server, session_id: str, accept: str
) -> None:
    conn = RawConnection(server)
    try:
        headers = "Accept: application/x-ndjson\r\n" if accept == "ndjson" else ""
        conn.send("POST", "/propagate_in_video", _propagate(session_id), headers)
        resp = conn.response()
        assert resp.status_line == "HTTP/1.1 200 OK"
        assert resp.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in resp.headers
        assert resp.headers["connection"] == "keep-alive"
        assert resp.rest == b""  # nothing after the terminator
        if accept == "multipart":
            parts = list(parse_savi_stream([resp.body]))
            assert len(parts) == 12  # every frame of the clip
            assert not resp.body.rstrip().endswith(b"--frame--")  # no closing delimiter
            assert resp.body.endswith(b"}")  # the last part's JSON, then the terminator
        else:
            lines = [json.loads(line) for line in resp.body.splitlines()]
            assert lines[-1] == {"type": "end", "frames": 12, "total": 12, "cancelled": False}
        # The same connection serves the next request.
        conn.send("GET", "/ready")
        assert conn.response().status_line == "HTTP/1.1 200 OK"
    finally:
        conn.close()


def test_with_connection_close_the_server_closes_cleanly_after_the_terminator(
    server: Server, session_id: str
) -> None:
    conn = RawConnection(server)
    try:
        conn.send("POST", "/propagate_in_video", _propagate(session_id), "Connection: close\r\n")
        resp = conn.response()  # fails if the connection ends before the terminating chunk
        assert resp.headers["connection"] == "close"
        assert len(list(parse_savi_stream([resp.body]))) == 12
        assert conn.closed_cleanly()
    finally:
        conn.close()


def test_a_cancelled_stream_ends_with_the_terminating_chunk(
    server: Server, session_id: str
) -> None:
    conn = RawConnection(server)
    try:
        accept = "Accept: application/x-ndjson\r\n"
        conn.send("POST", "/propagate_in_video", _propagate(session_id, max_frames=12), accept)
        cancel = threading.Timer(
            0.0, server.data_of, (CANCEL, {"input": {"sessionId": session_id}})
        )
        cancel.start()
        resp = conn.response()
        cancel.join(30)
        assert resp.rest == b""
        end = json.loads(resp.body.splitlines()[-1])
        assert end["type"] == "end"
        conn.send("GET", "/ready")
        assert conn.response().status_line == "HTTP/1.1 200 OK"
    finally:
        conn.close()


# The stock frontend reads the stream through a ReadableStream reader. With "Cache-Control:
# no-store" Chromium reports such a response, read to its end, as net::ERR_ABORTED in most
# reads (the server's bytes being complete); the stream must not send it.
READ_WITH_A_READER = """async ([sid]) => {
  const r = await fetch('/propagate_in_video', {method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({session_id: sid, start_frame_index: 0})});
  const reader = r.body.getReader();
  let n = 0;
  for (;;) { const {done, value} = await reader.read(); if (done) return n; n += value.length; }
}"""


def test_chromium_sees_a_stream_read_to_its_end_as_finished(
    server: Server, session_id: str
) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    outcomes: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.on("requestfinished", lambda r: outcomes.append("finished"))
            page.on("requestfailed", lambda r: outcomes.append(r.failure or "failed"))
            page.goto(f"{server.url}/healthy")
            outcomes.clear()
            for _ in range(6):
                assert page.evaluate(READ_WITH_A_READER, [session_id]) > 0
                page.wait_for_timeout(300)  # let the request's outcome come in
            for _ in range(100):  # on a busy machine the last outcomes may come later
                if len(outcomes) >= 6:
                    break
                page.wait_for_timeout(100)
        finally:
            browser.close()
    assert outcomes == ["finished"] * 6
