"""Shared fixtures: the real videos in ../shared/data/videos and a scratch folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

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
def tiny_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
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
