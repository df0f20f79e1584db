"""The reliability fixes on their own, in-process: per-client tokens, exports that outlive a
restart (and half-written ones that do not), a session closed between two propagation
steps, and a cancel that arrives while a step waits for the model lock."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sam2_matting.errors import InvalidInputError, NotFoundError
from sam2_matting.predictor import CancelToken, FairLock, MattingPredictor, iter_with_context
from server.config import Settings
from server.exports import RECORD, STALE_SECONDS, ExportJobs


def test_client_tokens() -> None:
    s = Settings.from_env({"API_TOKENS": "alice:a-1, bob:b-2", "API_TOKEN": "t-0"})
    assert s.principals() == {"default": "t-0", "alice": "a-1", "bob": "b-2"}
    assert Settings().principals() == {}
    for bad in ("alice", "alice:", ":tok", "a:x,a:y", "a:x,b:x"):
        with pytest.raises(InvalidInputError):
            Settings.from_env({"API_TOKENS": bad}).principals()


def _finished(root: Path, job_id: str, owner: str | None, age: float = 0.0) -> Path:
    folder = root / "exports" / job_id
    folder.mkdir(parents=True)
    (folder / "clip_matte.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    meta = {"session_id": "s", "format": "png-zip", "object_ids": [1], "frames": 7,
            "file": "clip_matte.zip", "owner": owner}  # fmt: skip
    (folder / RECORD).write_text(json.dumps(meta))
    if age:
        past = time.time() - age
        for p in [*folder.iterdir(), folder]:
            os.utime(p, (past, past))
    return folder


def test_finished_exports_outlive_a_restart_and_half_written_ones_do_not(tmp_path: Path) -> None:
    kept = _finished(tmp_path, "a" * 32, "alice")
    expired = _finished(tmp_path, "b" * 32, None, age=7200)
    partial = tmp_path / "exports" / ("c" * 32)  # a killed process's job: no record
    partial.mkdir()
    (partial / ".clip_matte.mov.1234.partial").write_bytes(b"half")
    old = time.time() - STALE_SECONDS - 10
    for p in [*partial.iterdir(), partial]:
        os.utime(p, (old, old))
    young = tmp_path / "exports" / ("d" * 32)  # maybe another replica's running job
    young.mkdir()
    (young / ".x.partial").write_bytes(b"running")

    jobs = ExportJobs(tmp_path, ttl=3600)  # a restart: the scan runs at start
    assert kept.is_dir() and young.is_dir()
    assert not expired.exists() and not partial.exists()
    job = jobs.get("a" * 32, owner="alice")
    assert (job.status, job.done, job.format, job.url_path) == (
        "done", 7, "png-zip", f"exports/{'a' * 32}/clip_matte.zip"
    )  # fmt: skip
    with pytest.raises(NotFoundError):
        jobs.get("a" * 32, owner="bob")  # another client's
    with pytest.raises(NotFoundError):
        jobs.get("d" * 32)  # not finished
    with pytest.raises(NotFoundError):
        jobs.get("../" + "a" * 29)
    jobs.shutdown()
    jobs.drop_session("s")  # after shutdown, a session closing keeps its finished export
    assert kept.is_dir()


def test_a_session_closed_between_two_steps_stops_quietly(
    predictor: MattingPredictor, bedroom_video: Path
) -> None:
    session = predictor.open(bedroom_video)
    session.add_points(0, 1, [[300, 200]], [1])
    frames = session.propagate(0, cancel=CancelToken())  # an outside token: close() cannot
    first = next(frames)  # cancel it, the closed state must stop the run by itself
    session.close()
    assert first.frame_index == 0 and list(frames) == []
    assert session.object_ids == () and not session.is_propagating
    with pytest.raises(NotFoundError):
        session.add_points(0, 1, [[300, 200]], [1])
    with pytest.raises(NotFoundError):
        session.propagate(0)


def test_a_cancel_during_the_wait_for_the_lock_stops_the_step() -> None:
    lock = FairLock()
    token = CancelToken()
    steps: list[int] = []

    def gen() -> Any:
        for i in range(5):
            steps.append(i)
            yield i

    out: list[int] = []
    lock.acquire()  # someone else holds the model
    reader = threading.Thread(
        target=lambda: out.extend(iter_with_context(gen(), lambda: lock, token))
    )
    reader.start()
    time.sleep(0.2)
    token.cancel()  # while the reader waits for the lock
    lock.release()
    reader.join(10)
    assert out == [] and steps == []  # nothing computed after the cancel
