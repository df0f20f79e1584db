"""One download's HTTP attempts: :class:`Fetcher` streams a URL into an open part file,
resuming with ``Range`` (validated by a strong ``If-Range``), retrying transient failures with
backoff, restarting when the server's answer does not fit the part file. Used by
:mod:`sam2_matting.download`, which owns the part file, the checksum and the rename.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import IO

from tqdm import tqdm

from sam2_matting import __version__
from sam2_matting.errors import DownloadError

log = logging.getLogger("sam2_matting.download")  # one logger for the whole download

_CHUNK = 1 << 20
_MAX_DELAY = 30.0
_RETRY_STATUS = frozenset({408, 429, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)
_UNSATISFIED = re.compile(r"\s*bytes\s+\*/(\d+)\s*", re.IGNORECASE)


class _Retryable(Exception):
    """A transient failure of one attempt: back off, then resume from the part file."""


class _Restart(Exception):
    """The server's answer does not fit the part file: truncate it and start from byte 0."""


def sha256_of(f: IO[bytes]) -> str:
    """Lower-case hex SHA-256 of an open file, from its start, in 1 MiB chunks."""
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but only to http(s) URLs."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise DownloadError(f"{req.full_url} redirects to a non-http(s) URL: {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError):
        return describe(err.reason) if isinstance(err.reason, BaseException) else str(err.reason)
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, http.client.IncompleteRead):
        return f"connection closed early ({len(err.partial)} bytes of a chunk read)"
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class Fetcher:
    """The attempt loop of one download into an open (locked, append-mode) part file."""

    def __init__(self, url: str, f: IO[bytes], desc: str, progress: bool, timeout: float):
        self.url = url
        self.f = f
        self.desc = desc
        self.progress = progress
        self.timeout = timeout
        self.validator: str | None = None  # strong ETag or Last-Modified, sent as If-Range
        self.opener = urllib.request.build_opener(HttpOnlyRedirects())

    def size(self) -> int:
        return os.fstat(self.f.fileno()).st_size

    def truncate(self) -> None:
        self.f.flush()
        self.f.truncate(0)

    def run(self, retries: int, backoff: float, expected: str | None) -> None:
        """Attempt until complete; raise DownloadError after ``retries`` attempts in a row
        that did not grow the part file beyond its largest size so far."""
        failures = 0
        high_water = self.size()
        while True:
            delay = True
            try:
                if self.attempt(expected):
                    return
                error = None
            except _Restart as why:
                log.warning("%s: %s; downloading from the start", self.url, why)
                self.truncate()
                error, delay = str(why), False
            except _Retryable as why:
                error = str(why)
            size = self.size()
            grew = size > high_water
            if grew:
                high_water, failures = size, 0
            if error is None:  # a partial 206 answer, fully received: ask for the rest
                if grew:
                    continue
                error = "the server sent no data"
            failures += 1
            if failures > retries:
                raise DownloadError(
                    f"download of {self.url} failed after {failures} attempts: {error}"
                    + (" (run again to resume)" if size else "")
                )
            wait = min(backoff * 2 ** (failures - 1), _MAX_DELAY) if delay else 0.0
            log.warning(
                "%s: %s; retrying in %.1f s (%d/%d)", self.url, error, wait, failures, retries
            )
            time.sleep(wait)

    def request(self, offset: int) -> urllib.request.Request:
        headers = {"User-Agent": f"sam2-matting/{__version__}", "Accept-Encoding": "identity"}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        return urllib.request.Request(self.url, headers=headers)

    def attempt(self, expected: str | None) -> bool:
        """One request. True: the part file is complete. False: more to fetch right away."""
        offset = self.size()
        try:
            resp = self.opener.open(self.request(offset), timeout=self.timeout)
        except urllib.error.HTTPError as err:
            with err:
                if err.code == 416 and offset > 0:
                    return self.unsatisfiable(offset, err.headers, expected)
                if err.code in _RETRY_STATUS:
                    raise _Retryable(f"HTTP {err.code} {err.reason}") from err
                raise DownloadError(f"HTTP {err.code} {err.reason}: {self.url}") from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, socket.gaierror):
                raise DownloadError(
                    f"cannot resolve the host of {self.url}: {err.reason}"
                ) from None
            raise _Retryable(describe(err)) from err
        except (http.client.HTTPException, OSError) as err:
            raise _Retryable(describe(err)) from err
        with resp:
            return self.receive(resp, offset)

    def unsatisfiable(self, offset: int, headers: Message, expected: str | None) -> bool:
        """416 to ``Range: bytes=offset-``: the part file is complete, or bigger than the file."""
        match = _UNSATISFIED.fullmatch(headers.get("Content-Range", ""))
        if match:
            total = int(match[1])
            if total == offset:
                return True
            raise _Restart(f"the part file has {offset} bytes but the remote file {total}")
        if expected is not None and sha256_of(self.f) == expected:
            return True
        raise _Restart(f"the server cannot serve bytes {offset}- (416)")

    def receive(self, resp: http.client.HTTPResponse, offset: int) -> bool:
        status = resp.status
        end: int | None
        total: int | None
        length_header = resp.headers.get("Content-Length", "")
        length = int(length_header) if length_header.strip().isdigit() else None
        if status == 206:
            content_range = resp.headers.get("Content-Range", "")
            match = _CONTENT_RANGE.fullmatch(content_range)
            if not match or int(match[1]) != offset:
                raise _Restart(
                    f"asked for bytes {offset}- but the server sent range {content_range!r}"
                )
            end = int(match[2]) + 1
            total = int(match[3]) if match[3] != "*" else None
            if length is not None and length != end - offset:
                raise _Restart(f"Content-Length {length} does not fit range {content_range!r}")
            if self.validator is None:
                self.validator = self.strong_validator(resp.headers)
        elif status == 200:
            if offset > 0:
                log.info("%s: the server ignored the range request; restarting", self.url)
                self.truncate()
                offset = 0
            total = end = length
            self.validator = self.strong_validator(resp.headers)
        else:
            raise DownloadError(f"unexpected HTTP {status} {resp.reason}: {self.url}")

        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=self.desc,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            while True:
                try:  # read1: whatever has arrived, so a drop loses no received bytes
                    chunk = resp.read1(_CHUNK)
                except (http.client.HTTPException, OSError) as err:
                    raise _Retryable(describe(err)) from err
                if not chunk:
                    break
                self.f.write(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
        self.f.flush()
        size = self.size()
        if end is not None and size < end:
            raise _Retryable(f"connection closed after {size} of {end} bytes")
        if end is not None and size > end:
            raise _Restart(f"the server sent more bytes than announced ({size} > {end})")
        return total is None or size >= total

    @staticmethod
    def strong_validator(headers: Mapping[str, str] | Message) -> str | None:
        """A validator usable in If-Range: a strong ETag, else Last-Modified."""
        etag = headers.get("ETag")
        if etag and not etag.startswith("W/"):
            return etag
        return headers.get("Last-Modified") or None
