"""`startSession(input: {path, prompts})`: a session opened from a prompts file, on the tiny model.

The replayed session answers the next click as the recorded one does, byte for byte; a file for
another video or model, or a malformed one, is a coded GraphQL error and leaves no session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sam2_matting import prompts_file as pf
from sam2_matting.codec import decode_matte
from tests.test_server_e2e import write_clip

START = """mutation($p: String!, $prompts: String) {
  startSession(input: {path: $p, prompts: $prompts}) { sessionId } }"""
CLICK = """mutation($input: AddPointsInput!) {
  addPoints(input: $input) { frameIndex rleMaskList { objectId alpha { format size counts } } } }"""
CLOSE = """mutation($s: String!) { closeSession(input: {sessionId: $s}) { success } }"""
SESSION = """query($s: String!) {
  session(sessionId: $s) { objects { objectId promptedFrames } propagatedFrames } }"""


@pytest.fixture(scope="module")
def service(tiny_model: Any, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from sam2_matting.predictor import build_matting_predictor
    from server.app import create_app
    from server.config import Settings

    root = tmp_path_factory.mktemp("prompts-service")
    gallery = root / "gallery"
    gallery.mkdir()
    write_clip(shared_videos / "bedroom.mp4", gallery / "small.mp4", frames=4)
    write_clip(shared_videos / "01_dog.mp4", gallery / "other.mp4", frames=4)
    torch.manual_seed(0)
    predictor = build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu")
    settings = Settings(
        data=str(root / "data"),
        gallery=str(gallery),
        device="cpu",
        model=str(tiny_model.config),
        checkpoint=str(tiny_model.checkpoint),
        max_sessions=2,
    )
    client = create_app(settings, predictor).test_client()

    def gql(query: str, variables: dict[str, Any]) -> Any:
        return client.post("/graphql", json={"query": query, "variables": variables}).get_json()

    return gql, predictor, gallery, tiny_model


def _record(predictor: Any, tiny_model: Any, video: Path) -> tuple[str, np.ndarray]:
    """Prompts with a propagation between them, then the click the test repeats."""
    model = pf.model_identity(tiny_model.config, tiny_model.checkpoint)
    with predictor.open(video) as plain:
        s = pf.record(plain, model=model)
        s.add_points(0, 1, [[0.3, 0.4]], [1], normalized=True)
        s.add_points(1, 2, [[0.6, 0.5]], [1], normalized=True)
        list(s.propagate(direction="forward"))
        text = pf.dumps(s.document())
        after = s.add_points(2, 1, [[0.5, 0.5]], [1], normalized=True, clear_old_points=False)
        return text, after.alpha(1)


def _click(gql: Any, sid: str) -> np.ndarray:
    body = gql(CLICK, {"input": {
        "sessionId": sid, "frameIndex": 2, "objectId": 1, "points": [[0.5, 0.5]],
        "labels": [1], "clearOldPoints": False,
    }})  # fmt: skip
    mattes = {m["objectId"]: m["alpha"] for m in body["data"]["addPoints"]["rleMaskList"]}
    return decode_matte(mattes[1])


def test_a_session_started_from_a_prompts_file_continues_as_the_recorded_one(
    service: Any,
) -> None:
    gql, predictor, gallery, tiny_model = service
    text, expected = _record(predictor, tiny_model, gallery / "small.mp4")
    body = gql(START, {"p": "gallery/small.mp4", "prompts": text})
    sid = body["data"]["startSession"]["sessionId"]
    info = gql(SESSION, {"s": sid})["data"]["session"]
    assert info["propagatedFrames"] == [0, 1, 2, 3]  # the last propagation's mattes, kept
    assert info["objects"] == [
        {"objectId": 1, "promptedFrames": [0]},
        {"objectId": 2, "promptedFrames": [1]},
    ]
    assert _click(gql, sid).tobytes() == expected.tobytes()
    gql(CLOSE, {"s": sid})


def test_a_refused_prompts_file_is_a_coded_error_and_leaves_no_session(service: Any) -> None:
    gql, predictor, gallery, tiny_model = service
    text, _ = _record(predictor, tiny_model, gallery / "small.mp4")
    other_model = json.loads(text)
    other_model["model"]["checkpoint_sha256"] = "1" * 64
    cases = [
        ("gallery/other.mp4", text, "the prompts file is for another video (small.mp4"),
        ("gallery/small.mp4", json.dumps(other_model), "made with another model (checkpoint"),
        ("gallery/small.mp4", text.replace('"version": 1', '"version": 7'), "unknown version 7"),
        ("gallery/small.mp4", "{", "prompts file: not JSON"),
    ]
    for path, prompts, message in cases:
        body = gql(START, {"p": path, "prompts": prompts})
        error = body["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", body
        assert message in error["message"] and "allow-other-model" not in error["message"]
    # every refused session was closed: the cap of two still has room for two
    for _ in range(2):
        sid = gql(START, {"p": "gallery/small.mp4"})["data"]["startSession"]["sessionId"]
        assert gql(CLOSE, {"s": sid})["data"]["closeSession"]["success"]


PROMPTS = "query($s: String!) { sessionPrompts(sessionId: $s) }"
CALLS = {
    "box": """mutation($i: AddBoxInput!) { addBox(input: $i) { frameIndex } }""",
    "mask": """mutation($i: AddMaskInput!) { addMask(input: $i) { frameIndex } }""",
    "clear": """mutation($i: ClearPointsInFrameInput!) { clearPointsInFrame(input: $i) {
      frameIndex } }""",
    "remove": """mutation($i: RemoveObjectInput!) { removeObject(input: $i) { frameIndex } }""",
    "clear_all": """mutation($i: ClearPointsInVideoInput!) { clearPointsInVideo(input: $i) {
      success } }""",
}


def test_the_service_records_every_prompt_call_that_succeeds(service: Any) -> None:
    from sam2_matting.codec import encode_matte

    gql, _, gallery, tiny_model = service
    sid = gql(START, {"p": "gallery/small.mp4"})["data"]["startSession"]["sessionId"]
    empty = pf.loads(gql(PROMPTS, {"s": sid})["data"]["sessionPrompts"])
    assert empty.events == [] and empty.video["path"] == "gallery/small.mp4"
    assert empty.video["sha256"] == pf.video_sha256(gallery / "small.mp4")
    assert empty.model == pf.model_identity(tiny_model.config, tiny_model.checkpoint)

    _click(gql, sid)
    box = {"sessionId": sid, "frameIndex": 1, "objectId": 2, "box": [0.1, 0.2, 0.6, 0.7]}
    gql(CALLS["box"], {"i": box})
    mask = np.zeros((180, 320), np.uint8)
    mask[40:90, 100:200] = 255
    gql(CALLS["mask"], {"i": {"sessionId": sid, "frameIndex": 3, "objectId": 3,
                              "alpha": encode_matte(mask)}})  # fmt: skip
    refused = gql(CALLS["box"], {"i": {**box, "frameIndex": 99}})  # not recorded
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    gql(CALLS["clear"], {"i": {"sessionId": sid, "frameIndex": 1, "objectId": 2}})
    gql(CALLS["remove"], {"i": {"sessionId": sid, "objectId": 2}})
    gql(CALLS["remove"], {"i": {"sessionId": sid, "objectId": 42}})  # unknown: no change
    doc = pf.loads(gql(PROMPTS, {"s": sid})["data"]["sessionPrompts"])
    assert [(e["op"], e.get("object")) for e in doc.events] == [
        ("add_points", 1), ("add_box", 2), ("add_mask", 3), ("clear_frame", 2),
        ("remove_object", 2),
    ]  # fmt: skip
    assert doc.events[1]["box"] == box["box"]
    assert decode_matte(doc.events[2]["mask"]).tobytes() == mask.tobytes()
    gql(CALLS["clear_all"], {"i": {"sessionId": sid}})
    doc = pf.loads(gql(PROMPTS, {"s": sid})["data"]["sessionPrompts"])
    assert doc.events[-1] == {"op": "clear_video"}
    gql(CLOSE, {"s": sid})
    gone = gql(PROMPTS, {"s": sid})
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"
