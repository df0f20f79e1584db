"""``/graphql``: Strawberry's Flask view, with every malformed request answered as JSON.

    view = MattingGraphQLView.as_view("graphql", services=services, schema=schema, ...)

Strawberry answers a body it cannot use with a plain-text 400 (or, for some, a 500); here every
such body gets the service's error shape ``{"error": {"code": "BAD_USER_INPUT", "message"}}``
with HTTP 400, before any resolver runs:

- the JSON body must be one operation, a JSON object (``[...]`` batches are not supported), with
  a string ``query``; ``variables`` and ``extensions`` objects, ``operationName`` a string;
- a multipart upload (the GraphQL multipart request spec) must have an ``operations`` part (one
  operation, as above) and a ``map`` part, a JSON object from file part names to non-empty lists
  of ``variables.…`` paths; each file part named must be present, and each path must lead to a
  ``null`` placeholder in the operation's variables (a list index must exist).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cross_web import HTTPException as StrawberryHTTPException
from flask import g, request
from strawberry.flask.views import GraphQLView

from sam2_matting.errors import InvalidInputError, MattingError
from server.errors import BAD_USER_INPUT, code_for_status, error_response, json_error
from server.schema_context import AppContext

MAX_FILE_PATHS = 16  # paths in a multipart map; the schema takes one file per operation


class MattingGraphQLView(GraphQLView):
    """Strawberry's Flask view with the app's services as the resolver context."""

    def __init__(self, services: AppContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services = services

    def dispatch_request(self) -> Any:
        try:
            return self.run(request=request)
        except StrawberryHTTPException as err:  # Strawberry's own refusals (plain text there)
            return json_error(code_for_status(err.status_code), err.reason, err.status_code)
        except MattingError as err:  # the checks below
            return error_response(err)
        except UnicodeDecodeError:  # Strawberry decodes the body before parsing it
            return json_error(BAD_USER_INPUT, "the request body is not UTF-8 text", 400)

    def decode_json(self, data: str | bytes) -> object:
        try:
            return super().decode_json(data)
        except RecursionError:  # a body nested thousands deep: a bad body (400), not a crash
            raise json.JSONDecodeError("nested too deeply", "", 0) from None
        except UnicodeDecodeError:  # bytes that are not UTF-8 (or -16, -32)
            raise json.JSONDecodeError("not UTF-8", "", 0) from None

    def parse_json(self, data: str | bytes) -> Any:
        """Every JSON document Strawberry reads (the body, ``operations``, ``map``) is an object."""
        return check_object(super().parse_json(data))

    def parse_multipart(self, request: Any) -> dict[str, str]:
        form, files = request.post_data, request.files
        check_multipart(form, files, super().decode_json)
        return super().parse_multipart(request)

    def get_context(self, request: Any, response: Any) -> AppContext:  # type: ignore[override]
        s = self.services
        # Media URLs are absolute: the stock UI runs on another origin than the API.
        base_url = s.base_url or request.host_url.rstrip("/")
        return AppContext(
            s.settings,
            s.store,
            s.library,
            base_url,
            s.exports,
            request,
            response,
            principal=g.get("principal"),
            uploads=s.uploads,
        )


def check_object(data: Any) -> dict[str, Any]:
    """``data`` if it is a JSON object (one operation); InvalidInputError if not."""
    if isinstance(data, list):
        raise InvalidInputError("batched operations are not supported: send one JSON object")
    if not isinstance(data, dict):
        raise InvalidInputError(
            'send one GraphQL operation as a JSON object: {"query": "...", "variables": {...}}'
        )
    return data


def check_multipart(form: Mapping[str, str], files: Mapping[str, Any], decode: Any) -> None:
    """InvalidInputError unless ``form`` and ``files`` are a well-formed multipart operation."""
    operations = check_object(_json_part(form, "operations", decode))
    if not isinstance(operations.get("query"), str):
        raise InvalidInputError("the operations part has no query (a string)")
    files_map = _json_part(form, "map", decode)
    if not isinstance(files_map, dict) or not files_map:
        raise InvalidInputError(
            'the map part must be a non-empty JSON object: {"0": ["variables.file"]}'
        )
    count = 0
    for name, paths in files_map.items():
        if name not in files:
            raise InvalidInputError(f"the map names a file part {name[:64]!r} that was not sent")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise InvalidInputError(
                f"the map entry {name[:64]!r} must be a non-empty list of paths"
            )
        for path in paths:
            count += 1
            if count > MAX_FILE_PATHS:
                raise InvalidInputError(f"the map has over {MAX_FILE_PATHS} paths")
            _check_placeholder(operations, path)


def _json_part(form: Mapping[str, str], name: str, decode: Any) -> Any:
    raw = form.get(name)
    if raw is None:
        raise InvalidInputError(f"a multipart GraphQL request needs the {name!r} part")
    try:
        return decode(raw)
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError):
        raise InvalidInputError(f"the {name} part is not valid JSON") from None


def _check_placeholder(operations: dict[str, Any], path: str) -> None:
    """The map path must lead, through objects and list indices, to a null variable."""
    keys = path.split(".")
    shown = path[:100]
    if len(keys) < 2 or keys[0] != "variables":
        raise InvalidInputError(f"the map path {shown!r} must start with 'variables.'")
    node: Any = operations
    for depth, key in enumerate(keys):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            where = ".".join(keys[:depth]) or "the operation"
            raise InvalidInputError(f"the map path {shown!r}: {where} has no {key[:40]!r}")
    if node is not None:
        raise InvalidInputError(
            f"the map path {shown!r} must lead to null in the operation's variables"
        )
