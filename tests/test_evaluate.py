"""Evaluation: the CLI end to end, seeded protocols, RVM layout round trip, bad data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sam2_matting.metrics import alpha as m
from sam2_matting.metrics.evalsets import course_clips, rvm_clips, synthetic_eval_clips
from sam2_matting.metrics.protocols import aggregate, get_protocol
from sam2_matting.metrics.runner import EvalSettings, evaluate
from sam2_matting.training.layout import DataError
from sam2_matting.training.prompts import PromptRule

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
def tiny_eval(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tiny RANDOM-weight model at 128 px and a non-trivial adapter for it."""
    from sam2_matting.lora import add_adapter, save_adapter
    from sam2_matting.model import build_sam2_model
    from sam2_matting.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("tiny-eval")
    files = make_tiny_model(root / "model", image_size=128, seed=0)
    peft = add_adapter(build_sam2_model(files.config, files.checkpoint, device="cpu"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # fresh LoRA is a no-op; make this one change the output
    save_adapter(peft, root / "adapter", base_config=str(files.config))
    return files, root / "adapter"


@pytest.fixture(scope="module")
def predictors(tiny_eval: tuple[Any, Path]) -> dict[str, Any]:
    from sam2_matting.predictor import build_matting_predictor

    files, adapter = tiny_eval
    return {
        "base": build_matting_predictor(files.config, files.checkpoint, device="cpu"),
        "adapter": build_matting_predictor(
            files.config, files.checkpoint, adapter=adapter, device="cpu"
        ),
    }


def test_evaluate_cli_writes_json_markdown_and_plots(
    tiny_eval: tuple[Any, Path], shared_videos: Path, tmp_path: Path
) -> None:
    files, adapter = tiny_eval
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        "-m",
        "sam2_matting",
        "evaluate",
        "--data",
        str(shared_videos),
        "--layout",
        "synthetic",
        "--max-clips",
        "2",
        "--max-frames",
        "3",
        "--size",
        "48x80",
        "--model",
        str(files.config),
        "--checkpoint",
        str(files.checkpoint),
        "--adapter",
        str(adapter),
        "--prompt",
        "click",
        "--out",
        str(out),
        "--worst",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    metrics = {"mad", "mse", "grad", "conn", "dtssd"}
    for label in ("base", "adapter"):
        summary = data["models"][label]["summary"]
        assert set(summary) == metrics and all(isinstance(v, float) for v in summary.values())
        assert data["models"][label]["frames"] == 6
        assert set(data["models"][label]["metric_fps"]) == metrics
        assert len(data["models"][label]["per_frame"]["000"]["mad"]) == 3
        assert data["models"][label]["per_frame"]["000"]["dtssd"][0] == 0.0
    assert set(data["comparison"]) == metrics
    assert data["comparison"]["mad"]["adapter"] != data["comparison"]["mad"]["base"]
    assert data["protocol"]["name"] == "standard" and data["protocol"]["quantize"] is True
    assert data["protocol"]["rounding"] == "round" and "rounded" in data["protocol"]["predictions"]
    assert data["protocol"]["aggregate"] == "frame-index"
    assert data["settings"]["prompt_rule"]["kind"] == "click" and data["settings"]["clips"] == [
        "000",
        "001",
    ]
    assert data["prompts"]["000"]["labels"] == [1]
    assert "RANDOM WEIGHTS" in data["note"]
    table = (out / "results.md").read_text()
    assert "| mad (x1e3) |" in table and "RANDOM WEIGHTS" in table
    assert "Predictions: 8-bit, rounded" in table and "Aggregation: frame-index" in table
    for png in ("per_frame.png", "worst_frames.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 300
    assert "| metric | base | adapter | change |" in proc.stdout


def test_course_protocol_is_seeded_and_scores_floats(
    predictors: dict[str, Any], shared_videos: Path
) -> None:
    refs = synthetic_eval_clips(shared_videos, count=1, frames=3, size=(48, 80), seed=3)
    settings = EvalSettings(
        get_protocol("course"), PromptRule(kind="center-click"), seed=3, worst=0
    )
    first, prompts1 = evaluate({"base": predictors["base"]}, refs, settings)
    again, prompts2 = evaluate({"base": predictors["base"]}, refs, settings)
    assert prompts1 == prompts2 and prompts1["000"]["kind"] == "center-click"
    assert first["base"].per_clip == again["base"].per_clip
    assert set(first["base"].summary) == {"sad", "mad", "mse"}
    # Identity of the course definitions: SAD = MAD x (N + 1) / 1e6 on every frame.
    n = 48 * 80
    vals = first["base"].per_clip["000"]
    for sad, mad in zip(vals["sad"], vals["mad"], strict=True):
        assert sad == pytest.approx(mad * (n + 1) / 1e6)
    # Float predictions: MAD x N/(N+1) is not a multiple of 1/255 per pixel on average.
    quantised = evaluate(
        {"base": predictors["base"]},
        refs,
        EvalSettings(get_protocol("standard", resolution="lr"), settings.prompt, seed=3, worst=0),
    )[0]
    assert quantised["base"].per_clip["000"]["mad"] != pytest.approx(vals["mad"], rel=1e-9)


def test_truncation_scores_rvm_s_8_bit_predictions(
    predictors: dict[str, Any], shared_videos: Path, tmp_path: Path
) -> None:
    refs = synthetic_eval_clips(shared_videos, count=1, frames=2, size=(48, 80), seed=5)
    saved = {}
    results = {}
    for rounding in ("round", "truncate"):
        protocol = get_protocol("standard", resolution="lr", rounding=rounding)
        out = tmp_path / rounding
        settings = EvalSettings(protocol, PromptRule(kind="mask"), worst=0, save_predictions=out)
        results[rounding] = evaluate({"base": predictors["base"]}, refs, settings)[0]["base"]
        saved[rounding] = [
            np.asarray(Image.open(f)).astype(int)
            for f in sorted((out / "base" / "000" / "pha").iterdir())
        ]
    for r, t in zip(saved["round"], saved["truncate"], strict=True):
        # floor(255 a) is round(255 a) or one less, and soft mattes have both cases.
        assert set(np.unique(r - t)) <= {0, 1}
        assert (r - t).any() and (r == t).any()
    # The scores are of the predictions saved: MAD of truncated PNGs against the truth.
    clip = refs[0].open()
    for i, pred in enumerate(saved["truncate"]):
        a = m.to_unit(pred.astype(np.uint8))
        expected = m.mad(a, m.to_unit(clip.truth(i)))
        assert results["truncate"].per_clip["000"]["mad"][i] == pytest.approx(expected, rel=1e-9)
    assert results["truncate"].summary["mad"] != results["round"].summary["mad"]


def test_course_report_says_per_clip_mean_and_float_predictions(
    predictors: dict[str, Any], shared_videos: Path, tmp_path: Path
) -> None:
    from sam2_matting.metrics.report import write_report

    refs = synthetic_eval_clips(shared_videos, count=2, frames=2, size=(48, 80), seed=5)
    protocol = get_protocol("course")
    settings = EvalSettings(protocol, PromptRule(kind="center-click"), worst=0)
    results, prompts = evaluate({"base": predictors["base"]}, refs, settings)
    per_clip = results["base"].per_clip
    clip_means = [np.mean(v["mad"]) for v in per_clip.values()]
    assert results["base"].summary["mad"] == pytest.approx(np.mean(clip_means))
    write_report(tmp_path, results, prompts, {}, protocol)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["protocol"]["aggregate"] == "clip" and data["protocol"]["rounding"] is None
    assert data["protocol"]["predictions"].startswith("float")
    table = (tmp_path / "results.md").read_text()
    assert "Aggregation: clip (mean of each clip, then over clips)" in table


def _write_rvm_set(root: Path, videos: Path) -> None:
    """Two synthetic clips in RVM's layout: <subset>/<clip>/{com,pha}/NNNN.png."""
    for i, ref in enumerate(synthetic_eval_clips(videos, count=2, frames=3, size=(48, 80), seed=9)):
        clip = ref.open()
        subset = "videomatte_motion" if i == 0 else "videomatte_static"
        src = clip.open_frames()
        for part in ("com", "pha"):
            (root / subset / f"{i:04d}" / part).mkdir(parents=True)
        for j in range(clip.num_frames):
            Image.fromarray(src.get_frame(j)).save(
                root / subset / f"{i:04d}" / "com" / f"{j:04d}.png"
            )
            Image.fromarray(clip.truth(j)).save(root / subset / f"{i:04d}" / "pha" / f"{j:04d}.png")
        src.close()


def test_rvm_layout_saved_predictions_rescore_to_the_reported_figures(
    predictors: dict[str, Any], shared_videos: Path, tmp_path: Path
) -> None:
    _write_rvm_set(tmp_path / "vm", shared_videos)
    refs = rvm_clips(tmp_path / "vm")
    assert [r.name for r in refs] == ["videomatte_motion/0000", "videomatte_static/0001"]
    protocol = get_protocol("standard", resolution="lr")
    settings = EvalSettings(
        protocol, PromptRule(kind="mask"), worst=2, save_predictions=tmp_path / "pred"
    )
    results, _ = evaluate({"adapter": predictors["adapter"]}, refs, settings)
    # Score the saved 8-bit PNGs independently, the way RVM's evaluate_lr.py reads them.
    per_clip = []
    for ref in refs:
        pred_dir = tmp_path / "pred" / "adapter" / ref.name / "pha"
        truth_dir = tmp_path / "vm" / ref.name / "pha"
        values: dict[str, list[float]] = {k: [] for k in protocol.metrics}
        prev = None
        for f in sorted(truth_dir.iterdir()):
            a = m.to_unit(np.asarray(Image.open(pred_dir / f.name)))
            g = m.to_unit(np.asarray(Image.open(f)))
            values["mad"].append(m.mad(a, g))
            values["mse"].append(m.mse(a, g))
            values["grad"].append(m.grad(a, g))
            values["conn"].append(m.conn(a, g))
            values["dtssd"].append(
                m.dtssd(a, prev[0] if prev else None, g, prev[1] if prev else None)
            )
            prev = (a, g)
        per_clip.append(values)
    expected = aggregate(per_clip, protocol)
    for name, value in expected.items():
        assert results["adapter"].summary[name] == pytest.approx(value, rel=1e-9), name
    assert len(results["adapter"].worst) == 2
    assert results["adapter"].worst[0].score >= results["adapter"].worst[1].score
    # Supplied first-frame masks (MatAnyone's protocol): frame 0 returns the mask itself.
    masks = tmp_path / "masks" / "videomatte_motion"
    masks.mkdir(parents=True)
    square = np.zeros((48, 80), np.uint8)
    square[10:30, 20:50] = 255
    Image.fromarray(square).save(masks / "0000.png")
    with_mask = EvalSettings(
        protocol, PromptRule(kind="click"), worst=0, mask_dir=tmp_path / "masks"
    )
    results, prompts = evaluate({"adapter": predictors["adapter"]}, refs[:1], with_mask)
    assert prompts["videomatte_motion/0000"]["mask_bbox"] == [20, 10, 50, 30]


def test_bad_rvm_folder_gives_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sam2_matting.cli import main

    clip = tmp_path / "vm/videomatte_static/0003"
    (clip / "com").mkdir(parents=True)
    (clip / "pha").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(clip / "com/0000.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(clip / "com/0001.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(clip / "pha/0000.png")
    with pytest.raises(DataError, match=r"com/0001.png has no ground truth 0001.png"):
        rvm_clips(tmp_path / "vm")[0].open()
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "evaluate",
            "--data",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "o"),
            "--model",
            "tiny",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no clips with com/ and pha/ folders in" in err and "empty" in err


def test_quantize_applies_only_to_the_standard_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sam2_matting.cli import main

    argv = ["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--model", "tiny"]
    code = main([*argv, "--protocol", "course", "--quantize", "truncate"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "course protocol scores float predictions" in err


def test_course_layout_composites_each_clip_over_its_seeded_background(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for kind in ("fgr", "pha"):
        for c in range(3):
            d = tmp_path / f"vm/train/{kind}/{c:04d}"
            d.mkdir(parents=True)
            for j in range(12):
                arr = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{j:05d}.png")
    (tmp_path / "bg").mkdir()
    for b in range(4):
        Image.fromarray(np.full((40, 50, 3), 60 * b, np.uint8)).save(tmp_path / f"bg/{b}.png")
    refs = course_clips(tmp_path / "vm", tmp_path / "bg", clip_range=(1, 2), seed=0)
    assert [r.name for r in refs] == ["0001", "0002"]
    one, same = refs[0].open(), refs[0].open()
    assert one.num_frames == 10, "the course protocol takes the first 10 frames"
    assert one.info["background"] == same.info["background"]
    f1, f2 = one.open_frames(), same.open_frames()
    np.testing.assert_array_equal(f1.get_frame(9), f2.get_frame(9))
    # Where alpha is 0 the composite is the background (a flat grey of 60 * b).
    truth = one.truth(0)
    level = 60 * int(Path(one.info["background"]).stem)
    assert (f1.get_frame(0)[truth == 0] == level).all()
