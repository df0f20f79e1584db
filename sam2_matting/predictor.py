"""The matting predictor: a loaded SAM 2 model (with a merged matting adapter) and its sessions.

    from sam2_matting import build_matting_predictor
    predictor = build_matting_predictor("large", adapter="adapters/matting")
    with predictor.open("clip.mp4") as session:
        session.add_points(0, object_id=1, points=[[640, 360]], labels=[1])
        for result in session.propagate(direction="both"):
            result.alphas      # uint8 (objects, H, W) at the video's resolution

Without an adapter the predictor gives base SAM 2's soft output (sigmoid of its mask logits),
the baseline every adapter is compared against.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import torch

from sam2_matting.errors import CheckpointError, InvalidInputError
from sam2_matting.model import build_sam2_model, resolve_device
from sam2_matting.sam2_internals import quiet_progress_bars, read_memory_in_compute_dtype
from sam2_matting.session import MattingSession
from sam2_matting.steps import CancelToken, iter_with_context, logits_to_alpha

__all__ = [
    "CancelToken",
    "FairLock",
    "MattingPredictor",
    "build_matting_predictor",
    "iter_with_context",
    "logits_to_alpha",
    "resolve_dtype",
]

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``: bf16 autocast on CUDA, fp32 elsewhere (bf16 on CPU is opt-in)."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise InvalidInputError(
            f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))}"
        ) from None


class FairLock:
    """A first-come, first-served lock: waiting threads get it in arrival order.

    Every model step of every session takes it, so two streams share the model frame by frame
    instead of one starving the other (``threading.Lock`` makes no ordering promise).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:  # re-entrant for nested calls on one thread
                self._depth += 1
                return
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()
            self._owner, self._depth = me, 1

    def release(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._serving += 1
                self._cond.notify_all()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class MattingPredictor:
    """Owns one loaded SAM 2 model; opens :class:`MattingSession` objects on videos."""

    def __init__(
        self, model: Any, *, dtype: torch.dtype = torch.float32, refiner: Any = None
    ) -> None:
        self.model = model
        self.device: torch.device = model.device
        self.dtype = dtype
        # a sam2_matting.refiner.GuidedRefiner applied to every output alpha, or None
        self.refiner = refiner.to(self.device) if refiner is not None else None
        self.image_size: int = int(model.image_size)
        self.model_lock = FairLock()
        quiet_progress_bars()
        read_memory_in_compute_dtype(model)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context every model call runs under (a no-op for fp32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def open(self, video: Any, **options: Any) -> MattingSession:
        """Open a session on a video path, a frame folder or an open ``VideoSource``.

        ``options`` go to :class:`MattingSession` (``cache_size``, ``memory_window``,
        ``offload_state_to_cpu``, ``max_objects``, ``keep_float``, ``decode_ahead``: frames
        decoded ahead of the model while propagating, 0 for none).
        """
        return MattingSession(self, video, **options)


def build_matting_predictor(
    model: str | Path = "large",
    checkpoint: str | Path | None = None,
    adapter: str | Path | None = None,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    checkpoint_dir: str | Path | None = None,
    hole_filling: bool = True,
    vos_optimized: bool = False,
    refiner: bool = True,
) -> MattingPredictor:
    """Load SAM 2 (and merge a matting adapter) once; the one entry point for inference.

    ``model`` is a size (tiny, small, base_plus, large), a SAM 2 config name or a YAML file.
    For a size, ``checkpoint`` defaults to the downloaded file in ``checkpoint_dir``. A config
    without a checkpoint is refused: random weights are never served by accident.
    ``adapter`` is a folder holding a LoRA adapter, a full-resolution refiner or both
    (:mod:`sam2_matting.refiner`); ``refiner=False`` leaves a folder's refiner unused.
    """
    from sam2_matting.registry import resolve_checkpoint

    checkpoint = resolve_checkpoint(model, checkpoint, checkpoint_dir)
    _check_checkpoint_file(Path(checkpoint))
    dev = resolve_device(device)
    sam = build_sam2_model(
        model,
        checkpoint,
        device="cpu",
        hole_filling=hole_filling,
        vos_optimized=vos_optimized,
    )
    net = None
    if adapter is not None:
        from sam2_matting.lora import merge_adapter
        from sam2_matting.refiner import adapter_contents, load_refiner

        has_lora, has_refiner = adapter_contents(adapter)
        if has_lora:
            sam = merge_adapter(sam, adapter)
        if has_refiner and refiner:
            net = load_refiner(adapter)
    sam = sam.to(dev)
    sam.eval()
    return MattingPredictor(sam, dtype=resolve_dtype(dtype, dev), refiner=net)


def _check_checkpoint_file(path: Path) -> None:
    """Refuse at once, and say why, a file that cannot be a PyTorch checkpoint at all (torch's
    own message for one is about ``weights_only``, which sends a user the wrong way)."""
    import zipfile

    if not path.is_file():
        return  # the loader reports a missing file, with how to get one
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        archive = zipfile.is_zipfile(path)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror}") from None
    # torch.save writes a zip archive; the legacy format is a pickle (protocol 2+: 0x80).
    if not archive and not head.startswith(b"\x80"):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (corrupt, truncated or another kind of file)"
        )
