"""The HTTP edge against malformed and curious clients, in-process (Flask test client, the
real app on the tiny model): GraphQL bodies Strawberry cannot use, badly typed variables,
malformed multipart uploads. Every answer is a coded JSON error, never plain text or a 5xx."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

UPLOAD = "mutation($file: Upload!) { uploadVideo(file: $file) { path } }"
START = "mutation($i: StartSessionInput!) { startSession(input: $i) { sessionId } }"


@pytest.fixture(scope="module")
def app(tiny_model, bedroom_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Flask:  # type: ignore[no-untyped-def]
    from sam2_matting.predictor import build_matting_predictor
    from server.app import create_app
    from server.config import Settings

    root = tmp_path_factory.mktemp("http-edge")
    (root / "gallery").mkdir()
    shutil.copy(bedroom_video, root / "gallery" / "bedroom.mp4")
    predictor = build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu")
    settings = Settings(data=str(root / "data"), gallery=str(root / "gallery"), device="cpu")
    return create_app(settings, predictor)


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _json_error(response: Any, status: int = 400, code: str = "BAD_USER_INPUT") -> str:
    """A plain HTTP error in the service's shape: returns its message."""
    assert response.status_code == status, (response.status, response.data[:300])
    assert response.mimetype == "application/json", response.data[:300]
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "/work/" not in text and "/tmp/" not in text
    return str(body["error"]["message"])


def _graphql_error(response: Any, code: str = "BAD_USER_INPUT") -> str:
    """One coded GraphQL error (HTTP 200): returns its message."""
    assert response.status_code == 200, (response.status, response.data[:300])
    body = response.get_json()
    assert body["data"] is None and len(body["errors"]) == 1, body
    assert body["errors"][0]["extensions"] == {"code": code}, body
    return str(body["errors"][0]["message"])


# -- bodies Strawberry cannot use (issue 11) -------------------------------------------------

JSON_BODIES = {
    "batched": json.dumps([{"query": "{ __typename }"}, {"query": "{ __typename }"}]),
    "empty batch": "[]",
    "not json": "{{",
    "truncated": '{"query": "{ __typename }"',
    "a string": '"{ __typename }"',
    "a number": "5",
    "null": "null",
    "missing query": "{}",
    "query not a string": '{"query": 5}',
    "variables a list": '{"query": "{ __typename }", "variables": [1]}',
    "extensions a string": '{"query": "{ __typename }", "extensions": "x"}',
    "unknown operation": '{"query": "{ __typename }", "operationName": "Nope"}',
}


@pytest.mark.parametrize("body", JSON_BODIES.values(), ids=JSON_BODIES.keys())
def test_malformed_json_bodies_get_a_coded_400(client: FlaskClient, body: str) -> None:
    response = client.post("/graphql", data=body, content_type="application/json")
    message = _json_error(response)
    if body.startswith("["):
        assert "batched" in message


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"\xff\xfe\x00", "application/json"),  # not UTF-8
        (b'{"query": "{ __typename }"}', "text/plain"),
        (b"query={ __typename }", "application/x-www-form-urlencoded"),
    ],
    ids=["not utf-8", "text/plain", "form"],
)
def test_bodies_that_are_not_json_get_a_coded_400(
    client: FlaskClient, data: bytes, content_type: str
) -> None:
    _json_error(client.post("/graphql", data=data, content_type=content_type))


def test_a_get_query_is_refused_in_the_same_shape(client: FlaskClient) -> None:
    _json_error(client.get("/graphql?query={__typename}"))


def test_a_good_body_still_answers(client: FlaskClient) -> None:
    response = client.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 200 and response.get_json() == {"data": {"__typename": "Query"}}
