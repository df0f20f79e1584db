"""The one error table: every ``MattingError`` subclass and every HTTP error the app can give,
checked for its (code, HTTP status, body shape), on the real app (tiny model, Flask test client)
and through GraphQL. A new error class is covered as soon as it exists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import strawberry
from flask import Flask, abort
from flask.testing import FlaskClient
from werkzeug.exceptions import HTTPException, default_exceptions

from sam2_matting import errors as table
from sam2_matting.errors import MattingError
from server.errors import CodedErrors, guarded, http_code

CODE = re.compile(r"[A-Z][A-Z0-9_]*")


def _subclasses(cls: type[MattingError]) -> Iterator[type[MattingError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


# Every class, however deep; sorted so test ids are stable. Imported modules may add classes
# (e.g. the server's own): the walk finds them too.
ERROR_CLASSES = sorted(set(_subclasses(MattingError)), key=lambda c: c.__qualname__)
HTTP_STATUSES = sorted(code for code in default_exceptions if code >= 400)


@pytest.fixture(scope="module")
def app(app: Flask) -> Flask:
    """The shared app (conftest) plus a route that raises what it is told to."""
    by_name = {cls.__qualname__: cls for cls in ERROR_CLASSES}

    def raising(kind: str, name: str) -> Any:  # a route that raises what it is told to
        if kind == "matting":
            raise by_name[name](f"{name} raised on purpose")
        if kind == "http":
            abort(int(name))
        raise RuntimeError("a bug at /srv/secret/path.py")

    app.add_url_rule("/_raise/<kind>/<name>", "raise", raising)
    return app


def _error_body(response: Any) -> dict[str, str]:
    """The one JSON error shape: {"error": {"code": CODE, "message": str}}, nothing else."""
    assert response.mimetype == "application/json", (response.status, response.data[:200])
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert CODE.fullmatch(body["error"]["code"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert "Traceback" not in response.get_data(as_text=True)
    return dict(body["error"])


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__qualname__)
def test_each_class_declares_a_code_status_and_exit_code(cls: type[MattingError]) -> None:
    assert CODE.fullmatch(cls.code), cls.code
    assert 400 <= cls.http_status < 600
    assert isinstance(cls.exit_code, int) and cls.exit_code != 0
    assert cls.public or cls.public_message


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__qualname__)
def test_each_class_over_http(client: FlaskClient, cls: type[MattingError]) -> None:
    response = client.get(f"/_raise/matting/{cls.__qualname__}")
    assert response.status_code == cls.http_status
    error = _error_body(response)
    assert error["code"] == cls.code
    expected = f"{cls.__qualname__} raised on purpose" if cls.public else cls.public_message
    assert error["message"] == expected


def test_the_table_keeps_what_clients_rely_on() -> None:
    """The codes and statuses clients and the docs already use."""
    assert (table.InvalidInputError.code, table.InvalidInputError.http_status) == (
        "BAD_USER_INPUT",
        400,
    )
    assert table.VideoError.code == table.FrameIndexError.code == "BAD_USER_INPUT"
    assert (table.NotFoundError.code, table.NotFoundError.http_status) == ("NOT_FOUND", 404)
    assert (table.LimitExceededError.code, table.LimitExceededError.http_status) == (
        "LIMIT_EXCEEDED",
        413,
    )
    assert (table.BusyError.code, table.BusyError.http_status) == ("BUSY", 503)
    assert (table.CancelledError.code, table.CancelledError.http_status) == ("CANCELLED", 409)
    # The server's own problems: 5xx, but each with its code, never INTERNAL.
    assert table.CheckpointError.http_status >= 500 and table.CheckpointError.code != "INTERNAL"
    assert table.DownloadError.http_status >= 500 and table.DownloadError.code != "INTERNAL"


@strawberry.type
class _Query:
    @strawberry.field
    @guarded
    def guarded_error(self, name: str) -> str:
        raise {c.__qualname__: c for c in ERROR_CLASSES}[name](f"{name} in a resolver")

    @strawberry.field
    def plain_error(self, name: str) -> str:  # no decorator: CodedErrors alone
        raise {c.__qualname__: c for c in ERROR_CLASSES}[name](f"{name} in a resolver")


_SCHEMA = strawberry.Schema(query=_Query, extensions=[CodedErrors])


@pytest.mark.parametrize("field", ["guardedError", "plainError"])
@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__qualname__)
def test_each_class_over_graphql(cls: type[MattingError], field: str) -> None:
    result = _SCHEMA.execute_sync(f'{{ {field}(name: "{cls.__qualname__}") }}')
    assert result.errors and len(result.errors) == 1
    error = result.errors[0]
    assert error.extensions == {"code": cls.code}
    expected = f"{cls.__qualname__} in a resolver" if cls.public else cls.public_message
    assert error.message == expected


def test_a_bug_is_internal_and_masked(client: FlaskClient) -> None:
    response = client.get("/_raise/bug/x")
    assert response.status_code == 500
    assert _error_body(response) == {"code": "INTERNAL", "message": "internal server error"}
    result = _SCHEMA.execute_sync('{ plainError(name: "nope") }')  # a KeyError in the resolver
    assert result.errors and result.errors[0].extensions == {"code": "INTERNAL"}
    assert "nope" not in result.errors[0].message


@pytest.mark.parametrize("status", HTTP_STATUSES)
def test_each_werkzeug_error_keeps_its_status(client: FlaskClient, status: int) -> None:
    response = client.get(f"/_raise/http/{status}")
    assert response.status_code == status
    error = _error_body(response)
    assert error["code"] == http_code(default_exceptions[status]())


def test_house_codes_for_http_errors() -> None:
    assert http_code(default_exceptions[404]()) == "NOT_FOUND"
    assert http_code(default_exceptions[405]()) == "METHOD_NOT_ALLOWED"
    assert http_code(default_exceptions[400]()) == "BAD_USER_INPUT"
    assert http_code(default_exceptions[413]()) == "LIMIT_EXCEEDED"
    assert http_code(default_exceptions[415]()) == "BAD_USER_INPUT"


def test_every_registered_handler_answers_json(app: Flask, client: FlaskClient) -> None:
    """Whatever handlers the app registers (by status or by class), each answers the shape."""
    trigger = {
        HTTPException: "/_raise/http/418",
        MattingError: "/_raise/matting/NotFoundError",
        Exception: "/_raise/bug/x",
    }
    seen = 0
    for blueprint, by_code in app.error_handler_spec.items():
        for status, by_class in by_code.items():
            for exc_class in by_class:
                if status is not None:
                    url = f"/_raise/http/{status}"
                else:
                    url = next(u for c, u in trigger.items() if issubclass(exc_class, c))
                response = client.get(url)
                assert response.status_code >= 400, (blueprint, status, exc_class)
                _error_body(response)
                seen += 1
    assert seen >= 3


def _urls(app: Flask) -> list[tuple[str, str, set[str]]]:
    """(blueprint, URL with made-up arguments, methods) of every route but the test's own."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "raise":
            continue
        blueprint = rule.endpoint.rpartition(".")[0] or "app"
        out.append(
            (blueprint, re.sub(r"<[^>]+>", "no-such-thing", rule.rule), rule.methods or set())
        )
    return out


