"""A refiner in the service's adapter folder: every alpha the running service returns is the
in-process refined one, byte for byte, through the users' sequences of the differential harness.

The real CLI starts gunicorn with the tiny model and ``SAM2_MATTING_ADAPTER`` naming a
refiner-only folder (random, non-zero last layer: it changes the soft edges), so the worker
loads the refiner and its compiled CPU kernels as a deployment does. The in-process side opens
the same folder. A base predictor (the folder's refiner ignored) shows the refiner changed
what the sequences return.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from differential import REGRESSIONS, OurSide, make_clip
from service import Server, launch
from test_differential_service import replay

from sam2_matting.predictor import MattingPredictor, build_matting_predictor
from sam2_matting.refiner import GuidedRefiner, RefinerConfig, save_refiner
from sam2_matting.tiny import TinyModelFiles


@pytest.fixture(scope="module")
def refiner_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    net = GuidedRefiner(RefinerConfig(low_side=24))
    with torch.no_grad():
        for p in net.net[-1].parameters():
            p.normal_(0, 0.1)
    return save_refiner(net, tmp_path_factory.mktemp("refiner") / "adapter")


@pytest.fixture(scope="module")
def service(
    tiny_model: TinyModelFiles,
    shared_videos: Path,
    refiner_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("refiner-service")
    (root / "gallery").mkdir()
    clip = make_clip(root / "gallery" / "clip.mp4")
    server = launch(
        tiny_model,
        shared_videos,
        root,
        SAM2_MATTING_DEFAULT_VIDEO="clip.mp4",
        SAM2_MATTING_ADAPTER=str(refiner_folder),
    )
    try:
        yield server, clip
    finally:
        server.proc.terminate()
        server.proc.wait(30)


def _predictor(tiny_model: TinyModelFiles, folder: Path, refiner: bool) -> MattingPredictor:
    torch.manual_seed(0)
    return build_matting_predictor(
        tiny_model.config, tiny_model.checkpoint, device="cpu", adapter=folder, refiner=refiner
    )


@pytest.fixture(scope="module")
def local(tiny_model: TinyModelFiles, refiner_folder: Path) -> MattingPredictor:
    predictor = _predictor(tiny_model, refiner_folder, refiner=True)
    assert predictor.refiner is not None
    return predictor


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_refined_sequences_through_the_service(
    service: tuple[Server, Path], local: MattingPredictor, name: str
) -> None:
    replay(service, local, REGRESSIONS[name])


def test_the_refiner_changes_what_the_sequences_return(
    service: tuple[Server, Path],
    local: MattingPredictor,
    tiny_model: TinyModelFiles,
    refiner_folder: Path,
) -> None:
    """Not vacuous: with the folder's refiner ignored, the same sequences give other alphas."""
    _, clip = service
    base = _predictor(tiny_model, refiner_folder, refiner=False)
    assert base.refiner is None
    differing = compared = 0
    for ops in REGRESSIONS.values():
        outcomes = []
        for predictor in (local, base):
            with predictor.open(clip) as session:
                side = OurSide(session, as_service=True)
                outcomes.append([side.apply(op) for op in ops])
        for refined, plain in zip(*outcomes, strict=True):
            if refined[0] != "frames" or plain[0] != "frames":
                continue
            for (_, _, a), (_, _, b) in zip(refined[1], plain[1], strict=True):
                compared += 1
                differing += int(not np.array_equal(a, b))
    assert compared > 0 and differing > 0, (compared, differing)
