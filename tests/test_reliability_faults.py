"""Faults: clients that go away, close or cancel at the wrong moment, sessions that expire
under a stream, SIGTERM during streams and exports, a restart, and bad weights at start-up.

Every test runs the real service under gunicorn with the tiny random model, except the
cancel-before-start race, which needs the model lock held and runs the app in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import requests
import torch
from flask import Flask
from flask.testing import FlaskClient
from reliability import files_under, rss_mib, upload, worker_pid
from savi_stream import parse_savi_stream
from service import (
    CANCEL,
    CLOSE,
    SESSION,
    Server,
    free_port,
    launch,
    stop,
    write_clip,
)

from sam2_matting.tiny import TinyModelFiles

EXPORT = """mutation E($input: ExportMatteInput!) { exportMatte(input: $input) { id status } }"""
JOB = """query J($id: String!) { exportJob(id: $id) { id status framesDone framesTotal url } }"""
TTL = 6  # seconds; no test but the expiry one leaves a session idle that long
LONG, LONG_FRAMES = "long.mp4", 1500


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(
        tiny_model,
        shared_videos,
        tmp_path_factory.mktemp("faults"),
        # A stream that cannot end before the TTL test cancels it at TTL + 1 s, however fast
        # the machine: the tiny model takes about 23 ms a frame here (35 s for this clip).
        clips={LONG: (LONG_FRAMES, (128, 72))},
        SAM2_MATTING_SESSION_TTL=str(TTL),
    )
    yield s
    stop(s)


def _metric(server: Server, name: str) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def _lines(resp: requests.Response) -> Iterator[dict[str, Any]]:
    for raw in resp.iter_lines():
        if raw:
            yield json.loads(raw)


def _wait_idle(server: Server, sid: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info: dict[str, Any] = server.data_of(SESSION, {"id": sid})["session"]
        if not info["isPropagating"]:
            return info
        time.sleep(0.1)
    raise AssertionError("the session is still propagating")


# -- client faults -----------------------------------------------------------------------------


def test_disconnects_mid_stream_stop_the_work_and_leak_nothing(server: Server) -> None:
    """Five clients in turn start a 200-frame stream and vanish after one frame: the server
    stops each propagation, frees each session on close, and its memory does not creep."""
    pid = worker_pid(server)
    rss = []
    for _ in range(5):
        sid = server.start()
        server.click(sid)
        resp = server.stream({"session_id": sid, "direction": "forward"}, ndjson=True)
        assert next(_lines(resp))["type"] == "frame"
        resp.close()  # gone, without a word
        info = _wait_idle(server, sid)
        assert len(info["propagatedFrames"]) < 100  # stopped, not run to the end
        assert server.data_of(CLOSE, {"input": {"sessionId": sid}})["closeSession"]["success"]
        rss.append(rss_mib(pid))
    assert _metric(server, "sam2_matting_streams") == 0
    assert _metric(server, "sam2_matting_live_sessions") == 0
    # The first rounds warm caches and allocator pools; after that, no growth per round.
    assert rss[-1] - rss[1] < 40, rss


def test_close_session_during_a_stream_ends_it_cleanly(server: Server) -> None:
    sid = server.start()
    server.click(sid)
    resp = server.stream({"session_id": sid, "direction": "forward"}, ndjson=True)
    lines = _lines(resp)
    seen = [next(lines), next(lines)]
    assert server.data_of(CLOSE, {"input": {"sessionId": sid}})["closeSession"]["success"]
    seen += list(lines)
    end = seen[-1]
    assert end["type"] == "end" and end["cancelled"] is True and end["reason"] == "closed"
    assert all(x["type"] == "frame" for x in seen[:-1]) and end["frames"] == len(seen) - 1 < 200
    gone = server.gql(SESSION, {"id": sid})
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    # The stock UI's multipart stream: it just ends after whole parts.
    sid = server.start()
    server.click(sid)
    resp = server.stream({"session_id": sid, "direction": "forward"})
    chunks = resp.iter_content(chunk_size=None)
    first = next(chunks)
    server.data_of(CLOSE, {"input": {"sessionId": sid}})
    parts = list(parse_savi_stream([first, *chunks]))  # raises on a part cut in the middle
    assert 1 <= len(parts) < 200
    assert all(p.headers["content-type"].startswith("application/json") for p in parts)
    assert _metric(server, "sam2_matting_streams") == 0


def test_cancel_before_a_stream_applies_to_no_later_stream(server: Server) -> None:
    """A cancel with nothing running succeeds and is not kept for the next stream."""
    sid = server.start()
    server.click(sid)
    assert server.data_of(CANCEL, {"input": {"sessionId": sid}})["cancelPropagateInVideo"][
        "success"
    ]
    resp = server.stream({"session_id": sid, "direction": "forward", "max_frames": 4}, True)
    lines = list(_lines(resp))
    assert lines[-1] == {"type": "end", "frames": 4, "total": 4, "cancelled": False}
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_a_session_does_not_expire_under_its_stream(server: Server) -> None:
    """The stream outlives the idle TTL and is not cut; the TTL restarts when it ends."""
    sid = server.start(f"gallery/{LONG}")
    server.click(sid)
    started = time.monotonic()
    resp = server.stream({"session_id": sid, "direction": "forward"}, ndjson=True)
    lines = []
    for line in _lines(resp):
        lines.append(line)
        if line["type"] == "frame" and time.monotonic() - started > TTL + 1:
            server.data_of(CANCEL, {"input": {"sessionId": sid}})
    duration = time.monotonic() - started
    end = lines[-1]
    assert end["type"] == "end", end
    assert end["cancelled"] and end["reason"] == "cancelled", end  # ours, not an expiry
    assert end["frames"] < LONG_FRAMES  # cut by the cancel, not run to the end
    assert duration > TTL + 1  # so the stream did run past the idle TTL
    info = server.data_of(SESSION, {"id": sid})["session"]
    assert info["expiresInSeconds"] > TTL - 2  # the clock restarted at the stream's end
    time.sleep(TTL + 0.5)
    assert server.gql(SESSION, {"id": sid})["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_cancel_while_waiting_for_the_model_is_not_lost(app: Flask, client: FlaskClient) -> None:
    """The anchor loses a cancel sent before its stream takes the model lock (anchor 5.10).
    Here the model is held busy; the stream request arrives, waits; the cancel comes; the
    stream ends at once with no frame computed."""

    def gql(query: str, variables: dict[str, Any]) -> Any:
        body = client.post("/graphql", json={"query": query, "variables": variables}).get_json()
        assert "errors" not in body, body
        return body["data"]

    sid = gql(
        "mutation($p: String!) { startSession(input: {path: $p}) { sessionId } }",
        {"p": "gallery/clip.mp4"},
    )["startSession"]["sessionId"]
    click = {"sessionId": sid, "frameIndex": 0, "clearOldPoints": True, "objectId": 1}
    gql(
        "mutation($i: AddPointsInput!) { addPoints(input: $i) { frameIndex } }",
        {"i": {**click, "labels": [1], "points": [[0.5, 0.5]]}},
    )
    store = app.extensions["sam2_matting"].store
    predictor = store.predictor
    out: list[bytes] = []
    held, release = threading.Event(), threading.Event()

    def someone_else() -> None:  # keeps the model busy
        with predictor.model_lock:
            held.set()
            release.wait(30)

    def stream() -> None:
        resp = client.post(
            "/propagate_in_video",
            json={"session_id": sid, "direction": "forward"},
            headers={"Accept": "application/x-ndjson"},
            buffered=False,
        )
        out.extend(resp.response)

    holder = threading.Thread(target=someone_else)
    holder.start()
    assert held.wait(10)
    reader = threading.Thread(target=stream)
    reader.start()  # the request is in; its first frame waits for the model
    deadline = time.monotonic() + 10
    while not store.get(sid).streaming and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert not out
    gql(CANCEL, {"input": {"sessionId": sid}})
    release.set()
    holder.join(30)
    reader.join(30)
    assert not reader.is_alive()
    lines = [json.loads(x) for x in b"".join(out).splitlines()]
    assert lines == [
        {"type": "end", "frames": 0, "total": 10, "cancelled": True, "reason": "cancelled"}
    ]


# -- the process -------------------------------------------------------------------------------


def _wait_job(server: Server, job_id: str, until: set[str], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = server.data_of(JOB, {"id": job_id})["exportJob"]
        if job["status"] in until:
            return job
        time.sleep(0.1)
    raise AssertionError(f"export {job_id} never reached {until}")


def test_sigterm_ends_streams_with_a_final_part_and_leaves_no_partial_export(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path: Path
) -> None:
    grace = 15
    s = launch(tiny_model, shared_videos, tmp_path, SAM2_MATTING_GRACEFUL_TIMEOUT=str(grace))
    try:
        sids = [s.start(), s.start(), s.start()]
        for sid in sids:
            s.click(sid)
        # A long export (200 frames of ProRes 4444) running when the signal comes.
        job = s.data_of(EXPORT, {"input": {"sessionId": sids[2], "format": "prores"}})
        job_id = job["exportMatte"]["id"]
        ndjson = s.stream({"session_id": sids[0], "direction": "forward"}, ndjson=True)
        multipart = s.stream({"session_id": sids[1], "direction": "forward"})
        nd_lines = _lines(ndjson)
        mp_chunks = multipart.iter_content(chunk_size=None)
        got_nd = [next(nd_lines)]
        got_mp = [next(mp_chunks)]
        _wait_job(s, job_id, {"running", "done"})
        signalled = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        got_nd += list(nd_lines)
        got_mp += list(mp_chunks)
        ended = time.monotonic() - signalled
        s.proc.wait(grace + 10)
        exited = time.monotonic() - signalled
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    log = s.log_path.read_text()
    print(f"SIGTERM: streams ended {ended:.2f} s and the process {exited:.2f} s after it")
    assert "Traceback" not in log, log[-3000:]
    assert s.proc.returncode == 0
    assert ended < 5 and exited < grace  # ended at once, not cut at the graceful timeout
    end = got_nd[-1]
    assert end["type"] == "end" and end["cancelled"] is True and end["reason"] == "shutdown"
    assert all(x["type"] == "frame" for x in got_nd[:-1]) and end["frames"] < 200
    parts = list(parse_savi_stream(got_mp))  # every part whole
    assert parts[-1].headers["content-type"].startswith("application/vnd.sam2-matting.error")
    assert json.loads(parts[-1].body)["error"]["code"] == "SHUTTING_DOWN"
    assert len(parts) - 1 == json.loads(parts[-1].body)["frames"] < 200
    # No export file under a final name unless complete; no partial left at all.
    leftovers = files_under(s.data / "exports")
    assert not [p for p in leftovers if p.name.endswith(".partial")], leftovers
    for movie in [p for p in leftovers if p.suffix == ".mov"]:
        with av.open(str(movie)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 200
    if f"export {job_id} (prores, session {sids[2]}): cancelled" in log:
        assert files_under(s.data / "exports" / job_id) == []  # cancelled: nothing at all
    assert files_under(s.data / "tmp") == []


def test_a_restart_keeps_uploads_exports_and_the_gallery(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path: Path, bedroom_video: Path
) -> None:
    s = launch(tiny_model, shared_videos, tmp_path)
    try:
        gallery = s.data_of("{ videos { edges { node { path posterPath width frameCount } } } }")
        clip = write_clip(bedroom_video, tmp_path / "clip.mp4", frames=6)
        video = upload(s, "clip.mp4", clip.read_bytes()).json()["data"]["uploadVideo"]
        sid = s.start(video["path"])
        s.click(sid)
        parts = list(
            parse_savi_stream(
                s.stream({"session_id": sid, "direction": "forward"}).iter_content(None)
            )
        )
        assert len(parts) == 6
        job = s.data_of(EXPORT, {"input": {"sessionId": sid, "format": "png-zip"}})
        done = _wait_job(s, job["exportMatte"]["id"], {"done", "failed"})
        assert done["status"] == "done"
        exported = requests.get(done["url"], timeout=30).content
    finally:
        stop(s)
    s2 = launch(tiny_model, shared_videos, tmp_path)
    try:
        again = s2.data_of("{ videos { edges { node { path posterPath width frameCount } } } }")
        assert again == gallery and len(gallery["videos"]["edges"]) == 3
        posters = [n["node"]["posterPath"] for n in gallery["videos"]["edges"]]
        for path in [*posters, video["path"], f"posters/{Path(video['path']).stem}.jpg"]:
            got = requests.get(f"{s2.url}/{path}", timeout=10)
            assert got.status_code == 200 and got.content == (s2.data / path).read_bytes()
        sid = s2.start(video["path"])  # the upload opens again, by its id
        s2.click(sid)
        job_again = s2.data_of(JOB, {"id": done["id"]})["exportJob"]
        assert job_again["status"] == "done" and job_again["framesDone"] == 6
        assert requests.get(job_again["url"], timeout=30).content == exported
        assert files_under(s2.data / "tmp") == []
    finally:
        stop(s2)


def _bad_starts(tiny_model: TinyModelFiles, tmp_path: Path) -> dict[str, list[str]]:
    """Start-up arguments that must fail: name -> extra serve arguments."""
    good = Path(tiny_model.checkpoint).read_bytes()
    (tmp_path / "garbage.pt").write_bytes(b"\x00\x17not a checkpoint" * 300)
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    state = torch.load(tiny_model.checkpoint, map_location="cpu", weights_only=True)
    state["model"].pop(sorted(state["model"])[0])
    torch.save(state, tmp_path / "wrong.pt")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\xff" * 64)
    ckpt = ["--checkpoint", str(tiny_model.checkpoint)]
    return {
        "garbage": ["--checkpoint", str(tmp_path / "garbage.pt")],
        "truncated": ["--checkpoint", str(tmp_path / "truncated.pt")],
        "wrong model": ["--checkpoint", str(tmp_path / "wrong.pt")],
        "corrupt adapter": [*ckpt, "--adapter", str(adapter)],
        "missing adapter": [*ckpt, "--adapter", str(tmp_path / "nowhere")],
    }


EXPECTED_MESSAGES = {
    "garbage": "is not a PyTorch checkpoint",
    "truncated": "is not a PyTorch checkpoint",
    "wrong model": "does not fit this config",
    "corrupt adapter": "not a valid safetensors file",
    "missing adapter": "adapter folder not found",
}


def test_bad_weights_at_start_up_give_one_clear_line_and_a_non_zero_exit(
    tiny_model: TinyModelFiles, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "SAM2_MATTING_DEVICE": "cpu",
        "SAM2_MATTING_GALLERY": str(tmp_path / "gallery"),
        "SAM2_MATTING_DATA": str(tmp_path / "data"),
    }
    procs = {}
    for name, extra in _bad_starts(tiny_model, tmp_path).items():
        cmd = [
            sys.executable, "-m", "sam2_matting", "serve", "--config", str(tiny_model.config),
            "--host", "127.0.0.1", "--port", str(free_port()), *extra,
        ]  # fmt: skip
        procs[name] = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 4, (name, proc.returncode, out)  # gunicorn: App failed to load
        assert "Traceback" not in out, (name, out)
        assert EXPECTED_MESSAGES[name] in out, (name, out)
        errors = [line for line in out.splitlines() if "cannot start:" in line]
        assert len(errors) == 1, (name, out)
