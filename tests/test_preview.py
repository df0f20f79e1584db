"""The still preview, ``GET /sessions/<id>/composite/<frame>``, on the real service (gunicorn,
the tiny model, per-client tokens): its pixels are the exports' own for that frame, bad
requests are 4xx with the service's JSON error, another client's session is NOT_FOUND."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests
from PIL import Image

from sam2_matting.export.render import composite_over
from sam2_matting.tiny import TinyModelFiles
from tests.service import ADD_POINTS_ALPHA, ORIGIN, START, Server, launch, stop

EXPORT = """mutation E($input: ExportMatteInput!) { exportMatte(input: $input) { id } }"""
JOB = """query J($id: String!) { exportJob(id: $id) { status url error } }"""
ALICE = {"Authorization": "Bearer a-1"}
BOB = {"Authorization": "Bearer b-2"}
CLIP = "gallery/small.mp4"  # 12 frames, 320x180
BG = (16, 200, 40)


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(
        tiny_model,
        shared_videos,
        tmp_path_factory.mktemp("preview"),
        API_TOKENS="alice:a-1,bob:b-2",
    )
    yield s
    stop(s)


def _data(
    server: Server, query: str, variables: dict[str, Any], who: dict[str, str] = ALICE
) -> Any:
    body = server.gql(query, variables, headers=who)
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture(scope="module")
def session(server: Server) -> str:
    """Alice's session on the small clip, one object clicked on frame 0."""
    sid = str(_data(server, START, {"input": {"path": CLIP}})["startSession"]["sessionId"])
    inp = {
        "sessionId": sid, "frameIndex": 0, "clearOldPoints": True, "objectId": 1,
        "labels": [1], "points": [[0.4, 0.5]],
    }  # fmt: skip
    _data(server, ADD_POINTS_ALPHA, {"input": inp})
    return sid


def _preview(
    server: Server, sid: str, frame: int | str, who: dict[str, str] = ALICE, **q: str
) -> Any:
    return requests.get(
        f"{server.url}/sessions/{sid}/composite/{frame}", params=q, headers=who, timeout=60
    )


def _pixels(response: Any) -> np.ndarray:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"] == "image/png"
    assert "no-store" in response.headers["Cache-Control"]
    return np.asarray(Image.open(io.BytesIO(response.content)))


