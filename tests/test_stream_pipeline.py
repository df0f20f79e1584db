"""The stream as a pipeline, against the real gunicorn server: a client that stops reading is
cut off after the send timeout and the session stays usable; a new request of the same client
takes a running stream over at once while another client gets ``BUSY``; only the fields a
client asks for are encoded.

Clients on other addresses connect from 127.0.0.2 (any 127/8 address reaches the loopback);
the server runs without tokens, so a client is its remote address.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from savi_stream import parse_savi_stream
from service import ADD_POINTS_ALPHA, ORIGIN, Server, launch, stop

from sam2_matting.codec import decode_matte
from sam2_matting.tiny import TinyModelFiles

SEND_TIMEOUT = 3  # seconds; the service's default is 30
MATTES_BOTH = """query M($id: String!, $f: [Int!]!) { mattes(sessionId: $id, frameIndices: $f) {
  frameIndex rleMaskList { objectId rleMask { size counts } alpha { format size counts } } } }"""
EXPORT = """mutation E($input: ExportMatteInput!) { exportMatte(input: $input) { id status } }"""


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(
        tiny_model,
        shared_videos,
        tmp_path_factory.mktemp("pipeline"),
        SAM2_MATTING_SEND_TIMEOUT=str(SEND_TIMEOUT),
    )
    yield s
    stop(s)


class Client:
    """A raw HTTP/1.1 connection from ``source`` with a small receive buffer, so a client
    that stops reading fills the server's socket quickly."""

    def __init__(self, server: Server, source: str = "127.0.0.1") -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind((source, 0))
        self.sock.settimeout(60)
        self.sock.connect((host, int(port)))
        self.host = f"{host}:{port}"
        self.buf = b""

    def propagate(self, body: dict, ndjson: bool = True) -> None:
        data = json.dumps(body).encode()
        accept = "Accept: application/x-ndjson\r\n" if ndjson else ""
        head = (
            f"POST /propagate_in_video HTTP/1.1\r\nHost: {self.host}\r\n{accept}"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + data)

    def status(self) -> int:
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        return int(self.buf.split(b" ", 2)[1])

    def read_to_end(self) -> bytes:
        """Everything until the server closes the connection (or a reset)."""
        self.sock.settimeout(60)
        try:
            while data := self.sock.recv(65536):
                self.buf += data
        except ConnectionResetError:
            pass
        return self.buf

    def close(self) -> None:
        self.sock.close()


def _session(server: Server, path: str = "gallery/dog.mp4") -> str:
    sid = server.start(path)
    server.click(sid, xy=(0.5, 0.5))
    return sid


def _ndjson(server: Server, body: dict, source: str = "127.0.0.1") -> requests.Response:
    resp = server.stream(body, ndjson=True, source=source)
    assert resp.content is not None  # read to the end
    return resp


def _lines(resp: requests.Response) -> list[dict]:
    return [json.loads(line) for line in resp.text.splitlines()]


def _streams(server: Server) -> float:
    return _metric(server, "sam2_matting_streams")


