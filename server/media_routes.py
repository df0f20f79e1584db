"""The routes serving the video library: ``GET /gallery/<name>``, ``/posters/<name>`` and
``/uploads/<name>``, with their MIME type, ETag, cache lifetime and HTTP Range support.

    init_app(app, library)   # library: server.media.MediaLibrary
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, Flask, Response, g, request, send_file
from werkzeug.exceptions import NotFound

from sam2_matting.errors import MattingError
from server.errors import not_found
from server.media import MediaLibrary
from server.ranges import ignore_unusable_range

MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime"}
UPLOAD_NAME = re.compile(r"[0-9a-f]{64}\.mp4")
UPLOAD_POSTER = re.compile(r"([0-9a-f]{64})\.jpg")
POSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.jpg")
CACHE_IMMUTABLE = 365 * 24 * 3600  # content-addressed files never change under their name
CACHE_GALLERY = 300


def media_blueprint(library: MediaLibrary) -> Blueprint:
    """GET ``/gallery/<name>``, ``/posters/<name>``, ``/uploads/<name>`` for ``library``.

    Files are sent with their MIME type, ETag and HTTP Range support (206 partial content,
    416 or the whole file as ``server.ranges`` says).
    Only names the library hands out are served; anything else, or a file that vanished,
    is the service's JSON 404 (``NOT_FOUND``), never a 500. With per-client tokens an upload
    and its poster are served only to the clients that sent it (another client: the same 404).
    """
    bp = Blueprint("media", __name__)

    @bp.get("/gallery/<path:name>")
    def gallery_file(name: str) -> Response:
        try:
            record = library.resolve(f"gallery/{name}")
        except MattingError:
            return not_found()
        mimetype = MIME_TYPES.get(record.file.suffix.lower(), "video/mp4")
        return _send(record.file, mimetype, CACHE_GALLERY)

    @bp.get("/posters/<path:name>")
    def poster_file(name: str) -> Response:
        if not POSTER_NAME.fullmatch(name):
            return not_found()
        upload = UPLOAD_POSTER.fullmatch(name)  # an upload's poster is its client's, too
        if upload is not None and not library.may_use(upload.group(1), g.get("principal")):
            return not_found()
        private = upload is not None and library.per_client
        return _send(library.posters_dir / name, "image/jpeg", CACHE_IMMUTABLE, private)

    @bp.get("/uploads/<path:name>")
    def upload_file(name: str) -> Response:
        if not UPLOAD_NAME.fullmatch(name):
            return not_found()
        if not library.may_use(name.removesuffix(".mp4"), g.get("principal")):
            return not_found()
        return _send(library.uploads_dir / name, "video/mp4", CACHE_IMMUTABLE, library.per_client)

    return bp


def init_app(app: Flask, library: MediaLibrary) -> None:
    """Register the media routes on ``app``; the library is kept in
    ``app.extensions["media_library"]``."""
    app.extensions["media_library"] = library
    app.register_blueprint(media_blueprint(library))


def _send(path: Path, mimetype: str, max_age: int, private: bool = False) -> Response:
    """``path`` with Range support; ``private``: no shared cache may keep it (a client's own)."""
    ignore_unusable_range(request.environ)
    try:
        response = send_file(path, mimetype=mimetype, conditional=True, etag=True, max_age=max_age)
        if private:
            response.cache_control.public = False
            response.cache_control.private = True
        return response
    except (OSError, NotFound):
        # Gone between the check and the open (e.g. an operator cleaning up): still a 404.
        return not_found()
