"""The full-resolution refiner: model, adapter-folder files, predictor, training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import sam2_matting.refiner as refiner_module
from sam2_matting.errors import CheckpointError, InvalidInputError
from sam2_matting.refiner import (
    ADAPTER_CONFIG,
    REFINER_WEIGHTS,
    GuidedRefiner,
    RefinerConfig,
    adapter_contents,
    load_refiner,
    parameter_count,
    save_refiner,
    scale_factor,
)
from sam2_matting.tiny import TinyModelFiles
from sam2_matting.training.refiner_train import (
    RefinerTrainConfig,
    RefinerTrainer,
    TrainingData,
    parse_overrides,
)


def _scene(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame (a reddish disc over texture), its true soft alpha and a blurred 'coarse' one."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    r = np.hypot(yy - h * 0.5, xx - w * 0.45)
    alpha = np.clip((min(h, w) * 0.3 - r) / 1.5 + 0.5, 0, 1).astype(np.float32)
    fg = np.array([200, 60, 40], np.float32)
    bg = rng.integers(0, 120, (h, w, 3)).astype(np.float32)
    frame = np.rint(alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.uint8)
    coarse = 1 / (1 + np.exp(-(min(h, w) * 0.3 + rng.uniform(-2, 2) - r) / 3.0))
    return frame, alpha, coarse.astype(np.float32)


def _random_refiner(seed: int = 0, **kw: int) -> GuidedRefiner:
    torch.manual_seed(seed)
    net = GuidedRefiner(RefinerConfig(**kw))
    with torch.no_grad():
        for p in net.net[-1].parameters():
            p.normal_(0, 0.1)
    return net.eval()


def test_shapes_dtypes_and_size() -> None:
    net = _random_refiner()
    assert 1_000 <= parameter_count(net) <= 10_000
    frame, _, coarse = _scene(60, 90)
    out = net.refine(frame, torch.from_numpy(np.stack([coarse, coarse[::-1].copy()])))
    assert out.shape == (2, 60, 90) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert scale_factor(1080, 1920, 512) == 4 and scale_factor(720, 1280, 512) == 2
    assert scale_factor(1080, 1920, 256) == 8 and scale_factor(720, 1280, 256) == 5


@pytest.fixture(params=["compiled", "torch"])
def refine_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both CPU inference paths: the compiled kernels (the default) and torch's operations
    (what a GPU runs, here on CPU tensors)."""
    monkeypatch.setattr(refiner_module, "COMPILED_CPU", request.param == "compiled")
    return str(request.param)


