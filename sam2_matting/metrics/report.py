"""Evaluation reports: ``results.json``, ``results.md`` and PNG plots.

    from sam2_matting.metrics.report import write_report
    paths = write_report(out_dir, results, prompts, settings_dict, protocol)

- ``results.json``: the exact settings, the prompt of every clip, and for every model the
  summary figures, per-clip means, per-frame values, model speed and per-metric scoring time;
  plus the adapter-against-base comparison.
- ``results.md``: a table of every metric, base against adapter, with the change, under a
  header naming the protocol, how predictions were quantised and how frames were averaged
  (also in the JSON: ``protocol.rounding``, ``protocol.predictions``, ``protocol.aggregate``).
- ``per_frame.png``: each metric's mean over clips at every frame index, one line per model.
- ``worst_frames.png``: the frames where the adapter (or the only model) does worst on MAD,
  each shown as input frame, matte, ground truth and absolute error.

Plots use matplotlib's non-interactive Agg backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sam2_matting.metrics.protocols import AGGREGATES, UNITS, Protocol, per_frame_index
from sam2_matting.metrics.runner import ModelResult

RANDOM_WEIGHTS_NOTE = (
    "RANDOM WEIGHTS: the model is a randomly initialised test model; these numbers check the "
    "plumbing and are not results."
)


def _finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def comparison(results: Mapping[str, ModelResult], protocol: Protocol) -> dict[str, Any]:
    """For each metric: base, adapter, adapter - base, adapter / base (when both exist)."""
    if "base" not in results or "adapter" not in results:
        return {}
    out: dict[str, Any] = {}
    for name in protocol.metrics:
        b, a = results["base"].summary[name], results["adapter"].summary[name]
        out[name] = {
            "base": _finite(b),
            "adapter": _finite(a),
            "change": _finite(a - b),
            "ratio": _finite(a / b) if b else None,
        }
    return out


def results_json(
    results: Mapping[str, ModelResult],
    prompts: Mapping[str, Any],
    settings: Mapping[str, Any],
    protocol: Protocol,
) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for label, r in results.items():
        models[label] = {
            "summary": {k: _finite(v) for k, v in r.summary.items()},
            "units": {k: UNITS[k] for k in r.summary},
            "frames": r.frames,
            "model_fps": round(r.frames / r.model_seconds, 3) if r.model_seconds else None,
            "metric_fps": {
                k: round(r.frames / s, 3) if s else None for k, s in r.metric_seconds.items()
            },
            "per_clip": {
                clip: {k: _finite(float(np.mean(v))) if v else None for k, v in vals.items()}
                for clip, vals in r.per_clip.items()
            },
            "per_frame": {
                clip: {k: [_finite(x) for x in v] for k, v in vals.items()}
                for clip, vals in r.per_clip.items()
            },
            "worst_frames": [
                {"clip": w.clip, "frame": w.frame, "mad": _finite(w.score)} for w in r.worst
            ],
        }
    return {
        "settings": dict(settings),
        "protocol": {
            "name": protocol.name,
            "metrics": list(protocol.metrics),
            "quantize": protocol.quantize,
            "rounding": protocol.rounding if protocol.quantize else None,
            "predictions": protocol.predictions,
            "max_frames": protocol.max_frames,
            "aggregate": protocol.aggregate,
            "aggregate_description": AGGREGATES[protocol.aggregate],
            "resolution": protocol.resolution if protocol.name == "standard" else None,
            "description": protocol.description,
        },
        "prompts": dict(prompts),
        "models": models,
        "comparison": comparison(results, protocol),
    }


def markdown_table(results: Mapping[str, ModelResult], protocol: Protocol, note: str = "") -> str:
    labels = list(results)
    head = ["metric", *labels]
    both = "base" in results and "adapter" in results
    if both:
        head.append("change")
    lines = [
        f"Protocol **{protocol.name}** ({protocol.description}).",
        "",
        f"Predictions: {protocol.predictions}. "
        f"Aggregation: {protocol.aggregate} ({AGGREGATES[protocol.aggregate]}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name in protocol.metrics:
        row = [f"{name} ({UNITS[name]})"]
        row += [f"{results[label].summary[name]:.4g}" for label in labels]
        if both:
            b, a = results["base"].summary[name], results["adapter"].summary[name]
            row.append(f"{a - b:+.4g}" + (f" ({(a - b) / b:+.1%})" if b else ""))
        lines.append("| " + " | ".join(row) + " |")
    frames = next(iter(results.values())).frames if results else 0
    lines += [
        "",
        f"{len(next(iter(results.values())).per_clip) if results else 0} clips, "
        f"{frames} frames per model. Lower is better.",
    ]
    if note:
        lines += ["", f"**{note}**"]
    return "\n".join(lines) + "\n"


def plot_per_frame(results: Mapping[str, ModelResult], protocol: Protocol, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(protocol.metrics)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for label, r in results.items():
            curve = per_frame_index(list(r.per_clip.values()), name)
            ax.plot(range(len(curve)), curve, marker="." if len(curve) < 30 else None, label=label)
        ax.set_title(f"{name} ({UNITS[name]})")
        ax.set_xlabel("frame index")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle("mean error over clips at each frame index")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_worst(result: ModelResult, path: Path) -> Path | None:
    if not result.worst:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(result.worst)
    fig, axes = plt.subplots(rows, 4, figsize=(12, 2.6 * rows), squeeze=False)
    for r, w in enumerate(result.worst):
        error = np.abs(w.pred.astype(np.float32) - w.truth.astype(np.float32)) / 255.0
        panels = [
            (w.image, None, f"{w.clip} frame {w.frame}"),
            (w.pred, "gray", f"{result.label} matte"),
            (w.truth, "gray", "ground truth"),
            (error, "magma", f"|error|, MAD {w.score:.1f}"),
        ]
        for c, (img, cmap, title) in enumerate(panels):
            ax = axes[r][c]
            if cmap is None:
                ax.imshow(img)
            else:
                ax.imshow(img, cmap=cmap, vmin=0, vmax=1 if cmap == "magma" else 255)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(
    out_dir: str | Path,
    results: Mapping[str, ModelResult],
    prompts: Mapping[str, Any],
    settings: Mapping[str, Any],
    protocol: Protocol,
    note: str = "",
) -> dict[str, Path]:
    """Write the JSON, Markdown and PNG outputs into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = results_json(results, prompts, settings, protocol)
    if note:
        data["note"] = note
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(data, indent=2) + "\n")
    paths["markdown"].write_text(markdown_table(results, protocol, note))
    paths["per_frame"] = plot_per_frame(results, protocol, out / "per_frame.png")
    focus = results.get("adapter") or next(iter(results.values()))
    worst = plot_worst(focus, out / "worst_frames.png")
    if worst is not None:
        paths["worst_frames"] = worst
    return paths
