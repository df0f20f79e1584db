"""The Ray runner: one task per clip on a pool of worker actors, each holding the model.

    run_ray(jobs, predictor_kwargs, model, reporter, address="auto", workers=None)

``address``: ``"auto"`` (the cluster this machine belongs to, or ``$RAY_ADDRESS``), ``"local"``
(a private Ray instance on this machine, stopped at the end) or a cluster address
(``head:6379``, ``ray://head:10001``). Each worker actor loads the model once and renders the
clips it is given with :func:`~sam2_matting.batch.clip.render_clip`, the code of ``matte
--prompts``; where the cluster has GPUs each actor takes one (``--workers`` defaults to their
number). Each actor also holds ``--cpus-per-worker`` CPUs (default 1) and runs torch with that
many threads. On the CPU the thread count changes the order of float sums, so a matte can
differ by one level in a few pixels from a run with another thread count; ``OMP_NUM_THREADS=N
sam2-matting matte`` gives the mattes of a worker of N CPUs. Paths are the manifest's, resolved
here: every node must see them
at the same place (shared storage). Outputs are written under temporary names and renamed by
the worker, the record last, so the driver's plan (skip the complete clips) reads the same
files on the next run. A worker that dies (out of memory, a lost node) fails the clip it was
rendering, with the reason, and is replaced.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from typing import Any

from sam2_matting.batch.clip import plan_and_report, render_clip
from sam2_matting.batch.manifest import ClipJob
from sam2_matting.batch.report import ClipResult, Reporter, one_line
from sam2_matting.errors import InvalidInputError


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidInputError(
            "--ray needs Ray, which is not installed: pip install 'sam2-matting[ray]'"
        ) from None
    return ray


class Worker:
    """A worker actor's state: the model, loaded once, and where it runs."""

    def __init__(
        self, predictor_kwargs: dict[str, Any], model: dict[str, Any], allow_other: bool
    ) -> None:
        import ray
        import torch

        from sam2_matting.predictor import build_matting_predictor

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:  # torch uses the CPUs the actor holds: actors on a node do not oversubscribe
            torch.set_num_threads(max(1, int(cpus)))
        self.predictor = build_matting_predictor(**predictor_kwargs)
        self.model = model
        self.allow_other = allow_other
        gpus = ray.get_gpu_ids()
        self.name = f"{socket.gethostname()}:{os.getpid()}" + (f" gpu {gpus[0]}" if gpus else "")

    def render(self, job: ClipJob, key: str | None) -> ClipResult:
        return render_clip(
            job, self.predictor, self.model, key, allow_other_model=self.allow_other,
            worker=self.name,
        )  # fmt: skip


def _connect(ray: Any, address: str, workers: int | None, cpus: int) -> bool:
    """Join (or, for ``local``, start) a Ray instance; True if this call started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    pythonpath = os.environ.get("PYTHONPATH")
    if pythonpath:  # a checkout run from source: the workers import the same code
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": pythonpath}}
    if address == "local":  # room for the workers asked for, on a machine of few cores
        kwargs["num_cpus"] = max(os.cpu_count() or 1, (workers or 1) * cpus)
    try:
        ray.init(address=None if address == "local" else address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        reason = one_line(err)
        raise InvalidInputError(f"--ray {address}: cannot connect to Ray ({reason})") from None
    return True


def run_ray(
    jobs: list[ClipJob],
    predictor_kwargs: dict[str, Any],
    model: dict[str, Any],
    reporter: Reporter,
    *,
    address: str = "auto",
    workers: int | None = None,
    cpus_per_worker: int = 1,
    allow_other_model: bool = False,
    force: bool = False,
    verify: bool = False,
) -> None:
    """Render the clips of ``jobs`` not complete yet on Ray (see the module)."""
    ray = import_ray()
    todo = plan_and_report(jobs, model, reporter, force=force, verify=verify)
    if not todo:
        return
    started = _connect(ray, address, workers, cpus_per_worker)
    try:
        shape = (workers, cpus_per_worker)
        _schedule(ray, todo, predictor_kwargs, model, reporter, shape, allow_other_model)
    finally:
        if started:
            ray.shutdown()


def _schedule(
    ray: Any,
    todo: list[tuple[ClipJob, str | None]],
    predictor_kwargs: dict[str, Any],
    model: dict[str, Any],
    reporter: Reporter,
    shape: tuple[int | None, int],
    allow_other: bool,
) -> None:
    workers, cpus = shape
    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = min(len(todo), workers or gpus or 1)
    resources = {"num_gpus": 1, "num_cpus": cpus} if gpus else {"num_cpus": cpus}
    actor = ray.remote(**resources, max_restarts=0)(Worker)
    reporter.say(
        f"ray: {count} worker{'s' if count > 1 else ''} "
        f"({'one GPU and ' if gpus else ''}{cpus} CPU{'s' if cpus > 1 else ''} each) "
        f"for {len(todo)} clips"
    )

    def spawn() -> Any:
        return actor.remote(predictor_kwargs, model, allow_other)

    pending = deque(todo)
    running: dict[Any, tuple[Any, ClipJob]] = {}
    replacements = count  # a worker that keeps dying (its node cannot load the model) stops

    def give(handle: Any) -> None:
        if pending:
            job, key = pending.popleft()
            running[handle.render.remote(job, key)] = (handle, job)
            reporter.say(f"{job.name}: rendering (line {job.line})")

    for _ in range(count):
        give(spawn())
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        handle, job = running.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except ray.exceptions.RayError as err:
            result = ClipResult(job.line, job.name, "failed", reason=f"worker lost: {_cause(err)}")
            handle = None
            if replacements > 0 and pending:
                replacements -= 1
                handle = spawn()
        reporter.add(result)
        if handle is not None:
            give(handle)
        elif not running:  # no worker left: the clips not started fail with the reason
            while pending:
                job, _ = pending.popleft()
                reporter.add(ClipResult(job.line, job.name, "failed", reason="no Ray worker left"))


def _cause(err: BaseException) -> str:
    """The first line that says why a Ray task or actor failed."""
    for line in str(err).splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "ray::", "(")):
            return line[:300]
    return type(err).__name__
