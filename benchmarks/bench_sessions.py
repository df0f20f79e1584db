"""Several sessions on one model, a slow reader, and batching across sessions: measured.

    .venv/bin/python benchmarks/bench_sessions.py [--frames 24] [--rounds 3] [--stall 60]

As ``bench_stream.py``: the real gunicorn service, the tiny random-weight model at 256 px on
one torch thread (``OMP_NUM_THREADS=1``), a 720p source.

- **concurrent streams**: 1, 2 and 4 sessions each streaming ``frames`` frames at once
  (NDJSON, both fields); throughput = all frames / wall time, over 1 stream's; fairness = the
  spread of the streams' own fps (slowest / fastest). Medians over ``rounds``.
- **slow reader**: a client starts a full propagation and reads nothing for ``stall`` seconds
  (a raw socket with a 4 KiB receive buffer); the service worker's resident memory and
  thread count are sampled every second from /proc, against the idle service before it, and
  whether the stream was ended by the send timeout (``SAM2_MATTING_SEND_TIMEOUT``, default
  30 s) is read from ``/metrics``.
- **batching frames of different sessions through the image encoder**: in-process, the same
  model on one thread: the image encoder's time per frame at batch 1, 2 and 4.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_model import _clip  # noqa: E402
from bench_stream import read_stream  # noqa: E402
from gpu_check_http import close_session, launch, open_session, stop  # noqa: E402


def concurrent(service: Any, k: int, frames: int) -> tuple[float, list[float]]:
    """``k`` streams at once: (frames/s of all of them, each stream's own fps)."""
    sids = [open_session(service) for _ in range(k)]
    stamps: list[list[float]] = [[] for _ in range(k)]
    starts = [0.0] * k
    go = threading.Barrier(k)

    def run(i: int) -> None:
        body = {"session_id": sids[i], "direction": "forward", "max_frames": frames}
        go.wait()
        starts[i] = time.perf_counter()
        stamps[i] = read_stream(service.url, body)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for sid in sids:
            close_session(service, sid)
    if any(len(s) != frames for s in stamps):
        raise RuntimeError("a stream ended short")
    wall = max(s[-1] for s in stamps) - min(starts)
    own = [frames / (s[-1] - t0) for s, t0 in zip(stamps, starts, strict=True)]
    return k * frames / wall, own


def worker_pid(service: Any) -> int:
    """The gunicorn worker (the one child of the arbiter)."""
    children = Path(f"/proc/{service.proc.pid}/task/{service.proc.pid}/children").read_text()
    return int(children.split()[0])


def rss_threads(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def streams_running(service: Any) -> float:
    text = requests.get(f"{service.url}/metrics", timeout=10).text
    line = next(ln for ln in text.splitlines() if ln.startswith("sam2_matting_streams "))
    return float(line.split()[1])


def slow_reader(service: Any, stall: float) -> dict[str, Any]:
    pid = worker_pid(service)
    sid = open_session(service)
    idle_rss, idle_threads = rss_threads(pid)
    host, port = service.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = json.dumps({"session_id": sid, "direction": "forward"}).encode()
    sock.sendall(
        f"POST /propagate_in_video HTTP/1.1\r\nHost: {host}\r\nAccept: application/x-ndjson\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    t0 = time.monotonic()
    samples = []
    ended_at = None
    while (now := time.monotonic() - t0) < stall:
        rss, threads = rss_threads(pid)
        samples.append((now, rss, threads))
        if ended_at is None and now > 1 and streams_running(service) == 0:
            ended_at = now
        time.sleep(1.0)
    sock.close()
    close_session(service, sid)
    return {
        "idle_rss_mib": idle_rss,
        "idle_threads": idle_threads,
        "max_rss_mib": max(s[1] for s in samples),
        "max_threads": max(s[2] for s in samples),
        "last_rss_mib": samples[-1][1],
        "stream_ended_s": ended_at,
    }


def encoder_batching(config: Path, ckpt: Path, rounds: int) -> dict[int, float]:
    import torch

    from sam2_matting.model import build_sam2_model

    torch.set_num_threads(1)
    model = build_sam2_model(config, ckpt, device="cpu")
    size = model.image_size
    out = {}
    with torch.inference_mode():
        for batch in (1, 2, 4):
            x = torch.randn(batch, 3, size, size)
            model.forward_image(x)  # warm-up
            times = []
            for _ in range(rounds * 3):
                t = time.perf_counter()
                model.forward_image(x)
                times.append((time.perf_counter() - t) / batch)
            out[batch] = statistics.median(times) * 1000
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--stall", type=float, default=60.0)
    args = p.parse_args()
    from sam2_matting.tiny import make_tiny_model

    os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tiny = make_tiny_model(tmp / "tiny", image_size=256, seed=0)
        video = _clip(tmp / "clip.mp4", 300, (1280, 720))
        service = launch(
            tiny.config, tiny.checkpoint, device="cpu", dtype="float32", video=video,
            root=tmp / "svc", max_sessions=6,
        )  # fmt: skip
        try:
            concurrent(service, 1, 4)  # warm-up
            results: dict[int, list[tuple[float, list[float]]]] = {1: [], 2: [], 4: []}
            for _ in range(args.rounds):
                for k in results:
                    results[k].append(concurrent(service, k, args.frames))
            slow = slow_reader(service, args.stall)
        finally:
            stop(service)
        batching = encoder_batching(tiny.config, tiny.checkpoint, args.rounds)
    base = statistics.median(r[0] for r in results[1])
    print(
        f"concurrent streams: tiny 256 px, random weights, CPU, torch on 1 thread, 720p, "
        f"{args.frames} frames each, median of {args.rounds}"
    )
    print("  streams  total fps  ÷ 1 stream  per-stream fps (median run)   slowest/fastest")
    for k, runs in results.items():
        total = statistics.median(r[0] for r in runs)
        mid = sorted(runs, key=lambda r: r[0])[len(runs) // 2][1]
        spread = statistics.median(min(r[1]) / max(r[1]) for r in runs)
        each = ", ".join(f"{x:.2f}" for x in mid)
        print(f"  {k:>7} {total:>10.2f} {total / base:>11.3f}   {each:<28} {spread:>8.3f}")
    print(f"slow reader: reads nothing for {args.stall:g} s (service worker, from /proc)")
    grown = slow["max_rss_mib"] - slow["idle_rss_mib"]
    print(
        f"  idle: {slow['idle_rss_mib']:.0f} MiB RSS, {slow['idle_threads']} threads; while "
        f"stalled: max {slow['max_rss_mib']:.0f} MiB (+{grown:.0f}), "
        f"max {slow['max_threads']} threads; at the end {slow['last_rss_mib']:.0f} MiB"
    )
    ended = slow["stream_ended_s"]
    print(f"  stream ended by the send timeout after {ended:.0f} s" if ended else "  not ended")
    print("image encoder, ms per frame by batch size (1 thread): " + ", ".join(
        f"batch {b}: {ms:.1f}" for b, ms in batching.items()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
