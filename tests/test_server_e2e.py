"""The service end to end: the real CLI starts gunicorn on 127.0.0.1 with the tiny model.

The GraphQL documents are the ones the stock SAM 2 demo frontend sends (anchor doc, 1.5); they
and the server helpers live in ``tests/service.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from savi_stream import check_content_type, parse_savi_stream
from service import (
    ADD_POINTS,
    CANCEL,
    CLEAR_FRAME,
    CLEAR_VIDEO,
    CLOSE,
    DEFAULT_VIDEO,
    GALLERY,
    MATTES,
    ORIGIN,
    REMOVE,
    SESSION,
    START,
    Server,
    launch,
    stop,
    write_clip,
)

from sam2_matting.codec import decode_coco_binary, decode_matte
from sam2_matting.tiny import TinyModelFiles


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(tiny_model, shared_videos, tmp_path_factory.mktemp("service"))
    yield s
    stop(s)


def _multipart(resp: requests.Response) -> list[Any]:
    check_content_type(resp.headers["Content-Type"])
    return list(parse_savi_stream(resp.iter_content(chunk_size=None)))


def test_health_ready_metrics(server: Server) -> None:
    assert requests.get(f"{server.url}/healthy", timeout=5).text == "OK"
    ready = requests.get(f"{server.url}/ready", timeout=5).json()
    assert ready["status"] == "ready" and ready["image_size"] == 256
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert "sam2_matting_live_sessions" in metrics


def test_stock_frontend_queries(server: Server) -> None:
    default = server.data_of(DEFAULT_VIDEO)["defaultVideo"]
    assert default["path"] == "gallery/bedroom.mp4"
    assert (default["width"], default["height"]) == (960, 540)
    assert default["url"].endswith("/gallery/bedroom.mp4")
    poster = requests.get(default["posterUrl"], timeout=10)
    assert poster.status_code == 200 and poster.headers["Content-Type"] == "image/jpeg"
    edges = server.data_of(GALLERY)["videos"]["edges"]
    assert [e["node"]["path"] for e in edges] == [
        "gallery/bedroom.mp4",
        "gallery/dog.mp4",
        "gallery/small.mp4",
    ]
    video = requests.get(edges[1]["node"]["url"], headers={"Range": "bytes=0-99"}, timeout=10)
    assert video.status_code == 206 and len(video.content) == 100


def test_click_stream_and_close(server: Server) -> None:
    sid = server.start()
    first = server.click(sid, frame=2, obj=0)
    assert first["frameIndex"] == 2
    obj = first["rleMaskList"][0]
    assert obj["objectId"] == 0 and obj["rleMask"]["size"] == [540, 960]
    alpha = decode_matte(obj["alpha"])
    binary = decode_coco_binary(obj["rleMask"])
    assert alpha.shape == (540, 960) and alpha.dtype == np.uint8
    assert np.array_equal(binary.astype(bool), alpha >= 128)
    server.click(sid, frame=2, obj=1, xy=(0.7, 0.6))

    resp = server.stream({"session_id": sid, "start_frame_index": 2, "max_frames": 3})
    assert resp.status_code == 200
    parts = _multipart(resp)
    frames = [json.loads(p.body)["frame_index"] for p in parts]
    assert frames == [2, 3, 4, 1, 0]  # "both": forward, then backward; start once
    assert [p.headers["frame-current"] for p in parts] == ["1", "2", "3", "4", "5"]
    assert {p.headers["frame-total"] for p in parts} == {"5"}
    for p in parts:
        assert p.headers["content-type"] == "application/json; charset=utf-8"
        assert p.headers["mask-type"] == "RLE[]"
        body = json.loads(p.body)
        assert [r["object_id"] for r in body["results"]] == [0, 1]
        for r in body["results"]:
            assert decode_matte(r["alpha"]).shape == (540, 960)
            assert set(r["mask"]) == {"size", "counts"}
    info = server.data_of(SESSION, {"id": sid})["session"]
    assert info["frameCount"] == 200 and info["propagatedFrames"] == [0, 1, 2, 3, 4]
    assert info["objects"] == [
        {"objectId": 0, "promptedFrames": [2]},
        {"objectId": 1, "promptedFrames": [2]},
    ]
    again = server.data_of(MATTES, {"id": sid, "f": [3, 150]})["mattes"]
    assert [m["frameIndex"] for m in again] == [3]
    streamed = json.loads(parts[1].body)["results"][0]["alpha"]
    assert again[0]["rleMaskList"][0]["alpha"]["counts"] == streamed["counts"]
    assert server.data_of(CLOSE, {"input": {"sessionId": sid}})["closeSession"]["success"]
    assert not server.data_of(CLOSE, {"input": {"sessionId": sid}})["closeSession"]["success"]


@pytest.mark.parametrize(
    ("direction", "start", "expected"),
    [("forward", 5, [5, 6, 7]), ("backward", 5, [5, 4, 3])],
)
def test_ndjson_stream_directions(
    server: Server, direction: str, start: int, expected: list[int]
) -> None:
    sid = server.start()
    server.click(sid, frame=start)
    resp = server.stream(
        {"session_id": sid, "start_frame_index": start, "direction": direction, "max_frames": 3},
        ndjson=True,
    )
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert [x["frame_index"] for x in lines if x["type"] == "frame"] == expected
    assert lines[-1] == {"type": "end", "frames": 3, "total": 3, "cancelled": False}
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_cancel_mid_stream(server: Server) -> None:
    sid = server.start()
    server.click(sid)
    resp = server.stream({"session_id": sid, "direction": "forward"}, ndjson=True)
    seen = []
    for raw in resp.iter_lines():
        line = json.loads(raw)
        seen.append(line)
        if len(seen) == 2:
            assert server.data_of(CANCEL, {"input": {"sessionId": sid}})["cancelPropagateInVideo"][
                "success"
            ]
    assert seen[-1]["type"] == "end" and seen[-1]["cancelled"] is True
    assert 2 <= seen[-1]["frames"] < 200
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_two_sessions_stream_at_once(server: Server) -> None:
    sids = [server.start(), server.start("gallery/dog.mp4")]
    for sid in sids:
        server.click(sid)
    results: dict[str, list[int]] = {}

    def run(sid: str) -> None:
        resp = server.stream({"session_id": sid, "direction": "forward", "max_frames": 6})
        results[sid] = [json.loads(p.body)["frame_index"] for p in _multipart(resp)]

    threads = [threading.Thread(target=run, args=(sid,)) for sid in sids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {sid: [0, 1, 2, 3, 4, 5] for sid in sids}
    for sid in sids:
        server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_session_cap_gives_busy(server: Server) -> None:
    sids = [server.start() for _ in range(3)]
    body = server.gql(START, {"input": {"path": "gallery/bedroom.mp4"}})
    assert body["errors"][0]["extensions"]["code"] == "BUSY"
    for sid in sids:
        server.data_of(CLOSE, {"input": {"sessionId": sid}})
    server.data_of(CLOSE, {"input": {"sessionId": server.start()}})


def test_clear_remove_and_other_prompts(server: Server) -> None:
    sid = server.start()
    server.click(sid, frame=0, obj=0)
    server.click(sid, frame=0, obj=1)
    cleared = server.data_of(
        CLEAR_FRAME, {"input": {"sessionId": sid, "frameIndex": 0, "objectId": 1}}
    )["clearPointsInFrame"]
    assert cleared["frameIndex"] == 0
    removed = server.data_of(REMOVE, {"input": {"sessionId": sid, "objectId": 1}})["removeObject"]
    assert all(r["rleMaskList"][0]["objectId"] == 0 for r in removed)
    assert (
        server.data_of(REMOVE, {"input": {"sessionId": sid, "objectId": 9}})["removeObject"] == []
    )
    box = server.data_of(
        """mutation B($input: AddBoxInput!) { addBox(input: $input) { frameIndex
        rleMaskList { objectId } } }""",
        {"input": {"sessionId": sid, "frameIndex": 1, "objectId": 2, "box": [0.1, 0.1, 0.5, 0.6]}},
    )["addBox"]
    assert box["rleMaskList"][-1]["objectId"] == 2
    first = server.click(sid, frame=3, obj=3)
    alpha_in = first["rleMaskList"][-1]["alpha"]
    masked = server.data_of(
        """mutation M($input: AddMaskInput!) { addMask(input: $input) { frameIndex
        rleMaskList { objectId } } }""",
        {"input": {"sessionId": sid, "frameIndex": 4, "objectId": 4, "alpha": alpha_in}},
    )["addMask"]
    assert masked["frameIndex"] == 4 and masked["rleMaskList"][-1]["objectId"] == 4
    assert server.data_of(CLEAR_VIDEO, {"input": {"sessionId": sid}})["clearPointsInVideo"][
        "success"
    ]
    assert server.data_of(SESSION, {"id": sid})["session"]["objects"] == []
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        (ADD_POINTS, {"input": {"sessionId": "nope", "frameIndex": 0, "clearOldPoints": True,
                                "objectId": 0, "labels": [1], "points": [[0.5, 0.5]]}}, "NOT_FOUND"),
        (START, {"input": {"path": "../../etc/passwd"}}, None),
        (START, {"input": {"path": "/etc/passwd"}}, None),
        (START, {"input": {"path": "gallery/../../secret.mp4"}}, None),
        ("{ " + " ".join(f"a{i}: defaultVideo {{ path }}" for i in range(100)) + " }", None,
         "LIMIT_EXCEEDED"),
        ("{ defaultVideo { path " * 1 + "nosuchfield } }", None, "BAD_USER_INPUT"),
    ],
)  # fmt: skip
def test_bad_graphql_gets_coded_errors(
    server: Server, query: str, variables: dict[str, Any] | None, code: str | None
) -> None:
    body = server.gql(query, variables)
    error = body["errors"][0]
    if code is None:
        assert error["extensions"]["code"] in {"NOT_FOUND", "BAD_USER_INPUT"}
    else:
        assert error["extensions"]["code"] == code
    assert "Traceback" not in json.dumps(body) and "/work/" not in json.dumps(body)


def test_bad_clicks_get_coded_errors(server: Server) -> None:
    sid = server.start()
    base = {"sessionId": sid, "clearOldPoints": True, "objectId": 0}
    cases = [
        {**base, "frameIndex": 999, "labels": [1], "points": [[0.5, 0.5]]},
        {**base, "frameIndex": 0, "labels": [1, 0], "points": [[0.5, 0.5]]},
        {**base, "frameIndex": 0, "labels": [7], "points": [[0.5, 0.5]]},
        {**base, "frameIndex": -1, "labels": [1], "points": [[0.5, 0.5]]},
        {**base, "frameIndex": 0, "labels": [1], "points": [[1.5, 0.5]]},
    ]
    for inp in cases:
        body = server.gql(ADD_POINTS, {"input": inp})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", inp
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_bad_stream_requests_are_4xx(server: Server) -> None:
    r = requests.post(f"{server.url}/propagate_in_video", json={"session_id": "nope"}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = requests.post(f"{server.url}/propagate_in_video", data="x", timeout=10)
    assert r.status_code in (400, 415)
    sid = server.start()
    r = server.stream({"session_id": sid})
    assert r.status_code == 400 and "before propagating" in r.json()["error"]["message"]
    server.click(sid)
    r = server.stream({"session_id": sid, "start_frame_index": 5000})
    assert r.status_code == 400
    r = server.stream({"session_id": sid, "direction": "up"})
    assert r.status_code == 400
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_cors_and_csrf(server: Server) -> None:
    pre = requests.options(
        f"{server.url}/graphql",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == ORIGIN
    evil = requests.post(
        f"{server.url}/graphql",
        files={"operations": (None, "{}"), "map": (None, "{}")},
        headers={"Origin": "http://evil.example"},
        timeout=10,
    )
    assert evil.status_code == 403


def test_upload_real_and_bad_files(server: Server, bedroom_video: Path, tmp_path: Path) -> None:
    clip = write_clip(bedroom_video, tmp_path / "clip.mp4", frames=12)
    upload = """mutation U($file: Upload!) { uploadVideo(file: $file) { id height width url path
      posterPath posterUrl } }"""

    def send(name: str, payload: bytes) -> Any:
        ops = json.dumps({"query": upload, "variables": {"file": None}})
        r = requests.post(
            f"{server.url}/graphql",
            data={"operations": ops, "map": json.dumps({"file": ["variables.file"]})},
            files={"file": (name, payload, "video/mp4")},
            headers={"Origin": ORIGIN},
            timeout=60,
        )
        return r

    ok = send("clip.mp4", clip.read_bytes()).json()
    video = ok["data"]["uploadVideo"]
    assert video["path"].startswith("uploads/") and (video["width"], video["height"]) == (320, 180)
    assert requests.get(video["url"], timeout=10).status_code == 200
    assert requests.get(video["posterUrl"], timeout=10).status_code == 200
    sid = server.start(video["path"])
    server.click(sid)
    server.data_of(CLOSE, {"input": {"sessionId": sid}})
    for name, payload in [
        ("empty.mp4", b""),
        ("text.mp4", b"hello, not a video\n" * 10),
        ("half.mp4", clip.read_bytes()[: len(clip.read_bytes()) // 2]),
    ]:
        body = send(name, payload).json()
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (name, body)
    big = send("big.mp4", b"\0" * (5 * 1024 * 1024))
    assert (
        big.status_code == 413 or big.json()["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    )
    leftovers = [p for p in (server.data / "uploads").rglob("*") if p.is_file()]
    assert len(leftovers) == 1  # only the good upload


EXPORT = """mutation E($input: ExportMatteInput!) { exportMatte(input: $input) {
  id status progress framesDone framesTotal url errorCode error } }"""
JOB = """query J($id: String!) { exportJob(id: $id) { id status progress framesDone framesTotal url
  errorCode error } }"""


def _wait_job(server: Server, job_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = server.data_of(JOB, {"id": job_id})["exportJob"]
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    pytest.fail("export did not finish")


def test_export_png_zip_and_composite(server: Server, tmp_path: Path) -> None:
    import io
    import zipfile

    from PIL import Image

    sid = server.start("gallery/small.mp4")
    server.click(sid, frame=0, obj=1)
    server.click(sid, frame=0, obj=2, xy=(0.7, 0.6))
    resp = server.stream({"session_id": sid, "direction": "forward"})
    parts = _multipart(resp)
    assert len(parts) == 12
    last = json.loads(parts[-1].body)["results"]
    expected = np.maximum(decode_matte(last[0]["alpha"]), decode_matte(last[1]["alpha"]))

    job = server.data_of(EXPORT, {"input": {"sessionId": sid, "format": "png-zip"}})["exportMatte"]
    done = _wait_job(server, job["id"])
    assert done["status"] == "done" and done["framesDone"] == 12 and done["progress"] == 1.0
    r = requests.get(done["url"], timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = sorted(z.namelist())
        assert len(names) == 12
        rgba = np.asarray(Image.open(io.BytesIO(z.read(names[-1]))))
    assert rgba.shape == (180, 320, 4)
    assert np.array_equal(rgba[..., 3], expected)  # the union of both objects, lossless

    comp = server.data_of(
        EXPORT,
        {
            "input": {
                "sessionId": sid,
                "format": "composite",
                "background": "#0000ff",
                "objectIds": [1],
            }
        },
    )["exportMatte"]
    done = _wait_job(server, comp["id"])
    assert done["status"] == "done"
    video = requests.get(done["url"], timeout=30)
    assert video.headers["Content-Type"] == "video/mp4" and len(video.content) > 1000

    bad = server.gql(EXPORT, {"input": {"sessionId": sid, "format": "gif"}})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    bad = server.gql(
        EXPORT, {"input": {"sessionId": sid, "format": "composite", "background": "/etc/passwd"}}
    )
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    missing = server.gql(JOB, {"id": "f" * 32})
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    server.data_of(CLOSE, {"input": {"sessionId": sid}})
    # Closing the session removes its exports.
    assert requests.get(done["url"], timeout=10).status_code == 404


def test_export_before_propagation_is_refused(server: Server) -> None:
    sid = server.start("gallery/small.mp4")
    body = server.gql(EXPORT, {"input": {"sessionId": sid, "format": "alpha"}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_client_disconnect_stops_the_work(server: Server) -> None:
    sid = server.start()
    server.click(sid)
    resp = server.stream({"session_id": sid, "direction": "forward"}, ndjson=True)
    first = next(resp.iter_lines())
    assert json.loads(first)["type"] == "frame"
    resp.close()  # the client goes away mid-stream
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = server.data_of(SESSION, {"id": sid})["session"]
        if not info["isPropagating"]:
            break
        time.sleep(0.2)
    assert not info["isPropagating"]
    assert len(info["propagatedFrames"]) < 200  # it stopped, it did not run to the end
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert "sam2_matting_streams 0.0" in metrics
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_second_stream_on_a_session_is_busy(server: Server) -> None:
    sid = server.start()
    server.click(sid)
    first = server.stream({"session_id": sid, "direction": "forward"}, ndjson=True)
    lines_in = first.iter_lines()
    next(lines_in)
    # Another client (another address: the service has no tokens here) is refused; the same
    # client would take the stream over (tests/test_stream_pipeline.py).
    second = server.stream({"session_id": sid, "direction": "forward"}, True, "127.0.0.2")
    assert second.status_code == 409 and second.json()["error"]["code"] == "SESSION_BUSY"
    server.data_of(CANCEL, {"input": {"sessionId": sid}})
    lines = [json.loads(x) for x in lines_in if x]
    assert lines[-1]["type"] == "end" and lines[-1]["cancelled"]
    server.data_of(CLOSE, {"input": {"sessionId": sid}})


def test_token_production_mode_and_expiry(tiny_model, shared_videos, tmp_path) -> None:
    s = launch(
        tiny_model,
        shared_videos,
        tmp_path,
        API_TOKEN="s3cret",
        SAM2_MATTING_PRODUCTION="1",
        SAM2_MATTING_SESSION_TTL="2",
    )
    try:
        auth = {"Authorization": "Bearer s3cret"}
        assert requests.get(f"{s.url}/healthy", timeout=5).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = requests.post(
                f"{s.url}/graphql", json={"query": DEFAULT_VIDEO}, headers=headers, timeout=10
            )
            assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
        r = requests.post(f"{s.url}/propagate_in_video", json={"session_id": "x"}, timeout=10)
        assert r.status_code == 401
        assert requests.get(f"{s.url}/gallery/bedroom.mp4", timeout=10).status_code == 401
        assert s.gql(DEFAULT_VIDEO, headers=auth)["data"]["defaultVideo"]["width"] == 960
        intro = s.gql("{ __schema { types { name } } }", headers=auth)
        assert intro["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        ide = requests.get(f"{s.url}/graphql", headers={**auth, "Accept": "text/html"}, timeout=10)
        assert "graphiql" not in ide.text.lower()
        body = s.gql(START, {"input": {"path": "gallery/bedroom.mp4"}}, headers=auth)
        sid = body["data"]["startSession"]["sessionId"]
        time.sleep(3)  # idle past the 2 s expiry
        gone = s.gql(SESSION, {"id": sid}, headers=auth)
        assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    finally:
        stop(s)


def test_export_foreground_estimate_temporal_or_source(server: Server) -> None:
    import io
    import zipfile

    from PIL import Image

    sid = server.start("gallery/small.mp4")
    server.click(sid, frame=0, obj=1)
    _multipart(server.stream({"session_id": sid, "direction": "forward", "max_frames": 3}))
    last = {}
    for mode in ("source", None, "estimate", "temporal"):
        options = {"sessionId": sid, "format": "png-zip"}
        if mode is not None:
            options["foreground"] = mode
        job = server.data_of(EXPORT, {"input": options})["exportMatte"]
        done = _wait_job(server, job["id"])
        assert done["status"] == "done", done
        with zipfile.ZipFile(io.BytesIO(requests.get(done["url"], timeout=30).content)) as z:
            last[mode] = np.asarray(Image.open(io.BytesIO(z.read(sorted(z.namelist())[-1]))))
    alpha = last["source"][..., 3]
    hard = (alpha == 0) | (alpha == 255)
    assert np.array_equal(last[None], last["estimate"])  # estimate is the default
    assert np.array_equal(last["source"][hard], last["estimate"][hard])
    assert np.array_equal(last["source"][hard], last["temporal"][hard])
    assert np.array_equal(last["source"][..., 3], last["temporal"][..., 3])
    bad = server.gql(EXPORT, {"input": {"sessionId": sid, "format": "prores", "foreground": "x"}})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "foreground must be one of" in bad["errors"][0]["message"]
    server.data_of(CLOSE, {"input": {"sessionId": sid}})
