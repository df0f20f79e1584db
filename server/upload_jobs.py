"""Uploads transcoded in the background: the request answers at once with a job to poll.

    job = jobs.submit(file, "clip.mov", owner=None)        # reads the body, queues the transcode
    jobs.get(job.id).state                                # queued | transcoding | done | failed

``uploadVideoAsync`` (GraphQL) reads the request's body into a temporary file (the body has to
be read while the request lasts), queues the transcode and answers the job: ``queued``, then
``transcoding`` with ``progress`` (0..1, frames written over frames due), then ``done`` with
the video, or ``failed`` with the error table's code and message (``VIDEO_ERROR``,
``LIMIT_EXCEEDED``, ...). At most ``upload_jobs`` transcodes run at once; up to
``QUEUE_PER_WORKER`` times that many jobs may wait; one more is answered ``BUSY`` before its
body is stored. Jobs live in memory: a finished job is kept ``ttl`` seconds (its video stays
in the library as any upload), and a restart forgets them (the videos stay). With per-client
tokens a job belongs to its client; another client's id is unknown (``NOT_FOUND``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2_matting.errors import BusyError, NotFoundError
from server.errors import client_error

log = logging.getLogger(__name__)

QUEUE_PER_WORKER = 4
STATES = ("queued", "transcoding", "done", "failed")


@dataclass
class UploadJob:
    id: str
    owner: str | None
    filename: str
    state: str = "queued"
    progress: float = 0.0
    video: Any = None  # server.media.VideoRecord once done
    error_code: str | None = None
    error_message: str | None = None
    finished_at: float | None = None


class UploadJobs:
    """The background transcodes of one :class:`server.media.MediaLibrary`."""

    def __init__(self, library: Any, workers: int = 2, ttl: float = 3600.0) -> None:
        self.library = library
        self.workers = max(1, workers)
        self.ttl = ttl
        self._jobs: dict[str, UploadJob] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="upload")

    def submit(
        self,
        stream: Any,
        filename: str,
        *,
        start_time_sec: float | None = None,
        duration_time_sec: float | None = None,
        owner: str | None = None,
    ) -> UploadJob:
        """Store the body and queue its transcode; BUSY when too many jobs wait already.
        Errors of the body itself (over the size limit, empty) are raised here."""
        self.purge()
        job = UploadJob(uuid.uuid4().hex, owner, filename)
        with self._lock:
            waiting = sum(j.state in ("queued", "transcoding") for j in self._jobs.values())
            if waiting >= self.workers * QUEUE_PER_WORKER:
                raise BusyError("too many uploads are being prepared; try again in a moment")
            self._jobs[job.id] = job  # holds the slot while the body is read
        try:
            src = self.library.receive_upload(stream, filename)
        except BaseException:
            with self._lock:
                self._jobs.pop(job.id, None)
            raise
        window = {"start_time_sec": start_time_sec, "duration_time_sec": duration_time_sec}
        self._pool.submit(self._run, job, src, window)
        log.info("upload job %s queued for %r", job.id, filename[:200])
        return job

    def _run(self, job: UploadJob, src: Path, window: dict[str, float | None]) -> None:
        job.state = "transcoding"

        def progress(fraction: float) -> None:
            job.progress = max(job.progress, min(1.0, fraction))

        try:
            record = self.library.ingest_received(
                src, job.filename, owner=job.owner, progress=progress, **window
            )
        except BaseException as err:  # every failure becomes the job's coded error
            job.error_code, job.error_message = client_error(err)
            job.state = "failed"
        else:
            job.video, job.progress, job.state = record, 1.0, "done"
        finally:
            src.unlink(missing_ok=True)
            job.finished_at = time.monotonic()

    def get(self, job_id: str, owner: str | None = None) -> UploadJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            raise NotFoundError(f"no upload job {job_id[:64]!r} (it may have expired)")
        return job

    def purge(self) -> int:
        now = time.monotonic()
        with self._lock:
            old = [
                i
                for i, j in self._jobs.items()
                if j.finished_at is not None and now - j.finished_at > self.ttl
            ]
            for i in old:
                del self._jobs[i]
        return len(old)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
