"""Prometheus metrics of one service process (``GET /metrics``).

Each app gets its own registry, so several apps in one test process do not collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    registry: CollectorRegistry
    live_sessions: Gauge
    streams: Gauge
    frames: Counter
    frame_seconds: Histogram
    requests: Counter
    gpu_memory: Gauge

    def render(self) -> bytes:
        return generate_latest(self.registry)


def create_metrics(store: Any) -> Metrics:
    reg = CollectorRegistry()
    live = Gauge("sam2_matting_live_sessions", "Live matting sessions", registry=reg)
    live.set_function(lambda: len(store))
    metrics = Metrics(
        registry=reg,
        live_sessions=live,
        streams=Gauge("sam2_matting_streams", "Propagation streams running", registry=reg),
        frames=Counter("sam2_matting_frames_propagated", "Frames propagated", registry=reg),
        frame_seconds=Histogram(
            "sam2_matting_frame_seconds",
            "Seconds to propagate and encode one frame",
            buckets=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
            registry=reg,
        ),
        requests=Counter(
            "sam2_matting_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=reg,
        ),
        gpu_memory=Gauge(
            "sam2_matting_gpu_memory_bytes", "CUDA memory allocated by this process", registry=reg
        ),
    )

    def gpu_bytes() -> float:
        import torch

        return float(torch.cuda.memory_allocated()) if torch.cuda.is_available() else 0.0

    metrics.gpu_memory.set_function(gpu_bytes)
    return metrics
