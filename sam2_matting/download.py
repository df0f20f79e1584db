"""Resumable, verified checkpoint downloads with the standard library only.

    from sam2_matting.download import download, download_model
    path = download_model("tiny")                          # -> ./checkpoints/sam2.1_hiera_tiny.pt
    path = download_model("large", "/models", force=True)  # download again even if present
    path = download("https://example.org/w.pt", Path("w.pt"), sha256="ab12...", progress=False)

:func:`download` streams into ``DEST.part`` and only renames it to ``DEST`` (fsync, then
``os.replace``) once it is complete and its SHA-256 matches, so a file with the final name is
never partial. A dropped connection (truncated body, reset, timeout) is retried with exponential
backoff, each retry resuming with ``Range: bytes=N-``; an interrupted run resumes from the part
file the next time. Servers that ignore ``Range`` (200), answer a different range, or report 416
for a part file that is complete or too big are all handled. Every failure is a
:class:`~sam2_matting.errors.DownloadError` with a one-line message.

:func:`download_model` adds the checksum record: ``checksums.json`` in the checkpoint folder maps
file names to SHA-256 digests. The first download records its digest; later runs verify the
existing file (or a new download) against it. SAM 2.1 has no published digests, so the record
is what detects a corrupted or swapped checkpoint.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import IO

from tqdm import tqdm

from sam2_matting import __version__
from sam2_matting.errors import DownloadError, InvalidInputError
from sam2_matting.registry import checkpoint_path, default_checkpoint_dir, get_model_spec

log = logging.getLogger(__name__)

#: Name of the checksum record inside a checkpoint folder.
CHECKSUMS_FILE = "checksums.json"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 5

_CHUNK = 1 << 20
_MAX_DELAY = 30.0
_RETRY_STATUS = frozenset({408, 429, 502, 503, 504})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)
_UNSATISFIED = re.compile(r"\s*bytes\s+\*/(\d+)\s*", re.IGNORECASE)


class _Retryable(Exception):
    """A transient failure of one attempt: back off, then resume from the part file."""


class _Restart(Exception):
    """The server's answer does not fit the part file: truncate it and start from byte 0."""


def part_path(dest: Path) -> Path:
    """The temporary file a download of ``dest`` streams into: ``DEST.part``."""
    return dest.with_name(dest.name + ".part")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB chunks."""
    with open(path, "rb") as f:
        return _sha256_of(f)


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` (http or https) to ``dest`` and return ``dest`` as a :class:`Path`.

    ``sha256``: expected lower/upper-case hex digest, checked before the rename (on mismatch the
    part file is deleted). ``progress``: tqdm bar on stderr. ``timeout``: seconds per socket
    operation. ``retries``: attempts after the first that made no progress; ``backoff``: first
    delay in seconds, doubled per failure (at most 30 s). An existing ``dest`` is replaced. Raises
    :class:`DownloadError`; a malformed ``sha256`` raises
    :class:`~sam2_matting.errors.InvalidInputError`.
    """
    dest = Path(dest)
    _download(
        url,
        dest,
        expected=_normalise_sha(sha256),
        progress=progress,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
    )
    return dest


def download_model(
    name: str,
    directory: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    url: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 1.0,
) -> Path:
    """Make sure the checkpoint of model ``name`` is in ``directory``; return its path.

    ``directory`` defaults to :func:`~sam2_matting.registry.default_checkpoint_dir`. An existing
    file is verified against the official or recorded SHA-256 (a file without a record gets its
    digest recorded) and not downloaded again; a mismatch raises :class:`DownloadError` asking to
    delete it or use ``force``. ``force=True`` downloads afresh (discarding any part file) and
    replaces the file once the new one is complete. ``url`` overrides the official URL (mirrors,
    tests). The digest of a new download is recorded in ``checksums.json``.
    """
    spec = get_model_spec(name)
    base = Path(directory).expanduser() if directory is not None else default_checkpoint_dir()
    dest = checkpoint_path(spec, base)
    record_file = base / CHECKSUMS_FILE
    recorded = read_checksums(base).get(spec.checkpoint_file)
    official = _normalise_sha(spec.sha256)
    expected = official or recorded
    source = "official SHA-256" if official else f"SHA-256 recorded in {record_file}"

    if dest.exists() and not force:
        if not dest.is_file():
            raise DownloadError(f"{dest} exists but is not a file")
        digest = _hash_existing(dest)
        if expected is None:
            log.info("%s exists without a recorded checksum; recording %s", dest, digest)
            record_checksum(base, spec.checkpoint_file, digest)
            return dest
        if digest != expected:
            raise DownloadError(
                f"{dest} is corrupt: its SHA-256 {digest} does not match the {source} "
                f"{expected}; delete it or download again with --force"
            )
        if recorded != digest:
            record_checksum(base, spec.checkpoint_file, digest)
        return dest

    hint = f" (if the file changed upstream, remove its entry from {record_file})"
    digest = _download(
        url or spec.url,
        dest,
        expected=expected,
        progress=progress,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        fresh=force,
        mismatch_hint=hint if expected and not official else "",
    )
    if recorded != digest:
        record_checksum(base, spec.checkpoint_file, digest)
    return dest