def test_405_on_every_route_of_every_blueprint(app: Flask, client: FlaskClient) -> None:
    blueprints = set()
    for blueprint, url, methods in _urls(app):
        assert "DELETE" not in methods
        response = client.delete(url)
        assert response.status_code == 405, (url, response.status)
        assert _error_body(response)["code"] == "METHOD_NOT_ALLOWED"
        assert response.headers["Allow"]  # the methods that are allowed
        blueprints.add(blueprint)
    assert {"media", "exports", "page", "app"} <= blueprints


def test_404_on_every_blueprint(app: Flask, client: FlaskClient) -> None:
    blueprints = set()
    for blueprint, url, methods in _urls(app):
        if "no-such-thing" not in url or "GET" not in methods:
            continue
        response = client.get(url)
        assert response.status_code == 404, (url, response.status)
        error = _error_body(response)
        assert error["code"] == "NOT_FOUND" and "no-such-thing" in error["message"]
        blueprints.add(blueprint)
    for url in ("/no/such/route", f"/uploads/{'0' * 64}.mp4", f"/exports/{'0' * 32}/a.zip"):
        response = client.get(url)
        assert response.status_code == 404 and _error_body(response)["code"] == "NOT_FOUND"
    assert {"media", "exports", "page"} <= blueprints


def test_the_tests_see_every_class() -> None:
    """The walk is recursive: a class defined now, two levels down, is found."""

    class Deeper(table.VideoError):
        code = "DEEPER"

    assert Deeper in set(_subclasses(MattingError))
