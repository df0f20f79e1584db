"""The HTTP edge against malformed and curious clients, in-process (Flask test client, the
real app on the tiny model): GraphQL bodies Strawberry cannot use, badly typed variables,
malformed multipart uploads. Every answer is a coded JSON error, never plain text or a 5xx."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from service import build_app, close_app

from sam2_matting.predictor import MattingPredictor

UPLOAD = "mutation($file: Upload!) { uploadVideo(file: $file) { path } }"
START = "mutation($i: StartSessionInput!) { startSession(input: $i) { sessionId } }"


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


# -- badly typed variables (issue 16) --------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (UPLOAD, {"file": None}),
        (UPLOAD, {"file": "x.mp4"}),
        (UPLOAD, {"file": {"name": "x.mp4"}}),
        (UPLOAD, {}),
        (START, {"i": {"path": 5}}),
        (START, {"i": {"path": None}}),
        (START, {"i": "gallery/bedroom.mp4"}),
        ("mutation($p: String!) { startSession(input: {path: $p}) { sessionId } }", {"p": 5}),
        (
            "query($id: String!, $f: [Int!]!) { mattes(sessionId: $id, frameIndices: $f) "
            "{ frameIndex } }",
            {"id": "x", "f": ["zero"]},
        ),
    ],
    ids=[
        "file null",
        "file a string",
        "file an object",
        "file missing",
        "path a number",
        "path null",
        "input a string",
        "String var a number",
        "Int list of strings",
    ],
)
def test_badly_typed_variables_are_bad_user_input(
    client: FlaskClient, query: str, variables: dict[str, Any]
) -> None:
    message = _graphql_error(client.post("/graphql", json={"query": query, "variables": variables}))
    assert "internal" not in message.lower()


# -- multipart uploads (issue 16) -------------------------------------------------------------

OPS = json.dumps({"query": UPLOAD, "variables": {"file": None}})
START_OPS = json.dumps({"query": START, "variables": {"i": {"path": "gallery/bedroom.mp4"}}})
START_NULL_OPS = json.dumps({"query": START, "variables": {"i": {"path": None}}})


def _clip() -> bytes:
    """A 6-frame 64x48 H.264 MP4, made here."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


MULTIPART_CASES: dict[str, dict[str, Any]] = {
    "no map": {"operations": OPS},
    "map {}": {"operations": OPS, "map": "{}"},
    "map a list": {"operations": OPS, "map": '["variables.file"]'},
    "map into the file": {"operations": OPS, "map": '{"0": ["variables.file.5.x"]}'},
    "map not json": {"operations": OPS, "map": "{{"},
    "map value a string": {"operations": OPS, "map": '{"0": "variables.file"}'},
    "map empty list": {"operations": OPS, "map": '{"0": []}'},
    "map names a missing part": {"operations": OPS, "map": '{"7": ["variables.file"]}'},
    "map outside variables": {"operations": OPS, "map": '{"0": ["query"]}'},
    "map to an unknown variable": {"operations": OPS, "map": '{"0": ["variables.nope"]}'},
    "map to a list index out of range": {
        "operations": json.dumps({"query": UPLOAD, "variables": {"file": [None]}}),
        "map": '{"0": ["variables.file.3"]}',
    },
    "operations a string": {"operations": '"mutation"', "map": '{"0": ["variables.file"]}'},
    "operations a batch": {
        "operations": json.dumps([{"query": UPLOAD, "variables": {"file": None}}]),
        "map": '{"0": ["0.variables.file"]}',
    },
    "operations not json": {"operations": "{{", "map": '{"0": ["variables.file"]}'},
    "no operations": {"map": '{"0": ["variables.file"]}'},
    "operations without a query": {
        "operations": '{"variables": {"file": null}}',
        "map": '{"0": ["variables.file"]}',
    },
    "file onto a non-null string": {"operations": START_OPS, "map": '{"0": ["variables.i.path"]}'},
}


