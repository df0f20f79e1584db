"""HTTP Range requests on the media and export downloads, as RFC 9110 (section 14) says.

    ignore_unusable_range(request.environ)   # before send_file(..., conditional=True)

werkzeug answers 206 for one satisfiable byte range and 416 (JSON, with ``Content-Range:
bytes */<length>``, see ``server.errors``) for one it cannot satisfy (``bytes=999999999-``,
``bytes=-0``). A Range header the server must or may ignore is dropped here, so the whole file
comes back with 200 (werkzeug would answer 416):

- a unit other than ``bytes`` (``chars=0-10``): a server MUST ignore it;
- a syntactically invalid one (``bytes=abc``, ``bytes=5-2``, ``bytes=-``): it MAY;
- several ranges (``bytes=0-1,5-6``): it MAY; multipart/byteranges answers are not made.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

_ONE_RANGE = re.compile(r"(\d*)[ \t]*-[ \t]*(\d*)")


def usable_range(header: str) -> bool:
    """Whether ``header`` is one byte range that werkzeug should act on (206 or 416)."""
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes":
        return False
    parts = spec.split(",")
    if len(parts) != 1:
        return False
    match = _ONE_RANGE.fullmatch(parts[0].strip(" \t"))
    if match is None:
        return False
    first, last = match.groups()
    if not first and not last:
        return False
    return not (first and last and int(first) > int(last))


def ignore_unusable_range(environ: MutableMapping[str, Any]) -> None:
    """Drop a Range header that HTTP says to ignore, so the whole file is sent (200)."""
    header = environ.get("HTTP_RANGE")
    if header is not None and not usable_range(str(header)):
        del environ["HTTP_RANGE"]