@pytest.mark.parametrize("gain", [0, 1])
@pytest.mark.parametrize(
    ("size", "low_side"), [((64, 96), 24), ((62, 95), 24), ((30, 40), 24), ((61, 107), 16)]
)
def test_refine_equals_the_whole_frame_forward(
    size: tuple[int, int], low_side: int, gain: int, refine_path: str
) -> None:
    """The cell-restricted inference is the differentiable forward on the padded frame, for
    frames that are and are not a whole number of cells, with and without the gain term."""
    h, w = size
    net = _random_refiner(low_side=low_side, gain=gain)
    frame, _, coarse = _scene(h, w)
    coarse[: h // 3, : w // 4] = 0.3  # a second soft region, touching the frame's corner
    f = scale_factor(h, w, low_side)
    img = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    c = torch.from_numpy(coarse)[None, None]
    pad = (0, -w % f, 0, -h % f)
    with torch.no_grad():
        whole = net(F.pad(img, pad, mode="replicate"), F.pad(c, pad, mode="replicate"), f)
    out = net.refine(frame, c[0])
    assert torch.allclose(out[0], whole[0, 0, :h, :w], atol=1e-6)
    assert not torch.equal(out[0], c[0, 0])  # it did change something
    # the part past the frame's edge was computed (as padding) but nothing outside was written
    assert out.shape == (1, h, w)


def _dense(net: GuidedRefiner, frame: np.ndarray, coarse: np.ndarray) -> torch.Tensor:
    """The differentiable forward on the frame padded to whole cells: (N,H,W)."""
    h, w = coarse.shape[-2:]
    f = scale_factor(h, w, net.config.low_side)
    img = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    pad = (0, -w % f, 0, -h % f)
    img = F.pad(img, pad, mode="replicate")
    out = []
    with torch.no_grad():
        for c in torch.from_numpy(coarse):
            out.append(net(img, F.pad(c[None, None], pad, mode="replicate"), f)[0, 0, :h, :w])
    return torch.stack(out)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    h=st.integers(16, 90),
    w=st.integers(16, 90),
    low_side=st.sampled_from([16, 20, 24, 32]),
    radius=st.integers(0, 3),
    band=st.integers(0, 4),
    gain=st.sampled_from([0, 1]),
    blobs=st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(1, 12), st.floats(0.01, 0.99)),
        min_size=0,
        max_size=4,
    ),
    objects=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_both_inference_paths_equal_the_dense_forward(
    h: int,
    w: int,
    low_side: int,
    radius: int,
    band: int,
    gain: int,
    blobs: list[tuple[float, float, int, float]],
    objects: int,
    seed: int,
) -> None:
    """Generated frames, shapes and soft regions (none, at the frame's edges and corners,
    several, per object): the compiled kernels and torch's operations give the dense
    forward's alpha, and leave every other pixel exactly as the coarse alpha."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    coarse = (rng.random((objects, h, w)) < 0.5).astype(np.float32)
    for k, (fy, fx, r, v) in enumerate(blobs):
        y, x = int(fy * (h - 1)), int(fx * (w - 1))
        coarse[k % objects, max(0, y - r) : y + r, max(0, x - r) : x + r] = v
    net = _random_refiner(seed % 7, low_side=low_side, radius=radius, band=band, gain=gain)
    whole = _dense(net, frame, coarse)
    results = {}
    for compiled in (True, False):
        refiner_module.COMPILED_CPU = compiled
        try:
            results[compiled] = net.refine(frame, torch.from_numpy(coarse))
        finally:
            refiner_module.COMPILED_CPU = True
    for got in results.values():
        assert torch.allclose(got, whole, atol=2e-6)
    if not blobs:
        assert torch.equal(results[True], torch.from_numpy(coarse))  # no soft value: no band


def test_without_the_compiled_kernels_torch_does_the_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host where numba cannot compile: one warning, then the same alpha from torch."""
    import sam2_matting.refiner_cpu as kernels

    net = _random_refiner(low_side=16, gain=1)
    frame, _, coarse = _scene(61, 107)
    c = torch.from_numpy(coarse)[None]
    expected = net.refine(frame, c)

    def broken() -> None:
        raise RuntimeError("no locator available")

    monkeypatch.setattr(kernels, "warm_up", broken)
    monkeypatch.setattr(refiner_module, "_compiled_ok", None)
    with pytest.warns(RuntimeWarning, match="compiled CPU kernels are not available"):
        got = net.refine(frame, c)
    assert torch.allclose(got, expected, atol=2e-6) and not torch.equal(got, c)
    assert refiner_module.compiled_cpu() is False  # decided once per process


def test_zero_initialised_refiner_is_the_identity() -> None:
    net = GuidedRefiner()
    frame, _, coarse = _scene(48, 64)
    c = torch.from_numpy(coarse)[None]
    assert torch.equal(net.refine(frame, c), c)


def test_confident_pixels_are_left_as_they_are() -> None:
    net = _random_refiner()
    frame, _, coarse = _scene(64, 96)
    coarse = (coarse > 0.5).astype(np.float32)
    coarse[20:40, 30:34] = 0.5  # one soft spot: only its neighbourhood may change
    out = net.refine(frame, torch.from_numpy(coarse)[None])[0].numpy()
    changed = np.argwhere(out != coarse)
    assert len(changed) > 0
    assert changed[:, 0].min() >= 20 - 10 and changed[:, 0].max() < 40 + 10
    assert changed[:, 1].min() >= 30 - 10 and changed[:, 1].max() < 34 + 10


