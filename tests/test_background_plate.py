"""The ``temporal`` foreground mode: the background under soft pixels from the frames around.

A generated sequence: a still, textured background (noise and stripes, fresh sensor noise in
every frame) and a soft object (a disc with a wide ramp, a veil and strands) that slides across
it, so the background under frame t's soft pixels shows in other frames. The oracles are the
known B and F of the composite ``I = αF + (1 - α)B``: the temporal estimate must recover B at
the soft pixels far better than the background today's single-frame estimate implies, and F
better; where the background changes completely between frames (a cut) it must be today's
estimate exactly; pixels with alpha 0 or 255 stay the source's.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sam2_matting.errors import InvalidInputError
from sam2_matting.export import export_video, frame_name, open_writer
from sam2_matting.export.background_plate import (
    RADIUS,
    TemporalForeground,
    background_from_frames,
    temporal_foreground,
)
from sam2_matting.export.foreground import estimate_foreground, parse_foreground

H, W, T = 96, 160, 9
STEP = 7  # pixels the object moves per frame


def _background(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    stripes = 0.5 + 0.5 * np.sin(xx / 3.0 + yy / 5.0)[..., None] * np.array([1.0, -1.0, 0.5])
    return np.clip(0.6 * stripes + 0.4 * rng.random((H, W, 3)), 0, 1)


def _object(t: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha float (H, W), F float (H, W, 3)) of the object in frame t."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    cx = 40 + STEP * t
    alpha = np.clip(0.5 - (np.hypot(yy - 50, xx - cx) - 18) / 10, 0, 1)  # a 10 px ramp
    veil = (np.abs(xx - cx - 32) < 12) & (np.abs(yy - 50) < 14)
    alpha = np.maximum(alpha, 0.4 * veil)
    for k in range(4):  # strands above the disc
        strand = np.exp(-((xx - cx + 9 - 6 * k) ** 2) / 1.2) * (yy > 12) * (yy < 34)
        alpha = np.maximum(alpha, 0.8 * strand)
    fg = np.stack([0.85 - 0.002 * (xx - cx), 0.3 + 0.004 * yy, 0.25 + 0.0 * xx], -1)
    return alpha, np.clip(fg, 0, 1)


def _sequence(cut: bool = False, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Frames, 8-bit mattes, true F and true B (float) of the sequence; ``cut``: a new
    background in every frame."""
    rng = np.random.default_rng(seed)
    still = _background(rng)
    out: dict[str, list[np.ndarray]] = {"frames": [], "alphas": [], "fg": [], "bg": []}
    for t in range(T):
        bg = _background(rng) if cut else still
        alpha, fg = _object(t)
        alpha8 = np.round(alpha * 255).astype(np.uint8)
        a = alpha8[..., None] / 255
        noise = rng.normal(0, 1.0 / 255, (H, W, 3))
        image = np.clip(np.round((a * fg + (1 - a) * bg + noise) * 255), 0, 255)
        out["frames"].append(image.astype(np.uint8))
        out["alphas"].append(alpha8)
        out["fg"].append(fg)
        out["bg"].append(bg)
    return out


