"""``sam2-matting serve``: run the web service under gunicorn (registered as a CLI plugin).

    sam2-matting serve [--model large | --config PATH --checkpoint PATH] [--adapter DIR]
                       [--host 127.0.0.1] [--port 7263] [--data data] [--gallery gallery]
                       [--device auto]

Every option can also be set by its environment variable (see the README); options win. With
no checkpoint present, ``serve`` says how to get one and exits non-zero before starting.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sam2_matting.errors import CheckpointError, InvalidInputError

# option -> Settings field (its environment variable comes from server.config)
OPTIONS = {
    "model": "model",
    "config": "model",
    "checkpoint": "checkpoint",
    "adapter": "adapter",
    "host": "host",
    "port": "port",
    "data": "data",
    "gallery": "gallery",
    "device": "device",
}


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the GraphQL matting service under gunicorn")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--model", help="model size: tiny, small, base_plus, large (default)")
    group.add_argument("--config", help="SAM 2 config name or YAML file (with --checkpoint)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the downloaded one)")
    p.add_argument("--adapter", help="LoRA matting adapter folder to merge")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7263)")
    p.add_argument("--data", help="folder for uploads, posters and exports (default data)")
    p.add_argument("--gallery", help="folder of videos offered by default (default gallery)")
    p.add_argument("--device", help="auto, cuda, mps or cpu (default auto)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from server.config import Settings

    if args.config and not args.checkpoint:
        raise InvalidInputError("--config needs --checkpoint")
    env = dict(os.environ)
    for option, name in OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            env[Settings.env_name(name)] = str(value)
    settings = Settings.from_env(env)
    check_checkpoint(settings)
    # glibc gives each thread that allocates its own arena; with a dozen threads the worker's
    # memory then keeps rising and falling by tens of MiB (docs/reliability.md, soak). Two
    # arenas keep it flat; the model's work is in torch, not in malloc.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    conf = Path(__file__).resolve().parent / "gunicorn.conf.py"
    argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), "server.wsgi:application()"]
    print(f"sam2-matting: serving on http://{settings.host}:{settings.port}", flush=True)
    os.execvpe(argv[0], argv, env)
    return 0  # pragma: no cover


def check_checkpoint(settings: Any) -> None:
    """Fail before starting gunicorn when the weights are not there."""
    from sam2_matting.errors import NotFoundError
    from sam2_matting.registry import checkpoint_path, get_model_spec

    if settings.checkpoint:
        if not Path(settings.checkpoint).is_file():
            raise CheckpointError(f"checkpoint not found: {settings.checkpoint}")
        return
    try:
        spec = get_model_spec(settings.model)
    except NotFoundError:
        raise CheckpointError(
            f"no checkpoint for config {settings.model}: pass --checkpoint PATH"
        ) from None
    path = checkpoint_path(spec, Path(settings.checkpoint_dir))
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint for model '{spec.name}' at {path}; "
            f"get it with `sam2-matting download {spec.name} --dir {settings.checkpoint_dir}`"
        )
