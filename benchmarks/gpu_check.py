"""The GPU check: speed and memory of SAM 2.1 hiera_t and hiera_l in the service, one command.

    .venv/bin/python benchmarks/gpu_check.py --json gpu-check.json     # on a CUDA host
    .venv/bin/python benchmarks/gpu_check.py --smoke --json smoke.json  # CPU, tiny model, < 1 min
    (bash benchmarks/gpu_check.sh [OUT.json] wraps the first)

Every model has RANDOM weights (speed and memory do not depend on them): the configs and
official-format checkpoints are written at the start (``gpu_check_model.make_random_model``;
nothing is downloaded). For hiera_t and hiera_l at 1024 px, fp32 and bf16 autocast, without
and with ``vos_optimized`` (SAM 2's ``torch.compile``d predictor), on a real 720p video
(``01_dog.mp4``), it measures:

- **model-only fps**: pre-decoded, pre-resized frames on the device through our session and
  SAM 2's propagate (``gpu_check_model.py``, one process per variant);
- **GPU memory per session**: ``torch.cuda.max_memory_allocated`` over one session, the memory
  it still holds after its last frame and what is left after ``close`` (n/a on a CPU);
- **stream fps over HTTP**: the real service (``sam2-matting serve`` on 127.0.0.1 with the
  random checkpoint), one NDJSON propagation with every frame's matte and COCO mask encoded
  (``gpu_check_http.py``); the service has no ``vos_optimized`` setting, so compiled rows have
  none;
- **sessions before BUSY**: with the service's session cap raised (``--session-limit``), how
  many sessions (start, click, a short stream each) open before it refuses one, at the dtype
  the service defaults to (bf16 on CUDA); it also gives the service's CUDA memory per session.

The warm-up frames (``--warmup``) are not counted. The whole run gets ``--budget`` seconds;
the compiled variants run last, bf16 and the smaller model first, each taking what is left up
to ``--compile-budget`` seconds; a step over its budget is skipped with a note. ``--models``
and ``--dtypes`` pick a subset. Prints one markdown table and writes everything to
``--json``. ``--smoke`` runs every code path on the CPU in well under a minute: the tiny model
at 256 px, a few frames, a compile budget of 2 s and a session cap of 2. Its figures are
plumbing checks, never results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from gpu_check_http import ServiceError, launch, sessions_until_busy, stop, stream_fps
from gpu_check_model import SAM2_CONFIGS, make_random_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VIDEO = REPO.parent / "shared" / "data" / "videos" / "01_dog.mp4"
LOAD_ALLOWANCE = 120.0  # seconds a child may take to load, on top of its session budget
LOAD_RESERVE = 30.0  # seconds of the run's budget kept for loading a compiled variant
PLAIN_BUDGET = 300.0  # seconds for a session of a variant that is not compiled
SERVICE_RESERVE = 20.0  # seconds of the run's budget a service run needs at least

FULL: dict[str, Any] = {
    "device": "cuda",
    "models": ("hiera_t", "hiera_l"),
    "image_size": 1024,
    "dtypes": ("float32", "bfloat16"),
    "sessions_dtype": "bfloat16",
    "warmup": 16,  # SAM 2's memory bank fills up in 7 frames, its object pointers in 16
    "frames": 40,
    "session_limit": 32,
    "session_frames": 4,
    "compile_budget": 150.0,
    "budget": 450.0,
    "threads": 0,
}
SMOKE: dict[str, Any] = {
    "device": "cpu",
    "models": ("tiny",),
    "image_size": 256,
    "dtypes": ("float32",),
    "sessions_dtype": "float32",
    "warmup": 2,
    "frames": 4,
    "session_limit": 2,
    "session_frames": 1,
    "compile_budget": 2.0,
    "budget": 240.0,  # a bound on a busy machine; the smoke run takes well under a minute
    "threads": 1,
}
COLUMNS = (
    ("model", "model", "{}"),
    ("dtype", "dtype", "{}"),
    ("vos_optimized", "vos_optimized", "{}"),
    ("model-only fps", "model_fps", "{:.1f}"),
    ("warm-up s", "warmup_s", "{:.1f}"),
    ("HTTP stream fps", "stream_fps", "{:.1f}"),
    ("stream ÷ model", "stream_over_model", "{:.2f}"),
    ("GPU MiB/session peak", "peak_mib", "{:.0f}"),
    ("held after last frame", "held_mib", "{:.0f}"),
    ("left after close", "left_after_close_mib", "{:.1f}"),
    ("sessions before BUSY", "sessions", "{}"),
    ("service MiB/session", "service_mib_per_session", "{:.0f}"),
    ("notes", "notes", "{}"),
)


@dataclass(frozen=True)
class Variant:
    model: str
    dtype: str
    vos: bool

    @property
    def key(self) -> str:
        return f"{self.model}-{self.dtype}-{'vos' if self.vos else 'plain'}"


def _row(v: Variant) -> dict[str, Any]:
    row: dict[str, Any] = {"model": v.model, "dtype": v.dtype, "vos_optimized": v.vos}
    for _, key, _ in COLUMNS[3:-1]:
        row[key] = None
    row["notes"] = []
    return row


def make_models(cfg: dict[str, Any], work: Path) -> dict[str, tuple[Path, Path]]:
    from sam2_matting.tiny import make_tiny_model

    files = {}
    for name in cfg["models"]:
        if name == "tiny":
            tiny = make_tiny_model(work / "models", image_size=cfg["image_size"], seed=0)
            files[name] = (tiny.config, tiny.checkpoint)
        else:
            files[name] = make_random_model(work / "models", name, cfg["image_size"], seed=0)
    return files


def _kill_group(pgid: int) -> None:
    """End what is left of a child's process group (compile workers of a skipped run)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_model(cfg: dict[str, Any], v: Variant, files: tuple[Path, Path], video: Path,
              work: Path, budget: float, timeout: float) -> dict[str, Any]:  # fmt: skip
    """Run ``gpu_check_model.py`` for one variant in its own process group; its result.

    ``budget`` bounds the session (the child stops itself), ``timeout`` the whole process."""
    out, log = work / f"model-{v.key}.json", work / f"model-{v.key}.log"
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable, str(HERE / "gpu_check_model.py"),
        "--config", str(files[0]), "--checkpoint", str(files[1]),
        "--device", cfg["device"], "--dtype", v.dtype, "--video", str(video),
        "--warmup", str(cfg["warmup"]), "--frames", str(cfg["frames"]),
        "--budget", f"{budget:g}", "--threads", str(cfg["threads"]), "--out", str(out),
    ]  # fmt: skip
    if v.vos:
        cmd.append("--vos-optimized")
    env = dict(os.environ)
    if cfg["device"] == "cpu":
        env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait(30)
            return {"status": "skipped", "reason": f"timed out after {timeout:.0f} s"}
    if rc != 0:
        _kill_group(proc.pid)
    if out.is_file():
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    tail = " ".join(log.read_text(errors="replace").split()[-30:])
    return {"status": "failed", "reason": f"exit status {rc}, no result: {tail[-300:]}"}


