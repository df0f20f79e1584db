"""The matting web page: ``GET /`` and its static files, served by the service itself.

    from server.page import init_app as init_page
    init_page(app)        # in create_app, after the GraphQL view and the media routes

Routes:

- ``GET /``: ``server/static/index.html``, the single-page app (plain ES modules, no build).
- ``GET /static/<file>``: the page's modules, style sheet and icon from ``server/static/``.
- ``GET /static/matte_rle.mjs``: the codec's browser decoder, served from the package
  (``sam2_matting/codec/matte_rle.mjs``) so there is exactly one decoder.
- ``GET /api/limits``: the upload limits and session settings the page shows before an upload,
  the export formats, and which optional features the schema has (``features.export``).

The page and its static files are open without the API token (they hold no data; the page asks
for the token when the API answers ``UNAUTHENTICATED``). Every page response carries a strict
Content-Security-Policy: the page loads nothing from any other origin.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, send_file
from werkzeug.exceptions import NotFound

from sam2_matting.export import EXPORT_FORMATS
from server.config import Settings

__all__ = ["PAGE_EXPORT_FORMATS", "STATIC_DIR", "init_app", "page_blueprint", "page_limits"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The codec's browser decoder, wherever the package is installed.
CODEC_JS = Path(str(resources.files("sam2_matting.codec") / "matte_rle.mjs"))
# The formats the page offers, in its menu order (the exportMatte mutation's formats).
PAGE_EXPORT_FORMATS = ("png-zip", "prores", "webm", "alpha", "composite")
MIME_TYPES = {
    ".html": "text/html",  # Flask adds "; charset=utf-8" to text types
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# media-src blob: lets the page read a chosen file's duration and size before uploading it.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def page_limits(settings: Settings, export_available: bool) -> dict[str, Any]:
    """The body of ``GET /api/limits``."""
    return {
        "max_upload_bytes": int(settings.max_upload_bytes),
        "max_duration_sec": float(settings.max_duration_sec),
        "max_frames": int(settings.max_frames),
        "max_side": int(settings.max_side),
        "max_fps": float(settings.max_fps),
        "max_objects": int(settings.max_objects),
        "max_sessions": int(settings.max_sessions),
        "session_ttl_sec": float(settings.session_ttl),
        "export_formats": [
            {
                "name": name,
                "extension": EXPORT_FORMATS[name].extension,
                "description": EXPORT_FORMATS[name].description,
            }
            for name in PAGE_EXPORT_FORMATS
            if name in EXPORT_FORMATS
        ],
        "features": {"export": export_available},
    }


def _schema_has_export(settings: Settings) -> bool:
    """Whether the GraphQL schema this service serves has the ``exportMatte`` mutation.

    Asked of the schema itself (built once more, at start-up) rather than by introspection,
    which production turns off.
    """
    from server.schema import build_schema

    mutation = build_schema(settings).get_type_by_name("Mutation")
    fields = getattr(mutation, "fields", None) or []
    return any(getattr(f, "python_name", "") == "export_matte" for f in fields)


def page_blueprint(settings: Settings, export_available: bool) -> Blueprint:
    """The blueprint of ``/``, ``/static/<file>``, ``/static/matte_rle.mjs`` and ``/api/limits``."""
    bp = Blueprint("page", __name__)
    limits = json.dumps(page_limits(settings, export_available))

    @bp.get("/")
    def index() -> Response:
        return _send(STATIC_DIR / "index.html")

    @bp.get("/static/matte_rle.mjs")
    def codec() -> Response:
        return _send(CODEC_JS)

    # <name> (no slashes) outranks Flask's own /static/<path:filename> of the app, which
    # serves the same folder without these MIME types and headers.
    @bp.get("/static/<name>")
    def asset(name: str) -> Response:
        path = (STATIC_DIR / name).resolve()
        if path.parent != STATIC_DIR or path.suffix not in MIME_TYPES or not path.is_file():
            raise NotFound()
        return _send(path)

    @bp.get("/api/limits")
    def api_limits() -> Response:
        return Response(limits, mimetype="application/json", headers={"Cache-Control": "no-store"})

    return bp


def _send(path: Path) -> Response:
    # no-cache: the browser revalidates (ETag), so a redeployed page is picked up at once.
    response = send_file(path, mimetype=MIME_TYPES[path.suffix], conditional=True, etag=True)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if path.suffix == ".html":
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _public_paths() -> set[str]:
    return {"/", "/static/matte_rle.mjs"} | {
        f"/static/{p.name}" for p in STATIC_DIR.iterdir() if p.suffix in MIME_TYPES
    }


def init_app(app: Flask) -> None:
    """Register the page on ``app`` (built by :func:`server.app.create_app`, which has put its
    services in ``app.extensions["sam2_matting"]``) and open the page shell without the token."""
    services = app.extensions["sam2_matting"]
    app.register_blueprint(page_blueprint(services.settings, _schema_has_export(services.settings)))
    # The page shell holds no data: open it without the API token, as the probes are.
    app.config.setdefault("PUBLIC_PATHS", set()).update(_public_paths())
