"""`sam2-matting batch --ray local --workers 2`: a private Ray instance, two CPU worker actors.

The clips are rendered by both workers (one task per clip), to the mattes of `matte --prompts`
byte for byte (a reference of the workers' one torch thread); a failing clip is reported and the others are rendered; a rerun skips them all
without starting Ray.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.test_batch import _clip, alphas, model_args, write_manifest

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[1]


def _batch(tiny_model: Any, manifest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sam2_matting", "batch", str(manifest), *extra,
           *model_args(tiny_model)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_ray_with_two_workers(predictor: Any, tiny_model: Any, tmp_path: Path) -> None:
    from sam2_matting import prompts_file as pf

    model = pf.model_identity(tiny_model.config, tiny_model.checkpoint)
    lines = []
    for name, shift, point in (("a", 0, [22, 30]), ("b", 12, [35, 30])):
        clip = _clip(tmp_path / f"{name}.mp4", shift)
        with predictor.open(clip) as plain:
            session = pf.record(plain, model=model)
            session.add_points(0, 1, [point], [1])
            pf.dump(session.document(), tmp_path / f"{name}.prompts.json")
        lines.append({"input": f"{name}.mp4", "prompts": f"{name}.prompts.json",
                      "output": f"out/{name}", "formats": "png"})  # fmt: skip
    lines.append({"input": "a.mp4", "prompts": "b.prompts.json", "output": "out/wrong"})
    manifest = write_manifest(tmp_path, lines)

    done = _batch(tiny_model, manifest, "--ray", "local", "--workers", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    progress = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 3 and "ray: 2 workers (1 CPU each) for 3 clips" in done.stdout
    assert "a.mp4: rendering (line 1)" in done.stdout  # as each clip is handed to a worker
    failed = [line for line in progress if "FAILED" in line]
    assert len(failed) == 1 and "the prompts file is for another video" in failed[0]
    workers = {
        m.group(1) for m in re.finditer(r": ok, \d+ frames in [\d.]+ s on (\S+)", done.stdout)
    }
    assert len(workers) == 2, done.stdout  # both actors rendered clips
    assert done.stdout.strip().splitlines()[-1].startswith("3 clips: 2 rendered, 0 skipped")

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "a", "a.batch.json", "b", "b.batch.json",
    ]  # fmt: skip
    # a worker of one CPU runs torch with one thread: the reference does too (see runner_ray)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name in ("a", "b"):
        ref = subprocess.run(
            [sys.executable, "-m", "sam2_matting", "matte", str(tmp_path / f"{name}.mp4"),
             "--prompts", str(tmp_path / f"{name}.prompts.json"), "--format", "png",
             "--out", str(tmp_path / f"ref_{name}"), *model_args(tiny_model)],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert ref.returncode == 0, ref.stderr
        for mine, theirs in zip(alphas(out / name), alphas(tmp_path / f"ref_{name}"), strict=True):
            assert mine.tobytes() == theirs.tobytes()

    write_manifest(tmp_path, lines[:2])
    again = _batch(tiny_model, manifest, "--ray", "local", "--workers", "2", "--report",
                   str(tmp_path / "r.json"))  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("skipped, complete") == 2 and "ray:" not in again.stdout
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["skipped"] == 2
