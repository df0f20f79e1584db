"""Training checkpoints: a PEFT adapter plus the optimiser state, written atomically.

    from sam2_matting.training.checkpoint import save_checkpoint, latest_checkpoint, load_state
    path = save_checkpoint(peft_model, state, run_dir / "checkpoints", step=100, base_config=...)
    path = latest_checkpoint(run_dir / "checkpoints")    # None if there is none
    state = load_state(path)                             # dict saved by save_checkpoint

A checkpoint is a folder ``step_000100/`` holding ``adapter_config.json`` and
``adapter_model.safetensors`` (loadable by the server's ``--adapter``) and
``trainer_state.pt`` (step, optimiser, scheduler, RNG states; read with
``torch.load(weights_only=True)``). It is written under a ``.part`` name and renamed when
complete, so a run killed mid-save never leaves a checkpoint that looks valid.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch

from sam2_matting.errors import CheckpointError
from sam2_matting.lora import ADAPTER_WEIGHTS, save_adapter

STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:06d}"


def save_checkpoint(
    model: Any, state: dict[str, Any], root: str | Path, *, step: int, base_config: str
) -> Path:
    """Write the adapter and ``state`` as ``root/step_NNNNNN``; returns the folder."""
    base = Path(root)
    final = step_dir(base, step)
    part = final.with_name(final.name + ".part")
    if part.exists():
        shutil.rmtree(part)
    part.mkdir(parents=True)
    save_adapter(model, part, base_config=base_config)
    torch.save(state, part / STATE_FILE)
    if final.exists():
        shutil.rmtree(final)
    part.rename(final)
    return final


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``root`` as (step, folder), oldest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = []
    for entry in base.iterdir():
        m = _STEP_DIR.match(entry.name)
        if m and (entry / STATE_FILE).is_file() and (entry / ADAPTER_WEIGHTS).is_file():
            found.append((int(m.group(1)), entry))
    return sorted(found)


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def load_state(path: str | Path) -> dict[str, Any]:
    """The trainer state of a checkpoint folder, loaded without unpickling code."""
    file = Path(path) / STATE_FILE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read {file}: {str(err).splitlines()[0][:200]}") from err
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{file} is not a sam2-matting trainer state")
    return state


def load_adapter_weights(model: Any, path: str | Path) -> None:
    """Copy the LoRA weights of checkpoint ``path`` into the PEFT-wrapped ``model``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    file = Path(path) / ADAPTER_WEIGHTS
    try:
        weights = load_file(str(file))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {file}: {err}") from err
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", [])
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if unexpected or missing:
        raise CheckpointError(
            f"{file} does not fit this adapter ({len(missing)} missing, "
            f"{len(unexpected)} unexpected LoRA tensors)"
        )
