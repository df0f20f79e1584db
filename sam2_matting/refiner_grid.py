"""The refiner's grid operations: box filters and dilation on the low-resolution grid, block
means of the frame, and the full-resolution linear model applied cell by cell.

The refiner (:mod:`sam2_matting.refiner`) works on cells of ``f x f`` pixels. Its coefficients
live on the cells; bilinear upsampling spreads each cell's coefficients over its own pixels and
half of each neighbour's, so a pixel depends on its cell's 3x3 neighbourhood only.
:func:`apply_cells` computes exactly that for a list of cells (gathered as ``f x f`` blocks, the
neighbourhoods upsampled by one ``9 x f*f`` matrix product, in chunks that stay in the CPU's
cache), which equals upsampling the whole grid and applying the model everywhere, where the
result can differ from the coarse alpha at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

_CHUNK_PIXELS = 65536  # full-resolution pixels computed at once


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window, over the cells inside the frame (separable sums of
    shifted copies: several times faster on a CPU than average pooling with these shapes)."""
    if r == 0:
        return x
    return _window_mean(_window_mean(x, r, -1), r, -2)


def _window_mean(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    count = _counts(x.shape[dim], r, x.device, x.dtype)
    return _shifted(x, r, dim, torch.add) * (count if dim == -1 else count[:, None])


def _shifted(x: torch.Tensor, r: int, dim: int, fold: Callable[..., torch.Tensor]) -> torch.Tensor:
    """``fold`` of the 2r+1 copies of ``x`` shifted along ``dim`` (-1 or -2), zero past the
    edges: the sum or max over a 1-D window."""
    n = x.shape[dim]
    p = F.pad(x, (r, r) if dim == -1 else (0, 0, r, r))
    acc = p.narrow(dim, 0, n)
    for k in range(1, 2 * r + 1):
        acc = fold(acc, p.narrow(dim, k, n))
    return acc


@functools.lru_cache(maxsize=64)
def _counts(n: int, r: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """1 / the number of the 2r+1 window's cells inside 0..n-1, for each position."""
    i = torch.arange(n)
    count = (i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1
    return (1.0 / count.double()).to(device, dtype)


def dilate(x: torch.Tensor, r: int) -> torch.Tensor:
    """Max over the (2r+1)^2 window (separable; shifted copies, as :func:`box_mean`)."""
    if r == 0:
        return x
    # zeros past the edges: the inputs are masks of 0 and 1
    return _shifted(_shifted(x, r, -1, torch.maximum), r, -2, torch.maximum)


def axis_weights(f: int) -> torch.Tensor:
    """(3, f) float64: the weight of the previous, own and next cell along one axis for each
    of a cell's ``f`` pixels under bilinear upsampling by ``f`` (align_corners=False)."""
    offset = (torch.arange(f, dtype=torch.float64) + 0.5) / f - 0.5  # in cells, in (-0.5, 0.5)
    before = offset < 0
    return torch.stack(
        [
            torch.where(before, -offset, 0.0),
            torch.where(before, 1.0 + offset, 1.0 - offset),
            torch.where(before, 0.0, offset),
        ]
    )


@functools.lru_cache(maxsize=16)
def _upsampling(f: int) -> torch.Tensor:
    """(9, f*f): the weights of a cell's 3x3 neighbourhood (row-major) for each of its f*f
    pixels under bilinear upsampling by ``f`` (align_corners=False), as F.interpolate."""
    w = axis_weights(f)
    return (w[:, None, :, None] * w[None, :, None, :]).reshape(9, f * f).float()


def _cell_view(x: torch.Tensor, f: int) -> torch.Tensor:
    """(H,W,...) -> a (H//f, f, W//f, f, ...) view of the whole cells (no copy)."""
    hf, wf = x.shape[0] // f, x.shape[1] // f
    s0, s1 = x.stride(0), x.stride(1)
    rest, rest_strides = tuple(x.shape[2:]), tuple(x.stride()[2:])
    return x.as_strided((hf, f, wf, f, *rest), (f * s0, s0, f * s1, s1, *rest_strides))


def _host_indexing(x: torch.Tensor) -> bool:
    """Index with NumPy (CPU tensors: its fancy indexing is several times faster than torch's
    here); on other devices torch's indexing does the same."""
    return x.device.type == "cpu"


def _gather(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, f: int) -> torch.Tensor:
    """The (f, f, ...) blocks of the whole cells (ys, xs) of x (H,W,...) -> (N, f, f, ...)."""
    view = _cell_view(x, f)
    if _host_indexing(x):
        return torch.from_numpy(view.numpy()[ys.numpy(), :, xs.numpy()])
    return view[ys, :, xs]


def _scatter(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, f: int, v: torch.Tensor) -> None:
    view = _cell_view(x, f)
    if _host_indexing(x):
        view.numpy()[ys.numpy(), :, xs.numpy()] = v.numpy()
    else:
        view[ys, :, xs] = v


def apply_cells(
    target: torch.Tensor,
    frame: torch.Tensor,
    grid: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    f: int,
) -> None:
    """target (H,W) += the linear model with the coefficients ``grid`` (C,h,w) upsampled, on
    the cells (ys, xs); clamped to [0, 1]. Cells cut by the frame's edge are computed as on
    the padded frame (replicated last row and column) and only their pixels in the frame kept."""
    height, width = target.shape
    c, w = grid.shape[0], grid.shape[2]
    padded = F.pad(grid[None], (1, 1, 1, 1), mode="replicate")[0].reshape(c, -1)
    # each cell's 3x3 neighbourhood in the padded grid, by flat index (one gather)
    offsets = torch.tensor([dy * (w + 2) + dx for dy in range(3) for dx in range(3)])
    offsets = offsets.to(ys.device)
    weights = _upsampling(f).to(grid.device)

    def upsampled(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # (C, N, f, f)
        at = ((y * (w + 2) + x)[:, None] + offsets).reshape(-1)
        return (padded.index_select(1, at).reshape(c * len(y), 9) @ weights).reshape(c, -1, f, f)

    whole = (ys < height // f) & (xs < width // f)
    edge = ~whole
    has_edge = bool(edge.any())
    ye, xe = ys[edge], xs[edge]
    if has_edge:
        ys, xs = ys[whole], xs[whole]
    # in chunks of about 64k pixels: the upsampled coefficients stay in the CPU's cache
    chunk = max(1, _CHUNK_PIXELS // (f * f))
    for start in range(0, len(ys), chunk):
        y, x = ys[start : start + chunk], xs[start : start + chunk]
        pix = _gather(frame, y, x, f).permute(3, 0, 1, 2).contiguous().float()  # (3, N, f, f)
        val = _linear_model(upsampled(y, x), _gather(target, y, x, f), pix)
        _scatter(target, y, x, f, val)
    if not has_edge:
        return
    ry = (ye[:, None] * f + torch.arange(f, device=ye.device))[:, :, None]  # (M, f, 1)
    rx = (xe[:, None] * f + torch.arange(f, device=xe.device))[:, None, :]  # (M, 1, f)
    inside = (ry < height) & (rx < width)
    ry, rx = ry.clamp(max=height - 1).expand_as(inside), rx.clamp(max=width - 1).expand_as(inside)
    pix = frame[ry, rx].permute(3, 0, 1, 2).float()
    val = _linear_model(upsampled(ye, xe), target[ry, rx], pix)
    target[ry[inside], rx[inside]] = val[inside]


def _linear_model(up: torch.Tensor, co: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
    """``clamp(co + (G) co + B + A . pix, 0, 1)`` for coefficients ``up`` (C, ...) (A on 8-bit
    values, B, and G when C is 5), the coarse alpha ``co`` (...) and the pixels ``pix`` (3, ...)."""
    val = co + up[3] if len(up) == 4 else torch.addcmul(co + up[3], up[4], co)
    for c in range(3):
        val.addcmul_(up[c], pix[c])
    return val.clamp_(0.0, 1.0)


def down_frame(frame: torch.Tensor, y0: int, y1: int, x0: int, x1: int, f: int) -> torch.Tensor:
    """Rows y0:y1, columns x0:x1 of an RGB uint8 (H,W,3) frame (multiples of ``f``; past the
    frame's edge its last row and column repeat) -> the mean of each f x f block, (1,3,h,w) in
    [0, 1], as :func:`block_mean` of the frame in [0, 1] (summed in integers: exact)."""
    height, width = frame.shape[:2]
    part = frame[y0 : min(y1, height), x0 : min(x1, width)]
    if y1 > height or x1 > width:
        ry = torch.arange(y0, y1, device=frame.device).clamp_(max=height - 1)
        rx = torch.arange(x0, x1, device=frame.device).clamp_(max=width - 1)
        part = frame[ry[:, None], rx[None, :]]
    h, w = (y1 - y0) // f, (x1 - x0) // f
    # rows first, then columns; 16-bit partial sums where f rows of 255 fit (much faster)
    kind = torch.int16 if 255 * f <= torch.iinfo(torch.int16).max else torch.int32
    rows = part.reshape(h, f, (x1 - x0) * 3).to(kind).sum(dim=1, dtype=kind)
    sums = rows.reshape(h, w, f, 3).sum(dim=2, dtype=torch.int32)
    return sums.permute(2, 0, 1)[None].float().mul_(1.0 / (255.0 * f * f))


def nonzero_box(mask: torch.Tensor, grow: int, h: int, w: int) -> tuple[int, int, int, int] | None:
    """Rows y0:y1 and columns x0:x1 holding every nonzero of ``mask``, grown by ``grow``."""
    rows = torch.nonzero(mask.any(dim=1))
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.any(dim=0))
    y0, y1 = max(0, int(rows[0]) - grow), min(h, int(rows[-1]) + 1 + grow)
    x0, x1 = max(0, int(cols[0]) - grow), min(w, int(cols[-1]) + 1 + grow)
    return y0, y1, x0, x1


def window(x: torch.Tensor, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    """Rows y0:y1, columns x0:x1 of a (C,H,W) tensor as (1,C,y1-y0,x1-x0), replicating the
    last row and column past the frame's edge (the padding to a multiple of the factor)."""
    height, width = x.shape[-2:]
    part = x[:, y0 : min(y1, height), x0 : min(x1, width)][None]
    ph, pw = y1 - min(y1, height), x1 - min(x1, width)
    if ph or pw:
        part = F.pad(part.float(), (0, pw, 0, ph), mode="replicate")
    return part


def block_mean(x: torch.Tensor, f: int) -> torch.Tensor:
    """Mean of each f x f block (H and W are multiples of f): rows first, then columns."""
    if f == 1:
        return x
    b, c, h, w = x.shape
    rows = x.reshape(b, c, h // f, f, w).sum(dim=3)
    return rows.reshape(b, c, h // f, w // f, f).sum(dim=4) * (1.0 / (f * f))


def upsample(x: torch.Tensor, f: int) -> torch.Tensor:
    if f == 1:
        return x
    return F.interpolate(x, scale_factor=float(f), mode="bilinear", align_corners=False)
