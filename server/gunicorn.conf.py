"""gunicorn settings of the service, read from the same environment as the app.

One worker (the model and the sessions live in one process), gthread with several threads so a
cancel or a click is served while streams run. The graceful timeout lets running streams end
with a final part on SIGTERM; the compose file's stop grace period is longer than it.
"""

from __future__ import annotations

from typing import Any

from server.config import Settings

_settings = Settings.from_env()

bind = f"{_settings.host}:{_settings.port}"
workers = 1
worker_class = "gthread"
threads = _settings.threads
# Streams can run for minutes; gthread's timeout is the worker heartbeat, not a request limit.
timeout = 120
graceful_timeout = _settings.graceful_timeout
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
preload_app = False  # load the model in the worker, after fork


def worker_exit(server: Any, worker: Any) -> None:
    """Close every session so streams end and memory is freed before the process exits."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("sam2_matting") if app is not None else None
    if services is not None:
        services.store.shutdown()
        services.exports.shutdown()
