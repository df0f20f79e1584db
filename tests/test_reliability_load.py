"""Load: many clients at once on the real service (tiny model), bounded in count and time.

The bounded form runs in CI; ``-m slow`` runs the longer one whose figures are in
docs/reliability.md. Both use benchmarks/load_test.py, which checks every answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from service import Server, launch, stop

from sam2_matting.tiny import TinyModelFiles

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from load_test import parser, percentile, run_load


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = launch(
        tiny_model,
        shared_videos,
        tmp_path_factory.mktemp("load"),
        SAM2_MATTING_MAX_SESSIONS="3",
        SAM2_MATTING_THREADS="12",
    )
    yield s
    stop(s)


def _args(server: Server, **kw: object) -> argparse.Namespace:
    args = parser().parse_args(["--url", server.url])
    for key, value in kw.items():
        setattr(args, key, value)
    return args


def _check(report: dict, args: argparse.Namespace) -> None:  # type: ignore[type-arg]
    print(json.dumps(report, indent=1))
    assert report["failures"] == {}, report["failure_examples"]
    assert report["threads_alive"] == 0
    # Every outcome is a success or the documented refusal at the session cap.
    assert set(report["outcomes"]) <= {"ok", "BUSY"}, report["outcomes"]
    assert report["sessions_completed"] == args.sessions
    assert report["frames_streamed"] == args.sessions * args.frames
    for kind in ("startSession", "addPoints", "session", "mattes", "closeSession"):
        stats = report["latency"][kind]
        assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert sum(report["outcomes"].values()) == report["requests"]
    assert report["latency"]["stream-ndjson"]["count"] > 0
    assert report["latency"]["stream-multipart"]["count"] > 0


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (0.5, 0.95, 0.99, 1.0)] == [50, 95, 99, 100]
    assert percentile([3.0], 0.99) == 3.0 and percentile([], 0.5) == 0.0


def test_concurrent_sessions_under_load(server: Server) -> None:
    """8 clients, 3 session slots: BUSY is answered and retried, nothing else fails, and no
    session's objects, frames or mattes show up in another client's session."""
    args = _args(server, clients=8, sessions=24, frames=3, duration=150.0, timeout=60.0)
    started = time.monotonic()
    report = run_load(args)
    _check(report, args)
    assert report["outcomes"].get("BUSY", 0) > 0  # 8 clients on 3 slots did meet the cap
    assert time.monotonic() - started < args.duration + 30
    metrics = server.gql("{ videos { edges { node { path } } } }")  # still answering
    assert len(metrics["data"]["videos"]["edges"]) == 3


def test_the_load_script_stops_at_its_time_limit(server: Server) -> None:
    args = _args(server, clients=2, sessions=10_000, frames=2, duration=4.0, timeout=30.0)
    started = time.monotonic()
    report = run_load(args)
    assert time.monotonic() - started < 4.0 + 30
    assert report["failures"] == {} and report["sessions_completed"] < 10_000


@pytest.mark.slow
def test_full_load(tiny_model: TinyModelFiles, shared_videos: Path, tmp_path: Path) -> None:
    """The figures of docs/reliability.md: 16 clients on 8 session slots, 80 sessions."""
    s = launch(
        tiny_model,
        shared_videos,
        tmp_path,
        SAM2_MATTING_MAX_SESSIONS="8",
        SAM2_MATTING_THREADS="20",
    )
    try:
        args = _args(s, clients=16, sessions=80, frames=4, duration=600.0, timeout=120.0)
        report = run_load(args)
        (tmp_path / "load.json").write_text(json.dumps(report, indent=1))
        _check(report, args)
    finally:
        stop(s)
