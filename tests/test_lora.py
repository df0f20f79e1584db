"""LoRA adapters: placement, save/load, merge, and the course project's legacy format."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import torch

from sam2_matting.errors import CheckpointError
from sam2_matting.legacy_adapter import import_legacy
from sam2_matting.lora import (
    MattingLoraConfig,
    add_adapter,
    lora_parameter_count,
    merge_adapter,
    save_adapter,
)
from sam2_matting.model import build_sam2_model
from sam2_matting.tiny import TinyModelFiles


def _decoder_output(model: Any, seed: int = 0) -> torch.Tensor:
    """Mask logits of the decoder for fixed random image features and one click."""
    g = torch.Generator().manual_seed(seed)
    dec = model.sam_mask_decoder
    c = dec.transformer_dim
    s = model.sam_image_embedding_size
    image = torch.randn(1, c, s, s, generator=g)
    high_res = [
        torch.randn(1, c // 8, 4 * s, 4 * s, generator=g),
        torch.randn(1, c // 4, 2 * s, 2 * s, generator=g),
    ]
    sparse, dense = model.sam_prompt_encoder(
        points=(torch.tensor([[[100.0, 120.0]]]), torch.tensor([[1]])), boxes=None, masks=None
    )
    with torch.no_grad():
        out = dec(
            image_embeddings=image,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=high_res,
        )
    return out[0]


def _randomise_lora(peft_model: Any, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_default_targets_and_ranks(tiny_model) -> None:
    model = build_sam2_model(tiny_model.config, tiny_model.checkpoint, device="cpu")
    peft_model = add_adapter(model)
    ranks = {
        name.removeprefix("base_model.model."): mod["default"].weight.shape[0]
        for name, mod in peft_model.named_modules()
        if name.endswith("lora_A")
    }
    mlp = {n: r for n, r in ranks.items() if "output_hypernetworks_mlps" in n}
    attn = {n: r for n, r in ranks.items() if "final_attn_token_to_image" in n}
    assert len(mlp) == 12 and set(mlp.values()) == {32}  # 4 MLPs x 3 linear layers
    assert sorted(n.rsplit(".", 2)[-2] for n in attn) == ["k_proj", "out_proj", "q_proj", "v_proj"]
    assert set(attn.values()) == {8}
    assert len(ranks) == 16
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_configurable_targets_ranks_and_dropout(tiny_model) -> None:
    model = build_sam2_model(tiny_model.config, tiny_model.checkpoint, device="cpu")
    cfg = MattingLoraConfig(mlp_rank=4, attention_targets="", dropout=0.1, mlp_alpha=8)
    peft_model = add_adapter(model, cfg)
    lora_cfg = peft_model.peft_config["default"]
    assert lora_cfg.r == 4 and lora_cfg.lora_alpha == 8 and lora_cfg.lora_dropout == 0.1
    assert not any("final_attn" in n for n, _ in peft_model.named_parameters() if "lora_" in n)
    with pytest.raises(CheckpointError):
        add_adapter(
            build_sam2_model(tiny_model.config, tiny_model.checkpoint, device="cpu"),
            MattingLoraConfig(mlp_targets=r"no\.such\.module", attention_targets=""),
        )


def test_fresh_adapter_changes_nothing_and_gradients_reach_lora_only(tiny_model) -> None:
    base = build_sam2_model(tiny_model.config, tiny_model.checkpoint, device="cpu")
    reference = _decoder_output(base)
    peft_model = add_adapter(base)
    assert torch.equal(_decoder_output(peft_model.base_model.model), reference)
    _randomise_lora(peft_model)
    model = peft_model.base_model.model
    model.train()
    dec = model.sam_mask_decoder
    s = model.sam_image_embedding_size
    c = dec.transformer_dim
    sparse, dense = model.sam_prompt_encoder(
        points=(torch.tensor([[[10.0, 12.0]]]), torch.tensor([[1]])), boxes=None, masks=None
    )
    out = dec(
        image_embeddings=torch.randn(1, c, s, s),
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
        repeat_image=False,
        high_res_features=[
            torch.randn(1, c // 8, 4 * s, 4 * s),
            torch.randn(1, c // 4, 2 * s, 2 * s),
        ],
    )
    out[0].sigmoid().mean().backward()
    with_grad = {n for n, p in peft_model.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert sum("lora_B" in n for n in with_grad) == 16


def test_save_load_merge_agree(tiny_model, tmp_path) -> None:
    peft_model = add_adapter(
        build_sam2_model(tiny_model.config, tiny_model.checkpoint, device="cpu")
    )
    _randomise_lora(peft_model)
    peft_model.eval()
    unmerged = _decoder_output(peft_model.base_model.model)
    out = save_adapter(peft_model, tmp_path / "adapter", base_config=str(tiny_model.config))
    files = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert not list(out.glob("*.bin"))
    merged = merge_adapter(
        build_sam2_model(tiny_model.config, tiny_model.checkpoint, device="cpu"), out
    )
    assert lora_parameter_count(merged) == 0
    assert type(merged).__name__ == "SAM2VideoPredictor"
    merged_out = _decoder_output(merged)
    base_out = _decoder_output(build_sam2_model(tiny_model.config, tiny_model.checkpoint))
    # Stated tolerance: merged and unmerged mask logits agree to 1e-4 (fp32 re-association).
    assert torch.allclose(merged_out, unmerged, atol=1e-4)
    assert not torch.allclose(merged_out, base_out, atol=1e-3)  # the adapter does something


def test_bad_adapter_folders(tiny_model, tmp_path) -> None:
    model = build_sam2_model(tiny_model.config, tiny_model.checkpoint)
    with pytest.raises(CheckpointError, match="not found"):
        merge_adapter(model, tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_model.safetensors").write_bytes(b"\x00" * 40)
    (bad / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(CheckpointError, match="safetensors"):
        merge_adapter(model, bad)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="only safetensors"):
        merge_adapter(model, pickled)


def _legacy_state(tiny_model: TinyModelFiles, seed: int = 3) -> tuple[dict, dict]:
    """A course-project checkpoint made from the tiny model: rank 32 MLPs, rank 8 attention."""
    g = torch.Generator().manual_seed(seed)
    base = torch.load(tiny_model.checkpoint, weights_only=True)["model"]
    legacy: dict[str, torch.Tensor] = {}
    merged: dict[str, torch.Tensor] = dict(base)
    targets = [
        k.removesuffix(".weight")
        for k in base
        if k.endswith(".weight")
        and (
            ("output_hypernetworks_mlps" in k and ".layers." in k)
            or "final_attn_token_to_image" in k
        )
    ]
    for key, value in base.items():
        module = key.rsplit(".", 1)[0]
        if module in targets:
            legacy[f"{module}.linear.{key.rsplit('.', 1)[1]}"] = value
        else:
            legacy[key] = value
    for module in targets:
        w = base[f"{module}.weight"]
        r = 8 if "final_attn" in module else 32
        down = torch.randn(r, w.shape[1], generator=g) * 0.05
        up = torch.randn(w.shape[0], r, generator=g) * 0.05
        legacy[f"{module}.lora_adapter.low_rank_down.weight"] = down
        legacy[f"{module}.lora_adapter.low_rank_up.weight"] = up
        merged[f"{module}.weight"] = w + up @ down
    return legacy, merged


def test_import_legacy_matches_the_legacy_computation(tiny_model, tmp_path) -> None:
    legacy, expected_merged = _legacy_state(tiny_model)
    legacy_path = tmp_path / "legacy.pt"
    torch.save({"model": legacy}, legacy_path)
    base_path, adapter_dir = import_legacy(legacy_path, tmp_path / "out", tiny_model.config)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 32
    merged = merge_adapter(build_sam2_model(tiny_model.config, base_path), adapter_dir)
    sd = merged.state_dict()
    for key, value in expected_merged.items():
        assert torch.allclose(sd[key], value, atol=1e-6), key
    reference = build_sam2_model(tiny_model.config, tiny_model.checkpoint)
    reference.load_state_dict(expected_merged)
    assert torch.allclose(_decoder_output(merged), _decoder_output(reference), atol=1e-5)


def test_import_legacy_cli_and_bad_input(tiny_model, tmp_path) -> None:
    legacy, _ = _legacy_state(tiny_model)
    legacy_path = tmp_path / "legacy.pt"
    torch.save(legacy, legacy_path)  # a bare state dict works too
    cli = [sys.executable, "-m", "sam2_matting", "adapter", "import-legacy"]
    ok = subprocess.run(
        [*cli, str(legacy_path), str(tmp_path / "out"), "--config", str(tiny_model.config)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "out" / "base_model.pt").is_file()
    no_lora = tmp_path / "plain.pt"
    torch.save({"model": {k: v for k, v in legacy.items() if "lora_adapter" not in k}}, no_lora)
    bad = subprocess.run(
        [*cli, str(no_lora), str(tmp_path / "out2"), "--config", str(tiny_model.config)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert "no legacy LoRA adapters" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "out2" / "adapter_model.safetensors").exists()
    half = {k: v for k, v in legacy.items() if not k.endswith("low_rank_up.weight")}
    torch.save(half, tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match="not both"):
        import_legacy(tmp_path / "half.pt", tmp_path / "out3", tiny_model.config)