def test_save_load_round_trip_refiner_only(tmp_path: Path) -> None:
    net = _random_refiner(hidden=8, band=2)
    out = save_refiner(net, tmp_path / "adapter")
    assert {p.name for p in out.iterdir()} == {ADAPTER_CONFIG, REFINER_WEIGHTS}
    cfg = json.loads((out / ADAPTER_CONFIG).read_text())
    assert cfg["refiner"]["hidden"] == 8 and cfg["refiner"]["weights"] == REFINER_WEIGHTS
    assert adapter_contents(out) == (False, True)
    back = load_refiner(out)
    assert back is not None and back.config == net.config
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_refiner_next_to_a_lora_adapter(tiny_model: TinyModelFiles, tmp_path: Path) -> None:
    from sam2_matting.lora import add_adapter, merge_adapter, save_adapter
    from sam2_matting.model import build_sam2_model

    peft_model = add_adapter(build_sam2_model(tiny_model.config, tiny_model.checkpoint))
    lora = save_adapter(peft_model, tmp_path / "lora", base_config=str(tiny_model.config))
    assert adapter_contents(lora) == (True, False) and load_refiner(lora) is None
    trainer = RefinerTrainer(
        RefinerTrainConfig(out_dir=str(tmp_path / "run"), init_from=str(lora)), _tiny_data()
    )
    both = trainer.write_adapter(tmp_path / "both")
    assert adapter_contents(both) == (True, True)
    assert load_refiner(both) is not None
    merge_adapter(build_sam2_model(tiny_model.config, tiny_model.checkpoint), both)  # PEFT loads
    assert json.loads((lora / ADAPTER_CONFIG).read_text()).get("refiner") is None


def _session_alphas(predictor: Any, clip: Path, keep_float: bool = False) -> list[Any]:
    with predictor.open(clip, keep_float=keep_float) as session:
        first = session.add_points(0, object_id=1, points=[[20, 20]], labels=[1])
        return [first, *session.propagate()]


def test_predictor_applies_the_refiner(
    tiny_model: TinyModelFiles, small_clip: Path, tmp_path: Path
) -> None:
    from sam2_matting.predictor import build_matting_predictor
    from sam2_matting.video import open_video

    net = _random_refiner(low_side=24)
    folder = save_refiner(net, tmp_path / "refiner-only")

    def build(**kw: Any) -> Any:
        torch.manual_seed(0)
        return build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu", **kw)

    refined, off = build(adapter=folder), build(adapter=folder, refiner=False)
    assert off.refiner is None and refined.refiner is not None
    base = _session_alphas(off, small_clip, keep_float=True)  # as base SAM 2 (no refiner)
    got = _session_alphas(refined, small_clip, keep_float=True)
    frames = open_video(small_clip)
    differs = 0
    for b, r in zip(base, got, strict=True):
        assert r.frame_index == b.frame_index
        assert np.array_equal(b.alphas, np.rint(b.soft * 255))  # unrefined: today's rounding
        expected = net.refine(frames.get_frame(b.frame_index), torch.from_numpy(b.soft))
        assert np.allclose(r.soft, expected.numpy(), atol=1e-5)
        assert np.abs(r.alphas.astype(int) - np.rint(expected.numpy() * 255)).max() <= 1
        differs += int(not np.array_equal(r.alphas, b.alphas))
    assert differs > 0


def _tiny_data(n: int = 2) -> TrainingData:
    frames, coarse, alpha = [], [], []
    for k in range(n):
        clip = [_scene(64, 96, seed=10 * k + t) for t in range(2)]
        frames.append(np.stack([c[0] for c in clip]))
        alpha.append(np.stack([c[1] for c in clip]))
        coarse.append(np.stack([c[2] for c in clip]))
    return TrainingData(frames, coarse, alpha, [f"c{k}" for k in range(n)])


def _cfg(tmp_path: Path, **kw: object) -> RefinerTrainConfig:
    base: dict[str, object] = {
        "out_dir": str(tmp_path / "run"), "steps": 40, "batch": 4, "crop": 32, "lr": 1e-2,
        "low_side": 24, "checkpoint_every": 2, "keep_checkpoints": 0,
    }  # fmt: skip
    base.update(kw)
    return RefinerTrainConfig(**base)  # type: ignore[arg-type]


def test_short_training_lowers_the_loss(tmp_path: Path) -> None:
    trainer = RefinerTrainer(_cfg(tmp_path, checkpoint_every=1000), _tiny_data())
    before = trainer.loss_on(10_000)
    adapter = trainer.fit()
    after = trainer.loss_on(10_000)
    assert after < 0.8 * before, (before, after)
    net = load_refiner(adapter)
    assert net is not None
    assert any(bool(p.abs().sum() > 0) for p in net.net[-1].parameters())  # learnt something
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 41


