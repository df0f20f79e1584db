"""Run logs: ``metrics.csv`` always, TensorBoard optionally, a tqdm progress bar on rank 0.

    from sam2_matting.training.runlog import RunLog
    log = RunLog(run_dir, enabled=is_rank0, tensorboard=False, progress=True, total=1000)
    log.record(step, {"loss": 0.1, "clips_per_s": 3.2})
    log.close()

The CSV gets one row per logged step; a column appearing later (e.g. a loss term switched on
when resuming) extends the header only in a new file, so rows are appended with the header of
the file's first line. Resuming appends to the same file.
"""

from __future__ import annotations

import csv
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from sam2_matting.training.config import ConfigError

CSV_NAME = "metrics.csv"


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory so far: CUDA allocator peak on a GPU, process peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


class RunLog:
    """Writes logged values to CSV (and TensorBoard) and drives the progress bar."""

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        tensorboard: bool = False,
        progress: bool = True,
        total: int = 0,
        initial: int = 0,
    ) -> None:
        self.enabled = enabled
        self.path = run_dir / CSV_NAME
        self._fields: list[str] | None = None
        self._writer: Any = None
        self._bar: Any = None
        if not enabled:
            return
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open(newline="") as f:
                self._fields = next(csv.reader(f), None)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ConfigError(
                    "run.tensorboard=true needs the tensorboard package (pip install tensorboard)"
                ) from err
            self._writer = SummaryWriter(str(run_dir / "tensorboard"))
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True
            )

    def record(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: round(float(v), 6) for k, v in values.items()}}
        if self._fields is None:
            self._fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self._fields)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore").writerow(row)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, float(value), step)

    def advance(self, steps: int, postfix: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(steps)
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def write(self, message: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
