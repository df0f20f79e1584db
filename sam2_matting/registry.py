"""The official SAM 2.1 checkpoints: names, Hydra configs, files and download URLs.

    from sam2_matting.registry import MODELS, get_model_spec, checkpoint_path
    spec = get_model_spec("tiny")          # also "t", "hiera_t", "sam2.1_hiera_tiny", ...
    spec.config                            # "configs/sam2.1/sam2.1_hiera_t.yaml" (inside sam2)
    path = checkpoint_path(spec)           # $SAM2_MATTING_CHECKPOINTS or ./checkpoints, + file
    path = resolve_checkpoint("large", None, "/models")   # the file to load, or a CheckpointError

:data:`MODELS` maps the four canonical names (``tiny``, ``small``, ``base_plus``, ``large``) to a
frozen :class:`ModelSpec`. ``spec.config`` is a config name as ``sam2.build_sam`` and Hydra's
``compose`` take it, relative to the installed ``sam2`` package (see :func:`package_config_file`).
Official SHA-256 digests are not published by Meta, so ``sha256`` is ``None``; the downloader
records the digest of the first download in ``checksums.json`` and checks it from then on.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from sam2_matting.errors import CheckpointError, NotFoundError

#: Environment variable naming the checkpoint folder (default: ``./checkpoints``).
CHECKPOINTS_ENV = "SAM2_MATTING_CHECKPOINTS"
#: The model size the commands and the service load unless told otherwise.
DEFAULT_MODEL = "large"

_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


@dataclass(frozen=True)
class ModelSpec:
    """One official SAM 2.1 model size.

    ``name``: canonical size name; ``config``: Hydra config name inside the ``sam2`` package;
    ``checkpoint_file``: file name of the weights; ``url``: official download URL; ``sha256``:
    lower-case hex digest when known (``None``: not published, see ``checksums.json``);
    ``params_millions``: parameter count from the SAM 2.1 model card (informational).
    """

    name: str
    config: str
    checkpoint_file: str
    url: str
    sha256: str | None = None
    params_millions: float | None = None


def _spec(name: str, short: str, params: float) -> ModelSpec:
    file = f"sam2.1_hiera_{name}.pt"
    return ModelSpec(
        name=name,
        config=f"configs/sam2.1/sam2.1_hiera_{short}.yaml",
        checkpoint_file=file,
        url=_BASE_URL + file,
        sha256=None,
        params_millions=params,
    )


#: Canonical name -> spec, smallest first. Read-only.
MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "tiny": _spec("tiny", "t", 38.9),
        "small": _spec("small", "s", 46.0),
        "base_plus": _spec("base_plus", "b+", 80.8),
        "large": _spec("large", "l", 224.4),
    }
)

_SHORT = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
_EXTRA_ALIASES = {"base_plus": ("base+", "baseplus", "base", "b")}


def _build_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for name, short in _SHORT.items():
        names = (
            name,
            short,
            f"hiera_{short}",
            f"hiera_{name}",
            f"sam2.1_hiera_{short}",
            f"sam2.1_hiera_{name}",
            f"sam2.1_hiera_{name}.pt",
            *_EXTRA_ALIASES.get(name, ()),
        )
        for alias in names:
            aliases[alias] = name
    return aliases


#: Accepted spelling (lower case, ``-`` written as ``_``) -> canonical name.
ALIASES: Mapping[str, str] = MappingProxyType(_build_aliases())


def get_model_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` for a size name or alias (case-insensitive).

    ``get_model_spec("tiny")``, ``get_model_spec("hiera_t")``, ``get_model_spec("b+")`` and
    ``get_model_spec("Base-Plus")`` all work. An unknown name raises
    :class:`~sam2_matting.errors.NotFoundError` listing the valid names.
    """
    key = str(name).strip().lower().replace("-", "_")
    canonical = ALIASES.get(key)
    if canonical is None:
        raise NotFoundError(
            f"unknown model {name!r}; valid models: {', '.join(MODELS)} "
            "(aliases such as t, s, b+, l, hiera_t are accepted)"
        )
    return MODELS[canonical]


def default_checkpoint_dir() -> Path:
    """The checkpoint folder: ``$SAM2_MATTING_CHECKPOINTS`` if set and non-empty, else
    ``checkpoints/`` in the current directory. The folder is not created."""
    env = os.environ.get(CHECKPOINTS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.cwd() / "checkpoints"


def checkpoint_path(spec: ModelSpec | str, directory: str | os.PathLike[str] | None = None) -> Path:
    """Where the weights of ``spec`` (a :class:`ModelSpec` or a name) live in ``directory``
    (default: :func:`default_checkpoint_dir`). The file need not exist."""
    if isinstance(spec, str):
        spec = get_model_spec(spec)
    base = Path(directory).expanduser() if directory is not None else default_checkpoint_dir()
    return base / spec.checkpoint_file


def require_checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a file; else a :class:`CheckpointError`."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"checkpoint not found: {file}")
    return file


def resolve_checkpoint(
    model: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    directory: str | os.PathLike[str] | None = None,
) -> Path:
    """The checkpoint file to load for ``model``: the one lookup every command and the service use.

    ``checkpoint`` given: that file, which must exist. Otherwise ``model`` must be a size (or an
    alias) and the file is its download in ``directory`` (default
    :func:`default_checkpoint_dir`). Every failure is a :class:`CheckpointError` that says what
    to do: a config without a checkpoint (random weights are never loaded by accident) or a
    size not downloaded yet (the ``sam2-matting download`` command that gets it).
    """
    if checkpoint is not None and str(checkpoint) != "":
        return require_checkpoint_file(checkpoint)
    try:
        spec = get_model_spec(str(model))
    except NotFoundError:
        raise CheckpointError(
            f"no checkpoint given for config {model}: pass --checkpoint PATH"
        ) from None
    base = Path(directory).expanduser() if directory is not None else default_checkpoint_dir()
    path = base / spec.checkpoint_file
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint for model '{spec.name}' at {path}; "
            f"get it with `sam2-matting download {spec.name} --dir {base}`"
        )
    return path


def package_config_file(spec: ModelSpec | str) -> Path:
    """The YAML file behind ``spec.config`` inside the installed ``sam2`` package.

    Located without importing ``sam2`` (which would initialise Hydra). Raises
    :class:`~sam2_matting.errors.NotFoundError` when ``sam2`` is not installed; the returned
    path may not exist if the installed ``sam2`` predates SAM 2.1.
    """
    if isinstance(spec, str):
        spec = get_model_spec(spec)
    found = importlib.util.find_spec("sam2")
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise NotFoundError("the 'sam2' package is not installed (see README: scripts/setup.sh)")
    return Path(locations[0]) / spec.config
