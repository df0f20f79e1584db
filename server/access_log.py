"""gunicorn's access log without secrets (``logger_class`` in ``server/gunicorn.conf.py``).

A media URL may carry the API token as ``?access_token=`` (a ``<video>`` cannot send a
header); gunicorn would write the request line, query string and referrer to its access log
as they came. Here the token's value becomes ``[redacted]`` in every atom (the request line,
query string, referrer, ``{…}e`` environ atoms), and the ``Authorization`` and ``Cookie``
header atoms (for a custom ``access_log_format``) are redacted whole:

    GET /uploads/<hash>.mp4?access_token=[redacted] HTTP/1.1
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
_PARAM = re.compile(r"(^|[?&;])([^=&;?\s\"]+)=([^&;\s\"]*)")
_SECRET_HEADERS = ("{authorization}i", "{cookie}i", "{proxy-authorization}i")


def redact(text: str) -> str:
    """``text`` with the value of every ``access_token`` query parameter replaced, however
    its name is spelled (``access%5Ftoken`` is the same parameter to the app)."""

    def one(match: re.Match[str]) -> str:
        start, name, _ = match.groups()
        if unquote_plus(name).lower() != "access_token":
            return match.group(0)
        return f"{start}{name}={REDACTED}"

    return _PARAM.sub(one, text)


class RedactingLogger(Logger):
    """gunicorn's logger, with tokens taken out of the access log's atoms."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if isinstance(value, str) and "=" in value:
                atoms[key] = redact(value)
        for key in _SECRET_HEADERS:
            if key in atoms:
                atoms[key] = REDACTED
        return atoms
