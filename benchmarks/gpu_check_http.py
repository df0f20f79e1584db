"""The service side of ``benchmarks/gpu_check.py``: stream fps over HTTP and sessions until BUSY.

    from gpu_check_http import launch, stop, stream_fps, sessions_until_busy
    service = launch(config, checkpoint, device="cuda", dtype="bfloat16", video=v, root=tmp,
                     max_sessions=48)
    stream_fps(service, warmup=8, frames=40)        # {"fps": ..., "frames": ..., ...}
    sessions_until_busy(service, limit=48, frames_each=4)
    stop(service)

``launch`` starts the real service (``sam2-matting serve``: gunicorn, one worker) on 127.0.0.1
with a random-weight checkpoint (``--config/--checkpoint``) and a gallery holding only ``video``.
``stream_fps`` starts a session, clicks once and reads one NDJSON propagation of
``warmup + frames`` frames (every frame carries its encoded matte and its COCO mask, the
default superset); the fps counts the frames after the warm-up ones, by their arrival time at
the client. ``sessions_until_busy`` opens sessions (start, click, a short stream each) until
the service answers ``BUSY`` or anything else, and reads the service's own CUDA memory gauge
(``GET /metrics``) before and after. Local traffic only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

START = "mutation S($input: StartSessionInput!) { startSession(input: $input) { sessionId } }"
CLOSE = "mutation C($input: CloseSessionInput!) { closeSession(input: $input) { success } }"
CLICK = "mutation A($input: AddPointsInput!) { addPoints(input: $input) { frameIndex } }"
ORIGIN = "http://localhost:7262"
GPU_GAUGE = "sam2_matting_gpu_memory_bytes"


class ServiceError(Exception):
    """The service answered with an error: ``code`` is its error code (or an HTTP status)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Service:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    video_id: str
    ready: dict[str, Any]

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def ndjson_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of an NDJSON body arriving in ``chunks`` (without their newlines), each as soon
    as its newline has arrived."""
    buf = bytearray()
    for chunk in chunks:
        scan = len(buf)
        buf += chunk
        while (nl := buf.find(b"\n", scan)) >= 0:
            yield bytes(buf[:nl])
            del buf[: nl + 1]
            scan = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    config: Path,
    checkpoint: Path,
    *,
    device: str,
    dtype: str,
    video: Path,
    root: Path,
    max_sessions: int,
    timeout: float = 300.0,
) -> Service:
    """Start ``sam2-matting serve`` on a free port; return once ``/ready`` answers."""
    gallery = root / "gallery"
    gallery.mkdir(parents=True, exist_ok=True)
    link = gallery / video.name
    if not link.exists():
        link.symlink_to(video.resolve())
    port = _free_port()
    env = {
        **os.environ,
        "SAM2_MATTING_GALLERY": str(gallery),
        "SAM2_MATTING_DATA": str(root / "data"),
        "SAM2_MATTING_MAX_SESSIONS": str(max_sessions),
        "SAM2_MATTING_SESSION_TTL": "3600",
        "SAM2_MATTING_LOG_LEVEL": "WARNING",
    }
    cmd = [
        sys.executable, "-m", "sam2_matting", "serve",
        "--config", str(config), "--checkpoint", str(checkpoint),
        "--device", device, "--dtype", dtype, "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log_path = root / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    service = Service(url, proc, log_path, f"gallery/{video.name}", {})
    try:
        while True:
            if proc.poll() is not None:
                raise ServiceError("EXITED", f"the service exited: {service.log_tail(600)}")
            try:
                r = requests.get(f"{url}/ready", timeout=2)
                if r.status_code == 200:
                    service.ready = r.json()
                    return service
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                raise ServiceError("TIMEOUT", f"not ready after {timeout:g} s")
            time.sleep(0.3)
    except BaseException:
        stop(service)
        raise


def stop(service: Service) -> None:
    """SIGTERM the service (it drains and closes its sessions), then wait for it."""
    if service.proc.poll() is None:
        service.proc.send_signal(signal.SIGTERM)
        try:
            service.proc.wait(30)
        except subprocess.TimeoutExpired:
            service.proc.kill()
            service.proc.wait(10)


def gql(service: Service, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` of a GraphQL answer; ServiceError with the first error's code."""
    r = requests.post(
        f"{service.url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Origin": ORIGIN},
        timeout=120,
    )
    try:
        body = r.json()
    except ValueError:
        raise ServiceError(f"HTTP {r.status_code}", r.text[:200]) from None
    errors = body.get("errors")
    if errors:
        code = str(errors[0].get("extensions", {}).get("code", f"HTTP {r.status_code}"))
        raise ServiceError(code, str(errors[0].get("message", ""))[:200])
    data: dict[str, Any] = body["data"]
    return data


