"""The one place where sam2-matting errors become GraphQL codes and HTTP statuses.

Clients see a message and a code; the server log gets the full error. Anything that is not a
:class:`~sam2_matting.errors.MattingError` is masked as ``INTERNAL``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from sam2_matting.errors import (
    BusyError,
    InvalidInputError,
    LimitExceededError,
    MattingError,
    NotFoundError,
    SessionBusyError,
)

log = logging.getLogger(__name__)

BAD_USER_INPUT = "BAD_USER_INPUT"
NOT_FOUND = "NOT_FOUND"
BUSY = "BUSY"
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
INTERNAL = "INTERNAL"
SHUTTING_DOWN = "SHUTTING_DOWN"  # a stream's final part when the server stops under it

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
    """The client-facing code of an error (``INTERNAL`` for anything unexpected)."""
    if isinstance(err, LimitExceededError):
        return LIMIT_EXCEEDED
    if isinstance(err, NotFoundError):
        return NOT_FOUND
    if isinstance(err, BusyError | SessionBusyError):
        return BUSY
    if isinstance(err, InvalidInputError):
        return BAD_USER_INPUT
    return INTERNAL


def http_status(code: str) -> int:
    return {
        BAD_USER_INPUT: 400,
        NOT_FOUND: 404,
        BUSY: 503,
        LIMIT_EXCEEDED: 413,
        UNAUTHENTICATED: 401,
        FORBIDDEN: 403,
    }.get(code, 500)


def client_error(err: BaseException) -> tuple[str, str]:
    """(code, message) safe to show a client; logs unexpected errors in full."""
    if isinstance(err, MattingError) and error_code(err) != INTERNAL:
        return error_code(err), str(err)
    log.error("internal error", exc_info=err)
    return INTERNAL, "internal server error"


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
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MattingError as err:
            code, message = client_error(err)
            raise GraphQLError(message, extensions={"code": code}) from err

    return wrapper
