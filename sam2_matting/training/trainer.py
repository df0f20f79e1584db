"""The trainer: LoRA matting adapters on SAM 2, one process or many (``torchrun``, DDP).

    from sam2_matting.training.config import compose_train_config
    from sam2_matting.training.trainer import Trainer
    cfg = compose_train_config(["model=hiera_t", "data=synthetic", "data.backgrounds.videos=V"])
    trainer = Trainer(cfg)
    adapter_dir = trainer.fit()          # run_dir/adapter: load it with `serve --adapter`

Each optimiser step runs ``optim.accumulate`` micro-batches of ``data.batch_size`` clips per
process through :func:`~sam2_matting.training.step.forward_clip` (bf16 autocast on CUDA),
with the loss of :mod:`~sam2_matting.training.losses` on every frame at the training
resolution; gradients reach the LoRA parameters only and are averaged across processes by
``DistributedDataParallel``. The run folder gets ``config.yaml`` (the resolved config),
``metrics.csv``, ``checkpoints/step_NNNNNN/`` every ``run.checkpoint_every`` steps and at the
end, and the final adapter in ``adapter/``. ``run.resume=true`` restores the newest checkpoint
(LoRA weights, optimiser, scheduler, RNG, step) and, since every batch is a function of the
step (see :mod:`~sam2_matting.training.datasets`), continues exactly as if never stopped.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from sam2_matting.errors import MattingError
from sam2_matting.training import checkpoint as ckpt
from sam2_matting.training.build import build_dataset, build_trainable_model, model_image_size
from sam2_matting.training.config import (
    ConfigError,
    build,
    load_saved_config,
    save_config,
    validate_train_config,
)
from sam2_matting.training.datasets import ClipBatch, StepSampler, collate
from sam2_matting.training.distributed import DistInfo
from sam2_matting.training.losses import LossWeights, matting_loss
from sam2_matting.training.runlog import RunLog, peak_memory_mib
from sam2_matting.training.step import alpha_from_logits, forward_clip, normalize_frames

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


class ClipLossModule(torch.nn.Module):
    """Wraps the PEFT model so DDP can hook it: ``forward(batch)`` -> (loss, parts)."""

    def __init__(
        self, model: Any, weights: LossWeights, memory_dtype: torch.dtype, through_memory: bool
    ) -> None:
        super().__init__()
        self.model = model
        self.weights = weights
        self.memory_dtype = memory_dtype
        self.through_memory = through_memory

    def forward(self, batch: ClipBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = forward_clip(
            self.model,
            normalize_frames(batch.images),
            batch.prompts,
            batch.video_size,
            memory_dtype=self.memory_dtype,
            backprop_through_memory=self.through_memory,
        )
        total = batch.alphas.new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        for t, logits in enumerate(out.logits):
            pred = alpha_from_logits(logits, batch.video_size)
            loss, terms = matting_loss(pred, batch.alphas[:, t].float(), self.weights)
            total = total + loss
            for key, value in terms.items():
                parts[key] = parts.get(key, 0.0) + value
        n = len(out.logits)
        return total / n, {k: v / n for k, v in parts.items()}


@dataclass
class StepResult:
    loss: float
    parts: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    clips: int = 0
    lr: float = 0.0


def lr_lambda(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """Builds everything from a composed config; :meth:`fit` trains, :meth:`train_step` steps."""

    def __init__(self, cfg: Any) -> None:
        validate_train_config(cfg)
        self.cfg = cfg
        self.dist = DistInfo.from_env()
        self.device = self.dist.setup(str(cfg.run.device), str(cfg.ddp.backend))
        self.run_dir = Path(str(cfg.run.out_dir))
        self.steps = int(cfg.run.steps)
        self.accumulate = max(1, int(cfg.optim.accumulate))
        self.autocast_dtype = self._autocast_dtype(str(cfg.run.precision))
        # Data first: a bad data set fails before the (slow) model build.
        self.dataset = build_dataset(cfg, image_size=model_image_size(cfg))
        self.model = build_trainable_model(cfg, self.device)
        memory_dtype = _DTYPES.get(str(cfg.train.memory_dtype))
        if memory_dtype is None:
            raise ConfigError(f"train.memory_dtype must be one of {', '.join(_DTYPES)}")
        self.module = ClipLossModule(
            self.model,
            build(LossWeights, cfg, "loss"),
            memory_dtype,
            bool(cfg.train.backprop_through_memory),
        )
        self.ddp: torch.nn.Module = self.module
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(cfg.ddp.find_unused_parameters),
            )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            self.params, lr=float(o.lr), weight_decay=float(o.weight_decay), betas=tuple(o.betas)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_lambda(
                s, int(o.warmup_steps), self.steps, str(o.schedule), float(o.min_lr_ratio)
            ),
        )
        self.step = 0
        if bool(cfg.run.resume):
            self._resume()

    # -- set-up ------------------------------------------------------------------------------
    def _autocast_dtype(self, precision: str) -> torch.dtype | None:
        if precision == "auto":
            return torch.bfloat16 if self.device.type == "cuda" else None
        if precision in ("bf16", "bfloat16"):
            return torch.bfloat16
        if precision in ("fp32", "float32"):
            return None
        raise ConfigError(f"run.precision must be auto, bf16 or fp32, got {precision!r}")

    def _resume(self) -> None:
        path = ckpt.latest_checkpoint(self.run_dir / "checkpoints")
        if path is None:
            raise ConfigError(f"run.resume=true but {self.run_dir}/checkpoints has no checkpoint")
        state = ckpt.load_state(path)
        if int(state.get("world", 1)) != self.dist.world:
            raise ConfigError(
                f"{path} was written by {state.get('world')} processes; resume with the same "
                f"number (now {self.dist.world}) so the data order stays the same"
            )
        ckpt.load_adapter_weights(self.model, path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def loader(self) -> Iterator[ClipBatch]:
        """Batches for this process from step ``self.step`` on (endless)."""
        workers = int(self.cfg.data.workers)
        sampler = StepSampler(
            int(self.cfg.data.batch_size),
            start_batch=self.step * self.accumulate,
            world=self.dist.world,
            rank=self.dist.rank,
        )
        loader = DataLoader(
            self.dataset,
            batch_size=int(self.cfg.data.batch_size),
            sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )
        it = iter(loader)
        while True:
            try:
                batch = next(it)
            except MattingError as err:  # a worker's error arrives with its traceback text
                lines = [ln for ln in str(err).splitlines() if ln.strip()]
                raise type(err)(lines[-1] if lines else str(err)) from None
            yield batch

    # -- training ----------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batches: list[ClipBatch]) -> StepResult:
        """One optimiser step over ``batches`` (one per micro-batch); returns the mean loss."""
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        parts: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(batches):
            sync = i == len(batches) - 1 or not self.dist.enabled
            no_sync = getattr(self.ddp, "no_sync", None)
            ctx = contextlib.nullcontext() if sync or no_sync is None else no_sync()
            with ctx:
                with self._autocast():
                    loss, terms = self.ddp(batch.to(self.device))
                (loss / len(batches)).backward()
            total += loss.detach() / len(batches)
            for k, v in terms.items():
                parts[k] = parts.get(k, torch.zeros((), device=self.device)) + v / len(batches)
        clip = float(self.cfg.optim.grad_clip)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, clip)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        mean = self.dist.mean(total)
        return StepResult(
            loss=float(mean),
            parts={k: float(self.dist.mean(v)) for k, v in parts.items()},
            seconds=time.perf_counter() - start,
            clips=sum(len(b.names) for b in batches) * self.dist.world,
            lr=lr,
        )

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": self.step,
            "world": self.dist.world,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes ``checkpoints/step_NNNNNN``; every rank waits for it."""
        path = None
        if self.dist.is_main:
            root = self.run_dir / "checkpoints"
            path = ckpt.save_checkpoint(
                self.model,
                self.state(),
                root,
                step=self.step,
                base_config=str(self.cfg.model.config),
            )
            ckpt.prune_checkpoints(root, int(self.cfg.run.keep_checkpoints))
        self.dist.barrier()
        return path

    def _write_config(self) -> None:
        target = self.run_dir / "config.yaml"
        if self.dist.is_main:
            if target.is_file() and bool(self.cfg.run.resume):
                old = load_saved_config(target)
                if old.get("model") != self.cfg.get("model") or old.get("adapter") != self.cfg.get(
                    "adapter"
                ):
                    raise ConfigError(f"resuming with another model or adapter than {target}")
            save_config(self.cfg, target)

    def fit(self) -> Path:
        """Train to ``run.steps``; returns the final adapter folder ``run_dir/adapter``."""
        self._write_config()
        every = max(1, int(self.cfg.run.checkpoint_every))
        log_every = max(1, int(self.cfg.run.log_every))
        log = RunLog(
            self.run_dir,
            enabled=self.dist.is_main,
            tensorboard=bool(self.cfg.run.tensorboard),
            progress=bool(self.cfg.run.progress),
            total=self.steps,
            initial=self.step,
        )
        batches = self.loader()
        frames = int(self.dataset.num_frames)
        try:
            while self.step < self.steps:
                t0 = time.perf_counter()
                micro = [next(batches) for _ in range(self.accumulate)]
                wait = time.perf_counter() - t0
                result = self.train_step(micro)
                rate = result.clips / max(result.seconds + wait, 1e-9)
                log.advance(1, {"loss": result.loss, "clips/s": rate})
                if self.step % log_every == 0 or self.step == self.steps:
                    log.record(
                        self.step,
                        {
                            "loss": result.loss,
                            **result.parts,
                            "lr": result.lr,
                            "clips_per_s": rate,
                            "frames_per_s": rate * frames,
                            "step_s": result.seconds,
                            "data_wait_s": wait,
                            "peak_mem_mib": peak_memory_mib(self.device),
                        },
                    )
                if self.step % every == 0 and self.step < self.steps:
                    self.save_checkpoint()
            self.save_checkpoint()
            final = self.run_dir / "adapter"
            if self.dist.is_main:
                from sam2_matting.lora import save_adapter

                save_adapter(self.model, final, base_config=str(self.cfg.model.config))
                log.write(f"final adapter: {final}")
            self.dist.barrier()
            return final
        finally:
            log.close()
            self.dist.teardown()
