"""Uploads belong to the clients that sent them (per-client tokens, ``API_TOKENS``), in-process:
the Flask test client and the real app on the tiny model. Another client's upload is answered
word for word as an unknown one, on every door that takes an upload id."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

VALID = Path(__file__).parent / "fixtures" / "hostile" / "valid.mp4"
OTHER = Path(__file__).parent / "fixtures" / "hostile" / "yuv444.mp4"
UPLOAD = "mutation($file: Upload!) { uploadVideo(file: $file) { path posterUrl url } }"
START = "mutation($i: StartSessionInput!) { startSession(input: $i) { sessionId } }"
EXPORT = """mutation($i: ExportMatteInput!) { exportMatte(input: $i) { id } }"""
TOKENS = {"alice": "a-1", "bob": "b-2", "carol": "c-3"}
UNKNOWN = "f" * 64


def _app(root: Path, predictor: Any, **extra: Any) -> Flask:
    from server.app import create_app
    from server.config import Settings

    settings = Settings(
        data=str(root / "data"), gallery=str(root / "gallery"), device="cpu", **extra
    )
    return create_app(settings, predictor)


@pytest.fixture(scope="module")
def predictor(tiny_model):
    from sam2_matting.predictor import build_matting_predictor

    return build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu")


@pytest.fixture(scope="module")
def root(bedroom_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("owners")
    (root / "gallery").mkdir()
    shutil.copy(bedroom_video, root / "gallery" / "bedroom.mp4")
    return root


def _tokens() -> tuple[str, ...]:
    return tuple(f"{name}:{token}" for name, token in TOKENS.items())


class Client:
    """One client of the service: its token on every request."""

    def __init__(self, http: FlaskClient, name: str) -> None:
        self.http, self.headers = http, {"Authorization": f"Bearer {TOKENS[name]}"}

    def upload(self, video: Path) -> dict[str, str]:
        ops = json.dumps({"query": UPLOAD, "variables": {"file": None}})
        data = {
            "operations": ops,
            "map": json.dumps({"0": ["variables.file"]}),
            "0": (io.BytesIO(video.read_bytes()), video.name),
        }
        r = self.http.post("/graphql", data=data, headers=self.headers)
        body = r.get_json()
        assert "errors" not in body, body
        return dict(body["data"]["uploadVideo"])

    def gql(self, query: str, variables: dict[str, Any]) -> Any:
        r = self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )
        assert r.status_code == 200, r.data[:300]
        return r.get_json()

    def start(self, path: str) -> Any:
        return self.gql(START, {"i": {"path": path}})

    def get(self, path: str) -> Any:
        return self.http.get(path, headers=self.headers)

    def get_with_query_token(self, path: str) -> Any:
        token = self.headers["Authorization"].removeprefix("Bearer ")
        return self.http.get(f"{path}?access_token={token}")


def _refusal(response: Any) -> tuple[int, str, Any]:
    """An answer with the upload id taken out, to compare with the answer for an unknown id."""
    return response.status_code, response.mimetype, response.get_json()


def _without(value: Any, digest: str) -> str:
    return json.dumps(value).replace(digest, "<id>").replace(UNKNOWN, "<id>")


def test_another_clients_upload_is_not_found_word_for_word(root: Path, predictor: Any) -> None:
    http = _app(root, predictor, api_tokens=_tokens()).test_client()
    alice, bob = Client(http, "alice"), Client(http, "bob")
    video = alice.upload(VALID)
    path = video["path"]
    digest = path.removeprefix("uploads/").removesuffix(".mp4")
    poster = f"/posters/{digest}.jpg"
    assert video["posterUrl"].endswith(poster)
    # The owner: file, poster, session.
    assert alice.get(f"/{path}").status_code == 200
    assert alice.get(f"/{path}").headers["Cache-Control"].split(", ")[-1] == "private"
    assert alice.get_with_query_token(poster).status_code == 200
    assert "errors" not in alice.start(path)

    # Another client: the answers for an unknown id, the id aside.
    unknown = f"uploads/{UNKNOWN}.mp4"
    for get in (bob.get, bob.get_with_query_token):
        for own, other in ((f"/{path}", f"/{unknown}"), (poster, f"/posters/{UNKNOWN}.jpg")):
            mine, theirs = get(own), get(other)
            assert mine.status_code == 404
            assert _without(_refusal(mine), digest) == _without(_refusal(theirs), digest)
            ranged = bob.http.get(own, headers={**bob.headers, "Range": "bytes=0-3"})
            assert ranged.status_code == 404
    mine, theirs = bob.start(path), bob.start(unknown)
    assert mine["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert _without(mine, digest) == _without(theirs, digest)
    # As an export background, too (the session is bob's own).
    sid = bob.start("gallery/bedroom.mp4")["data"]["startSession"]["sessionId"]
    answers = [
        bob.gql(EXPORT, {"i": {"sessionId": sid, "format": "composite", "background": p}})
        for p in (path, unknown)
    ]
    assert answers[0]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert _without(answers[0], digest) == _without(answers[1], digest)

    # The owner uploading again keeps the id and its access.
    assert alice.upload(VALID)["path"] == path
    assert alice.get(f"/{path}").status_code == 200
    # The same bytes from bob: his own access to the same stored file (one file, one poster).
    assert bob.upload(VALID)["path"] == path
    assert bob.get(f"/{path}").status_code == 200
    assert bob.get(poster).status_code == 200
    assert "errors" not in bob.start(path)
    assert [p.name for p in (root / "data" / "uploads").iterdir()] == [f"{digest}.mp4"]

    # A restart (a new app on the same data folder): the records are on disk.
    again = _app(root, predictor, api_tokens=_tokens()).test_client()
    for name, status in (("alice", 200), ("bob", 200), ("carol", 404)):
        assert Client(again, name).get(f"/{path}").status_code == status, name
    carol = Client(again, "carol")
    assert carol.start(path)["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # Gallery posters and videos stay open to every client.
    assert carol.get("/gallery/bedroom.mp4").status_code == 200


def test_without_per_client_tokens_uploads_stay_shared(root: Path, predictor: Any) -> None:
    """One token (API_TOKEN) or none: one client, as before; uploads made under per-client
    tokens are usable too."""
    http = _app(root, predictor, api_token="t-0").test_client()
    headers = {"Authorization": "Bearer t-0"}
    ops = json.dumps({"query": UPLOAD, "variables": {"file": None}})
    data = {
        "operations": ops,
        "map": json.dumps({"0": ["variables.file"]}),
        "0": (io.BytesIO(OTHER.read_bytes()), OTHER.name),
    }
    path = http.post("/graphql", data=data, headers=headers).get_json()["data"]["uploadVideo"]
    path = path["path"]
    open_http = _app(root, predictor).test_client()
    assert open_http.get(f"/{path}").status_code == 200
    assert "public" in open_http.get(f"/{path}").headers["Cache-Control"].split(", ")
    r = open_http.post(
        "/graphql", json={"query": START, "variables": {"i": {"path": path}}}
    ).get_json()
    assert "errors" not in r, r
