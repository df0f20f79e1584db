"""The hostile input corpus (tests/fixtures/hostile, made by scripts/make_hostile_corpus.py)
through every door: ``uploadVideo``, ``startSession`` (the files as the gallery) and
``sam2-matting matte``. Each file gets the answer its manifest.json entry names, a clear error
or a correct result, in bounded time and memory, and a failure leaves no file behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability import assert_clean_error, files_under, rss_mib, upload, worker_pid
from service import CLOSE, Server, launch, stop

from sam2_matting.tiny import TinyModelFiles
from sam2_matting.video import open_video

CORPUS = Path(__file__).parent / "fixtures" / "hostile"
MANIFEST: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text())
NAMES = sorted(MANIFEST)
UPLOAD_SECONDS = 30  # per file, on 2 shared cores
SESSION_SECONDS = 60  # open, click, stream 2 frames, close
MATTE_SECONDS = 90
MEMORY_MARGIN_MIB = 300  # worker growth over the whole corpus


def test_the_committed_corpus_is_the_script_output() -> None:
    script = Path(__file__).parents[1] / "scripts" / "make_hostile_corpus.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    total = sum((CORPUS / n).stat().st_size for n in NAMES)
    assert total < 3 * 1024 * 1024 and len(NAMES) >= 25
    for name, entry in MANIFEST.items():
        assert (CORPUS / name).stat().st_size == entry["bytes"], name
        assert set(entry["expected"]) == {"upload", "session", "matte"}


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("corpus")
    gallery = root / "gallery"
    gallery.mkdir()
    for name in NAMES:  # the corpus is the gallery: startSession names them
        (gallery / name).symlink_to((CORPUS / name).resolve())
    # The default limits (the launch helper lowers only the upload size, to 3 MiB).
    s = launch(tiny_model, shared_videos, root, SAM2_MATTING_DEFAULT_VIDEO="valid.mp4")
    s.worker = worker_pid(s)  # type: ignore[attr-defined]
    s.rss_start = rss_mib(s.worker)  # type: ignore[attr-defined]
    s.answers = {}  # type: ignore[attr-defined]
    yield s
    stop(s)


def _use(server: Server, path: str) -> int:
    """startSession, a click, a 2-frame stream, closeSession; the frames streamed."""
    sid = server.start(path)
    try:
        server.click(sid, frame=0, obj=1, xy=(0.5, 0.5))
        resp = server.stream(
            {"session_id": sid, "direction": "forward", "max_frames": 2}, ndjson=True
        )
        assert resp.status_code == 200, resp.text
        lines = [json.loads(x) for x in resp.iter_lines() if x]
        end = lines[-1]
        assert end["type"] == "end" and not end["cancelled"], end
        return int(end["frames"])
    finally:
        server.data_of(CLOSE, {"input": {"sessionId": sid}})


@pytest.mark.parametrize("name", NAMES)
def test_upload_and_session(server: Server, name: str) -> None:
    entry = MANIFEST[name]["expected"]
    answers: dict[str, Any] = {}
    # -- uploadVideo
    started = time.monotonic()
    r = upload(server, name, (CORPUS / name).read_bytes(), timeout=UPLOAD_SECONDS + 30)
    answers["upload_s"] = round(time.monotonic() - started, 2)
    assert answers["upload_s"] < UPLOAD_SECONDS
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    if entry["upload"]["ok"]:
        assert "errors" not in body, body
        video = body["data"]["uploadVideo"]
        if "frames" in entry["upload"]:
            assert video["frameCount"] == entry["upload"]["frames"]
        assert [video["width"], video["height"]] == entry["upload"]["size"]
        assert video["fps"] > 0 and video["duration"] > 0
        assert _use(server, video["path"]) == min(2, video["frameCount"])
        answers["upload"] = f"ok: {video['frameCount']} frames {video['width']}x{video['height']}"
    else:
        code = assert_clean_error(body)
        assert code == entry["upload"]["code"], body
        answers["upload"] = f"{code}: {body['errors'][0]['message']}"
    assert files_under(server.data / "tmp") == []  # nothing outlives the request
    # -- startSession on the same file in the gallery
    started = time.monotonic()
    if entry["session"]["ok"]:
        with open_video(CORPUS / name) as source:
            frames = source.frame_count
        assert _use(server, f"gallery/{name}") == min(2, frames)
        answers["session"] = "ok"
    else:
        body = server.gql(
            "mutation S($p: String!) { startSession(input: {path: $p}) { sessionId } }",
            {"p": f"gallery/{name}"},
        )
        code = assert_clean_error(body)
        assert code == entry["session"]["code"], body
        answers["session"] = f"{code} (not in the gallery)"
    answers["session_s"] = round(time.monotonic() - started, 2)
    assert answers["session_s"] < SESSION_SECONDS
    server.answers[name] = answers  # type: ignore[attr-defined]


def test_after_the_corpus_memory_and_disk_are_bounded(server: Server) -> None:
    if len(server.answers) != len(NAMES):  # type: ignore[attr-defined]
        pytest.skip("needs the whole corpus run first (run the module)")
    growth = rss_mib(server.worker) - server.rss_start  # type: ignore[attr-defined]
    print(f"worker RSS growth over the corpus: {growth:.0f} MiB")
    print(json.dumps(server.answers, indent=1))  # type: ignore[attr-defined]
    assert growth < MEMORY_MARGIN_MIB
    assert worker_pid(server) == server.worker  # type: ignore[attr-defined]
    uploads = files_under(server.data / "uploads")
    accepted = [n for n in NAMES if MANIFEST[n]["expected"]["upload"]["ok"]]
    # Content-addressed: a rejected upload left nothing; accepted ones may share a file.
    assert 0 < len(uploads) <= len(accepted)
    assert all(p.suffix == ".mp4" and len(p.stem) == 64 for p in uploads)
    assert files_under(server.data / "tmp") == []
    assert not [p for p in files_under(server.data) if p.name.startswith(".")]


# -- sam2-matting matte ----------------------------------------------------------------------

DRIVER = r"""
import contextlib, io, json, resource, sys, time
import sam2_matting.cli.matte as matte
from sam2_matting.cli import main
# Every run names the same model: build it once (the slow test runs the real command).
build, built = matte._predictor, []
matte._predictor = lambda args: built[0] if built else built.append(build(args)) or built[0]
job = json.loads(sys.argv[1])
for name in job["names"]:
    err, started = io.StringIO(), time.monotonic()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["matte", job["corpus"] + "/" + name, *job["args"],
                     "--out", job["out"] + "/" + name])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"name": name, "code": code, "stderr": err.getvalue().strip(),
                      "seconds": round(time.monotonic() - started, 2),
                      "peak_growth_mib": round((peak - before) / 1024, 1)}), flush=True)
