"""The mattes cache after every GraphQL mutation that changes prompts: stale mattes never stay.

Each prompt mutation runs through the real schema (in process, tiny model) on a session whose
cache holds propagated frames; afterwards only the frames the mutation recomputed are cached,
and they hold exactly what it returned. A resolver that changed the session without its entry's
verb would leave the propagated (stale) frames behind and fail here. A new mutation must be
listed as changing prompts or not, so none slips past.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import strawberry

from sam2_matting.codec import encode_matte
from sam2_matting.predictor import MattingPredictor
from server.config import Settings
from server.schema import build_schema
from server.schema_context import AppContext
from server.session_entry import SessionEntry
from server.sessions import SessionStore

PROPAGATED = 5  # frames 0..4 are cached before each mutation

# Mutations that change prompts, with a query each (on frame 2, a propagated frame).
PROMPT_MUTATIONS: dict[str, str] = {
    "addPoints": """mutation($s: String!) { addPoints(input: {sessionId: $s, frameIndex: 2,
        objectId: 1, clearOldPoints: false, points: [[0.3, 0.3]], labels: [0]}) { ...F } }""",
    "addBox": """mutation($s: String!) { addBox(input: {sessionId: $s, frameIndex: 2,
        objectId: 2, box: [0.1, 0.1, 0.6, 0.7]}) { ...F } }""",
    "addMask": """mutation($s: String!, $a: MatteInput!) { addMask(input: {sessionId: $s,
        frameIndex: 2, objectId: 1, alpha: $a}) { ...F } }""",
    "clearPointsInFrame": """mutation($s: String!) { clearPointsInFrame(input: {sessionId: $s,
        frameIndex: 0, objectId: 2}) { ...F } }""",
    "clearPointsInVideo": """mutation($s: String!) {
        clearPointsInVideo(input: {sessionId: $s}) { success } }""",
    "removeObject": """mutation($s: String!) {
        removeObject(input: {sessionId: $s, objectId: 2}) { ...F } }""",
}
FRAGMENT = """fragment F on RLEMaskListOnFrame { frameIndex
    rleMaskList { objectId alpha { format size counts } } }"""
# Mutations that leave prompts alone (a new mutation must be added to one of the two lists).
OTHER_MUTATIONS = {
    "uploadVideo",
    "uploadVideoAsync",
    "startSession",
    "closeSession",
    "cancelPropagateInVideo",
    "exportMatte",
    "cancelExport",
}


@dataclass(frozen=True)
class Record:
    id: str
    file: Path


@pytest.fixture(scope="module")
def schema() -> strawberry.Schema:
    return build_schema(Settings(device="cpu"))


@pytest.fixture
def context(predictor: MattingPredictor, tmp_path: Path) -> Iterator[AppContext]:
    store = SessionStore(predictor, max_sessions=2, ttl=60)
    yield AppContext(Settings(device="cpu"), store, library=None, base_url="http://test")
    store.shutdown()


def _prompted_and_propagated(context: AppContext, video: Path) -> SessionEntry:
    """Two objects prompted on frame 0 and mattes cached on frames 0..4, as a propagation
    leaves them (frame 0's mattes stand in for the propagated ones: what counts here is that
    they are cached and that the prompts change after them)."""
    entry = context.store.create(Record("gallery/clip.mp4", video))
    entry.add_points(0, 1, [[0.5, 0.5]], [1])
    session = entry.session
    result = session.add_points(0, 2, [[0.2, 0.2]], [1], normalized=True)
    for frame in range(PROPAGATED):
        entry.encode_and_cache(replace(result, frame_index=frame))
    assert entry.cached_frames() == list(range(PROPAGATED))
    return entry


def test_every_mutation_is_classified(schema: strawberry.Schema) -> None:
    mutation = schema._schema.mutation_type
    assert mutation is not None
    assert set(mutation.fields) == set(PROMPT_MUTATIONS) | OTHER_MUTATIONS


@pytest.mark.parametrize("name", sorted(PROMPT_MUTATIONS))
def test_a_prompt_mutation_leaves_no_stale_mattes(
    name: str, schema: strawberry.Schema, context: AppContext, small_clip: Path
) -> None:
    entry = _prompted_and_propagated(context, small_clip)
    s = entry.session
    variables: dict[str, Any] = {"s": entry.id}
    if name == "addMask":
        alpha = np.zeros((s.height, s.width), np.uint8)
        alpha[s.height // 4 : s.height // 2, s.width // 4 : s.width // 2] = 255
        variables["a"] = encode_matte(alpha)
    query = PROMPT_MUTATIONS[name]
    if "...F" in query:
        query += FRAGMENT
    result = schema.execute_sync(query, variable_values=variables, context_value=context)
    assert result.errors is None, result.errors
    assert result.data is not None
    answer = result.data[name]
    frames = answer if isinstance(answer, list) else [answer] if "frameIndex" in answer else []

    # Only the recomputed frames stay cached, and they hold what the mutation returned.
    assert entry.cached_frames() == sorted(f["frameIndex"] for f in frames)
    assert entry.cached_frames() != list(range(PROPAGATED))  # the propagated mattes are gone
    for frame in frames:
        ((_, cached),) = entry.cached([frame["frameIndex"]])
        assert {m.object_id: m.alpha for m in cached} == {
            m["objectId"]: m["alpha"] for m in frame["rleMaskList"]
        }


def test_an_export_snapshot_is_not_changed_by_later_prompts(
    context: AppContext, small_clip: Path
) -> None:
    entry = _prompted_and_propagated(context, small_clip)
    snapshot = entry.snapshot()
    entry.clear_video()
    assert entry.cached_frames() == []
    assert sorted(snapshot) == list(range(PROPAGATED))
    assert all(set(per_obj) == {1, 2} for per_obj in snapshot.values())
