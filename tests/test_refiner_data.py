"""Refiner training data from VideoMatte240K (`sam2-matting refiner-data`) and training on it.

A tiny VideoMatte240K layout is written here (two clips of PNG frame folders: a soft disc
moving over a coloured foreground) and the tiny RANDOM-weight SAM 2 builds the data: random
weights, plumbing only. The oracles: a matting session run here on the same composite frames
with the prompt computed here from the pha gives the stored coarse alpha; the stored true
alpha is the pha, 257 times its 8-bit value.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sam2_matting.cli import build_parser, main
from sam2_matting.tiny import TinyModelFiles

H, W, FRAMES = 48, 64, 6


@pytest.fixture(scope="module")
def tiny128(tmp_path_factory: pytest.TempPathFactory) -> TinyModelFiles:
    """A tiny RANDOM-weight SAM 2.1 at 128 px."""
    from sam2_matting.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny128"), image_size=128, seed=0)


def _disc(cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    a = np.clip((radius - np.hypot(yy - cy, xx - cx)) / 2.0 + 0.5, 0.0, 1.0)
    return np.rint(a * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def videomatte(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ROOT/train/{fgr,pha}/000N/0000K.png for two clips, and a background image folder."""
    root = tmp_path_factory.mktemp("vm")
    rng = np.random.default_rng(0)
    pha: dict[str, np.ndarray] = {}
    for c in range(2):
        name = f"{c:04d}"
        alphas = np.stack([_disc(22 + c, 20 + 4 * t + 6 * c, 11 + c) for t in range(FRAMES)])
        pha[name] = alphas
        for kind in ("fgr", "pha"):
            (root / f"vm/train/{kind}/{name}").mkdir(parents=True)
        for t in range(FRAMES):
            fgr = np.full((H, W, 3), (200, 80 + 30 * c, 40), np.uint8)
            fgr = np.clip(fgr + rng.integers(-20, 20, (H, W, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(fgr).save(root / f"vm/train/fgr/{name}/{t:05d}.png")
            grey = np.repeat(alphas[t][..., None], 3, -1)
            Image.fromarray(grey).save(root / f"vm/train/pha/{name}/{t:05d}.png")
    (root / "bg").mkdir()
    for b in range(2):
        img = rng.integers(0, 120, (60, 80, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"bg/{b}.png")
    return {"root": root / "vm", "backgrounds": root / "bg", "pha": pha}


def _argv(vm: dict[str, Any], tiny: TinyModelFiles, out: Path, *extra: str) -> list[str]:
    return [
        "refiner-data",
        "--videomatte", str(vm["root"]),
        "--backgrounds", str(vm["backgrounds"]),
        "--out", str(out),
        "--frames", "4",
        "--size", f"{H}x{W}",
        "--config", str(tiny.config),
        "--checkpoint", str(tiny.checkpoint),
        "--device", "cpu",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def built(
    videomatte: dict[str, Any], tiny128: TinyModelFiles, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A folder of three clips (clip 2 is source 0 again, another window), built by the
    command as a user runs it."""
    out = tmp_path_factory.mktemp("built") / "data"
    cmd = [sys.executable, "-m", "sam2_matting", *_argv(videomatte, tiny128, out, "--clips", "3")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out / 'manifest.json'}"
    lines = done.stderr.strip().splitlines()
    assert [line.split(" (")[0] for line in lines[:3]] == [f"built {i:05d}" for i in range(3)]
    assert lines[3] == "note: random weights: this data is for plumbing only"
    return out


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _prompt_from_pha(pha: np.ndarray) -> tuple[list[float], list[float]]:
    """The stated rule, computed here: box of pha >= 128 (alpha >= 0.5) and the interior
    pixel farthest from the region's edge (first in raster order on ties)."""
    from scipy import ndimage

    region = pha >= 128
    ys, xs = np.nonzero(region)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return box, [float(x), float(y)]


def test_stored_coarse_is_the_sessions_output_and_alpha_is_the_pha(
    built: Path, videomatte: dict[str, Any], tiny128: TinyModelFiles, tmp_path: Path
) -> None:
    from sam2_matting.predictor import build_matting_predictor
    from sam2_matting.training.datasets import ClipSpec, VideoMatteClips
    from sam2_matting.training.layout import scan_backgrounds, scan_videomatte
    from sam2_matting.training.refiner_data import DATA_AUGMENT

    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["clips"] == 3
    assert manifest["sam2"]["config"] == str(tiny128.config)
    assert len(manifest["sam2"]["checkpoint_sha256"]) == 64
    assert manifest["size"] == [H, W] and manifest["seed"] == 0
    records = manifest["clip_records"]
    assert [r["source"] for r in records] == ["0000", "0001", "0000"]
    sources = scan_videomatte(videomatte["root"])
    spec = ClipSpec(num_frames=4, size=(H, W), image_size=128, augment=DATA_AUGMENT, seed=0)
    dataset = VideoMatteClips(spec, sources, scan_backgrounds(images=videomatte["backgrounds"]))
    predictor = build_matting_predictor(tiny128.config, tiny128.checkpoint, device="cpu")
    compared = 0
    for i, record in enumerate(records):
        folder = built / "clips" / record["name"]
        pha = videomatte["pha"][record["source"]][record["source_frames"]]
        assert record["frames"] == 4 and record["prompt"]["frame"] == 0
        for j in range(4):  # the true alpha: 16-bit, 257 x the 8-bit pha, exactly
            stored = _png(folder / "alpha" / f"{j:05d}.png")
            assert stored.dtype == np.uint16
            np.testing.assert_array_equal(stored, pha[j].astype(np.uint16) * 257)
        box, click = _prompt_from_pha(pha[0])
        assert record["prompt"]["box"] == box and record["prompt"]["click"] == click
        # The same composite, made again; the session on it with that prompt is the oracle.
        source = sources[i % len(sources)]
        _, frames, _, idx = dataset.make_clip(source, np.random.default_rng([0, i]))
        assert idx == record["source_frames"]
        again = tmp_path / f"frames{i}"
        again.mkdir()
        for j, frame in enumerate(frames):
            np.testing.assert_array_equal(_png(folder / "frames" / f"{j:05d}.png"), frame)
            Image.fromarray(frame).save(again / f"{j:05d}.png")
        with predictor.open(again, keep_float=True) as session:
            session.add_box(0, 1, box, points=[click], labels=[1])
            for mattes in session.propagate(0):
                assert mattes.soft is not None
                stored = _png(folder / "coarse" / f"{mattes.frame_index:05d}.png")
                assert stored.dtype == np.uint16
                diff = np.abs(stored / 65535.0 - mattes.soft[0].astype(np.float64))
                assert diff.max() <= 0.5 / 65535 + 1e-12  # half a 16-bit step
                compared += 1
    assert compared == 12


def test_training_on_the_folder_writes_a_loadable_refiner(built: Path, tmp_path: Path) -> None:
    from sam2_matting.refiner import load_refiner
    from sam2_matting.training.refiner_train import load_folder_data

    data = load_folder_data(str(built))
    assert len(data.frames) == 3 and data.coarse[0].dtype == np.uint16
    np.testing.assert_array_equal(data.alpha[1][2], _png(built / "clips/00001/alpha/00002.png"))
    run = tmp_path / "run"
    argv = ["train", "--refiner", f"data={built}", "steps=3", "batch=2", "crop=32"]
    assert main([*argv, f"out_dir={run}", "checkpoint_every=2"]) == 0
    net = load_refiner(run / "adapter")
    assert net is not None and (run / "checkpoints/step_000003").is_dir()


def test_manifest_is_written_last_and_a_rerun_resumes(
    videomatte: dict[str, Any],
    tiny128: TinyModelFiles,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vm = {**videomatte, "root": tmp_path / "vm"}
    shutil.copytree(videomatte["root"], vm["root"])
    bad = vm["root"] / "train/pha/0001/00003.png"
    good = bad.read_bytes()
    bad.write_bytes(b"not a png")  # every 4-frame window of 6 frames holds frame 3
    out = tmp_path / "data"
    assert main(_argv(vm, tiny128, out)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("sam2-matting: error: ") and "00003.png" in lines[-1]
    assert len(lines) == 2 and lines[0].startswith("built 00000 (0000@")
    assert (out / "clips/00000/clip.json").is_file()
    assert not (out / "manifest.json").exists() and not (out / "clips/00001").exists()
    code = main(["train", "--refiner", f"data={out}", f"out_dir={tmp_path / 'r'}"])
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err_lines) == 1 and "has no manifest.json" in err_lines[0]

    (out / "clips/00000/marker").write_text("kept")
    bad.write_bytes(good)
    assert main(_argv(vm, tiny128, out)) == 0
    err = capsys.readouterr().err
    assert "done already 00000" in err and "built 00001" in err
    assert (out / "clips/00000/marker").is_file(), "a finished clip is not rebuilt"
    assert not list((out / "clips").glob("*.part"))
    assert json.loads((out / "manifest.json").read_text())["frames_total"] == 8

    assert main(_argv(vm, tiny128, out, "--seed", "1")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other settings (seed differ)" in err


def test_bad_inputs_give_one_line(
    videomatte: dict[str, Any],
    tiny128: TinyModelFiles,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "empty/train/fgr").mkdir(parents=True)
    (tmp_path / "empty/train/pha").mkdir(parents=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/notes.txt").write_text("x")
    out = tmp_path / "out"
    cases = {
        "VideoMatte240K root not found": {"root": tmp_path / "nowhere"},
        "no clips (videos or frame folders)": {"root": tmp_path / "empty"},
        "background image folder not found": {"backgrounds": tmp_path / "none"},
    }
    for expected, change in cases.items():
        code = main(_argv({**videomatte, **change}, tiny128, out))
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("sam2-matting: error: ") and expected in err, err
    code = main(_argv(videomatte, tiny128, tmp_path / "busy"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not a refiner data folder" in err and len(err.splitlines()) == 1
    assert main(["refiner-data", "--videomatte", str(videomatte["root"])]) == 2
    assert "needs --videomatte ROOT and --out DIR" in capsys.readouterr().err
    assert not out.exists(), "nothing is written for bad input"


def test_prompt_rule_and_shared_model_options() -> None:
    from sam2_matting.training.refiner_data import user_prompt

    alphas = np.zeros((3, H, W), np.float32)
    assert user_prompt(alphas) is None
    alphas[1, 10:12, 10:12] = 1.0  # 4 pixels: under 0.5% of the frame, not prompted
    alphas[2, 5:25, 30:40] = 1.0
    prompt = user_prompt(alphas)
    assert prompt is not None and prompt.frame == 2 and prompt.box == (30.0, 5.0, 40.0, 25.0)
    assert 30 <= prompt.click[0] < 40 and 5 <= prompt.click[1] < 25

    def model_group(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
        group = next(g for g in parser._action_groups if g.title == "model")
        return [(a.option_strings[0], a.help) for a in group._group_actions]

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert model_group(sub.choices["refiner-data"]) == model_group(sub.choices["matte"])
