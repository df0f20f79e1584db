"""LoRA matting adapters for SAM 2, through Hugging Face PEFT.

    from sam2_matting.lora import MattingLoraConfig, add_adapter, save_adapter, merge_adapter
    peft_model = add_adapter(sam2_model, MattingLoraConfig())   # trainable LoRA, base frozen
    save_adapter(peft_model, "adapters/my-matting")   # adapter_config.json + safetensors
    merged = merge_adapter(sam2_model, "adapters/my-matting")    # plain SAM2VideoPredictor

The default targets follow the course project this product grew from: the linear layers of the
mask decoder's output hypernetwork MLPs (rank 32) and the q/k/v/out projections of the decoder
transformer's final token-to-image attention (rank 8). With ``alpha = rank`` the LoRA scaling is
1, which is what the course project's adapters computed (``y = Wx + b + up(down(x))``).
For inference the adapter is merged into the weights, so matting costs nothing over SAM 2.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sam2_matting.errors import CheckpointError, InvalidInputError

MLP_TARGETS = r"sam_mask_decoder\.output_hypernetworks_mlps\.\d+\.layers\.\d+"
ATTENTION_TARGETS = (
    r"sam_mask_decoder\.transformer\.final_attn_token_to_image\.(q_proj|k_proj|v_proj|out_proj)"
)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class MattingLoraConfig:
    """Where the LoRA adapters go and how big they are."""

    mlp_rank: int = field(default=32, metadata={"help": "rank of the hypernetwork-MLP adapters"})
    attention_rank: int = field(default=8, metadata={"help": "rank of the attention adapters"})
    mlp_alpha: int | None = field(
        default=None, metadata={"help": "LoRA alpha of the MLP adapters (None: = rank, scale 1)"}
    )
    attention_alpha: int | None = field(
        default=None, metadata={"help": "LoRA alpha of the attention adapters (None: = rank)"}
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    mlp_targets: str = field(
        default=MLP_TARGETS, metadata={"help": "regex of module names for MLP adapters ('' off)"}
    )
    attention_targets: str = field(
        default=ATTENTION_TARGETS,
        metadata={"help": "regex of module names for attention adapters ('' off)"},
    )

    def to_peft(self) -> Any:
        """The equivalent ``peft.LoraConfig`` (MLP rank as default, attention by pattern)."""
        from peft import LoraConfig

        if self.mlp_rank <= 0 or self.attention_rank <= 0:
            raise InvalidInputError("LoRA ranks must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidInputError("LoRA dropout must be in [0, 1)")
        groups = [t for t in (self.mlp_targets, self.attention_targets) if t]
        if not groups:
            raise InvalidInputError("no LoRA targets: give mlp_targets or attention_targets")
        mlp_alpha = self.mlp_alpha if self.mlp_alpha is not None else self.mlp_rank
        attn_alpha = (
            self.attention_alpha if self.attention_alpha is not None else self.attention_rank
        )
        rank_pattern: dict[str, int] = {}
        alpha_pattern: dict[str, int] = {}
        if self.attention_targets:
            # PEFT matches pattern keys against the end of the module name.
            rank_pattern[self.attention_targets] = self.attention_rank
            alpha_pattern[self.attention_targets] = attn_alpha
        return LoraConfig(
            r=self.mlp_rank,
            lora_alpha=mlp_alpha,
            lora_dropout=self.dropout,
            target_modules="(" + "|".join(groups) + ")",
            rank_pattern=rank_pattern,
            alpha_pattern=alpha_pattern,
            bias="none",
        )


def add_adapter(model: torch.nn.Module, config: MattingLoraConfig | None = None) -> Any:
    """Wrap ``model`` in a ``PeftModel`` with fresh LoRA adapters; only LoRA is trainable.

    The wrapper forwards attribute access, so SAM 2's ``init_state`` and friends still work.
    """
    from peft import get_peft_model

    cfg = (config or MattingLoraConfig()).to_peft()
    try:
        return get_peft_model(model, cfg)
    except ValueError as err:
        raise CheckpointError(f"cannot place LoRA adapters: {err}") from err


def save_adapter(peft_model: Any, out_dir: str | Path, *, base_config: str | None = None) -> Path:
    """Save a PEFT-wrapped model's adapter as ``adapter_config.json`` + safetensors."""
    out = Path(out_dir)
    if base_config is not None:
        peft_model.peft_config["default"].base_model_name_or_path = base_config
    # save_embedding_layers=False: otherwise PEFT asks the Hugging Face hub about the base model.
    peft_model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
    return out


def check_adapter_dir(adapter_dir: str | Path) -> Path:
    """Validate an adapter folder before PEFT touches it (no pickle, readable config)."""
    path = Path(adapter_dir)
    if not path.is_dir():
        raise CheckpointError(f"adapter folder not found: {path}")
    cfg_file, weights = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{path} has no {ADAPTER_WEIGHTS} (only safetensors adapters load)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {cfg_file}: {err}") from err
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        raise CheckpointError(f"{cfg_file} is not a PEFT LoRA adapter config")
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{weights} is not a valid safetensors file: {err}") from err
    return path


def load_adapter(
    model: torch.nn.Module, adapter_dir: str | Path, *, trainable: bool = False
) -> Any:
    """Wrap ``model`` in a ``PeftModel`` carrying the adapter saved in ``adapter_dir``."""
    from peft import PeftModel

    path = check_adapter_dir(adapter_dir)
    try:
        with warnings.catch_warnings():  # the refiner's entry is ours, not PEFT's
            warnings.filterwarnings("ignore", message=r"Unexpected keyword arguments \['refiner'\]")
            return PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        msg = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"adapter {path} does not fit this model: {msg}") from err


def merge_adapter(model: torch.nn.Module, adapter_dir: str | Path) -> Any:
    """Return ``model`` with the adapter in ``adapter_dir`` merged into its weights."""
    merged = load_adapter(model, adapter_dir).merge_and_unload()
    merged.eval()
    return merged


def lora_parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
