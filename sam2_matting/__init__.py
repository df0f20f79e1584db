"""sam2-matting: interactive video matting on SAM 2.

    from sam2_matting import build_matting_predictor
    predictor = build_matting_predictor("large", adapter="adapters/matting")
    with predictor.open("clip.mp4") as session:
        session.add_points(0, object_id=1, points=[[640, 360]], labels=[1])
        for result in session.propagate(direction="both"):
            ...  # result.alphas: uint8 (objects, H, W)

The model package: model building, LoRA matting adapters, lazy video I/O, the matte codec,
training and metrics. It never imports the web service. Heavy modules (torch, SAM 2) load on
first use, so ``sam2-matting --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_matting_predictor": "sam2_matting.predictor",
    "MattingPredictor": "sam2_matting.predictor",
    "CancelToken": "sam2_matting.predictor",
    "MattingSession": "sam2_matting.session",
    "FrameMattes": "sam2_matting.session",
    "open_video": "sam2_matting.video",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sam2_matting' has no attribute {name!r}")