def _export(server: Server, sid: str, **inp: Any) -> bytes:
    job = _data(server, EXPORT, {"input": {"sessionId": sid, **inp}})["exportMatte"]["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = _data(server, JOB, {"id": job})["exportJob"]
        if state["status"] in ("done", "failed"):
            assert state["status"] == "done", state
            got = requests.get(state["url"], headers=ALICE, timeout=60)
            assert got.status_code == 200
            return got.content
        time.sleep(0.1)
    raise AssertionError("export did not finish")


def _png_frames(zipped: bytes) -> dict[int, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        return {
            int(Path(n).stem): np.asarray(Image.open(io.BytesIO(z.read(n))))
            for n in z.namelist()
            if n.endswith(".png")
        }


def test_preview_equals_the_exports_frame(server: Server, session: str) -> None:
    estimated = _pixels(_preview(server, session, 0, bg="10c828", objects="1"))
    source = _pixels(_preview(server, session, 0, bg="#10C828", foreground="source"))
    assert estimated.shape == (180, 320, 3)
    # The PNG export (lossless, the estimated colour by default) composited by the export's
    # own rule gives the preview byte for byte; bg=none is that RGBA frame itself.
    rgba = _png_frames(_export(server, session, format="png-zip"))[0]
    alpha = rgba[..., 3]
    soft = (alpha > 0) & (alpha < 255)
    assert soft.any()  # the tiny model's matte is soft (random weights: about 0.5)
    background = np.empty(estimated.shape, np.uint8)
    background[:] = BG
    expected = composite_over(rgba[..., :3], alpha, background)
    assert np.array_equal(estimated, expected)
    assert np.array_equal(_pixels(_preview(server, session, 0, bg="none")), rgba)
    # The colour differs from the source pixel's only where the matte is soft.
    differs = (estimated != source).any(axis=2)
    assert differs.any() and not (differs & ~soft).any()
    # The composite export (H.264, lossy) decodes to the same picture within coding error.
    mp4 = _export(server, session, format="composite", background="#10c828")
    with av.open(io.BytesIO(mp4)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    error = np.abs(first.astype(np.int16) - estimated.astype(np.int16))
    assert error.mean() < 3.0
    # A frame without mattes is the background alone, as in the export.
    assert np.array_equal(_pixels(_preview(server, session, 5, bg="10c828")), background)
    # ... but an object named without a matte there is NOT_FOUND (the page keeps its own).
    missing = _preview(server, session, 5, objects="1")
    assert (
        missing.status_code == 404 and "no matte of object 1" in missing.json()["error"]["message"]
    )


def test_cached_answer_is_the_same_and_a_new_click_is_not_served_stale(server: Server) -> None:
    sid = str(_data(server, START, {"input": {"path": CLIP}})["startSession"]["sessionId"])
    inp = {
        "sessionId": sid, "frameIndex": 2, "clearOldPoints": True, "objectId": 1,
        "labels": [1], "points": [[0.4, 0.5]],
    }  # fmt: skip
    _data(server, ADD_POINTS_ALPHA, {"input": inp})
    first = _preview(server, sid, 2).content
    assert _preview(server, sid, 2).content == first
    _data(server, ADD_POINTS_ALPHA, {"input": {**inp, "points": [[0.8, 0.2]]}})
    rgba = _png_frames(_export(server, sid, format="png-zip"))[2]
    green = np.empty((180, 320, 3), np.uint8)
    green[:] = (0, 255, 0)  # the default background, as the export's
    assert np.array_equal(
        _pixels(_preview(server, sid, 2)), composite_over(rgba[..., :3], rgba[..., 3], green)
    )


@pytest.mark.parametrize(
    ("frame", "query", "word"),
    [
        ("abc", {}, "frame"),
        ("-1", {}, "frame"),
        ("12", {}, "outside"),
        ("0", {"bg": "green"}, "bg"),
        ("0", {"bg": "12345"}, "bg"),
        ("0", {"objects": "7"}, "unknown object"),
        ("0", {"objects": "1,x"}, "objects"),
        ("0", {"objects": ""}, "objects"),
        ("0", {"foreground": "guess"}, "foreground"),
    ],
)
def test_bad_requests_are_400_with_a_message(
    server: Server, session: str, frame: str, query: dict[str, str], word: str
) -> None:
    got = _preview(server, session, frame, **query)
    assert got.status_code == 400, got.text[:200]
    error = got.json()["error"]
    assert error["code"] == "BAD_USER_INPUT" and word in error["message"]


def test_unknown_and_other_clients_sessions_are_not_found(server: Server, session: str) -> None:
    for sid, who in (("f" * 32, ALICE), (session, BOB)):
        got = _preview(server, sid, 0, who)
        assert got.status_code == 404 and got.json()["error"]["code"] == "NOT_FOUND"
    assert _preview(server, session, 0, {}).status_code == 401
    assert _preview(server, session, 0, {"Origin": ORIGIN, **ALICE}).status_code == 200


def test_cache_is_bounded_least_recent_first_and_checked_against_the_mattes() -> None:
    from server.preview import PreviewCache

    cache = PreviewCache(max_bytes=250)
    mattes_a, mattes_b = (object(),), (object(),)
    key = ("s", 0, (1,), (0, 255, 0), "estimate")
    cache.put(key, mattes_a, b"x" * 100)
    assert cache.get(key, mattes_a) == b"x" * 100
    assert cache.get(key, mattes_b) is None  # recomputed mattes: not served, and dropped
    assert len(cache) == 0
    for frame in range(3):
        cache.put(("s", frame, (1,), None, "estimate"), mattes_a, bytes(100))
    assert len(cache) == 2 and cache.size == 200  # frame 0, the least recent, went
    assert cache.get(("s", 0, (1,), None, "estimate"), mattes_a) is None
    cache.put(("t", 0, (1,), None, "estimate"), mattes_a, bytes(300))  # larger than it all
    assert cache.size == 200
    cache.drop_session("s")
    assert len(cache) == 0 and cache.size == 0


def test_parse_request_defaults_are_the_exports() -> None:
    from server.preview import parse_request

    req = parse_request("3", {})
    assert (req.frame, req.object_ids, req.background, req.foreground) == (
        3, None, (0, 255, 0), "estimate",
    )  # fmt: skip
    req = parse_request("0", {"bg": "#FF0080", "objects": "3, 1,3", "foreground": "Source"})
    assert (req.object_ids, req.background, req.foreground) == ((1, 3), (255, 0, 128), "source")
    # the still preview draws the temporal mode with the single-frame estimate
    assert parse_request("0", {"foreground": "temporal"}).foreground == "estimate"
    assert parse_request("0", {"bg": "none"}).background is None