def test_resume_continues_exactly(tmp_path: Path) -> None:
    data = _tiny_data()
    whole = RefinerTrainer(_cfg(tmp_path / "a", steps=4), data)
    whole.fit()
    first = RefinerTrainer(_cfg(tmp_path / "b", steps=4), data)
    first.train_step()
    first.train_step()
    first.save_checkpoint()  # a run stopped after its checkpoint at step 2
    resumed = RefinerTrainer(_cfg(tmp_path / "b", steps=4, resume=True), data)
    assert resumed.step == 2
    resumed.fit()
    for k, v in whole.net.state_dict().items():
        assert torch.equal(resumed.net.state_dict()[k], v), k


def test_overrides_are_checked() -> None:
    cfg = parse_overrides(["steps=5", "refiner.hidden=8", "resume=true", "sources=a,b"])
    assert (cfg.steps, cfg.hidden, cfg.resume, cfg.sources) == (5, 8, True, ["a", "b"])
    with pytest.raises(InvalidInputError, match="unknown refiner training setting"):
        parse_overrides(["stepz=5"])
    with pytest.raises(InvalidInputError, match="bad value"):
        parse_overrides(["steps=many"])
    with pytest.raises(InvalidInputError, match="hidden"):
        parse_overrides(["hidden=0"])


def test_bad_refiner_files(tmp_path: Path, tiny_model: TinyModelFiles) -> None:
    from sam2_matting.predictor import build_matting_predictor

    good = save_refiner(_random_refiner(), tmp_path / "good")

    def variant(name: str) -> Path:
        import shutil

        return Path(shutil.copytree(good, tmp_path / name))

    corrupt = variant("corrupt")
    (corrupt / REFINER_WEIGHTS).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_refiner(corrupt)
    missing = variant("missing")
    (missing / REFINER_WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_refiner(missing)
    other = variant("other-shape")
    cfg = json.loads((other / ADAPTER_CONFIG).read_text())
    cfg["refiner"]["hidden"] = 4
    (other / ADAPTER_CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_refiner(other)
    for key, value, message in [
        ("colour", 1, "unknown keys"),
        ("version", 7, "version"),
        ("band", "3", "must be a number"),
        ("radius", 99, "radius"),
    ]:
        bad = variant(f"bad-{key}")
        cfg = json.loads((bad / ADAPTER_CONFIG).read_text())
        cfg["refiner"][key] = value
        (bad / ADAPTER_CONFIG).write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match=message):
            load_refiner(bad)
    nan = variant("nan")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(nan / REFINER_WEIGHTS))
    weights["net.0.weight"][0, 0, 0, 0] = float("nan")
    save_file(weights, str(nan / REFINER_WEIGHTS))
    with pytest.raises(CheckpointError, match="non-finite"):
        load_refiner(nan)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ADAPTER_CONFIG).write_text("{}")
    with pytest.raises(CheckpointError, match="neither a LoRA adapter nor a refiner"):
        build_matting_predictor(tiny_model.config, tiny_model.checkpoint, adapter=empty)
    (empty / ADAPTER_CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        build_matting_predictor(tiny_model.config, tiny_model.checkpoint, adapter=empty)


def test_evaluate_synthetic_scores_the_adapters_refiner(tmp_path: Path) -> None:
    import argparse

    from sam2_matting.cli.evaluate_truth import refiners
    from sam2_matting.refiner import refine_frames

    assert refiners(argparse.Namespace(adapter=None)) == {}
    net = _random_refiner()
    folder = save_refiner(net, tmp_path / "adapter")
    found = refiners(argparse.Namespace(adapter=str(folder)))
    assert list(found) == ["refiner"]
    frame, _, coarse = _scene(48, 64)
    frames, coarse_t = np.stack([frame, frame]), np.stack([coarse, coarse])
    got = found["refiner"](frames, coarse_t)
    assert got.shape == (2, 48, 64) and got.dtype == np.float32
    assert np.array_equal(got, refine_frames(net, frames, coarse_t))
    assert np.allclose(got[0], net.refine(frame, torch.from_numpy(coarse)[None])[0].numpy())
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError):
        refiners(argparse.Namespace(adapter=str(tmp_path / "empty")))


