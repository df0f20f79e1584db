"""The training configuration: Hydra groups inside the package, composed with overrides.

    from sam2_matting.training.config import compose_train_config, save_config
    cfg = compose_train_config(["model=hiera_t", "data=synthetic", "optim.lr=1e-3"])
    save_config(cfg, "runs/x/config.yaml")

The configs live in ``sam2_matting/training/conf/``: ``train.yaml`` plus the groups
``model/`` (hiera_t, hiera_s, hiera_b_plus, hiera_l, custom), ``adapter/`` (matting,
attention_only), ``data/`` (videomatte, refmatte, synthetic) and ``optim/`` (adamw). Overrides
use Hydra's grammar (``group=option``, ``key=value``, ``+new_key=value``).

How Hydra is used inside a subcommand: ``import sam2`` initialises Hydra's *global* state with
sam2's own config module, and the model builder later composes sam2 configs through it. So
:func:`compose_train_config` saves that global state, clears it, composes our config with
``initialize_config_module``, and restores sam2's state afterwards, whatever happens. The rest
of the process never sees our config module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sam2_matting.errors import InvalidInputError

CONFIG_MODULE = "sam2_matting.training.conf"
CONFIG_NAME = "train"


class ConfigError(InvalidInputError):
    """A training config or override is invalid; the message names the key."""

    code = "BAD_CONFIG"


def compose_train_config(overrides: Sequence[str] = ()) -> Any:
    """The resolved training config (an OmegaConf ``DictConfig``) with ``overrides`` applied."""
    import sam2  # noqa: F401  (must own Hydra's global state before we borrow it)
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.2"):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        msg = " ".join(str(err).split())
        raise ConfigError(f"bad training config or override: {msg}") from err
    finally:
        restore_gh_from_backup(backup)
    return cfg


# (key, type, lowest allowed value or None, allowed values or None)
_SCALARS: tuple[tuple[str, type, float | None, tuple[str, ...] | None], ...] = (
    ("run.seed", int, None, None),
    ("run.steps", int, 1, None),
    ("run.checkpoint_every", int, 1, None),
    ("run.keep_checkpoints", int, 0, None),
    ("run.log_every", int, 1, None),
    ("run.precision", str, None, ("auto", "bf16", "bfloat16", "fp32", "float32")),
    ("optim.lr", float, 0, None),
    ("optim.weight_decay", float, 0, None),
    ("optim.warmup_steps", int, 0, None),
    ("optim.schedule", str, None, ("cosine", "constant")),
    ("optim.min_lr_ratio", float, 0, None),
    ("optim.grad_clip", float, 0, None),
    ("optim.accumulate", int, 1, None),
    ("data.frames", int, 1, None),
    ("data.stride", int, 1, None),
    ("data.batch_size", int, 1, None),
    ("data.workers", int, 0, None),
    ("loss.l1", float, 0, None),
    ("loss.gradient", float, 0, None),
    ("loss.laplacian", float, 0, None),
    ("loss.levels", int, 1, None),
)


def validate_train_config(cfg: Any) -> None:
    """Check the types and ranges of the scalar settings; ConfigError names the first bad one."""
    from omegaconf import OmegaConf

    for key, kind, lowest, allowed in _SCALARS:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            raise ConfigError(f"{key} is not set: add `{key}=...` to the command line")
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if isinstance(value, bool) and kind is not bool:
            ok = False
        if not ok:
            what = {float: "a number", int: "an integer"}.get(kind, "a string")
            raise ConfigError(f"{key} must be {what}, got {value!r}")
        if lowest is not None and value < lowest:
            raise ConfigError(f"{key} must be >= {lowest}, got {value!r}")
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    betas = OmegaConf.select(cfg, "optim.betas", default=None)
    if betas is None or len(betas) != 2 or not all(0 <= float(b) < 1 for b in betas):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {betas!r}")
    size = OmegaConf.select(cfg, "data.size", default=None)
    if size is None or len(size) != 2 or not all(isinstance(v, int) and v >= 8 for v in size):
        raise ConfigError(f"data.size must be [height, width], each >= 8, got {size!r}")


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (``???`` values stay visible as missing)."""
    from omegaconf import OmegaConf

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(OmegaConf.to_yaml(cfg))
    tmp.replace(out)
    return out


def load_saved_config(path: str | Path) -> Any:
    """Read back a config written by :func:`save_config`."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.load(Path(path))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err


def require(cfg: Any, key: str) -> Any:
    """``cfg[key]`` (dotted), or a ConfigError telling how to set a missing value."""
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except Exception as err:  # MissingMandatoryValue and interpolation errors
        raise ConfigError(f"{key} is not set: add `{key}=...` to the command line") from err
    if value is None:
        raise ConfigError(f"{key} is not set: add `{key}=...` to the command line")
    return value


def section(cfg: Any, key: str) -> dict[str, Any]:
    """A config section as a plain dict (for dataclass constructors)."""
    from omegaconf import OmegaConf

    node = require(cfg, key)
    data = OmegaConf.to_container(node, resolve=True)
    if not isinstance(data, dict):
        raise ConfigError(f"{key} must be a mapping")
    return {str(k): v for k, v in data.items()}


def build(cls: type, cfg: Any, key: str, drop: Sequence[str] = ()) -> Any:
    """``cls(**cfg[key])`` with tuple-ified lists and a ConfigError naming a bad field."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in section(cfg, key).items()}
    for name in drop:
        values.pop(name, None)
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{key}: {err}") from err
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from err
