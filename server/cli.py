"""``sam2-matting serve``: run the web service under gunicorn (registered as a CLI plugin).

    sam2-matting serve [--model large | --config PATH --checkpoint PATH] [--adapter DIR]
                       [--host 127.0.0.1] [--port 7263] [--data data] [--gallery gallery]
                       [--device auto] [--dtype bfloat16] [--checkpoint-dir DIR]

The model options are ``matte``'s and ``evaluate``'s (sam2_matting.cli.model_options); the
checkpoint is found by ``sam2_matting.registry.resolve_checkpoint``, as ``matte`` finds it.

Every option can also be set by its environment variable (see the README); options win. With
no checkpoint present, ``serve`` says how to get one and exits non-zero before starting.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sam2_matting.cli.model_options import add_model_options, predictor_kwargs
from sam2_matting.registry import resolve_checkpoint
from server.config import Settings

# Options besides the model's (sam2_matting.cli.model_options) -> Settings field
OPTIONS = ("host", "port", "data", "gallery")


def register(sub: Any) -> None:
    defaults = Settings()
    p = sub.add_parser("serve", help="run the GraphQL matting service under gunicorn")
    add_model_options(p, from_env=True)
    net = p.add_argument_group("service")
    for name, metavar, kind in (
        ("host", "ADDRESS", str),
        ("port", "PORT", int),
        ("data", "DIR", str),
        ("gallery", "DIR", str),
    ):
        help_text = _help(name)
        net.add_argument(
            f"--{name}",
            metavar=metavar,
            type=kind,
            help=f"{help_text} (default: {getattr(defaults, name)}, or ${Settings.env_name(name)})",
        )
    p.set_defaults(handler=run)


def _help(name: str) -> str:
    from dataclasses import fields

    return next(str(f.metadata.get("help", name)) for f in fields(Settings) if f.name == name)


def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    given = {**predictor_kwargs(args), **{name: getattr(args, name) for name in OPTIONS}}
    for name, value in given.items():
        if value is not None:
            env[Settings.env_name(name)] = str(value)
    settings = Settings.from_env(env)
    resolve_checkpoint(settings.model, settings.checkpoint, settings.checkpoint_dir)
    # glibc gives each thread that allocates its own arena; with a dozen threads the worker's
    # memory then keeps rising and falling by tens of MiB (docs/reliability.md, soak). Two
    # arenas keep it flat; the model's work is in torch, not in malloc.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    conf = Path(__file__).resolve().parent / "gunicorn.conf.py"
    argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), "server.wsgi:application()"]
    print(f"sam2-matting: serving on http://{settings.host}:{settings.port}", flush=True)
    os.execvpe(argv[0], argv, env)
    return 0  # pragma: no cover
