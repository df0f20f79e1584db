"""Import the course project's LoRA checkpoints as base weights + a PEFT adapter.

    sam2-matting adapter import-legacy legacy.pt OUT_DIR [--config large]

The course project saved one full state dict in which every adapted linear layer ``X`` appears as
``X.linear.weight``/``X.linear.bias`` (the frozen base layer) plus
``X.lora_adapter.low_rank_down.weight`` (r x in) and ``X.lora_adapter.low_rank_up.weight``
(out x r), computing ``y = linear(x) + up(down(x))`` with no scaling. That is PEFT's LoRA with
``lora_A = down``, ``lora_B = up`` and ``alpha = r``. ``OUT_DIR`` receives ``base_model.pt``
(official ``{"model": state_dict}`` format) and the adapter files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from sam2_matting.errors import CheckpointError

_LINEAR = ".linear."
_DOWN = ".lora_adapter.low_rank_down.weight"
_UP = ".lora_adapter.low_rank_up.weight"
BASE_CHECKPOINT = "base_model.pt"


@dataclass(frozen=True)
class LegacySplit:
    base: dict[str, torch.Tensor]
    # module name -> (down = lora_A, up = lora_B)
    adapters: dict[str, tuple[torch.Tensor, torch.Tensor]]


def read_legacy_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a legacy checkpoint safely (``weights_only``); accepts a bare or wrapped state dict."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"legacy checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or hostile file raises many error types
        raise CheckpointError(f"cannot read legacy checkpoint {p}: {str(err)[:200]}") from err
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} is not a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def split_legacy_state(state: Mapping[str, torch.Tensor]) -> LegacySplit:
    """Separate base weights from LoRA factors; rename ``X.linear.*`` back to ``X.*``."""
    base: dict[str, torch.Tensor] = {}
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(_DOWN):
            downs[key.removesuffix(_DOWN)] = value
        elif key.endswith(_UP):
            ups[key.removesuffix(_UP)] = value
        elif _LINEAR in key:
            module, _, leaf = key.rpartition(_LINEAR)
            base[f"{module}.{leaf}"] = value
        else:
            base[key] = value
    if set(downs) != set(ups):
        odd = sorted(set(downs) ^ set(ups))[0]
        raise CheckpointError(f"legacy adapter {odd} has a down or an up matrix but not both")
    if not downs:
        raise CheckpointError("no legacy LoRA adapters (X.lora_adapter.low_rank_*) found")
    adapters: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, down in downs.items():
        up = ups[name]
        weight = base.get(f"{name}.weight")
        if weight is None:
            raise CheckpointError(f"legacy adapter {name} has no {name}.linear.weight")
        r = down.shape[0]
        if down.dim() != 2 or up.dim() != 2 or up.shape[1] != r:
            raise CheckpointError(f"legacy adapter {name}: down/up shapes do not chain")
        if (up.shape[0], down.shape[1]) != tuple(weight.shape):
            raise CheckpointError(f"legacy adapter {name}: shape does not match its linear layer")
        adapters[name] = (down, up)
    return LegacySplit(base, adapters)


def import_legacy(
    legacy_path: str | Path, out_dir: str | Path, config: str | Path
) -> tuple[Path, Path]:
    """Convert ``legacy_path`` for the SAM 2 ``config``; return (base checkpoint, adapter dir).

    The base weights are checked against ``config`` (strict), the adapter is placed with PEFT
    at exactly the legacy layers and ranks and saved as a PEFT folder.
    """
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from sam2_matting.lora import save_adapter
    from sam2_matting.model import build_sam2_model, load_weights

    split = split_legacy_state(read_legacy_checkpoint(legacy_path))
    model = build_sam2_model(config, None, device="cpu")
    load_weights(model, split.base, str(legacy_path))

    names = sorted(split.adapters)
    ranks = {name: split.adapters[name][0].shape[0] for name in names}
    default_rank = max(ranks.values(), key=list(ranks.values()).count)
    targets = "(" + "|".join(re.escape(n) for n in names) + ")"
    rank_pattern = {re.escape(n): r for n, r in ranks.items() if r != default_rank}
    # alpha = r gives PEFT's scaling alpha / r = 1: the legacy layers had no scaling.
    alpha_pattern = {re.escape(n): r for n, r in ranks.items() if r != default_rank}
    cfg = LoraConfig(
        r=default_rank,
        lora_alpha=default_rank,
        target_modules=targets,
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        lora_dropout=0.0,
        bias="none",
    )
    peft_model = get_peft_model(model, cfg)
    lora_state: dict[str, torch.Tensor] = {}
    for name, (down, up) in split.adapters.items():
        lora_state[f"base_model.model.{name}.lora_A.weight"] = down
        lora_state[f"base_model.model.{name}.lora_B.weight"] = up
    result = set_peft_model_state_dict(peft_model, lora_state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise CheckpointError(f"legacy adapter keys did not fit: {unexpected[:3]}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base_path = out / BASE_CHECKPOINT
    tmp = base_path.with_name(base_path.name + ".part")
    torch.save({"model": split.base}, tmp)
    tmp.replace(base_path)
    save_adapter(peft_model, out, base_config=str(config))
    return base_path, out
