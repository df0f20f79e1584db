"""Decode ahead: a background thread prepares the next frames of a propagation while the model runs.

    ahead = DecodeAhead(frames, order=range(40, 100), depth=4, pin_memory=False)
    frames.supply_from(ahead)      # frames[i] now takes prepared tensors from the thread
    ...                            # SAM 2 reads frames[40], frames[41], ... in that order
    ahead.held_rgb(41)             # the decoded RGB frame 41, while it is the latest taken
    ahead.close()                  # stops and joins the thread; frames[i] decodes itself again

The thread walks ``order`` (the frames in the direction of travel, as SAM 2 will read them) and
runs exactly what :meth:`SamFrames.__getitem__` would run on a miss (``source.get_frame`` then
:meth:`SamFrames.prepare`), so the tensors are the same. It keeps at most ``depth`` prepared
frames beyond the one last taken, so memory does not grow with the video. A frame the thread
failed to prepare is answered with None: the reader then decodes it itself and raises the same
error it always did. Walking backwards through a file, each frame would cost a seek and a
decode from the keyframe before it; the thread instead decodes the next few frames of the
backward walk in forward order, so the source's frame cache holds them (one seek per block).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from sam2_matting.sam_frames import SamFrames

__all__ = ["DEFAULT_DECODE_AHEAD", "DecodeAhead", "DecodeAheadStage"]

# Frames prepared beyond the one the model is on: at 1024 px a prepared frame is 12 MiB (plus
# its RGB frame, 6 MiB at 1080p). A few cover the jitter of decoding against the model's step.
DEFAULT_DECODE_AHEAD = 4
_JOIN_TIMEOUT_S = 30.0  # a frame being prepared finishes first; this bounds a stuck decoder


class DecodeAhead:
    """Prepare ``frames[i]`` for ``i`` in ``order`` in a daemon thread, ``depth`` ahead of the
    reader. Thread-safe; :meth:`close` is idempotent and safe from any thread."""

    def __init__(
        self,
        frames: SamFrames,
        order: Sequence[int],
        *,
        depth: int = DEFAULT_DECODE_AHEAD,
        pin_memory: bool = False,
    ) -> None:
        self._frames = frames
        self._order = list(order)
        self._depth = max(1, int(depth))
        self._pin = pin_memory
        self._cond = threading.Condition(threading.Lock())
        # position in order -> (rgb, tensor), or None when preparing it failed
        self._ready: dict[int, tuple[np.ndarray, torch.Tensor] | None] = {}
        self._next = 0  # next position the thread prepares
        self._taken = -1  # position of the frame the reader asked for last
        self._done = -1  # positions up to here are no longer wanted
        self._held: tuple[int, np.ndarray] | None = None
        self._stopped = False
        self.wait_s = 0.0  # time the reader spent waiting for a frame the thread was on
        self._thread = threading.Thread(target=self._run, name="sam2-matting-decode", daemon=True)
        self._thread.start()

    # -- reader side ----------------------------------------------------------------------
    def take(self, index: int, *, need: bool = True) -> torch.Tensor | None:
        """The prepared tensor of frame ``index`` (waiting for it if the thread is on it).

        None when ``index`` is not among the next planned frames, or the thread stopped or
        failed on it: the caller prepares it itself. ``need=False`` only moves the reader's
        position (the caller had the frame cached).
        """
        with self._cond:
            pos = self._find(index)
            if pos is None:
                return None
            self._taken = pos
            self._done = pos - 1 if need else pos
            for p in [p for p in self._ready if p <= self._done]:
                del self._ready[p]
            self._cond.notify_all()
            if not need:
                return None
            if pos not in self._ready and not self._stopped and self._next <= pos:
                started = time.perf_counter()
                while pos not in self._ready and not self._stopped and self._next <= pos:
                    self._cond.wait()
                self.wait_s += time.perf_counter() - started
            self._done = pos
            item = self._ready.pop(pos, None)
            if item is None:
                return None
            rgb, tensor = item
            self._held = (index, rgb)
            return tensor

    def held_rgb(self, index: int) -> np.ndarray | None:
        """The decoded RGB frame ``index`` if it is the frame last taken (else None)."""
        with self._cond:
            held = self._held
        return held[1] if held is not None and held[0] == index else None

    def close(self) -> None:
        """Stop the thread (after the frame it is preparing) and wait for it."""
        with self._cond:
            self._stopped = True
            self._ready.clear()
            self._held = None
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(_JOIN_TIMEOUT_S)

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()

    def _find(self, index: int) -> int | None:
        """The first position from the reader's on where ``order`` has ``index``."""
        first = max(self._taken, 0)
        end = min(len(self._order), max(self._next, first) + self._depth + 1)
        for pos in range(first, end):
            if self._order[pos] == index:
                return pos
        return None

    # -- thread side ----------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._stopped and self._next > self._taken + self._depth:
                        self._cond.wait()
                    pos = self._next = max(self._next, self._done + 1)
                    if self._stopped or pos >= len(self._order):
                        return
                item = self._prepare(pos)
                with self._cond:
                    if self._stopped:
                        return
                    if pos > self._done:  # not passed by the reader meanwhile
                        self._ready[pos] = item
                    self._next = pos + 1
                    self._cond.notify_all()
                    if item is None:
                        self._stopped = True  # the reader decodes from here on
                        return

    def _prepare(self, pos: int) -> tuple[np.ndarray, torch.Tensor] | None:
        index = self._order[pos]
        try:
            self._warm_backwards(pos)
            rgb = self._frames.source.get_frame(index)
            tensor = self._frames.prepare(rgb)
            if self._pin:
                tensor = tensor.pin_memory()
        except Exception:
            return None  # the reader repeats the read and gets the error itself
        return rgb, tensor

    def _warm_backwards(self, pos: int) -> None:
        """Walking backwards, decode the next block of frames in forward order (one seek)."""
        order, index = self._order, self._order[pos]
        if pos + 1 >= len(order) or order[pos + 1] != index - 1:
            return
        source = self._frames.source
        if index in source.cached_indices():
            return
        block = source.cache_info().maxsize  # the frames warmed plus this one
        low = index
        while low > 0 and index - low + 1 < block and pos + (index - low) + 1 < len(order):
            if order[pos + (index - low) + 1] != low - 1:
                break
            low -= 1
        for i in range(low, index):
            with self._cond:
                if self._stopped:
                    return
            source.get_frame(i)


