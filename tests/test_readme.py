"""The README's shell blocks work as written on a fresh clone.

Every fenced ``bash`` block of README.md is either run or skipped, and both lists below say
which and why; a block in neither fails the test (so a new example cannot go untested by
accident). The blocks that talk to the service run against the real service (``sam2-matting
serve``, gunicorn, the tiny random model, the shipped ``gallery/``), with only the host and port
replaced; each must exit 0 with no GraphQL error and no error line in a stream. The set-up
blocks are what CI itself runs (``scripts/setup.sh``, ``scripts/test.sh``); the blocks that need
SAM 2.1's real weights are checked without them: every ``sam2-matting`` command in them must
parse with the real CLI, and every file of the clone that the README names must exist; with
``-m slow`` the ``matte`` commands run as written plus the tiny model and ``--max-frames 3``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_ADDRESS = "localhost:7263"

# First line of a block -> why it runs.
RUN = {
    "# curl, with the service running: start a session on a gallery video, click the middle of": (
        "the service's GraphQL and stream, against the served tiny model"
    ),
}
# First line of a block -> why it is not run here.
SKIPPED = {
    "bash scripts/serve.sh        # set up .venv, download SAM 2.1 large if missing, serve on :7263": (
        "set-up and a 900 MB download; CI runs scripts/setup.sh, the service runs below"
    ),
    "bash scripts/test.sh         # set up .venv, then ruff, mypy, the JavaScript tests and pytest": (
        "it is CI itself"
    ),
    "python3 -m venv .venv": "scripts/setup.sh, which CI runs",
    "sam2-matting download --list                 # the four SAM 2.1 sizes and what is present": (
        "downloads from Meta's server (no internet in CI); commands parsed below"
    ),
    "sam2-matting matte gallery/02_horse.mp4 --point 320,200 --format prores --out out/horse": (
        "needs SAM 2.1 large; commands parsed below, the same options run in test_cli_matte.py"
    ),
    "sam2-matting serve --model large --port 7263   # --adapter DIR merges a LoRA matting adapter": (
        "needs SAM 2.1 large; the service runs below with the tiny model"
    ),
}


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.S | re.M)


def first_line(block: str) -> str:
    return next(line for line in block.splitlines() if line.strip()).rstrip()


def commands(block: str) -> Iterator[list[str]]:
    """The argv of each command line of ``block`` (continuations joined, comments dropped)."""
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            yield argv


def test_every_shell_block_is_run_or_skipped_with_a_reason() -> None:
    firsts = [first_line(b) for b in shell_blocks(README.read_text())]
    unlisted = [f for f in firsts if f not in RUN and f not in SKIPPED]
    assert not unlisted, f"README shell blocks neither run nor skipped in {__file__}: {unlisted}"
    gone = [f for f in [*RUN, *SKIPPED] if f not in firsts]
    assert not gone, f"listed blocks no longer in the README: {gone}"
    assert len(firsts) == len(set(firsts)), "two blocks start with the same line"


def test_skipped_commands_parse_and_name_files_that_exist() -> None:
    from sam2_matting.cli import build_parser

    parser = build_parser()
    checked = 0
    for block in shell_blocks(README.read_text()):
        if first_line(block) not in SKIPPED:
            continue
        for argv in commands(block):
            if argv[0] == "sam2-matting":
                try:
                    parser.parse_args(argv[1:])
                except SystemExit as exit_:
                    pytest.fail(f"README command does not parse ({exit_.code}): {shlex.join(argv)}")
                checked += 1
            if argv[0] == "bash":
                assert (REPO / argv[1]).is_file(), argv
    assert checked >= 6
    # Every file of the clone the README names (gallery videos, scripts, docs) is there.
    text = README.read_text()
    for path in set(re.findall(r"\b((?:gallery|scripts|docs|deploy)/[\w./-]*\w)", text)):
        assert (REPO / path).exists(), f"README names {path}, which the clone does not have"


@pytest.mark.slow
def test_matte_commands_run_with_the_tiny_model(tiny_model: Any, tmp_path: Path) -> None:
    """The README's ``matte`` commands as written, plus the tiny model and a frame bound."""
    (tmp_path / "gallery").symlink_to(REPO / "gallery")
    tiny = [
        "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
        "--device", "cpu", "--no-progress", "--max-frames", "3",
    ]  # fmt: skip
    ran = 0
    for block in shell_blocks(README.read_text()):
        for argv in commands(block):
            if argv[:2] != ["sam2-matting", "matte"]:
                continue
            cmd = [sys.executable, "-m", "sam2_matting", *argv[1:], *tiny]
            done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, (argv, done.stderr[-2000:])
            for line in done.stdout.splitlines():
                if line.startswith("wrote "):
                    assert (tmp_path / line.removeprefix("wrote ")).stat().st_size > 0
            ran += 1
    assert ran >= 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``sam2-matting serve`` (gunicorn) with the tiny model and the shipped gallery."""
    root = tmp_path_factory.mktemp("readme-service")
    port = _free_port()
    env = {
        **os.environ,
        "SAM2_MATTING_GALLERY": str(REPO / "gallery"),
        "SAM2_MATTING_DATA": str(root / "data"),
        "SAM2_MATTING_DEVICE": "cpu",
        "SAM2_MATTING_THREADS": "4",
    }
    cmd = [
        sys.executable, "-m", "sam2_matting", "serve",
        "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("service did not start: " + log_path.read_text()[-3000:])
            try:
                if requests.get(f"http://{address}/ready", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.3)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert "Traceback" not in log_path.read_text()


def json_documents(out: str) -> list[Any]:
    """The JSON documents printed one after another (with or without newlines between)."""
    decoder, i = json.JSONDecoder(), 0
    docs: list[Any] = []
    while True:
        while i < len(out) and out[i].isspace():
            i += 1
        if i >= len(out):
            return docs
        doc, i = decoder.raw_decode(out, i)
        docs.append(doc)


def _check_output(first: str, out: str) -> None:
    lines = json_documents(out)
    assert lines, f"block {first!r} printed no JSON: {out[:500]}"
    for doc in lines:
        assert "errors" not in doc, f"GraphQL error from block {first!r}: {doc}"
        assert "error" not in doc and doc.get("type") != "error", (first, doc)
    stream = [doc for doc in lines if "type" in doc]
    if stream:
        assert stream[-1]["type"] == "end", f"the stream did not end cleanly: {stream[-1]}"
        assert stream[-1].get("cancelled") is not True, stream[-1]


@pytest.mark.parametrize("first", list(RUN))
def test_service_blocks_run_against_the_served_tiny_model(
    first: str, service: str, tmp_path: Path
) -> None:
    block = next(b for b in shell_blocks(README.read_text()) if first_line(b) == first)
    assert README_ADDRESS in block
    script = block.replace(README_ADDRESS, service)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_output(first, proc.stdout)
    docs = json_documents(proc.stdout)
    frames = [d for d in docs if d.get("type") == "frame"]
    assert docs[0]["data"]["addPoints"]["rleMaskList"] == [{"objectId": 1}]
    assert [f["current"] for f in frames] == list(range(1, 97)), "every frame, forward from 0"
