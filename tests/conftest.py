"""Shared fixtures: the real videos in ../shared/data/videos, a small clip, the tiny model, and
(as in Flask's tutorial) ``predictor``, ``app`` and ``client``: the service in process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from sam2_matting.predictor import MattingPredictor
    from sam2_matting.tiny import TinyModelFiles

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """The folder of real test videos (01_dog.mp4 … bedroom.mp4), read in place."""
    if not SHARED_VIDEOS.is_dir():
        pytest.fail(f"shared test videos not found at {SHARED_VIDEOS}")
    return SHARED_VIDEOS


@pytest.fixture(scope="session")
def bedroom_video(shared_videos: Path) -> Path:
    """bedroom.mp4: H.264, 960x540, 200 frames."""
    return shared_videos / "bedroom.mp4"


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-frame 80x48 H.264 clip made here (a disc moving over a gradient): sessions on it
    prompt, propagate and encode in a fraction of a second."""
    import av
    import numpy as np

    path = tmp_path_factory.mktemp("small-clip") / "clip.mp4"
    yy, xx = np.mgrid[0:48, 0:80]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 80, 48, "yuv420p"
        for i in range(10):
            img = np.zeros((48, 80, 3), np.uint8)
            img[..., 2] = (xx * 3).astype(np.uint8)
            img[(xx - 15 - 4 * i) ** 2 + (yy - 20) ** 2 <= 81] = (230, 40, 40)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModelFiles:
    """The tiny RANDOM-weight SAM 2.1 model (config + official-format checkpoint), seed 0."""
    from sam2_matting.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how much the differential harness compared (docs/reliability.md records it)."""
    harness = sys.modules.get("differential")
    counts = getattr(harness, "COUNTS", None)
    if counts:
        figures = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        terminalreporter.write_line(f"differential harness against stock SAM 2: {figures}")


@pytest.fixture(scope="module")
def predictor(tiny_model: TinyModelFiles) -> MattingPredictor:
    """A matting predictor on the tiny model, on the CPU (one per test module: sessions of a
    module share it, modules do not)."""
    import torch

    from sam2_matting.predictor import build_matting_predictor

    torch.manual_seed(0)
    return build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu")


@pytest.fixture(scope="module")
def app(
    predictor: MattingPredictor,
    bedroom_video: Path,
    small_clip: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Flask]:
    """The service's Flask app in process with the tiny model (one per test module); its
    gallery holds ``bedroom.mp4`` and ``clip.mp4`` (the small clip). A module that needs more
    overrides it, e.g. ``def app(app): app.add_url_rule(...); return app``."""
    from service import build_app, close_app

    app = build_app(
        predictor,
        tmp_path_factory.mktemp("app"),
        {"bedroom.mp4": bedroom_video, "clip.mp4": small_clip},
    )
    yield app
    close_app(app)


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    """Flask's test client on ``app``."""
    return app.test_client()
