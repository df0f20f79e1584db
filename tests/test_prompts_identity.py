"""One prompts file, the same mattes everywhere: the service's stream, its export and
``sam2-matting matte --prompts`` give the same alpha byte for byte (tiny model, real gunicorn).

The file is made by the service from the calls the page makes: points on a later frame, a
propagation from an earlier one, a correction click on a tracked frame, another propagation.
A session on an upload gives a file that names the service's transcoded copy: ``matte`` on the
original upload says so and what to do, ``matte`` on the downloaded copy gives the same mattes.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from service import MATTES, ORIGIN, Server, launch, stop, write_clip

from sam2_matting import prompts_file as pf
from sam2_matting.cli import main
from sam2_matting.codec import decode_matte
from sam2_matting.tiny import TinyModelFiles

PROMPTS = "query P($s: String!) { sessionPrompts(sessionId: $s) }"
START = """mutation($p: String!, $prompts: String) {
  startSession(input: {path: $p, prompts: $prompts}) { sessionId } }"""
EXPORT = (
    """mutation E($input: ExportMatteInput!) { exportMatte(input: $input) { id status url } }"""
)
JOB = "query J($id: String!) { exportJob(id: $id) { status url error } }"
UPLOAD = "mutation U($file: Upload!) { uploadVideo(file: $file) { path url } }"
FRAMES = 12


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(tiny_model, shared_videos, tmp_path_factory.mktemp("identity"))
    yield s
    stop(s)


def _stream(server: Server, sid: str, **args: Any) -> dict[int, np.ndarray]:
    """Propagate (NDJSON); every frame's alpha, the union of its objects."""
    resp = server.stream({"session_id": sid, **args}, ndjson=True)
    assert resp.status_code == 200, resp.text[:300]
    out: dict[int, np.ndarray] = {}
    for line in resp.iter_lines():
        msg = json.loads(line)
        assert msg["type"] != "error", msg
        if msg["type"] == "frame":
            alphas = [decode_matte(r["alpha"]) for r in msg["results"]]
            out[msg["frame_index"]] = np.maximum.reduce(alphas)
    return out


def _export_png_zip(server: Server, sid: str) -> list[np.ndarray]:
    job = server.data_of(EXPORT, {"input": {"sessionId": sid, "format": "png-zip"}})
    job_id = job["exportMatte"]["id"]
    deadline = time.monotonic() + 120
    while (state := server.data_of(JOB, {"id": job_id})["exportJob"])["status"] != "done":
        assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
        time.sleep(0.2)
    content = requests.get(state["url"], timeout=30).content
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        return [np.asarray(Image.open(io.BytesIO(z.read(n))))[..., 3] for n in sorted(z.namelist())]


def _matte(
    tiny_model: TinyModelFiles, video: Path, prompts: Path, out: Path, capsys: Any
) -> tuple[int, list[str]]:
    """``sam2-matting matte --prompts`` (in this process: the server is another one)."""
    code = main([
        "matte", str(video), "--prompts", str(prompts),
        "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
        "--device", "cpu", "--no-progress", "--format", "png", "--out", str(out),
    ])  # fmt: skip
    return code, capsys.readouterr().err.strip().splitlines()


def _pngs(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(f))[..., 3] for f in sorted(folder.glob("*.png"))]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))


