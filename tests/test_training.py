"""Training: config, data, prompts, the differentiable clip forward, steps, resume and DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sam2_matting.training.config import ConfigError, compose_train_config, validate_train_config
from sam2_matting.training.layout import DataError
from sam2_matting.training.prompts import PromptRule, TrainingPrompts, sample_prompt

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """One intra-op thread for these tests: the tiny model gains nothing from more, and on a
    shared 2-core machine oversubscribed OpenMP threads make it ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny128(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny RANDOM-weight SAM 2.1 at 128 px (4x cheaper than the 256 px fixture)."""
    from sam2_matting.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny128"), image_size=128, seed=0)


def overrides(tiny: Any, videos: Path, out: Path, *extra: str) -> list[str]:
    return [
        "model=custom",
        f"model.config={tiny.config}",
        f"model.checkpoint={tiny.checkpoint}",
        "data=synthetic",
        f"data.backgrounds.videos={videos}",
        "data.frames=2",
        "data.size=[48,80]",
        f"run.out_dir={out}",
        "run.progress=false",
        "optim.warmup_steps=0",
        *extra,
    ]


# -- config ---------------------------------------------------------------------------------
def test_config_groups_and_overrides_compose_and_sam2_hydra_still_works() -> None:
    cfg = compose_train_config(
        ["model=hiera_t", "data=refmatte", "optim.lr=3e-4", "adapter=attention_only"]
    )
    assert cfg.model.config == "tiny"
    assert cfg.data.kind == "images" and cfg.data.frames == 1
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.adapter.mlp_targets == "" and cfg.adapter.attention_rank == 8
    from sam2_matting.model import compose_config

    # Our compose borrowed Hydra's global state; sam2's own config module must still resolve.
    assert compose_config("configs/sam2.1/sam2.1_hiera_t.yaml").model.image_size == 1024


def test_bad_override_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        compose_train_config(["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"nope"):
        compose_train_config(["model=nope"])
    with pytest.raises(ConfigError, match=r"optim\.lr must be a number, got 'abc'"):
        validate_train_config(compose_train_config(["optim.lr=abc"]))
    with pytest.raises(ConfigError, match=r"data\.size must be \[height, width\]"):
        validate_train_config(compose_train_config(["data.size=[4,4]"]))


# -- prompts --------------------------------------------------------------------------------
def _disc(h: int = 60, w: int = 80) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    r = np.hypot(xs - 50, ys - 30)
    return np.clip(20.5 - r, 0, 1).astype(np.float32)  # opaque disc of radius ~20, soft edge


def test_click_rule_draws_confident_foreground_away_from_the_edge_seeded() -> None:
    alpha = _disc()
    rule = PromptRule(kind="click", clicks=3, negatives=2, margin=4)
    p = sample_prompt(alpha, rule, np.random.default_rng(7))
    assert p.labels.tolist() == [1, 1, 1, 0, 0]
    ys, xs = np.mgrid[0:60, 0:80]
    for (x, y), label in zip(p.points.astype(int), p.labels, strict=True):
        if label == 1:
            assert alpha[np.hypot(xs - x, ys - y) <= 4].min() >= 0.99
        else:
            assert alpha[y, x] <= 0.01
    again = sample_prompt(alpha, rule, np.random.default_rng(7))
    np.testing.assert_array_equal(p.points, again.points)


def test_box_mask_and_center_click_rules() -> None:
    alpha = _disc()
    box = sample_prompt(alpha, PromptRule(kind="box"), np.random.default_rng(0))
    assert box.labels.tolist() == [2, 3]
    assert box.box == (30.0, 10.0, 71.0, 51.0)  # alpha >= 0.5 iff r <= 20: x 30..70, y 10..50
    mask = sample_prompt(alpha, PromptRule(kind="mask"), np.random.default_rng(0))
    np.testing.assert_array_equal(mask.mask, alpha >= 0.5)
    centre = sample_prompt(alpha, PromptRule(kind="center-click"), np.random.default_rng(0))
    ((x, y),) = centre.points
    assert alpha[int(y), int(x)] == 1.0
    # Among the 5% of opaque pixels nearest the centre (39.5, 29.5): within ~4.5 px.
    assert np.hypot(x - 39.5, y - 29.5) < 5
    empty = sample_prompt(
        np.zeros((10, 10), np.float32), PromptRule(kind="click"), np.random.default_rng(0)
    )
    assert "empty" in empty.note and empty.points.tolist() == [[5.0, 5.0]]


def test_training_prompt_mix_follows_its_probabilities() -> None:
    mix = TrainingPrompts(kinds={"click": 1.0, "box": 0.0})
    kinds = {mix.draw(_disc(), np.random.default_rng(i)).kind for i in range(20)}
    assert kinds == {"click"}
    with pytest.raises(ValueError, match="unknown prompt kind"):
        TrainingPrompts(kinds={"scribble": 1.0})


# -- data -----------------------------------------------------------------------------------
def test_synthetic_clips_are_seeded_soft_and_sized(shared_videos: Path) -> None:
    from sam2_matting.training.datasets import ClipSpec, StepSampler, SyntheticClips, collate

    spec = ClipSpec(num_frames=3, size=(72, 128), image_size=128, seed=5)
    data = SyntheticClips(spec, [shared_videos / "bedroom.mp4"])
    a, b = data[3], data[3]
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, data[4].frames)
    assert a.frames.shape == (3, 72, 128, 3) and a.model_frames.shape == (3, 128, 128, 3)
    soft = (a.alphas > 0.05) & (a.alphas < 0.95)
    assert soft.mean() > 0.005, "hair-like strands and soft edges give partial alpha"
    assert (a.alphas >= 0.99).any() and (a.alphas <= 0.01).any()
    assert not np.array_equal(a.alphas[0], a.alphas[-1]), "the foreground moves"
    batch = collate([a, b])
    assert batch.images.shape == (2, 3, 128, 128, 3) and batch.video_size == (72, 128)
    # Two ranks with batch 2 interleave batches: rank r of batch g gets (g*2 + r)*2 + b.
    it0, it1 = iter(StepSampler(2, 0, world=2, rank=0)), iter(StepSampler(2, 0, world=2, rank=1))
    assert [next(it0) for _ in range(4)] == [0, 1, 4, 5]
    assert [next(it1) for _ in range(4)] == [2, 3, 6, 7]


def _write_frames(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")


def test_videomatte_and_image_sets_from_disk(tmp_path: Path) -> None:
    from sam2_matting.training.datasets import ClipSpec, ImageMatteClips, VideoMatteClips
    from sam2_matting.training.layout import scan_backgrounds, scan_image_set, scan_videomatte

    rng = np.random.default_rng(0)
    alpha = (np.stack([_disc()] * 4) * 255).astype(np.uint8)
    _write_frames(
        tmp_path / "vm/train/fgr/0000", rng.integers(0, 255, (4, 60, 80, 3), dtype=np.uint8)
    )
    _write_frames(tmp_path / "vm/train/pha/0000", np.repeat(alpha[..., None], 3, -1))
    _write_frames(tmp_path / "bg", rng.integers(0, 255, (2, 50, 70, 3), dtype=np.uint8))
    clips = scan_videomatte(tmp_path / "vm", "train")
    assert clips[0].frame_count == 4 and (clips[0].width, clips[0].height) == (80, 60)
    spec = ClipSpec(num_frames=3, size=(40, 64), image_size=64)
    vm = VideoMatteClips(spec, clips, scan_backgrounds(images=tmp_path / "bg"))
    s = vm[0]
    assert s.frames.shape == (3, 40, 64, 3) and s.alphas.max() <= 1.0 and s.alphas.max() > 0.9
    (tmp_path / "rw/image").mkdir(parents=True)
    (tmp_path / "rw/alpha").mkdir()
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(
        tmp_path / "rw/image/a.jpg"
    )
    Image.fromarray(alpha[0]).save(tmp_path / "rw/alpha/a.png")
    images = ImageMatteClips(spec, scan_image_set(tmp_path / "rw"))
    one = images[0]
    assert one.frames.shape == (1, 40, 64, 3) and one.prompt.kind in ("click", "box", "mask")


def test_bad_data_folders_name_the_file(tmp_path: Path) -> None:
    from sam2_matting.training.layout import scan_image_set, scan_videomatte

    (tmp_path / "vm/train/fgr/0007").mkdir(parents=True)
    (tmp_path / "vm/train/pha").mkdir(parents=True)
    with pytest.raises(DataError, match=r"fgr/0007 has no alpha clip"):
        scan_videomatte(tmp_path / "vm")
    with pytest.raises(DataError, match=r"VideoMatte240K root not found: .*nowhere"):
        scan_videomatte(tmp_path / "nowhere")
    (tmp_path / "rw/image").mkdir(parents=True)
    (tmp_path / "rw/alpha").mkdir()
    (tmp_path / "rw/image/x.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "rw/alpha/x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"rw/image/x.jpg: cannot read image"):
        scan_image_set(tmp_path / "rw")


def test_train_cli_reports_bad_data_before_building_the_model(
    tiny128: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sam2_matting.cli import main

    (tmp_path / "vm/train/fgr/0001.mp4").parent.mkdir(parents=True)
    (tmp_path / "vm/train/fgr/0001.mp4").write_bytes(b"\x00" * 64)
    (tmp_path / "vm/train/pha").mkdir(parents=True)
    (tmp_path / "vm/train/pha/0001.mp4").write_bytes(b"\x00" * 64)
    code = main(
        [
            "train",
            "model=custom",
            f"model.config={tiny128.config}",
            f"model.checkpoint={tiny128.checkpoint}",
            f"data.root={tmp_path / 'vm'}",
            f"data.backgrounds.images={tmp_path}",
            f"run.out_dir={tmp_path / 'run'}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "fgr/0001.mp4" in err, err
    assert not (tmp_path / "run").exists()


# -- the differentiable forward -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["click", "box", "mask"])
def test_forward_clip_matches_sam2_video_predictor(
    kind: str, tiny128: Any, bedroom_video: Path, tmp_path: Path
) -> None:
    """Our gradient-capable forward gives SAM 2's own propagate_in_video output."""
    from sam2_matting.model import build_sam2_model
    from sam2_matting.training.augment import resize_for_model
    from sam2_matting.training.prompts import Prompt
    from sam2_matting.training.step import alpha_from_logits, forward_clip, normalize_frames
    from sam2_matting.video import open_video

    folder = tmp_path / "jpg"
    folder.mkdir()
    with open_video(bedroom_video) as src:
        for i in range(4):
            Image.fromarray(src.get_frame(i * 10)).resize((160, 90)).save(folder / f"{i}.jpg")
    frames = np.stack(
        [np.asarray(Image.open(folder / f"{i}.jpg").convert("RGB")) for i in range(4)]
    )
    model = build_sam2_model(tiny128.config, tiny128.checkpoint, device="cpu", hole_filling=False)
    if kind == "click":
        prompt = Prompt(
            "click", np.array([[80, 45], [20, 20]], np.float32), np.array([1, 0], np.int32)
        )
    elif kind == "box":
        prompt = Prompt(
            "box", np.array([[40, 20], [120, 80]], np.float32), np.array([2, 3], np.int32)
        )
    else:
        mask = np.zeros((90, 160), bool)
        mask[20:70, 50:110] = True
        prompt = Prompt("mask", np.zeros((0, 2), np.float32), np.zeros(0, np.int32), mask=mask)
    images = normalize_frames(
        torch.from_numpy(np.stack([resize_for_model(f, 128) for f in frames]))
    )
    with torch.no_grad():
        ours = forward_clip(model, images[None], [prompt], (90, 160))
    state = model.init_state(video_path=str(folder))
    if kind == "mask":
        model.add_new_mask(state, 0, 1, torch.from_numpy(prompt.mask))
    else:
        model.add_new_points_or_box(
            state, 0, 1, points=prompt.points, labels=prompt.labels, normalize_coords=True
        )
    theirs = [torch.sigmoid(m[0, 0]) for _, _, m in model.propagate_in_video(state)]
    assert len(theirs) == len(ours.logits) == 4
    for t, logits in enumerate(ours.logits):
        np.testing.assert_allclose(alpha_from_logits(logits, (90, 160))[0], theirs[t], atol=2e-5)


# -- training steps -------------------------------------------------------------------------
def test_steps_on_a_fixed_batch_drive_the_loss_down_and_only_lora_changes(
    tiny128: Any, shared_videos: Path, tmp_path: Path
) -> None:
    from sam2_matting.training.trainer import Trainer

    cfg = compose_train_config(
        overrides(tiny128, shared_videos, tmp_path, "optim.lr=1e-2", "optim.schedule=constant")
    )
    trainer = Trainer(cfg)
    batch = next(trainer.loader())
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    losses = [trainer.train_step([batch]).loss for _ in range(8)]
    assert losses[-1] < 0.6 * losses[0], losses
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
    assert not trainer.model.training, "the base model stays in eval mode"


def test_gradient_accumulation_equals_the_larger_batch(
    tiny128: Any, shared_videos: Path, tmp_path: Path
) -> None:
    from sam2_matting.training.trainer import Trainer

    big = Trainer(
        compose_train_config(overrides(tiny128, shared_videos, tmp_path / "a", "data.batch_size=2"))
    )
    acc = Trainer(
        compose_train_config(
            overrides(tiny128, shared_videos, tmp_path / "b", "optim.accumulate=2")
        )
    )
    batch = next(big.loader())
    micro = acc.loader()
    first, second = next(micro), next(micro)
    assert batch.names == first.names + second.names
    r_big, r_acc = big.train_step([batch]), acc.train_step([first, second])
    assert r_acc.loss == pytest.approx(r_big.loss, rel=1e-5) and r_acc.clips == r_big.clips == 2
    for (name, p), (_, q) in zip(
        big.model.named_parameters(), acc.model.named_parameters(), strict=True
    ):
        if "lora_" in name:
            torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_resume_gives_the_same_next_step_as_an_uninterrupted_run(
    tiny128: Any, shared_videos: Path, tmp_path: Path
) -> None:
    import shutil

    from safetensors.torch import load_file

    from sam2_matting.predictor import build_matting_predictor
    from sam2_matting.training.trainer import Trainer

    common = ("run.steps=3", "run.checkpoint_every=2", "optim.lr=5e-3", "run.log_every=1")
    full = tmp_path / "full"
    Trainer(compose_train_config(overrides(tiny128, shared_videos, full, *common))).fit()
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == [
        "step_000002",
        "step_000003",
    ]
    # "Stop" after step 2: a run folder holding only the step-2 checkpoint, then resume.
    cut = tmp_path / "cut"
    shutil.copytree(full / "checkpoints/step_000002", cut / "checkpoints/step_000002")
    shutil.copy(full / "config.yaml", cut / "config.yaml")
    resumed = Trainer(
        compose_train_config(overrides(tiny128, shared_videos, cut, *common, "run.resume=true"))
    )
    assert resumed.step == 2
    final = resumed.fit()
    a = load_file(str(full / "adapter/adapter_model.safetensors"))
    b = load_file(str(final / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    full_rows = (full / "metrics.csv").read_text().splitlines()
    cut_rows = (cut / "metrics.csv").read_text().splitlines()
    assert full_rows[-1].split(",")[:3] == cut_rows[-1].split(",")[:3]  # step 3: same loss
    assert (full / "config.yaml").read_text().count("out_dir") == 1
    # The final adapter is what the server loads with --adapter.
    predictor = build_matting_predictor(
        tiny128.config, tiny128.checkpoint, adapter=final, device="cpu"
    )
    assert predictor.image_size == 128


def test_torchrun_two_cpu_processes_run_two_steps_and_write_one_checkpoint(
    tiny128: Any, shared_videos: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from sam2_matting.training.trainer import Trainer

    out = tmp_path / "ddp"
    steps = ("run.steps=2", "run.checkpoint_every=100", "run.log_every=1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "sam2_matting", "train",
        *overrides(tiny128, shared_videos, out, *steps, "ddp.backend=gloo"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000002"]
    assert (out / "adapter/adapter_model.safetensors").is_file()
    assert proc.stdout.count("adapter:") == 1, "only rank 0 reports"
    # Two processes with one clip each see clips 0 and 1, like one process with two clips;
    # DDP averages the gradients, so both runs take the same steps.
    single = tmp_path / "single"
    Trainer(
        compose_train_config(overrides(tiny128, shared_videos, single, *steps, "data.batch_size=2"))
    ).fit()
    ddp_rows = [r.split(",") for r in (out / "metrics.csv").read_text().splitlines()]
    one_rows = [r.split(",") for r in (single / "metrics.csv").read_text().splitlines()]
    assert ddp_rows[0][:2] == ["step", "loss"] and [r[0] for r in ddp_rows[1:]] == ["1", "2"]
    assert float(ddp_rows[1][1]) == pytest.approx(float(one_rows[1][1]), rel=1e-5)
    a = load_file(str(out / "adapter/adapter_model.safetensors"))
    b = load_file(str(single / "adapter/adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:  # updates are ~1e-4 per step; without gradient averaging they would differ
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