def _implied_background(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """The B that a colour implies: ``(I - αF) / (1 - α)`` (float, 0-1)."""
    a = alpha[..., None] / 255
    return (image / 255 - a * colour / 255) / np.maximum(1 - a, 1e-3)


def test_static_background_is_recovered_and_the_foreground_improves() -> None:
    seq = _sequence()
    t = T // 2
    image, alpha, fg, bg = seq["frames"][t], seq["alphas"][t], seq["fg"][t], seq["bg"][t]
    soft = (alpha > 0) & (alpha < 255)
    plate, trusted = background_from_frames(seq["frames"], seq["alphas"], t)
    assert trusted.sum() > 0.5 * soft.sum()
    assert not (trusted & ~soft).any()
    today = estimate_foreground(image, alpha)
    temporal = temporal_foreground(seq["frames"], seq["alphas"], t)
    # B at the trusted pixels whose alpha leaves B visible (below 0.8)
    check = trusted & (alpha < 204)
    plate_error = np.abs(plate[check] / 255 - bg[check]).mean()
    today_error = np.abs(_implied_background(image, alpha, today)[check] - bg[check]).mean()
    assert plate_error < 0.01 < today_error
    assert plate_error < today_error / 5
    # F, weighted by alpha (what reaches a composite), over every soft pixel
    weight = alpha[soft] / 255

    def f_error(colour: np.ndarray) -> float:
        diff = np.abs(colour[soft] / 255 - fg[soft]).mean(axis=1)
        return float((weight * diff).sum() / weight.sum())

    assert f_error(temporal) < 0.8 * f_error(today)
    assert f_error(today) < f_error(image)
    hard = ~soft
    assert np.array_equal(temporal[hard], image[hard])


def test_a_background_that_changes_completely_falls_back_to_the_estimate() -> None:
    seq = _sequence(cut=True)
    for t in (0, T // 2, T - 1):
        plate, trusted = background_from_frames(seq["frames"], seq["alphas"], t)
        assert not trusted.any()
        assert np.array_equal(plate, seq["frames"][t])
        image, alpha = seq["frames"][t], seq["alphas"][t]
        out = temporal_foreground(seq["frames"], seq["alphas"], t)
        assert np.array_equal(out, estimate_foreground(image, alpha))


def test_no_soft_pixels_and_no_other_frames_change_nothing() -> None:
    seq = _sequence()
    image = seq["frames"][0]
    binary = np.where(seq["alphas"][0] > 127, 255, 0).astype(np.uint8)
    assert temporal_foreground(seq["frames"][:1] * 2, [binary] * 2, 0) is image
    alpha = seq["alphas"][0]
    alone = temporal_foreground([image], [alpha], 0)
    assert np.array_equal(alone, estimate_foreground(image, alpha))


def test_window_hands_frames_back_in_order_and_stays_bounded() -> None:
    seq = _sequence()
    window: TemporalForeground[int] = TemporalForeground(radius=2)
    out: list[tuple[np.ndarray, np.ndarray, int]] = []
    for t in range(T):
        ready = window.push(seq["frames"][t], seq["alphas"][t], t)
        assert len(ready) == (1 if t >= 2 else 0)
        out += ready
        assert window.held <= 2 * 2 + 1
    out += window.flush()
    assert window.held == 0
    assert [extra for _, _, extra in out] == list(range(T))
    for t, (colour, alpha, _) in enumerate(out):
        lo, hi = max(0, t - 2), min(T, t + 3)
        expected = temporal_foreground(seq["frames"][lo:hi], seq["alphas"][lo:hi], t - lo)
        assert np.array_equal(colour, expected)
        assert np.array_equal(alpha, seq["alphas"][t])


def test_parse_foreground_knows_temporal() -> None:
    assert parse_foreground("Temporal") == "temporal"
    with pytest.raises(InvalidInputError, match="foreground must be one of source, estimate, "):
        parse_foreground("plate")


# -- in the exports ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """The static sequence as a lossless video with AAC sound, and the sequence."""
    seq = _sequence()
    path = tmp_path_factory.mktemp("plate") / "still.mov"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "stereo"
        wave = np.sin(np.arange(44100 * T // 10) * 0.06).astype(np.float32) * 0.3
        for start in range(0, wave.size, 1024):
            chunk = np.ascontiguousarray(np.stack([wave[start : start + 1024]] * 2))
            sound = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            sound.sample_rate, sound.pts = 44100, start
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
        for rgb in seq["frames"]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path, seq


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def _png_frames(path: Path) -> list[np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
        assert names == [frame_name(i) for i in range(T)]
        return [np.asarray(Image.open(io.BytesIO(archive.read(n)))) for n in names]


def test_export_with_temporal_writes_the_window_estimate(
    clip: tuple[Path, dict[str, list[np.ndarray]]], tmp_path: Path
) -> None:
    path, seq = clip
    mattes = dict(enumerate(seq["alphas"]))
    out = _png_frames(export_video(path, mattes, tmp_path / "t.zip", "png-zip",
                                   foreground="temporal"))  # fmt: skip
    for t, rgba in enumerate(out):
        lo, hi = max(0, t - RADIUS), min(T, t + RADIUS + 1)
        expected = temporal_foreground(seq["frames"][lo:hi], seq["alphas"][lo:hi], t - lo)
        assert np.array_equal(rgba[..., :3], expected)
        assert np.array_equal(rgba[..., 3], seq["alphas"][t])
    hard = (seq["alphas"][4] == 0) | (seq["alphas"][4] == 255)
    assert np.array_equal(out[4][..., :3][hard], seq["frames"][4][hard])
    # the window holds frames back; every frame still reaches the muxer with its timestamp,
    # and the sound is copied as it was
    for fmt, name in (("prores", "p.mov"), ("composite", "c.mp4")):
        video = export_video(path, mattes, tmp_path / name, fmt, foreground="temporal")
        with av.open(str(video)) as container:
            times = [f.time for f in container.decode(video=0)]
        assert times == pytest.approx([t / 10 for t in range(T)])
        assert _audio_packets(video) == _audio_packets(path) != []
    with pytest.raises(InvalidInputError, match="foreground must be one of"):
        export_video(path, mattes, tmp_path / "x.zip", "png-zip", foreground="plate")
    assert not (tmp_path / "x.zip").exists()


def test_writer_in_temporal_mode_writes_every_frame_at_close(tmp_path: Path) -> None:
    seq = _sequence()
    writer = open_writer("png", tmp_path / "seq", W, H, foreground="temporal")
    with writer:
        for t in range(3):
            writer.write(seq["frames"][t], seq["alphas"][t], index=10 + t)
        assert writer.frames_written < 3  # the last ones wait for the frames after them
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == [
        frame_name(10 + t) for t in range(3)
    ]
    expected = temporal_foreground(seq["frames"][:3], seq["alphas"][:3], 1)
    written = np.asarray(Image.open(tmp_path / "seq" / frame_name(11)))
    assert np.array_equal(written[..., :3], expected)
