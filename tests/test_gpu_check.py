"""The GPU check's smoke mode on the CPU: every code path of benchmarks/gpu_check.py runs.

The real script, as a subprocess: the tiny random model at 256 px through the model-only
child, the real service (``sam2-matting serve``) streaming over HTTP, sessions opened until
``BUSY`` at a cap of 2, and a ``vos_optimized`` variant whose compile budget (2 s) runs out.
The figures themselves are not checked (random weights, a shared CPU): only that every row
and every measurement is there, with a value or a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
HEADER = (
    "| model | dtype | vos_optimized | model-only fps | warm-up s | HTTP stream fps | stream ÷ model "
    "| GPU MiB/session peak | held after last frame | left after close | sessions before BUSY "
    "| service MiB/session | notes |"
)


def test_smoke_run_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(out), "--work", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("GPU check (smoke), cpu"), lines[0]
    assert "RANDOM weights" in lines[0]
    assert HEADER in lines
    assert any(line.startswith("| tiny | float32 | off | ") for line in lines), proc.stdout
    assert any(line.startswith("| tiny | float32 | on | ") for line in lines), proc.stdout

    report = json.loads(out.read_text())
    assert report["meta"]["mode"] == "smoke" and report["meta"]["weights"] == "random"
    assert report["table"] in proc.stdout
    plain, compiled = report["rows"]
    assert (plain["model"], plain["dtype"], plain["vos_optimized"]) == ("tiny", "float32", False)
    assert (compiled["vos_optimized"], compiled["dtype"]) == (True, "float32")

    # model-only, HTTP stream and their ratio: measured
    assert plain["model_fps"] > 0 and plain["warmup_s"] > 0
    assert plain["stream_fps"] > 0
    assert plain["stream_over_model"] == plain["stream_fps"] / plain["model_fps"]
    # memory: n/a on a CPU, said so
    for key in ("peak_mib", "held_mib", "left_after_close_mib", "service_mib_per_session"):
        assert plain[key] is None
    assert "memory n/a (no CUDA)" in plain["notes"]
    # sessions until BUSY: the cap of 2 is reached first, then BUSY
    detail = plain["sessions_detail"]
    assert plain["sessions"] == "2 (cap)"
    assert detail["sessions"] == 2 and detail["limit"] == 2 and detail["stopped_by"] == "cap"
    assert detail["refusal"].startswith("BUSY")
    # no other note: the service started, streamed and stopped without a traceback
    assert plain["notes"] == ["memory n/a (no CUDA)"]

    # the compiled variant: measured, or skipped with its reason (the 2 s budget on a CPU)
    assert "no HTTP row: the service has no vos_optimized setting" in compiled["notes"]
    if compiled["model_fps"] is None:
        assert any("skipped" in n and "budget" in n for n in compiled["notes"]), compiled
    else:
        assert compiled["model_fps"] > 0