def read_checksums(directory: str | os.PathLike[str]) -> dict[str, str]:
    """The checksum record of ``directory`` (file name -> hex SHA-256); ``{}`` if there is none.

    A malformed ``checksums.json`` raises :class:`DownloadError` naming the file.
    """
    path = Path(directory) / CHECKSUMS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise DownloadError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise DownloadError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(data, dict):
        raise DownloadError(f"{path} must map file names to SHA-256 digests; fix or delete it")
    result: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str) or not _HEX64.fullmatch(value.lower()):
            raise DownloadError(
                f"{path}: the entry for {key!r} is not a SHA-256 hex digest; fix or delete it"
            )
        result[str(key)] = value.lower()
    return result


def record_checksum(directory: str | os.PathLike[str], filename: str, sha256: str) -> None:
    """Set ``filename``'s digest in ``directory/checksums.json``, written atomically."""
    digest = _normalise_sha(sha256)
    assert digest is not None
    base = Path(directory)
    record = read_checksums(base)
    record[filename] = digest
    text = json.dumps(dict(sorted(record.items())), indent=2) + "\n"
    try:
        _atomic_write_text(base / CHECKSUMS_FILE, text)
    except OSError as err:
        raise DownloadError(f"cannot write {base / CHECKSUMS_FILE}: {err.strerror or err}") from err


# --------------------------------------------------------------------------------------------
# Internals


def _normalise_sha(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _HEX64.fullmatch(digest):
        raise InvalidInputError(f"not a SHA-256 hex digest: {sha256!r}")
    return digest


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise DownloadError(f"not an http(s) URL: {url!r}")


def _sha256_of(f: IO[bytes]) -> str:
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _hash_existing(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as err:
        raise DownloadError(f"cannot read {path}: {err.strerror or err}") from err


def _fsync_dir(directory: Path) -> None:
    """Persist a rename on POSIX (best effort; not possible on Windows)."""
    if sys.platform == "win32":  # pragma: no cover
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _lock(f: IO[bytes], part: Path) -> None:
    """Hold an exclusive lock on the part file so two processes never write it at once."""
    if sys.platform == "win32":  # pragma: no cover
        return
    import fcntl

    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        raise DownloadError(
            f"{part} is locked: another process is downloading this file; wait for it"
        ) from err


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
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


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError):
        return _describe(err.reason) if isinstance(err.reason, BaseException) else str(err.reason)
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, http.client.IncompleteRead):
        return f"connection closed early ({len(err.partial)} bytes of a chunk read)"
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _download(
    url: str,
    dest: Path,
    *,
    expected: str | None,
    progress: bool,
    timeout: float,
    retries: int,
    backoff: float,
    fresh: bool = False,
    mismatch_hint: str = "",
) -> str:
    """Download into ``DEST.part``, verify, rename to ``dest``; return the hex SHA-256."""
    _check_url(url)
    part = part_path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        f = open(part, "a+b")  # noqa: SIM115  (held, and locked, for the whole download)
    except OSError as err:
        raise DownloadError(f"cannot write {part}: {err.strerror or err}") from err
    with f:
        _lock(f, part)
        try:
            if fresh:
                f.truncate(0)
            _Fetcher(url, f, dest.name, progress, timeout).run(retries, backoff, expected)
            f.flush()
            os.fsync(f.fileno())
            digest = _sha256_of(f)
            if expected is not None and digest != expected:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"SHA-256 mismatch for {url}: expected {expected}, got {digest}; "
                    f"the download was deleted{mismatch_hint}"
                )
            os.replace(part, dest)
        except BaseException as err:
            # An empty part file is clutter, not progress: remove it (we hold its lock).
            if os.fstat(f.fileno()).st_size == 0:
                part.unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise DownloadError(f"cannot write {part}: {err.strerror or err}") from err
            raise
    _fsync_dir(dest.parent)
    return digest


class _Fetcher:
    """The attempt loop of one download into an open (locked, append-mode) part file."""

    def __init__(self, url: str, f: IO[bytes], desc: str, progress: bool, timeout: float):
        self.url = url
        self.f = f
        self.desc = desc
        self.progress = progress
        self.timeout = timeout
        self.validator: str | None = None  # strong ETag or Last-Modified, sent as If-Range
        self.opener = urllib.request.build_opener(_HttpOnlyRedirects())

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
            raise _Retryable(_describe(err)) from err
        except (http.client.HTTPException, OSError) as err:
            raise _Retryable(_describe(err)) from err
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
        if expected is not None and _sha256_of(self.f) == expected:
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
                    raise _Retryable(_describe(err)) from err
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
