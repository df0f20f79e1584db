"""The background under a soft region, seen in other frames: the ``temporal`` foreground mode.

    from sam2_matting.export.background_plate import TemporalForeground, background_from_frames

    plate, trusted = background_from_frames(frames, alphas, t)   # B (H, W, 3) uint8, (H, W) bool
    colour = temporal_foreground(frames, alphas, t)            # F where 0 < alpha < 255

    window = TemporalForeground()                  # what the writers use, frame by frame
    for rgb, alpha, extra in stream:
        for colour, alpha, extra in window.push(rgb, alpha, extra):   # frames RADIUS behind
            write(colour, alpha, extra)
    for colour, alpha, extra in window.flush():
        write(colour, alpha, extra)

The single-frame estimate (:mod:`~sam2_matting.export.foreground`) has to guess the background
``B`` under a soft pixel from the pixels around the soft region; that is its only loss (with
the true B its composite error falls 600-3000x below the source colour's). In video the
background under frame t's soft region is often plain to see in other frames: the subject moves
on, the camera stands still. For a soft pixel p of frame t, frame t' (within :data:`RADIUS`
frames) is an observation of B at p when

- p is background in t': alpha there is at most :data:`CLEAR_LEVEL` within :data:`EDGE_MARGIN`
  pixels (the matte's edge is where it is least sure), and
- t' agrees with t around p: on the pixels that are background in both frames, the mean
  absolute difference (8-bit levels, channels averaged) within :data:`AGREE_RADII` pixels of p
  is at most :data:`AGREE_LEVEL`, measured at the smallest radius where such shared background
  covers at least :data:`MIN_SHARED` of the neighbourhood. A camera that moves, a cut or a
  background that changes fails this test, and t' is not used there.

B at p is the per-channel median of its observations; p is *trusted* when it has at least
:data:`MIN_OBSERVATIONS`, they agree with each other (median deviation from their median at most
:data:`AGREE_LEVEL`: a background that moves shows a different colour in every frame), and the
``F = (I - (1 - α)B) / α`` they imply for frame t lies within 0-255 (:data:`F_SLACK` aside). The
foreground is then solved with B held at the trusted pixels (the multilevel solver, F alone
there, both elsewhere); a frame or pixel without a trustworthy observation gets exactly the
single-frame estimate. Pixels with alpha 0 or 255 are the source's, as in every mode.

:class:`TemporalForeground` is the bounded window the export writers keep for this mode: a
frame's colour is computed once the :data:`RADIUS` frames after it have arrived (or at the
end), so it holds at most ``2 * RADIUS + 1`` frames and their mattes: 2x6+1 = 13 frames,
about 135 MB at 1920x1080 (10.4 MB a frame: the frame, its matte and its clear-background
mask), 60 MB at 1280x720. Measured against the single-frame estimate in ``docs/benchmarks.md``
(``benchmarks/bench_temporal_background.py``):
over a still background 31-34 % lower composite error with the true matte and 2.5 % with SAM 2's
coarse one; over moving footage 6 % and 0.5 % (little is trusted there, so it is mostly today's
estimate); about three times the estimate's cost per frame. So ``estimate`` stays the default
and ``temporal`` is asked for (a camera on a tripod). The page's still preview draws it with the
single-frame estimate (``server/preview.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import numpy as np
from scipy import ndimage

from sam2_matting.export.foreground import estimate_foreground

__all__ = [
    "AGREE_LEVEL",
    "CLEAR_LEVEL",
    "EDGE_MARGIN",
    "RADIUS",
    "TemporalForeground",
    "background_from_frames",
    "clear_background",
    "temporal_foreground",
]

RADIUS = 6  # frames either side of t looked at
CLEAR_LEVEL = 2  # alpha (of 255) up to which a pixel of another frame counts as background
EDGE_MARGIN = 2  # pixels kept between an observation and that frame's matte
AGREE_LEVEL = 3.0  # mean |I_t - I_t'| (levels) allowed on the shared background near p
AGREE_RADII = (16, 64, 256)  # neighbourhoods (pixels) where the agreement is measured
MIN_SHARED = 0.2  # share of a neighbourhood that must be background in both frames
MIN_OBSERVATIONS = 2  # frames that must have seen B at p (and agree with each other)
F_SLACK = 8.0  # levels by which the F that B implies may leave 0-255 (rounding, noise)
CELL = 4  # pixels per side of the blocks the agreement is measured on

Extra = TypeVar("Extra")


def background_from_frames(
    frames: Sequence[np.ndarray],
    alphas: Sequence[np.ndarray],
    t: int,
    clears: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """B for frame ``t``'s soft pixels from the other ``frames`` (module docstring).

    ``frames``: (H, W, 3) uint8 each, ``alphas`` (H, W) uint8 each, the same length; every
    frame but ``t`` is a candidate (pass a window). ``clears``: :func:`clear_background` of
    each alpha if already computed (a window reuses them). Returns (B (H, W, 3) uint8, trusted
    (H, W) bool): trusted only at soft pixels of frame t with at least
    :data:`MIN_OBSERVATIONS` agreeing observations; B is frame t itself elsewhere.
    """
    image, alpha = frames[t], alphas[t]
    plate = image.copy()
    trusted = np.zeros(alpha.shape, bool)
    soft = (alpha > 0) & (alpha < 255)
    rows = np.flatnonzero(soft.any(axis=1))
    if rows.size == 0 or len(frames) < 2:
        return plate, trusted
    cols = np.flatnonzero(soft[rows[0] : rows[-1] + 1].any(axis=0))
    pad = AGREE_RADII[-1] + EDGE_MARGIN
    height, width = alpha.shape
    box = (
        slice(max(0, rows[0] - pad), min(height, rows[-1] + 1 + pad)),
        slice(max(0, cols[0] - pad), min(width, cols[-1] + 1 + pad)),
    )
    inner = soft[box]
    here = image[box]
    if clears is None:
        clears = [clear_background(a) for a in alphas]
    clear_here = clears[t][box]
    observations: list[np.ndarray] = []
    for other in range(len(frames)):
        if other == t:
            continue
        clear_there = clears[other][box]
        seen = clear_there & inner
        if not seen.any():
            continue
        there = frames[other][box]
        ok = seen & _agrees(here, there, clear_here & clear_there)
        if ok.any():
            obs = np.full((int(inner.sum()), 3), np.nan, np.float32)
            obs[ok[inner]] = there[ok]
            observations.append(obs)
    if not observations:
        return plate, trusted
    stack = np.stack(observations)  # (K, soft pixels, 3)
    counted = ~np.isnan(stack[..., 0])
    have = counted.any(axis=0)
    if not have.any():
        return plate, trusted
    median = np.nanmedian(stack[:, have], axis=0)
    # the observations must agree with each other too: a background that moves gives a
    # different colour at p in every frame, a still one the same up to noise
    spread = np.nanmedian(np.abs(stack[:, have] - median).mean(axis=2), axis=0)
    steady = spread <= AGREE_LEVEL
    steady &= counted[:, have].sum(axis=0) >= MIN_OBSERVATIONS
    # and with frame t: I = aF + (1 - a)B has an F within 0-255 for the true B
    a = alpha[box][inner][have].astype(np.float32)[:, None] / 255
    implied = (image[box][inner][have] - (1 - a) * median) / a
    steady &= ((implied >= -F_SLACK) & (implied <= 255 + F_SLACK)).all(axis=1)
    have[have] = steady
    median = median[steady]
    crop, crop_trusted = plate[box], trusted[box]
    values = crop[inner]
    values[have] = np.clip(np.rint(median), 0, 255).astype(np.uint8)
    crop[inner] = values
    crop_trusted[inner] = have
    return plate, trusted


def temporal_foreground(
    frames: Sequence[np.ndarray],
    alphas: Sequence[np.ndarray],
    t: int,
    clears: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Frame ``t``'s foreground colour with the background from the other frames where it is
    trusted (:func:`background_from_frames`, ``clears`` as there), the single-frame estimate
    elsewhere."""
    image, alpha = frames[t], alphas[t]
    plate, trusted = background_from_frames(frames, alphas, t, clears)
    if not trusted.any():
        return estimate_foreground(image, alpha)
    return estimate_foreground(image, alpha, background=plate, known=trusted)


