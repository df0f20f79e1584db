"""What a batch says: a line per clip as it ends (with the overall count), a summary table at
the end, the exit status, and (``--report FILE``) the same as JSON.

    reporter = Reporter(total=len(jobs), out=sys.stdout)
    reporter.add(ClipResult(...))           # [3/10] b.mp4: ok, 120 frames in 41.2 s ...
    print(reporter.table())
    sys.exit(reporter.exit_code())          # 0: no clip failed; 1: some did
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sam2_matting.errors import MattingError

#: Exit status when one clip or more failed (a bad manifest or option is a MattingError's code).
EXIT_FAILED = 1
STATUSES = ("ok", "skipped", "failed")


@dataclass(frozen=True)
class ClipResult:
    line: int  # the manifest line
    name: str
    status: str  # ok | skipped | failed
    frames: int = 0
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    reason: str = ""  # why it failed, one line
    worker: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "name": self.name,
            "status": self.status,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "outputs": [str(p) for p in self.outputs],
            "reason": self.reason,
            "worker": self.worker,
            "warnings": self.warnings,
        }


def one_line(err: BaseException) -> str:
    """``err`` as one readable line: a MattingError's message, else the type and message."""
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(err, MattingError):
        return first or type(err).__name__
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


class Reporter:
    """Collects the results of a batch of ``total`` clips and prints one line for each."""

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self.total = total
        self.out = out
        self.results: list[ClipResult] = []
        self.started = time.perf_counter()
        self._rendered = 0.0  # seconds of the clips rendered so far
        self._to_render: int | None = None

    def expect(self, to_render: int) -> None:
        """How many of the clips will be rendered (the others are skipped): for the ETA."""
        self._to_render = to_render

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def add(self, result: ClipResult) -> None:
        self.results.append(result)
        n = len(self.results)
        if result.status == "ok":
            said = f"ok, {result.frames} frames in {result.seconds:.1f} s"
            if result.worker and result.worker != "local":
                said += f" on {result.worker}"
        elif result.status == "skipped":
            said = "skipped, complete"
        else:
            said = f"FAILED: {result.reason}"
        for warning in result.warnings:
            self.say(f"sam2-matting: warning: {result.name}: {warning}")
        self.say(f"[{n}/{self.total}] {result.name}: {said}{self._overall()}")

    def _overall(self) -> str:
        counts = self.counts()
        done = counts["ok"] + counts["failed"]
        parts = [f"{counts['ok'] + counts['skipped']} done", f"{counts['failed']} failed"]
        if self._to_render and done and done < self._to_render:
            elapsed = time.perf_counter() - self.started
            left = elapsed / done * (self._to_render - done)
            parts.append(f"about {left:.0f} s left")
        return " (" + ", ".join(parts) + ")"

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    def exit_code(self) -> int:
        """0 when no clip failed (rendered or skipped as complete), else :data:`EXIT_FAILED`."""
        return EXIT_FAILED if self.counts()["failed"] else 0

    def table(self) -> str:
        """The summary: one row per clip in manifest order, then the totals."""
        rows = [("line", "clip", "status", "frames", "seconds", "output or reason")]
        for r in sorted(self.results, key=lambda r: r.line):
            what = r.reason if r.status == "failed" else ", ".join(p.name for p in r.outputs)
            ran = r.status != "skipped"
            secs, frames = (f"{r.seconds:.1f}", str(r.frames)) if ran else ("-", "-")
            rows.append((str(r.line), r.name, r.status, frames, secs, what))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = [
            "  ".join(c.rjust(w) if i in (0, 3, 4) else c.ljust(w) for i, (c, w) in
                      enumerate(zip(row[:5], widths, strict=True))) + "  " + row[5]
            for row in rows
        ]  # fmt: skip
        c = self.counts()
        elapsed = time.perf_counter() - self.started
        lines.append(
            f"{len(self.results)} clips: {c['ok']} rendered, {c['skipped']} skipped (complete), "
            f"{c['failed']} failed, in {elapsed:.1f} s"
        )
        return "\n".join(line.rstrip() for line in lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "clips": [r.to_json() for r in sorted(self.results, key=lambda r: r.line)],
            "counts": self.counts(),
            "seconds": round(time.perf_counter() - self.started, 3),
            "exit_code": self.exit_code(),
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
