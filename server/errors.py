"""The one place where errors become GraphQL errors and HTTP answers.

The error table is the classes in :mod:`sam2_matting.errors`: each declares its client-facing
``code``, its ``http_status`` and whether its message may be shown (``public``). This module
reads those attributes and keeps no table of its own:

    code, message = client_error(err)       # for a GraphQL error or a stream's error part
    return error_response(err)              # a Flask answer for any exception
    return json_error(FORBIDDEN, "origin … is not allowed", 403)

Every HTTP error body has one shape, ``{"error": {"code": str, "message": str}}``, with the
error's status. Besides the classes' codes:

- the HTTP layer's own: ``UNAUTHENTICATED`` 401, ``FORBIDDEN`` 403 (origin), and werkzeug's
  ``HTTPException``\\ s, which keep their status and get a code from their name
  (``NOT_FOUND`` 404, ``METHOD_NOT_ALLOWED`` 405, …) except 400 and 415 (``BAD_USER_INPUT``), 413
  (``LIMIT_EXCEEDED``) and 416 (``RANGE_NOT_SATISFIABLE``);
- ``INTERNAL`` 500: anything that is not a ``MattingError`` (a bug), logged in full, masked;
- ``SHUTTING_DOWN``: a stream's final part when the server stops under it.

A ``MattingError`` that is not ``public`` (the server's own set-up failed: ``BAD_CHECKPOINT``,
``DOWNLOAD_FAILED``) keeps its code and status, shows its class's ``public_message`` and is
logged in full.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from werkzeug.exceptions import HTTPException, default_exceptions

from sam2_matting.errors import MattingError

log = logging.getLogger(__name__)

BAD_USER_INPUT = "BAD_USER_INPUT"
NOT_FOUND = "NOT_FOUND"
BUSY = "BUSY"
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
INTERNAL = "INTERNAL"
SHUTTING_DOWN = "SHUTTING_DOWN"  # a stream's final part when the server stops under it

# werkzeug statuses whose code is the house's word rather than werkzeug's name.
_HTTP_CODES = {
    400: BAD_USER_INPUT,
    413: LIMIT_EXCEEDED,
    415: BAD_USER_INPUT,
    416: "RANGE_NOT_SATISFIABLE",
}
# Headers of a werkzeug error that the JSON answer keeps (405's Allow, 416's Content-Range).
_KEPT_HEADERS = {"allow", "content-range", "retry-after", "www-authenticate"}

_LIMIT_WORDS = (
    "exceeds maximum",
    "max tokens",
    "parsing aborted",  # "Document contains more than 2000 tokens. Parsing aborted."
    "maximum operation depth",
    "maximum introspection depth",
    "aliases",
    "validation aborted",  # graphql-core's work budget (e.g. 1,500 copies of one field)
)


def error_code(err: BaseException) -> str:
    """The client-facing code of an error: its class's ``code``, ``INTERNAL`` for a bug."""
    return err.code if isinstance(err, MattingError) else INTERNAL


def error_status(err: BaseException) -> int:
    """The HTTP status of an error: its class's ``http_status``, 500 for a bug."""
    return err.http_status if isinstance(err, MattingError) else 500


def client_error(err: BaseException) -> tuple[str, str]:
    """(code, message) safe to show a client; logs server-side and unexpected errors in full."""
    if isinstance(err, MattingError):
        if err.public:
            return err.code, str(err)
        log.error("%s: %s", err.code, err, exc_info=err)
        return err.code, err.public_message
    log.error("internal error", exc_info=err)
    return INTERNAL, "internal server error"


def json_error(code: str, message: str, status: int) -> Response:
    """The one HTTP error answer: ``{"error": {"code", "message"}}`` with ``status``."""
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, mimetype="application/json")


def not_found() -> Response:
    """The 404 of every route: a name no route, file or record answers to."""
    return json_error(NOT_FOUND, f"no such resource: {request.path[:200]}", 404)


def http_code(err: HTTPException) -> str:
    """The code of a werkzeug HTTP error: ``Method Not Allowed`` -> ``METHOD_NOT_ALLOWED``."""
    status = err.code or 500
    return _HTTP_CODES.get(status) or re.sub(r"[^A-Z0-9]+", "_", err.name.upper()).strip("_")


def code_for_status(status: int) -> str:
    """The code of a bare HTTP status, as for werkzeug's error of that status."""
    known = default_exceptions.get(status)
    return http_code(known()) if known is not None else _HTTP_CODES.get(status, INTERNAL)


def http_error_response(err: HTTPException, message: str | None = None) -> Response:
    """A werkzeug HTTP error as JSON, with its own status and its Allow/Content-Range."""
    response = json_error(http_code(err), message or err.description or err.name, err.code or 500)
    for name, value in err.get_headers():
        if name.lower() in _KEPT_HEADERS:
            response.headers[name] = value
    return response


def error_response(err: BaseException) -> Response:
    """The HTTP answer for any exception (an ``HTTPException``, a ``MattingError``, a bug)."""
    if isinstance(err, HTTPException):
        return http_error_response(err)
    if not isinstance(err, MattingError):
        log.error("unhandled error on %s", request.path, exc_info=err)
    code, message = client_error(err)
    return json_error(code, message, error_status(err))


def init_app(app: Flask, messages: dict[int, Callable[[HTTPException], str]] | None = None) -> None:
    """Answer every error on ``app`` (and its blueprints) with the JSON shape above.

    ``messages`` gives a werkzeug status a message of the app's own (e.g. which size limit a
    413 hit); the code and status stay the error's.
    """
    custom = dict(messages or {})

    def on_http_error(err: HTTPException) -> Response:
        describe = custom.get(err.code or 0)
        return http_error_response(err, describe(err) if describe else None)

    app.register_error_handler(HTTPException, on_http_error)
    app.register_error_handler(MattingError, error_response)
    app.register_error_handler(Exception, error_response)


class CodedErrors(MaskErrors):
    """Give every GraphQL error a code; mask unexpected ones (logged in full)."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda e: True)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._coded(e) for e in errors]

    def _coded(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if original is None:
            # Parse, validation and limiter errors: the client's query is at fault.
            text = error.message.lower()
            code = LIMIT_EXCEEDED if any(w in text for w in _LIMIT_WORDS) else BAD_USER_INPUT
            return _with(error, error.message, code)
        if isinstance(original, GraphQLError) and (original.extensions or {}).get("code"):
            return _with(error, original.message, str((original.extensions or {})["code"]))
        if isinstance(original, GraphQLError) and error.path is None:
            # Raised while coercing the request's variables (a string for an Int, null for a
            # non-null, a file where a string goes): the client's, before any resolver ran.
            return _with(error, error.message, BAD_USER_INPUT)
        code, message = client_error(original)
        return _with(error, message, code)


def _with(error: GraphQLError, message: str, code: str) -> GraphQLError:
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={"code": code},
    )


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Resolver decorator: a MattingError becomes a coded GraphQL error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MattingError as err:
            code, message = client_error(err)
            raise GraphQLError(message, extensions={"code": code}) from err

    return wrapper
