"""Training the full-resolution refiner (:mod:`sam2_matting.refiner`) on known-truth clips.

    from sam2_matting.training.refiner_train import RefinerTrainConfig, RefinerTrainer
    cfg = RefinerTrainConfig(out_dir="runs/refiner", steps=400)
    adapter_dir = RefinerTrainer(cfg).fit()     # runs/refiner/adapter: refiner (+ LoRA if any)

The refiner learns to turn SAM 2's coarse matte into the true one. Its inputs are what a
session has: the frame and the coarse alpha at the video's resolution. By default the clips are
:func:`~sam2_matting.metrics.known_truth.truth_clips` of the ``train`` split (real footage under
a known matte, the coarse matte simulated the way SAM 2's output reaches us); ``data=DIR``
reads a folder of SAM 2's real output on VideoMatte240K composites instead
(:mod:`~sam2_matting.training.refiner_data`, ``sam2-matting refiner-data``). No SAM 2 model
runs here, so a run takes minutes on a CPU. Each step draws ``batch`` crops of ``crop`` pixels
centred on pixels where the coarse or the true matte is soft (elsewhere the refiner is
inactive by design), aligned to the refiner's factor for the clip's size, so a crop sees the
low-resolution grid the whole frame would. The loss is L1 + gradient (+ Laplacian) of alpha.

Every crop is a function of (``seed``, step, position in the batch), so ``resume=True``
continues from the newest checkpoint (weights, optimiser, step) exactly as if never stopped.
``init_from`` names a LoRA adapter folder whose files are copied into the output: the result
is one adapter folder with both (train the LoRA first, then the refiner on top).
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam2_matting.errors import CheckpointError, InvalidInputError
from sam2_matting.metrics.known_truth import resharpen, truth_clips
from sam2_matting.refiner import (
    ADAPTER_CONFIG,
    REFINER_WEIGHTS,
    GuidedRefiner,
    RefinerConfig,
    load_refiner,
    save_refiner,
    scale_factor,
)
from sam2_matting.training.losses import LossWeights, matting_loss

STATE_FILE = "trainer_state.pt"


@dataclass
class RefinerTrainConfig:
    """Everything a refiner run depends on (``key=value`` overrides on the command line)."""

    out_dir: str = "runs/refiner"
    steps: int = 20000
    batch: int = 8
    crop: int = 128  # pixels (rounded down to a multiple of the refiner's factor)
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    data: str = ""  # a refiner data folder (sam2-matting refiner-data); "": known-truth clips
    clips: int = 18  # training clips of the known-truth train split
    frames: int = 8
    height: int = 720
    width: int = 1280
    # "HxW" each: clip i is built at sizes[i % len(sizes)] and each step's crops come from one
    # size in turn (the refiner sees the grids of several resolutions); empty: height x width
    sizes: list[str] = field(default_factory=lambda: ["720x1280", "1080x1920"])
    sources: list[str] = field(default_factory=list)  # footage folders (default: shared, gallery)
    # augmentation of the coarse input, as SAM 2's real output varies: its logits scaled by
    # 2**u, u uniform in [-sharpness, sharpness] (0: off), and shifted against the frame by up
    # to ``shift`` pixels each way (a tracking error; 0: off)
    sharpness: float = 0.0
    shift: int = 0
    l1: float = 1.0
    gradient: float = 2.0
    laplacian: float = 0.0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    resume: bool = False
    init_from: str = ""  # a LoRA adapter folder to carry into the output
    low_side: int = RefinerConfig.low_side
    hidden: int = RefinerConfig.hidden
    radius: int = RefinerConfig.radius
    band: int = RefinerConfig.band
    gain: int = RefinerConfig.gain
    soft_level: float = RefinerConfig.soft_level

    def refiner_config(self) -> RefinerConfig:
        try:
            return RefinerConfig(
                low_side=self.low_side,
                hidden=self.hidden,
                radius=self.radius,
                band=self.band,
                gain=self.gain,
                soft_level=self.soft_level,
            ).validate()
        except CheckpointError as err:
            raise InvalidInputError(str(err)) from None

    def validate(self) -> RefinerTrainConfig:
        for name in ("steps", "batch", "clips", "frames", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"refiner training: {name} must be at least 1")
        if self.crop < 16 or self.height < 16 or self.width < 16:
            raise InvalidInputError("refiner training: crop, height and width must be >= 16")
        self.train_sizes()
        if not self.lr > 0:
            raise InvalidInputError("refiner training: lr must be positive")
        if not (0 <= self.sharpness <= 3 and 0 <= self.shift <= 64):
            raise InvalidInputError("refiner training: sharpness must be 0..3 and shift 0..64")
        self.refiner_config()
        return self

    def train_sizes(self) -> list[tuple[int, int]]:
        if not self.sizes:
            return [(self.height, self.width)]
        out = []
        for item in self.sizes:
            h, sep, w = item.lower().partition("x")
            if not (sep and h.isdigit() and w.isdigit() and int(h) >= 16 and int(w) >= 16):
                raise InvalidInputError(f"refiner training: sizes entry {item!r} is not HxW >= 16")
            out.append((int(h), int(w)))
        return out


def parse_overrides(overrides: Sequence[str]) -> RefinerTrainConfig:
    """``["steps=200", "out_dir=runs/r"]`` -> a config; an unknown key or bad value is refused."""
    types = {f.name: f.type for f in fields(RefinerTrainConfig)}
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().removeprefix("refiner.")
        if not sep or key not in types:
            known = ", ".join(sorted(types))
            raise InvalidInputError(f"unknown refiner training setting {item!r} (known: {known})")
        kind = str(types[key])
        try:
            if kind == "int":
                values[key] = int(raw)
            elif kind == "float":
                values[key] = float(raw)
            elif kind == "bool":
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                values[key] = raw.lower() in ("true", "1")
            elif kind.startswith("list"):
                values[key] = [s for s in raw.split(",") if s]
            else:
                values[key] = raw
        except ValueError:
            raise InvalidInputError(f"refiner training setting {key}: bad value {raw!r}") from None
    return RefinerTrainConfig(**values).validate()


@dataclass
class TrainingData:
    """The clips in memory: frames uint8 (T,H,W,3), coarse and true alpha (T,H,W) float32 in
    [0, 1] or uint16 (``value / 65535``, as a refiner data folder stores them). Clips may
    differ in T and in (H, W): ``by_size`` groups them, each step crops from one group."""

    frames: list[np.ndarray]
    coarse: list[np.ndarray]
    alpha: list[np.ndarray]
    names: list[str]
    # (clip, frame, row, col) of every pixel a crop may centre on, per clip (subsampled)
    centres: list[np.ndarray] = field(default_factory=list)
    # (H, W) -> the clips of that size, in order of size
    by_size: list[tuple[tuple[int, int], list[int]]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if not self.frames:
            raise InvalidInputError("refiner training: no training clips")
        sizes = sorted({tuple(c.shape[1:3]) for c in self.coarse})
        self.by_size = [
            ((int(s[0]), int(s[1])), [k for k, c in enumerate(self.coarse) if c.shape[1:3] == s])
            for s in sizes
        ]
        if not self.centres:
            self.centres = [
                _soft_pixels(c, a) for c, a in zip(self.coarse, self.alpha, strict=True)
            ]


def unit_float(x: np.ndarray) -> np.ndarray:
    """An alpha array as float32 in [0, 1]: uint16 is divided by 65535, float kept."""
    if x.dtype == np.uint16:
        return x.astype(np.float32) / np.float32(65535.0)
    return x


def _soft_pixels(coarse: np.ndarray, alpha: np.ndarray, step: int = 4) -> np.ndarray:
    coarse, alpha = unit_float(coarse), unit_float(alpha)
    soft = ((coarse > 0.5 / 255) & (coarse < 1 - 0.5 / 255)) | ((alpha > 0) & (alpha < 1))
    idx = np.argwhere(soft[:, ::step, ::step]) * np.array([1, step, step])
    if len(idx) == 0:  # nothing soft: centre anywhere
        t, h, w = coarse.shape
        idx = np.array([[t // 2, h // 2, w // 2]])
    return idx


def load_truth_data(cfg: RefinerTrainConfig) -> TrainingData:
    frames, coarse, alpha, names = [], [], [], []
    sizes = cfg.train_sizes()
    for k, size in enumerate(sizes):
        for clip in truth_clips(
            "train",
            size=size,
            frames=cfg.frames,
            seed=cfg.seed,
            indices=range(k, cfg.clips, len(sizes)),
            sources=cfg.sources or None,
        ):
            frames.append(clip.frames)
            coarse.append(clip.coarse)
            alpha.append(clip.alpha)
            names.append(f"{clip.name}@{size[0]}x{size[1]}")
    return TrainingData(frames, coarse, alpha, names)


def load_folder_data(folder: str) -> TrainingData:
    """The clips of a complete refiner data folder (``sam2-matting refiner-data``)."""
    from sam2_matting.training.refiner_folder import read_refiner_data

    clips = read_refiner_data(folder)
    return TrainingData(clips.frames, clips.coarse, clips.alpha, clips.names)


def sample_batch(
    data: TrainingData, step: int, cfg: RefinerTrainConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The crops of ``step``: image (B,3,c,c) in [0,1], coarse and truth (B,1,c,c), factor."""
    (height, width), pool = data.by_size[step % len(data.by_size)]  # one size per step
    f = scale_factor(height, width, cfg.low_side)
    c = max(f, cfg.crop // f * f)
    c = min(c, height // f * f, width // f * f)
    images, coarse, truth = [], [], []
    for i in range(cfg.batch):
        rng = np.random.default_rng([cfg.seed, step, i])
        k = pool[int(rng.integers(len(pool)))]
        centres = data.centres[k]
        t, y, x = (int(v) for v in centres[int(rng.integers(len(centres)))])
        jitter = rng.integers(-c // 4, c // 4 + 1, size=2)
        y0 = int(np.clip(y + jitter[0] - c // 2, 0, height - c)) // f * f
        x0 = int(np.clip(x + jitter[1] - c // 2, 0, width - c)) // f * f
        sl = (t, slice(y0, y0 + c), slice(x0, x0 + c))
        img = data.frames[k][sl]
        co, al = unit_float(data.coarse[k][sl]), unit_float(data.alpha[k][sl])
        flip = rng.random() < 0.5  # horizontal (the grid stays aligned: c is a multiple of f)
        if cfg.shift:  # drawn after the crop and the flip: augmenting leaves those as they were
            dy, dx = (int(v) for v in rng.integers(-cfg.shift, cfg.shift + 1, size=2))
            ys, xs = int(np.clip(y0 + dy, 0, height - c)), int(np.clip(x0 + dx, 0, width - c))
            co = unit_float(data.coarse[k][t, ys : ys + c, xs : xs + c])
        if cfg.sharpness:
            co = resharpen(co, float(2.0 ** rng.uniform(-cfg.sharpness, cfg.sharpness)))
        if flip:
            img, co, al = img[:, ::-1], co[:, ::-1], al[:, ::-1]
        images.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
        coarse.append(torch.from_numpy(np.ascontiguousarray(co))[None])
        truth.append(torch.from_numpy(np.ascontiguousarray(al))[None])
    image = torch.stack(images).float() / 255.0
    return image, torch.stack(coarse), torch.stack(truth), f


class RefinerTrainer:
    """Trains a :class:`GuidedRefiner`; :meth:`fit` writes ``out_dir/adapter``."""

    def __init__(self, cfg: RefinerTrainConfig, data: TrainingData | None = None) -> None:
        self.cfg = cfg.validate()
        self.run_dir = Path(cfg.out_dir)
        if cfg.init_from:
            from sam2_matting.lora import check_adapter_dir

            check_adapter_dir(cfg.init_from)  # fail before the (slow) data build
        torch.manual_seed(cfg.seed)
        self.net = GuidedRefiner(cfg.refiner_config())
        self.net.train()
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.weights = LossWeights(l1=cfg.l1, gradient=cfg.gradient, laplacian=cfg.laplacian)
        self.step = 0
        if cfg.resume:
            self._resume()
        if data is None:
            data = load_folder_data(cfg.data) if cfg.data else load_truth_data(cfg)
        self.data = data

    def lr_at(self, step: int) -> float:
        """Cosine from ``lr`` to a tenth of it over the run."""
        progress = min(1.0, step / max(1, self.cfg.steps))
        return float(self.cfg.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress))))

    def train_step(self) -> dict[str, float]:
        image, coarse, truth, f = sample_batch(self.data, self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        pred = self.net(image, coarse, f)
        loss, parts = matting_loss(pred[:, 0], truth[:, 0], self.weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        with torch.no_grad():
            base = (coarse - truth).abs().mean()
        parts_f = {k: float(v) for k, v in parts.items()}
        return {"loss": float(loss.detach()), **parts_f, "coarse_l1": float(base)}

    def loss_on(self, step: int) -> float:
        """The loss on the crops of ``step`` (no update)."""
        image, coarse, truth, f = sample_batch(self.data, step, self.cfg)
        with torch.no_grad():
            return float(
                matting_loss(self.net(image, coarse, f)[:, 0], truth[:, 0], self.weights)[0]
            )

    # -- checkpoints ---------------------------------------------------------------------------
    def _checkpoints(self) -> list[Path]:
        root = self.run_dir / "checkpoints"
        if not root.is_dir():
            return []
        found = [p for p in root.glob("step_*") if (p / STATE_FILE).is_file() and p.is_dir()]
        return sorted(found, key=lambda p: p.name)

    def save_checkpoint(self) -> Path:
        final = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        part = final.with_name(final.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        save_refiner(self.net, part)
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "config": asdict(self.cfg),
        }
        torch.save(state, part / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        part.rename(final)
        if self.cfg.keep_checkpoints > 0:
            for old in self._checkpoints()[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def _resume(self) -> None:
        found = self._checkpoints()
        if not found:
            raise InvalidInputError(f"resume=true but {self.run_dir}/checkpoints has no checkpoint")
        path = found[-1]
        try:
            state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a corrupt file
            raise CheckpointError(f"cannot read {path / STATE_FILE}: {str(err)[:200]}") from err
        if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
            raise CheckpointError(f"{path / STATE_FILE} is not a refiner trainer state")
        net = load_refiner(path)
        if net is None or net.config != self.net.config:
            raise CheckpointError(f"{path} holds a refiner of another shape than this config")
        self.net.load_state_dict(net.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])

    def fit(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.run_dir / "metrics.csv"
        new_log = not (self.cfg.resume and log_file.is_file())
        with open(log_file, "w" if new_log else "a", newline="") as fh:
            writer = csv.writer(fh)
            if new_log:
                writer.writerow(["step", "loss", "l1", "gradient", "coarse_l1", "lr", "step_s"])
            while self.step < self.cfg.steps:
                t0 = time.perf_counter()
                lr = self.lr_at(self.step)
                r = self.train_step()
                writer.writerow(
                    [self.step, f"{r['loss']:.6f}", f"{r.get('l1', 0):.6f}",
                     f"{r.get('gradient', 0):.6f}", f"{r['coarse_l1']:.6f}", f"{lr:.6g}",
                     f"{time.perf_counter() - t0:.4f}"]
                )  # fmt: skip
                if self.step % self.cfg.checkpoint_every == 0 and self.step < self.cfg.steps:
                    fh.flush()
                    self.save_checkpoint()
            self.save_checkpoint()
        return self.write_adapter(self.run_dir / "adapter")

    def write_adapter(self, out: Path) -> Path:
        """``out`` with the trained refiner and, with ``init_from``, that LoRA adapter's files."""
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        if self.cfg.init_from:
            src = Path(self.cfg.init_from)
            for entry in src.iterdir():
                if entry.is_file() and entry.name != REFINER_WEIGHTS:
                    shutil.copy2(entry, out / entry.name)
            cfg_file = out / ADAPTER_CONFIG
            if cfg_file.is_file():  # an old refiner entry would name the wrong weights
                import json

                data = json.loads(cfg_file.read_text())
                data.pop("refiner", None)
                cfg_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        self.net.eval()
        return save_refiner(self.net, out)