def test_training_on_two_sizes_alternates_their_grids(tmp_path: Path) -> None:
    """With clips of two sizes, each step takes its crops from one size in turn, aligned to
    that size's factor, so the refiner learns both grids."""
    small = _tiny_data(2)
    big = []
    for k in range(2):
        clip = [_scene(96, 144, seed=50 + 10 * k + t) for t in range(2)]
        big.append(tuple(np.stack([c[i] for c in clip]) for i in range(3)))
    data = TrainingData(
        small.frames + [b[0] for b in big],
        small.coarse + [b[2] for b in big],
        small.alpha + [b[1] for b in big],
        ["s0", "s1", "b0", "b1"],
    )
    cfg = _cfg(tmp_path, crop=40)
    from sam2_matting.training.refiner_train import sample_batch

    seen = set()
    for step in range(4):
        image, coarse, truth, f = sample_batch(data, step, cfg)
        expected = scale_factor(*((64, 96) if step % 2 == 0 else (96, 144)), cfg.low_side)
        assert f == expected and image.shape[-1] % f == 0, (step, f, image.shape)
        assert coarse.shape == truth.shape == (cfg.batch, 1, *image.shape[-2:])
        seen.add(f)
    assert seen == {4, 6}
    assert parse_overrides(["sizes=720x1280,1080x1920"]).train_sizes() == [
        (720, 1280),
        (1080, 1920),
    ]
    with pytest.raises(InvalidInputError, match="sizes entry"):
        parse_overrides(["sizes=720by1280"])


def test_the_device_indexing_path_gives_the_same_alpha(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the cells are gathered and scattered with torch's indexing, in torch's path on
    the CPU with NumPy's: run both here (CPU tensors) and compare."""
    import sam2_matting.refiner_grid as grid_module

    monkeypatch.setattr(refiner_module, "COMPILED_CPU", False)
    net = _random_refiner(low_side=16, gain=1)
    frame, _, coarse = _scene(61, 107)
    c = torch.from_numpy(coarse)[None]
    host = net.refine(frame, c)
    monkeypatch.setattr(grid_module, "_host_indexing", lambda x: False)
    device = net.refine(frame, c)
    assert torch.equal(host, device) and not torch.equal(host, c)


def test_coarse_augmentation_changes_only_the_coarse(tmp_path: Path) -> None:
    """sharpness/shift vary the coarse input as SAM 2's output varies (steeper or flatter
    logits, a tracking error); the crops of the frame and the truth stay the same."""
    from sam2_matting.metrics.known_truth import resharpen
    from sam2_matting.training.refiner_train import sample_batch

    data = _tiny_data()
    plain = sample_batch(data, 3, _cfg(tmp_path))
    both = sample_batch(data, 3, _cfg(tmp_path, sharpness=1.0, shift=3))
    assert torch.equal(plain[0], both[0]) and torch.equal(plain[2], both[2])
    assert not torch.equal(plain[1], both[1])
    c = np.linspace(0.001, 0.999, 101, dtype=np.float32)
    assert np.array_equal(resharpen(c, 1.0), c)
    steep, flat = resharpen(c, 2.0), resharpen(c, 0.5)
    assert np.allclose(resharpen(steep, 0.5), c, atol=1e-4)  # float32 near 0 and 1
    assert abs(float(steep[50]) - 0.5) < 1e-6 and abs(float(flat[50]) - 0.5) < 1e-6
    assert float(steep[70]) > float(c[70]) > float(flat[70])
    with pytest.raises(InvalidInputError, match="sharpness"):
        parse_overrides(["sharpness=5"])


def test_soft_level_is_kept_and_checked(tmp_path: Path) -> None:
    """A refiner whose band starts at a wider soft level saves and loads it; the band it
    computes follows the level; out-of-range levels are refused."""
    net = _random_refiner(soft_level=0.02)
    folder = save_refiner(net, tmp_path / "a")
    entry = json.loads((folder / ADAPTER_CONFIG).read_text())["refiner"]
    assert entry["soft_level"] == 0.02
    loaded = load_refiner(folder)
    assert loaded is not None and loaded.config.soft_level == 0.02
    coarse = torch.full((1, 1, 32, 32), 0.01)  # soft at 0.5/255, confident at 0.02
    assert float(_random_refiner(soft_level=0.5 / 255).band(coarse, 4).sum()) > 0
    assert float(net.band(coarse, 4).sum()) == 0
    assert RefinerConfig().soft_level == 0.02
    # a folder written before the setting existed keeps the level it was trained with
    assert RefinerConfig.from_dict({"low_side": 256}).soft_level == 0.5 / 255
    for bad in (0.0, 0.5, float("nan")):
        with pytest.raises(CheckpointError, match="soft_level"):
            RefinerConfig(soft_level=bad).validate()
