"""WSGI entry point for gunicorn.

    gunicorn -c server/gunicorn.conf.py 'server.wsgi:application()'

The app (and the model) is built when gunicorn's worker calls the factory, never at import.
"""

from __future__ import annotations

from flask import Flask


def application() -> Flask:
    from server.app import create_app

    return create_app()
