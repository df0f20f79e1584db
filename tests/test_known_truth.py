"""Known-truth clips: the matte's structures, the composite identity, SAM 2's simulated coarse
output, split separation, the scores and ``evaluate --synthetic`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from sam2_matting.metrics.known_truth import (
    LOGIT_SCALE,
    SPLIT_SOURCES,
    TruthClip,
    simulate_coarse,
    soft_fraction,
    truth_clips,
)
from sam2_matting.metrics.truth_scores import composite_error, score_clip, score_clips
from sam2_matting.training.layout import DataError

REPO = Path(__file__).resolve().parents[1]
SIZE = (144, 256)


@pytest.fixture(scope="module")
def clips(shared_videos: Path) -> list[TruthClip]:
    """Three held-out clips (hair, motion, sheer) of 4 frames at 144x256."""
    return list(truth_clips("heldout", size=SIZE, frames=4, seed=0, count=3))


def _thin(alpha: np.ndarray) -> np.ndarray:
    """Visible pixels an opening with a 3x3 square removes: structures under 3 px wide."""
    visible = alpha > 0.1
    return visible & ~ndimage.binary_opening(visible, structure=np.ones((3, 3)))


def test_composites_satisfy_the_matting_equation(clips: list[TruthClip]) -> None:
    for clip in clips:
        t, h, w = clip.alpha.shape
        assert (t, h, w) == (4, *SIZE) and clip.frames.shape == (t, h, w, 3)
        assert clip.frames.dtype == clip.fg.dtype == clip.bg.dtype == np.uint8
        assert clip.alpha.dtype == clip.coarse.dtype == np.float32
        assert clip.alpha.min() >= 0.0 and clip.alpha.max() <= 1.0
        a = clip.alpha[..., None].astype(np.float64)
        expected = a * clip.fg + (1 - a) * clip.bg
        assert np.abs(clip.frames - expected).max() <= 0.5 + 1e-3  # 8-bit rounding only
        assert clip.image_bg.shape == (h, w, 3)


def test_truth_has_the_structures_matting_is_about(clips: list[TruthClip]) -> None:
    hair, motion, sheer = clips
    assert [c.kind for c in clips] == ["hair", "motion", "sheer"]
    for clip in clips:
        a = clip.alpha[0]
        assert 0.02 < soft_fraction(a) < 0.5  # semi-transparent pixels, not a blur of all
        if clip.kind != "motion":  # (a fast motion blurs them shut)
            # thin gaps: transparent slits a closing of the body (4 px) fills
            body = ndimage.binary_closing(a > 0.5, iterations=4)
            assert (body & (a < 0.05)).sum() >= 30
        # a semi-transparent region: a connected area of mid alpha, many pixels large
        labels, count = ndimage.label((a > 0.15) & (a < 0.7))
        assert count and np.bincount(labels.ravel())[1:].max() >= 60
    # hair-like strands: thin structures, far more in the hair clip
    thin = [int(_thin(c.alpha[0]).sum()) for c in clips]
    assert thin[0] >= 150 and thin[0] > 1.4 * max(thin[1:]), thin
    # it moves (dtSSD has something to measure), and fast motion blurs wider edges
    for clip in clips:
        assert np.abs(np.diff(clip.alpha, axis=0)).mean() > 1e-3
    assert soft_fraction(motion.alpha[1]) > soft_fraction(hair.alpha[1]) * 0.8
    assert np.abs(np.diff(motion.alpha, axis=0)).mean() > np.abs(np.diff(hair.alpha, axis=0)).mean()
    assert sheer.alpha[0][(sheer.alpha[0] > 0.2) & (sheer.alpha[0] < 0.65)].size > 300


def test_coarse_is_smooth_at_the_grid_and_loses_fine_structure(clips: list[TruthClip]) -> None:
    # SAM 2's grid at 256 px input is 64x64: a cell is 2.25 x 4 px of a 144x256 frame
    h, w = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    disc = np.clip(40 - np.hypot(yy - 72, xx - 128), 0, 1).astype(np.float32)
    strand = disc.copy()
    strand[20:140, 200] = 1.0  # a one-pixel strand away from the disc
    coarse = simulate_coarse(strand, image_size=256)
    assert coarse.shape == strand.shape and coarse.dtype == np.float32
    assert coarse[20:140, 200].max() < 0.2  # the strand is gone
    far = ndimage.distance_transform_edt(disc < 0.5) > 12
    inside = ndimage.distance_transform_edt(disc > 0.5) > 12
    assert coarse[inside].min() > 0.99 and coarse[far & (np.abs(xx - 200) > 12)].max() < 0.01
    # its logits are a bilinear interpolation of the grid, whose neighbours differ by at most
    # 2 x LOGIT_SCALE: per pixel, at most that over the pixels per cell (4 across, 2.25 down)
    logits = np.log(coarse.astype(np.float64) / (1 - coarse))
    assert np.abs(np.diff(logits, axis=1)).max() <= 2 * LOGIT_SCALE * 64 / 256 + 1e-3
    assert np.abs(np.diff(logits, axis=0)).max() <= 2 * LOGIT_SCALE * 64 / 144 + 1e-3
    # on the clips, its error is on the fine structure, not on the plain areas
    clip = clips[0]
    truth = clip.alpha[0]
    error = np.abs(simulate_coarse(truth, image_size=256) - truth)
    soft = (truth > 0.01) & (truth < 0.99)
    plain = ndimage.distance_transform_edt(~soft) > 8
    assert error[_thin(truth)].mean() > 0.2
    assert error[plain].mean() < 0.02 * error[_thin(truth)].mean()
    np.testing.assert_array_equal(simulate_coarse(clip.alpha), clip.coarse)


def test_splits_use_apart_footage_and_are_seeded(clips: list[TruthClip]) -> None:
    assert not set(SPLIT_SOURCES["train"]) & set(SPLIT_SOURCES["heldout"])
    train = list(truth_clips("train", size=(48, 64), frames=2, seed=0, count=4))
    for clip in train:
        assert set(clip.sources.values()) <= set(SPLIT_SOURCES["train"]) and clip.split == "train"
    for clip in clips:
        assert set(clip.sources.values()) <= set(SPLIT_SOURCES["heldout"])
        assert len(set(clip.sources.values())) == 3  # F, B and the new background all differ
    again = next(truth_clips("heldout", size=SIZE, frames=4, seed=0, count=1))
    np.testing.assert_array_equal(again.frames, clips[0].frames)
    np.testing.assert_array_equal(again.alpha, clips[0].alpha)
    other = next(truth_clips("heldout", size=SIZE, frames=4, seed=1, count=1))
    assert not np.array_equal(other.alpha, clips[0].alpha)
    with pytest.raises(ValueError, match="split"):
        next(truth_clips("test"))


def test_static_variant_holds_the_background_still(clips: list[TruthClip]) -> None:
    moving = clips[0]
    still = next(truth_clips("heldout", size=SIZE, frames=4, seed=0, count=1, static=True))
    assert still.name == moving.name + "-static" and still.sources == moving.sources
    np.testing.assert_array_equal(still.alpha, moving.alpha)
    np.testing.assert_array_equal(still.fg, moving.fg)
    # every frame is the moving clip's first background frame plus noise of about 1.5 levels
    noise = still.bg.astype(np.float32) - moving.bg[0]
    assert abs(float(noise.mean())) < 0.2 and 1.0 < float(noise.std()) < 2.0
    assert (still.bg[1] != still.bg[0]).any()  # fresh sensor noise in every frame
    a = still.alpha[..., None]
    composite = a * still.fg + (1 - a) * still.bg
    assert np.abs(composite - still.frames).max() <= 0.5 + 1e-3


def test_missing_footage_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"known-truth footage \S+\.mp4 not found in "):
        next(truth_clips("heldout", size=(32, 32), frames=1, sources=[tmp_path]))


def test_scores_rank_truth_coarse_and_colour(clips: list[TruthClip]) -> None:
    clip = clips[0]
    perfect = score_clip(clip, clip.alpha, foreground="source")
    coarse = score_clip(clip, clip.coarse, foreground="source")
    assert perfect["mad"] < 0.5 and perfect["grad"] < 0.01  # 8-bit rounding only
    for name in ("mad", "mse", "grad", "conn", "dtssd", "comp_green", "comp_image"):
        assert coarse[name] > 3 * perfect[name] + 1e-6, name
    # with the true matte the source colour's error is the old background's share
    estimate = score_clip(clip, clip.alpha, foreground="estimate")
    assert estimate["comp_green"] < 0.5 * perfect["comp_green"]
    # the composite error is zero for the truth itself and counts only inside the mattes
    a8 = np.rint(clip.alpha[0] * 255).astype(np.uint8)
    exact = np.rint(clip.alpha[0] * 255) / 255
    assert composite_error(a8, clip.fg[0], exact, clip.fg[0], np.array([0, 255, 0])) < 1e-9
    rows = score_clips(clips[:1], {"truth": lambda frames, coarse: clips[0].alpha})
    assert [r.method for r in rows] == ["coarse", "truth"]
    assert rows[1].scores["mad"] < rows[0].scores["mad"]


def test_evaluate_synthetic_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "kt"
    cmd = [sys.executable, "-m", "sam2_matting", "evaluate", "--synthetic", "--size", "72x128",
           "--max-clips", "2", "--max-frames", "2", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| heldout-00-hair | coarse |" in done.stdout and "| **mean** | coarse |" in done.stdout
    result = json.loads((out / "results.json").read_text())
    assert result["split"] == "heldout" and result["size"] == [72, 128]
    assert len(result["clips"]) == 2 and result["mean"]["coarse"]["mad"] > 0
    bad = subprocess.run(
        [*cmd[:5], "--size", "big"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0
    assert "--size must be 720p, 1080p or HxW" in bad.stderr
