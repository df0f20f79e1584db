"""One clip of a batch: is it complete already, and render it (the ``matte --prompts`` path).

    key = job_key(job, model)                       # what the outputs depend on
    if not is_complete(job, key):
        result = render_clip(job, predictor, model, key)   # ClipResult, never raises for the clip

A clip is complete when its record (``OUTPUT.batch.json``, beside the outputs) exists, was
written for the same key (input, prompts file content, formats and options, model identity),
and every output it lists is there with the recorded size (``verify``: and the same sha256).
The record is written last, through a temporary name, after every output was renamed into
place; an interrupted clip therefore has no record and is rendered again. Its outputs are
written under temporary names by the export writers; stale temporary files of a killed run are
removed before a clip is rendered again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from sam2_matting.batch.manifest import ClipJob
from sam2_matting.batch.report import ClipResult, Reporter, one_line
from sam2_matting.errors import MattingError

RECORD_FORMAT = "sam2-matting-batch-record"
RECORD_SUFFIX = ".batch.json"


def record_path(job: ClipJob) -> Path:
    return job.output.with_name(job.output.name + RECORD_SUFFIX)


def output_paths(job: ClipJob) -> list[Path]:
    from sam2_matting.cli.matte import output_paths as paths
    from sam2_matting.export import get_format

    return paths(job.input, str(job.output), [get_format(f) for f in job.formats])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: Path, *, content: bool = True) -> dict[str, Any]:
    """Size and (``content``) sha256 of a file, or of a folder's files (a png sequence)."""
    if not path.is_dir():
        out: dict[str, Any] = {"bytes": path.stat().st_size}
        if content:
            out["sha256"] = _sha256(path)
        return out
    files = sorted(p for p in path.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{_sha256(f) if content else f.stat().st_size}\0".encode())
    fp: dict[str, Any] = {"bytes": sum(f.stat().st_size for f in files)}
    if content:
        fp["sha256"] = digest.hexdigest()
    return fp


def job_key(job: ClipJob, model: dict[str, Any]) -> str | None:
    """The sha256 of what ``job``'s outputs depend on; ``None`` if its files cannot be read
    (the clip is then rendered, and fails with the reason)."""
    try:
        what = {
            **job.describe(),
            "input_bytes": job.input.stat().st_size,
            "prompts_sha256": _sha256(job.prompts),
            "model": model,
        }
    except OSError:
        return None
    text = json.dumps(what, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def is_complete(job: ClipJob, key: str | None, *, verify: bool = False) -> bool:
    """Whether ``job``'s outputs are the complete outputs of ``key`` (see the module)."""
    if key is None:
        return False
    try:
        record = json.loads(record_path(job).read_text(encoding="utf-8"))
        if record.get("format") != RECORD_FORMAT or record.get("key") != key:
            return False
        listed = record["outputs"]
        if sorted(o["name"] for o in listed) != sorted(p.name for p in output_paths(job)):
            return False
        for entry in listed:
            found = fingerprint(job.output.parent / entry["name"], content=verify)
            if any(found[k] != entry[k] for k in found):
                return False
    except (OSError, ValueError, KeyError, TypeError, MattingError):
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_stale(outputs: list[Path]) -> None:
    """Temporary outputs a killed run left (``.NAME.<random>.partial``, see export.writers)."""
    for out in outputs:
        if out.parent.is_dir():
            for stale in out.parent.glob(f".{out.name}.*.partial*"):
                _remove(stale)


def _state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _write_record(job: ClipJob, key: str, outputs: list[Path], seconds: float) -> None:
    record = {
        "format": RECORD_FORMAT,
        "version": 1,
        "key": key,
        "input": str(job.input),
        "prompts": str(job.prompts),
        "seconds": round(seconds, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "outputs": [{"name": p.name, **fingerprint(p)} for p in outputs],
    }
    path = record_path(job)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def matte_args(job: ClipJob, *, allow_other_model: bool, progress: bool) -> argparse.Namespace:
    """The ``matte`` arguments of ``job``: ``matte INPUT --prompts P --out OUTPUT ...``."""
    return argparse.Namespace(
        input=str(job.input),
        prompts_file=str(job.prompts),
        prompts=[],
        normalized=False,
        allow_other_model=allow_other_model,
        save_prompts=None,
        format=",".join(job.formats),
        out=str(job.output),
        background=job.background,
        premultiplied=job.premultiplied,
        foreground=job.foreground,
        export_object=list(job.export_objects) if job.export_objects else None,
        direction=job.direction,
        max_frames=job.max_frames,
        no_progress=not progress,
    )


def render_clip(
    job: ClipJob,
    predictor: Any,
    model: dict[str, Any],
    key: str | None,
    *,
    allow_other_model: bool = False,
    progress: bool = False,
    worker: str = "local",
) -> ClipResult:
    """Render ``job`` with the loaded ``predictor`` (``model``: its identity) as ``matte
    --prompts`` does, then write its record. Any error of the clip is its result (status
    ``failed`` and the one-line reason); outputs it had written are removed."""
    from sam2_matting import prompts_file as pf
    from sam2_matting.cli.matte import check_args, render

    started = time.perf_counter()
    outputs: list[Path] = []
    before: dict[Path, Any] = {}
    warnings: list[str] = []
    try:
        record_path(job).unlink(missing_ok=True)
        args = matte_args(job, allow_other_model=allow_other_model, progress=progress)
        formats, outputs = check_args(args)
        before = {p: _state(p) for p in outputs}
        _remove_stale(outputs)
        doc = pf.load(job.prompts)
        pf.check_video(doc, job.input)
        warnings = pf.check_model(doc, model, allow_other=allow_other_model)
        render(args, predictor, formats, outputs, doc, model)
        seconds = time.perf_counter() - started
        if key is not None:
            _write_record(job, key, outputs, seconds)
        frames = int(doc.video["frame_count"])
        return ClipResult(job.line, job.name, "ok", frames, seconds, outputs, "", worker, warnings)
    except (KeyboardInterrupt, SystemExit):
        _undo(outputs, before)
        raise
    except Exception as err:  # the clip fails, the batch goes on
        _undo(outputs, before)
        seconds = time.perf_counter() - started
        return ClipResult(job.line, job.name, "failed", 0, seconds, [], one_line(err), worker)


def _undo(outputs: list[Path], before: dict[Path, Any]) -> None:
    """Remove the outputs this attempt wrote (a clip is all its outputs or none)."""
    for out in outputs:
        if _state(out) != before.get(out):
            _remove(out)


def plan(
    jobs: list[ClipJob], model: dict[str, Any], *, force: bool = False, verify: bool = False
) -> tuple[list[tuple[ClipJob, str | None]], list[ClipResult]]:
    """The clips to render (with their keys) and the results of those skipped as complete."""
    todo: list[tuple[ClipJob, str | None]] = []
    skipped: list[ClipResult] = []
    for job in jobs:
        key = job_key(job, model)
        if not force and is_complete(job, key, verify=verify):
            skipped.append(ClipResult(job.line, job.name, "skipped", outputs=output_paths(job)))
        else:
            todo.append((job, key))
    return todo, skipped


def plan_and_report(
    jobs: list[ClipJob],
    model: dict[str, Any],
    reporter: Reporter,
    *,
    force: bool = False,
    verify: bool = False,
) -> list[tuple[ClipJob, str | None]]:
    """:func:`plan`, with the skipped clips reported and the number to render announced: the
    start of every runner. Returns the clips to render."""
    todo, skipped = plan(jobs, model, force=force, verify=verify)
    for result in skipped:
        reporter.add(result)
    reporter.expect(len(todo))
    return todo