def open_session(service: Service) -> str:
    """Start a session on the gallery video and click once near its middle."""
    sid = start_session(service)
    gql(service, CLICK, {"input": _click(sid)})
    return sid


def start_session(service: Service) -> str:
    data = gql(service, START, {"input": {"path": service.video_id}})
    return str(data["startSession"]["sessionId"])


def close_session(service: Service, sid: str) -> None:
    gql(service, CLOSE, {"input": {"sessionId": sid}})


def stream(service: Service, sid: str, frames: int) -> list[float]:
    """One forward NDJSON propagation of ``frames`` frames from frame 0; the arrival time
    (``perf_counter``) of each frame line. ServiceError unless it ends complete."""
    body = {"session_id": sid, "start_frame_index": 0, "direction": "forward", "max_frames": frames}
    headers = {"Origin": ORIGIN, "Accept": "application/x-ndjson"}
    stamps: list[float] = []
    end: dict[str, Any] | None = None
    with requests.post(
        f"{service.url}/propagate_in_video",
        json=body,
        headers=headers,
        stream=True,
        timeout=(10, 300),
    ) as r:
        if r.status_code != 200:
            raise ServiceError(f"HTTP {r.status_code}", r.text[:200])
        for line in ndjson_lines(r.iter_content(chunk_size=1 << 20)):
            # A frame line is large (a matte and a mask); only its head is looked at.
            if line.startswith(b'{"type": "frame"'):
                stamps.append(time.perf_counter())
            elif line.strip():
                end = json.loads(line)
    if end is None or end.get("type") != "end" or end.get("cancelled"):
        raise ServiceError("STREAM", f"the stream did not end complete: {str(end)[:200]}")
    if len(stamps) != frames:
        raise ServiceError("STREAM", f"got {len(stamps)} frames, expected {frames}")
    return stamps


def stream_fps(service: Service, *, warmup: int, frames: int) -> dict[str, Any]:
    """Frames/s of one streamed propagation, counting the frames after the first ``warmup``."""
    sid = open_session(service)
    try:
        t0 = time.perf_counter()
        stamps = stream(service, sid, warmup + frames)
    finally:
        close_session(service, sid)
    measured = stamps[-1] - stamps[warmup - 1]
    return {
        "fps": frames / measured,
        "frames": frames,
        "warmup_frames": warmup,
        "first_frame_s": stamps[0] - t0,
    }


def gpu_bytes(service: Service) -> float | None:
    """The service's ``torch.cuda.memory_allocated()`` from its metrics; None off CUDA."""
    text = requests.get(f"{service.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(GPU_GAUGE + " "):
            value = float(line.split()[1])
            return value if value > 0 else None
    return None


def sessions_until_busy(
    service: Service, *, limit: int, frames_each: int, seconds: float = 120.0
) -> dict[str, Any]:
    """Open sessions (start, click, a ``frames_each`` stream) until the service refuses one.

    The service runs with ``max_sessions = limit``: ``BUSY`` at ``limit`` means the cap was
    reached first; any other error (out of memory is ``INTERNAL``) stops the count there, and
    so does running out of ``seconds`` (``stopped_by`` is then ``time``).
    """
    before = gpu_bytes(service)
    opened: list[str] = []
    refusal: ServiceError | None = None
    deadline = time.monotonic() + seconds
    try:
        for _ in range(limit + 1):
            if time.monotonic() > deadline:
                refusal = ServiceError("time", f"stopped after {seconds:g} s")
                break
            try:
                sid = start_session(service)
            except ServiceError as err:
                refusal = err
                break
            opened.append(sid)
            try:
                gql(service, CLICK, {"input": _click(sid)})
                stream(service, sid, frames_each)
            except (ServiceError, requests.RequestException) as err:
                code = err.code if isinstance(err, ServiceError) else type(err).__name__
                refusal = ServiceError(code, str(err)[:200])
                opened.pop()
                break
        after = gpu_bytes(service)
    finally:
        for sid in opened:
            with contextlib.suppress(ServiceError, requests.RequestException):
                close_session(service, sid)
    code = refusal.code if refusal is not None else "none"
    reason = "cap" if code == "BUSY" and len(opened) == limit else code
    per_session = None
    if before is not None and after is not None and opened:
        per_session = (after - before) / len(opened) / 2**20
    return {
        "sessions": len(opened),
        "limit": limit,
        "stopped_by": reason,
        "refusal": None if refusal is None else str(refusal)[:200],
        "frames_each": frames_each,
        "service_mib_per_session": per_session,
        "service_gpu_mib": None if after is None else after / 2**20,
    }


def _click(sid: str) -> dict[str, Any]:
    return {
        "sessionId": sid,
        "frameIndex": 0,
        "objectId": 1,
        "clearOldPoints": True,
        "labels": [1],
        "points": [[0.5, 0.5]],
    }
