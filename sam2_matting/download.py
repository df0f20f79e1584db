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

import json
import logging
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

from sam2_matting.download_http import Fetcher, sha256_of
from sam2_matting.errors import DownloadError, InvalidInputError
from sam2_matting.registry import checkpoint_path, default_checkpoint_dir, get_model_spec

log = logging.getLogger(__name__)

#: Name of the checksum record inside a checkpoint folder.
CHECKSUMS_FILE = "checksums.json"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 5

_HEX64 = re.compile(r"[0-9a-f]{64}")


def part_path(dest: Path) -> Path:
    """The temporary file a download of ``dest`` streams into: ``DEST.part``."""
    return dest.with_name(dest.name + ".part")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB chunks."""
    with open(path, "rb") as f:
        return sha256_of(f)


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
            Fetcher(url, f, dest.name, progress, timeout).run(retries, backoff, expected)
            f.flush()
            os.fsync(f.fileno())
            digest = sha256_of(f)
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
