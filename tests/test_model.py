"""Model building and checkpoints: the tiny model through our loader and SAM 2's official one."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from sam2_matting.errors import CheckpointError
from sam2_matting.model import (
    build_sam2_model,
    count_parameters,
    install_cpu_connected_components,
    resolve_device,
)
from sam2_matting.tiny import make_tiny_model


def test_tiny_model_is_small_and_in_official_format(tiny_model) -> None:
    assert 1_000_000 < tiny_model.parameters < 2_000_000
    obj = torch.load(tiny_model.checkpoint, map_location="cpu", weights_only=True)
    assert set(obj) == {"model"}
    assert all(isinstance(v, torch.Tensor) for v in obj["model"].values())
    assert tiny_model.config.read_text().startswith("# @package _global_")
    assert "RANDOM WEIGHTS" in tiny_model.config.read_text()


def test_official_loader_reads_tiny_checkpoint(tiny_model) -> None:
    from sam2.build_sam import build_sam2_video_predictor

    official = build_sam2_video_predictor(
        f"/{tiny_model.config}", str(tiny_model.checkpoint), device="cpu"
    )
    ours = build_sam2_model(tiny_model.config, tiny_model.checkpoint, device="cpu")
    assert type(official) is type(ours)
    ours_sd, off_sd = ours.state_dict(), official.state_dict()
    assert ours_sd.keys() == off_sd.keys()
    assert all(torch.equal(ours_sd[k], off_sd[k]) for k in ours_sd)
    assert official.image_size == ours.image_size == 256


def test_checkpoint_round_trip_restores_weights(tiny_model, tmp_path) -> None:
    other = make_tiny_model(tmp_path, seed=5)
    loaded = build_sam2_model(other.config, tiny_model.checkpoint, device="cpu")
    reference = torch.load(tiny_model.checkpoint, weights_only=True)["model"]
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key
    seed5 = torch.load(other.checkpoint, weights_only=True)["model"]
    assert any(not torch.equal(seed5[k], reference[k]) for k in reference)


def test_missing_and_corrupt_checkpoints_are_clear_errors(tiny_model, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        build_sam2_model(tiny_model.config, tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        build_sam2_model(tiny_model.config, junk)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_model.checkpoint.read_bytes()[:10_000])
    with pytest.raises(CheckpointError):
        build_sam2_model(tiny_model.config, truncated)
    wrong = tmp_path / "wrong.pt"
    torch.save({"weights": {}}, wrong)
    with pytest.raises(CheckpointError, match="not a SAM 2 checkpoint"):
        build_sam2_model(tiny_model.config, wrong)


def test_checkpoint_of_another_config_is_refused(tiny_model) -> None:
    # The tiny weights do not fit hiera_t: a clear error, not SAM 2's bare RuntimeError.
    with pytest.raises(CheckpointError, match="does not fit"):
        build_sam2_model("tiny", tiny_model.checkpoint)


def test_pickled_code_is_never_executed(tiny_model, tmp_path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, evil)
    with pytest.raises(CheckpointError):
        build_sam2_model(tiny_model.config, evil)


def test_unknown_configs_are_clear_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="neither a model size"):
        build_sam2_model("hiera_xxl")
    not_sam = tmp_path / "x.yaml"
    not_sam.write_text("foo: 1\n")
    with pytest.raises(CheckpointError, match="no 'model' section"):
        build_sam2_model(not_sam)


def test_device_resolution() -> None:
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(CheckpointError):
        resolve_device("tpu9")


def test_cpu_hole_filling_runs_without_warning(tiny_model) -> None:
    import sam2.utils.misc as misc

    install_cpu_connected_components()
    scores = torch.full((1, 1, 20, 20), 5.0)
    scores[0, 0, 2:4, 2:4] = -1.0  # a 4-pixel hole: filled
    scores[0, 0, 8:18, 8:18] = -1.0  # a 100-pixel hole: kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filled = misc.fill_holes_in_mask_scores(scores, max_area=8)
    assert (filled[0, 0, 2:4, 2:4] > 0).all()
    assert (filled[0, 0, 8:18, 8:18] < 0).all()
    labels, areas = misc.get_connected_components(scores <= 0)
    assert labels.shape == areas.shape == (1, 1, 20, 20)
    assert int(areas[0, 0, 10, 10]) == 100 and int(areas[0, 0, 3, 3]) == 4


def test_parameter_count_of_hiera_t_config() -> None:
    model = build_sam2_model("tiny", None, device="cpu")  # random, shapes only
    assert 38_000_000 < count_parameters(model) < 40_000_000