class DecodeAheadStage:
    """A session's decode-ahead stage: at most one :class:`DecodeAhead` feeding ``frames``.

    ``depth=0`` turns it off (every frame is prepared when SAM 2 asks for it).
    """

    def __init__(self, frames: SamFrames, depth: int, *, pin_memory: bool = False) -> None:
        self.frames = frames
        self.depth = max(0, int(depth))
        self.pin_memory = pin_memory
        self._ahead: DecodeAhead | None = None
        self.wait_s = 0.0  # the last walk's DecodeAhead.wait_s

    def start(self, order: Sequence[int]) -> None:
        """Prepare ``order`` ahead of the reader (stopping any earlier walk)."""
        self.stop()
        if self.depth:
            ahead = DecodeAhead(self.frames, order, depth=self.depth, pin_memory=self.pin_memory)
            self._ahead = ahead
            self.frames.supply_from(ahead)

    def stop(self) -> None:
        """Stop and join the thread, if one runs (idempotent, any thread)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self.frames.supply_from(None)
            ahead.close()
            self.wait_s = ahead.wait_s

    def held_rgb(self, index: int) -> np.ndarray | None:
        """The decoded RGB frame ``index`` if the running walk holds it (see DecodeAhead)."""
        ahead = self._ahead
        return ahead.held_rgb(index) if ahead is not None else None
