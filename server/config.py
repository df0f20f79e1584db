"""Service settings: one typed place, read from the environment (documented in the README).

Every field has an environment variable ``SAM2_MATTING_<FIELD>`` (upper case), except the few
that keep the SAM 2 demo's names (``API_URL``, ``API_TOKEN``). ``Settings.from_env()`` reads them;
``sam2-matting serve`` options override them.

Every value is checked when the settings are made (so at start-up, before the model loads):
a bad one raises :class:`~sam2_matting.errors.InvalidInputError` naming its variable, e.g.
``SAM2_MATTING_MAX_SESSIONS: must be at least 1 (got 0)``. The device and dtype are checked
where the model is built.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sam2_matting.cli.model_options import DEFAULT_DEVICE
from sam2_matting.errors import InvalidInputError
from sam2_matting.limits import DEFAULT_MAX_OBJECTS
from sam2_matting.registry import DEFAULT_MODEL

ENV_PREFIX = "SAM2_MATTING_"
# Fields whose variable is not prefixed (the anchor demo's names).
ENV_ALIASES = {
    "api_url": "API_URL",
    "api_token": "API_TOKEN",
    "api_tokens": "API_TOKENS",
    "checkpoint_dir": "SAM2_MATTING_CHECKPOINTS",  # the same variable `download` reads
}


# Field -> smallest allowed value (inclusive); floats must also be finite.
_AT_LEAST: dict[str, float] = {
    "port": 0,
    "threads": 1,
    "graceful_timeout": 0,
    "max_sessions": 1,
    "max_objects": 1,
    "max_upload_bytes": 1,
    "max_request_bytes": 1,
    "max_frames": 1,
    "max_side": 2,
    "max_query_depth": 1,
    "max_aliases": 1,
    "max_tokens": 1,
    "encode_workers": 0,
    "upload_jobs": 1,
}
_POSITIVE = (
    "session_ttl",
    "export_ttl",
    "max_duration_sec",
    "max_fps",
    "read_timeout",
    "body_timeout",
    "send_timeout",
)  # > 0, finite
_NOT_EMPTY = ("model", "checkpoint_dir", "host", "data", "gallery")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_REPLICA_ID = re.compile(r"[A-Za-z0-9_.-]{0,64}")
_URL = re.compile(r"https?://[^\s/]+(/\S*)?")


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@dataclass
class Settings:
    # model
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model size, config name or YAML"})
    checkpoint: str | None = field(default=None, metadata={"help": "checkpoint file"})
    checkpoint_dir: str = field(default="checkpoints", metadata={"help": "downloaded weights"})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder"})
    device: str = field(default=DEFAULT_DEVICE, metadata={"help": "auto, cuda, mps or cpu"})
    dtype: str | None = field(default=None, metadata={"help": "autocast dtype (bf16 on CUDA)"})
    # network
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=7263, metadata={"help": "port to bind"})
    api_url: str = field(
        default="", metadata={"help": "public base URL for media links (default: the request's)"}
    )
    threads: int = field(default=8, metadata={"help": "gunicorn threads"})
    graceful_timeout: int = field(default=20, metadata={"help": "seconds to finish on SIGTERM"})
    read_timeout: float = field(
        default=10.0,
        metadata={"help": "seconds for a request's headers; an upload must not stall longer"},
    )
    body_timeout: float = field(default=600.0, metadata={"help": "seconds for a whole upload body"})
    send_timeout: float = field(
        default=30.0,
        metadata={"help": "seconds a stream waits for a client that reads nothing, then ends it"},
    )
    encode_workers: int = field(
        default=2, metadata={"help": "threads encoding streamed mattes (0: in the model's thread)"}
    )
    upload_jobs: int = field(default=2, metadata={"help": "uploads transcoded at once"})
    replica_id: str = field(
        default="", metadata={"help": "prefix of session ids, for a proxy routing to replicas"}
    )
    # data
    data: str = field(default="data", metadata={"help": "uploads, posters, exports"})
    gallery: str = field(default="gallery", metadata={"help": "videos offered by default"})
    default_video: str | None = field(default=None, metadata={"help": "gallery file name"})
    # sessions and limits
    session_ttl: float = field(default=900.0, metadata={"help": "idle seconds before expiry"})
    max_sessions: int = field(default=4, metadata={"help": "live sessions at once"})
    max_objects: int = field(default=DEFAULT_MAX_OBJECTS, metadata={"help": "objects per session"})
    export_ttl: float = field(default=3600.0, metadata={"help": "seconds an export is kept"})
    max_upload_bytes: int = field(default=200 * 1024**2, metadata={"help": "upload size cap"})
    max_request_bytes: int = field(
        default=2 * 1024**2, metadata={"help": "size cap of a request that is not an upload"}
    )
    max_duration_sec: float = field(default=600.0, metadata={"help": "longest video, seconds"})
    max_frames: int = field(default=10_000, metadata={"help": "most frames in a video"})
    max_side: int = field(default=4096, metadata={"help": "largest width or height"})
    max_fps: float = field(default=120.0, metadata={"help": "highest frame rate"})
    # security and operations
    api_token: str | None = field(default=None, metadata={"help": "bearer token (optional)"})
    api_tokens: tuple[str, ...] = field(
        default=(),
        metadata={"help": "per-client bearer tokens, name:token,... (sessions, uploads private)"},
    )
    cors_origins: tuple[str, ...] = field(
        default=("http://localhost:7262", "http://127.0.0.1:7262"),
        metadata={"help": "allowed browser origins (comma-separated)"},
    )
    production: bool = field(default=False, metadata={"help": "GraphiQL/introspection off"})
    graphiql: bool | None = field(default=None, metadata={"help": "override GraphiQL"})
    introspection: bool | None = field(default=None, metadata={"help": "override introspection"})
    max_query_depth: int = field(default=12, metadata={"help": "GraphQL depth limit"})
    max_aliases: int = field(default=30, metadata={"help": "GraphQL alias limit"})
    max_tokens: int = field(default=2000, metadata={"help": "GraphQL token limit"})
    log_level: str = field(default="INFO", metadata={"help": "logging level"})

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """InvalidInputError naming the variable of the first value out of its range."""

        def bad(name: str, rule: str) -> InvalidInputError:
            value = getattr(self, name)
            return InvalidInputError(f"{self.env_name(name)}: {rule} (got {value!r})")

        for name, least in _AT_LEAST.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(name, "must be an integer")
            if value < least:
                raise bad(name, f"must be at least {least:g}")
        if self.port > 65535:
            raise bad("port", "must be at most 65535")
        for name in _POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(name, "must be a number")
            if not (math.isfinite(value) and value > 0):
                raise bad(name, "must be a finite number above 0")
        for name in _NOT_EMPTY:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise bad(name, "must not be empty")
        if self.log_level.upper() not in _LOG_LEVELS:
            raise bad("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")
        if not _REPLICA_ID.fullmatch(self.replica_id):
            raise bad("replica_id", "must be at most 64 letters, digits, '.', '_' or '-'")
        if self.api_url and not _URL.fullmatch(self.api_url):
            raise bad("api_url", "must be an http(s) URL such as https://matting.example.com")
        for origin in self.cors_origins:
            if not _URL.fullmatch(origin):
                raise bad("cors_origins", f"{origin!r} is not an http(s) origin")
        self.principals()  # names API_TOKENS in its own messages

    @property
    def data_dir(self) -> Path:
        return Path(self.data)

    @property
    def gallery_dir(self) -> Path:
        return Path(self.gallery)

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else not self.production

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else not self.production

    def principals(self) -> dict[str, str]:
        """Client name -> bearer token; empty when the service is open (no token set).

        ``API_TOKEN`` is the client ``default``; ``API_TOKENS`` names one client per token.
        Sessions, exports and uploads belong to the clients that made them.
        """
        out: dict[str, str] = {}
        if self.api_token:
            out["default"] = self.api_token
        for item in self.api_tokens:
            name, sep, token = item.partition(":")
            name, token = name.strip(), token.strip()
            if not sep or not name or not token:
                raise InvalidInputError(f"{self.env_name('api_tokens')}: expected name:token")
            if name in out:
                raise InvalidInputError(
                    f"{self.env_name('api_tokens')}: client name {name!r} is used twice"
                )
            out[name] = token
        if len(set(out.values())) != len(out):
            raise InvalidInputError(
                f"{self.env_name('api_token')}, {self.env_name('api_tokens')}: "
                "two clients share one token"
            )
        return out

    @staticmethod
    def env_name(name: str) -> str:
        return ENV_ALIASES.get(name, ENV_PREFIX + name.upper())

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then ``overrides`` (None means unset)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(cls.env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, default, help) for every setting: the README table."""
        return [
            (self.env_name(f.name), repr(f.default), f.metadata.get("help", ""))
            for f in fields(self)
        ]


def _parse(name: str, type_name: str, raw: str) -> Any:
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if type_name.startswith("bool"):
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if type_name.startswith("tuple"):
            return _split(raw)
        return raw
    except ValueError:
        raise InvalidInputError(
            f"bad value {raw!r} for {Settings.env_name(name)} ({type_name})"
        ) from None
