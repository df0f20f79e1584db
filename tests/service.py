"""The service for tests, two ways. In process: ``build_app`` builds the Flask app as
``create_app`` does for gunicorn (the tiny model, a gallery folder of its own), ``close_app``
stops its threads; ``tests/conftest.py`` serves it as the ``app`` and ``client`` fixtures. As a
process: ``launch`` starts the real CLI (``sam2-matting serve``, so gunicorn) on a free port,
``Server`` talks to it, ``stop`` ends it and returns its log. The GraphQL documents are the ones
the stock SAM 2 demo frontend sends (anchor doc, 1.5). Not a test module: the suites import it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from sam2_matting.tiny import TinyModelFiles

if TYPE_CHECKING:
    from flask import Flask

    from sam2_matting.predictor import MattingPredictor

START = "mutation StartSession($input: StartSessionInput!) { startSession(input: $input) { sessionId } }"
CLOSE = (
    "mutation CloseSession($input: CloseSessionInput!) { closeSession(input: $input) { success } }"
)
ADD_POINTS = """mutation AddPoints($input: AddPointsInput!) {
  addPoints(input: $input) { frameIndex rleMaskList { objectId rleMask { counts size } } } }"""
ADD_POINTS_ALPHA = """mutation AddPoints($input: AddPointsInput!) {
  addPoints(input: $input) { frameIndex rleMaskList { objectId rleMask { counts size order }
  alpha { format size counts } } } }"""
CLEAR_FRAME = """mutation ClearPointsInFrame($input: ClearPointsInFrameInput!) {
  clearPointsInFrame(input: $input) { frameIndex rleMaskList { objectId rleMask { counts size } } } }"""
CLEAR_VIDEO = """mutation ClearPointsInVideo($input: ClearPointsInVideoInput!) {
  clearPointsInVideo(input: $input) { success } }"""
REMOVE = """mutation RemoveObject($input: RemoveObjectInput!) {
  removeObject(input: $input) { frameIndex rleMaskList { objectId rleMask { counts size } } } }"""
CANCEL = """mutation CancelPropagateInVideo($input: CancelPropagateInVideoInput!) {
  cancelPropagateInVideo(input: $input) { success } }"""
DEFAULT_VIDEO = (
    "query DemoPageQuery { defaultVideo { path posterPath url posterUrl height width } }"
)
GALLERY = """query DemoVideoGalleryQuery { videos { edges { node {
  id path posterPath url posterUrl height width } } } }"""
SESSION = """query S($id: String!) { session(sessionId: $id) { sessionId frameCount fps width height
  objects { objectId promptedFrames } propagatedFrames isPropagating expiresInSeconds expiresAt
  video { path } } }"""
MATTES = """query M($id: String!, $f: [Int!]!) { mattes(sessionId: $id, frameIndices: $f) {
  frameIndex rleMaskList { objectId alpha { format size counts } } } }"""
ORIGIN = "http://localhost:7262"


def write_clip(source: Path, dest: Path, frames: int, size: tuple[int, int] = (320, 180)) -> Path:
    """The first ``frames`` frames of ``source`` scaled to ``size``, as H.264. A clip longer
    than the source plays it forward, then backward, and so on (no cut between passes)."""
    import av

    with av.open(str(source)) as src:
        decoded = []
        for frame in src.decode(video=0):
            decoded.append(frame.reformat(size[0], size[1], format="yuv420p").to_ndarray())
            if len(decoded) == frames:
                break
    period = max(2 * len(decoded) - 2, 1)
    with av.open(str(dest), "w") as dst:
        out = dst.add_stream("libx264", rate=30)
        out.width, out.height, out.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            k = i % period
            plane = decoded[k if k < len(decoded) else period - k]
            frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
            for packet in out.encode(frame):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], data: Path) -> None:
        self.url, self.proc, self.data = url, proc, data
        self.log_path = Path()

    def gql(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> Any:
        headers = {"Origin": ORIGIN, **kw.pop("headers", {})}
        r = requests.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=60,
            **kw,
        )
        assert r.headers["Content-Type"].startswith("application/json"), r.text[:200]
        return r.json()

    def data_of(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = self.gql(query, variables)
        assert "errors" not in body, body
        return body["data"]

    def start(self, path: str = "gallery/bedroom.mp4") -> str:
        return str(self.data_of(START, {"input": {"path": path}})["startSession"]["sessionId"])

    def click(
        self, sid: str, frame: int = 0, obj: int = 0, xy: tuple[float, float] = (0.3, 0.4)
    ) -> Any:
        inp = {
            "sessionId": sid,
            "frameIndex": frame,
            "clearOldPoints": True,
            "objectId": obj,
            "labels": [1],
            "points": [list(xy)],
        }
        return self.data_of(ADD_POINTS_ALPHA, {"input": inp})["addPoints"]

    def close_session(self, sid: str) -> bool:
        return bool(self.data_of(CLOSE, {"input": {"sessionId": sid}})["closeSession"]["success"])

    def stream(
        self, body: dict[str, Any], ndjson: bool = False, source: str | None = None
    ) -> requests.Response:
        """POST /propagate_in_video; ``source``: connect from this loopback address (another
        client, as the service without tokens tells clients apart by address)."""
        headers = {"Accept": "application/x-ndjson"} if ndjson else {}
        http = requests.Session()
        if source is not None:
            http.mount("http://", SourceAdapter(source))
        return http.post(
            f"{self.url}/propagate_in_video", json=body, headers=headers, stream=True, timeout=120
        )


class SourceAdapter(requests.adapters.HTTPAdapter):
    """Requests connecting from a given local address (e.g. ``127.0.0.2``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def launch(
    tiny_model: TinyModelFiles,
    shared_videos: Path,
    root: Path,
    clips: dict[str, tuple[int, tuple[int, int]]] | None = None,
    **env_extra: str,
) -> Server:
    """Start ``sam2-matting serve`` (gunicorn) on a free port; wait until /ready answers.
    ``clips``: more gallery clips, name → (frames, size), written from bedroom.mp4."""
    gallery = root / "gallery"
    if not gallery.exists():
        gallery.mkdir(parents=True)
        (gallery / "bedroom.mp4").symlink_to(shared_videos / "bedroom.mp4")
        (gallery / "dog.mp4").symlink_to(shared_videos / "01_dog.mp4")
        write_clip(shared_videos / "bedroom.mp4", gallery / "small.mp4", frames=12)
    for name, (frames, size) in (clips or {}).items():
        write_clip(shared_videos / "bedroom.mp4", gallery / name, frames, size)
    port = free_port()
    env = {
        **os.environ,
        "SAM2_MATTING_GALLERY": str(gallery),
        "SAM2_MATTING_DATA": str(root / "data"),
        "SAM2_MATTING_DEFAULT_VIDEO": "bedroom.mp4",
        "SAM2_MATTING_MAX_SESSIONS": "3",
        "SAM2_MATTING_SESSION_TTL": "600",
        "SAM2_MATTING_THREADS": "6",
        "SAM2_MATTING_DEVICE": "cpu",
        "SAM2_MATTING_MAX_UPLOAD_BYTES": str(3 * 1024 * 1024),
        **env_extra,
    }
    cmd = [
        sys.executable, "-m", "sam2_matting", "serve",
        "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
        "--port", str(port), "--host", "127.0.0.1",
    ]  # fmt: skip
    log_path = root / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, log_path)
    except BaseException:
        proc.kill()  # never leave a server behind when start-up fails
        proc.wait(10)
        raise
    server = Server(url, proc, root / "data")
    server.log_path = log_path
    return server


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("server exited: " + log_path.read_text()[-3000:])
        try:
            if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.3)
    pytest.fail("server did not become ready: " + log_path.read_text()[-3000:])


def stop(server: Server) -> str:
    """SIGTERM, wait, and return the log (which must hold no traceback)."""
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(30)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    text = server.log_path.read_text()
    assert "Traceback" not in text, text[-4000:]
    return text


def build_app(
    predictor: MattingPredictor,
    root: Path,
    gallery: dict[str, Path] | None = None,
    **settings: Any,
) -> Flask:
    """The app in process on ``root``: ``gallery`` (name -> video) is copied into its gallery
    folder, its data goes beside it; ``settings`` override the defaults (on the CPU)."""
    from server.app import create_app
    from server.config import Settings

    (root / "gallery").mkdir(parents=True)
    for name, video in (gallery or {}).items():
        shutil.copy(video, root / "gallery" / name)
    options: dict[str, Any] = {
        "data": str(root / "data"),
        "gallery": str(root / "gallery"),
        "device": "cpu",
        **settings,
    }
    return create_app(Settings(**options), predictor)


def close_app(app: Flask) -> None:
    """Stop the app's export worker and session reaper and close its sessions."""
    services = app.extensions["sam2_matting"]
    services.exports.shutdown()
    if services.uploads is not None:
        services.uploads.shutdown()
    services.store.shutdown()
