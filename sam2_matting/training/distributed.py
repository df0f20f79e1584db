"""Process-group set-up for ``torchrun`` (DDP), and the device each process trains on.

    from sam2_matting.training.distributed import DistInfo
    dist_info = DistInfo.from_env()            # RANK / WORLD_SIZE / LOCAL_RANK from torchrun
    device = dist_info.setup(device="auto", backend="auto")   # init_process_group if world > 1
    ...
    dist_info.teardown()

A plain ``sam2-matting train ...`` is a world of one and never touches ``torch.distributed``.
Under ``torchrun --nproc_per_node N -m sam2_matting train ...`` each process joins the group
with NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``) or gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sam2_matting.model import resolve_device
from sam2_matting.training.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls) -> DistInfo:
        try:
            return cls(
                rank=int(os.environ.get("RANK", "0")),
                world=int(os.environ.get("WORLD_SIZE", "1")),
                local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            )
        except ValueError as err:
            raise ConfigError(f"bad RANK/WORLD_SIZE/LOCAL_RANK in the environment: {err}") from err

    def setup(self, device: str = "auto", backend: str = "auto") -> torch.device:
        """Pick this process's device and join the process group when ``world > 1``."""
        dev = resolve_device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", self.local_rank if self.enabled else 0)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if self.enabled and not dist.is_initialized():
            chosen = backend if backend != "auto" else ("nccl" if dev.type == "cuda" else "gloo")
            if chosen not in ("nccl", "gloo"):
                raise ConfigError(f"ddp.backend must be auto, nccl or gloo, got {backend!r}")
            dist.init_process_group(backend=chosen, rank=self.rank, world_size=self.world)
        return dev

    def barrier(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over all processes (itself in a world of one)."""
        if not (self.enabled and dist.is_initialized()):
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world

    def teardown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
