"""Server parts on their own: the session store (expiry, cap, cancel races) and stream framing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from savi_stream import parse_savi_stream

from sam2_matting.errors import BusyError, NotFoundError, SessionBusyError
from sam2_matting.predictor import MattingPredictor
from sam2_matting.session import FrameMattes
from server.config import Settings
from server.metrics import create_metrics
from server.sessions import SessionStore
from server.stream import ERROR_PART_TYPE, _generate, frames_due, multipart_part


@dataclass(frozen=True)
class Record:
    id: str
    file: Path


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(predictor: MattingPredictor) -> Iterator[SessionStore]:
    clock = Clock()
    s = SessionStore(predictor, max_sessions=2, ttl=60, clock=clock)
    s.clock_ = clock  # type: ignore[attr-defined]
    yield s
    s.shutdown()


def test_idle_sessions_expire_and_free_their_slot(store, bedroom_video) -> None:
    video = Record("gallery/bedroom.mp4", bedroom_video)
    a = store.create(video)
    store.create(video)
    with pytest.raises(BusyError):
        store.create(video)
    store.clock_.now += 30
    store.get(a.id)  # touching keeps `a` alive
    store.clock_.now += 45  # the other one has been idle 75 s > 60 s
    assert store.purge_expired() == 1
    assert len(store) == 1
    store.create(video)  # the freed slot is usable
    store.clock_.now += 61
    with pytest.raises(NotFoundError, match="expired"):
        store.get(a.id)


def test_a_streaming_session_does_not_expire(store, bedroom_video) -> None:
    entry = store.create(Record("gallery/bedroom.mp4", bedroom_video))
    token, _ = entry.begin_stream()
    store.clock_.now += 3600
    assert store.purge_expired() == 0
    entry.end_stream(token)
    store.clock_.now += 61
    assert store.purge_expired() == 1


def test_one_stream_per_session(store, bedroom_video) -> None:
    entry = store.create(Record("gallery/bedroom.mp4", bedroom_video))
    token, _ = entry.begin_stream()
    with pytest.raises(SessionBusyError):
        entry.begin_stream()
    entry.end_stream(token)
    entry.end_stream(entry.begin_stream()[0])


def test_cancel_between_request_and_first_frame_is_not_lost(store, bedroom_video) -> None:
    entry = store.create(Record("gallery/bedroom.mp4", bedroom_video))
    entry.session.add_points(0, 1, [[300, 200]], [1])
    token, epoch = entry.begin_stream()
    frames = entry.session.propagate(0, cancel=token)
    entry.cancel_streams()  # arrives before the generator computes anything
    metrics = create_metrics(store)
    lines = list(_generate(entry, frames, token, epoch, 200, None, True, metrics))
    assert [json.loads(x)["type"] for x in lines] == ["end"]
    assert json.loads(lines[0])["cancelled"] is True
    assert not entry.streaming and not entry.session.is_propagating


def test_close_during_a_stream_frees_the_session(store, bedroom_video) -> None:
    entry = store.create(Record("gallery/bedroom.mp4", bedroom_video))
    entry.session.add_points(0, 1, [[300, 200]], [1])
    token, epoch = entry.begin_stream()
    frames = entry.session.propagate(0, cancel=token)
    metrics = create_metrics(store)
    gen = _generate(entry, frames, token, epoch, 200, None, False, metrics)
    first = next(gen)
    closer = threading.Thread(target=store.close, args=(entry.id,))
    closer.start()
    rest = list(gen)
    closer.join(30)
    parts = list(parse_savi_stream([first, *rest]))
    assert 1 <= len(parts) < 200
    assert entry.session.state == {}  # tracking state freed
    with pytest.raises(NotFoundError):
        store.get(entry.id)


def test_an_error_after_the_headers_ends_with_an_error_part(store, bedroom_video) -> None:
    entry = store.create(Record("gallery/bedroom.mp4", bedroom_video))
    result = entry.session.add_points(0, 1, [[300, 200]], [1])

    def frames() -> Iterator[FrameMattes]:
        yield result
        raise RuntimeError("boom: /secret/path")

    token, epoch = entry.begin_stream()
    body = list(_generate(entry, frames(), token, epoch, 5, None, False, create_metrics(store)))
    parts = list(parse_savi_stream(body))
    assert len(parts) == 2
    assert parts[0].headers["content-type"] == "application/json; charset=utf-8"
    assert parts[1].headers["content-type"] == f"{ERROR_PART_TYPE}; charset=utf-8"
    error = json.loads(parts[1].body)
    assert error["error"]["code"] == "INTERNAL" and "secret" not in parts[1].body.decode()
    assert not entry.streaming


def test_a_failing_propagation_cleanup_is_logged_not_raised(store, bedroom_video, caplog) -> None:
    """Closing the body (a client gone, or gunicorn's close after the last part) must not
    raise even if stopping SAM 2's generator does: the session is freed for the next stream."""
    entry = store.create(Record("gallery/bedroom.mp4", bedroom_video))
    result = entry.session.add_points(0, 1, [[300, 200]], [1])

    def frames() -> Iterator[FrameMattes]:
        try:
            yield result
            yield result
        finally:
            raise RuntimeError("cleanup failed")

    token, epoch = entry.begin_stream()
    gen = _generate(entry, frames(), token, epoch, 2, None, False, create_metrics(store))
    next(gen)
    gen.close()  # what the server does when the client disconnects
    assert not entry.streaming
    assert "stopping the propagation failed" in caplog.text
    entry.end_stream(entry.begin_stream()[0])  # the next stream is accepted


def test_part_framing_is_byte_exact() -> None:
    part = multipart_part(b'{"a":1}', 3, 10, "application/json")
    assert part == (
        b"--frame\r\nContent-Type: application/json; charset=utf-8\r\nFrame-Current: 3\r\n"
        b"Frame-Total: 10\r\nMask-Type: RLE[]\r\nContent-Length: 7\r\n\r\n" + b'{"a":1}'
    )


@pytest.mark.parametrize(
    ("start", "count", "direction", "max_frames", "due"),
    [
        (0, 10, "forward", None, 10),
        (0, 10, "both", None, 10),
        (4, 10, "both", None, 10),
        (4, 10, "both", 3, 5),
        (4, 10, "backward", None, 5),
        (9, 10, "forward", 5, 1),
    ],
)
def test_frames_due(
    start: int, count: int, direction: str, max_frames: int | None, due: int
) -> None:
    assert frames_due(start, count, direction, max_frames) == due


def test_settings_from_environment() -> None:
    s = Settings.from_env(
        {
            "SAM2_MATTING_PORT": "8000",
            "SAM2_MATTING_CORS_ORIGINS": "https://a.example, https://b.example",
            "SAM2_MATTING_PRODUCTION": "yes",
            "API_TOKEN": "t",
            "SAM2_MATTING_CHECKPOINTS": "/w",
        },
        host="0.0.0.0",
    )
    assert (s.port, s.host, s.api_token, s.checkpoint_dir) == (8000, "0.0.0.0", "t", "/w")
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert not s.graphiql_enabled and not s.introspection_enabled
    from sam2_matting.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="SAM2_MATTING_PORT"):
        Settings.from_env({"SAM2_MATTING_PORT": "eighty"})


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("SAM2_MATTING_MAX_SESSIONS", "0", "at least 1"),
        ("SAM2_MATTING_MAX_SESSIONS", "-3", "at least 1"),
        ("SAM2_MATTING_SESSION_TTL", "-1", "above 0"),
        ("SAM2_MATTING_SESSION_TTL", "0", "above 0"),
        ("SAM2_MATTING_SESSION_TTL", "nan", "finite"),
        ("SAM2_MATTING_EXPORT_TTL", "inf", "finite"),
        ("SAM2_MATTING_MAX_UPLOAD_BYTES", "0", "at least 1"),
        ("SAM2_MATTING_MAX_REQUEST_BYTES", "-1", "at least 1"),
        ("SAM2_MATTING_MAX_DURATION_SEC", "0", "above 0"),
        ("SAM2_MATTING_MAX_FPS", "-30", "above 0"),
        ("SAM2_MATTING_MAX_FRAMES", "0", "at least 1"),
        ("SAM2_MATTING_MAX_SIDE", "1", "at least 2"),
        ("SAM2_MATTING_MAX_OBJECTS", "0", "at least 1"),
        ("SAM2_MATTING_THREADS", "0", "at least 1"),
        ("SAM2_MATTING_GRACEFUL_TIMEOUT", "-1", "at least 0"),
        ("SAM2_MATTING_PORT", "65536", "at most 65535"),
        ("SAM2_MATTING_MAX_QUERY_DEPTH", "0", "at least 1"),
        ("SAM2_MATTING_MAX_ALIASES", "0", "at least 1"),
        ("SAM2_MATTING_MAX_TOKENS", "0", "at least 1"),
        ("SAM2_MATTING_LOG_LEVEL", "LOUD", "one of DEBUG"),
        ("SAM2_MATTING_REPLICA_ID", "r 1", "letters, digits"),
        ("SAM2_MATTING_HOST", " ", "not be empty"),
        ("API_URL", "matting.example.com", "http(s) URL"),
        ("SAM2_MATTING_CORS_ORIGINS", "*", "not an http(s) origin"),
    ],
)
def test_settings_out_of_range_name_their_variable(variable: str, value: str, words: str) -> None:
    """Checked when the settings are made (at start-up), with the variable's name."""
    from sam2_matting.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as info:
        Settings.from_env({variable: value})
    assert str(info.value).startswith(f"{variable}: ") and words in str(info.value)


def test_settings_in_range_are_accepted() -> None:
    s = Settings.from_env(
        {
            "SAM2_MATTING_MAX_SESSIONS": "1",
            "SAM2_MATTING_SESSION_TTL": "0.5",
            "SAM2_MATTING_PORT": "0",
            "SAM2_MATTING_GRACEFUL_TIMEOUT": "0",
            "SAM2_MATTING_LOG_LEVEL": "debug",
            "SAM2_MATTING_REPLICA_ID": "r1",
            "API_URL": "https://matting.example.com/api/",
        }
    )
    assert (s.max_sessions, s.session_ttl, s.port) == (1, 0.5, 0)
    Settings()  # the defaults are in range


def test_serve_refuses_a_bad_setting_in_one_line() -> None:
    """Checked at start-up, before gunicorn or the model: one line, exit status 2."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SAM2_MATTING_MAX_SESSIONS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "sam2_matting", "serve", "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr.strip() == (
        "sam2-matting: error: SAM2_MATTING_MAX_SESSIONS: must be at least 1 (got 0)"
    )
