"""A parser of ``multipart/x-savi-stream`` as strict as the SAM 2 demo frontend's.

It skips blank CRLF lines before a boundary, requires ``--frame\\r\\n`` exactly (a closing
``--frame--`` is an error, as in the frontend), requires ``Name: value`` header lines and a
``Content-Length`` on every part, reads exactly that many body bytes, and fails on a stream
that ends in the middle of a part.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class StreamFormatError(Exception):
    pass


@dataclass
class Part:
    headers: dict[str, str]
    body: bytes


class _Reader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = b""
        self.eof = False

    def _fill(self) -> bool:
        try:
            self._buf += next(self._chunks)
            return True
        except StopIteration:
            self.eof = True
            return False

    def at_end(self) -> bool:
        while not self._buf:
            if not self._fill():
                return True
        return False

    def line(self) -> bytes:
        while b"\r\n" not in self._buf:
            if not self._fill():
                raise StreamFormatError("stream ended inside a part's headers")
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise StreamFormatError("stream ended inside a part's body")
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def parse_savi_stream(chunks: Iterable[bytes], boundary: str = "frame") -> Iterator[Part]:
    reader = _Reader(chunks)
    while True:
        if reader.at_end():
            return
        line = reader.line()
        while line == b"":
            if reader.at_end():
                return
            line = reader.line()
        if line != f"--{boundary}".encode():
            raise StreamFormatError(f"bad part boundary: {line[:40]!r}")
        headers: dict[str, str] = {}
        while True:
            h = reader.line()
            if h == b"":
                break
            name, sep, value = h.decode("ascii").partition(": ")
            if not sep:
                raise StreamFormatError(f"bad header line: {h!r}")
            headers[name.lower()] = value
        if "content-length" not in headers:
            raise StreamFormatError("part without Content-Length")
        yield Part(headers, reader.exactly(int(headers["content-length"])))


def check_content_type(content_type: str) -> None:
    if not content_type.startswith("multipart/x-savi-stream;"):
        raise StreamFormatError(f"not a savi stream: {content_type}")
    if "; boundary=frame" not in content_type:
        raise StreamFormatError("boundary is not 'frame'")
