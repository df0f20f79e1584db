"""The differential sequences through the running service give the in-process answers exactly.

The real CLI starts gunicorn with the tiny model on a gallery holding the harness's clip. Each
operation goes to the service as the SAM 2 demo frontend would send it (GraphQL mutations,
normalised coordinates, ``POST /propagate_in_video``) and to an in-process MattingSession with
the same values; every alpha the service returns must equal the in-process one byte for byte,
and no answer may be ``INTERNAL``. The service cannot express two things the Python API can, so
the replayed sequences map them: a propagation with no start frame starts at frame 0 (the
demo's default), and cancels are dropped (a cancel races with frames already computed; the
cancel path has its own end-to-end tests).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from differential import (
    COUNTS,
    HEIGHT,
    REGRESSIONS,
    WIDTH,
    AddBox,
    AddMask,
    AddPoints,
    ClearFrame,
    ClearVideo,
    Op,
    OurSide,
    Outcome,
    Propagate,
    RemoveObject,
    frames_of,
    make_clip,
    sequence_st,
)
from hypothesis import HealthCheck, Phase, given, settings
from savi_stream import parse_savi_stream
from service import Server, launch

from sam2_matting.codec import decode_matte, encode_matte
from sam2_matting.predictor import MattingPredictor
from sam2_matting.tiny import TinyModelFiles

SERVICE_SEQUENCES = 12

FIELDS = "frameIndex rleMaskList { objectId alpha { format size counts } }"
MUTATIONS = {
    "addPoints": f"mutation($input: AddPointsInput!) {{ addPoints(input: $input) {{ {FIELDS} }} }}",
    "addBox": f"mutation($input: AddBoxInput!) {{ addBox(input: $input) {{ {FIELDS} }} }}",
    "addMask": f"mutation($input: AddMaskInput!) {{ addMask(input: $input) {{ {FIELDS} }} }}",
    "clearPointsInFrame": (
        "mutation($input: ClearPointsInFrameInput!) "
        f"{{ clearPointsInFrame(input: $input) {{ {FIELDS} }} }}"
    ),
    "clearPointsInVideo": (
        "mutation($input: ClearPointsInVideoInput!) "
        "{ clearPointsInVideo(input: $input) { success } }"
    ),
    "removeObject": (
        f"mutation($input: RemoveObjectInput!) {{ removeObject(input: $input) {{ {FIELDS} }} }}"
    ),
}
START = "mutation($input: StartSessionInput!) { startSession(input: $input) { sessionId } }"
CLOSE = "mutation($input: CloseSessionInput!) { closeSession(input: $input) { success } }"


def for_service(op: Op) -> Op:
    """The operation as the service can express it (see the module docstring)."""
    if isinstance(op, Propagate):
        return dataclasses.replace(op, start=0 if op.start is None else op.start, cancel_after=None)
    return op


def _norm(points: tuple[tuple[float, float], ...]) -> list[list[float]]:
    return [[x / WIDTH, y / HEIGHT] for x, y in points]


def _box(box: tuple[float, float, float, float]) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0 / WIDTH, y0 / HEIGHT, x1 / WIDTH, y1 / HEIGHT]


class ServiceSide:
    """Applies operations through GraphQL and the stream of a running service."""

    def __init__(self, server: Server, path: str) -> None:
        self.server = server
        self.sid = server.data_of(START, {"input": {"path": path}})["startSession"]["sessionId"]

    def close(self) -> None:
        self.server.gql(CLOSE, {"input": {"sessionId": self.sid}})

    def _mutate(self, name: str, fields: dict[str, Any]) -> Outcome:
        body = self.server.gql(MUTATIONS[name], {"input": {"sessionId": self.sid, **fields}})
        if body.get("errors"):
            code = body["errors"][0].get("extensions", {}).get("code")
            assert code != "INTERNAL", body
            return ("error", code)
        data = body["data"][name]
        if name == "clearPointsInVideo":
            return ("none", [])
        frames = data if isinstance(data, list) else [data]
        return frames_of([self._frame(f["frameIndex"], f["rleMaskList"]) for f in frames])

    @staticmethod
    def _frame(index: int, masks: list[dict[str, Any]]) -> tuple[int, tuple[int, ...], np.ndarray]:
        ids = tuple(int(m["objectId"]) for m in masks)
        alphas = [decode_matte(m["alpha"]) for m in masks]
        stacked = np.stack(alphas) if alphas else np.zeros((0, HEIGHT, WIDTH), np.uint8)
        return (int(index), ids, stacked)

    def apply(self, op: Op) -> Outcome:
        if isinstance(op, AddPoints):
            return self._mutate(
                "addPoints",
                {
                    "frameIndex": op.frame,
                    "objectId": op.obj,
                    "clearOldPoints": op.clear_old,
                    "labels": list(op.labels),
                    "points": _norm(op.points),
                },
            )
        if isinstance(op, AddBox):
            fields = {"frameIndex": op.frame, "objectId": op.obj, "box": _box(op.box)}
            return self._mutate("addBox", fields)
        if isinstance(op, AddMask):
            alpha = encode_matte(op.mask().astype(np.uint8) * 255)
            fields = {"frameIndex": op.frame, "objectId": op.obj, "alpha": alpha}
            return self._mutate("addMask", fields)
        if isinstance(op, ClearFrame):
            return self._mutate("clearPointsInFrame", {"frameIndex": op.frame, "objectId": op.obj})
        if isinstance(op, ClearVideo):
            return self._mutate("clearPointsInVideo", {})
        if isinstance(op, RemoveObject):
            return self._mutate("removeObject", {"objectId": op.obj})
        assert isinstance(op, Propagate)
        return self._propagate(op)

    def _propagate(self, op: Propagate) -> Outcome:
        body: dict[str, Any] = {
            "session_id": self.sid,
            "start_frame_index": op.start,
            "direction": op.direction,
        }
        if op.max_frames is not None:
            body["max_frames"] = op.max_frames
        r = self.server.stream(body)
        if r.headers["Content-Type"].startswith("application/json"):
            err = r.json()["error"]
            assert err["code"] != "INTERNAL", err
            return ("error", err["code"])
        out = []
        for part in parse_savi_stream(r.iter_content(chunk_size=None)):
            payload = json.loads(part.body)
            assert "error" not in payload, payload
            masks = [{"objectId": m["object_id"], "alpha": m["alpha"]} for m in payload["results"]]
            out.append(self._frame(payload["frame_index"], masks))
        return frames_of(out)


def assert_identical(step: int, op: Op, service: Outcome, local: Outcome) -> None:
    where = f"step {step} {op!r}"
    COUNTS["service steps"] += 1
    COUNTS["service frames compared"] += len(service[1]) if service[0] == "frames" else 0
    assert service[0] == local[0], (
        f"{where}: service {service[:1]} {service[1]!r}, local {local[0]}"
    )
    if service[0] == "error":
        assert service[1] == local[1], f"{where}: service {service[1]}, in-process {local[1]}"
        return
    got, want = service[1], local[1]
    assert [(f, ids) for f, ids, _ in got] == [(f, ids) for f, ids, _ in want], where
    for (f, _, a), (_, _, b) in zip(got, want, strict=True):
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b), f"{where}: frame {f}"


@pytest.fixture(scope="module")
def service(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("differential-service")
    gallery = root / "gallery"
    gallery.mkdir()
    clip = make_clip(gallery / "clip.mp4")
    server = launch(tiny_model, shared_videos, root, SAM2_MATTING_DEFAULT_VIDEO="clip.mp4")
    try:
        yield server, clip
    finally:
        server.proc.terminate()
        server.proc.wait(30)


@pytest.fixture(scope="module")
def local(predictor: MattingPredictor) -> MattingPredictor:
    """The in-process side: the same tiny model as the service loads."""
    return predictor


def replay(service: tuple[Server, Path], local: MattingPredictor, ops: list[Op]) -> None:
    server, clip = service
    remote = ServiceSide(server, "gallery/clip.mp4")
    try:
        with local.open(clip) as session:
            here = OurSide(session, as_service=True)
            for step, raw in enumerate(ops):
                op = for_service(raw)
                assert_identical(step, op, remote.apply(op), here.apply(op))
    finally:
        remote.close()


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_sequences_through_the_service(
    service: tuple[Server, Path], local: MattingPredictor, name: str
) -> None:
    replay(service, local, REGRESSIONS[name])


@settings(
    max_examples=SERVICE_SEQUENCES,
    deadline=None,
    derandomize=True,
    # No shrinking here (each step is a round trip): a failure prints the sequence as drawn;
    # shrink it with the in-process harness, which runs the same operations.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(ops=sequence_st)
def test_random_sequences_through_the_service(
    service: tuple[Server, Path], local: MattingPredictor, ops: list[Op]
) -> None:
    replay(service, local, ops)
