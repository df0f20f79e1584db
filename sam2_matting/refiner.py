"""A trainable full-resolution refiner for SAM 2's mattes, in the manner of a deep guided filter.

    from sam2_matting.refiner import GuidedRefiner, RefinerConfig, save_refiner, load_refiner
    net = GuidedRefiner(RefinerConfig())             # 3,573 parameters, identity until trained
    alpha = net.refine(frame_rgb_uint8, coarse)      # coarse float (N, H, W) in [0, 1] -> same
    save_refiner(net, "runs/r/adapter")              # refiner.safetensors + adapter_config.json
    net = load_refiner("runs/r/adapter")             # None when the folder has no refiner

SAM 2's logits are a quarter of its 1024-px input, stretched to the video; one logit covers
about 7.5x4 pixels of a 1080p frame. The refiner looks at the image and the coarse alpha at a
low resolution (long side about ``low_side``, an integer factor ``f`` below the frame), where
a small conv net turns local guided-filter statistics (the covariance of image and alpha in a
``(2r+1)^2`` window, the image's variance, the coarse alpha and its local mean) into the
coefficients of a local linear model ``A`` (one per colour channel), an offset ``B`` and (with
``gain``) a gain ``G`` on the coarse alpha. Those are upsampled bilinearly to the frame and
applied at full resolution:

    alpha = clamp((1 + G) * coarse + sum_c A_c * I_c + B, 0, 1)

The last layer starts at zero, so an untrained refiner returns the coarse alpha exactly. The
coefficients are zero outside the *band*: low-resolution cells within ``band`` cells of a
coarse value strictly between ``soft_level`` and 1 - ``soft_level`` (0.02).
Confident foreground and background are left as SAM 2 gave them, and only what can change is
computed: the net on the box around the band, the full-resolution model on the band's cells
and their neighbours (:meth:`GuidedRefiner.refine`), so the cost follows the soft edge's
area rather than the frame's.

In an adapter folder the refiner is ``refiner.safetensors`` with its config as the ``refiner``
entry of ``adapter_config.json``; the folder may hold a LoRA adapter too (PEFT's files) or only
the refiner (then base SAM 2 runs with the refiner): see :func:`adapter_contents`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam2_matting.errors import CheckpointError
from sam2_matting.jsonfile import read_object
from sam2_matting.propagation import to_host
from sam2_matting.refiner_grid import (
    apply_cells,
    block_mean,
    box_mean,
    dilate,
    down_frame,
    nonzero_box,
    upsample,
    window,
)

# on a CPU, refine with the compiled kernels of sam2_matting.refiner_cpu (False: torch only)
COMPILED_CPU = True
_compiled_ok: bool | None = None  # whether they compiled in this process (None: not tried yet)
REFINER_WEIGHTS = "refiner.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT_VERSION = 1
_FLOAT_KEYS = ("feature_scale", "soft_level")
_FEATURES = 8  # cov(3) + var(3) + coarse(1) + local mean of coarse(1)


@dataclass(frozen=True)
class RefinerConfig:
    """The refiner's shape; stored in the adapter config, so a saved refiner rebuilds itself."""

    low_side: int = 256  # long side of the low-resolution grid (the factor is rounded)
    hidden: int = 16  # channels of the conv net
    radius: int = 2  # guided-filter window radius, in low-resolution cells
    band: int = 3  # cells around uncertain coarse values where the refiner may change alpha
    feature_scale: float = 10.0  # covariance and variance are small numbers: scale them up
    gain: int = 1  # 1: a fifth coefficient G scales the coarse alpha (sharpens its ramp); 0: no
    # a coarse value is uncertain (seeds the band) when it is more than this from 0 and from 1
    # (about 5/255; configs written before this setting existed load with 0.5/255, whatever
    # would not quantise to 0 or 255): chosen by benchmarks/bench_refiner.py --sharpness
    soft_level: float = 0.02

    def validate(self) -> RefinerConfig:
        if not (16 <= self.low_side <= 4096 and 1 <= self.hidden <= 256):
            raise CheckpointError("refiner config: low_side must be 16..4096, hidden 1..256")
        if not (0 <= self.radius <= 16 and 0 <= self.band <= 64):
            raise CheckpointError("refiner config: radius must be 0..16 and band 0..64")
        if not (math.isfinite(self.feature_scale) and self.feature_scale > 0):
            raise CheckpointError("refiner config: feature_scale must be a positive number")
        if not (math.isfinite(self.soft_level) and 0 < self.soft_level < 0.5):
            raise CheckpointError("refiner config: soft_level must be between 0 and 0.5")
        if self.gain not in (0, 1):
            raise CheckpointError("refiner config: gain must be 0 or 1")
        return self

    @property
    def channels(self) -> int:
        """Coefficients per cell: A (3), B and, with ``gain``, G."""
        return 5 if self.gain else 4

    @classmethod
    def from_dict(cls, data: Any) -> RefinerConfig:
        if not isinstance(data, dict):
            raise CheckpointError("the refiner entry of the adapter config is not an object")
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(known) - {"version", "weights"})
        if unknown:
            raise CheckpointError(f"refiner config has unknown keys: {', '.join(unknown)}")
        if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise CheckpointError(f"refiner format version {data.get('version')!r} is not known")
        values: dict[str, Any] = {}
        for name in known:
            if name in data:
                v = data[name]
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
                if not ok or (name not in _FLOAT_KEYS and not isinstance(v, int)):
                    raise CheckpointError(f"refiner config: {name} must be a number, got {v!r}")
                values[name] = v
        values.setdefault("gain", 0)  # written before the gain term existed
        values.setdefault("soft_level", 0.5 / 255)  # written before the soft level was set
        return cls(**values).validate()


