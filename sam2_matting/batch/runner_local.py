"""The local runner: the clips one after the other in this process, the model loaded once."""

from __future__ import annotations

from typing import Any

from sam2_matting.batch.clip import plan_and_report, render_clip
from sam2_matting.batch.manifest import ClipJob
from sam2_matting.batch.report import Reporter


def run_local(
    jobs: list[ClipJob],
    predictor_kwargs: dict[str, Any],
    model: dict[str, Any],
    reporter: Reporter,
    *,
    allow_other_model: bool = False,
    progress: bool = True,
    force: bool = False,
    verify: bool = False,
) -> None:
    """Render every clip of ``jobs`` not complete yet (all of them with ``force``), reporting
    each result to ``reporter``. ``predictor_kwargs``: those of ``build_matting_predictor``,
    whose checkpoint ``model`` identifies. A failing clip is reported and the next one runs."""
    todo = plan_and_report(jobs, model, reporter, force=force, verify=verify)
    if not todo:
        return
    from sam2_matting.predictor import build_matting_predictor

    predictor = build_matting_predictor(**predictor_kwargs)
    for job, key in todo:
        if progress:
            reporter.say(f"{job.name}: rendering (line {job.line})")
        reporter.add(
            render_clip(
                job, predictor, model, key, allow_other_model=allow_other_model, progress=progress
            )
        )
