"""Export jobs: a session's mattes written as files an editor can use, in the background.

``exportMatte`` starts a job on one worker thread (exports are CPU-heavy; one at a time keeps
the model responsive); ``exportJob`` reports its status and progress; the finished file is
served at ``/exports/<job id>/<file>`` with its format's content type. A job is cancelled and its
files deleted when its session closes or expires, and finished exports expire after
``export_ttl`` seconds. A failed or cancelled job leaves no file behind.

A finished export is recorded beside its file (``<job id>/.job.json``), so it stays
downloadable after a restart (or from another replica sharing the data folder) until it
expires; a shutdown cancels running jobs but keeps finished files. Folders a killed process
left half-written (no record) are removed once nothing in them changed for an hour. With
per-client tokens a job belongs to the session's client, like the session.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, g, request, send_file

from sam2_matting.codec import decode_matte
from sam2_matting.errors import CancelledError, InvalidInputError, NotFoundError
from sam2_matting.export import get_format
from sam2_matting.export.foreground import DEFAULT_FOREGROUND, parse_foreground
from sam2_matting.predictor import CancelToken
from server.errors import client_error, not_found
from server.ranges import ignore_unusable_range

log = logging.getLogger(__name__)
JOB_ID = re.compile(r"[0-9a-f]{32}")
MAX_JOBS = 64
RECORD = ".job.json"
STALE_SECONDS = 3600.0  # a folder without a record, untouched this long, is a dead job's


@dataclass
class ExportJob:
    id: str
    session_id: str
    format: str
    object_ids: list[int]
    status: str = "queued"  # queued | running | done | failed | cancelled
    done: int = 0
    total: int = 0
    error_code: str | None = None
    error: str | None = None
    file: Path | None = None
    finished_at: float | None = None
    owner: str | None = None  # the client of the session (per-client tokens), else None
    foreground: str = DEFAULT_FOREGROUND  # estimate | temporal | source (export.foreground)
    cancel: CancelToken = field(default_factory=CancelToken)

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def url_path(self) -> str | None:
        if self.status != "done" or self.file is None:
            return None
        return f"exports/{self.id}/{self.file.name}"


def union_alpha(mattes: dict[int, Any], object_ids: list[int]) -> np.ndarray | None:
    """The union (per-pixel maximum) of the chosen objects' encoded mattes on one frame."""
    picked = [
        decode_matte(m.alpha)
        for oid, m in mattes.items()
        if oid in object_ids and m.alpha is not None
    ]
    return np.maximum.reduce(picked) if picked else None


def frames_without_alpha(mattes: dict[int, dict[int, Any]], object_ids: list[int]) -> list[int]:
    """Frames where a chosen object's matte was streamed as a mask only (no soft alpha)."""
    return sorted(
        f
        for f, per_obj in mattes.items()
        if any(m.alpha is None for oid, m in per_obj.items() if oid in object_ids)
    )


