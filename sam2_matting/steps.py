"""Stepping SAM 2's propagation under locks, with a cancel flag, and turning logits into alpha.

    token = CancelToken()
    for item in iter_with_context(model.propagate_in_video(state), step_context, token):
        alpha = logits_to_alpha(item[2])      # uint8 (objects, H, W)

:class:`ModelHost` is what a session needs from the predictor that owns the model (the model,
its input size, the lock every model step takes and the autocast context), so that
``session.py`` does not import ``predictor.py``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator
from typing import Any, Protocol

import torch

__all__ = ["CancelToken", "ModelHost", "iter_with_context", "logits_to_alpha"]


class ModelHost(Protocol):
    """The part of :class:`sam2_matting.predictor.MattingPredictor` a session uses."""

    model: Any
    image_size: int

    @property
    def model_lock(self) -> contextlib.AbstractContextManager[Any]: ...

    def autocast(self) -> contextlib.AbstractContextManager[Any]: ...


class CancelToken:
    """A thread-safe flag a propagation checks between frames."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def logits_to_alpha(logits: torch.Tensor) -> torch.Tensor:
    """SAM 2 mask logits (objects, 1, H, W) -> uint8 alpha (objects, H, W), rounded."""
    alpha = torch.sigmoid(logits.float()[:, 0]) * 255.0
    return alpha.round_().to(torch.uint8)


def iter_with_context(
    gen: Generator[Any, None, None], context: Any, cancel: CancelToken | None = None
) -> Iterator[Any]:
    """Step ``gen`` inside ``context()`` each time, yielding outside it.

    Autocast and inference-mode state is thread-local: holding it across a ``yield`` would
    leak it into the consumer's code, so each step enters and leaves the context. ``cancel``
    is checked before each step and again inside the context, since entering it may wait for
    the model lock: a cancel sent during that wait stops the step before it computes.
    """
    while True:
        if cancel is not None and cancel.cancelled:
            gen.close()
            return
        with context():
            if cancel is not None and cancel.cancelled:
                gen.close()
                return
            try:
                item = next(gen)
            except StopIteration:
                return
        yield item