def _wait_no_stream(server: Server, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while _streams(server) > 0:
        assert time.monotonic() < deadline, "the stream was never cut off"
        time.sleep(0.2)


def test_a_client_that_stops_reading_is_cut_off_and_the_session_stays_usable(
    server: Server,
) -> None:
    sid = _session(server)
    stalled = Client(server)
    try:
        stalled.propagate({"session_id": sid})
        assert stalled.status() == 200
        _wait_no_stream(server)  # it reads nothing more: the send timeout ends the stream
        # The session is free again: another client's propagation runs to its end.
        lines = _lines(_ndjson(server, {"session_id": sid, "max_frames": 5}, "127.0.0.2"))
        assert lines[-1] == {"type": "end", "frames": 5, "total": 5, "cancelled": False}
        # The stalled client's connection was closed, and it never got an end line.
        body = stalled.read_to_end()
        assert b'"type": "end"' not in body
    finally:
        stalled.close()
    assert "the client read nothing in time" in Path(server.log_path).read_text()
    server.close_session(sid)


def test_the_same_client_takes_over_another_gets_busy(server: Server) -> None:
    sid = _session(server)
    first = Client(server)
    try:
        first.propagate({"session_id": sid})
        assert first.status() == 200  # streaming; it now reads nothing
        other = _ndjson(server, {"session_id": sid, "max_frames": 3}, "127.0.0.2")
        assert other.status_code == 409 and other.json()["error"]["code"] == "SESSION_BUSY"
        # The same client asks again (as after Ctrl-C): its new stream runs at once, in full.
        again = _lines(_ndjson(server, {"session_id": sid, "max_frames": 3}, "127.0.0.1"))
        assert again[-1] == {"type": "end", "frames": 3, "total": 3, "cancelled": False}
        assert all(line["type"] == "frame" for line in again[:-1])
        body = first.read_to_end()  # the old stream ended (a final line, or the cut-off)
        ends = [ln for ln in body.split(b"\n") if b'"type": "end"' in ln]
        for end in ends:
            assert json.loads(end)["reason"] == "taken_over"
    finally:
        first.close()
    _wait_no_stream(server)
    server.close_session(sid)


def test_only_the_fields_asked_for_are_encoded(server: Server) -> None:
    sid = _session(server, "gallery/small.mp4")
    # NDJSON wanting alpha only: no COCO masks in the stream.
    lines = _lines(_ndjson(server, {"session_id": sid, "fields": ["alpha"]}))
    frames = [ln for ln in lines if ln["type"] == "frame"]
    assert len(frames) == 12
    for ln in frames:
        (result,) = ln["results"]
        assert set(result) == {"object_id", "alpha"}
        assert decode_matte(result["alpha"]).shape == (180, 320)
    # The mattes query still answers both: the mask is made from the alpha on demand.
    got = server.data_of(MATTES_BOTH, {"id": sid, "f": [3]})["mattes"]
    assert got[0]["rleMaskList"][0]["rleMask"]["size"] == [180, 320]

    # The stock frontend's request (a browser, multipart, no fields): masks only.
    resp = requests.post(
        f"{server.url}/propagate_in_video",
        json={"session_id": sid, "start_frame_index": 0},
        headers={"Origin": ORIGIN},
        timeout=120,
    )
    parts = list(parse_savi_stream([resp.content]))
    assert len(parts) == 12
    for part in parts:
        (result,) = json.loads(part.body)["results"]
        assert set(result) == {"object_id", "mask"}
    # Frames streamed without alpha are no export's source.
    body = server.gql(EXPORT, {"input": {"sessionId": sid, "format": "alpha"}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "12 tracked frame(s)" in body["errors"][0]["message"]
    assert '"alpha"' in body["errors"][0]["message"]

    # Without Origin and fields: both (the compatible superset).
    resp = requests.post(f"{server.url}/propagate_in_video", json={"session_id": sid}, timeout=120)
    (result,) = json.loads(next(parse_savi_stream([resp.content])).body)["results"]
    assert set(result) == {"object_id", "mask", "alpha"}


@pytest.mark.parametrize("fields", [[], ["rgb"], "alpha", [1]])
def test_bad_fields_are_refused(server: Server, fields: object) -> None:
    sid = _session(server, "gallery/small.mp4")
    resp = _ndjson(server, {"session_id": sid, "fields": fields})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "BAD_USER_INPUT"
    server.close_session(sid)


def test_prompt_answers_keep_both_fields(server: Server) -> None:
    sid = server.start("gallery/small.mp4")
    inp = {
        "sessionId": sid,
        "frameIndex": 0,
        "clearOldPoints": True,
        "objectId": 0,
        "labels": [1],
        "points": [[0.5, 0.5]],
    }
    masks = server.data_of(ADD_POINTS_ALPHA, {"input": inp})["addPoints"]["rleMaskList"]
    assert masks[0]["rleMask"]["counts"] and masks[0]["alpha"]["counts"]
    server.close_session(sid)


# -- the pipeline itself (no server): order, bounds, stop, errors --------------------------------


def _frames(closed: list[bool], limit: int | None = None) -> Iterator[int]:
    try:
        i = 0
        while limit is None or i < limit:
            yield i
            i += 1
    finally:
        closed.append(True)


def test_parts_come_out_in_frame_order_from_the_pool() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sam2_matting.predictor import CancelToken
    from server.stream_pipeline import FramePipeline

    def encode(current: int, frame: int) -> bytes:
        time.sleep(0.002 * (frame % 3 == 0))  # some encodings finish after later ones
        return f"{current}:{frame}".encode()

    closed: list[bool] = []
    with ThreadPoolExecutor(3) as pool:
        pipe = FramePipeline(_frames(closed, 30), encode, CancelToken(), pool=pool)
        pipe.start()
        parts = list(pipe)
        assert pipe.stop()
    assert parts == [f"{i + 1}:{i}".encode() for i in range(30)]
    assert closed == [True]


def test_a_writer_that_reads_nothing_holds_a_bounded_number_of_frames() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sam2_matting.predictor import CancelToken
    from server.stream_pipeline import FramePipeline

    closed: list[bool] = []
    released: list[bool] = []
    with ThreadPoolExecutor(2) as pool:
        pipe = FramePipeline(
            _frames(closed),
            lambda n, f: b"x",
            CancelToken(),
            pool=pool,
            in_flight=3,
            depth=4,
            on_release=lambda: released.append(True),
        )
        pipe.start()
        deadline = time.monotonic() + 30
        while pipe.produced < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        held = pipe.produced
        # 4 in the buffer, 1 waiting for room, at most 2 more encoding: not the whole video
        assert 5 <= held <= 7
        assert pipe.stop()  # the client is gone: cancel
        assert closed == [True] and released == [True]
        assert not pipe._thread.is_alive() or pipe.producer_done.is_set()
    assert held == pipe.produced


def test_an_error_in_the_propagation_comes_after_the_parts_before_it() -> None:
    from sam2_matting.predictor import CancelToken
    from server.stream_pipeline import FramePipeline

    def frames() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("boom")

    pipe = FramePipeline(frames(), lambda n, f: str(f).encode(), CancelToken())
    pipe.start()
    got = []
    with pytest.raises(RuntimeError, match="boom"):
        for part in pipe:
            got.append(part)
    assert got == [b"1", b"2"]
    assert pipe.stop()


def _metric(server: Server, name: str) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return float(next(ln.split()[1] for ln in text.splitlines() if ln.startswith(name + " ")))


def test_disconnect_cancel_and_close_leave_no_thread_behind(server: Server) -> None:
    from service import CANCEL

    sid = _session(server)
    _ndjson(server, {"session_id": sid, "max_frames": 2})
    # A client that goes away mid-stream.
    gone = Client(server)
    gone.propagate({"session_id": sid})
    assert gone.status() == 200
    gone.close()
    _wait_no_stream(server)
    # A cancelled stream, then a stream whose session is closed under it.
    for stop_it in ("cancel", "close"):
        if stop_it == "close":
            sid = _session(server)
        client = Client(server)
        client.propagate({"session_id": sid})
        assert client.status() == 200
        if stop_it == "cancel":
            server.data_of(CANCEL, {"input": {"sessionId": sid}})
        else:
            server.close_session(sid)
        _wait_no_stream(server)  # it reads nothing: its last parts wait for the send timeout
        client.close()
    # Every producer thread has ended (the gauge counts the live ones by name).
    deadline = time.monotonic() + 60
    while _metric(server, "sam2_matting_stream_producers") > 0:
        assert time.monotonic() < deadline, "a producer thread is still alive"
        time.sleep(0.2)