def clear_background(alpha: np.ndarray) -> np.ndarray:
    """Where ``alpha`` (H, W) uint8 is background with :data:`EDGE_MARGIN` pixels to spare:
    at most :data:`CLEAR_LEVEL` everywhere within that distance (bool (H, W))."""
    near = ndimage.maximum_filter(alpha, size=2 * EDGE_MARGIN + 1) if EDGE_MARGIN else alpha
    clear: np.ndarray = near <= CLEAR_LEVEL
    return clear


def _agrees(here: np.ndarray, there: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """Where ``there`` matches ``here`` on the ``shared`` background around each pixel.

    Measured on a grid of :data:`CELL` x :data:`CELL` blocks (sums of the full-resolution
    differences, so a texture shifted by a pixel still differs), then spread back."""
    if not shared.any():
        return np.zeros(shared.shape, bool)
    # |here - there| in uint8 (no widening of the whole box), summed over the channels
    diff = np.maximum(here, there)
    diff -= np.minimum(here, there)
    diff *= shared[..., None]
    total = diff[..., 0].astype(np.uint16)
    total += diff[..., 1]
    total += diff[..., 2]
    diff_cells = _cells(total).astype(np.float32)  # at most CELL² x 765: fits in uint16
    share_cells = _cells(shared.astype(np.uint16)).astype(np.float32)
    decided = np.zeros(share_cells.shape, bool)
    ok = np.zeros(share_cells.shape, bool)
    for radius in AGREE_RADII:
        size = 2 * (radius // CELL) + 1
        share = ndimage.uniform_filter(share_cells, size, mode="constant")
        level = ndimage.uniform_filter(diff_cells, size, mode="constant")
        enough = (share >= MIN_SHARED * CELL * CELL) & ~decided
        ok[enough] = level[enough] <= 3 * AGREE_LEVEL * share[enough]
        decided |= enough
    full = np.repeat(np.repeat(ok, CELL, axis=0), CELL, axis=1)
    out: np.ndarray = full[: shared.shape[0], : shared.shape[1]]
    return out


def _cells(array: np.ndarray) -> np.ndarray:
    """Sums of ``array`` (h, w[, c]) over CELL x CELL blocks (the last ones partial), in its
    dtype (slices added: a reduction over short axes is slow in NumPy)."""
    h, w = array.shape[:2]
    pad = [(0, -h % CELL), (0, -w % CELL)] + [(0, 0)] * (array.ndim - 2)
    padded = np.pad(array, pad)
    rows = padded[0::CELL].copy()
    for i in range(1, CELL):
        rows += padded[i::CELL]
    out = rows[:, 0::CELL].copy()
    for i in range(1, CELL):
        out += rows[:, i::CELL]
    return out


class TemporalForeground(Generic[Extra]):
    """The window of frames the ``temporal`` mode needs, fed in order (module docstring).

    :meth:`push` takes a frame (copied), its matte and anything to carry with it, and returns
    the frames now complete as ``(colour, alpha, extra)``, in order, ``radius`` frames behind;
    :meth:`flush` returns the rest at the end. Holds at most ``2 * radius + 1`` frames.
    """

    def __init__(self, radius: int = RADIUS) -> None:
        self.radius = radius
        self._frames: list[np.ndarray] = []
        self._alphas: list[np.ndarray] = []
        self._clears: list[np.ndarray] = []
        self._extras: list[Extra] = []
        self._next = 0  # position in the lists of the next frame to hand out

    def push(
        self, rgb: np.ndarray, alpha: np.ndarray, extra: Extra
    ) -> list[tuple[np.ndarray, np.ndarray, Extra]]:
        self._frames.append(rgb.copy())
        self._alphas.append(alpha.copy())
        self._clears.append(clear_background(alpha))
        self._extras.append(extra)
        ready = []
        while self._next + self.radius < len(self._frames):
            ready.append(self._emit())
        return ready

    @property
    def held(self) -> int:
        """Frames in the window now."""
        return len(self._frames)

    def flush(self) -> list[tuple[np.ndarray, np.ndarray, Extra]]:
        ready = []
        while self._next < len(self._frames):
            ready.append(self._emit())
        self.clear()
        return ready

    def clear(self) -> None:
        self._frames.clear()
        self._alphas.clear()
        self._clears.clear()
        self._extras.clear()
        self._next = 0

    def _emit(self) -> tuple[np.ndarray, np.ndarray, Extra]:
        t = self._next
        colour = temporal_foreground(self._frames, self._alphas, t, self._clears)
        out = (colour, self._alphas[t], self._extras[t])
        self._next += 1
        drop = self._next - self.radius  # frames no later frame needs any more
        if drop > 0:
            del self._frames[:drop], self._alphas[:drop], self._clears[:drop]
            del self._extras[:drop]
            self._next -= drop
        return out