"""


def _matte_args(tiny_model: TinyModelFiles) -> list[str]:
    return [
        "--point", "0.5,0.5", "--normalized", "--format", "alpha", "--max-frames", "2",
        "--direction", "forward", "--config", str(tiny_model.config),
        "--checkpoint", str(tiny_model.checkpoint), "--device", "cpu", "--no-progress",
    ]  # fmt: skip


def _check_matte(name: str, code: int, stderr: str, out_dir: Path) -> str:
    expected = MANIFEST[name]["expected"]["matte"]
    out = out_dir / name
    if expected["ok"]:
        assert code == 0, (name, stderr)
        with open_video(CORPUS / name) as source, open_video(out) as result:
            assert result.frame_count == source.frame_count, name
            # The alpha format is H.264 4:2:0, whose sides are even: odd sides are padded.
            even = (source.width + source.width % 2, source.height + source.height % 2)
            assert (result.width, result.height) == even, name
        return "ok"
    assert str(code) == expected["code"], (name, code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sam2-matting: error: "), (name, stderr)
    assert "Traceback" not in stderr
    assert not out.exists(), name  # nothing under the final name
    return lines[0].removeprefix("sam2-matting: error: ")


def test_matte_cli_answers_every_file(tiny_model: TinyModelFiles, tmp_path: Path) -> None:
    """All files in one process (the CLI's own main, the model built once), so CI pays one
    start-up; ``-m slow`` runs the real command per file."""
    job = {
        "names": NAMES,
        "corpus": str(CORPUS),
        "out": str(tmp_path),
        "args": _matte_args(tiny_model),
    }
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=MATTE_SECONDS * 4,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in rows] == NAMES
    for row in rows:
        row["answer"] = _check_matte(row["name"], row["code"], row["stderr"], tmp_path)
        assert row["seconds"] < MATTE_SECONDS, row
        assert row["peak_growth_mib"] < 1024, row  # no file blows memory up
    assert not [p for p in files_under(tmp_path) if ".partial" in p.name or p.name[0] == "."]
    print(json.dumps(rows, indent=1))


# Runs a command and reports its peak memory (its own RUSAGE_CHILDREN: this child only).
PEAK = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('peak-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
    " sys.exit(r.returncode)"
)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_matte_cli_as_a_process(tiny_model: TinyModelFiles, tmp_path: Path, name: str) -> None:
    """The real command per file, with its peak memory."""
    cmd = [sys.executable, "-c", PEAK, sys.executable, "-m", "sam2_matting", "matte",
           str(CORPUS / name), *_matte_args(tiny_model), "--out", str(tmp_path / name)]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=MATTE_SECONDS * 2)
    elapsed = time.monotonic() - started
    *lines, peak = done.stderr.strip().splitlines()
    assert peak.startswith("peak-kib ")
    _check_matte(name, done.returncode, "\n".join(lines), tmp_path)
    assert elapsed < MATTE_SECONDS * 2
    assert int(peak.split()[1]) < 3 * 1024 * 1024, peak  # KiB: under 3 GiB