def _apply_model(row: dict[str, Any], result: dict[str, Any], meta: dict[str, Any]) -> None:
    if result["status"] != "ok":
        row["notes"].append(f"model-only {result['status']}: {result.get('reason', '')}")
        return
    for key in ("fps", "warmup_s", "peak_mib", "held_mib", "left_after_close_mib"):
        row["model_fps" if key == "fps" else key] = result[key]
    if result["peak_mib"] is None:
        row["notes"].append("memory n/a (no CUDA)")
    for key in ("device", "gpu", "gpu_total_mib", "video", "image_size"):
        if key in result:
            meta.setdefault(key, result[key])


def run_service(cfg: dict[str, Any], model: str, dtype: str, files: tuple[Path, Path],
                video: Path, work: Path, row: dict[str, Any],
                deadline: float) -> None:  # fmt: skip
    """Stream fps (and, at the sessions dtype, sessions before BUSY) on a fresh service."""
    root = work / f"service-{model}-{dtype}"
    shutil.rmtree(root, ignore_errors=True)
    try:
        service = launch(files[0], files[1], device=cfg["device"], dtype=dtype, video=video,
                         root=root, max_sessions=cfg["session_limit"],
                         timeout=max(60.0, deadline - time.monotonic()))  # fmt: skip
    except (ServiceError, requests.RequestException, OSError) as err:
        row["notes"].append(f"service did not start: {str(err)[:200]}")
        return
    try:
        got = service.ready.get("dtype")
        if got != dtype:
            row["notes"].append(f"service runs {got}, not {dtype}")
        s = stream_fps(service, warmup=cfg["warmup"], frames=cfg["frames"])
        row["stream_fps"] = s["fps"]
        row["stream_first_frame_s"] = s["first_frame_s"]
        if row["model_fps"]:
            row["stream_over_model"] = s["fps"] / row["model_fps"]
        if dtype == cfg["sessions_dtype"]:
            seconds = max(5.0, min(120.0, deadline - time.monotonic() - SERVICE_RESERVE))
            b = sessions_until_busy(service, limit=cfg["session_limit"],
                                    frames_each=cfg["session_frames"], seconds=seconds)  # fmt: skip
            row["sessions"] = f"{b['sessions']} ({b['stopped_by']})"
            row["sessions_detail"] = b
            row["service_mib_per_session"] = b["service_mib_per_session"]
    except (ServiceError, requests.RequestException, OSError, KeyError, ValueError) as err:
        row["notes"].append(f"service: {str(err)[:200]}")
    finally:
        stop(service)
        if "Traceback" in service.log_tail(200_000):
            row["notes"].append(f"traceback in the service log {service.log_path.name}")


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(c[0] for c in COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if i < 3 or i == len(COLUMNS) - 1 else "---:"
                                for i in range(len(COLUMNS))) + "|")  # fmt: skip
    for row in rows:
        cells = []
        for _, key, spec in COLUMNS:
            value = row.get(key)
            if key == "notes":
                cells.append("; ".join(value) if value else "")
            elif value is None:
                cells.append("n/a")
            elif isinstance(value, bool):
                cells.append("on" if value else "off")
            else:
                cells.append(spec.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(cfg: dict[str, Any], video: Path, work: Path) -> dict[str, Any]:
    if cfg["sessions_dtype"] not in cfg["dtypes"]:
        cfg["sessions_dtype"] = cfg["dtypes"][-1]
    started = time.monotonic()
    deadline = started + cfg["budget"]
    meta: dict[str, Any] = {
        "mode": "smoke" if cfg["smoke"] else "full",
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights": "random",
        "warmup_frames": cfg["warmup"],
        "frames": cfg["frames"],
        "config": {k: v for k, v in cfg.items() if k != "models"} | {"models": list(cfg["models"])},
    }
    import torch

    meta["torch"] = torch.__version__
    files = make_models(cfg, work)
    phases = meta["phases_s"] = {"models": time.monotonic() - started}
    variants = [
        Variant(m, d, vos) for m in cfg["models"] for d in cfg["dtypes"] for vos in (False, True)
    ]
    rows = {v.key: _row(v) for v in variants}
    spent = "skipped: the run's budget was spent"
    for v in variants:  # 1. model-only, not compiled
        if not v.vos:
            budget = min(PLAIN_BUDGET, deadline - time.monotonic())
            if budget <= 0:
                rows[v.key]["notes"].append(f"model-only {spent}")
                continue
            timeout = budget + LOAD_ALLOWANCE
            result = run_model(cfg, v, files[v.model], video, work, budget, timeout)
            _apply_model(rows[v.key], result, meta)
    phases["model_only"] = time.monotonic() - started - sum(phases.values())
    for v in variants:  # 2. the service
        if v.vos:
            rows[v.key]["notes"].append("no HTTP row: the service has no vos_optimized setting")
        elif deadline - time.monotonic() < SERVICE_RESERVE:
            rows[v.key]["notes"].append(f"service {spent}")
        else:
            run_service(cfg, v.model, v.dtype, files[v.model], video, work, rows[v.key],
                        deadline)  # fmt: skip
    phases["service"] = time.monotonic() - started - sum(phases.values())
    # 3. compiled, bf16 first (the service's default on CUDA), smaller model first: each takes
    # what is left of the run's budget, up to its own (a compile cut short is wasted time, so
    # the time is not split evenly)
    compiled = sorted((v for v in variants if v.vos), key=lambda v: v.dtype != "bfloat16")
    for v in compiled:
        budget = min(cfg["compile_budget"], deadline - time.monotonic() - LOAD_RESERVE)
        if budget < min(10.0, cfg["compile_budget"]):
            rows[v.key]["notes"].append("skipped: no time left in the run's budget")
            continue
        # the load may take more than its reserve, but never long past the run's deadline
        timeout = min(budget + LOAD_ALLOWANCE, deadline - time.monotonic() + LOAD_RESERVE)
        result = run_model(cfg, v, files[v.model], video, work, budget, timeout)
        _apply_model(rows[v.key], result, meta)
    phases["compiled"] = time.monotonic() - started - sum(phases.values())
    meta["wall_s"] = time.monotonic() - started
    ordered = [rows[v.key] for v in variants]
    return {"meta": meta, "rows": ordered, "table": table(ordered)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, a few frames")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--work", type=Path, help="keep models and logs here (default: a temp dir)")
    p.add_argument("--video", type=Path, default=VIDEO)
    p.add_argument("--device", help="default: cuda (cpu with --smoke)")
    for name, kind in (("warmup", int), ("frames", int), ("session-limit", int),
                       ("compile-budget", float), ("budget", float)):  # fmt: skip
        p.add_argument(f"--{name}", type=kind, help="default: see the module doc")
    p.add_argument(
        "--models", help="comma-separated: hiera_t, hiera_l, tiny (default: hiera_t,hiera_l)"
    )
    p.add_argument("--dtypes", help="comma-separated: float32, bfloat16 (default: both)")
    args = p.parse_args(argv)
    # This checkout's packages, here and in every process started (the service included).
    sys.path.insert(0, str(REPO))
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    cfg = {**(SMOKE if args.smoke else FULL), "smoke": args.smoke}
    for key in ("device", "warmup", "frames", "session_limit", "compile_budget", "budget"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    for key in ("models", "dtypes"):
        if getattr(args, key):
            cfg[key] = tuple(x.strip() for x in getattr(args, key).split(",") if x.strip())
    unknown = set(cfg["models"]) - {"tiny", *SAM2_CONFIGS}
    if unknown or not set(cfg["dtypes"]) <= {"float32", "bfloat16"}:
        print(f"gpu_check: unknown model or dtype in {args.models or args.dtypes}", file=sys.stderr)
        return 2
    if cfg["device"].startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: CUDA is not available here; use --smoke on a CPU", file=sys.stderr)
            return 2
    if not args.video.is_file():
        print(f"gpu_check: video not found: {args.video}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = run(cfg, args.video, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    meta = report["meta"]
    where = " ".join(filter(None, [meta.get("device", cfg["device"]), meta.get("gpu")]))
    print(f"GPU check ({meta['mode']}), {where}, torch {meta['torch']}, RANDOM weights, "
          f"{meta.get('video', args.video.name)}, {cfg['frames']} frames after "
          f"{cfg['warmup']} warm-up, {meta['wall_s']:.0f} s")  # fmt: skip
    print(report["table"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