@pytest.mark.parametrize("fields", MULTIPART_CASES.values(), ids=MULTIPART_CASES.keys())
def test_malformed_multipart_uploads_get_a_coded_400(
    client: FlaskClient, fields: dict[str, Any]
) -> None:
    data = {**fields, "0": (io.BytesIO(b"not read"), "a.mp4", "video/mp4")}
    response = client.post("/graphql", data=data, content_type="multipart/form-data")
    _json_error(response)


def test_a_file_in_a_string_placeholder_is_bad_user_input(client: FlaskClient) -> None:
    """A null placeholder of the wrong type: the spec's shape is right, the types are not."""
    data = {
        "operations": START_NULL_OPS,
        "map": '{"0": ["variables.i.path"]}',
        "0": (io.BytesIO(b"x"), "a.mp4", "video/mp4"),
    }
    _graphql_error(client.post("/graphql", data=data, content_type="multipart/form-data"))


@pytest.fixture(scope="module")
def uploaded(client: FlaskClient) -> str:
    """A well-formed multipart upload still works: the path of the stored video."""
    data = {
        "operations": OPS,
        "map": '{"0": ["variables.file"]}',
        "0": (io.BytesIO(_clip()), "clip.mp4", "video/mp4"),
    }
    response = client.post("/graphql", data=data, content_type="multipart/form-data")
    body = response.get_json()
    assert response.status_code == 200 and "errors" not in body, body
    path = body["data"]["uploadVideo"]["path"]
    assert path.startswith("uploads/")
    return str(path)


# -- Range requests on media (issue 16) -------------------------------------------------------


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=-0"])
def test_unsatisfiable_ranges_are_416_with_json(
    client: FlaskClient, uploaded: str, header: str
) -> None:
    for url in (f"/{uploaded}", "/gallery/bedroom.mp4"):
        size = len(client.get(url).data)
        response = client.get(url, headers={"Range": header})
        message = _json_error(response, 416, "RANGE_NOT_SATISFIABLE")
        assert response.headers["Content-Range"] == f"bytes */{size}"
        assert str(size) in message


@pytest.mark.parametrize(
    "header",
    ["bytes=5-2", "bytes=0-1,5-6", "bytes=0-0,-1", "chars=0-10", "bytes=abc", "bytes=-", "x"],
)
def test_ranges_http_says_to_ignore_get_the_whole_file(
    client: FlaskClient, uploaded: str, header: str
) -> None:
    """An unknown unit must be ignored; an invalid or multiple range may be: 200, all bytes."""
    for url in (f"/{uploaded}", "/gallery/bedroom.mp4"):
        whole = client.get(url).data
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 200 and response.data == whole, header
        assert "Content-Range" not in response.headers


def test_one_good_range_is_still_206(client: FlaskClient, uploaded: str) -> None:
    for url in (f"/{uploaded}", "/gallery/bedroom.mp4"):
        whole = client.get(url).data
        for header, part in [("bytes=0-9", whole[:10]), ("bytes=-4", whole[-4:])]:
            response = client.get(url, headers={"Range": header})
            assert response.status_code == 206 and response.data == part


# -- what a 413 says (issue 16) ---------------------------------------------------------------


def _form(parts: list[tuple[str, str]], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in parts
    )
    return f"{body}--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_413_says_which_limit_was_hit(client: FlaskClient, app: Flask) -> None:
    data, ctype = _form([(f"f{i}", "x") for i in range(5000)])
    message = _json_error(
        client.post("/graphql", data=data, content_type=ctype), 413, "LIMIT_EXCEEDED"
    )
    assert "parts" in message and "bytes" not in message, message
    data, ctype = _form([("operations", "x" * 600_000)])
    message = _json_error(
        client.post("/graphql", data=data, content_type=ctype), 413, "LIMIT_EXCEEDED"
    )
    assert "form field" in message, message
    big = app.config["MAX_CONTENT_LENGTH"] + 1
    response = client.post("/graphql", data=b"x" * big, content_type=ctype)
    message = _json_error(response, 413, "LIMIT_EXCEEDED")
    assert f"request body over {big - 1} bytes" == message
    response = client.post(
        "/graphql", data=b" " * (3 * 1024 * 1024), content_type="application/json"
    )
    assert _json_error(response, 413, "LIMIT_EXCEEDED") == "request body over 2097152 bytes"


