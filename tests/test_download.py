"""Model registry and checkpoint downloads, against a real HTTP server on 127.0.0.1.

The server (http.server in a thread, port 0) serves a random payload with its own Range support
and switchable misbehaviour: dropping the connection mid-body (clean close, reset, truncated
chunked body, stall past the client's timeout), ignoring Range, answering the wrong range,
corrupting bytes and failing with an HTTP status.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypedDict

import pytest

from sam2_matting.cli import main as cli_main
from sam2_matting.download import (
    CHECKSUMS_FILE,
    download,
    download_model,
    file_sha256,
    read_checksums,
    record_checksum,
)
from sam2_matting.errors import DownloadError, InvalidInputError, NotFoundError
from sam2_matting.registry import (
    CHECKPOINTS_ENV,
    MODELS,
    ModelSpec,
    checkpoint_path,
    default_checkpoint_dir,
    get_model_spec,
    package_config_file,
)

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = random.Random(1234).randbytes(300 * 1024 + 17)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
ETAG = '"payload-v1"'


class _Fast(TypedDict):
    progress: bool
    timeout: float
    retries: int
    backoff: float


FAST = _Fast(progress=False, timeout=5.0, retries=3, backoff=0.01)
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


# --------------------------------------------------------------------------------------------
# The test server


@dataclass
class Behaviour:
    """What the server does; ``first_only`` faults apply to the first request only."""

    drop_after: int | None = None  # send this many body bytes, then drop (first request)
    drop_how: str = "eof"  # eof | reset | chunked | stall
    drop_always: bool = False  # drop every request, not just the first
    ignore_range: bool = False
    wrong_range: bool = False  # answer a Range request with 206 for bytes 0-
    corrupt: bool = False
    status: int | None = None  # answer every request with this status
    fail_first: int = 0  # answer the first N requests with 503
    redirect_to: str | None = None  # answer requests for /redirect with 302 to this URL
    stall_s: float = 1.0
    on_stall: Callable[[], None] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> bytes:
        if not self.corrupt:
            return PAYLOAD
        data = bytearray(PAYLOAD)
        data[1000] ^= 0xFF
        return bytes(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    behaviour: Behaviour

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections are the point of these tests: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour
        b.requests.append(
            {
                "path": self.path,
                "range": self.headers.get("Range"),
                "if_range": self.headers.get("If-Range"),
            }
        )
        number = len(b.requests)
        self.close_connection = True
        if self.path == "/redirect" and b.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", b.redirect_to)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        if b.status is not None or number <= b.fail_first:
            code = b.status if b.status is not None else 503
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        body = b.body()
        start, end, code = 0, len(body), 200
        requested = self.headers.get("Range")
        if requested and not b.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", requested)
            assert match, requested
            start = int(match[1])
            end = int(match[2]) + 1 if match[2] else len(body)
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            code = 206
            if b.wrong_range:
                start = 0
        chunk = body[start:end]
        dropping = b.drop_after is not None and (number == 1 or b.drop_always)
        chunked = dropping and b.drop_how == "chunked"
        self.send_response(code)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(chunk)))
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
        self.send_header("ETag", ETAG)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Connection", "close")
        self.end_headers()
        if not dropping:
            self.wfile.write(chunk)
            return
        assert b.drop_after is not None
        sent = chunk[: b.drop_after]
        if chunked:  # announce the whole chunk, send only part of it: IncompleteRead
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + sent)
        else:
            self.wfile.write(sent)
        self.wfile.flush()
        if b.drop_how == "reset":  # RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif b.drop_how == "stall":
            if b.on_stall is not None:
                b.on_stall()
            time.sleep(b.stall_s)


@dataclass
class Served:
    url: str
    behaviour: Behaviour


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests go straight to 127.0.0.1, never through a proxy from the environment."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server() -> Iterator[Served]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.behaviour = Behaviour()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    port = httpd.server_address[1]
    try:
        yield Served(f"http://127.0.0.1:{port}/sam2.1_hiera_tiny.pt", httpd.behaviour)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------------------------
# Registry


def test_registry_has_the_four_sizes_with_package_configs() -> None:
    assert list(MODELS) == ["tiny", "small", "base_plus", "large"]
    short = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
    for name, spec in MODELS.items():
        assert isinstance(spec, ModelSpec)
        assert spec.name == name
        assert spec.checkpoint_file == f"sam2.1_hiera_{name}.pt"
        assert spec.url == (
            f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{name}.pt"
        )
        assert spec.config == f"configs/sam2.1/sam2.1_hiera_{short[name]}.yaml"
        assert spec.sha256 is None  # not published: never invented
        config = package_config_file(spec)
        assert config.is_file(), config
        assert config.parts[-4:] == (
            "sam2",
            "configs",
            "sam2.1",
            f"sam2.1_hiera_{short[name]}.yaml",
        )
    with pytest.raises(AttributeError):
        MODELS["tiny"].name = "huge"  # type: ignore[misc]
    with pytest.raises(TypeError):
        MODELS["huge"] = MODELS["tiny"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("tiny", "tiny"),
        ("t", "tiny"),
        ("hiera_t", "tiny"),
        ("sam2.1_hiera_tiny", "tiny"),
        ("S", "small"),
        ("b+", "base_plus"),
        ("Base-Plus", "base_plus"),
        ("hiera_b+", "base_plus"),
        ("hiera_l", "large"),
        (" large ", "large"),
    ],
)
def test_aliases(alias: str, name: str) -> None:
    assert get_model_spec(alias) is MODELS[name]


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(NotFoundError) as info:
        get_model_spec("huge")
    message = str(info.value)
    assert "'huge'" in message
    for name in MODELS:
        assert name in message
    assert isinstance(info.value, KeyError)


def test_checkpoint_dir_and_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_checkpoint_dir() == tmp_path / "checkpoints"
    assert checkpoint_path("t") == tmp_path / "checkpoints" / "sam2.1_hiera_tiny.pt"
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path / "models"))
    assert default_checkpoint_dir() == tmp_path / "models"
    assert checkpoint_path(MODELS["large"], "/x") == Path("/x/sam2.1_hiera_large.pt")
    monkeypatch.setenv(CHECKPOINTS_ENV, "")
    assert default_checkpoint_dir() == tmp_path / "checkpoints"


# --------------------------------------------------------------------------------------------
# download()


def test_plain_download(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "model.pt"
    assert download(server.url, dest, sha256=PAYLOAD_SHA.upper(), **FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["model.pt"]
    assert server.behaviour.requests[0]["range"] is None


@pytest.mark.parametrize("how", ["eof", "reset", "chunked"])
def test_dropped_connection_resumes_with_range(server: Served, tmp_path: Path, how: str) -> None:
    server.behaviour.drop_after = 100_000
    server.behaviour.drop_how = how
    dest = tmp_path / "model.pt"
    download(server.url, dest, sha256=PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["model.pt"]
    requests = server.behaviour.requests
    assert len(requests) == 2
    match = re.fullmatch(r"bytes=(\d+)-", requests[1]["range"] or "")
    assert match, requests
    assert 0 < int(match[1]) <= 100_000
    if how == "eof":
        assert int(match[1]) == 100_000
    assert requests[1]["if_range"] == ETAG


def test_socket_timeout_resumes_and_final_name_is_never_partial(
    server: Served, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pt"
    seen: list[tuple[bool, bool]] = []
    b = server.behaviour
    b.drop_after, b.drop_how, b.stall_s = 50_000, "stall", 1.0
    b.on_stall = lambda: seen.append((dest.exists(), dest.with_name("model.pt.part").exists()))
    download(server.url, dest, progress=False, timeout=0.3, retries=3, backoff=0.01)
    assert dest.read_bytes() == PAYLOAD
    assert seen == [(False, True)]
    assert b.requests[1]["range"] == "bytes=50000-"


def test_resumes_an_existing_part_file(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / "model.pt"
    dest.with_name("model.pt.part").write_bytes(PAYLOAD[:123_456])
    download(server.url, dest, sha256=PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.behaviour.requests] == ["bytes=123456-"]


def test_server_ignoring_range_restarts_from_zero(server: Served, tmp_path: Path) -> None:
    server.behaviour.ignore_range = True
    dest = tmp_path / "model.pt"
    dest.with_name("model.pt.part").write_bytes(b"\0" * 5000)  # wrong bytes: must be discarded
    download(server.url, dest, sha256=PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.behaviour.requests] == ["bytes=5000-"]


def test_content_range_mismatch_restarts(server: Served, tmp_path: Path) -> None:
    server.behaviour.wrong_range = True
    dest = tmp_path / "model.pt"
    dest.with_name("model.pt.part").write_bytes(PAYLOAD[:7000])
    download(server.url, dest, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.behaviour.requests] == ["bytes=7000-", None]


def test_416_for_a_complete_part_file(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / "model.pt"
    dest.with_name("model.pt.part").write_bytes(PAYLOAD)
    download(server.url, dest, sha256=PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.behaviour.requests] == [f"bytes={len(PAYLOAD)}-"]
    assert _leftovers(tmp_path) == ["model.pt"]


def test_416_for_a_too_big_part_file_restarts(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / "model.pt"
    dest.with_name("model.pt.part").write_bytes(PAYLOAD + b"junk")
    download(server.url, dest, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.behaviour.requests] == [f"bytes={len(PAYLOAD) + 4}-", None]


def test_checksum_mismatch_leaves_nothing(server: Served, tmp_path: Path) -> None:
    server.behaviour.corrupt = True
    dest = tmp_path / "model.pt"
    with pytest.raises(DownloadError) as info:
        download(server.url, dest, sha256=PAYLOAD_SHA, **FAST)
    message = str(info.value)
    assert PAYLOAD_SHA in message
    assert hashlib.sha256(server.behaviour.body()).hexdigest() in message
    assert "\n" not in message
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("status", [404, 500])
def test_http_error(server: Served, tmp_path: Path, status: int) -> None:
    server.behaviour.status = status
    with pytest.raises(DownloadError) as info:
        download(server.url, tmp_path / "model.pt", **FAST)
    assert f"HTTP {status}" in str(info.value)
    assert server.url in str(info.value)
    assert len(server.behaviour.requests) == 1  # not retried
    assert _leftovers(tmp_path) == []


def test_503_is_retried(server: Served, tmp_path: Path) -> None:
    server.behaviour.fail_first = 2
    download(server.url, tmp_path / "model.pt", **FAST)
    assert (tmp_path / "model.pt").read_bytes() == PAYLOAD
    assert len(server.behaviour.requests) == 3


def test_gives_up_after_retries_and_keeps_the_part(server: Served, tmp_path: Path) -> None:
    b = server.behaviour
    b.drop_after, b.drop_always, b.ignore_range = 1000, True, True  # never gets further
    with pytest.raises(DownloadError, match="failed after 3 attempts"):
        download(server.url, tmp_path / "model.pt", progress=False, retries=2, backoff=0.01)
    assert len(b.requests) == 3
    assert _leftovers(tmp_path) == ["model.pt.part"]


def test_redirects_are_followed_with_the_range(server: Served, tmp_path: Path) -> None:
    server.behaviour.redirect_to = server.url
    redirecting = server.url.rsplit("/", 1)[0] + "/redirect"
    dest = tmp_path / "model.pt"
    dest.with_name("model.pt.part").write_bytes(PAYLOAD[:1000])
    download(redirecting, dest, sha256=PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [(r["path"], r["range"]) for r in server.behaviour.requests] == [
        ("/redirect", "bytes=1000-"),
        ("/sam2.1_hiera_tiny.pt", "bytes=1000-"),
    ]


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/x.pt", "file:///etc/passwd"])
def test_redirect_to_a_non_http_url_is_refused(server: Served, tmp_path: Path, target: str) -> None:
    server.behaviour.redirect_to = target
    with pytest.raises(DownloadError, match=r"non-http|not allowed"):
        download(server.url.rsplit("/", 1)[0] + "/redirect", tmp_path / "x.pt", **FAST)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.pt", "127.0.0.1/x"])
def test_non_http_urls_are_rejected(tmp_path: Path, url: str) -> None:
    with pytest.raises(DownloadError, match="not an http"):
        download(url, tmp_path / "x.pt", **FAST)
    assert _leftovers(tmp_path) == []


def test_bad_sha256_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        download("http://127.0.0.1:1/x", tmp_path / "x.pt", sha256="abc", **FAST)


def test_a_locked_part_file_is_refused(server: Served, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    dest = tmp_path / "model.pt"
    with open(dest.with_name("model.pt.part"), "ab") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DownloadError, match="another process"):
            download(server.url, dest, **FAST)
    assert not dest.exists()
    assert server.behaviour.requests == []


# --------------------------------------------------------------------------------------------
# download_model() and the checksum record


def test_download_model_records_and_verifies(server: Served, tmp_path: Path) -> None:
    path = download_model("tiny", tmp_path, url=server.url, **FAST)
    assert path == tmp_path / "sam2.1_hiera_tiny.pt"
    assert path.read_bytes() == PAYLOAD
    record = json.loads((tmp_path / CHECKSUMS_FILE).read_text())
    assert record == {"sam2.1_hiera_tiny.pt": PAYLOAD_SHA}
    assert _leftovers(tmp_path) == [CHECKSUMS_FILE, "sam2.1_hiera_tiny.pt"]

    # Present and intact: verified, not downloaded again.
    assert download_model("t", tmp_path, url=server.url, **FAST) == path
    assert len(server.behaviour.requests) == 1

    # Corrupted on disk: a clear error, the file is left alone.
    data = bytearray(PAYLOAD)
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DownloadError) as info:
        download_model("tiny", tmp_path, url=server.url, **FAST)
    message = str(info.value)
    assert "corrupt" in message
    assert "--force" in message
    assert "delete" in message
    assert PAYLOAD_SHA in message
    assert len(server.behaviour.requests) == 1

    # force: downloaded again, verified against the record.
    assert download_model("tiny", tmp_path, url=server.url, force=True, **FAST) == path
    assert path.read_bytes() == PAYLOAD
    assert len(server.behaviour.requests) == 2
    assert read_checksums(tmp_path) == {"sam2.1_hiera_tiny.pt": PAYLOAD_SHA}


def test_recorded_checksum_is_used_for_new_downloads(server: Served, tmp_path: Path) -> None:
    record_checksum(tmp_path, "sam2.1_hiera_tiny.pt", PAYLOAD_SHA)
    server.behaviour.corrupt = True
    with pytest.raises(DownloadError) as info:
        download_model("tiny", tmp_path, url=server.url, **FAST)
    assert "checksums.json" in str(info.value)
    assert _leftovers(tmp_path) == [CHECKSUMS_FILE]


def test_force_keeps_the_old_file_until_the_new_one_verifies(
    server: Served, tmp_path: Path
) -> None:
    download_model("tiny", tmp_path, url=server.url, **FAST)
    (tmp_path / "sam2.1_hiera_tiny.pt.part").write_bytes(b"stale")  # force discards it
    server.behaviour.corrupt = True
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download_model("tiny", tmp_path, url=server.url, force=True, **FAST)
    assert (tmp_path / "sam2.1_hiera_tiny.pt").read_bytes() == PAYLOAD
    assert server.behaviour.requests[-1]["range"] is None
    assert _leftovers(tmp_path) == [CHECKSUMS_FILE, "sam2.1_hiera_tiny.pt"]


def test_existing_file_without_record_gets_recorded(tmp_path: Path) -> None:
    (tmp_path / "sam2.1_hiera_small.pt").write_bytes(b"weights")
    path = download_model("small", tmp_path, url="http://127.0.0.1:1/never", **FAST)
    assert path == tmp_path / "sam2.1_hiera_small.pt"
    assert read_checksums(tmp_path) == {"sam2.1_hiera_small.pt": file_sha256(path)}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"a.pt": "xyz"}'])
def test_malformed_checksum_record(tmp_path: Path, text: str) -> None:
    (tmp_path / CHECKSUMS_FILE).write_text(text)
    with pytest.raises(DownloadError, match=r"checksums\.json"):
        read_checksums(tmp_path)


def test_download_model_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="base_plus"):
        download_model("huge", tmp_path, **FAST)


# --------------------------------------------------------------------------------------------
# CLI


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.pop(CHECKPOINTS_ENV, None)
    env["no_proxy"] = "*"
    env["PYTHONPATH"] = str(REPO)
    return env


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sam2_matting", "download", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_cli_env(tmp_path),
        timeout=60,
    )


def test_cli_end_to_end(server: Served, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    done = _cli(tmp_path, "tiny", "--url", server.url, "--dir", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    target = out / "sam2.1_hiera_tiny.pt"
    assert str(target) in done.stdout
    assert target.read_bytes() == PAYLOAD
    assert read_checksums(out) == {target.name: PAYLOAD_SHA}

    again = _cli(tmp_path, "tiny", "--url", server.url, "--dir", str(out), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "already present" in again.stdout
    assert len(server.behaviour.requests) == 1

    server.behaviour.status = 404
    failed = _cli(tmp_path, "large", "--url", server.url, "--dir", str(out), "--no-progress")
    assert failed.returncode == DownloadError.exit_code
    assert failed.stderr.strip().count("\n") == 0, failed.stderr
    assert "HTTP 404" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_cli_list_and_errors(
    server: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download_model("tiny", tmp_path, url=server.url, **FAST)
    assert cli_main(["download", "--list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert set(MODELS) <= set(lines)
    assert "present" in lines["tiny"]
    assert "checksum recorded" in lines["tiny"]
    assert "present" not in lines["large"]
    assert "sam2.1_hiera_b+.yaml" in lines["base_plus"]

    assert cli_main(["download", "huge", "--dir", str(tmp_path)]) == NotFoundError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("sam2-matting: error: unknown model 'huge'")
    assert err.count("\n") == 1

    assert cli_main(["download"]) != 0
    assert "--list" in capsys.readouterr().err
