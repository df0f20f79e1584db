"""Helpers of the reliability suite (tests/test_reliability_*.py): process memory, uploads,
GraphQL error checks. Not a test module."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import requests
from service import ORIGIN, Server

KNOWN_CODES = {
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "BUSY",
    "LIMIT_EXCEEDED",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "METHOD_NOT_ALLOWED",
    "BAD_MATTE",  # a malformed matte in addMask (sam2_matting.errors.CodecError)
    "SESSION_BUSY",  # a prompt while the session propagates
}
UPLOAD = """mutation U($file: Upload!) { uploadVideo(file: $file) { path width height frameCount
  fps duration posterUrl url } }"""


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def worker_pid(server: Server, timeout: float = 10.0) -> int:
    """The gunicorn worker of ``server``: the one child of the master that is not the CLI."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # `sam2-matting serve` execs gunicorn, so the Popen pid is the master.
        kids = children(server.proc.pid)
        if len(kids) == 1:
            return kids[0]
        time.sleep(0.1)
    raise AssertionError(f"no single gunicorn worker under {server.proc.pid}: {kids}")


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def upload(
    server: Server,
    name: str,
    payload: bytes,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> requests.Response:
    """``uploadVideo`` as the stock UI sends it: a multipart POST, Origin allowed."""
    ops = json.dumps({"query": UPLOAD, "variables": {"file": None}})
    return requests.post(
        f"{server.url}/graphql",
        data={"operations": ops, "map": json.dumps({"file": ["variables.file"]})},
        files={"file": (name, payload, "video/mp4")},
        headers={"Origin": ORIGIN, **(headers or {})},
        timeout=timeout,
    )


def assert_clean_error(body: Any) -> str:
    """One coded, masked GraphQL error: returns its code."""
    text = json.dumps(body)
    assert "Traceback" not in text and "/work/" not in text and "/tmp/" not in text, text[:500]
    errors = body.get("errors") or []
    assert errors, body
    codes = {e.get("extensions", {}).get("code") for e in errors}
    assert codes <= KNOWN_CODES, body
    return str(errors[0]["extensions"]["code"])


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def wait_exit(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (not our child) is gone within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
