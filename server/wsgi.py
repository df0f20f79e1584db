"""WSGI entry point for gunicorn.

    gunicorn -c server/gunicorn.conf.py 'server.wsgi:application()'

The app (and the model) is built when gunicorn's worker calls the factory, never at import.
A clear start-up failure (a missing, corrupt or wrong checkpoint, config or adapter; a bad
setting) is reported as one line and stops gunicorn with a non-zero status (4, "App failed
to load") instead of a traceback.
"""

from __future__ import annotations

from flask import Flask


def application() -> Flask:
    from gunicorn.errors import AppImportError

    from sam2_matting.errors import MattingError
    from server.app import create_app

    try:
        return create_app()
    except MattingError as err:
        raise AppImportError(f"sam2-matting: cannot start: {err}") from None
