"""The service's video library: the gallery, user uploads and posters (served by
:mod:`server.media_routes`).

    library = MediaLibrary(settings)                  # scans the gallery once, makes posters
    library.gallery()                                 # [VideoRecord, ...] sorted by name
    record = library.resolve("gallery/02_horse.mp4")  # or "uploads/<sha256>.mp4"
    record = library.ingest_upload(file, "clip.mov", start_time_sec=1.0, duration_time_sec=5.0)
    library.video_url(record), library.poster_url(record)   # Video.url / Video.posterUrl
    server.media_routes.init_app(app, library)        # GET /gallery/… /posters/… /uploads/…

A client only ever names a video by an id the library handed out (``gallery/<file name>`` or
``uploads/<sha256>.mp4``, the SAM 2 demo's ``Video.path``). :meth:`MediaLibrary.resolve` maps it
to a file on the server; a client-supplied path never reaches the filesystem. Layout under
``settings.data``: ``uploads/<sha256>.mp4`` (content-addressed, transcoded), ``posters/*.jpg``,
``sources/<sha256>`` (the sha256 of the bytes sent, named by prompts files:
:mod:`server.upload_sources`) and ``tmp/`` (uploads in progress, always removed).

With per-client tokens (``API_TOKENS``) an upload belongs to the clients that sent it: the
file stays shared (one per content), and ``owners/<client key>/<sha256>`` records who may use
it (files, so they survive restarts and are seen by every worker and replica on the data
folder). Another client's upload is answered exactly as an unknown one, on ``startSession``,
the media routes and its poster; a client sending the same bytes gets its own access, after
the same work as a new upload (so the answer's timing does not tell that it was stored).
Without ``API_TOKENS`` every client may use every upload, as in the SAM 2 demo.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

from sam2_matting.errors import InvalidInputError, MattingError, NotFoundError, VideoError
from sam2_matting.video import open_video
from server.config import Settings
from server.transcode import Readable, UploadLimits, copy_limited, transcode_h264, write_poster
from server.upload_sources import SourceRecords, upload_key

__all__ = ["GALLERY_EXTENSIONS", "MediaLibrary", "VideoRecord"]

log = logging.getLogger(__name__)

# MP4-family only: the demo frontend demuxes in the browser with mp4box.
GALLERY_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov"})
MAX_ID_LENGTH = 512
STALE_TEMP_SECONDS = 3600.0
UPLOAD_ID = re.compile(r"uploads/([0-9a-f]{64})\.mp4")
# Gallery files are addressed by name in URLs and GraphQL ids: keep names plain and printable.
PLAIN_NAME = re.compile(r"[^\x00-\x1f\x7f\\]+")


@dataclass(frozen=True)
class VideoRecord:
    """One video the service offers.

    ``id`` is what clients see and send back (``Video.path`` and the Relay node code);
    ``file`` is the server-side path and must never be shown to a client; ``poster`` is the
    client-visible poster path (``posters/<name>.jpg``).
    """

    id: str
    file: Path
    width: int
    height: int
    frame_count: int
    fps: float
    duration: float
    poster: str
    upload_sha256: str | None = None  # an upload: sha256 of the bytes the client sent


class MediaLibrary:
    """Gallery and uploads under one :class:`~server.config.Settings`; thread-safe.

    The gallery folder is scanned once, here, in name order; unreadable files are logged and
    skipped. Each video gets a JPEG poster of its first frame in ``<data>/posters`` (reused when
    present). Uploads are found again by their content hash, so they survive restarts.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = UploadLimits.from_settings(settings)
        self.gallery_dir = settings.gallery_dir.resolve()
        self.data_dir = settings.data_dir.resolve()
        self.uploads_dir = self.data_dir / "uploads"
        self.posters_dir = self.data_dir / "posters"
        self.tmp_dir = self.data_dir / "tmp"
        self.owners_dir = self.data_dir / "owners"
        self.sources_dir = self.data_dir / "sources"  # sha256 of the bytes sent, per upload
        self.sources = SourceRecords(self.sources_dir, self.tmp_dir)
        # Uploads are bound to their clients only with per-client tokens (API_TOKENS).
        self.per_client = bool(settings.api_tokens)
        folders = (self.uploads_dir, self.posters_dir, self.tmp_dir, self.owners_dir)
        for folder in (*folders, self.sources_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        self._lock = threading.Lock()
        self._uploads: dict[str, VideoRecord] = {}
        self._gallery: dict[str, VideoRecord] = {}
        for path in self._gallery_files():
            record = self._probe_gallery(path)
            if record is not None:
                self._gallery[record.id] = record
        log.info("gallery: %d video(s) from %s", len(self._gallery), self.gallery_dir)
        if settings.default_video and self._default_id() not in self._gallery:
            log.warning("default video %r is not in the gallery", settings.default_video)

    # -- queries ------------------------------------------------------------------------------

    def gallery(self) -> list[VideoRecord]:
        """The gallery videos, sorted by file name (a stable order for paging)."""
        return list(self._gallery.values())

    def default_video(self) -> VideoRecord:
        """``settings.default_video`` (a gallery file name or ``gallery/<name>``), else the
        first gallery video. NotFoundError if it is not in the gallery or the gallery is empty."""
        if self.settings.default_video:
            record = self._gallery.get(self._default_id())
            if record is None:
                raise NotFoundError("the configured default video is not in the gallery")
            return record
        if not self._gallery:
            raise NotFoundError("the gallery is empty: no default video")
        return next(iter(self._gallery.values()))

    def resolve(self, video_id: str, owner: str | None = None) -> VideoRecord:
        """The record of a gallery or upload id, e.g. ``gallery/a.mp4``, ``uploads/<hex>.mp4``.

        Only ids this library knows are accepted: InvalidInputError for a malformed id
        (absolute, ``..``, backslash, control characters), NotFoundError for an unknown one,
        and, with per-client tokens, for an upload client ``owner`` did not send (the same
        message).
        """
        _check_id(video_id)
        record = self._gallery.get(video_id)
        if record is not None:
            return record
        match = UPLOAD_ID.fullmatch(video_id)
        if match is None or not self.may_use(match.group(1), owner):
            raise NotFoundError(f"unknown video: {video_id[:100]}")
        return self._upload_record(match.group(1))

    def may_use(self, digest: str, owner: str | None) -> bool:
        """Whether client ``owner`` may use upload ``digest`` (always, without API_TOKENS)."""
        if not self.per_client:
            return True
        return owner is not None and self._owner_file(digest, owner).is_file()

    def video_url(self, record: VideoRecord) -> str:
        """``Video.url``: ``<api_url>/<id>`` (a root-relative URL when api_url is empty)."""
        return self._url(record.id)

    def poster_url(self, record: VideoRecord) -> str:
        """``Video.posterUrl``: ``<api_url>/<poster>``; every record has a real poster."""
        return self._url(record.poster)

    # -- uploads ------------------------------------------------------------------------------

    def ingest_upload(
        self,
        stream: Readable,
        filename: str | None = None,
        *,
        start_time_sec: float | None = None,
        duration_time_sec: float | None = None,
        owner: str | None = None,
    ) -> VideoRecord:
        """Store an uploaded video for client ``owner`` and return its record
        (``uploads/<sha256>.mp4``): :meth:`receive_upload`, then :meth:`ingest_received`.

        ``stream`` is read in chunks (at most ``max_upload_bytes``), decoded and transcoded to
        H.264 MP4 under the limits, optionally trimmed to ``duration_time_sec`` seconds from
        ``start_time_sec``; ``filename`` is only logged. Identical results share one file;
        with per-client tokens ``owner`` may use it from then on.
        Raises LimitExceededError, VideoError or InvalidInputError; on any failure nothing is
        left behind.
        """
        src = self.receive_upload(stream, filename)
        return self.ingest_received(
            src,
            filename,
            start_time_sec=start_time_sec,
            duration_time_sec=duration_time_sec,
            owner=owner,
        )

    def receive_upload(self, stream: Readable, filename: str | None = None) -> Path:
        """Read an upload's body into a temporary file (at most ``max_upload_bytes``; an
        empty one is refused); the caller hands it to :meth:`ingest_received`."""
        src = self.tmp_dir / f"in-{uuid.uuid4().hex}"
        try:
            if copy_limited(stream, src, self.limits.max_upload_bytes) == 0:
                raise VideoError("the upload is empty (0 bytes)")
        except BaseException as err:
            src.unlink(missing_ok=True)
            if isinstance(err, MattingError):
                log.info("upload %r rejected: %s", _printable(filename), err)
            raise
        return src

    def ingest_received(
        self,
        src: Path,
        filename: str | None = None,
        *,
        start_time_sec: float | None = None,
        duration_time_sec: float | None = None,
        owner: str | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> VideoRecord:
        """Transcode and store a received upload (see :meth:`ingest_upload`); ``src`` is
        removed whatever happens. ``progress(fraction)`` follows the transcode."""
        out = self.tmp_dir / f"out-{uuid.uuid4().hex}.mp4"
        started = time.monotonic()
        try:
            size = src.stat().st_size
            # The id is the hash of what the user sent and of everything that shapes the
            # transcode: x264's output is not byte-identical between runs (threads), so hashing
            # the output would give one file two ids. A repeated upload reuses the stored file.
            digest, sent_sha = upload_key(src, self.limits, start_time_sec, duration_time_sec)
            final = self.uploads_dir / f"{digest}.mp4"
            existing = self._stored_upload(digest)
            if existing is not None and self.may_use(digest, owner):
                log.info("upload %r is already stored as %s", _printable(filename), existing.id)
                return existing
            info = transcode_h264(
                src,
                out,
                self.limits,
                start_time_sec=start_time_sec,
                duration_time_sec=duration_time_sec,
                progress=progress,
            )
            src.unlink()
            if existing is not None:
                # Stored for another client: the same work as a new upload was done (no timing
                # hint), the stored file is kept (its bytes and ETag do not change under its
                # other clients), and this client may use it now.
                self._grant(digest, owner)
                log.info("upload %r is already stored as %s", _printable(filename), existing.id)
                return existing
            # The poster is written first, so an upload that exists always has its poster.
            record = self._probe(out, f"uploads/{digest}.mp4", f"posters/{digest}.jpg")
            try:
                self.sources.write(digest, sent_sha)
                os.replace(out, final)  # same filesystem: atomic; a re-upload just replaces
            except OSError:
                if not final.exists():
                    (self.posters_dir / f"{digest}.jpg").unlink(missing_ok=True)
                raise
        except MattingError as err:
            log.info("upload %r rejected: %s", _printable(filename), err)
            raise
        finally:
            src.unlink(missing_ok=True)
            out.unlink(missing_ok=True)
        record = replace(record, file=final, upload_sha256=sent_sha)
        self._grant(digest, owner)
        with self._lock:
            self._uploads[digest] = record
        log.info(
            "upload %r stored as %s: %dx%d, %d frames at %.4g fps from %d bytes in %.1f s",
            _printable(filename),
            record.id,
            record.width,
            record.height,
            record.frame_count,
            record.fps,
            size,
            time.monotonic() - started,
        )
        if info.frame_count != record.frame_count:
            # The sessions count frames with the same reader: a mismatch would be our bug.
            log.warning(
                "%s: wrote %d frames, reads %d", record.id, info.frame_count, record.frame_count
            )
        return record

    # -- internals ----------------------------------------------------------------------------

    def _default_id(self) -> str:
        name = self.settings.default_video or ""
        return name if name.startswith("gallery/") else f"gallery/{name}"

    def _url(self, path: str) -> str:
        return f"{self.settings.api_url.rstrip('/')}/{quote(path, safe='/')}"

    def _gallery_files(self) -> Iterable[Path]:
        if not self.gallery_dir.is_dir():
            log.warning("gallery folder %s does not exist", self.gallery_dir)
            return []
        files = []
        for path in sorted(self.gallery_dir.iterdir(), key=lambda p: p.name):
            if path.name.startswith(".") or path.suffix.lower() not in GALLERY_EXTENSIONS:
                continue
            if not path.is_file() or not PLAIN_NAME.fullmatch(path.name):
                log.warning("gallery: skipping %s (not a plain file with a plain name)", path)
                continue
            files.append(path)
        return files

    def _probe_gallery(self, path: Path) -> VideoRecord | None:
        stat = path.stat()
        # The poster name changes with the file, so an edited clip never shows a stale poster.
        key = hashlib.sha256(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-")[:60] or "video"
        poster = f"posters/gallery-{stem}-{key.hexdigest()[:12]}.jpg"
        try:
            return self._probe(path, f"gallery/{path.name}", poster)
        except (MattingError, OSError) as err:
            log.warning("gallery: skipping %s: %s", path.name, err)
            return None

    def _probe(self, path: Path, video_id: str, poster: str) -> VideoRecord:
        """Read a video's facts with the sessions' own reader; write its poster if missing."""
        poster_file = self.data_dir / poster
        with open_video(
            path, cache_size=1, max_frames=self.limits.max_frames, max_side=self.limits.max_side
        ) as video:
            if not poster_file.is_file():
                write_poster(video.get_frame(0), poster_file)
            fps = float(video.fps)
            return VideoRecord(
                id=video_id,
                file=path,
                width=video.width,
                height=video.height,
                frame_count=video.frame_count,
                fps=fps,
                duration=video.frame_count / fps if fps > 0 else 0.0,
                poster=poster,
            )

    def _owner_file(self, digest: str, owner: str) -> Path:
        # Client names are free text: a hash of the name is the folder name.
        key = hashlib.sha256(f"sam2-matting-client\0{owner}".encode()).hexdigest()[:32]
        return self.owners_dir / key / digest

    def _grant(self, digest: str, owner: str | None) -> None:
        if not self.per_client or owner is None:
            return
        record = self._owner_file(digest, owner)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.touch()

    def _stored_upload(self, digest: str) -> VideoRecord | None:
        try:
            record = self._upload_record(digest)
        except (NotFoundError, VideoError):
            return None  # not stored, or a damaged file: transcode again and replace it
        return record if (self.data_dir / record.poster).is_file() else None

    def _upload_record(self, digest: str) -> VideoRecord:
        with self._lock:
            record = self._uploads.get(digest)
        if record is not None and record.file.is_file():
            return record
        file = self.uploads_dir / f"{digest}.mp4"
        if not file.is_file():
            raise NotFoundError(f"unknown video: uploads/{digest}.mp4")
        record = self._probe(file, f"uploads/{digest}.mp4", f"posters/{digest}.jpg")
        record = replace(record, upload_sha256=self.sources.read(digest))
        with self._lock:
            self._uploads[digest] = record
        return record

    def _remove_stale_temps(self) -> None:
        # Left by a killed process; young ones may belong to another worker's upload in flight.
        cutoff = time.time() - STALE_TEMP_SECONDS
        for leftover in [*self.tmp_dir.iterdir(), *self.posters_dir.glob(".poster-*")]:
            try:
                if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except OSError:
                pass


def _check_id(video_id: str) -> None:
    if not isinstance(video_id, str) or not video_id or len(video_id) > MAX_ID_LENGTH:
        raise InvalidInputError("a video path must be a non-empty string of at most 512 characters")
    parts = video_id.split("/")
    if (
        video_id.startswith("/")
        or "\\" in video_id
        or any(part in ("", ".", "..") for part in parts)
        or not PLAIN_NAME.fullmatch(video_id)
    ):
        raise InvalidInputError("invalid video path: use the path of a gallery video or an upload")


def _printable(name: str | None) -> str:
    return "".join(c if c.isprintable() else "?" for c in (name or ""))[:120]