def compiled_cpu() -> bool:
    """Whether the CPU path uses the compiled kernels: ``COMPILED_CPU`` and they compile here
    (the first call compiles them, or loads numba's cache; if numba cannot, a warning says so
    once and torch's operations do the same work)."""
    global _compiled_ok
    if not COMPILED_CPU:
        return False
    if _compiled_ok is None:
        try:
            from sam2_matting import refiner_cpu

            refiner_cpu.warm_up()
            _compiled_ok = True
        except Exception as err:  # numba missing, or unable to compile or cache on this host
            warnings.warn(
                f"the refiner's compiled CPU kernels are not available ({err}); "
                "it runs with torch's operations (slower, same result)",
                RuntimeWarning,
                stacklevel=2,
            )
            _compiled_ok = False
    return _compiled_ok


def scale_factor(height: int, width: int, low_side: int) -> int:
    """The integer factor between a frame and the refiner's low-resolution grid."""
    return max(1, round(max(height, width) / low_side))


class GuidedRefiner(torch.nn.Module):
    """Low-resolution coarse alpha and image in, full-resolution alpha out (see the module)."""

    def __init__(self, config: RefinerConfig | None = None) -> None:
        super().__init__()
        self.config = (config or RefinerConfig()).validate()
        h = self.config.hidden
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(_FEATURES, h, 3, padding=1, padding_mode="replicate"),
            torch.nn.ReLU(),
            torch.nn.Conv2d(h, h, 3, padding=1, padding_mode="replicate"),
            torch.nn.ReLU(),
            torch.nn.Conv2d(h, self.config.channels, 1),
        )
        last = self.net[-1]
        assert isinstance(last, torch.nn.Conv2d) and last.bias is not None
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def coefficients(
        self, image_lr: torch.Tensor, coarse_lr: torch.Tensor, band: torch.Tensor
    ) -> torch.Tensor:
        """(B,3,h,w) image and (B,1,h,w) coarse alpha at low res and the (B,1,h,w) band ->
        the coefficients (B,C,h,w): A (3 channels), B and, with ``gain``, G, zero outside the
        band. At full resolution ``alpha = (1 + G) * coarse + A . image + B``."""
        r, s = self.config.radius, self.config.feature_scale
        x, y = image_lr, coarse_lr
        means = box_mean(torch.cat([x, y, x * y, x * x], dim=1), r)  # one pass for the four
        mean_x, mean_y, mean_xy, mean_xx = means[:, :3], means[:, 3:4], means[:, 4:7], means[:, 7:]
        cov = mean_xy - mean_x * mean_y
        var = mean_xx - mean_x * mean_x
        feats = torch.cat([cov * s, var * s, coarse_lr, mean_y], dim=1)
        out = self.net(feats)
        a, d = out[:, :3], out[:, 3:4]
        b = d - (a * mean_x).sum(dim=1, keepdim=True)  # centred: A and G act on deviations
        if self.config.gain:
            g = out[:, 4:5]
            return torch.cat([a, b - g * mean_y, g], dim=1) * band
        return torch.cat([a, b], dim=1) * band

    def band(self, coarse: torch.Tensor, factor: int) -> torch.Tensor:
        """(B,1,H,W) full-resolution coarse alpha -> (B,1,h,w): 1 on the cells within
        ``band`` cells of a cell whose sample (the pixel ``factor // 2`` into it, clamped to
        the frame) is uncertain, else 0."""
        height, width = coarse.shape[-2:]
        f, c = factor, factor // 2
        sample = coarse[..., c::f, c::f]  # a view; a cut last cell samples the last pixel
        if sample.shape[-2] < -(-height // f):
            sample = torch.cat([sample, coarse[..., height - 1 :, c::f]], dim=-2)
        if sample.shape[-1] < -(-width // f):
            last = coarse[..., c::f, width - 1 :]
            if last.shape[-2] < sample.shape[-2]:
                last = torch.cat([last, coarse[..., height - 1 :, width - 1 :]], dim=-2)
            sample = torch.cat([sample, last], dim=-1)
        level = self.config.soft_level
        soft = ((sample > level) & (sample < 1 - level)).to(torch.float32)
        return dilate(soft, self.config.band)

    def forward(self, image: torch.Tensor, coarse: torch.Tensor, factor: int) -> torch.Tensor:
        """Differentiable: (B,3,H,W) image in [0,1], (B,1,H,W) coarse -> (B,1,H,W) alpha.

        H and W must be multiples of ``factor`` (training crops are; :meth:`refine` pads).
        """
        band = self.band(coarse, factor)
        up = upsample(
            self.coefficients(block_mean(image, factor), block_mean(coarse, factor), band), factor
        )
        alpha = coarse + (up[:, :3] * image).sum(dim=1, keepdim=True) + up[:, 3:4]
        if self.config.gain:
            alpha = alpha + up[:, 4:5] * coarse
        return alpha.clamp(0.0, 1.0)

    @torch.inference_mode()
    def refine(
        self, frame: np.ndarray | torch.Tensor, coarse: torch.Tensor, *, inplace: bool = False
    ) -> torch.Tensor:
        """Inference on one frame: RGB uint8 (H,W,3) and coarse float (N,H,W) -> float (N,H,W).

        Equal to :meth:`forward` on the frame (padded to a multiple of the factor by
        replicating its last row and column), but only where the result can differ from the
        coarse alpha: the low-resolution net runs on the box around the band (with the margin
        its receptive field needs), and the full-resolution linear model only on the cells of
        the band and the cells next to them (bilinear upsampling reaches one cell out).
        Elsewhere the coarse alpha is returned as it is. ``inplace`` writes into ``coarse``
        (a float32 tensor on the refiner's device) instead of a copy.
        """
        dev = self.device
        n, height, width = coarse.shape
        f = scale_factor(height, width, self.config.low_side)
        with warnings.catch_warnings():  # decoded frames are read-only; nothing writes them
            warnings.filterwarnings("ignore", message=".*not writable", category=UserWarning)
            frame_t = torch.as_tensor(frame)
        if tuple(frame_t.shape) != (height, width, 3):
            raise ValueError(f"frame {tuple(frame_t.shape)} does not fit alpha {height}x{width}")
        if frame_t.dtype != torch.uint8:
            raise ValueError(f"frame must be uint8 RGB, got {frame_t.dtype}")
        frame_t = frame_t.to(dev).contiguous()
        out = coarse.to(dev, torch.float32)
        if out is coarse and not inplace:
            out = out.clone()
        if not out.is_contiguous():
            out = out.contiguous()  # a copy: the result is the return value
        if dev.type == "cpu" and compiled_cpu():
            self._refine_compiled(frame_t.numpy(), out.numpy(), f)
            return out
        band = self.band(out[:, None], f)
        cells = dilate(band, 1)  # cells whose upsampled coefficients can be nonzero
        h, w = band.shape[-2:]
        context = self.config.radius + 2  # box filter + two 3x3 convolutions
        for i in range(n):
            box = nonzero_box(band[i, 0], 0, h, w)
            if box is None:
                continue
            y0, y1, x0, x1 = box
            cy0, cy1 = max(0, y0 - context), min(h, y1 + context)
            cx0, cx1 = max(0, x0 - context), min(w, x1 + context)
            win = (cy0 * f, cy1 * f, cx0 * f, cx1 * f)
            image_lr = down_frame(frame_t, *win, f)
            alpha_lr = block_mean(window(out[i : i + 1], *win), f)
            coef = self.coefficients(image_lr, alpha_lr, band[i : i + 1, :, cy0:cy1, cx0:cx1])
            grid = torch.zeros((self.config.channels, h, w), device=dev)
            grid[:, cy0:cy1, cx0:cx1] = coef[0]
            grid[:3, cy0:cy1, cx0:cx1] *= 1.0 / 255.0  # A acts on 8-bit values here
            ys, xs = torch.nonzero(cells[i, 0], as_tuple=True)
            apply_cells(out[i], frame_t, grid, ys, xs, f)
        return out

    def _refine_compiled(self, frame: np.ndarray, out: np.ndarray, f: int) -> None:
        """:meth:`refine`'s steps on the CPU with the compiled kernels of
        :mod:`sam2_matting.refiner_cpu` (the net itself stays torch's); ``out`` in place."""
        from sam2_matting import refiner_cpu

        context = self.config.radius + 2
        for co in out:
            band, ys, xs, win, need = refiner_cpu.band_cells(
                co, f, self.config.soft_level, self.config.band, context
            )
            if win is None:
                continue
            cy0, cy1, cx0, cx1 = win
            image_lr, alpha_lr = refiner_cpu.down_window(
                frame, co, cy0 * f, cy1 * f, cx0 * f, cx1 * f, f, need
            )
            feats, means = refiner_cpu.features(
                image_lr, alpha_lr, self.config.radius, self.config.feature_scale
            )
            raw = self.net(torch.from_numpy(feats)[None])[0].numpy()
            grid = refiner_cpu.finish(raw, means, band[cy0:cy1, cx0:cx1], band.shape, cy0, cx0)
            live = np.pad(band, 1, mode="edge")
            refiner_cpu.apply_cells(co, frame, grid, ys, xs, f, live)


def parameter_count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# -- the adapter folder ----------------------------------------------------------------------


def _read_config(folder: Path) -> dict[str, Any] | None:
    file = folder / ADAPTER_CONFIG
    if not file.is_file():
        return None
    return read_object(file, CheckpointError)


def adapter_contents(adapter_dir: str | Path) -> tuple[bool, bool]:
    """(has a LoRA adapter, has a refiner) of an adapter folder; refuses a folder with neither."""
    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise CheckpointError(f"adapter folder not found: {folder}")
    cfg = _read_config(folder)
    if cfg is None:
        raise CheckpointError(f"{folder} has no {ADAPTER_CONFIG}")
    lora = cfg.get("peft_type") is not None
    refiner = "refiner" in cfg
    if not (lora or refiner):
        raise CheckpointError(
            f"{folder / ADAPTER_CONFIG} holds neither a LoRA adapter nor a refiner"
        )
    return lora, refiner


def save_refiner(net: GuidedRefiner, adapter_dir: str | Path) -> Path:
    """Write ``refiner.safetensors`` and add the ``refiner`` entry to ``adapter_config.json``
    (created if the folder has none: a refiner-only adapter)."""
    from safetensors.torch import save_file

    folder = Path(adapter_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    part = folder / (REFINER_WEIGHTS + ".part")
    save_file(tensors, str(part), metadata={"format": "sam2-matting-refiner"})
    part.replace(folder / REFINER_WEIGHTS)
    cfg = _read_config(folder) or {}
    cfg["refiner"] = {"version": FORMAT_VERSION, "weights": REFINER_WEIGHTS, **asdict(net.config)}
    tmp = folder / (ADAPTER_CONFIG + ".part")
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tmp.replace(folder / ADAPTER_CONFIG)
    return folder


def load_refiner(
    adapter_dir: str | Path, device: str | torch.device = "cpu"
) -> GuidedRefiner | None:
    """The refiner saved in an adapter folder (``None`` if it has none), in eval mode."""
    from safetensors.torch import load_file

    folder = Path(adapter_dir)
    cfg = _read_config(folder)
    if cfg is None or "refiner" not in cfg:
        return None
    entry = cfg["refiner"]
    config = RefinerConfig.from_dict(entry)
    name = entry.get("weights", REFINER_WEIGHTS)
    if not isinstance(name, str) or Path(name).name != name:
        raise CheckpointError(f"refiner weights must be a file name in {folder}, got {name!r}")
    file = folder / name
    if not file.is_file():
        raise CheckpointError(f"{folder / ADAPTER_CONFIG} names a refiner but {file} is missing")
    try:
        tensors = load_file(str(file))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{file} is not a valid safetensors file: {err}") from err
    net = GuidedRefiner(config)
    expected = net.state_dict()
    if set(tensors) != set(expected) or any(
        tensors[k].shape != expected[k].shape for k in expected
    ):
        raise CheckpointError(f"{file} does not fit the refiner config in {ADAPTER_CONFIG}")
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
        raise CheckpointError(f"{file} holds non-finite weights")
    net.load_state_dict({k: v.float() for k, v in tensors.items()})
    net = net.to(device).eval()
    if net.device.type == "cpu":
        compiled_cpu()  # compile now, not on the first frame a user waits for
    return net


def refine_frames(net: GuidedRefiner, frames: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """A clip at once: RGB uint8 (T,H,W,3) and coarse float (T,H,W) -> float32 (T,H,W)."""
    out = np.empty(np.shape(coarse), np.float32)
    for t in range(len(frames)):
        out[t] = (
            net.refine(frames[t], torch.from_numpy(np.asarray(coarse[t], np.float32)[None]))[0]
            .cpu()
            .numpy()
        )
    return out


# -- what a session calls --------------------------------------------------------------------


def refined_alphas(
    refiner: GuidedRefiner, frame_rgb: np.ndarray, masks: torch.Tensor, keep_float: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """SAM 2's video-resolution logits (N,1,H,W) of one frame and its full-resolution RGB frame
    -> refined uint8 alphas (N,H,W) and, with ``keep_float``, the refined float alphas. Runs on
    the refiner's device; only the results cross to the host."""
    coarse = torch.sigmoid(masks.float()[:, 0])
    refined = refiner.refine(frame_rgb, coarse.to(refiner.device), inplace=True)
    alphas = to_host((refined * 255.0).round_().to(torch.uint8))
    return alphas, (to_host(refined) if keep_float else None)
