"""Metric functions against hand-computed cases, known identities and the definitions."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from sam2_matting.errors import InvalidInputError
from sam2_matting.metrics import alpha as m
from sam2_matting.metrics.protocols import AGGREGATES, FrameScorer, aggregate, get_protocol


def test_mad_mse_sad_on_a_hand_computed_frame() -> None:
    a = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    g = np.zeros((2, 2), np.float32)
    assert m.mad(a, g) == pytest.approx(437.5)  # (0 + 1 + .5 + .25) / 4 * 1e3
    assert m.mse(a, g) == pytest.approx(328.125)  # (0 + 1 + .25 + .0625) / 4 * 1e3
    assert m.sad(a, g) == pytest.approx(0.00175)  # 1.75 / 1000
    assert m.course_mad(a, g) == pytest.approx(350.0)  # 1.75 / (4 + 1) * 1e3
    assert m.course_mse(a, g) == pytest.approx(262.5)  # 1.3125 / 5 * 1e3


def test_sad_equals_mad_times_pixels_over_a_million() -> None:
    rng = np.random.default_rng(1)
    a, g = rng.random((288, 512), np.float32), rng.random((288, 512), np.float32)
    n = a.size
    assert m.sad(a, g) == pytest.approx(m.mad(a, g) * n / 1e6, rel=1e-9)
    assert m.sad(a, g) == pytest.approx(m.course_mad(a, g) * (n + 1) / 1e6, rel=1e-9)
    # At 512x288, SAD = 0.147 MAD (docs/matting-evaluation.md).
    assert m.sad(a, g) / m.mad(a, g) == pytest.approx(0.147456)


def test_uint8_inputs_are_read_as_value_over_255_and_quantize_rounds() -> None:
    unit = m.to_unit(np.array([[0, 51, 255]], np.uint8))
    assert unit.dtype == np.float32
    assert unit[0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert m.quantize(np.array([0.0, 0.2, 0.4 / 255, 0.6 / 255, 1.0])).tolist() == [
        0,
        51,
        0,
        1,
        255,
    ]


def test_truncate_and_round_on_a_known_soft_matte() -> None:
    # A soft edge: 255 a = 0, 25.5, 76.755, 127.5 (a tie), 229.245, 254.745, 255.
    soft = np.array([[0.0, 0.1, 0.301, 0.5, 0.899, 0.999, 1.0]], np.float32)
    assert m.quantize(soft, "round").tolist() == [[0, 26, 77, 128, 229, 255, 255]]
    assert m.quantize(soft, "truncate").tolist() == [[0, 25, 76, 127, 229, 254, 255]]
    # Truncation is float32 arithmetic as in torch: floor(float32(a) * 255).
    expected = np.floor(soft * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(m.quantize(soft, "truncate"), expected)
    # Scored against the float truth, truncation adds about half a level of MAD.
    truth = m.to_unit(m.quantize(soft, "round"))
    assert m.mad(m.to_unit(m.quantize(soft, "truncate")), truth) == pytest.approx(
        4 / 7 / 255 * 1e3, rel=1e-5
    )
    with pytest.raises(ValueError, match="rounding"):
        m.quantize(soft, "ceil")
    with pytest.raises(InvalidInputError, match="float predictions"):
        get_protocol("course", rounding="truncate")


def test_dtssd_counts_frame_zero_as_zero_and_matches_the_definition() -> None:
    g = np.zeros((4, 4), np.float32)
    assert m.dtssd(g + 0.1, None, g, None) == 0.0
    # (a_t - a_t-1) - (g_t - g_t-1) = 0.1 everywhere -> sqrt(0.01) * 1e2 = 10
    assert m.dtssd(g + 0.1, g, g, g) == pytest.approx(10.0)
    # Equal motion in prediction and truth is no error.
    assert m.dtssd(g + 0.3, g + 0.1, g + 0.7, g + 0.5) == pytest.approx(
        0.0, abs=1e-5
    )  # float32 inputs


def test_gaussian_derivative_filters_have_the_documented_shape() -> None:
    fx, fy = m.gaussian_derivative_filters(1.4)
    assert fx.shape == (9, 9)  # 2 * ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) 1.4 0.01))) + 1
    assert np.sqrt((fx**2).sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(fy, fx.T)
    np.testing.assert_allclose(fx[:, ::-1], -fx, atol=1e-15)  # odd along x
    np.testing.assert_allclose(fx[::-1, :], fx, atol=1e-15)  # even along y
    assert np.abs(fx[:, 4]).max() == 0.0
    # Separable: G(row) * G'(col) with G' = -x G / sigma^2.
    x = np.arange(-4, 5)
    gauss = np.exp(-(x**2) / (2 * 1.4**2))
    ratio = fx[4, 5] / fx[3, 5]
    assert ratio == pytest.approx(gauss[4] / gauss[3])


def _naive_grad(a: np.ndarray, g: np.ndarray, normalize: bool) -> float:
    """Grad straight from the definition: replicate-padded correlation, loops."""
    fx, fy = m.gaussian_derivative_filters(1.4)

    def norm(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return (x - x.min()) / (x.max() - x.min()) if normalize else x

    def mag(x: np.ndarray) -> np.ndarray:
        p = np.pad(x, 4, mode="edge")
        out = np.zeros_like(x)
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                win = p[i : i + 9, j : j + 9]
                out[i, j] = math.hypot((win * fx).sum(), (win * fy).sum())
        return out

    return float(((mag(norm(g)) - mag(norm(a))) ** 2).sum() / 1000)


@pytest.mark.parametrize("normalize", [True, False])
def test_grad_matches_the_definition_computed_naively(normalize: bool) -> None:
    rng = np.random.default_rng(3)
    g = (rng.random((12, 15)) > 0.5).astype(np.float32)
    a = np.clip(g + rng.normal(0, 0.2, g.shape), 0, 1).astype(np.float32)
    assert m.grad(a, g, normalize=normalize) == pytest.approx(
        _naive_grad(a, g, normalize), rel=1e-9
    )


def test_grad_identities() -> None:
    rng = np.random.default_rng(4)
    g = rng.random((20, 24)).astype(np.float32)
    a = rng.random((20, 24)).astype(np.float32)
    assert m.grad(g, g) == 0.0
    # HR Grad is quadratic in scale; LR Grad is scale-free (min-max normalisation).
    assert m.grad(0.5 * a, 0.5 * g, normalize=False) == pytest.approx(
        0.25 * m.grad(a, g, normalize=False)
    )
    stretched = lambda x: (x - x.min()) / (x.max() - x.min())  # noqa: E731
    assert m.grad(0.5 * a, 0.5 * g) == pytest.approx(m.grad(stretched(a), stretched(g)))
    # A constant frame normalises to zeros, as OpenCV's NORM_MINMAX does.
    flat = np.full((20, 24), 0.7, np.float32)
    assert m.grad(flat, np.zeros_like(flat)) == 0.0


def test_conn_hand_computed_cases() -> None:
    ones = np.ones((3, 3), np.float32)
    assert m.conn(ones, ones) == 0.0
    # a = 0: omega is empty from t=0.1, round-down 0; phi_g = 1 - 1 = 0, phi_a = 1 -> 9 / 1000.
    assert m.conn(np.zeros_like(ones), ones) == pytest.approx(0.009)
    # a = 0.5: common until t=0.5, round-down 0.5; phi_g = 0.5, phi_a = 1 (d = 0) -> 4.5 / 1000.
    assert m.conn(ones * 0.5, ones) == pytest.approx(0.0045)
    # a = 0.35: round-down 0.3; phi_g = 1 - 0.7, and d_a = 0.05 < 0.15 so phi_a = 1.
    assert m.conn(ones * 0.35, ones) == pytest.approx(9 * 0.7 / 1000, rel=1e-6)


def test_conn_only_the_largest_common_component_counts() -> None:
    g = np.zeros((5, 5), np.float32)
    g[0:3, 0] = 1.0  # a 3-pixel blob
    g[4, 4] = 1.0  # a lone pixel
    a = g.copy()
    a[4, 4] = 0.5
    # The lone pixel is outside the largest component from t=0.1: round-down 0, so
    # phi_g = 1 - 1 = 0 and phi_a = 1 - 0.5 -> 0.5 / 1000. The blob pixels agree (phi 1 - 0).
    assert m.conn(a, g) == pytest.approx(0.0005)
    # Were the lone pixel in the largest component, it would round down to 0.5 instead:
    big = np.zeros((5, 5), np.float32)
    big[4, 4] = 1.0
    small_a = big * 0.5
    assert m.conn(small_a, big) == pytest.approx(0.0005)  # phi_g 0.5, phi_a 1


def test_metrics_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same"):
        m.mad(np.zeros((2, 2)), np.zeros((2, 3)))


def test_rvm_aggregation_is_mean_over_clips_per_frame_index_then_over_indices() -> None:
    protocol = get_protocol("standard", resolution="lr")
    assert protocol.aggregate == "frame-index"
    per_clip = [{"mad": [1.0, 2.0, 3.0]}, {"mad": [5.0]}]
    # frame 0: (1 + 5) / 2 = 3; frames 1 and 2: 2 and 3 -> (3 + 2 + 3) / 3
    assert aggregate(per_clip, protocol)["mad"] == pytest.approx(8 / 3)


def test_course_aggregation_is_per_clip_mean_then_over_clips_unlike_pooling() -> None:
    # Clips of unequal length: a 4-frame clip with MAD 1, 2, 3, 6 and a 1-frame clip with 8.
    per_clip = [{"mad": [1.0, 2.0, 3.0, 6.0], "sad": [0.0] * 4}, {"mad": [8.0], "sad": [1.0]}]
    course = get_protocol("course")
    assert course.aggregate == "clip"
    # The notebook: clip means 12 / 4 = 3 and 8, then (3 + 8) / 2 = 5.5.
    assert aggregate(per_clip, course)["mad"] == pytest.approx(5.5)
    assert aggregate(per_clip, course)["sad"] == pytest.approx(0.5)
    # Pooling all frames gives (1 + 2 + 3 + 6 + 8) / 5 = 4: a long clip weighs more.
    pooled = get_protocol("course", aggregate="pooled")
    assert aggregate(per_clip, pooled)["mad"] == pytest.approx(4.0)
    assert aggregate(per_clip, pooled)["sad"] == pytest.approx(0.2)
    # RVM's frame-index mean: frame 0 (1 + 8) / 2 = 4.5, then 2, 3, 6 -> 15.5 / 4.
    by_index = get_protocol("course", aggregate="frame-index")
    assert aggregate(per_clip, by_index)["mad"] == pytest.approx(15.5 / 4)
    # With clips of equal length all three agree.
    equal = [{"mad": [1.0, 2.0]}, {"mad": [4.0, 9.0]}]
    for how in AGGREGATES:
        protocol = replace(get_protocol("standard"), aggregate=how, metrics=("mad",))
        assert aggregate(equal, protocol)["mad"] == pytest.approx(4.0), how
    with pytest.raises(InvalidInputError, match="aggregate must be one of"):
        get_protocol("course", aggregate="median")


def test_protocol_variants() -> None:
    lr = get_protocol("standard", frame_height=288)
    hr = get_protocol("standard", frame_height=1080)
    assert lr.resolution == "lr" and "conn" in lr.metrics
    assert hr.resolution == "hr" and "conn" not in hr.metrics
    course = get_protocol("course")
    assert course.metrics == ("sad", "mad", "mse") and course.max_frames == 10
    assert not course.quantize


def test_standard_scorer_quantises_and_course_scorer_keeps_floats() -> None:
    pred = np.full((8, 8), 0.301, np.float32)  # 76.755 / 255: stored as 77
    truth = np.zeros((8, 8), np.uint8)
    std = FrameScorer(get_protocol("standard", resolution="lr"))
    assert std.score(pred, truth)["mad"] == pytest.approx(77 / 255 * 1e3, rel=1e-6)
    course = FrameScorer(get_protocol("course"))
    assert course.score(pred, truth)["mad"] == pytest.approx(0.301 * 64 / 65 * 1e3, rel=1e-6)
    # RVM's writers truncate (mul(255).byte()): 76.755 -> 76.
    trunc = FrameScorer(get_protocol("standard", resolution="lr", rounding="truncate"))
    assert trunc.score(pred, truth)["mad"] == pytest.approx(76 / 255 * 1e3, rel=1e-6)
    # dtSSD restarts at each clip.
    std.start_clip()
    assert std.score(pred, truth)["dtssd"] == 0.0
    assert set(std.seconds) == {"mad", "mse", "grad", "conn", "dtssd"}