class ExportJobs:
    """Runs and tracks export jobs under ``<data>/exports``."""

    def __init__(self, data_dir: Path, ttl: float = 3600.0) -> None:
        self.root = data_dir / "exports"
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self._jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")
        self._stopping = False
        self.purge()

    def start(
        self,
        entry: Any,
        fmt: str,
        object_ids: list[int] | None,
        background: Any,
        premultiplied: bool,
        foreground: str | None = None,
    ) -> ExportJob:
        """Queue an export of ``entry``'s computed mattes (the union of ``object_ids``).

        ``background`` is a checked ``BackgroundSpec`` (composite only) or None;
        ``foreground`` ``"estimate"`` (None: the default), ``"temporal"`` or ``"source"``.
        """
        spec = get_format(fmt)
        mode = parse_foreground(foreground)
        if spec.name == "png":
            spec = get_format("png-zip")  # a folder is served as one zip file
        ids = list(object_ids) if object_ids else list(entry.session.object_ids)
        unknown = set(ids) - set(entry.session.object_ids)
        if unknown:
            raise InvalidInputError(f"unknown object ids: {sorted(unknown)}")
        mattes = entry.snapshot()  # what the client sees now, whatever it clicks next
        if not mattes:
            raise InvalidInputError("nothing to export yet: click and propagate first")
        if background is not None and spec.name != "composite":
            raise InvalidInputError("background applies to the composite format only")
        masks_only = frames_without_alpha(mattes, ids)
        if masks_only:
            raise InvalidInputError(
                f"{len(masks_only)} tracked frame(s) (from frame {masks_only[0]}) were streamed "
                'without their soft matte (fields: ["mask"]): propagate again with "alpha" '
                "among the fields to export them"
            )
        self.purge()
        with self._lock:
            if sum(j.status in ("queued", "running") for j in self._jobs.values()) >= MAX_JOBS:
                raise InvalidInputError("too many exports queued; wait for one to finish")
            job = ExportJob(
                uuid.uuid4().hex, entry.id, spec.name, ids, owner=entry.owner, foreground=mode
            )
            job.total = entry.session.frame_count
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, entry, mattes, background, premultiplied)
        return job

    def get(self, job_id: str, owner: str | None = None) -> ExportJob:
        """Job ``job_id`` of client ``owner``; NotFoundError if unknown, expired or another
        client's. A finished job is also found from its record on disk (after a restart)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None and JOB_ID.fullmatch(job_id):
            job = self._load(job_id)
        if job is None or job.owner != owner:
            raise NotFoundError(f"no export job {job_id[:64]!r}")
        return job

    def cancel(self, job_id: str, owner: str | None = None) -> ExportJob:
        job = self.get(job_id, owner)
        job.cancel.cancel()
        return job

    def drop_session(self, session_id: str) -> None:
        """The session is gone: cancel its jobs and delete their files (not on shutdown:
        finished exports outlive a restart)."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.session_id == session_id]
        for job in jobs:
            job.cancel.cancel()
            if job.status not in ("queued", "running") and not self._stopping:
                self._forget(job)

    def purge(self) -> None:
        """Forget expired jobs; delete their folders and those of jobs a dead process left."""
        now = time.time()
        with self._lock:
            old = [
                j for j in self._jobs.values() if j.finished_at and now - j.finished_at > self.ttl
            ]
            live = set(self._jobs)
        for job in old:
            self._forget(job)
        for folder in self.root.iterdir():
            if folder.name in live or not folder.is_dir():
                continue
            try:
                record = folder / RECORD
                if record.is_file():
                    expired = now - record.stat().st_mtime > self.ttl
                else:  # half-written, or a job of another replica still running
                    expired = now - _newest_mtime(folder) > max(STALE_SECONDS, self.ttl)
            except OSError:
                continue
            if expired:
                shutil.rmtree(folder, ignore_errors=True)

    def shutdown(self) -> None:
        """Cancel every job (partial files are deleted); finished exports stay on disk."""
        self._stopping = True
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _load(self, job_id: str) -> ExportJob | None:
        """A finished job from its record on disk, or None (unknown, expired, damaged)."""
        folder = self.root / job_id
        try:
            record = folder / RECORD
            meta = json.loads(record.read_text())
            finished = record.stat().st_mtime
            file = folder / str(meta["file"])
            if file.parent != folder or not file.is_file():
                return None
            job = ExportJob(
                job_id,
                str(meta["session_id"]),
                str(meta["format"]),
                [int(o) for o in meta["object_ids"]],
                status="done",
                done=int(meta["frames"]),
                total=int(meta["frames"]),
                file=file,
                finished_at=finished,
                owner=meta.get("owner"),
            )
            get_format(job.format)
        except (OSError, ValueError, KeyError, TypeError, InvalidInputError):
            return None
        if time.time() - finished > self.ttl:
            return None
        with self._lock:
            return self._jobs.setdefault(job_id, job)

    def _record(self, job: ExportJob) -> None:
        """Write the finished job's record beside its file (atomically)."""
        assert job.file is not None
        meta = {
            "session_id": job.session_id,
            "format": job.format,
            "object_ids": job.object_ids,
            "frames": job.done,
            "file": job.file.name,
            "owner": job.owner,
        }
        tmp = job.file.parent / f"{RECORD}.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, job.file.parent / RECORD)

    def _forget(self, job: ExportJob) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(self.root / job.id, ignore_errors=True)

    def _run(
        self,
        job: ExportJob,
        entry: Any,
        mattes: dict[int, dict[int, Any]],
        background: Any,
        premult: bool,
    ) -> None:
        from sam2_matting.export import export_video

        if job.cancel.cancelled:
            self._finish(job, "cancelled")
            return
        job.status = "running"
        spec = get_format(job.format)
        folder = self.root / job.id
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(entry.video.id).stem or "video"
        out = folder / f"{stem}_matte{spec.extension}"

        def frames() -> Iterator[tuple[int, np.ndarray]]:
            for frame in sorted(mattes):
                alpha = union_alpha(mattes[frame], job.object_ids)
                if alpha is not None:
                    yield frame, alpha

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            export_video(
                entry.video.file,
                frames(),
                out,
                spec,
                background=background,
                premultiplied=premult,
                cancel=job.cancel,
                progress=progress,
                foreground=job.foreground,
            )
            job.file = out
            self._record(job)
            self._finish(job, "done")
        except CancelledError:
            shutil.rmtree(folder, ignore_errors=True)
            self._finish(job, "cancelled")
        except Exception as err:  # reported to the client through exportJob, logged in full
            shutil.rmtree(folder, ignore_errors=True)
            job.error_code, job.error = client_error(err)
            self._finish(job, "failed")

    def _finish(self, job: ExportJob, status: str) -> None:
        job.status = status
        job.finished_at = time.time()
        log.info("export %s (%s, session %s): %s", job.id, job.format, job.session_id, status)


def _newest_mtime(folder: Path) -> float:
    return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())])


def init_app(app: Flask, jobs: ExportJobs) -> None:
    bp = Blueprint("exports", __name__)

    @bp.get("/exports/<job_id>/<name>")
    def download(job_id: str, name: str) -> Response:
        if not JOB_ID.fullmatch(job_id):
            return not_found()
        try:
            job = jobs.get(job_id, owner=g.get("principal"))
        except NotFoundError:
            return not_found()
        if job.file is None or job.file.name != name or not job.file.is_file():
            return not_found()
        spec = get_format(job.format)
        ignore_unusable_range(request.environ)
        return send_file(
            job.file, mimetype=spec.mime_type, as_attachment=True, download_name=name,
            conditional=True,
        )  # fmt: skip

    app.register_blueprint(bp)
