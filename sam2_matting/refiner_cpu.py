"""The refiner's inference on a CPU, compiled (numba): each step one pass over its cells.

:meth:`sam2_matting.refiner.GuidedRefiner.refine` with torch's operations spends most of its
time on a CPU moving data between many small operations (gathering cells, converting,
upsampling, scattering back), not computing. These kernels do the same arithmetic in one pass
each, reading the frame and the coarse alpha where they lie; only the conv net stays torch's:

- :func:`band_cells`: the band (cells within ``band`` cells of an uncertain sample), the cells
  the full-resolution model touches (the band grown by one), the net's window (the band's box
  and its margin) and which of its cells can reach the band (within ``context`` cells), as
  ``GuidedRefiner.band``, :func:`~sam2_matting.refiner_grid.dilate` and
  :func:`~sam2_matting.refiner_grid.nonzero_box` compute them, on the soft cells' box only;
- :func:`down_window`: the block means of the frame and of the coarse alpha on those cells of
  the window (past the frame's edge its last row and column repeat), as
  :func:`~sam2_matting.refiner_grid.down_frame` and ``block_mean(window(...))``;
- :func:`features` and :func:`finish`: the net's input (guided-filter statistics) and its
  output turned into the coefficients, as ``GuidedRefiner.coefficients``;
- :func:`apply_cells`: the coefficients upsampled bilinearly and the linear model applied on
  the given cells, clamped, in place, as :func:`sam2_matting.refiner_grid.apply_cells`.

The results equal the torch path's and the dense forward's to float32 rounding
(tests/test_refiner.py checks both on generated frames). numba compiles each kernel on its
first call in a process (seconds; then cached on disk next to this file, or in numba's cache
folder, for the next process): :func:`warm_up`, called when a refiner is loaded, does it then.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from sam2_matting.refiner_grid import axis_weights


@functools.lru_cache(maxsize=16)
def taps(f: int) -> np.ndarray:
    """:func:`~sam2_matting.refiner_grid.axis_weights` as a float32 array (3, f)."""
    return np.ascontiguousarray(axis_weights(f).numpy(), dtype=np.float32)


@njit(cache=True, nogil=True)
def _band_cells(
    coarse: np.ndarray, f: int, lo: np.float32, hi: np.float32, band: int, context: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    height, width = coarse.shape
    h, w = -(-height // f), -(-width // f)
    c = f // 2
    soft = np.zeros((h, w), np.uint8)
    sy0, sy1, sx0, sx1 = h, 0, w, 0
    for i in range(h):
        y = min(i * f + c, height - 1)
        for j in range(w):
            v = coarse[y, min(j * f + c, width - 1)]
            if v > lo and v < hi:
                soft[i, j] = 1
                sy0, sy1 = min(sy0, i), max(sy1, i + 1)
                sx0, sx1 = min(sx0, j), max(sx1, j + 1)
    grown = np.zeros((h, w), np.uint8)
    win = np.zeros(4, np.int64)  # y0, y1, x0, x1 of the band grown by context; all 0: no band
    if sy1 == 0:
        return grown, np.empty(0, np.int64), np.empty(0, np.int64), win, np.empty((0, 0), np.uint8)
    # everything below happens within `band + context` cells of the soft cells
    m = band + max(context, 1)
    ry0, ry1, rx0, rx1 = max(0, sy0 - m), min(h, sy1 + m), max(0, sx0 - m), min(w, sx1 + m)
    part = _dilate(soft[ry0:ry1, rx0:rx1], band)
    grown[ry0:ry1, rx0:rx1] = part
    cells = _dilate(part, 1)
    need = _dilate(part, context)
    gy0, gy1, gx0, gx1 = ry1 - ry0, 0, rx1 - rx0, 0
    count = 0
    for i in range(ry1 - ry0):
        for j in range(rx1 - rx0):
            if part[i, j]:
                gy0, gy1 = min(gy0, i), max(gy1, i + 1)
                gx0, gx1 = min(gx0, j), max(gx1, j + 1)
            count += cells[i, j]
    ys = np.empty(count, np.int64)
    xs = np.empty(count, np.int64)
    k = 0
    for i in range(ry1 - ry0):
        for j in range(rx1 - rx0):
            if cells[i, j]:
                ys[k] = ry0 + i
                xs[k] = rx0 + j
                k += 1
    wy0, wy1 = max(0, ry0 + gy0 - context), min(h, ry0 + gy1 + context)
    wx0, wx1 = max(0, rx0 + gx0 - context), min(w, rx0 + gx1 + context)
    win[0], win[1], win[2], win[3] = wy0, wy1, wx0, wx1
    return grown, ys, xs, win, need[wy0 - ry0 : wy1 - ry0, wx0 - rx0 : wx1 - rx0].copy()


@njit(cache=True, nogil=True)
def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Max over the (2r+1)^2 window of a 0/1 mask, zero past its edges (separable)."""
    h, w = mask.shape
    if r == 0:
        return mask.copy()
    rows = np.zeros((h, w), np.uint8)
    for i in range(h):
        last = -1  # the last column set so far in this row
        for j in range(w):
            if mask[i, j]:
                for k in range(max(last + 1, j - r), min(w, j + r + 1)):
                    rows[i, k] = 1
                last = min(w - 1, j + r)
    out = np.zeros((h, w), np.uint8)
    for i in range(h):
        for j in range(w):
            if rows[i, j]:
                for k in range(max(0, i - r), min(h, i + r + 1)):
                    out[k, j] = 1
    return out