# -- the token in a query string (issue 16) --------------------------------------------------


@pytest.fixture(scope="module")
def guarded_client(
    predictor: MattingPredictor, bedroom_video: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlaskClient]:
    """The app with per-client tokens (alice's is ``a-1``)."""
    root = tmp_path_factory.mktemp("http-token")
    gallery = {"bedroom.mp4": bedroom_video}
    app = build_app(predictor, root, gallery, api_tokens=("alice:a-1",))
    yield app.test_client()
    close_app(app)


def test_access_token_in_the_query_only_on_media_gets(guarded_client: FlaskClient) -> None:
    c = guarded_client
    assert (
        c.get("/gallery/bedroom.mp4?access_token=a-1", headers={"Range": "bytes=0-3"}).status_code
        == 206
    )
    poster = c.post(
        "/graphql",
        json={"query": "{ defaultVideo { posterUrl } }"},
        headers={"Authorization": "Bearer a-1"},
    ).get_json()["data"]["defaultVideo"]["posterUrl"]
    path = "/" + poster.split("/", 3)[3]
    assert c.get(f"{path}?access_token=a-1").status_code == 200
    assert c.get(f"/exports/{'0' * 32}/a.zip?access_token=a-1").status_code == 404  # let in
    refused = [
        c.post("/graphql?access_token=a-1", json={"query": "{ __typename }"}),
        c.get("/api/limits?access_token=a-1"),
        c.post("/propagate_in_video?access_token=a-1", json={"session_id": "x"}),
        c.post("/gallery/bedroom.mp4?access_token=a-1"),  # a POST, even on a media path
    ]
    for response in refused:
        message = _json_error(response, 401, "UNAUTHENTICATED")
        assert "Authorization" in message
    assert c.get("/gallery/bedroom.mp4?access_token=wrong").status_code == 401
    header = {"Authorization": "Bearer a-1"}
    assert c.post("/graphql", json={"query": "{ __typename }"}, headers=header).status_code == 200


def test_the_access_log_never_holds_a_token() -> None:
    import datetime
    from types import SimpleNamespace

    from gunicorn.config import Config

    from server.access_log import REDACTED, RedactingLogger

    cfg = Config()
    cfg.set("accesslog", "-")
    logger = RedactingLogger(cfg)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/uploads/a.mp4?x=1&access_token=s3cret-Token&y=2",
        "PATH_INFO": "/uploads/a.mp4",
        "QUERY_STRING": "x=1&access_token=s3cret-Token&y=2",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": "http://localhost:7263/?access_token=s3cret-Token",
    }
    request = SimpleNamespace(
        headers=[("AUTHORIZATION", "Bearer s3cret-Token"), ("COOKIE", "s3cret-Token")]
    )
    response = SimpleNamespace(status="206 Partial Content", headers=[], sent=4)
    atoms = logger.atoms(response, request, environ, datetime.timedelta(seconds=0))
    assert "s3cret" not in json.dumps(atoms)
    assert atoms["r"] == f"GET /uploads/a.mp4?x=1&access_token={REDACTED}&y=2 HTTP/1.1"
    assert atoms["q"] == f"x=1&access_token={REDACTED}&y=2"
    line = cfg.access_log_format % logger.atoms_wrapper_class(atoms)
    assert "s3cret" not in line and REDACTED in line
    from server.access_log import redact

    for spelled in ("access_token", "ACCESS_TOKEN", "access%5Ftoken", "%61ccess_token"):
        assert (
            redact(f"GET /p?{spelled}=s3cret HTTP/1.1") == f"GET /p?{spelled}={REDACTED} HTTP/1.1"
        )
    assert redact("GET /p?a=1&b=2 HTTP/1.1") == "GET /p?a=1&b=2 HTTP/1.1"


def test_gunicorn_uses_the_redacting_logger() -> None:
    import runpy

    conf = runpy.run_path(str(Path(__file__).parents[1] / "server" / "gunicorn.conf.py"))
    assert conf["logger_class"] == "server.access_log.RedactingLogger"
