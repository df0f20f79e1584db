"""gunicorn settings of the service, read from the same environment as the app.

One worker (the model and the sessions live in one process), gthread with several threads so a
cancel or a click is served while streams run; its request heads are read off those threads
(``server.worker``), so slow clients cannot hold them. On SIGTERM the worker stops accepting,
cancels running streams at once (each ends with a final part, see ``server.stream``) and
exports (their partial files are deleted), waits up to the graceful timeout for the requests to
finish, then closes the sessions; the compose file's stop grace period is longer than the
timeout.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from server.config import Settings

_settings = Settings.from_env()

bind = f"{_settings.host}:{_settings.port}"
workers = 1
# gthread, reading request heads (and small bodies) in its event loop, so a slow client holds
# a buffer, not a thread (server.worker); large bodies keep a pace (server.body_guard).
worker_class = "server.worker.HeadReadingWorker"
threads = _settings.threads
# Streams can run for minutes; gthread's timeout is the worker heartbeat, not a request limit.
timeout = 120
graceful_timeout = _settings.graceful_timeout
keepalive = 5
accesslog = "-"
# The access log never holds a token (?access_token= on media URLs): see server.access_log.
logger_class = "server.access_log.RedactingLogger"
errorlog = "-"
loglevel = _settings.log_level.lower()
preload_app = False  # load the model in the worker, after fork
# gunicorn's control socket sits at one path per user: two services on a host would share it.
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    """Chain a drain to gunicorn's SIGTERM handler (which only stops the accept loop).

    Without it a stream runs on until the graceful timeout and is then cut mid-part.
    """
    gunicorn_exit = worker.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        gunicorn_exit(sig, frame)
        app = getattr(worker, "wsgi", None)
        if app is not None:
            from server.app import begin_shutdown

            # Not in the signal handler itself: it takes locks the interrupted code may hold.
            threading.Thread(target=begin_shutdown, args=(app,), name="drain").start()

    signal.signal(signal.SIGTERM, handle_exit)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn: do not break system calls


def worker_exit(server: Any, worker: Any) -> None:
    """Close every session so streams end and memory is freed before the process exits."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("sam2_matting") if app is not None else None
    if services is not None:
        services.exports.shutdown()  # first: closing the sessions must not delete exports
        if services.uploads is not None:
            services.uploads.shutdown()
        services.store.shutdown()
