"""Uploads transcoded in the background (``uploadVideoAsync`` + ``uploadJob``), against the real
gunicorn server: the request answers a job at once; polling shows its state and progress until
the video is done (and opens in a session) or the job failed with the error table's code.
The stock ``uploadVideo`` keeps answering the video itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from service import ORIGIN, Server, launch, stop, write_clip

from sam2_matting.tiny import TinyModelFiles

JOB_FIELDS = "id state progress errorCode error video { path width height frameCount }"
UPLOAD_ASYNC = f"mutation U($file: Upload!) {{ uploadVideoAsync(file: $file) {{ {JOB_FIELDS} }} }}"
UPLOAD_JOB = f"query J($id: String!) {{ uploadJob(id: $id) {{ {JOB_FIELDS} }} }}"
UPLOAD = "mutation U($file: Upload!) { uploadVideo(file: $file) { path frameCount } }"
START = "mutation S($input: StartSessionInput!) { startSession(input: $input) { sessionId } }"


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(
        tiny_model,
        shared_videos,
        tmp_path_factory.mktemp("uploads"),
        SAM2_MATTING_UPLOAD_JOBS="1",
    )
    yield s
    stop(s)


@pytest.fixture(scope="module")
def clip(shared_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return write_clip(shared_videos / "bedroom.mp4", path, frames=40).read_bytes()


def _upload(server: Server, query: str, payload: bytes, name: str = "clip.mp4") -> Any:
    ops = json.dumps({"query": query, "variables": {"file": None}})
    resp = requests.post(
        f"{server.url}/graphql",
        data={"operations": ops, "map": json.dumps({"file": ["variables.file"]})},
        files={"file": (name, payload, "video/mp4")},
        headers={"Origin": ORIGIN},
        timeout=120,
    )
    return resp.json()


def _follow(server: Server, job: dict) -> list[dict]:
    seen = [job]
    deadline = time.monotonic() + 120
    while seen[-1]["state"] in ("queued", "transcoding"):
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(0.05)
        seen.append(server.data_of(UPLOAD_JOB, {"id": job["id"]})["uploadJob"])
    return seen


def test_an_async_upload_answers_a_job_then_the_video(server: Server, clip: bytes) -> None:
    body = _upload(server, UPLOAD_ASYNC, clip)
    assert "errors" not in body, body
    job = body["data"]["uploadVideoAsync"]
    assert job["state"] in ("queued", "transcoding", "done")
    seen = _follow(server, job)
    progress = [j["progress"] for j in seen]
    assert progress == sorted(progress) and all(0 <= p <= 1 for p in progress)
    done = seen[-1]
    assert done["state"] == "done" and done["progress"] == 1
    assert done["errorCode"] is None and done["error"] is None
    video = done["video"]
    assert video["path"].startswith("uploads/") and video["frameCount"] == 40
    assert (video["width"], video["height"]) == (320, 180)
    # The video is usable like any upload.
    sid = server.data_of(START, {"input": {"path": video["path"]}})["startSession"]["sessionId"]
    server.close_session(sid)
    # The stock mutation keeps answering the video itself (the same upload: the same file).
    stock = _upload(server, UPLOAD, clip)["data"]["uploadVideo"]
    assert stock == {"path": video["path"], "frameCount": 40}


def test_a_broken_upload_fails_with_a_code(server: Server) -> None:
    body = _upload(server, UPLOAD_ASYNC, b"this is not a video at all" * 100, "x.mp4")
    assert "errors" not in body, body
    failed = _follow(server, body["data"]["uploadVideoAsync"])[-1]
    assert failed["state"] == "failed" and failed["video"] is None
    assert failed["errorCode"] == "BAD_USER_INPUT"
    assert "not a readable video" in failed["error"]
    assert "Traceback" not in failed["error"]


def test_upload_errors_of_the_body_come_at_once(server: Server) -> None:
    too_big = _upload(server, UPLOAD_ASYNC, b"\0" * (3 * 1024 * 1024 + 1))
    assert too_big["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    empty = _upload(server, UPLOAD_ASYNC, b"")
    assert empty["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    unknown = server.gql(UPLOAD_JOB, {"id": "f" * 32})
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"