def test_a_page_session_renders_the_same_mattes_in_the_stream_the_export_and_matte(
    server: Server, tiny_model: TinyModelFiles, tmp_path: Path, capsys: Any
) -> None:
    sid = server.start("gallery/small.mp4")
    server.click(sid, frame=6, obj=0, xy=(0.31, 0.42))  # points on a later frame
    server.click(sid, frame=6, obj=1, xy=(0.72, 0.55))
    first = _stream(server, sid, start_frame_index=2, direction="both")
    assert sorted(first) == list(range(FRAMES))
    server.data_of(  # a correction click on a tracked frame, added to its points
        """mutation($input: AddPointsInput!) { addPoints(input: $input) { frameIndex } }""",
        {"input": {"sessionId": sid, "frameIndex": 9, "objectId": 0, "clearOldPoints": False,
                   "points": [[0.4, 0.5]], "labels": [0]}},
    )  # fmt: skip
    streamed = _stream(server, sid, start_frame_index=0, direction="forward")
    assert sorted(streamed) == list(range(FRAMES))
    stream = [streamed[f] for f in range(FRAMES)]
    assert not _same(stream, [first[f] for f in range(FRAMES)])  # the correction changed it

    text = server.data_of(PROMPTS, {"s": sid})["sessionPrompts"]
    doc = pf.loads(text)
    ops = [(e["op"], e.get("frame", e.get("start_frame"))) for e in doc.events]
    assert ops == [("add_points", 6), ("add_points", 6), ("propagate", 2),
                   ("add_points", 9), ("propagate", 0)]  # fmt: skip
    assert doc.events[2]["frames"] == FRAMES and doc.events[2]["direction"] == "both"
    assert doc.video["path"] == "gallery/small.mp4" and "upload_sha256" not in doc.video
    exported = _export_png_zip(server, sid)

    prompts = tmp_path / "small.prompts.json"
    prompts.write_text(text)
    gallery_clip = server.data.parent / "gallery" / "small.mp4"
    code, err = _matte(tiny_model, gallery_clip, prompts, tmp_path / "out", capsys)
    assert code == 0, err
    assert _same(stream, exported)
    assert _same(stream, _pngs(tmp_path / "out"))

    # the service replays the file it gave: the same mattes kept, and the same file back
    again = server.data_of(START, {"p": "gallery/small.mp4", "prompts": text})
    sid2 = again["startSession"]["sessionId"]
    kept = server.data_of(MATTES, {"id": sid2, "f": list(range(FRAMES))})["mattes"]
    replayed = [
        np.maximum.reduce([decode_matte(m["alpha"]) for m in f["rleMaskList"]]) for f in kept
    ]
    assert _same(stream, replayed)
    assert pf.loads(server.data_of(PROMPTS, {"s": sid2})["sessionPrompts"]).events == doc.events
    for s in (sid, sid2):
        server.close_session(s)


def test_an_upload_session_replays_on_the_copy_the_service_matted(
    server: Server,
    tiny_model: TinyModelFiles,
    bedroom_video: Path,
    tmp_path: Path,
    capsys: Any,
) -> None:
    original = write_clip(bedroom_video, tmp_path / "holiday.mp4", frames=6)
    ops = json.dumps({"query": UPLOAD, "variables": {"file": None}})
    r = requests.post(
        f"{server.url}/graphql",
        data={"operations": ops, "map": json.dumps({"file": ["variables.file"]})},
        files={"file": ("holiday.mp4", original.read_bytes(), "video/mp4")},
        headers={"Origin": ORIGIN},
        timeout=120,
    )
    video = r.json()["data"]["uploadVideo"]
    sid = server.start(video["path"])
    server.click(sid, frame=1, obj=1, xy=(0.5, 0.5))
    stream = _stream(server, sid, start_frame_index=0, direction="forward")
    text = server.data_of(PROMPTS, {"s": sid})["sessionPrompts"]
    server.close_session(sid)
    doc = pf.loads(text)
    assert doc.video["path"] == video["path"]
    assert doc.video["upload_sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
    prompts = tmp_path / "holiday.prompts.json"
    prompts.write_text(text)

    code, lines = _matte(tiny_model, original, prompts, tmp_path / "refused", capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "holiday.mp4 is the upload the prompts were made from" in lines[0]
    assert f"GET /{video['path']}" in lines[0] and "Download this video" in lines[0]
    assert not (tmp_path / "refused").exists()

    copy = tmp_path / Path(video["path"]).name  # what the page's "Download this video" saves
    copy.write_bytes(requests.get(f"{server.url}/{video['path']}", timeout=30).content)
    code, err = _matte(tiny_model, copy, prompts, tmp_path / "out", capsys)
    assert code == 0, err
    assert _same([stream[f] for f in sorted(stream)], _pngs(tmp_path / "out"))
