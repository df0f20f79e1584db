"""Hostile requests: schemathesis fuzzing of the GraphQL schema, random stream bodies, and
hand-written attacks (depth, alias and token bombs, batches, oversized and deeply nested
bodies, path traversal, other clients' session ids, cross-site uploads, missing tokens).

The bar everywhere: no 5xx (but the documented 503 BUSY), no INTERNAL or uncoded error, no
traceback or server path in an answer or in the log, and the same worker process healthy at
the end. Bounded by example counts; ``-m slow`` runs more examples.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import KNOWN_CODES, assert_clean_error, files_under, upload, worker_pid
from schemathesis import GenerationMode
from schemathesis.graphql import nodes
from service import (
    ADD_POINTS,
    CANCEL,
    CLEAR_FRAME,
    CLEAR_VIDEO,
    CLOSE,
    MATTES,
    ORIGIN,
    REMOVE,
    SESSION,
    START,
    Server,
    launch,
    stop,
)

from sam2_matting.tiny import TinyModelFiles

# An Upload can only come as a multipart file; inline, the fuzzer sends null (refused).
schemathesis.graphql.scalar("Upload", st.just(nodes.Null))
SESSION_ARG = re.compile(r'sessionId: "(?:[^"\\]|\\.)*"')
HEADERS = {"Origin": ORIGIN}


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(tiny_model, shared_videos, tmp_path_factory.mktemp("fuzz"))
    s.worker = worker_pid(s)  # type: ignore[attr-defined]
    yield s
    healthy_after(s)
    stop(s)  # asserts the log holds no traceback


def healthy_after(s: Server) -> None:
    """The server answers, with the same worker (no crash, no restart)."""
    assert requests.get(f"{s.url}/healthy", timeout=10).text == "OK"
    assert worker_pid(s) == s.worker  # type: ignore[attr-defined]
    assert "Traceback" not in s.log_path.read_text()


def post(s: Server, body: Any, timeout: float = 60, **headers: str) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{s.url}/graphql",
        data=data,
        headers={**HEADERS, "Content-Type": "application/json", **headers},
        timeout=timeout,
    )


def check_answer(r: requests.Response) -> tuple[int, tuple[str, ...]]:
    """No 5xx; JSON answers carry only known codes, nothing internal leaks."""
    assert r.status_code < 500 or r.status_code == 503, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text and "/work/" not in r.text and "/tmp/" not in r.text
    codes: tuple[str, ...] = ()
    if r.headers.get("Content-Type", "").startswith("application/json"):
        body = r.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            codes = tuple(sorted({str(e.get("extensions", {}).get("code")) for e in errors}))
            assert set(codes) <= KNOWN_CODES, body
        elif isinstance(body, dict) and "error" in body:
            codes = (str(body["error"]["code"]),)
            assert set(codes) <= KNOWN_CODES, body
    return r.status_code, codes


# -- schemathesis ------------------------------------------------------------------------------


def _fuzz(server: Server, examples: int) -> Counter[tuple[int, tuple[str, ...]]]:
    schema = schemathesis.graphql.from_url(f"{server.url}/graphql", headers=HEADERS)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    # Half the cases name a live session, so the resolvers behind the id run too.
    sid = server.start("gallery/small.mp4")
    server.click(sid)
    seen: Counter[tuple[int, tuple[str, ...]]] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case: Any) -> None:
                query = str(case.body)
                if len(query) % 2:
                    query = SESSION_ARG.sub(f'sessionId: "{sid}"', query)
                seen[check_answer(post(server, {"query": query}))] += 1

            one()
    server.gql(CLOSE, {"input": {"sessionId": sid}})
    return seen


def test_schemathesis_finds_no_server_error(server: Server) -> None:
    started = time.monotonic()
    seen = _fuzz(server, examples=12)
    print(f"schemathesis: {sum(seen.values())} requests in {time.monotonic() - started:.1f} s")
    print(dict(seen))
    assert sum(seen.values()) > 300
    assert sum(n for (status, codes), n in seen.items() if not codes) > 20  # some succeed
    healthy_after(server)


@pytest.mark.slow
def test_schemathesis_long_run(server: Server) -> None:
    seen = _fuzz(server, examples=300)
    print(dict(seen), sum(seen.values()))
    healthy_after(server)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def test_random_stream_bodies_get_4xx_or_a_whole_stream(server: Server) -> None:
    sid = server.start("gallery/small.mp4")
    server.click(sid)
    fields = {
        "session_id": st.sampled_from([sid, "nope", "", sid + "x"]) | JSON_VALUES,
        "start_frame_index": st.integers(-5, 20) | JSON_VALUES,
        "direction": st.sampled_from(["forward", "backward", "both", "up"]) | JSON_VALUES,
        "max_frames": st.sampled_from([None, 1, 2, 0, -1]) | JSON_VALUES,
        "object_ids": st.sampled_from([None, [0], [0, 5]]) | JSON_VALUES,
    }
    bodies = st.fixed_dictionaries({}, optional=fields) | JSON_VALUES
    statuses: Counter[int] = Counter()

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(body=bodies, ndjson=st.booleans())
    def one(body: Any, ndjson: bool) -> None:
        headers = {"Content-Type": "application/json"}
        if ndjson:
            headers["Accept"] = "application/x-ndjson"
        r = requests.post(  # json.dumps writes NaN and Infinity too, as a sloppy client would
            f"{server.url}/propagate_in_video", data=json.dumps(body), headers=headers, timeout=60
        )
        status, _ = check_answer(r)
        statuses[status] += 1
        if status == 200:  # a stream, complete and well formed
            text = r.content
            if ndjson:
                assert json.loads(text.splitlines()[-1])["type"] == "end"
            else:
                from savi_stream import parse_savi_stream

                assert list(parse_savi_stream([text]))
        else:
            assert r.json()["error"]["code"] in KNOWN_CODES

    one()
    print(dict(statuses))
    assert statuses[200] > 0 and sum(statuses.values()) == 60
    server.gql(CLOSE, {"input": {"sessionId": sid}})


# -- hand-written attacks ----------------------------------------------------------------------


def _intro_bomb(levels: int) -> str:
    return (
        "{ __schema { types { "
        + "fields { type { ofType { " * levels
        + "name"
        + (" } } }" * levels)
        + " } } }"
    )


@pytest.mark.parametrize(
    ("name", "query", "code"),
    [
        ("introspection depth bomb", _intro_bomb(6), "LIMIT_EXCEEDED"),
        ("fragment cycle", "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
         "BAD_USER_INPUT"),
        ("alias bomb", "{ " + " ".join(f"a{i}: defaultVideo {{ path }}" for i in range(2000))
         + " }", "LIMIT_EXCEEDED"),
        ("token bomb", "{ defaultVideo { " + "path " * 200_000 + "} }", "LIMIT_EXCEEDED"),
        ("field duplication", "{ defaultVideo { " + "path " * 1500 + "} }", "LIMIT_EXCEEDED"),
        ("some duplication", "{ defaultVideo { " + "path " * 50 + "} }", None),
        ("unknown directive", "{ defaultVideo @boom { path } }", "BAD_USER_INPUT"),
        ("mutation alias bomb", "mutation { " + " ".join(
            f'a{i}: startSession(input: {{path: "gallery/small.mp4"}}) {{ sessionId }}'
            for i in range(40)) + " }", "LIMIT_EXCEEDED"),
    ],
)  # fmt: skip
def test_query_bombs_are_refused_fast(server: Server, name: str, query: str, code: str) -> None:
    started = time.monotonic()
    r = post(server, {"query": query})
    elapsed = time.monotonic() - started
    assert r.status_code == 200 and elapsed < 5, (name, elapsed)
    body = r.json()
    if code is None:  # allowed, but cheap and answered once
        assert body["data"]["defaultVideo"]["path"] == "gallery/bedroom.mp4"
    else:
        assert assert_clean_error(body) == code, (name, body)


def test_batches_oversized_and_nested_bodies(server: Server) -> None:
    batch = post(server, [{"query": "{ defaultVideo { path } }"}] * 50)
    assert batch.status_code == 400 and batch.json()["error"]["code"] == "BAD_USER_INPUT"
    assert "batched" in batch.json()["error"]["message"]
    # A body over the request limit (2 MiB) is refused before it is parsed.
    huge = {"query": "query Q($id: String!) { session(sessionId: $id) { sessionId } }",
            "variables": {"id": "x" * (3 * 1024 * 1024)}}  # fmt: skip
    started = time.monotonic()
    r = post(server, huge)
    assert r.status_code == 413 and r.json()["error"]["code"] == "LIMIT_EXCEEDED"
    assert time.monotonic() - started < 5
    # Under the limit: 100,000 points in the variables are refused by the resolver, in time.
    sid = server.start("gallery/small.mp4")
    n = 100_000
    inp = {"sessionId": sid, "frameIndex": 0, "clearOldPoints": True, "objectId": 1,
           "labels": [1] * n, "points": [[0.5, 0.5]] * n}  # fmt: skip
    started = time.monotonic()
    r = post(server, {"query": ADD_POINTS, "variables": {"input": inp}})
    assert assert_clean_error(r.json()) == "BAD_USER_INPUT" and "1000 points" in r.text
    assert time.monotonic() - started < 20
    # A long session id is not echoed back.
    r = post(server, {"query": SESSION, "variables": {"id": "y" * 1_000_000}})
    assert assert_clean_error(r.json()) == "NOT_FOUND" and len(r.content) < 1000
    # JSON nested 100,000 deep: a bad body, not a crash (RecursionError).
    nested = b'{"query": "{ defaultVideo { path } }", "variables": ' + b"[" * 100_000
    nested += b"]" * 100_000 + b"}"
    assert post(server, nested).status_code == 400
    r = requests.post(
        f"{server.url}/propagate_in_video",
        data=b"[" * 100_000 + b"]" * 100_000,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "BAD_USER_INPUT"
    # A chunked body (no Content-Length) is bounded too.
    chunks = (b"[" + b"0," * 50_000 for _ in range(60))  # about 6 MB
    r = requests.post(
        f"{server.url}/graphql",
        data=chunks,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert 400 <= r.status_code < 500
    assert post(server, b'{"query": ').status_code == 400
    server.gql(CLOSE, {"input": {"sessionId": sid}})
    healthy_after(server)


TRAVERSALS = [
    "../../etc/passwd", "/etc/passwd", "gallery/../../etc/passwd", "gallery/../data/x.mp4",
    "gallery/./bedroom.mp4", "gallery//bedroom.mp4", "gallery\\..\\..\\etc\\passwd",
    "gallery/bedroom.mp4\x00.jpg", "gallery/%2e%2e/%2e%2e/etc/passwd", "uploads/../../x.mp4",
    "uploads/" + "0" * 64 + ".mp4/../../x", "file:///etc/passwd", "http://127.0.0.1/x.mp4",
    "gallery/" + "a" * 5000, "~/.ssh/id_rsa", "gallery/\u2025/\u2025/etc/passwd", "",
    "gallery/", "posters/x.jpg", "data/uploads/x.mp4",
]  # fmt: skip


def test_path_traversal_in_every_video_name(server: Server, tmp_path: Path) -> None:
    before = files_under(server.data)
    for path in TRAVERSALS:
        body = server.gql(START, {"input": {"path": path}})
        assert assert_clean_error(body) in {"BAD_USER_INPUT", "NOT_FOUND"}, path
    sid = server.start("gallery/small.mp4")
    server.click(sid)
    list(server.stream({"session_id": sid, "direction": "forward", "max_frames": 2}).iter_content())
    export = """mutation E($input: ExportMatteInput!) { exportMatte(input: $input) { id } }"""
    for path in TRAVERSALS:
        body = server.gql(
            export, {"input": {"sessionId": sid, "format": "composite", "background": path}}
        )
        assert assert_clean_error(body) in {"BAD_USER_INPUT", "NOT_FOUND"}, path
    # An upload's file name is only logged: the stored name is the content hash.
    clip = (Path(__file__).parent / "fixtures" / "hostile" / "valid.mp4").read_bytes()
    for name in ["../../../../tmp/evil.mp4", "/etc/cron.d/x", "..\\..\\x.mp4", "a\x00b.mp4"]:
        video = upload(server, name, clip).json()["data"]["uploadVideo"]
        assert re.fullmatch(r"uploads/[0-9a-f]{64}\.mp4", video["path"])
    for route in [
        "/gallery/..%2f..%2fetc%2fpasswd", "/gallery/../../etc/passwd", "/gallery/%2e%2e/x",
        "/uploads/..%2F..%2Fetc%2Fpasswd", "/posters/..%2f..%2fx.jpg", "/posters/.poster-x.jpg",
        "/exports/" + "a" * 32 + "/..%2f..%2fx", "/exports/..%2f/x", "/gallery/small.mp4%00.jpg",
        "/gallery/%00", "/uploads/" + "0" * 64 + ".mp4", "/gallery/" + "b" * 3000,
    ]:  # fmt: skip
        r = requests.get(server.url + route, timeout=10)
        assert r.status_code in (404, 414), (route, r.status_code)
        assert b"root:" not in r.content
    after = files_under(server.data)
    new = [p for p in after if p not in before]
    # The stored video, its poster and its source record (the sent bytes' sha256), each named
    # by the content hash; nothing anywhere else.
    assert all(p.parent.name in ("uploads", "posters", "sources") for p in new), new
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.name) for p in new if p.parent.name == "sources")
    assert not (Path("/tmp") / "evil.mp4").exists()
    server.gql(CLOSE, {"input": {"sessionId": sid}})


def test_cross_site_uploads_and_posts_are_refused(server: Server) -> None:
    clip = (Path(__file__).parent / "fixtures" / "hostile" / "valid.mp4").read_bytes()
    for origin in ["http://evil.example", "null", "http://localhost:7262.evil.example"]:
        r = upload(server, "x.mp4", clip, headers={"Origin": origin})
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
        r = requests.post(
            f"{server.url}/graphql",
            data='{"query": "{ defaultVideo { path } }"}',
            headers={"Origin": origin, "Content-Type": "text/plain"},
            timeout=10,
        )
        assert r.status_code == 403
        r = requests.post(
            f"{server.url}/propagate_in_video",
            data={"session_id": "x"},
            headers={"Origin": origin},
            timeout=10,
        )
        assert r.status_code == 403
    # A non-browser client sends no Origin: nothing to forge, so it is served.
    ops = json.dumps({"query": "mutation U($f: Upload!) { uploadVideo(file: $f) { path } }",
                      "variables": {"f": None}})  # fmt: skip
    r = requests.post(
        f"{server.url}/graphql",
        data={"operations": ops, "map": json.dumps({"f": ["variables.f"]})},
        files={"f": ("x.mp4", clip, "video/mp4")},
        timeout=60,
    )
    assert r.json()["data"]["uploadVideo"]["path"].startswith("uploads/")


# -- authentication and per-client sessions --------------------------------------------------

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-9876543210"}


@pytest.fixture(scope="module")
def auth_server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tokens = ",".join(f"{name}:{token}" for name, token in TOKENS.items())
    s = launch(
        tiny_model,
        shared_videos,
        tmp_path_factory.mktemp("auth"),
        API_TOKENS=tokens,
        SAM2_MATTING_PRODUCTION="1",
    )
    yield s
    stop(s)


def as_client(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def test_every_route_needs_the_token(auth_server: Server) -> None:
    s = auth_server
    routes = [
        ("POST", "/graphql"), ("GET", "/graphql"), ("POST", "/propagate_in_video"),
        ("GET", "/gallery/bedroom.mp4"), ("GET", "/uploads/" + "0" * 64 + ".mp4"),
        ("GET", "/posters/x.jpg"), ("GET", "/exports/" + "a" * 32 + "/x.zip"),
        ("GET", "/nosuchroute"),
    ]  # fmt: skip
    for method, path in routes:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer "},
            {"Authorization": f"Basic {TOKENS['alice']}"},
            {"Authorization": f"Bearer {TOKENS['alice']}x"},
            {"Authorization": f"Bearer {TOKENS['alice'][:-1]}"},
        ):
            r = requests.request(method, s.url + path, headers=headers, json={}, timeout=10)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.json()["error"]["code"] == "UNAUTHENTICATED"
    for probe in ("/healthy", "/ready", "/metrics"):
        assert requests.get(s.url + probe, timeout=10).status_code == 200
    ok = s.gql("{ defaultVideo { path } }", headers=as_client("bob"))
    assert ok["data"]["defaultVideo"]["path"] == "gallery/bedroom.mp4"
    r = requests.get(
        f"{s.url}/gallery/small.mp4", params={"access_token": TOKENS["bob"]}, timeout=10
    )
    assert r.status_code == 200
    # Not on a POST; and gunicorn's access log never holds the token (server.access_log).
    r = requests.post(
        f"{s.url}/graphql",
        params={"access_token": TOKENS["bob"]},
        json={"query": "{ defaultVideo { path } }"},
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
    deadline = time.monotonic() + 5
    while "access_token=[redacted]" not in s.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = s.log_path.read_text()
    assert "GET /gallery/small.mp4?access_token=[redacted]" in log
    assert all(token not in log for token in TOKENS.values())


def test_another_clients_session_is_not_found(auth_server: Server) -> None:
    s = auth_server
    alice, bob = as_client("alice"), as_client("bob")

    def gql(who: dict[str, str], query: str, variables: dict[str, Any]) -> Any:
        return s.gql(query, variables, headers=who)

    sid = gql(alice, START, {"input": {"path": "gallery/small.mp4"}})["data"]["startSession"][
        "sessionId"
    ]
    click = {"sessionId": sid, "frameIndex": 0, "clearOldPoints": True, "objectId": 1,
             "labels": [1], "points": [[0.5, 0.5]]}  # fmt: skip
    assert "errors" not in gql(alice, ADD_POINTS, {"input": click})
    r = requests.post(
        f"{s.url}/propagate_in_video",
        json={"session_id": sid, "direction": "forward", "max_frames": 2},
        headers={**alice, "Accept": "application/x-ndjson"},
        timeout=60,
    )
    assert json.loads(r.content.splitlines()[-1])["frames"] == 2
    export = """mutation E($input: ExportMatteInput!) { exportMatte(input: $input) { id } }"""
    job = gql(alice, export, {"input": {"sessionId": sid, "format": "alpha"}})
    job_id = job["data"]["exportMatte"]["id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    attacks = [
        (SESSION, lambda i: {"id": i}),
        (MATTES, lambda i: {"id": i, "f": [0]}),
        (ADD_POINTS, lambda i: {"input": {**click, "sessionId": i}}),
        (CLEAR_FRAME, lambda i: {"input": {"sessionId": i, "frameIndex": 0, "objectId": 1}}),
        (CLEAR_VIDEO, lambda i: {"input": {"sessionId": i}}),
        (REMOVE, lambda i: {"input": {"sessionId": i, "objectId": 1}}),
        (CANCEL, lambda i: {"input": {"sessionId": i}}),
        (export, lambda i: {"input": {"sessionId": i, "format": "alpha"}}),
    ]
    for query, variables in attacks:
        theirs = gql(bob, query, variables(sid))
        nobody = gql(bob, query, variables(unknown))
        assert assert_clean_error(theirs) == "NOT_FOUND", query
        # Word for word the answer for an id that does not exist: no existence leak.
        assert (
            theirs["errors"][0]["message"].replace(sid, unknown) == nobody["errors"][0]["message"]
        ), query
    assert gql(bob, CLOSE, {"input": {"sessionId": sid}})["data"]["closeSession"] == {
        "success": False
    }
    r = requests.post(
        f"{s.url}/propagate_in_video", json={"session_id": sid}, headers=bob, timeout=30
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    job_query = "query J($id: String!) { exportJob(id: $id) { status url } }"
    assert assert_clean_error(gql(bob, job_query, {"id": job_id})) == "NOT_FOUND"
    cancel_export = "mutation C($i: CancelExportInput!) { cancelExport(input: $i) { status } }"
    assert assert_clean_error(gql(bob, cancel_export, {"i": {"jobId": job_id}})) == "NOT_FOUND"
    deadline = time.monotonic() + 60
    while True:
        mine = gql(alice, job_query, {"id": job_id})["data"]["exportJob"]
        if mine["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine["status"] == "done"
    assert requests.get(mine["url"], headers=bob, timeout=30).status_code == 404
    assert requests.get(mine["url"], headers=alice, timeout=30).status_code == 200
    # Alice's session went through all that untouched.
    info = gql(alice, SESSION, {"id": sid})["data"]["session"]
    assert info["objects"] == [{"objectId": 1, "promptedFrames": [0]}]
    assert info["propagatedFrames"] == [0, 1]
    assert gql(alice, CLOSE, {"input": {"sessionId": sid}})["data"]["closeSession"]["success"]