def band_cells(
    coarse: np.ndarray, f: int, level: float, band: int, context: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int, int] | None, np.ndarray]:
    """Full-resolution coarse alpha (H,W) float32 -> (band (h,w) uint8, the rows and columns of
    the cells to compute, the net's window y0, y1, x0, x1 in cells (the band's box grown by
    ``context``, clipped to the grid) or None when the band is empty, and which cells of that
    window lie within ``context`` cells of the band: the only ones whose low-resolution inputs
    reach the band's coefficients). Uncertain: strictly between ``level`` and ``1 - level``,
    compared in float32 as torch does."""
    lo, hi = np.float32(level), np.float32(1.0 - level)
    grown, ys, xs, win, need = _band_cells(coarse, f, lo, hi, band, context)
    y0, y1, x0, x1 = (int(v) for v in win)
    return grown, ys, xs, (None if y1 == 0 else (y0, y1, x0, x1)), need


@njit(cache=True, nogil=True)
def down_window(
    frame: np.ndarray,
    coarse: np.ndarray,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    f: int,
    need: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows y0:y1, columns x0:x1 (multiples of ``f``) of an RGB uint8 frame (H,W,3) and of its
    coarse alpha (H,W) float32 -> the mean of each f x f block: (3,h,w) in [0, 1] and (h,w);
    only on the cells ``need`` (uint8 (h,w)) marks, zero elsewhere."""
    height, width = coarse.shape
    h, w = (y1 - y0) // f, (x1 - x0) // f
    image = np.zeros((3, h, w), np.float32)
    alpha = np.zeros((h, w), np.float32)
    scale = np.float32(1.0 / (255.0 * f * f))
    for i in range(h):
        for j in range(w):
            if not need[i, j]:
                continue
            s0 = 0
            s1 = 0
            s2 = 0
            a = 0.0
            bx = x0 + j * f
            if y0 + (i + 1) * f <= height and bx + f <= width:  # a whole cell: no clamping
                for y in range(y0 + i * f, y0 + (i + 1) * f):
                    for x in range(bx, bx + f):
                        s0 += frame[y, x, 0]
                        s1 += frame[y, x, 1]
                        s2 += frame[y, x, 2]
                        a += coarse[y, x]
            else:  # past the frame's edge its last row and column repeat
                for dy in range(f):
                    y = min(y0 + i * f + dy, height - 1)
                    for dx in range(f):
                        x = min(bx + dx, width - 1)
                        s0 += frame[y, x, 0]
                        s1 += frame[y, x, 1]
                        s2 += frame[y, x, 2]
                        a += coarse[y, x]
            image[0, i, j] = np.float32(s0) * scale
            image[1, i, j] = np.float32(s1) * scale
            image[2, i, j] = np.float32(s2) * scale
            alpha[i, j] = np.float32(a * (1.0 / (f * f)))
    return image, alpha


@njit(cache=True, nogil=True, fastmath=True)
def _apply_cells(
    target: np.ndarray,
    frame: np.ndarray,
    padded: np.ndarray,
    live: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    f: int,
    wt: np.ndarray,
) -> None:
    height, width = target.shape
    nc = padded.shape[0]
    half = f // 2  # pixels 0..half-1 of a cell lie before its centre: they blend the previous
    up = np.zeros((5, f), np.float32)  # one pixel row of a cell: its coefficients (G = 0 if absent)
    n = len(ys)
    start = 0
    # cells in row-major order (as band_cells lists them) are done a row of cells at a time,
    # one pixel row after the other (any order gives the same result)
    while start < n:
        cy = ys[start]
        stop = start
        while stop < n and ys[stop] == cy:
            stop += 1
        for py in range(min(f, height - cy * f)):
            y = cy * f + py
            a0, a1, a2 = wt[0, py], wt[1, py], wt[2, py]
            r = cy if py < half else cy + 1
            for k in range(start, stop):
                cx = xs[k]
                # padded row cy + i is the grid's row cy - 1 + i: the cell's 3x3 neighbourhood.
                # A pixel blends 2x2 of them; where all four are zero alpha stays the coarse one.
                mid = live[r, cx + 1] | live[r + 1, cx + 1]
                left = mid | live[r, cx] | live[r + 1, cx]
                right = mid | live[r, cx + 2] | live[r + 1, cx + 2]
                if not (left or right):
                    continue
                nx = min(f, width - cx * f)
                p0 = 0 if left else half
                p1 = nx if right else min(nx, half)
                for c in range(nc):
                    c0 = a0 * padded[c, cy, cx] + a1 * padded[c, cy + 1, cx]
                    c0 += a2 * padded[c, cy + 2, cx]
                    c1 = a0 * padded[c, cy, cx + 1] + a1 * padded[c, cy + 1, cx + 1]
                    c1 += a2 * padded[c, cy + 2, cx + 1]
                    c2 = a0 * padded[c, cy, cx + 2] + a1 * padded[c, cy + 1, cx + 2]
                    c2 += a2 * padded[c, cy + 2, cx + 2]
                    for px in range(f):
                        up[c, px] = wt[0, px] * c0 + wt[1, px] * c1 + wt[2, px] * c2
                x0 = cx * f
                t = target[y, x0 : x0 + nx]
                fr = frame[y, x0 : x0 + nx]
                for px in range(p0, p1):
                    co = t[px]
                    val = co + up[3, px] + up[4, px] * co
                    val += up[0, px] * np.float32(fr[px, 0])
                    val += up[1, px] * np.float32(fr[px, 1])
                    val += up[2, px] * np.float32(fr[px, 2])
                    t[px] = min(max(val, np.float32(0.0)), np.float32(1.0))
        start = stop


def apply_cells(
    target: np.ndarray,
    frame: np.ndarray,
    padded: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    f: int,
    live: np.ndarray,
) -> None:
    """target (H,W) float32 += the linear model with the coefficients ``padded`` (C,h+2,w+2)
    float32 (A on 8-bit values; the grid with its edge repeated: :func:`finish`) upsampled, on
    the cells (ys, xs); clamped to [0, 1], in place. ``live`` (h+2,w+2) uint8, padded alike,
    marks the cells whose coefficients may be nonzero (the band): pixels that blend only
    others are skipped (the model leaves them as they are)."""
    _apply_cells(target, frame, padded, live, ys, xs, f, taps(f))


@njit(cache=True, nogil=True)
def _window_sum(x: np.ndarray, r: int) -> np.ndarray:
    """Sum over columns j-r..j+r inside the grid, for each row of each channel of (C,h,w)."""
    nc, h, w = x.shape
    out = np.zeros((nc, h, w), np.float64)
    for c in range(nc):
        for i in range(h):
            acc = 0.0
            for j in range(min(r, w)):
                acc += x[c, i, j]
            for j in range(w):
                if j + r < w:
                    acc += x[c, i, j + r]
                if j - r - 1 >= 0:
                    acc -= x[c, i, j - r - 1]
                out[c, i, j] = acc
    return out


@njit(cache=True, nogil=True)
def _box_sum(x: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)^2 window inside the grid of each channel of (C,h,w), in float64:
    along the rows, then (transposed) along the columns."""
    rows = _window_sum(x, r)
    return _window_sum(rows.transpose(0, 2, 1), r).transpose(0, 2, 1)


@njit(cache=True, nogil=True)
def features(
    image: np.ndarray, alpha: np.ndarray, r: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The net's input for a (3,h,w) image and (h,w) coarse alpha at low resolution, as
    ``GuidedRefiner.coefficients`` builds it: (8,h,w) covariance and variance (scaled), the
    alpha and its local mean; and (4,h,w) the local means of the image and the alpha."""
    _, h, w = image.shape
    stack = np.empty((8, h, w), np.float64)  # x (3), y, x*y (3)... the last two rows reused
    sq = np.empty((3, h, w), np.float64)
    for c in range(3):
        for i in range(h):
            for j in range(w):
                v = np.float64(image[c, i, j])
                stack[c, i, j] = v
                stack[4 + c, i, j] = v * alpha[i, j]
                sq[c, i, j] = v * v
    for i in range(h):
        for j in range(w):
            stack[3, i, j] = alpha[i, j]
    stack[7] = 0.0
    sums = _box_sum(stack[:7], r)
    sq_sums = _box_sum(sq, r)
    feats = np.empty((8, h, w), np.float32)
    means = np.empty((4, h, w), np.float32)  # mean of x (3) and of y
    for i in range(h):
        ni = min(h - 1, i + r) - max(0, i - r) + 1
        for j in range(w):
            nj = min(w - 1, j + r) - max(0, j - r) + 1
            inv = 1.0 / (ni * nj)
            my = sums[3, i, j] * inv
            for c in range(3):
                mx = sums[c, i, j] * inv
                feats[c, i, j] = (sums[4 + c, i, j] * inv - mx * my) * scale
                feats[3 + c, i, j] = (sq_sums[c, i, j] * inv - mx * mx) * scale
                means[c, i, j] = mx
            feats[6, i, j] = alpha[i, j]
            feats[7, i, j] = my
            means[3, i, j] = my
    return feats, means


@njit(cache=True, nogil=True)
def _finish(
    out: np.ndarray, means: np.ndarray, band: np.ndarray, grid: np.ndarray, y0: int, x0: int
) -> None:
    nc, h, w = out.shape
    gain = nc == 5
    inv = np.float32(1.0 / 255.0)
    for i in range(h):
        for j in range(w):
            if not band[i, j]:
                continue
            b = out[3, i, j]
            for c in range(3):
                a = out[c, i, j]
                b -= a * means[c, i, j]
                grid[c, y0 + i, x0 + j] = a * inv
            if gain:
                g = out[4, i, j]
                b -= g * means[3, i, j]
                grid[4, y0 + i, x0 + j] = g
            grid[3, y0 + i, x0 + j] = b
    _repeat_edges(grid)


@njit(cache=True, nogil=True)
def _repeat_edges(x: np.ndarray) -> None:
    """Fill the outer ring of (C,h+2,w+2) with its neighbours inside (replicate padding)."""
    _, hp, wp = x.shape
    for c in range(x.shape[0]):
        for j in range(1, wp - 1):
            x[c, 0, j] = x[c, 1, j]
            x[c, hp - 1, j] = x[c, hp - 2, j]
        for i in range(hp):
            x[c, i, 0] = x[c, i, 1]
            x[c, i, wp - 1] = x[c, i, wp - 2]


def finish(
    out: np.ndarray, means: np.ndarray, band: np.ndarray, shape: tuple[int, int], y0: int, x0: int
) -> np.ndarray:
    """The net's output (C,h',w') on the window at rows y0.., columns x0.. of the grid ->
    the coefficients A (on 8-bit values), B, G on the band's cells, zero elsewhere, as the
    (C,h+2,w+2) grid of ``shape`` (h,w) with its edge repeated, as :func:`apply_cells` reads it."""
    grid = np.zeros((out.shape[0], shape[0] + 2, shape[1] + 2), np.float32)
    _finish(out, means, band, grid, y0 + 1, x0 + 1)
    return grid


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel now, not on the first frame
    (``sam2_matting.refiner.compiled_cpu`` calls it once per process)."""
    frame = np.zeros((16, 16, 3), np.uint8)
    coarse = np.full((16, 16), 0.5, np.float32)
    band, ys, xs, _, need = band_cells(coarse, 4, 0.02, 1, 2)
    image, alpha = down_window(frame, coarse, 0, 16, 0, 16, 4, need)
    _, means = features(image, alpha, 2, 10.0)
    for channels in (4, 5):
        grid = finish(np.zeros((channels, 4, 4), np.float32), means, band, (4, 4), 0, 0)
        apply_cells(coarse, frame, grid, ys, xs, 4, np.pad(band, 1, mode="edge"))
